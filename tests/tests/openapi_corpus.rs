//! Table discovery on real suppliers' OpenAPI documents (`tests/openapi_corpus`,
//! origins and licences in its `SOURCES.md`): each document's `expected.toml`,
//! written by reading the document, says which GET operations return lists
//! (and where the records sit), which return one record, and the JSON Schema
//! type of some fields; discovery must agree, so a regression in discovery
//! fails here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::datatypes::{DataType, Field, TimeUnit};
use bluelamp_connectors::openapi::discovery::{RecordsAt, TableSpec, discover};
use bluelamp_connectors::openapi::spec::{Document, Location, bundle};

#[derive(Debug, serde::Deserialize)]
struct Expected {
    root: String,
    openapi: String,
    list_gets: Vec<String>,
    single_object_gets: Vec<String>,
    #[serde(default)]
    spot: Vec<Spot>,
}

#[derive(Debug, serde::Deserialize)]
struct Spot {
    operation: String,
    field: String,
    json_type: String,
    #[serde(default)]
    format: Option<String>,
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi_corpus")
}

async fn read(location: Location) -> Result<String, String> {
    match location {
        Location::File(path) => std::fs::read_to_string(path).map_err(|e| e.to_string()),
        Location::Url(url) => Err(format!("the corpus is read offline: {url}")),
    }
}

/// The document in `folder`, bundled, and what discovery makes of it.
async fn discovered(folder: &Path, expected: &Expected) -> (Document, Vec<TableSpec>, Vec<String>) {
    let root = folder.join(&expected.root);
    let text = std::fs::read_to_string(&root).unwrap();
    let doc = Document::parse(&text).unwrap();
    let (doc, mut warnings) = bundle(doc, Location::File(root), read).await;
    let (tables, more) = discover(&doc, &BTreeMap::new());
    warnings.extend(more);
    (doc, tables, warnings)
}

/// The Arrow type a JSON Schema type and format map to, coarsely: the
/// outer type only for lists and structs.
fn arrow_type_matches(json_type: &str, format: Option<&str>, actual: &DataType) -> bool {
    match (json_type, format) {
        ("string", Some("date-time")) => {
            *actual == DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        ("string", Some("date")) => *actual == DataType::Date32,
        ("string", _) => *actual == DataType::Utf8,
        ("integer", Some("int32")) => *actual == DataType::Int32,
        ("integer", _) => *actual == DataType::Int64,
        ("number", _) => *actual == DataType::Float64,
        ("boolean", _) => *actual == DataType::Boolean,
        ("array", _) => matches!(actual, DataType::List(_)),
        ("object", _) => matches!(actual, DataType::Struct(_)) || *actual == DataType::Utf8,
        _ => false,
    }
}

/// A field by dotted path through structs and list items.
fn field_at<'a>(columns: &'a [Field], path: &str) -> Option<&'a Field> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut field = columns.iter().find(|f| f.name() == first)?;
    for part in parts {
        let mut data_type = field.data_type();
        while let DataType::List(item) = data_type {
            data_type = item.data_type();
        }
        let DataType::Struct(children) = data_type else {
            return None;
        };
        field = children.iter().find(|f| f.name() == part)?;
    }
    Some(field)
}

#[tokio::test]
async fn discovery_agrees_with_the_corpus() {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.toml").exists())
        .collect();
    folders.sort();
    assert!(
        folders.len() >= 10,
        "the corpus has {} documents",
        folders.len()
    );
    let mut problems: Vec<String> = Vec::new();
    let mut summary: Vec<String> = Vec::new();
    for folder in &folders {
        let name = folder.file_name().unwrap().to_string_lossy().to_string();
        let expected: Expected =
            toml::from_str(&std::fs::read_to_string(folder.join("expected.toml")).unwrap())
                .unwrap();
        let (doc, tables, warnings) = discovered(folder, &expected).await;
        assert!(expected.openapi.starts_with(&doc.version), "{name}");
        let readable: Vec<&TableSpec> = tables.iter().filter(|t| t.readable).collect();
        summary.push(format!(
            "{name}: {} tables ({} readable), {} warnings",
            tables.len(),
            readable.len(),
            warnings.len()
        ));
        let table_for = |path: &str| readable.iter().find(|t| t.path == path).copied();
        let skipped = |path: &str| {
            warnings
                .iter()
                .find(|w| w.starts_with(&format!("GET {path}: ")) && w.contains("skipped"))
        };
        for entry in &expected.list_gets {
            let (operation, wrapper) = entry.split_once(" -> ").unwrap();
            let path = operation.trim_start_matches("GET ");
            let records = match wrapper {
                "[]" => RecordsAt::Root,
                field => RecordsAt::Field(field.to_string()),
            };
            match table_for(path) {
                Some(table) if table.records == records => {}
                Some(table) => problems.push(format!(
                    "{name}: {operation} reads records at {:?}, not {records:?}",
                    table.records
                )),
                None => match skipped(path) {
                    // Refused with a reason (say, pages it cannot follow): allowed,
                    // and listed so a change is seen.
                    Some(w) => summary.push(format!("  {name}: {w}")),
                    None => problems.push(format!(
                        "{name}: {operation} is a list but no table and no warning"
                    )),
                },
            }
        }
        for operation in &expected.single_object_gets {
            let path = operation.trim_start_matches("GET ");
            let keyed = path.contains('{');
            match (table_for(path), keyed) {
                (Some(table), true) if table.records == RecordsAt::Object => {}
                (None, false) => {}
                (None, true) if skipped(path).is_some() => {}
                (Some(table), _) => problems.push(format!(
                    "{name}: {operation} returns one record but became {} reading {:?}",
                    table.name, table.records
                )),
                (None, true) => problems.push(format!(
                    "{name}: {operation} returns one record by key but is no lookup table"
                )),
            }
        }
        for spot in &expected.spot {
            let path = spot.operation.trim_start_matches("GET ");
            let Some(table) = table_for(path) else {
                continue; // refused above, with a warning
            };
            let columns: Vec<Field> = table.columns.iter().map(|(f, _)| f.clone()).collect();
            match field_at(&columns, &spot.field) {
                Some(field)
                    if arrow_type_matches(
                        &spot.json_type,
                        spot.format.as_deref(),
                        field.data_type(),
                    ) => {}
                Some(field) => problems.push(format!(
                    "{name}: {} {}: {} ({:?}) became {}",
                    spot.operation,
                    spot.field,
                    spot.json_type,
                    spot.format,
                    field.data_type()
                )),
                None => problems.push(format!(
                    "{name}: {} has no column {} (it has {:?})",
                    spot.operation,
                    spot.field,
                    columns
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                )),
            }
        }
        // Every table name is unique, and every path column is distinct from the record's fields.
        let mut names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), tables.len(), "{name}: duplicate table names");
    }
    println!("{}", summary.join("\n"));
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
