//! Walking an endpoint's pages: the task behind each `OpenApiExec` scan.
//!
//! [`ScanStream`] starts the task on its first poll and stops it when
//! dropped; [`Scan::walk`] follows the table's pagination style (offset,
//! page number, cursor in the body or a header, `Link` header, after-last
//! key), decodes each page against the documented schema and refuses a walk
//! that loops or comes up short, so a query never answers with rows missing.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::physical_plan::metrics::Count;
use futures::{Stream, StreamExt};
use reqwest::Url;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::client::{ApiClient, FetchError, Identity};
use super::discovery::{
    CURSOR_FIELDS, CURSOR_HEADERS, CursorAt, NEXT_LINK_FIELDS, Pagination, RecordsAt, TableSpec,
};
use super::exec::abbreviate;
use super::requests::RequestSet;

pub(super) type Start =
    Box<dyn FnOnce() -> (mpsc::Receiver<DFResult<RecordBatch>>, JoinSet<()>) + Send>;

/// The receiving end of a scan: starts the fetching task on first poll, and
/// dropping it stops the task (a `JoinSet` aborts its tasks when dropped). A
/// task that dies ends the scan with an error naming the source, never a
/// short answer that looks complete.
pub(super) struct ScanStream {
    pub(super) start: Option<Start>,
    pub(super) rx: Option<mpsc::Receiver<DFResult<RecordBatch>>>,
    pub(super) task: Option<JoinSet<()>>,
    pub(super) source: String,
}

impl Stream for ScanStream {
    type Item = DFResult<RecordBatch>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if let Some(start) = self.start.take() {
            let (rx, task) = start();
            self.rx = Some(rx);
            self.task = Some(task);
        }
        let Some(rx) = self.rx.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        if let Some(item) = std::task::ready!(rx.poll_recv(cx)) {
            return std::task::Poll::Ready(Some(item));
        }
        // The channel closed: the task has ended; did it finish?
        let Some(task) = self.task.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let outcome = std::task::ready!(task.poll_join_next(cx));
        self.rx = None;
        self.task = None;
        std::task::Poll::Ready(outcome.and_then(Result::err).map(|e| {
            tracing::error!("the scan of source {} failed: {e}", self.source);
            Err(super::source_error(
                &self.source,
                "the scan stopped unexpectedly".into(),
                false,
            ))
        }))
    }
}

pub(super) struct Counters {
    pub(super) requests: Count,
    pub(super) pages: Count,
    pub(super) bytes: Count,
    pub(super) records: Count,
    pub(super) lookups: Count,
}

pub(super) struct Scan {
    pub(super) source: String,
    pub(super) table: Arc<TableSpec>,
    pub(super) client: Arc<ApiClient>,
    pub(super) identity: Option<Identity>,
    pub(super) base: Url,
    pub(super) full_schema: SchemaRef,
    pub(super) projection: Option<Vec<usize>>,
    pub(super) limit: Option<usize>,
    pub(super) page_size: Option<u64>,
    pub(super) counters: Counters,
}

/// What one page said about the next.
pub(super) struct PageInfo {
    records: usize,
    next_cursor: Option<String>,
    next_url: Option<String>,
    total: Option<u64>,
    /// The last record's key, for [`Pagination::AfterLast`].
    last_key: Option<String>,
    /// What on the page says more records follow (`has_more is true`), if anything.
    more: Option<String>,
    /// A fingerprint of the page's records, to tell a repeated page.
    fingerprint: Option<u64>,
}

const DEFAULT_PAGE: u64 = 100;

impl Scan {
    pub(super) fn error(&self, message: String, unavailable: bool) -> DataFusionError {
        super::source_error(&self.source, message, unavailable)
    }

    fn fetch_error(&self, e: FetchError) -> DataFusionError {
        self.error(e.message, e.unavailable)
    }

    fn url(&self, set: &RequestSet, extra: &[(String, String)]) -> DFResult<Url> {
        let base = self.base.as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}{}", set.path))
            .map_err(|e| self.error(format!("{}: bad URL: {e}", self.table.endpoint()), false))?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in set.query.iter().chain(extra) {
                pairs.append_pair(k, v);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    fn page_size(&self, remaining: Option<usize>, max: Option<u64>) -> u64 {
        let wanted = self.page_size.or(max).unwrap_or(DEFAULT_PAGE);
        let capped = max.map_or(wanted, |m| wanted.min(m));
        match remaining {
            Some(r) => capped.min(r.max(1) as u64),
            None => capped,
        }
    }

    /// The parameters of a page after a token (a cursor, a last key): the
    /// page size where the interface takes one, and the token after the first.
    fn token_params(
        &self,
        size: &Option<String>,
        max: Option<u64>,
        remaining: Option<usize>,
        param: &str,
        token: &Option<String>,
    ) -> Vec<(String, String)> {
        let mut extra = Vec::new();
        if let Some(size) = size {
            extra.push((size.clone(), self.page_size(remaining, max).to_string()));
        }
        if let Some(token) = token {
            extra.push((param.to_string(), token.clone()));
        }
        extra
    }

    pub(super) async fn walk(
        &self,
        set: &RequestSet,
        tx: &mpsc::Sender<DFResult<RecordBatch>>,
        remaining: &mut Option<usize>,
    ) -> DFResult<()> {
        let endpoint = self.table.endpoint();
        match &self.table.pagination {
            Pagination::None => {
                let url = self.url(set, &[])?;
                let info = self.page(&url, 1, set, tx, remaining).await?;
                return self.ended(&info, 1, remaining);
            }
            Pagination::Offset { offset, limit, max } => {
                let size = self.page_size(*remaining, *max);
                let first = self.url(
                    set,
                    &[
                        (offset.clone(), "0".into()),
                        (limit.clone(), size.to_string()),
                    ],
                )?;
                let info = self.page(&first, 1, set, tx, remaining).await?;
                match info.total {
                    // The total says which pages exist: fetch them concurrently, in order.
                    Some(total) if info.records > 0 => {
                        let step = info.records as u64;
                        let offsets: Vec<u64> =
                            (1..).map(|n| n * step).take_while(|o| *o < total).collect();
                        let mut pages =
                            futures::stream::iter(offsets.into_iter().enumerate().map(|(i, o)| {
                                let url = self.url(
                                    set,
                                    &[
                                        (offset.clone(), o.to_string()),
                                        (limit.clone(), step.to_string()),
                                    ],
                                );
                                let endpoint = endpoint.clone();
                                async move {
                                    let url = url?;
                                    let fetched = self
                                        .client
                                        .get_json(&url, &endpoint, self.identity.as_ref())
                                        .await
                                        .map_err(|e| self.fetch_error(e))?;
                                    Ok::<_, DataFusionError>((i + 2, fetched))
                                }
                            }))
                            .buffered(4);
                        let mut received = step;
                        while let Some(result) = pages.next().await {
                            if *remaining == Some(0) {
                                return Ok(());
                            }
                            let (number, fetched) = result?;
                            received += self
                                .emit(fetched, number, set, tx, remaining)
                                .await?
                                .records as u64;
                        }
                        // The offsets assumed full pages: one that held fewer
                        // leaves records between it and the next unread.
                        if received < total && *remaining != Some(0) {
                            return Err(self.error(
                                format!(
                                    "{endpoint}: the answer says there are {total} records but its pages held {received}: a page held fewer than the {step} the first did, so records after it were never asked for; the query was stopped rather than return part of the answer"
                                ),
                                true,
                            ));
                        }
                    }
                    _ => {
                        let mut position = info.records as u64;
                        let mut number = 1;
                        let mut last = info.records;
                        let mut seen = std::collections::HashSet::new();
                        self.not_repeated(&mut seen, &info, number)?;
                        // Without a total, only an empty page proves the end: a
                        // server may return fewer than asked for and still have more.
                        while last > 0 && *remaining != Some(0) {
                            number += 1;
                            let url = self.url(
                                set,
                                &[
                                    (offset.clone(), position.to_string()),
                                    (limit.clone(), size.to_string()),
                                ],
                            )?;
                            let next = self.page(&url, number, set, tx, remaining).await?;
                            if next.records > 0 {
                                self.not_repeated(&mut seen, &next, number)?;
                            }
                            last = next.records;
                            position += last as u64;
                        }
                    }
                }
            }
            Pagination::Page { page, size } => {
                let per_page = self.page_size(*remaining, None);
                let mut number = 1u64;
                let mut firsts = std::collections::HashSet::new();
                loop {
                    let mut extra = vec![(page.clone(), number.to_string())];
                    if let Some(size) = size {
                        extra.push((size.clone(), per_page.to_string()));
                    }
                    let url = self.url(set, &extra)?;
                    let info = self.page(&url, number as usize, set, tx, remaining).await?;
                    // Servers often cap the page size silently, so only an
                    // empty page proves the end.
                    if info.records == 0 || *remaining == Some(0) {
                        break;
                    }
                    self.not_repeated(&mut firsts, &info, number as usize)?;
                    number += 1;
                }
            }
            Pagination::Cursor {
                param, size, max, ..
            } => {
                let mut cursor: Option<String> = None;
                let mut number = 1;
                let mut seen = std::collections::HashSet::new();
                loop {
                    let extra = self.token_params(size, *max, *remaining, param, &cursor);
                    let url = self.url(set, &extra)?;
                    let info = self.page(&url, number, set, tx, remaining).await?;
                    match info.next_cursor.clone() {
                        Some(next) if !next.is_empty() && *remaining != Some(0) => {
                            if !seen.insert(next.clone()) {
                                return Err(self.error(format!("{endpoint}: page {number} gives a next cursor already used; the query was stopped rather than loop"), true));
                            }
                            cursor = Some(next)
                        }
                        _ => return self.ended(&info, number, remaining),
                    }
                    number += 1;
                }
            }
            Pagination::AfterLast {
                param,
                more,
                size,
                max,
                ..
            } => {
                let mut after: Option<String> = None;
                let mut number = 1;
                let mut seen = std::collections::HashSet::new();
                loop {
                    let extra = self.token_params(size, *max, *remaining, param, &after);
                    let url = self.url(set, &extra)?;
                    let info = self.page(&url, number, set, tx, remaining).await?;
                    if *remaining == Some(0) || info.more.is_none() {
                        return Ok(());
                    }
                    match info.last_key.clone() {
                        Some(key) if info.records > 0 && seen.insert(key.clone()) => {
                            after = Some(key);
                        }
                        _ => {
                            return Err(self.error(format!("{endpoint}: page {number} says '{more}' is true but gives no new last record to continue after; the query was stopped rather than return part of the answer"), true));
                        }
                    }
                    number += 1;
                }
            }
            Pagination::NextLink { .. } | Pagination::LinkHeader => {
                let mut url = self.url(set, &[])?;
                let mut number = 1;
                let mut seen = std::collections::HashSet::from([url.to_string()]);
                loop {
                    let info = self.page(&url, number, set, tx, remaining).await?;
                    let Some(next) = info.next_url.clone().filter(|n| !n.is_empty()) else {
                        return self.ended(&info, number, remaining);
                    };
                    if *remaining == Some(0) {
                        break;
                    }
                    if !looks_like_url(&next) {
                        return Err(self.error(format!(
                            "{endpoint}: page {number}'s next page ('{}') is not a URL; if it is a token to pass back, set [source.tables.{}] pagination = {{ style = \"cursor\", param = \"...\", field = \"...\" }}",
                            abbreviate(&next),
                            self.table.name
                        ), false));
                    }
                    let joined = url.join(&next).map_err(|e| {
                        self.error(
                            format!("{endpoint}: page {number} links to a bad next URL: {e}"),
                            false,
                        )
                    })?;
                    // The source's credentials go only where the table lives.
                    if joined.origin() != self.base.origin() {
                        return Err(self.error(
                            format!(
                                "{endpoint}: page {number}'s next page is on another host ({}); it is not followed with this source's credentials",
                                joined.origin().ascii_serialization()
                            ),
                            false,
                        ));
                    }
                    if !seen.insert(joined.to_string()) {
                        return Err(self.error(format!("{endpoint}: page {number} links back to a page already read; the query was stopped rather than loop"), true));
                    }
                    url = joined;
                    number += 1;
                }
            }
        }
        Ok(())
    }

    /// Fails when a page holds exactly the records of an earlier one: the
    /// server ignores the page parameter, and the walk would never end.
    fn not_repeated(
        &self,
        seen: &mut std::collections::HashSet<u64>,
        info: &PageInfo,
        number: usize,
    ) -> DFResult<()> {
        match info.fingerprint {
            Some(f) if !seen.insert(f) => Err(self.error(
                format!(
                    "{}: page {number} repeats an earlier page (the server ignores the page parameter?); the query was stopped rather than loop",
                    self.table.endpoint()
                ),
                true,
            )),
            _ => Ok(()),
        }
    }

    /// A walk that ran out of pages: fine unless the last page says more
    /// records follow that the table's pagination cannot reach.
    fn ended(&self, last: &PageInfo, number: usize, remaining: &Option<usize>) -> DFResult<()> {
        if *remaining == Some(0) {
            return Ok(());
        }
        match &last.more {
            Some(sign) => Err(self.error(
                format!(
                    "{}: page {number} shows there is more ({sign}) but table {} cannot ask for it; the query was stopped rather than return part of the answer. Set [source.tables.{}] pagination (style = \"offset\", \"page\", \"cursor\", \"next_link\" or \"link_header\") to read every page",
                    self.table.endpoint(),
                    self.table.name,
                    self.table.name
                ),
                false,
            )),
            None => Ok(()),
        }
    }

    async fn page(
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
    async fn emit(
        &self,
        fetched: super::client::Fetched,
        number: usize,
        set: &RequestSet,
        tx: &mpsc::Sender<DFResult<RecordBatch>>,
        remaining: &mut Option<usize>,
    ) -> DFResult<PageInfo> {
        let endpoint = self.table.endpoint();
        self.counters.requests.add(fetched.attempts as usize);
        self.counters.pages.add(1);
        self.counters.bytes.add(fetched.body.len());
        let (mut records, info) = self.split(fetched.json, &fetched.headers, number)?;
        let count = records.len();
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
        super::schema::decode(&self.full_schema, records).map_err(|e| wrong(&e))
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

/// Whether a next-page value can be a URL (absolute, or relative to the page).
fn looks_like_url(value: &str) -> bool {
    value.contains("://") || value.starts_with('/') || value.starts_with('?')
}

/// The `rel="next"` target of an RFC 8288 `Link` header value.
pub(super) fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let is_next = pieces.any(|p| {
            let p = p.trim();
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        (is_next && target.starts_with('<') && target.ends_with('>'))
            .then(|| target[1..target.len() - 1].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        let h = r#"<http://x/a?page=1>; rel="first", <http://x/a?page=3>; rel="next", <http://x/a?page=9>; rel="last""#;
        assert_eq!(next_link(h).as_deref(), Some("http://x/a?page=3"));
        assert_eq!(next_link(r#"<http://x/a?page=1>; rel="first""#), None);
    }
}
