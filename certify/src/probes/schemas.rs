//! The raw first page of each list, every record checked against the
//! documented item schema (types, formats, enums, required, nullability),
//! and the fields no schema names: read beneath the policy, so what the
//! source really answers is compared with what its document promises.

use bluelamp_connectors::openapi::discovery::{RecordsAt, TableSpec};
use bluelamp_connectors::openapi::write::{check_fields, compile_fields};
use serde_json::Value;

use super::Probes;

impl Probes {
    /// The first page of each list, read raw, each record checked against
    /// the documented item schema (types, formats, enums, required,
    /// nullability): the offending records, and the fields no schema names.
    pub(crate) async fn sample_schemas(&self, tables: &[&TableSpec]) -> (Vec<String>, Vec<String>) {
        let mut bad = Vec::new();
        let mut undocumented = Vec::new();
        let doc = &self.opened.doc;
        for table in tables {
            let Some(op) = self.operation("get", &table.path) else {
                continue;
            };
            let Some(schema) = crate::published::success(doc, &op.operation)
                .and_then(|(_, r)| crate::published::json_schema(doc, r))
            else {
                continue;
            };
            let items = match &table.records {
                RecordsAt::Root => doc.resolve(schema).ok().and_then(|(s, _)| s.get("items")),
                RecordsAt::Field(f) => doc
                    .resolve(schema)
                    .ok()
                    .and_then(|(s, _)| {
                        s.pointer(&format!(
                            "/properties/{}",
                            f.replace('~', "~0").replace('/', "~1")
                        ))
                    })
                    .and_then(|p| doc.resolve(p).ok())
                    .and_then(|(p, _)| p.get("items")),
                RecordsAt::Object => Some(schema),
            };
            let Some(items) = items else {
                continue;
            };
            let mut warnings = Vec::new();
            let fields = compile_fields(doc, items, &table.endpoint(), &mut warnings, 0);
            if fields.is_empty() {
                continue;
            }
            let Ok(url) = self.url(&table.path, &[]) else {
                continue;
            };
            if let Err(e) = self
                .recorded(&format!("{}: first page, raw", table.endpoint()), 1, false)
                .await
            {
                bad.push(e);
                continue;
            }
            let page = match self
                .opened
                .client
                .get_json(&url, &table.endpoint(), None)
                .await
            {
                Ok(page) => page.json,
                Err(e) => {
                    bad.push(e.message);
                    continue;
                }
            };
            let records: Vec<&Value> = match &table.records {
                RecordsAt::Root => page
                    .as_array()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default(),
                RecordsAt::Field(f) => page
                    .get(f)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().collect())
                    .unwrap_or_default(),
                RecordsAt::Object => vec![&page],
            };
            let known: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            let mut extra: Vec<String> = Vec::new();
            let mut first_bad: Option<String> = None;
            let mut bad_count = 0usize;
            for (i, record) in records.iter().enumerate() {
                let Some(object) = record.as_object() else {
                    bad_count += 1;
                    first_bad.get_or_insert_with(|| format!("record {} is not an object", i + 1));
                    continue;
                };
                let problems = check_fields(&fields, object);
                if !problems.is_empty() {
                    bad_count += 1;
                    first_bad.get_or_insert_with(|| {
                        format!(
                            "record {} of the first page: {}",
                            i + 1,
                            problems.join("; ")
                        )
                    });
                }
                for key in object.keys() {
                    if !known.contains(&key.as_str()) && !extra.contains(key) {
                        extra.push(key.clone());
                    }
                }
            }
            if let Some(first) = first_bad {
                bad.push(format!(
                    "{}: {bad_count} of {} records on the first page do not match the documented schema; {first}",
                    table.endpoint(),
                    records.len()
                ));
            }
            if !extra.is_empty() {
                undocumented.push(format!(
                    "{}: fields the schema does not document: {}",
                    table.endpoint(),
                    extra.join(", ")
                ));
            }
        }
        (bad, undocumented)
    }
}
