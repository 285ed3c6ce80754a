//! The extended query protocol's messages: `Parse` (a statement planned
//! once), `Bind` (parameters decoded and bound, result formats chosen),
//! `Describe`, `Execute` (with a row limit, leaving the portal suspended)
//! and `Close`.

use datafusion::common::ScalarValue;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::ParameterDescription;
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Close, CloseComplete, Describe, Execute, Parse, ParseComplete,
};

use super::{
    Conn, CursorCommand, EngineStatement, Kind, Outcome, Portal, Prepared, ResultKind, format_at,
};
use crate::errors::{code, pg_error};
use crate::wire::{PgError, WireError};

impl Conn {
    pub(super) async fn parse(&mut self, parse: Parse) -> Result<(), PgError> {
        let name = parse.name.unwrap_or_default();
        if !name.is_empty() && self.statements.contains_key(&name) {
            return Err(PgError::error(
                code::DUPLICATE_STATEMENT,
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        let mut statements = self.session.parse(&parse.query).map_err(|e| pg_error(&e))?;
        let prepared = match statements.len() {
            0 => Prepared {
                kind: Kind::Empty,
                parameter_oids: Vec::new(),
                parameter_types: Vec::new(),
            },
            1 => {
                let statement = statements.remove(0);
                self.prepare(&statement, &parse.type_oids).await?
            }
            _ => {
                return Err(PgError::error(
                    code::SYNTAX,
                    "cannot insert multiple commands into a prepared statement",
                ));
            }
        };
        self.statements.insert(name, prepared);
        self.wire
            .push(PgWireBackendMessage::ParseComplete(ParseComplete::new()));
        Ok(())
    }

    pub(super) fn bind(&mut self, bind: Bind) -> Result<(), PgError> {
        let statement_name = bind.statement_name.unwrap_or_default();
        let prepared = self
            .statements
            .get(&statement_name)
            .cloned()
            .ok_or_else(|| {
                PgError::error(
                    code::UNDEFINED_STATEMENT,
                    format!("prepared statement \"{statement_name}\" does not exist"),
                )
            })?;
        let count = bind.parameters.len();
        if count != prepared.parameter_types.len() {
            return Err(PgError::error(
                code::PROTOCOL_VIOLATION,
                format!(
                    "bind message supplies {count} parameters, but prepared statement \"{statement_name}\" requires {}",
                    prepared.parameter_types.len()
                ),
            ));
        }
        let formats = &bind.parameter_format_codes;
        let mut values = Vec::with_capacity(count);
        for (i, value) in bind.parameters.iter().enumerate() {
            let binary = format_at(formats, i, count)?;
            values.push(crate::params::decode(
                i,
                value.as_ref(),
                binary,
                prepared.parameter_oids.get(i).copied().unwrap_or(0),
                prepared.parameter_types.get(i).and_then(Option::as_ref),
            )?);
        }
        let kind = match prepared.kind {
            Kind::Engine(statement) if count > 0 => Kind::Engine(bound(&statement, values)?),
            Kind::Cursor(CursorCommand::Declare {
                name,
                statement,
                binary,
                hold,
            }) if count > 0 => Kind::Cursor(CursorCommand::Declare {
                name,
                statement: bound(&statement, values)?,
                binary,
                hold,
            }),
            other => other,
        };
        let columns = self.result_schema(&kind).map_or(0, |s| s.fields().len());
        let codes = &bind.result_column_format_codes;
        let binary = (0..columns)
            .map(|i| format_at(codes, i, columns))
            .collect::<Result<Vec<_>, _>>()?;
        self.portals.insert(
            bind.portal_name.unwrap_or_default(),
            Portal {
                kind,
                binary,
                running: None,
                finished: false,
            },
        );
        self.wire
            .push(PgWireBackendMessage::BindComplete(BindComplete::new()));
        Ok(())
    }

    pub(super) fn describe(&mut self, describe: &Describe) -> Result<(), PgError> {
        let name = describe.name.clone().unwrap_or_default();
        if describe.target_type == b'S' {
            let prepared = self.statements.get(&name).ok_or_else(|| {
                PgError::error(
                    code::UNDEFINED_STATEMENT,
                    format!("prepared statement \"{name}\" does not exist"),
                )
            })?;
            let oids = prepared.parameter_oids.clone();
            let schema = self.result_schema(&prepared.kind);
            self.wire.push(PgWireBackendMessage::ParameterDescription(
                ParameterDescription::new(oids),
            ));
            self.push_row_description(schema.as_ref(), &[]);
        } else if let Some(portal) = self.portals.get(&name) {
            let schema = self.result_schema(&portal.kind);
            let binary = portal.binary.clone();
            self.push_row_description(schema.as_ref(), &binary);
        } else if let Some(schema) = self.cursor_schema(&name) {
            // A cursor is a portal too: psycopg describes one by name.
            let binary = self.cursor_formats(&name, &[]);
            self.push_row_description(Some(&schema), &binary);
        } else {
            return Err(PgError::error(
                code::UNDEFINED_CURSOR,
                format!("portal \"{name}\" does not exist"),
            ));
        }
        Ok(())
    }

    pub(super) async fn execute(
        &mut self,
        execute: &Execute,
    ) -> Result<Result<(), PgError>, WireError> {
        let name = execute.name.clone().unwrap_or_default();
        let Some(mut portal) = self.portals.remove(&name) else {
            return Ok(Err(PgError::error(
                code::UNDEFINED_CURSOR,
                format!("portal \"{name}\" does not exist"),
            )));
        };
        if portal.finished {
            // PostgreSQL keeps a finished portal: executing it again gives no rows.
            if matches!(&portal.kind, Kind::Engine(s) if matches!(s.result, ResultKind::Rows)) {
                self.complete("SELECT 0".into());
            } else {
                self.complete(String::new());
            }
            self.portals.insert(name, portal);
            return Ok(Ok(()));
        }
        let limit = usize::try_from(execute.max_rows).unwrap_or(0);
        match self.run(&mut portal, limit).await? {
            Ok(Outcome::Suspended) => {
                self.portals.insert(name, portal);
                Ok(Ok(()))
            }
            Ok(Outcome::Done) => {
                portal.finished = true;
                self.portals.insert(name, portal);
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    pub(super) fn close(&mut self, close: &Close) {
        let name = close.name.clone().unwrap_or_default();
        if close.target_type == b'S' {
            self.statements.remove(&name);
        } else {
            self.portals.remove(&name);
        }
        self.wire
            .push(PgWireBackendMessage::CloseComplete(CloseComplete::new()));
    }
}

/// `statement` with `values` bound to its placeholders `$1`, `$2`, ...
fn bound(
    statement: &EngineStatement,
    values: Vec<ScalarValue>,
) -> Result<Box<EngineStatement>, PgError> {
    let named: Vec<(String, ScalarValue)> = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("${}", i + 1), v))
        .collect();
    let planned = statement
        .planned
        .bind_by_name(&named)
        .map_err(|e| pg_error(&e))?;
    Ok(Box::new(EngineStatement {
        planned,
        result: statement.result.clone(),
    }))
}
