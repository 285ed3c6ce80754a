//! Statement traces: one `tracing` span per statement and, under it, one per
//! source scan and one per source request. `bluelamp-monitor` exports the
//! spans of [`TARGET`] over OTLP when `[telemetry] otlp_endpoint` is set;
//! without it nothing listens for them and each costs next to nothing.
//!
//! DataFusion runs a plan's operators on tasks of its own, where the
//! statement's span is not the current one, so a statement hands its span to
//! the sources through its task context ([`StatementSpan`]); a connector asks
//! for [`source_span`] when a scan starts and [`request_span`] for each
//! request under it.
//!
//! Spans carry ids, users, clients, sources and request paths (templates),
//! never SQL text or values, which stay in the audit trail. A statement's
//! trace id is in its audit records and in its error messages.

use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of every span that is exported as a trace (and of
/// no log line: the command line's log filter leaves it out).
pub const TARGET: &str = "bluelamp::trace";

/// What marks an error as belonging to a traced statement (see [`tag_error`]).
const TRACE_PREFIX: &str = "bluelamp trace ";

/// A statement's span, carried in its task context's settings for the
/// operators and sources that run on DataFusion's own tasks.
#[derive(Debug, Clone)]
pub struct StatementSpan(pub Span);

/// A new statement's span, opened now (its end is when the span's last
/// handle is dropped: when the statement's streams are done). Its outcome,
/// rows and id are recorded as they become known.
pub fn statement_span(user: &str, client: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "statement",
        otel.name = "statement",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        enduser.id = user,
        bluelamp.client = client,
        bluelamp.statement_id = tracing::field::Empty,
        bluelamp.state = tracing::field::Empty,
        bluelamp.rows = tracing::field::Empty,
    )
}

/// Records how a statement ended on its span: `state` (as in
/// `bluelamp.queries`: `finished`, `failed`, `refused`, ...) and its rows;
/// any state but `finished` is an error status. The error's text is not
/// recorded: it can quote values (a cast's input, a supplier's answer),
/// which stay in `bluelamp.queries` and the audit trail.
pub fn record_end(span: &Span, state: &str, rows: u64) {
    span.record("bluelamp.state", state);
    span.record("bluelamp.rows", rows);
    if state == "finished" {
        span.record("otel.status_code", "ok");
    } else {
        span.record("otel.status_code", "error");
        span.record("otel.status_description", state);
    }
}

/// Ends a statement's span now: spans are timed from their creation to
/// their last exit, and a statement's is entered only while it starts, so
/// it is entered once more when its last stream is done.
pub fn end_statement(span: &Span) {
    span.in_scope(|| {});
}

/// A source scan's span, under the statement whose task context runs it (or
/// under the current span where the context carries none, as on a cluster's
/// executor).
pub fn source_span(context: &TaskContext, source: &str, table: &str) -> Span {
    let parent = context
        .session_config()
        .get_extension::<StatementSpan>()
        .map(|statement| statement.0.clone())
        .unwrap_or_else(Span::current);
    tracing::info_span!(
        target: TARGET,
        parent: &parent,
        "source scan",
        otel.name = format!("scan {source}.{table}"),
        bluelamp.source = source,
        bluelamp.table = table,
    )
}

/// One request to a source, under the current span (a source scan's, when
/// the connector runs its scan in it): its method and path template (`GET
/// /incidents/{id}`), then its status and the records it carried as they
/// are known (see [`record_outcome`], [`record_records`]).
pub fn request_span(source: &str, method: &str, path: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "source request",
        otel.name = format!("{method} {path}"),
        otel.status_code = tracing::field::Empty,
        bluelamp.source = source,
        http.request.method = method,
        url.template = path,
        http.response.status_code = tracing::field::Empty,
        bluelamp.records = tracing::field::Empty,
        bluelamp.attempts = tracing::field::Empty,
    )
}

/// Records a request's outcome on its span, once it is final (after any
/// retries): its HTTP status, or none where no answer came, and the
/// attempts it took where known.
pub fn record_outcome(span: &Span, status: Option<u16>, attempts: Option<u32>) {
    if let Some(attempts) = attempts {
        span.record("bluelamp.attempts", attempts);
    }
    if let Some(status) = status {
        span.record("http.response.status_code", status);
    }
    let ok = status.is_some_and(|status| status < 400);
    span.record("otel.status_code", if ok { "ok" } else { "error" });
}

/// Records how many records a request's answer carried.
pub fn record_records(span: &Span, records: usize) {
    span.record("bluelamp.records", records as u64);
}

/// The trace id of `span` (32 hex digits), where its trace is exported
/// (valid and sampled).
pub fn trace_id(span: &Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    (span_context.is_valid() && span_context.is_sampled())
        .then(|| span_context.trace_id().to_string())
}

/// The trace id of the current span, where traces are exported.
pub fn current_trace_id() -> Option<String> {
    trace_id(&Span::current())
}

/// `error` marked with its statement's trace id, which [`crate::error::classify`]
/// appends to the message the client sees.
pub fn tag_error(error: DataFusionError, trace_id: &str) -> DataFusionError {
    if traced(&error).is_some() {
        return error;
    }
    DataFusionError::Context(format!("{TRACE_PREFIX}{trace_id}"), Box::new(error))
}

/// The trace id an error was tagged with by [`tag_error`].
pub fn traced(error: &DataFusionError) -> Option<&str> {
    let mut current = error;
    loop {
        match current {
            DataFusionError::Context(context, inner) => {
                if let Some(id) = context.strip_prefix(TRACE_PREFIX) {
                    return Some(id);
                }
                current = inner;
            }
            _ => return None,
        }
    }
}

/// `message` with the trace id that finds the statement in the trace store.
pub fn with_trace_id(message: &str, trace_id: &str) -> String {
    format!("{message} (trace {trace_id})")
}
