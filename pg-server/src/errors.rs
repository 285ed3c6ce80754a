//! Engine errors as PostgreSQL reports them: one SQLSTATE per kind, so
//! clients and BI tools react as they would to PostgreSQL (a syntax error
//! is `42601`, an unknown table `42P01`, a cancelled statement `57014`).

use bluelamp_engine::{ErrorKind, QueryError};

use crate::wire::PgError;

/// SQLSTATE codes Bluelamp sends.
pub(crate) mod code {
    pub(crate) const SYNTAX: &str = "42601";
    pub(crate) const INVALID_QUERY: &str = "42000";
    pub(crate) const UNDEFINED_TABLE: &str = "42P01";
    pub(crate) const UNDEFINED_COLUMN: &str = "42703";
    pub(crate) const UNDEFINED_SCHEMA: &str = "3F000";
    pub(crate) const UNDEFINED_PARAMETER: &str = "42704";
    pub(crate) const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub(crate) const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub(crate) const QUERY_CANCELED: &str = "57014";
    pub(crate) const DATA_EXCEPTION: &str = "22000";
    pub(crate) const INVALID_TEXT: &str = "22P02";
    pub(crate) const INVALID_PARAMETER_VALUE: &str = "22023";
    pub(crate) const SYSTEM_ERROR: &str = "58000";
    pub(crate) const PROTOCOL_VIOLATION: &str = "08P01";
    pub(crate) const INVALID_PASSWORD: &str = "28P01";
    pub(crate) const INVALID_AUTHORIZATION: &str = "28000";
    pub(crate) const UNDEFINED_DATABASE: &str = "3D000";
    pub(crate) const DUPLICATE_STATEMENT: &str = "42P05";
    pub(crate) const UNDEFINED_STATEMENT: &str = "26000";
    pub(crate) const UNDEFINED_CURSOR: &str = "34000";
    pub(crate) const DUPLICATE_CURSOR: &str = "42P03";
    pub(crate) const IN_FAILED_TRANSACTION: &str = "25P02";
    pub(crate) const ACTIVE_TRANSACTION: &str = "25001";
    pub(crate) const NO_ACTIVE_TRANSACTION: &str = "25P01";
}

/// A query error with its SQLSTATE.
pub(crate) fn pg_error(error: &QueryError) -> PgError {
    let code = match error.kind {
        ErrorKind::Syntax => code::SYNTAX,
        ErrorKind::InvalidQuery => code::INVALID_QUERY,
        ErrorKind::NotFound => not_found_code(&error.message),
        ErrorKind::PermissionDenied => code::INSUFFICIENT_PRIVILEGE,
        ErrorKind::Unsupported => code::FEATURE_NOT_SUPPORTED,
        ErrorKind::Cancelled | ErrorKind::TimedOut => code::QUERY_CANCELED,
        // A source that is down: not the client's connection (class 08
        // would make drivers drop it), so a system error.
        ErrorKind::Unavailable => code::SYSTEM_ERROR,
        ErrorKind::Execution => code::DATA_EXCEPTION,
    };
    PgError::error(code, error.message.clone())
}

fn not_found_code(message: &str) -> &'static str {
    let lower = message.to_ascii_lowercase();
    if lower.contains("no field named") || lower.contains("column") {
        code::UNDEFINED_COLUMN
    } else if lower.contains("schema") && !lower.contains("table") {
        code::UNDEFINED_SCHEMA
    } else {
        code::UNDEFINED_TABLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_sqlstates() {
        let e = |kind, message: &str| pg_error(&QueryError::new(kind, message)).code;
        assert_eq!(e(ErrorKind::Syntax, "SQL syntax error: x"), "42601");
        assert_eq!(
            e(ErrorKind::NotFound, "table 'bluelamp.x.y' not found"),
            "42P01"
        );
        assert_eq!(e(ErrorKind::NotFound, "No field named nope."), "42703");
        assert_eq!(e(ErrorKind::Cancelled, "cancelled"), "57014");
        assert_eq!(e(ErrorKind::PermissionDenied, "no"), "42501");
    }
}
