//! `deposit.round_trip` (only with `--allow-writes`, against a test or
//! sandbox system): a record built from the documented request schema is
//! accepted with a documented status and can then be retrieved with the
//! same values; a record missing a required field is refused with a
//! documented error; with a documented idempotency key, a replay stores
//! nothing twice. Also the building of that record: values from the
//! schema, from a row the list already holds, and a unique marker.

use bluelamp_connectors::openapi::discovery::{FilterOp, TableSpec};
use bluelamp_connectors::openapi::write::{BodyField, Rule, WriteSpec};
use bluelamp_engine::Session;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Probes, documented, listed};
use crate::live::{quoted, rows};
use crate::report::{Criterion, Outcome};

impl Probes {
    /// `deposit.round_trip` for the first table in `tables` that can be both
    /// deposited into and read.
    pub(crate) async fn round_trip(
        &mut self,
        session: &Session,
        source: &str,
        tables: &[TableSpec],
    ) -> Criterion {
        let title = "A deposited record is stored once and retrievable with the same values";
        let Some((table, write)) = tables.iter().find_map(|t| {
            let w = t.write.as_ref()?;
            (t.readable && t.path_params.is_empty() && w.path_params.is_empty())
                .then(|| (t.clone(), std::sync::Arc::clone(w)))
        }) else {
            return Criterion::new(
                "deposit.round_trip",
                title,
                Outcome::NotApplicable,
                vec!["no list can be both deposited into (POST on its path) and read back".into()],
            );
        };
        let Some(op) = self.operation("post", &write.path) else {
            return Criterion::new(
                "deposit.round_trip",
                title,
                Outcome::NotApplicable,
                vec![format!("{} is not in the document", write.endpoint())],
            );
        };
        let codes = documented(&op);
        let sample = sample_row(session, source, &table).await;
        let mut evidence = Vec::new();
        let mut bad = Vec::new();
        let built = build_record(&write, &sample);
        let (record, marker_field) = match built {
            Ok(r) => r,
            Err(e) => {
                return Criterion::new(
                    "deposit.round_trip",
                    title,
                    Outcome::NotApplicable,
                    vec![format!(
                        "{}: cannot build a valid record from the request schema: {e}",
                        write.endpoint()
                    )],
                );
            }
        };
        // 1. A valid record: accepted, then retrievable with the same values.
        match self.deposit(&write, &record, &codes, None).await {
            Err(e) => bad.push(e),
            Ok((status, answer)) => {
                evidence.push(format!(
                    "{} of {}: {status}",
                    write.endpoint(),
                    Value::Object(record.clone())
                ));
                match self
                    .read_back(
                        session,
                        source,
                        &table,
                        &write,
                        &record,
                        &answer,
                        &marker_field,
                    )
                    .await
                {
                    Ok(line) => evidence.push(line),
                    Err(e) => bad.push(e),
                }
            }
        }
        // 2. A record without a required field: refused, as documented.
        if let Some(required) = write
            .fields
            .iter()
            .find(|f| f.required && f.name != marker_field && record.contains_key(&f.name))
        {
            let mut invalid = record.clone();
            invalid.remove(&required.name);
            let url = self.url(&write.path, &[]);
            match url {
                Ok(url) => {
                    let headers = idempotency_headers(&write);
                    match self
                        .send(Method::POST, &url, Some(&Value::Object(invalid)), &headers, true)
                        .await
                    {
                        Ok(a) if (400..500).contains(&a.status) && a.status != 429 && listed(&codes, a.status) => {
                            evidence.push(format!(
                                "the same record without required '{}' was refused: {}, as documented",
                                required.name, a.status
                            ));
                        }
                        Ok(a) if a.status < 300 => bad.push(format!(
                            "{}: a record without required '{}' was accepted ({}); it may now be stored",
                            write.endpoint(),
                            required.name,
                            a.status
                        )),
                        Ok(a) => bad.push(format!(
                            "{}: a record without required '{}' answered {}, which the document does not list (it lists {})",
                            write.endpoint(),
                            required.name,
                            a.status,
                            codes.join(", ")
                        )),
                        Err(e) => bad.push(e),
                    }
                }
                Err(e) => bad.push(e),
            }
        }
        // 3. With a documented idempotency key, a replay stores nothing twice.
        if let Some(header) = write.idempotency_header.clone() {
            match build_record(&write, &sample) {
                Ok((again, _)) => {
                    let key = format!("bluelamp-certify-{}", marker());
                    let first = self
                        .deposit(&write, &again, &codes, Some((&header, &key)))
                        .await;
                    let second = self
                        .deposit(&write, &again, &codes, Some((&header, &key)))
                        .await;
                    match (first, second) {
                        (Ok(_), Ok(_)) => {
                            let marker_value = again
                                .get(&marker_field)
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            let sql = format!(
                                "SELECT count(*) FROM {}.{} WHERE {} = '{}'",
                                quoted(source),
                                quoted(&table.name),
                                quoted(&marker_field),
                                marker_value.replace('\'', "''")
                            );
                            match rows(session, &sql).await {
                                Ok(r) if r.first().and_then(|r| r.first()).map(String::as_str) == Some("1") => {
                                    evidence.push(format!(
                                        "the same record sent twice with {header}: {key}: stored once"
                                    ));
                                }
                                Ok(r) => bad.push(format!(
                                    "{}: the same record sent twice with {header}: {key} is stored {} times",
                                    write.endpoint(),
                                    r.first().and_then(|r| r.first()).cloned().unwrap_or_default()
                                )),
                                Err(e) => bad.push(format!("reading back the replayed record: {e}")),
                            }
                        }
                        (Err(e), _) | (_, Err(e)) => bad.push(format!("with {header}: {e}")),
                    }
                }
                Err(e) => bad.push(e),
            }
        } else {
            evidence.push(format!(
                "{} documents no idempotency key, so a retried deposit could be stored twice",
                write.endpoint()
            ));
        }
        if bad.is_empty() {
            evidence.insert(0, "records were deposited for real: run --allow-writes only against a test or sandbox system".into());
            Criterion::new("deposit.round_trip", title, Outcome::Pass, evidence)
        } else {
            Criterion::new("deposit.round_trip", title, Outcome::Fail, bad)
        }
    }

    /// POSTs `record`; its status and answer where the status is a
    /// documented success.
    async fn deposit(
        &mut self,
        write: &WriteSpec,
        record: &Map<String, Value>,
        codes: &[String],
        key: Option<(&str, &str)>,
    ) -> Result<(u16, Value), String> {
        let url = self.url(&write.path, &[])?;
        let headers: Vec<(&str, String)> = match key {
            Some((h, k)) => vec![(h, k.to_string())],
            None => idempotency_headers(write),
        };
        let answer = self
            .send(
                Method::POST,
                &url,
                Some(&Value::Object(record.clone())),
                &headers,
                true,
            )
            .await?;
        let body = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if answer.status >= 300 {
            let listed_note = if listed(codes, answer.status) {
                String::new()
            } else {
                format!(
                    ", which the document does not list (it lists {})",
                    codes.join(", ")
                )
            };
            return Err(format!(
                "{}: a valid record was not accepted: {}{listed_note}: {}",
                write.endpoint(),
                answer.status,
                String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
        if !listed(codes, answer.status) {
            return Err(format!(
                "{}: answered {}, which the document does not list (it lists {})",
                write.endpoint(),
                answer.status,
                codes.join(", ")
            ));
        }
        Ok((answer.status, body))
    }

    /// Reads the deposited record back through SQL, by what the supplier
    /// assigned (where a filter reaches it) or by its unique marker, and
    /// compares every deposited field that the table has.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site; the parts of one check"
    )]
    async fn read_back(
        &self,
        session: &Session,
        source: &str,
        table: &TableSpec,
        write: &WriteSpec,
        record: &Map<String, Value>,
        answer: &Value,
        marker_field: &str,
    ) -> Result<String, String> {
        let assigned = write.identifier.as_ref().and_then(|f| {
            let value = answer.get(f)?.as_str()?.to_string();
            let trusted = !self
                .untrusted
                .iter()
                .any(|(t, c)| *t == table.name && c == f);
            (trusted
                && table
                    .filters
                    .iter()
                    .any(|p| p.column == *f && p.op == FilterOp::Eq))
            .then(|| (f.clone(), value))
        });
        let (key, value) = match assigned {
            Some(pair) => pair,
            None => (
                marker_field.to_string(),
                record
                    .get(marker_field)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
        };
        let columns: Vec<&str> = table
            .columns
            .iter()
            .map(|(f, _)| f.name().as_str())
            .collect();
        let compared: Vec<(&String, &Value)> = record
            .iter()
            .filter(|(k, _)| columns.contains(&k.as_str()))
            .collect();
        let checks: Vec<String> = compared
            .iter()
            .map(|(k, v)| match v {
                Value::Null => format!("{} IS NULL", quoted(k)),
                Value::String(s) => format!("{} = '{}'", quoted(k), s.replace('\'', "''")),
                other => format!("{} = {other}", quoted(k)),
            })
            .collect();
        let sql = format!(
            "SELECT {}, {} FROM {}.{} WHERE {} = '{}'",
            checks
                .iter()
                .map(|c| format!("({c})"))
                .collect::<Vec<_>>()
                .join(", "),
            compared
                .iter()
                .map(|(k, _)| format!("CAST({} AS VARCHAR)", quoted(k)))
                .collect::<Vec<_>>()
                .join(", "),
            quoted(source),
            quoted(&table.name),
            quoted(&key),
            value.replace('\'', "''")
        );
        let found = rows(session, &sql)
            .await
            .map_err(|e| format!("reading back the deposit: {e}"))?;
        let retrieve = format!("{}?{key}={value}", table.endpoint());
        match found.as_slice() {
            [] => Err(format!(
                "{} accepted the record ({key} {value}) but {retrieve} does not return it",
                write.endpoint()
            )),
            [row] => {
                let n = compared.len();
                let differ: Vec<String> = compared
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| row[*i] != "true")
                    .map(|(i, (k, v))| format!("{k}: sent {v}, read back {}", row[n + i]))
                    .collect();
                if differ.is_empty() {
                    Ok(format!(
                        "{retrieve} returns it with the same values in all {n} fields the list has"
                    ))
                } else {
                    Err(format!(
                        "{retrieve} returns the record with other values: {}",
                        differ.join("; ")
                    ))
                }
            }
            more => Err(format!(
                "{retrieve} returns {} records for one deposit",
                more.len()
            )),
        }
    }
}

/// The idempotency header with a fresh key, where the write documents one.
fn idempotency_headers(write: &WriteSpec) -> Vec<(&str, String)> {
    write
        .idempotency_header
        .as_deref()
        .map(|h| vec![(h, format!("bluelamp-certify-{}", marker()))])
        .unwrap_or_default()
}

/// Eight random hex digits, to make a deposited record findable.
fn marker() -> String {
    let mut bytes = [0u8; 4];
    // Without randomness the time still makes it unique enough.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One record the list already holds, as column → text, to take values
/// whose pattern cannot be made up (a reference the system checks).
async fn sample_row(session: &Session, source: &str, table: &TableSpec) -> Vec<(String, String)> {
    let names: Vec<String> = table
        .columns
        .iter()
        .map(|(f, _)| f.name().clone())
        .collect();
    let sql = format!(
        "SELECT {} FROM {}.{} LIMIT 1",
        names
            .iter()
            .map(|n| format!("CAST({} AS VARCHAR)", quoted(n)))
            .collect::<Vec<_>>()
            .join(", "),
        quoted(source),
        quoted(&table.name)
    );
    match rows(session, &sql).await {
        Ok(found) => found
            .into_iter()
            .next()
            .map(|row| names.into_iter().zip(row).collect())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// A record valid under the request schema: enums take their first value,
/// dates now, patterned text a sample's value that matches, and one free
/// text field a unique marker (returned with the record) to find it again.
fn build_record(
    write: &WriteSpec,
    sample: &[(String, String)],
) -> Result<(Map<String, Value>, String), String> {
    let marker_field = write
        .fields
        .iter()
        .find(|f| {
            f.required
                && matches!(&f.rule, Rule::Text { format: None, values: None, pattern: None, max, .. } if max.is_none_or(|m| m >= 30))
        })
        .or_else(|| {
            write.fields.iter().find(|f| {
                matches!(&f.rule, Rule::Text { format: None, values: None, pattern: None, max, .. } if max.is_none_or(|m| m >= 30))
            })
        })
        .map(|f| f.name.clone())
        .ok_or("no free-text field to mark the record with, so it could not be found again")?;
    let mark = format!("Bluelamp certification {}", marker());
    let mut record = Map::new();
    for field in &write.fields {
        let value = if field.name == marker_field {
            Some(Value::String(mark.clone()))
        } else {
            value_for(field, sample)
        };
        match value {
            Some(v) => {
                record.insert(field.name.clone(), v);
            }
            None if field.required => {
                return Err(format!(
                    "no value can be made for required '{}'",
                    field.name
                ));
            }
            None => {}
        }
    }
    // Optional fields whose made-up value the schema refuses are left out.
    for problem in write.check(&record) {
        let field = problem.split(':').next().unwrap_or_default().to_string();
        let required = write.fields.iter().any(|f| f.name == field && f.required);
        if required {
            return Err(problem);
        }
        record.remove(&field);
    }
    let left = write.check(&record);
    if let Some(problem) = left.first() {
        return Err(problem.clone());
    }
    Ok((record, marker_field))
}

fn value_for(field: &BodyField, sample: &[(String, String)]) -> Option<Value> {
    let sampled = sample
        .iter()
        .find(|(k, v)| *k == field.name && v != "NULL")
        .map(|(_, v)| v.clone());
    match &field.rule {
        Rule::Text {
            values: Some(values),
            ..
        } => values.first().cloned().map(Value::String),
        Rule::Text {
            format: Some(f), ..
        } if f == "date-time" => Some(json!(
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        Rule::Text {
            format: Some(f), ..
        } if f == "date" => Some(json!(chrono::Utc::now().date_naive().to_string())),
        Rule::Text {
            pattern: Some((_, regex)),
            ..
        } => sampled.filter(|s| regex.is_match(s)).map(Value::String),
        Rule::Text { min, max, .. } => {
            let mut text = sampled.unwrap_or_else(|| "certification".to_string());
            if let Some(max) = max {
                text = text.chars().take(*max).collect();
            }
            while min.is_some_and(|m| text.chars().count() < m) {
                text.push('x');
            }
            Some(Value::String(text))
        }
        Rule::Integer => Some(json!(
            sampled.and_then(|s| s.parse::<i64>().ok()).unwrap_or(1)
        )),
        Rule::Number => Some(json!(
            sampled.and_then(|s| s.parse::<f64>().ok()).unwrap_or(1.0)
        )),
        Rule::Boolean => Some(json!(false)),
        Rule::Array(_) => Some(json!([])),
        Rule::Object(fields) => {
            let mut object = Map::new();
            for f in fields {
                if let Some(v) = value_for(f, &[]) {
                    object.insert(f.name.clone(), v);
                } else if f.required {
                    return None;
                }
            }
            Some(Value::Object(object))
        }
        Rule::Any => None,
    }
}
