//! Tier 2, published: a supplier's documented set of bi-directional
//! interfaces. This module runs the criteria that need only the document
//! (`bluelamp certify published --spec FILE`), so a supplier can check its
//! document before publishing; the criteria that need the live system are in
//! the report as not applicable, saying so.

use std::collections::BTreeMap;
use std::path::Path;

use bluelamp_connectors::openapi::spec::{Document, Location, bundle};
use serde_json::Value;

use crate::report::{Criterion, Outcome, Report, Subject};

/// Methods whose operations the criteria look at.
const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

/// Most offenders an evidence line lists before counting the rest.
const MOST_LISTED: usize = 10;

/// The criteria [`crate::live`] checks against the live system, reported as
/// not applicable in a document-only run.
pub(crate) const LIVE: &[(&str, &str)] = &[
    (
        "live.schemas",
        "Live answers match their documented schemas",
    ),
    (
        "live.pagination",
        "Pagination reaches every record exactly once, stable under a second walk",
    ),
    (
        "live.filters",
        "Each documented filter returns exactly the records that satisfy it",
    ),
    (
        "live.errors",
        "Documented error answers, and 429 with Retry-After, behave as documented",
    ),
    (
        "deposit.round_trip",
        "A deposited record is stored once and retrievable with the same values",
    ),
    (
        "security.transport",
        "TLS 1.2+ where the URL is https; no credentials in query strings; no secrets echoed",
    ),
];

/// One entity of an interface: a collection path and what it offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityOps {
    /// Operations that retrieve it (`GET /crimes`, `GET /crimes/{ref}`).
    pub retrieve: Vec<String>,
    /// Operations that deposit it (`POST /crimes`), with a request schema.
    pub deposit: Vec<String>,
}

/// Checks the document at `path` (and the files it refers to).
///
/// # Errors
/// Only when the file itself cannot be read; a document that is not valid
/// OpenAPI is a report whose first criterion fails.
pub async fn check_document(path: &Path) -> Result<Report, String> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let location = path.display().to_string();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let mut subject = Subject::of(&location, &bytes);
    let mut criteria = Vec::new();
    let doc = match Document::parse(&text) {
        Ok(doc) => doc,
        Err(e) => {
            criteria.push(Criterion::new(
                "document.valid",
                "The document is valid OpenAPI 3.0 or 3.1",
                Outcome::Fail,
                vec![format!("{location}: {e}")],
            ));
            return Ok(finish(subject, criteria));
        }
    };
    let (doc, file_warnings, files) =
        bundle_hashed(doc, Location::File(path.to_path_buf()), false).await;
    subject.describe(&doc.root);
    let served = Criterion::new(
        "document.served",
        "The document is served without credentials at a stable URL",
        Outcome::NotApplicable,
        vec![format!(
            "given as a file ({location}); a published interface must also be served at a stable URL without credentials: check it against the live system with --source"
        )],
    );
    criteria.extend(document_criteria(&doc, &file_warnings, served));
    for (id, title) in LIVE {
        criteria.push(Criterion::new(
            id,
            title,
            Outcome::NotApplicable,
            vec![
                "needs the live system: run with --source against a configured openapi source"
                    .into(),
            ],
        ));
    }
    let mut report = finish(subject, criteria);
    report.documents = files;
    Ok(report)
}

/// Reads every file `doc` (read from `root`) refers to into it, as
/// [`bundle`] does, and hashes each, so a report covers the whole document
/// and not only its first file. URLs are fetched without credentials, and
/// only when `fetch_urls`.
pub(crate) async fn bundle_hashed(
    doc: Document,
    root: Location,
    fetch_urls: bool,
) -> (Document, Vec<String>, Vec<Subject>) {
    let files = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (doc, warnings) = bundle(doc, root, |location| {
        let files = std::sync::Arc::clone(&files);
        async move {
            let (name, text) = match location {
                Location::File(p) => (
                    p.display().to_string(),
                    tokio::fs::read_to_string(&p)
                        .await
                        .map_err(|e| e.to_string())?,
                ),
                Location::Url(url) if fetch_urls => {
                    let text = match reqwest::get(url.clone()).await {
                        Ok(r) if r.status().is_success() => {
                            r.text().await.map_err(|e| e.to_string())?
                        }
                        Ok(r) => return Err(format!("{url}: HTTP {}", r.status().as_u16())),
                        Err(e) => return Err(format!("{url}: {e}")),
                    };
                    (url.to_string(), text)
                }
                Location::Url(url) => {
                    return Err(format!("{url} is not fetched in a document-only check"));
                }
            };
            if let Ok(mut files) = files.lock() {
                files.push(Subject::of(&name, text.as_bytes()));
            }
            Ok(text)
        }
    })
    .await;
    let files = files.lock().map(|f| f.clone()).unwrap_or_default();
    (doc, warnings, files)
}

/// The criteria about the document itself, with `served` (how it was read)
/// second.
pub(crate) fn document_criteria(
    doc: &Document,
    file_warnings: &[String],
    served: Criterion,
) -> Vec<Criterion> {
    vec![
        validity(doc, file_warnings),
        served,
        response_schemas(doc),
        bidirectional(doc),
    ]
}

/// The tier 2 report over `criteria`.
pub(crate) fn finish(subject: Subject, criteria: Vec<Criterion>) -> Report {
    crate::report::finish("published", 2, subject, criteria)
}

/// Every operation of the document: (`GET /path`, path, method, operation).
fn operations(doc: &Document) -> Vec<(String, String, String, Value)> {
    doc.operations(METHODS)
        .into_iter()
        .map(|op| (op.name(), op.path, op.method.to_string(), op.operation))
        .collect()
}

fn listed(items: &[String]) -> String {
    let mut shown: Vec<String> = items.iter().take(MOST_LISTED).cloned().collect();
    if items.len() > MOST_LISTED {
        shown.push(format!("and {} more", items.len() - MOST_LISTED));
    }
    shown.join("; ")
}

fn validity(doc: &Document, file_warnings: &[String]) -> Criterion {
    let paths = doc
        .root
        .get("paths")
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len);
    let ops = operations(doc).len();
    let mut evidence = vec![
        format!("OpenAPI {}", doc.version),
        format!("{paths} paths, {ops} operations"),
    ];
    if !doc.files.is_empty() {
        evidence.push(format!(
            "{} further files read through relative $refs",
            doc.files.len()
        ));
    }
    let mut problems: Vec<String> = file_warnings.to_vec();
    if ops == 0 {
        problems.push("the document has no operations".into());
    }
    let outcome = if problems.is_empty() {
        Outcome::Pass
    } else {
        evidence.extend(problems);
        Outcome::Fail
    };
    Criterion::new(
        "document.valid",
        "The document is valid OpenAPI 3.0 or 3.1",
        outcome,
        evidence,
    )
}

/// The schema of a JSON body (`content` → a media type with `json`).
pub(crate) fn json_schema<'a>(doc: &'a Document, holder: &'a Value) -> Option<&'a Value> {
    let (holder, _) = doc.resolve(holder).ok()?;
    holder
        .get("content")?
        .as_object()?
        .iter()
        .find(|(media, _)| media.contains("json"))
        .and_then(|(_, m)| m.get("schema"))
}

/// The media type of a request body that documents a schema, JSON first.
fn request_media(doc: &Document, body: &Value) -> Option<String> {
    let (body, _) = doc.resolve(body).ok()?;
    let content = body.get("content")?.as_object()?;
    let with_schema = |json: bool| {
        content
            .iter()
            .find(|(media, m)| media.contains("json") == json && m.get("schema").is_some())
            .map(|(media, _)| media.clone())
    };
    with_schema(true).or_else(|| with_schema(false))
}

/// The success answer an operation documents, with its status.
pub(crate) fn success<'a>(doc: &'a Document, op: &'a Value) -> Option<(&'a str, &'a Value)> {
    let responses = op.get("responses")?.as_object()?;
    responses
        .iter()
        .find(|(code, _)| code.starts_with('2'))
        .or_else(|| {
            responses
                .iter()
                .find(|(code, _)| code.as_str() == "default")
        })
        .and_then(|(code, r)| doc.resolve(r).ok().map(|(r, _)| (code.as_str(), r)))
}

fn response_schemas(doc: &Document) -> Criterion {
    let ops = operations(doc);
    let mut missing = Vec::new();
    for (name, _, method, op) in &ops {
        match success(doc, op) {
            None => missing.push(format!("{name}: no success response")),
            // A write answered without a body is documented by its status;
            // what a GET answers must be described.
            Some(_) if method != "get" => {}
            Some((code, r)) => {
                if r.get("content").is_none() {
                    missing.push(format!("{name}: {code} has no content"));
                } else if json_schema(doc, r).is_none()
                    && !r
                        .get("content")
                        .and_then(Value::as_object)
                        .is_some_and(|c| c.values().any(|m| m.get("schema").is_some()))
                {
                    missing.push(format!("{name}: {code} has no schema"));
                }
            }
        }
    }
    let title = "Every operation documents its answer, and every GET the schema of what it returns";
    if missing.is_empty() {
        Criterion::new(
            "document.response_schemas",
            title,
            Outcome::Pass,
            vec![format!(
                "all {} operations document their answers",
                ops.len()
            )],
        )
    } else {
        Criterion::new(
            "document.response_schemas",
            title,
            Outcome::Fail,
            vec![
                format!("{} of {} operations do not", missing.len(), ops.len()),
                listed(&missing),
            ],
        )
    }
}

/// The collection a path belongs to: the path without its trailing
/// parameters (`/crimes/{ref}` → `/crimes`).
fn collection(path: &str) -> String {
    let mut parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    while parts.last().is_some_and(|p| p.starts_with('{')) {
        parts.pop();
    }
    let joined = parts.join("/");
    if joined.is_empty() {
        "/".into()
    } else {
        joined
    }
}

/// The document's entities and the operations that retrieve and deposit them.
pub fn entities(doc: &Document) -> BTreeMap<String, EntityOps> {
    let mut out: BTreeMap<String, EntityOps> = BTreeMap::new();
    for (name, path, method, op) in operations(doc) {
        let entity = out.entry(collection(&path)).or_default();
        match method.as_str() {
            "get" if success(doc, &op).is_some_and(|(_, r)| json_schema(doc, r).is_some()) => {
                entity.retrieve.push(name);
            }
            "post" | "put" | "patch" => {
                match op.get("requestBody").map(|b| request_media(doc, b)) {
                    Some(Some(media)) if media.contains("json") => entity.deposit.push(name),
                    Some(Some(media)) => entity.deposit.push(format!("{name} ({media})")),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    out.retain(|_, e| !e.retrieve.is_empty() || !e.deposit.is_empty());
    out
}

fn bidirectional(doc: &Document) -> Criterion {
    let entities = entities(doc);
    let mut both = Vec::new();
    let mut read_only = Vec::new();
    let mut write_only = Vec::new();
    for (path, ops) in &entities {
        match (ops.retrieve.is_empty(), ops.deposit.is_empty()) {
            (false, false) => both.push(format!(
                "{path}: retrieve {}; deposit {}",
                ops.retrieve.join(", "),
                ops.deposit.join(", ")
            )),
            (false, true) => read_only.push(path.clone()),
            (true, false) => write_only.push(path.clone()),
            (true, true) => {}
        }
    }
    let mut evidence = Vec::new();
    evidence.push(format!(
        "{} entities: {} bi-directional, {} read-only, {} write-only",
        entities.len(),
        both.len(),
        read_only.len(),
        write_only.len()
    ));
    evidence.extend(both.iter().take(MOST_LISTED).cloned());
    if both.len() > MOST_LISTED {
        evidence.push(format!(
            "and {} more bi-directional",
            both.len() - MOST_LISTED
        ));
    }
    if !read_only.is_empty() {
        evidence.push(format!("read-only: {}", listed(&read_only)));
    }
    if !write_only.is_empty() {
        evidence.push(format!("write-only: {}", listed(&write_only)));
    }
    let outcome = if both.is_empty() {
        evidence.push(
            "no entity can be both retrieved (GET with a JSON answer) and deposited (POST, PUT or PATCH with a request schema)".into(),
        );
        Outcome::Fail
    } else {
        Outcome::Pass
    };
    Criterion::new(
        "interface.bidirectional",
        "Entities can be retrieved and deposited through documented operations",
        outcome,
        evidence,
    )
}

#[cfg(test)]
mod tests {
    use super::collection;

    #[test]
    fn collections() {
        assert_eq!(collection("/crimes/{ref}"), "/crimes");
        assert_eq!(collection("/crimes"), "/crimes");
        assert_eq!(collection("/incidents/{urn}/log"), "/incidents/{urn}/log");
        assert_eq!(collection("/{id}"), "/");
    }
}
