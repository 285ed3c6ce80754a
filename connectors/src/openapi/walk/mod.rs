//! Walking an endpoint's pages: the task behind each `OpenApiExec` scan.
//!
//! [`ScanStream`] starts the task on its first poll and stops it when
//! dropped; [`Scan::walk`] follows the table's pagination style (offset,
//! page number, cursor in the body or a header, `Link` header, after-last
//! key), decodes each page against the documented schema and refuses a walk
//! that loops or comes up short, so a query never answers with rows missing.
//!
//! The scan's task and stream are here. The walk itself is in `pagination`
//! (one loop per pagination style, and the checks that refuse a loop or a
//! short walk); fetching one page, splitting it into records and what it
//! says about the next, and decoding the records is in `page`.

mod page;
mod pagination;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::physical_plan::metrics::Count;
use futures::Stream;
use reqwest::Url;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::client::{ApiClient, FetchError, Identity};
use super::discovery::TableSpec;

pub(super) use page::PageInfo;

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

impl Scan {
    pub(super) fn error(&self, message: String, unavailable: bool) -> DataFusionError {
        super::source_error(&self.source, message, unavailable)
    }

    fn fetch_error(&self, e: FetchError) -> DataFusionError {
        self.error(e.message, e.unavailable)
    }
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
