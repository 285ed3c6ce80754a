//! A statement's streams under its limits and in the registry: each stream
//! stops with a clear error when the statement is cancelled
//! (`bluelamp.cancel_query`) or runs past its statement timeout, counts the
//! rows it delivers, and the statement is recorded as ended (and its
//! figures counted) when its last stream ends or is dropped.
//!
//! The deadline and the cancel signal are checked before the statement's
//! own stream is polled, so a statement whose operators keep producing
//! still stops on time (DataFusion's operators yield to the runtime
//! regularly, and the next poll sees the deadline); their wakers are
//! registered when the statement's stream waits, so a statement waiting on
//! a slow source stops on time too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use datafusion::physical_plan::stream::EmptyRecordBatchStream;
use futures::Stream;

use super::Operations;
use super::queries::{QueryRecord, QueryState};

/// Why a statement was stopped from outside: cancelled, or out of time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Stopped {
    /// Whether it ran past its statement timeout (else it was cancelled).
    pub timed_out: bool,
    /// The sentence its client sees.
    pub message: String,
}

impl Stopped {
    fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

/// Formats a duration as the configuration writes it (`30s`, `1.5s`, `10m`).
pub fn describe(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// One statement's limits and its place in the registry, shared by its
/// streams.
pub(crate) struct Tracker {
    ops: Arc<Operations>,
    record: Arc<QueryRecord>,
    timeout: Option<Duration>,
    deadline: Option<tokio::time::Instant>,
    streams: AtomicU64,
    ended: AtomicU64,
    failed: AtomicBool,
    /// The statement's span: held open until its last stream is done.
    span: tracing::Span,
    /// The span's trace id, where traces are exported.
    trace_id: Option<String>,
}

impl Tracker {
    /// Starts tracking `record`, which may run for `timeout` from now and is
    /// traced by `span`.
    pub(crate) fn new(
        ops: Arc<Operations>,
        record: Arc<QueryRecord>,
        timeout: Option<Duration>,
        span: tracing::Span,
    ) -> Arc<Self> {
        ops.metrics.statement_started();
        span.record("bluelamp.statement_id", record.id.as_str());
        Arc::new(Self {
            deadline: timeout.map(|t| tokio::time::Instant::now() + t),
            ops,
            record,
            timeout,
            streams: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            trace_id: super::trace::trace_id(&span),
            span,
        })
    }

    /// `error` marked with the statement's trace id, where it has one.
    pub(crate) fn tag(&self, error: DataFusionError) -> DataFusionError {
        match &self.trace_id {
            Some(trace_id) => super::trace::tag_error(error, trace_id),
            None => error,
        }
    }

    /// The statement's registry entry.
    pub(crate) fn record(&self) -> &Arc<QueryRecord> {
        &self.record
    }

    fn stopped(&self, timed_out: bool) -> Stopped {
        let message = if timed_out {
            let limit = self.timeout.map(describe).unwrap_or_default();
            format!(
                "statement {} was stopped after {limit}: it ran longer than the statement timeout \
                 (SET bluelamp.statement_timeout, or [engine] statement_timeout on the server)",
                self.record.id
            )
        } else {
            let by = self
                .record
                .cancelled_by()
                .unwrap_or_else(|| "an operator".to_string());
            format!(
                "statement {} was cancelled by {by} (bluelamp.cancel_query)",
                self.record.id
            )
        };
        Stopped { timed_out, message }
    }

    /// Records the end, once, with its outcome, and counts it.
    fn end(&self, state: QueryState, error: Option<String>) {
        if self.record.finish(state, error) {
            super::trace::record_end(&self.span, state.as_str(), self.record.rows());
            self.ops.metrics.statement_ended(
                &self.record.origin.client,
                state,
                self.record.elapsed(),
                self.record.rows(),
            );
            self.ops.queries.retire(&self.record);
        }
    }

    /// Records that the statement could not start.
    pub(crate) fn fail(&self, error: &DataFusionError) {
        self.failed.store(true, Ordering::Relaxed);
        let state = stopped_state(error).unwrap_or(QueryState::Failed);
        self.end(state, Some(crate::error::classify(error).message));
    }

    /// Runs the statement's start (planning, sending to a cluster) within
    /// its deadline and cancel signal.
    ///
    /// # Errors
    /// `start`'s own error, or [`Stopped`] if the statement was cancelled
    /// or ran out of time first.
    pub(crate) async fn start<T>(&self, start: impl Future<Output = DFResult<T>>) -> DFResult<T> {
        let cancelled = self.record.cancel_token().cancelled();
        let deadline = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = cancelled => Err(self.stopped(false).into_datafusion()),
            () = deadline => Err(self.stopped(true).into_datafusion()),
            result = start => result,
        }
    }

    /// Wraps one of the statement's output streams.
    pub(crate) fn wrap(
        self: &Arc<Self>,
        inner: SendableRecordBatchStream,
    ) -> SendableRecordBatchStream {
        self.streams.fetch_add(1, Ordering::Relaxed);
        Box::pin(Tracked {
            schema: inner.schema(),
            inner,
            cancelled: Box::pin(self.record.cancel_token().clone().cancelled_owned()),
            deadline: self.deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            tracker: Arc::clone(self),
            done: false,
        })
    }
}

/// The state a [`Stopped`] error inside `error` stands for.
fn stopped_state(error: &DataFusionError) -> Option<QueryState> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let stopped = e.downcast_ref::<Stopped>().or_else(|| {
            e.downcast_ref::<DataFusionError>().and_then(|d| match d {
                DataFusionError::External(inner) => inner.downcast_ref::<Stopped>(),
                _ => None,
            })
        });
        if let Some(stopped) = stopped {
            return Some(if stopped.timed_out {
                QueryState::TimedOut
            } else {
                QueryState::Cancelled
            });
        }
        current = e.source();
    }
    None
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let ended = self.ended.load(Ordering::Relaxed) == self.streams.load(Ordering::Relaxed);
        if ended && !self.failed.load(Ordering::Relaxed) {
            self.end(QueryState::Finished, None);
        } else {
            self.end(
                QueryState::Abandoned,
                Some("the client stopped reading before the end".to_string()),
            );
        }
        super::trace::end_statement(&self.span);
    }
}

struct Tracked {
    schema: SchemaRef,
    inner: SendableRecordBatchStream,
    cancelled: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    tracker: Arc<Tracker>,
    done: bool,
}

impl Tracked {
    /// Ends this stream with `stopped`: the statement's work is dropped now
    /// (which stops its tasks and requests), not when the client lets go.
    fn stop(&mut self, stopped: Stopped) -> Poll<Option<DFResult<RecordBatch>>> {
        self.done = true;
        self.inner = Box::pin(EmptyRecordBatchStream::new(Arc::clone(&self.schema)));
        self.tracker.failed.store(true, Ordering::Relaxed);
        let state = if stopped.timed_out {
            QueryState::TimedOut
        } else {
            QueryState::Cancelled
        };
        self.tracker.end(state, Some(stopped.message.clone()));
        Poll::Ready(Some(Err(self.tracker.tag(stopped.into_datafusion()))))
    }
}

impl Stream for Tracked {
    type Item = DFResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        // Cheap checks on every poll (an atomic load, a clock read); the
        // signal's and the deadline's wakers are registered only when the
        // statement's own stream waits, which is when nothing else would
        // poll this one again.
        if this.tracker.record.cancel_token().is_cancelled() {
            let stopped = this.tracker.stopped(false);
            return this.stop(stopped);
        }
        if this
            .tracker
            .deadline
            .is_some_and(|deadline| tokio::time::Instant::now() >= deadline)
        {
            let stopped = this.tracker.stopped(true);
            return this.stop(stopped);
        }
        let polled = this.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(batch))) => {
                this.tracker.record.add_rows(batch.num_rows() as u64);
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                this.tracker.fail(e);
                return polled
                    .map(|item| item.map(|result| result.map_err(|e| this.tracker.tag(e))));
            }
            Poll::Ready(None) => {
                this.done = true;
                this.tracker.ended.fetch_add(1, Ordering::Relaxed);
            }
            Poll::Pending => {
                if this.cancelled.as_mut().poll(cx).is_ready() {
                    let stopped = this.tracker.stopped(false);
                    return this.stop(stopped);
                }
                if let Some(deadline) = this.deadline.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    let stopped = this.tracker.stopped(true);
                    return this.stop(stopped);
                }
            }
        }
        polled
    }
}

impl RecordBatchStream for Tracked {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_written() {
        assert_eq!(describe(Duration::from_secs(30)), "30s");
        assert_eq!(describe(Duration::from_secs(600)), "10m");
        assert_eq!(describe(Duration::from_secs(7200)), "2h");
        assert_eq!(describe(Duration::from_millis(250)), "250ms");
        assert_eq!(describe(Duration::from_millis(1500)), "1.5s");
    }
}
