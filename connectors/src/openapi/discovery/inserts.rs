//! `POST` operations as insert targets: each create operation with a JSON
//! body is attached to the list table on its path (or to the table the
//! configuration names), or becomes an insert-only table of its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use serde_json::Value;

use crate::openapi::config::TableConfig;
use crate::openapi::schema::{Mapper, Shape};
use crate::openapi::spec::Document;
use crate::openapi::write::write_spec;

use super::naming::{table_name_from_operation, table_name_from_path};
use super::table::{Pagination, PathParam, RecordsAt, TableSpec};
use super::{table_overrides, unique_name};

/// Attaches each `POST` with a JSON body to the list table on the same path,
/// or makes it an insert-only table named after its operation.
pub(super) fn discover_writes(
    doc: &Document,
    overrides: &BTreeMap<String, TableConfig>,
    tables: &mut Vec<TableSpec>,
    mapper: &mut Mapper<'_>,
) {
    let Some(paths) = doc.root.get("paths").and_then(Value::as_object) else {
        return;
    };
    // Create operations mapped onto tables in the config.
    for (name, table_config) in overrides {
        let Some(mapping) = &table_config.insert else {
            continue;
        };
        let at = format!("tables.{name}.insert");
        let Some(path) = mapping
            .strip_prefix("POST ")
            .or_else(|| mapping.strip_prefix("post "))
            .map(str::trim)
        else {
            mapper.warnings.push(format!(
                "{at}: write it as \"POST /path\" (got \"{mapping}\")"
            ));
            continue;
        };
        let Some((item, operation)) = paths
            .get(path)
            .and_then(|item| item.get("post").map(|op| (item, op)))
        else {
            mapper
                .warnings
                .push(format!("{at}: the document has no POST {path}"));
            continue;
        };
        let Some(spec) = write_spec(doc, path, item, operation, &mut mapper.warnings) else {
            continue;
        };
        let target = table_config.rename.as_deref().unwrap_or(name);
        match tables.iter_mut().find(|t| t.name == target) {
            Some(table) => table.write = Some(Arc::new(spec)),
            None => mapper
                .warnings
                .push(format!("{at}: no table named {target}")),
        }
    }
    for (path, item) in paths {
        let Some(item) = doc.resolve(item).ok().map(|(item, _)| item) else {
            continue;
        };
        let Some(operation) = item
            .get("post")
            .and_then(|op| doc.resolve(op).ok().map(|(op, _)| op))
        else {
            continue;
        };
        let Some(spec) = write_spec(doc, path, item, operation, &mut mapper.warnings) else {
            continue;
        };
        if let Some(table) = tables
            .iter_mut()
            .find(|t| &t.path == path && t.write.is_none())
        {
            table.write = Some(Arc::new(spec));
            continue;
        }
        let raw_name = operation
            .get("operationId")
            .and_then(Value::as_str)
            .map(table_name_from_operation)
            .unwrap_or_else(|| format!("{}_post", table_name_from_path(path)));
        let at = format!("POST {path}");
        let (_, overrides_for) = table_overrides(overrides, &raw_name, &at);
        if overrides_for.exclude {
            continue;
        }
        let body_schema = operation
            .get("requestBody")
            .and_then(|b| doc.resolve(b).ok().map(|(b, _)| b.clone()))
            .and_then(|b| {
                b.get("content")?
                    .as_object()?
                    .iter()
                    .find(|(media, _)| media.contains("json"))
                    .and_then(|(_, c)| c.get("schema").cloned())
            })
            .unwrap_or(Value::Null);
        let mut columns: Vec<(Field, Shape)> = spec
            .path_params
            .iter()
            .map(|p| (Field::new(p, DataType::Utf8, false), Shape::Plain))
            .collect();
        for (field, shape) in mapper.object_fields(&body_schema, &at) {
            if !columns.iter().any(|(f, _)| f.name() == field.name()) {
                columns.push((field, shape));
            }
        }
        let name = overrides_for.rename.clone().unwrap_or(raw_name);
        let name = unique_name(tables, name, &at, &mut mapper.warnings);
        tables.push(TableSpec {
            name,
            path: path.clone(),
            path_params: spec
                .path_params
                .iter()
                .map(|p| PathParam {
                    param: p.clone(),
                    column: p.clone(),
                })
                .collect(),
            records: RecordsAt::Root,
            columns,
            filters: Vec::new(),
            pagination: Pagination::None,
            primary_key: Vec::new(),
            readable: false,
            write: Some(Arc::new(spec)),
            missing_is_empty: false,
        });
    }
}
