//! An operation's parameters as discovery reads them: those of its path item
//! and its own (which win), `$ref`s followed, with their schemas, `x-filter`
//! extensions, descriptions and whether they are required.

use serde_json::Value;

use crate::openapi::spec::Document;

#[derive(Debug, Clone)]
pub(super) struct Param {
    pub(super) name: String,
    pub(super) location: String,
    pub(super) schema: Value,
    pub(super) extension: Option<Value>,
    pub(super) description: Option<String>,
    pub(super) required: bool,
}

pub(super) fn parameters(doc: &Document, item: &Value, operation: &Value) -> Vec<Param> {
    let mut out: Vec<Param> = Vec::new();
    for source in [item.get("parameters"), operation.get("parameters")] {
        for raw in source.and_then(Value::as_array).into_iter().flatten() {
            let Ok((p, _)) = doc.resolve(raw) else {
                continue;
            };
            let (Some(name), Some(location)) = (
                p.get("name").and_then(Value::as_str),
                p.get("in").and_then(Value::as_str),
            ) else {
                continue;
            };
            let schema = p
                .get("schema")
                .map(|s| {
                    doc.resolve(s)
                        .map(|(s, _)| s.clone())
                        .unwrap_or(Value::Null)
                })
                .unwrap_or(Value::Null);
            out.retain(|existing| !(existing.name == name && existing.location == location));
            out.push(Param {
                name: name.to_string(),
                location: location.to_string(),
                schema,
                extension: p.get("x-filter").cloned(),
                description: p
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                required: p.get("required").and_then(Value::as_bool).unwrap_or(false),
            });
        }
    }
    out
}
