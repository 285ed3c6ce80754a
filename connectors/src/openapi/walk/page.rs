//! Fetching and reading one page: the request (a missing key answered with
//! 404 is no row, where the document says so), the records and what the page
//! says about the next (cursor, next link, total, signs that more follow),
//! their decoding against the documented schema, and sending the batch.

use std::fmt;

use arrow::array::RecordBatch;
use datafusion::error::Result as DFResult;
use reqwest::Url;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Scan, next_link};
use crate::openapi::discovery::{
    CURSOR_FIELDS, CURSOR_HEADERS, CursorAt, NEXT_LINK_FIELDS, Pagination, RecordsAt,
};
use crate::openapi::exec::abbreviate;
use crate::openapi::requests::RequestSet;

/// What one page said about the next.
pub(in crate::openapi) struct PageInfo {
    pub(super) records: usize,
    pub(super) next_cursor: Option<String>,
    pub(super) next_url: Option<String>,
    pub(super) total: Option<u64>,
    /// The last record's key, for [`Pagination::AfterLast`].
    pub(super) last_key: Option<String>,
    /// What on the page says more records follow (`has_more is true`), if anything.
    pub(super) more: Option<String>,
    /// A fingerprint of the page's records, to tell a repeated page.
    pub(super) fingerprint: Option<u64>,
}

impl Scan {
    pub(super) async fn page(
        &self,
        url: &Url,
        number: usize,
        set: &RequestSet,
        tx: &mpsc::Sender<DFResult<RecordBatch>>,
        remaining: &mut Option<usize>,
    ) -> DFResult<PageInfo> {
        let fetched = match self
            .client
            .get_json(url, &self.table.endpoint(), self.identity.as_ref())
            .await
        {
            Ok(fetched) => fetched,
            // A lookup by a key that does not exist, where the document says
            // such a key is answered with 404: no row.
            Err(e) if e.status == Some(404) && self.table.missing_is_empty => {
                return Ok(PageInfo {
                    records: 0,
                    next_cursor: None,
                    next_url: None,
                    total: None,
                    last_key: None,
                    more: None,
                    fingerprint: None,
                });
            }
            Err(e) => return Err(self.fetch_error(e)),
        };
        self.emit(fetched, number, set, tx, remaining).await
    }

    /// Decodes one fetched page and sends its rows.
    pub(super) async fn emit(
        &self,
        fetched: crate::openapi::client::Fetched,
        number: usize,
        set: &RequestSet,
        tx: &mpsc::Sender<DFResult<RecordBatch>>,
        remaining: &mut Option<usize>,
    ) -> DFResult<PageInfo> {
        let endpoint = self.table.endpoint();
        self.counters.requests.add(fetched.attempts as usize);
        self.counters.pages.add(1);
        self.counters.bytes.add(fetched.body.len());
        let body_bytes = fetched.body.len() as u64;
        let (mut records, info) = self.split(fetched.json, &fetched.headers, number)?;
        let count = records.len();
        self.client.metrics().fetched(count as u64, body_bytes);
        bluelamp_engine::ops::trace::record_records(&fetched.span, count);
        if let Some(r) = remaining.as_mut() {
            records.truncate(*r);
            *r -= records.len();
        }
        if records.is_empty() {
            return Ok(PageInfo {
                records: count,
                ..info
            });
        }
        for record in &mut records {
            let Some(object) = record.as_object_mut() else {
                return Err(self.error(
                    format!("{endpoint}: page {number} has a record that is not an object"),
                    false,
                ));
            };
            // A path column is never a field of the records (discovery
            // names it apart), so the value the path was read with is its value.
            for (column, value) in &set.path_values {
                object.insert(column.clone(), Value::String(value.clone()));
            }
            for (field, shape) in &self.table.columns {
                if let Some(v) = object.get_mut(field.name()) {
                    shape.prepare(v);
                }
            }
        }
        let batch = self.decode(&records, number)?;
        self.counters.records.add(batch.num_rows());
        let batch = match &self.projection {
            Some(p) => batch.project(p)?,
            None => batch,
        };
        // A closed channel means the consumer has gone: stop quietly.
        let _ = tx.send(Ok(batch)).await;
        Ok(PageInfo {
            records: count,
            ..info
        })
    }

    fn split(
        &self,
        body: Value,
        headers: &reqwest::header::HeaderMap,
        number: usize,
    ) -> DFResult<(Vec<Value>, PageInfo)> {
        let endpoint = self.table.endpoint();
        let mut info = PageInfo {
            records: 0,
            next_cursor: None,
            next_url: None,
            total: None,
            last_key: None,
            more: None,
            fingerprint: None,
        };
        let pagination = &self.table.pagination;
        let next_in_link_header = headers
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_link);
        match pagination {
            Pagination::LinkHeader => info.next_url = next_in_link_header,
            _ if next_in_link_header.is_some() => {
                info.more = Some("its Link header has rel=\"next\"".into());
            }
            _ => {}
        }
        for name in CURSOR_HEADERS {
            let value = headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.trim().is_empty());
            let Some(value) = value else { continue };
            match pagination {
                Pagination::Cursor {
                    field: CursorAt::Header(h),
                    ..
                } if h.eq_ignore_ascii_case(name) => info.next_cursor = Some(value.to_string()),
                Pagination::Cursor { .. } | Pagination::NextLink { .. } => {}
                _ => info.more = Some(format!("its {name} header is set")),
            }
        }
        let records = match (&self.table.records, body) {
            (RecordsAt::Root, Value::Array(items)) => items,
            (RecordsAt::Object, Value::Object(object)) => vec![Value::Object(object)],
            (RecordsAt::Field(name), Value::Object(mut object)) => {
                match pagination {
                    Pagination::Cursor {
                        field: CursorAt::Body(field),
                        ..
                    } => info.next_cursor = text(object.get(field)),
                    Pagination::NextLink { field } => info.next_url = text(object.get(field)),
                    _ => {}
                }
                // `count` is often the size of this page, not a total.
                info.total = ["total", "total_count", "totalCount", "totalResults"]
                    .iter()
                    .find_map(|k| object.get(*k).and_then(Value::as_u64));
                if let Some(sign) = more_in_body(&object, pagination) {
                    info.more = Some(sign);
                }
                let items = match object.remove(name) {
                    Some(Value::Array(items)) => items,
                    Some(Value::Null) | None => {
                        return Err(self.error(format!("{endpoint}: page {number} has no '{name}' array, as the document promises"), false));
                    }
                    Some(_) => {
                        return Err(self.error(
                            format!("{endpoint}: page {number}: '{name}' is not an array"),
                            false,
                        ));
                    }
                };
                if *pagination == Pagination::None
                    && let Some(total) = info.total
                    && total > items.len() as u64
                    && info.more.is_none()
                {
                    info.more = Some(format!(
                        "it says there are {total} records and holds {}",
                        items.len()
                    ));
                }
                items
            }
            (RecordsAt::Root, _) => {
                return Err(self.error(
                    format!(
                        "{endpoint}: page {number} is not a JSON array, as the document promises"
                    ),
                    false,
                ));
            }
            (RecordsAt::Object, _) => {
                return Err(self.error(
                    format!(
                        "{endpoint}: the answer is not a JSON object, as the document promises"
                    ),
                    false,
                ));
            }
            (RecordsAt::Field(name), _) => {
                return Err(self.error(format!("{endpoint}: page {number} is not a JSON object with '{name}', as the document promises"), false));
            }
        };
        if let Pagination::AfterLast { key, .. } = pagination {
            info.last_key = records.last().and_then(|r| text(r.get(key)));
        }
        if !records.is_empty() {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            for record in &records {
                record.to_string().hash(&mut hasher);
            }
            info.fingerprint = Some(hasher.finish());
        }
        Ok((records, info))
    }

    fn decode(&self, records: &[Value], number: usize) -> DFResult<RecordBatch> {
        let endpoint = self.table.endpoint();
        let wrong = |e: &dyn fmt::Display| {
            self.error(
                format!("{endpoint}: page {number} has a record that does not match the documented schema: {e}"),
                false,
            )
        };
        crate::openapi::schema::decode(&self.full_schema, records).map_err(|e| wrong(&e))
    }
}

/// A string, number or other scalar as text; `None` for null or missing.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(_) | Value::Object(_) => None,
        other => Some(other.to_string()),
    }
}

/// What in a page's body says more records follow that `pagination` does
/// not itself follow: `has_more: true`, a next link or cursor it does not read.
fn more_in_body(
    object: &serde_json::Map<String, Value>,
    pagination: &Pagination,
) -> Option<String> {
    for flag in ["has_more", "hasMore", "more", "has_next", "hasNext"] {
        if object.get(flag) == Some(&Value::Bool(true)) {
            return Some(format!("{flag} is true"));
        }
    }
    if matches!(
        pagination,
        Pagination::Cursor { .. } | Pagination::NextLink { .. }
    ) {
        return None;
    }
    // Set, any next link or cursor says another page exists.
    let next_signs = NEXT_LINK_FIELDS
        .iter()
        .chain(CURSOR_FIELDS)
        .chain(&["@odata.nextLink"]);
    for field in next_signs {
        if let Some(v) = text(object.get(*field)).filter(|v| !v.is_empty()) {
            return Some(format!("'{field}' is {}", abbreviate(&v)));
        }
    }
    // `links: {next: ...}`, `_links: {next: {href: ...}}`, `paging: {next: ...}`.
    for holder in ["links", "_links", "paging", "pagination", "meta"] {
        let next = object.get(holder).and_then(|h| h.get("next"));
        let next = next
            .and_then(|n| n.get("href"))
            .or(next)
            .and_then(|n| text(Some(n)));
        if let Some(v) = next.filter(|v| !v.is_empty()) {
            return Some(format!("'{holder}.next' is {}", abbreviate(&v)));
        }
    }
    None
}
