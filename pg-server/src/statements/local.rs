//! The statements the protocol layer answers itself: transaction control
//! (`BEGIN`, `COMMIT`, `ROLLBACK`, savepoints: accepted, and nothing to
//! undo, since a deposit inside a block is refused), and the session
//! parameters drivers set and show (`client_encoding`, `DateStyle`,
//! `extra_float_digits`, ...), with the values Bluelamp's output depends
//! on checked.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use bluelamp_engine::Statement;
use datafusion::sql::sqlparser::ast::{self, Expr, Value};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::startup::ParameterStatus;

use super::{Conn, Transaction};
use crate::errors::code;
use crate::types::RowWriter;
use crate::wire::PgError;

/// Session parameters answered here, with their defaults. Those marked
/// `true` are reported to the client (`ParameterStatus`) at start-up and
/// when they change.
pub(crate) const PARAMETERS: &[(&str, &str, bool)] = &[
    ("application_name", "", true),
    ("client_encoding", "UTF8", true),
    ("datestyle", "ISO, MDY", true),
    ("default_transaction_read_only", "off", true),
    ("in_hot_standby", "off", true),
    ("integer_datetimes", "on", true),
    ("intervalstyle", "postgres", true),
    ("is_superuser", "off", true),
    ("server_encoding", "UTF8", true),
    ("server_version", SERVER_VERSION, true),
    ("standard_conforming_strings", "on", true),
    ("timezone", "UTC", true),
    ("bytea_output", "hex", false),
    ("client_min_messages", "notice", false),
    ("default_transaction_isolation", "read committed", false),
    ("extra_float_digits", "1", false),
    ("idle_in_transaction_session_timeout", "0", false),
    ("lc_messages", "C", false),
    ("lc_monetary", "C", false),
    ("lc_numeric", "C", false),
    ("lc_time", "C", false),
    ("lock_timeout", "0", false),
    ("max_identifier_length", "63", false),
    ("max_index_keys", "32", false),
    ("search_path", "\"$user\", public", false),
    ("server_version_num", "160000", false),
    ("statement_timeout", "0", false),
    ("transaction_isolation", "read committed", false),
    ("transaction_read_only", "off", false),
    ("geqo", "on", false),
    ("jit", "off", false),
    ("row_security", "on", false),
    ("work_mem", "4MB", false),
];

/// The PostgreSQL version Bluelamp's protocol and catalog follow.
pub(crate) const SERVER_VERSION: &str = "16.0";

/// How reported parameters are spelled to clients.
pub(super) fn reported_name(name: &str) -> &str {
    match name {
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        "timezone" => "TimeZone",
        other => other,
    }
}

/// Checks a `client_encoding`: Bluelamp sends UTF-8 only, so another
/// encoding would garble text.
///
/// # Errors
/// A sentence for an encoding other than UTF-8 (or `SQL_ASCII`, which
/// means no conversion).
pub(crate) fn check_encoding(encoding: &str) -> Result<(), String> {
    let normalised = encoding
        .trim()
        .trim_matches('\'')
        .to_ascii_uppercase()
        .replace('-', "");
    if matches!(normalised.as_str(), "UTF8" | "UNICODE" | "SQL_ASCII") {
        Ok(())
    } else {
        Err(format!(
            "client_encoding '{encoding}' is not supported: Bluelamp sends UTF8"
        ))
    }
}

/// A statement answered here.
#[derive(Clone)]
pub(super) enum Local {
    Begin,
    Commit,
    Rollback,
    /// `SAVEPOINT` and `RELEASE SAVEPOINT` (harmless: a block holds no writes).
    Savepoint(&'static str),
    /// `ROLLBACK TO SAVEPOINT`: ends a failed block's failure, as PostgreSQL's does.
    RollbackToSavepoint,
    Set(String, String),
    /// Accepted, and changes nothing Bluelamp does (`SET TRANSACTION ...`).
    Ignored(&'static str),
    Show(String),
    ResetAll,
    Deallocate(Option<String>),
    Refused(PgError),
}

impl Conn {
    pub(super) fn run_local(&mut self, local: Local) -> Result<(), PgError> {
        match local {
            Local::Begin => {
                if self.transaction != Transaction::Idle {
                    self.wire.push_notice(
                        code::ACTIVE_TRANSACTION,
                        "there is already a transaction in progress",
                    );
                } else {
                    self.transaction = Transaction::Block;
                }
                self.complete("BEGIN".into());
            }
            Local::Commit => {
                // A failed block's COMMIT is a ROLLBACK, as PostgreSQL reports it.
                let tag = if self.transaction == Transaction::Failed {
                    "ROLLBACK"
                } else {
                    "COMMIT"
                };
                self.end_block(tag);
            }
            Local::Rollback => self.end_block("ROLLBACK"),
            Local::Savepoint(tag) => {
                self.require_block(tag)?;
                self.complete(tag.into());
            }
            Local::RollbackToSavepoint => {
                self.require_block("ROLLBACK TO SAVEPOINT")?;
                // Nothing in a block was written, so nothing is undone;
                // the block may go on.
                self.transaction = Transaction::Block;
                self.complete("ROLLBACK".into());
            }
            Local::Set(name, value) => {
                let value = self.check_setting(&name, &value)?;
                self.settings.insert(name.clone(), value.clone());
                if let Some((_, _, true)) = PARAMETERS.iter().find(|(n, _, _)| *n == name) {
                    self.wire
                        .push(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                            reported_name(&name).to_string(),
                            value,
                        )));
                }
                self.complete("SET".into());
            }
            Local::Ignored(tag) => self.complete(tag.into()),
            Local::Show(name) => {
                // Its RowDescription went out with Describe (or before running).
                let value = self.settings.get(&name).cloned().unwrap_or_default();
                let column: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![value]));
                let columns = [column];
                let schema = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
                    "value",
                    DataType::Utf8,
                    true,
                )]);
                match RowWriter::new(&schema, &columns, &[false]) {
                    Ok(mut writer) => writer.write_row(0, self.wire.out()),
                    Err(e) => {
                        return Err(PgError::error(code::DATA_EXCEPTION, e.to_string()));
                    }
                }
                self.complete("SHOW".into());
            }
            Local::ResetAll => {
                for (name, value, _) in PARAMETERS {
                    if !matches!(
                        *name,
                        "server_version" | "server_encoding" | "server_version_num"
                    ) {
                        self.settings
                            .insert((*name).to_string(), (*value).to_string());
                    }
                }
                self.complete("RESET".into());
            }
            Local::Deallocate(name) => {
                match name {
                    Some(name) => {
                        if self.statements.remove(&name).is_none() {
                            return Err(PgError::error(
                                code::UNDEFINED_STATEMENT,
                                format!("prepared statement \"{name}\" does not exist"),
                            ));
                        }
                    }
                    None => self.statements.clear(),
                }
                self.complete("DEALLOCATE".into());
            }
            Local::Refused(e) => return Err(e),
        }
        Ok(())
    }

    /// Ends a transaction block (or notes there was none): nothing to
    /// commit or undo, but cursors without `WITH HOLD` close.
    fn end_block(&mut self, tag: &str) {
        if self.transaction == Transaction::Idle {
            self.wire.push_notice(
                code::NO_ACTIVE_TRANSACTION,
                "there is no transaction in progress",
            );
        }
        self.transaction = Transaction::Idle;
        self.cursors.retain(|_, cursor| cursor.holds());
        self.show_cursors();
        self.complete(tag.into());
    }

    /// Refuses a savepoint command outside a transaction block, as
    /// PostgreSQL does.
    fn require_block(&self, what: &str) -> Result<(), PgError> {
        if self.transaction == Transaction::Idle {
            return Err(PgError::error(
                code::NO_ACTIVE_TRANSACTION,
                format!("{what} can only be used in transaction blocks"),
            ));
        }
        Ok(())
    }

    /// A new value for a session parameter, checked where Bluelamp's output
    /// depends on it.
    fn check_setting(&self, name: &str, value: &str) -> Result<String, PgError> {
        let invalid = |why: String| PgError::error(code::INVALID_PARAMETER_VALUE, why);
        let read_only = [
            "server_version",
            "server_version_num",
            "server_encoding",
            "integer_datetimes",
            "is_superuser",
            "in_hot_standby",
            "max_identifier_length",
        ];
        if read_only.contains(&name) {
            return Err(PgError::error(
                "55P02",
                format!("parameter \"{name}\" cannot be changed"),
            ));
        }
        match name {
            "client_encoding" => {
                check_encoding(value).map_err(invalid)?;
                Ok("UTF8".into())
            }
            "datestyle" if !value.to_ascii_uppercase().contains("ISO") => Err(invalid(format!(
                "DateStyle '{value}' is not supported: Bluelamp writes dates in ISO style"
            ))),
            "datestyle" => Ok("ISO, MDY".into()),
            "intervalstyle" if !value.eq_ignore_ascii_case("postgres") => Err(invalid(format!(
                "IntervalStyle '{value}' is not supported: Bluelamp writes intervals in postgres style"
            ))),
            "bytea_output" if !value.eq_ignore_ascii_case("hex") => Err(invalid(format!(
                "bytea_output '{value}' is not supported: Bluelamp writes bytea in hex"
            ))),
            "standard_conforming_strings" if !value.eq_ignore_ascii_case("on") => {
                Err(invalid("standard_conforming_strings is always on".into()))
            }
            "extra_float_digits" => value
                .trim()
                .parse::<i32>()
                .map(|n| n.to_string())
                .map_err(|_| invalid(format!("extra_float_digits '{value}' is not a number"))),
            _ => Ok(value.to_string()),
        }
    }
}

/// A value of a `SET` as text: `'x'`, `x`, `3`, `DEFAULT`.
fn set_value(values: &[Expr]) -> String {
    values
        .iter()
        .map(|value| match value {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            Expr::Identifier(ident) => ident.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn known(name: &str) -> bool {
    PARAMETERS.iter().any(|(n, _, _)| *n == name) || name == "session_authorization"
}

/// The statements the protocol layer answers itself.
pub(super) fn local(statement: &Statement) -> Option<Local> {
    let ast = statement.ast()?;
    Some(match ast {
        ast::Statement::StartTransaction { .. } => Local::Begin,
        ast::Statement::Commit { .. } => Local::Commit,
        ast::Statement::Rollback {
            savepoint: None, ..
        } => Local::Rollback,
        ast::Statement::Rollback { .. } => Local::RollbackToSavepoint,
        ast::Statement::Savepoint { .. } => Local::Savepoint("SAVEPOINT"),
        ast::Statement::ReleaseSavepoint { .. } => Local::Savepoint("RELEASE"),
        ast::Statement::Set(set) => match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = variable.to_string().to_ascii_lowercase();
                if name.contains('.') {
                    return None;
                }
                if !known(&name) {
                    return Some(Local::Refused(PgError::error(
                        code::UNDEFINED_PARAMETER,
                        format!("unrecognized configuration parameter \"{name}\""),
                    )));
                }
                let value = set_value(values);
                if value.eq_ignore_ascii_case("default") {
                    let default = PARAMETERS
                        .iter()
                        .find(|(n, _, _)| *n == name)
                        .map(|(_, v, _)| (*v).to_string())
                        .unwrap_or_default();
                    Local::Set(name, default)
                } else {
                    Local::Set(name, value)
                }
            }
            ast::Set::SetTimeZone { value, .. } => {
                Local::Set("timezone".into(), set_value(std::slice::from_ref(value)))
            }
            ast::Set::SetNames { charset_name, .. } => {
                Local::Set("client_encoding".into(), charset_name.value.clone())
            }
            ast::Set::SetNamesDefault {} => Local::Set("client_encoding".into(), "UTF8".into()),
            ast::Set::SetTransaction { .. } | ast::Set::SetSessionParam(_) => Local::Ignored("SET"),
            _ => Local::Refused(PgError::error(
                code::FEATURE_NOT_SUPPORTED,
                format!("not supported: {ast}"),
            )),
        },
        ast::Statement::ShowVariable { variable } => {
            let words: Vec<String> = variable
                .iter()
                .map(|i| i.value.to_ascii_lowercase())
                .collect();
            let name = match words.join(" ").as_str() {
                "transaction isolation level" => "transaction_isolation".to_string(),
                other => other.replace(' ', "_"),
            };
            if known(&name) {
                Local::Show(name)
            } else if name.contains('.') || name == "all" {
                return None;
            } else {
                Local::Refused(PgError::error(
                    code::UNDEFINED_PARAMETER,
                    format!("unrecognized configuration parameter \"{name}\""),
                ))
            }
        }
        ast::Statement::Discard { .. } => Local::ResetAll,
        ast::Statement::Reset(_) => Local::Ignored("RESET"),
        ast::Statement::Deallocate { name, .. } => {
            if name.value.eq_ignore_ascii_case("all") {
                Local::Deallocate(None)
            } else {
                Local::Deallocate(Some(name.value.clone()))
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn protocol_statements_are_answered_here() {
        let one = |sql: &str| bluelamp_engine::parse_statements(sql).unwrap().remove(0);
        assert!(matches!(local(&one("BEGIN")), Some(Local::Begin)));
        assert!(matches!(
            local(&one("START TRANSACTION READ ONLY")),
            Some(Local::Begin)
        ));
        assert!(matches!(local(&one("COMMIT")), Some(Local::Commit)));
        assert!(matches!(
            local(&one("SET extra_float_digits = 3")),
            Some(Local::Set(n, v)) if n == "extra_float_digits" && v == "3"
        ));
        assert!(matches!(
            local(&one("SET application_name TO 'psql'")),
            Some(Local::Set(n, v)) if n == "application_name" && v == "psql"
        ));
        assert!(local(&one("SET bluelamp.purpose = 'x'")).is_none());
        assert!(matches!(
            local(&one("SET nonsense = 1")),
            Some(Local::Refused(_))
        ));
        assert!(
            matches!(local(&one("SHOW TRANSACTION ISOLATION LEVEL")), Some(Local::Show(n)) if n == "transaction_isolation")
        );
        assert!(local(&one("SELECT 1")).is_none());
    }
}
