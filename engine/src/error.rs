//! Query errors as users see them: one clear sentence, classified so every front
//! end can map it to its own codes (the Flight SQL edge maps [`ErrorKind`] to gRPC
//! status codes in one place).

use datafusion::error::DataFusionError;

use crate::source::{SourceError, error_chain};

/// What sort of failure a query met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The SQL text does not parse.
    Syntax,
    /// The SQL does not plan (wrong types, bad arguments).
    InvalidQuery,
    /// A named table, schema or column does not exist.
    NotFound,
    /// A source is down or unreachable.
    Unavailable,
    /// The user may not do this.
    PermissionDenied,
    /// The statement is valid SQL that the engine does not support.
    Unsupported,
    /// The query was cancelled.
    Cancelled,
    /// The statement ran longer than its statement timeout.
    TimedOut,
    /// A source answered, but wrongly (bad data, schema mismatch), or an internal fault.
    Execution,
}

/// A failed statement.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// Classification for front ends.
    pub kind: ErrorKind,
    /// A single line that says what failed and where.
    pub message: String,
}

impl QueryError {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(error: DataFusionError) -> Self {
        classify(&error)
    }
}

/// Turns a DataFusion error (which may wrap a connector's [`SourceError`] several
/// layers deep) into a [`QueryError`] with a clean message, ending with the
/// statement's trace id where traces are exported.
pub fn classify(error: &DataFusionError) -> QueryError {
    let mut classified = classify_untraced(error);
    if let Some(trace_id) = crate::ops::trace::traced(error) {
        classified.message = crate::ops::trace::with_trace_id(&classified.message, trace_id);
    }
    classified
}

fn classify_untraced(error: &DataFusionError) -> QueryError {
    if let Some(stopped) = find_stopped(error) {
        let kind = if stopped.timed_out {
            ErrorKind::TimedOut
        } else {
            ErrorKind::Cancelled
        };
        return QueryError::new(kind, stopped.message.clone());
    }
    if let Some(source) = find_source_error(error) {
        let kind = if source.unavailable {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Execution
        };
        return QueryError::new(kind, source.to_string());
    }
    let root = error.find_root();
    let kind = match root {
        DataFusionError::SQL(..) => ErrorKind::Syntax,
        DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
            if is_not_found(&root.to_string()) {
                ErrorKind::NotFound
            } else {
                ErrorKind::InvalidQuery
            }
        }
        DataFusionError::NotImplemented(_) => ErrorKind::Unsupported,
        DataFusionError::ResourcesExhausted(_) => {
            return QueryError::new(
                ErrorKind::Execution,
                format!(
                    "the statement needs more memory than this server lets statements hold \
                     ([engine] memory_limit), so it was stopped; the server carries on ({})",
                    clean_message(root)
                ),
            );
        }
        _ => ErrorKind::Execution,
    };
    QueryError::new(kind, clean_message(root))
}

fn is_not_found(text: &str) -> bool {
    text.contains("not found") || text.contains("No field named") || text.contains("does not exist")
}

fn find_stopped(error: &DataFusionError) -> Option<&crate::ops::Stopped> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(stopped) = e.downcast_ref::<crate::ops::Stopped>() {
            return Some(stopped);
        }
        if let Some(DataFusionError::External(inner)) = e.downcast_ref::<DataFusionError>()
            && let Some(stopped) = inner.downcast_ref::<crate::ops::Stopped>()
        {
            return Some(stopped);
        }
        current = e.source();
    }
    None
}

fn find_source_error(error: &DataFusionError) -> Option<&SourceError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(source) = e.downcast_ref::<SourceError>() {
            return Some(source);
        }
        if let Some(DataFusionError::External(inner)) = e.downcast_ref::<DataFusionError>()
            && let Some(source) = inner.downcast_ref::<SourceError>()
        {
            return Some(source);
        }
        current = e.source();
    }
    None
}

/// DataFusion prefixes messages with its internal category ("Error during planning:
/// ..."); users need the sentence, not the category.
fn clean_message(error: &DataFusionError) -> String {
    let text = match error {
        DataFusionError::External(inner) => error_chain(inner.as_ref()),
        DataFusionError::SQL(parser, _) => parser
            .to_string()
            .trim_start_matches("sql parser error: ")
            .to_string(),
        other => other.to_string(),
    };
    // One line: DataFusion puts hints such as "Valid fields are ..." on a new line.
    let text = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let prefixes = [
        "Error during planning: ",
        "Execution error: ",
        "External error: ",
        "Schema error: ",
        "SQL error: ",
        "This feature is not implemented: ",
        "Arrow error: ",
    ];
    let mut message = text.trim().to_string();
    loop {
        let before = message.len();
        for prefix in prefixes {
            if let Some(rest) = message.strip_prefix(prefix) {
                message = rest.to_string();
            }
        }
        if message.len() == before {
            break;
        }
    }
    match error {
        DataFusionError::SQL(..) => format!("SQL syntax error: {message}"),
        DataFusionError::NotImplemented(_) => format!("not supported: {message}"),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_not_found_is_not_found() {
        let e = DataFusionError::Plan("table 'bluelamp.x.y' not found".into());
        let q = classify(&e);
        assert_eq!(q.kind, ErrorKind::NotFound);
        assert_eq!(q.message, "table 'bluelamp.x.y' not found");
    }

    #[test]
    fn context_wrapped_source_error_is_found() {
        let source = SourceError {
            source_name: "rms".into(),
            kind: "postgres".into(),
            message: "connection refused".into(),
            unavailable: true,
        };
        let e = DataFusionError::Context(
            "while planning".into(),
            Box::new(DataFusionError::External(Box::new(source))),
        );
        let q = classify(&e);
        assert_eq!(q.kind, ErrorKind::Unavailable);
        assert_eq!(q.message, "source 'rms' (postgres): connection refused");
    }

    #[test]
    fn a_traced_error_ends_with_its_trace_id_and_keeps_its_kind() {
        let e = DataFusionError::Plan("table 'bluelamp.x.y' not found".into());
        let e = crate::ops::trace::tag_error(e, "4bf92f3577b34da6a3ce929d0e0e4736");
        // Tagging twice (a stream's error passing two wrappers) adds it once.
        let e = crate::ops::trace::tag_error(e, "4bf92f3577b34da6a3ce929d0e0e4736");
        let q = classify(&e);
        assert_eq!(q.kind, ErrorKind::NotFound);
        assert_eq!(
            q.message,
            "table 'bluelamp.x.y' not found (trace 4bf92f3577b34da6a3ce929d0e0e4736)"
        );
    }
}
