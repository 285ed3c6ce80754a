//! Server-side cursors: `DECLARE name [BINARY] CURSOR [WITH HOLD] FOR
//! query`, `FETCH [FORWARD] n | ALL | NEXT FROM name` and `CLOSE name |
//! ALL`, as psycopg's named cursors and SQLAlchemy's `stream_results` use
//! them to read a large result a chunk at a time. A cursor is a portal
//! kept by name: its query runs once, and each `FETCH` sends the next rows
//! of the same stream. Cursors only move forward (a backward or absolute
//! `FETCH` is refused), and end with their transaction block unless
//! declared `WITH HOLD`.

use arrow::datatypes::SchemaRef;
use bluelamp_engine::Statement;
use datafusion::sql::sqlparser::ast::{self, FetchDirection, Value};

use super::{Conn, EngineStatement, Kind, Outcome, Portal, Prepared, ResultKind, Transaction};
use crate::errors::code;
use crate::wire::{PgError, WireError};

/// A cursor command as written.
pub(super) enum CursorSyntax {
    Declare {
        name: String,
        query: String,
        binary: bool,
        hold: bool,
    },
    Fetch {
        name: String,
        count: Option<usize>,
    },
    Close(Option<String>),
}

/// A cursor command, its query planned (so a `DECLARE` sent with `$1`
/// parameters is bound like any statement).
#[derive(Clone)]
pub(super) enum CursorCommand {
    Declare {
        name: String,
        statement: Box<EngineStatement>,
        binary: bool,
        hold: bool,
    },
    /// The next `count` rows (`None`: all that are left).
    Fetch { name: String, count: Option<usize> },
    /// One cursor, or all (`None`).
    Close(Option<String>),
}

/// A declared cursor.
pub(super) struct Cursor {
    portal: Portal,
    hold: bool,
    sql: String,
}

impl Cursor {
    /// Whether it outlives its transaction block.
    pub(super) fn holds(&self) -> bool {
        self.hold
    }
}

fn refused(message: impl Into<String>) -> PgError {
    PgError::error(code::FEATURE_NOT_SUPPORTED, message)
}

fn count(limit: &ast::ValueWithSpan) -> Result<usize, PgError> {
    match &limit.value {
        Value::Number(n, _) => n.parse().map_err(|_| {
            PgError::error(
                code::SYNTAX,
                format!("FETCH count '{n}' is not a whole number"),
            )
        }),
        other => Err(PgError::error(
            code::SYNTAX,
            format!("FETCH count '{other}' is not a number"),
        )),
    }
}

/// The cursor command `statement` is, if it is one (or why it is refused).
pub(super) fn cursor_command(statement: &Statement) -> Option<Result<CursorSyntax, PgError>> {
    Some(match statement.ast()? {
        ast::Statement::Declare { stmts } => match stmts.as_slice() {
            [declare] => match (&declare.for_query, declare.names.as_slice()) {
                (Some(query), [name]) if declare.scroll != Some(true) => {
                    Ok(CursorSyntax::Declare {
                        name: name.value.clone(),
                        query: query.to_string(),
                        binary: declare.binary.unwrap_or(false),
                        hold: declare.hold.unwrap_or(false),
                    })
                }
                (Some(_), [_]) => Err(refused(
                    "SCROLL cursors are not supported: cursors only move forward",
                )),
                _ => Err(refused("DECLARE declares one cursor FOR a query")),
            },
            _ => Err(refused("DECLARE declares one cursor at a time")),
        },
        ast::Statement::Fetch {
            name, direction, ..
        } => {
            let count = match direction {
                FetchDirection::Next | FetchDirection::Forward { limit: None } => Ok(Some(1)),
                FetchDirection::Count { limit }
                | FetchDirection::Forward { limit: Some(limit) } => match count(limit) {
                    // FETCH 0 re-reads the current row, which a forward-only
                    // cursor does not keep (and 0 must not mean "all").
                    Ok(0) => Err(refused(
                        "FETCH 0 re-reads the current row, which cursors here do not keep",
                    )),
                    other => other.map(Some),
                },
                FetchDirection::All | FetchDirection::ForwardAll => Ok(None),
                _ => Err(refused(
                    "cursors only move forward: use FETCH [FORWARD] n, NEXT or ALL",
                )),
            };
            count.map(|count| CursorSyntax::Fetch {
                name: name.value.clone(),
                count,
            })
        }
        ast::Statement::Close { cursor } => Ok(CursorSyntax::Close(match cursor {
            ast::CloseCursor::All => None,
            ast::CloseCursor::Specific { name } => Some(name.value.clone()),
        })),
        _ => return None,
    })
}

impl Conn {
    /// Publishes the open cursors to `pg_cursors`.
    pub(super) fn show_cursors(&self) {
        if let Ok(mut open) = self.open_cursors.lock() {
            *open = self
                .cursors
                .iter()
                .map(|(name, cursor)| {
                    let binary = cursor.portal.binary.first().copied().unwrap_or(false);
                    (name.clone(), cursor.sql.clone(), cursor.hold, binary)
                })
                .collect();
        }
    }

    /// The columns `FETCH FROM name` returns.
    pub(super) fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        self.cursors
            .get(name)
            .and_then(|cursor| self.result_schema(&cursor.portal.kind))
    }

    /// The formats a `FETCH` sends in: those its `Bind` asked for, else the
    /// cursor's own (`BINARY`).
    pub(super) fn cursor_formats(&self, name: &str, asked: &[bool]) -> Vec<bool> {
        if !asked.is_empty() {
            return asked.to_vec();
        }
        self.cursors
            .get(name)
            .map(|cursor| cursor.portal.binary.clone())
            .unwrap_or_default()
    }

    /// Runs a cursor command; `formats` are the result formats its own
    /// portal was bound with.
    pub(super) async fn run_cursor(
        &mut self,
        command: CursorCommand,
        formats: &[bool],
    ) -> Result<Result<Outcome, PgError>, WireError> {
        match command {
            CursorCommand::Declare {
                name,
                statement,
                binary,
                hold,
            } => Ok(self
                .declare(name, statement, binary, hold)
                .map(|()| Outcome::Done)),
            CursorCommand::Fetch { name, count } => {
                let formats = self.cursor_formats(&name, formats);
                let Some(mut cursor) = self.cursors.remove(&name) else {
                    return Ok(Err(PgError::error(
                        code::UNDEFINED_CURSOR,
                        format!("cursor \"{name}\" does not exist"),
                    )));
                };
                if cursor.portal.finished {
                    self.complete("FETCH 0".into());
                    self.cursors.insert(name, cursor);
                    return Ok(Ok(Outcome::Done));
                }
                cursor.portal.binary = formats;
                let Kind::Engine(statement) = cursor.portal.kind.clone() else {
                    return Ok(Err(refused("a cursor is declared over a query")));
                };
                let token = self.slot.begin();
                let outcome = self
                    .run_engine(
                        &mut cursor.portal,
                        &statement,
                        count.unwrap_or(0),
                        &token,
                        true,
                    )
                    .await;
                self.slot.end();
                match &outcome {
                    Ok(Ok(Outcome::Done)) => cursor.portal.finished = true,
                    Ok(Ok(Outcome::Suspended)) => {}
                    // A failed cursor is gone, as in PostgreSQL.
                    _ => {
                        self.show_cursors();
                        return outcome;
                    }
                }
                self.cursors.insert(name, cursor);
                outcome.map(|o| o.map(|_| Outcome::Done))
            }
            CursorCommand::Close(name) => {
                match name {
                    Some(name) => {
                        if self.cursors.remove(&name).is_none() {
                            return Ok(Err(PgError::error(
                                code::UNDEFINED_CURSOR,
                                format!("cursor \"{name}\" does not exist"),
                            )));
                        }
                    }
                    None => self.cursors.clear(),
                }
                self.show_cursors();
                self.complete("CLOSE CURSOR".into());
                Ok(Ok(Outcome::Done))
            }
        }
    }

    /// Plans a cursor command as written: a `DECLARE`'s query is planned
    /// (and its parameters known) now, as `Parse` plans any statement.
    pub(super) async fn plan_cursor(&mut self, syntax: CursorSyntax) -> Result<Prepared, PgError> {
        let command = match syntax {
            CursorSyntax::Fetch { name, count } => CursorCommand::Fetch { name, count },
            CursorSyntax::Close(name) => CursorCommand::Close(name),
            CursorSyntax::Declare {
                name,
                query,
                binary,
                hold,
            } => {
                let mut statements = self
                    .session
                    .parse(&query)
                    .map_err(|e| crate::errors::pg_error(&e))?;
                let (Some(statement), true) = (statements.pop(), statements.is_empty()) else {
                    return Err(PgError::error(
                        code::SYNTAX,
                        "DECLARE CURSOR needs one query",
                    ));
                };
                let prepared = Box::pin(self.prepare(&statement, &[])).await?;
                let Kind::Engine(statement) = prepared.kind else {
                    return Err(PgError::error(code::SYNTAX, "DECLARE CURSOR needs a query"));
                };
                if !matches!(statement.result, ResultKind::Rows) {
                    return Err(PgError::error(
                        code::SYNTAX,
                        "DECLARE CURSOR needs a query that returns rows",
                    ));
                }
                return Ok(Prepared {
                    kind: Kind::Cursor(CursorCommand::Declare {
                        name,
                        statement,
                        binary,
                        hold,
                    }),
                    parameter_oids: prepared.parameter_oids,
                    parameter_types: prepared.parameter_types,
                });
            }
        };
        Ok(Prepared {
            kind: Kind::Cursor(command),
            parameter_oids: Vec::new(),
            parameter_types: Vec::new(),
        })
    }

    fn declare(
        &mut self,
        name: String,
        statement: Box<EngineStatement>,
        binary: bool,
        hold: bool,
    ) -> Result<(), PgError> {
        if self.transaction == Transaction::Idle && !hold {
            return Err(PgError::error(
                code::NO_ACTIVE_TRANSACTION,
                "DECLARE CURSOR can only be used in transaction blocks (or WITH HOLD)",
            ));
        }
        if self.cursors.contains_key(&name) {
            return Err(PgError::error(
                code::DUPLICATE_CURSOR,
                format!("cursor \"{name}\" already exists"),
            ));
        }
        let sql = statement.planned.sql().to_string();
        let kind = Kind::Engine(statement);
        let columns = self.result_schema(&kind).map_or(0, |s| s.fields().len());
        self.cursors.insert(
            name,
            Cursor {
                portal: Portal {
                    kind,
                    binary: vec![binary; columns],
                    running: None,
                    finished: false,
                },
                hold,
                sql,
            },
        );
        self.show_cursors();
        self.complete("DECLARE CURSOR".into());
        Ok(())
    }
}
