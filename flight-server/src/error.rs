//! The one place engine errors become gRPC statuses. Messages are the engine's
//! one-line sentences, with any path on this server's disk reduced to its
//! file name: clients learn what failed, never how the server is laid out.

use std::path::Path;

use bluelamp_engine::{ErrorKind, QueryError};
use tonic::Status;

/// The gRPC status for a failed statement.
pub fn status(error: &QueryError) -> Status {
    let message = scrub(&error.message);
    match error.kind {
        ErrorKind::Syntax | ErrorKind::InvalidQuery => Status::invalid_argument(message),
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::Unavailable => Status::unavailable(message),
        ErrorKind::PermissionDenied => Status::permission_denied(message),
        ErrorKind::Unsupported => Status::unimplemented(message),
        ErrorKind::Cancelled => Status::cancelled(message),
        ErrorKind::TimedOut => Status::deadline_exceeded(message),
        ErrorKind::Execution => Status::internal(message),
    }
}

/// The status for an error raised while a result streams.
pub fn stream_status(error: &datafusion::error::DataFusionError) -> Status {
    status(&bluelamp_engine::error::classify(error))
}

/// Replaces absolute paths that exist on this machine with their file name.
/// API endpoints such as `GET /incidents/{urn}/log` are not paths on disk and
/// are kept.
pub fn scrub(message: &str) -> String {
    message
        .split_inclusive(char::is_whitespace)
        .map(|word| {
            let trimmed = word.trim_end();
            let token = trimmed.trim_matches(|c: char| {
                matches!(c, '\'' | '"' | ',' | ';' | ':' | '(' | ')' | '`')
            });
            if is_local_path(token) {
                let name = Path::new(token)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                word.replacen(token, &name, 1)
            } else {
                word.to_string()
            }
        })
        .collect()
}

fn is_local_path(token: &str) -> bool {
    let path = Path::new(token);
    token.starts_with('/')
        && token.matches('/').count() >= 2
        && (path.exists() || path.parent().is_some_and(Path::is_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_on_disk_become_file_names_and_endpoints_stay() {
        let dir = std::env::temp_dir().join("bluelamp-scrub-test");
        let file = dir.join("missing.sqlite");
        let _ = std::fs::create_dir_all(&dir);
        let message = format!(
            "source 'custody': '{}' does not exist; GET /incidents/{{urn}}/log failed",
            file.display()
        );
        assert_eq!(
            scrub(&message),
            "source 'custody': 'missing.sqlite' does not exist; GET /incidents/{urn}/log failed"
        );
    }

    #[test]
    fn kinds_map_to_codes() {
        let code = |kind| status(&QueryError::new(kind, "x")).code();
        assert_eq!(code(ErrorKind::InvalidQuery), tonic::Code::InvalidArgument);
        assert_eq!(code(ErrorKind::NotFound), tonic::Code::NotFound);
        assert_eq!(code(ErrorKind::Unavailable), tonic::Code::Unavailable);
        assert_eq!(
            code(ErrorKind::PermissionDenied),
            tonic::Code::PermissionDenied
        );
        assert_eq!(code(ErrorKind::Cancelled), tonic::Code::Cancelled);
    }
}
