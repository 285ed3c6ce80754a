//! An authenticated connection's statements: the simple and extended query
//! protocols over one [`Session`].
//!
//! Every statement that reads or changes data is planned and run by the
//! session (policy, audit, purpose). What the protocol itself owns is
//! answered here: transaction control (`BEGIN`/`COMMIT`/`ROLLBACK` and
//! savepoints are accepted and do nothing, since every statement commits
//! on its own;
//! deposits inside a transaction block are refused, because a supplier's
//! system cannot roll them back), and the session parameters drivers set
//! and show (`client_encoding`, `DateStyle`, `extra_float_digits`, ...).
//! `SET`/`SHOW` of dotted names (`bluelamp.purpose`, `datafusion.*`) go to
//! the session.
//!
//! Results stream batch by batch: rows are encoded into the connection's
//! buffer and written whenever it fills, so a slow client slows the query
//! rather than the server holding the result. A portal executed with a row
//! limit keeps its running stream until the next `Execute`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::{DataType, SchemaRef};
use bluelamp_engine::{ErrorKind, Planned, QueryError, Session, Statement};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use pgwire::messages::data::{FieldDescription, NoData, RowDescription};
use pgwire::messages::extendedquery::PortalSuspended;
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio_util::sync::CancellationToken;

use crate::errors::{code, pg_error};
use crate::server::CancelSlot;
use crate::types::{RowWriter, oid, pg_field_type, pg_type, plain_columns, plain_schema};
use crate::wire::{PgError, Wire, WireError};

mod cursors;
mod extended;
mod local;

use cursors::{Cursor, CursorCommand, cursor_command};
use local::{Local, local, reported_name};
pub(crate) use local::{PARAMETERS, SERVER_VERSION, check_encoding};

/// The message PostgreSQL sends for a cancelled statement.
const CANCELLED: &str = "canceling statement due to user request";

/// What one statement is, as this connection runs it.
#[derive(Clone)]
enum Kind {
    /// No statement (an empty or comment-only query).
    Empty,
    /// Answered by the protocol layer.
    Local(Local),
    /// Run by the session.
    Engine(Box<EngineStatement>),
    /// A server-side cursor's `DECLARE`, `FETCH` or `CLOSE`.
    Cursor(CursorCommand),
}

#[derive(Clone)]
struct EngineStatement {
    planned: Planned,
    result: ResultKind,
}

/// What a statement sends back.
#[derive(Clone)]
enum ResultKind {
    /// Rows, tagged `SELECT n`.
    Rows,
    /// A deposit: its one count row becomes `INSERT 0 n`.
    Insert,
    /// Nothing but its tag (`CREATE VIEW`, `SET`).
    Tag(String),
}

/// A prepared statement.
#[derive(Clone)]
struct Prepared {
    kind: Kind,
    /// Each parameter's declared or inferred OID.
    parameter_oids: Vec<u32>,
    /// Each parameter's inferred Arrow type.
    parameter_types: Vec<Option<DataType>>,
}

/// A bound statement, ready to execute or running.
struct Portal {
    kind: Kind,
    binary: Vec<bool>,
    running: Option<Running>,
    /// Run to its end: a further Execute returns no rows (`SELECT 0`).
    finished: bool,
}

struct Running {
    stream: SendableRecordBatchStream,
    /// A batch's columns not yet all sent, and the next row.
    pending: Option<(Vec<ArrayRef>, usize, usize)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transaction {
    Idle,
    Block,
    Failed,
}

/// An authenticated connection.
pub(crate) struct Conn {
    pub(crate) wire: Wire,
    session: Session,
    pid: i32,
    slot: CancelSlot,
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
    cursors: HashMap<String, Cursor>,
    /// The same cursors, as `pg_catalog.pg_cursors` shows them.
    open_cursors: crate::catalog::OpenCursors,
    transaction: Transaction,
    settings: BTreeMap<String, String>,
    /// After an error in the extended protocol, messages are skipped until Sync.
    skipping: bool,
}

/// How a statement ended, short of the connection failing.
enum Outcome {
    Done,
    Suspended,
}

impl Conn {
    pub(crate) fn new(
        wire: Wire,
        session: Session,
        pid: i32,
        slot: CancelSlot,
        open_cursors: crate::catalog::OpenCursors,
        startup: &BTreeMap<String, String>,
    ) -> Self {
        let mut settings: BTreeMap<String, String> = PARAMETERS
            .iter()
            .map(|(name, value, _)| ((*name).to_string(), (*value).to_string()))
            .collect();
        settings.insert(
            "session_authorization".into(),
            session.identity().user.clone(),
        );
        for (name, value) in startup {
            let name = name.to_ascii_lowercase();
            if settings.contains_key(&name) && name != "client_encoding" {
                settings.insert(name, value.clone());
            }
        }
        Self {
            wire,
            session,
            pid,
            slot,
            statements: HashMap::new(),
            portals: HashMap::new(),
            cursors: HashMap::new(),
            open_cursors,
            transaction: Transaction::Idle,
            settings,
            skipping: false,
        }
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// The parameters sent at start-up.
    pub(crate) fn reported_parameters(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = PARAMETERS
            .iter()
            .filter(|(_, _, reported)| *reported)
            .map(|(name, _, _)| {
                (
                    reported_name(name).to_string(),
                    self.settings.get(*name).cloned().unwrap_or_default(),
                )
            })
            .collect();
        out.push((
            "session_authorization".into(),
            self.session.identity().user.clone(),
        ));
        out
    }

    fn status(&self) -> TransactionStatus {
        match self.transaction {
            Transaction::Idle => TransactionStatus::Idle,
            Transaction::Block => TransactionStatus::Transaction,
            Transaction::Failed => TransactionStatus::Error,
        }
    }

    fn ready(&mut self) {
        let status = self.status();
        self.wire
            .push(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )));
    }

    fn fail_transaction(&mut self) {
        if self.transaction == Transaction::Block {
            self.transaction = Transaction::Failed;
        }
    }

    /// Serves messages until the client leaves.
    pub(crate) async fn serve(mut self) -> Result<(), WireError> {
        while let Some(message) = self.wire.read().await? {
            match message {
                PgWireFrontendMessage::Query(query) => {
                    self.simple_query(&query.query).await?;
                    self.ready();
                    self.wire.flush().await?;
                }
                PgWireFrontendMessage::Sync(_) => {
                    self.skipping = false;
                    self.portals.remove("");
                    if self.transaction == Transaction::Idle {
                        self.portals.clear();
                    }
                    self.ready();
                    self.wire.flush().await?;
                }
                PgWireFrontendMessage::Flush(_) => self.wire.flush().await?,
                PgWireFrontendMessage::Terminate(_) => break,
                _ if self.skipping => {}
                PgWireFrontendMessage::Parse(parse) => {
                    let result = self.parse(parse).await;
                    self.extended(result);
                }
                PgWireFrontendMessage::Bind(bind) => {
                    let result = self.bind(bind);
                    self.extended(result);
                }
                PgWireFrontendMessage::Describe(describe) => {
                    let result = self.describe(&describe);
                    self.extended(result);
                }
                PgWireFrontendMessage::Execute(execute) => {
                    let result = self.execute(&execute).await?;
                    self.extended(result);
                }
                PgWireFrontendMessage::Close(close) => {
                    self.close(&close);
                }
                other => {
                    let e = PgError::fatal(
                        code::PROTOCOL_VIOLATION,
                        format!("unexpected message {other:?}"),
                    );
                    self.wire.fail(&e).await;
                    return Ok(());
                }
            }
        }
        self.wire.close().await;
        Ok(())
    }

    /// After an extended-protocol message: an error is sent, and the rest
    /// up to Sync is skipped.
    fn extended(&mut self, result: Result<(), PgError>) {
        if let Err(e) = result {
            self.wire.push_error(&e);
            self.skipping = true;
            self.fail_transaction();
        }
    }

    // ---- the simple query protocol ----

    async fn simple_query(&mut self, sql: &str) -> Result<(), WireError> {
        let statements = match self.session.parse(sql) {
            Ok(statements) => statements,
            Err(e) => {
                self.wire.push_error(&pg_error(&e));
                self.fail_transaction();
                return Ok(());
            }
        };
        if statements.is_empty() {
            self.wire.push(PgWireBackendMessage::EmptyQueryResponse(
                EmptyQueryResponse::new(),
            ));
            return Ok(());
        }
        for statement in statements {
            let kind = match self.prepare(&statement, &[]).await {
                Ok(prepared) => prepared.kind,
                Err(e) => {
                    self.wire.push_error(&e);
                    self.fail_transaction();
                    break;
                }
            };
            let mut portal = Portal {
                kind,
                binary: Vec::new(),
                running: None,
                finished: false,
            };
            self.describe_portal(&portal);
            if let Err(e) = self.run(&mut portal, 0).await? {
                self.wire.push_error(&e);
                self.fail_transaction();
                break;
            }
        }
        Ok(())
    }

    // ---- statements ----

    /// Classifies and plans one statement.
    async fn prepare(
        &mut self,
        statement: &Statement,
        declared: &[u32],
    ) -> Result<Prepared, PgError> {
        // Placeholders as written: a rewrite may drop some from the plan,
        // but the client binds them all.
        let written = crate::dialect::placeholder_count(statement);
        // `$4000000000` would size the parameter list: bounded first.
        if written > bluelamp_engine::session::MAX_PARAMETERS {
            return Err(PgError::error(
                "54000",
                format!(
                    "${written} is beyond the {} parameters a statement may take",
                    bluelamp_engine::session::MAX_PARAMETERS
                ),
            ));
        }
        let mut statement = statement.clone();
        crate::dialect::rewrite(&mut statement);
        let statement = &statement;
        if self.transaction == Transaction::Failed
            && !matches!(
                local(statement),
                Some(Local::Commit | Local::Rollback | Local::RollbackToSavepoint)
            )
        {
            return Err(PgError::error(
                code::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        if let Some(local) = local(statement) {
            return Ok(Prepared {
                kind: Kind::Local(local),
                parameter_oids: Vec::new(),
                parameter_types: Vec::new(),
            });
        }
        if let Some(cursor) = cursor_command(statement) {
            return self.plan_cursor(cursor?).await;
        }
        if statement.is_insert() && self.transaction != Transaction::Idle {
            return Err(PgError::error(
                code::FEATURE_NOT_SUPPORTED,
                "a deposit cannot run inside a transaction block: a supplier's system cannot roll it back, so run the INSERT outside BEGIN ... COMMIT",
            ));
        }
        let token = self.slot.begin();
        let planned = cancellable(&token, self.session.plan(statement)).await;
        self.slot.end();
        let planned = planned.map_err(|e| pg_error(&e))?;
        let parameters = planned.parameters().map_err(|e| pg_error(&e))?;
        let count = written.max(parameters.len());
        let parameter_types: Vec<Option<DataType>> = (1..=count)
            .map(|n| {
                let name = format!("${n}");
                parameters
                    .iter()
                    .find(|(p, _)| *p == name)
                    .and_then(|(_, t)| t.clone())
            })
            .collect();
        let parameter_oids = parameter_types
            .iter()
            .enumerate()
            // A type the client declares is the parameter's type, as in
            // PostgreSQL (its values arrive laid out so); the engine casts
            // them to what the statement needs when they are bound.
            .map(|(i, t)| match (declared.get(i), t) {
                (Some(declared), _) if *declared != 0 => *declared,
                (_, Some(t)) => pg_type(t).oid,
                (_, None) => oid::TEXT,
            })
            .collect();
        let result = if statement.is_insert() {
            ResultKind::Insert
        } else if planned.is_write() {
            ResultKind::Tag(command_tag(&statement.to_string()))
        } else {
            ResultKind::Rows
        };
        Ok(Prepared {
            kind: Kind::Engine(Box::new(EngineStatement { planned, result })),
            parameter_oids,
            parameter_types,
        })
    }

    /// The columns a statement returns, if it returns rows.
    fn result_schema(&self, kind: &Kind) -> Option<SchemaRef> {
        match kind {
            Kind::Engine(statement) => match statement.result {
                ResultKind::Rows => Some(plain_schema(&statement.planned.schema())),
                _ => None,
            },
            Kind::Local(Local::Show(name)) => Some(Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new(name, DataType::Utf8, true),
            ]))),
            Kind::Cursor(CursorCommand::Fetch { name, .. }) => self.cursor_schema(name),
            _ => None,
        }
    }

    /// RowDescription (or NoData) for a portal about to run in the simple
    /// protocol.
    fn describe_portal(&mut self, portal: &Portal) {
        if !matches!(portal.kind, Kind::Empty) {
            let schema = self.result_schema(&portal.kind);
            let binary = match &portal.kind {
                Kind::Cursor(CursorCommand::Fetch { name, .. }) => {
                    self.cursor_formats(name, &portal.binary)
                }
                _ => portal.binary.clone(),
            };
            if schema.is_some() {
                self.push_row_description(schema.as_ref(), &binary);
            }
        }
    }

    fn push_row_description(&mut self, schema: Option<&SchemaRef>, binary: &[bool]) {
        let Some(schema) = schema else {
            self.wire.push(PgWireBackendMessage::NoData(NoData::new()));
            return;
        };
        let fields = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let t = pg_field_type(field);
                FieldDescription::new(
                    field.name().clone(),
                    0,
                    0,
                    t.oid,
                    t.size,
                    t.modifier,
                    i16::from(binary.get(i).copied().unwrap_or(false)),
                )
            })
            .collect();
        self.wire
            .push(PgWireBackendMessage::RowDescription(RowDescription::new(
                fields,
            )));
    }

    /// Runs (or continues) a portal, sending at most `limit` rows (0: all).
    async fn run(
        &mut self,
        portal: &mut Portal,
        limit: usize,
    ) -> Result<Result<Outcome, PgError>, WireError> {
        match portal.kind.clone() {
            Kind::Empty => {
                self.wire.push(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ));
                Ok(Ok(Outcome::Done))
            }
            Kind::Local(local) => Ok(self.run_local(local).map(|()| Outcome::Done)),
            Kind::Cursor(command) => {
                let formats = portal.binary.clone();
                self.run_cursor(command, &formats).await
            }
            Kind::Engine(statement) => {
                let token = self.slot.begin();
                let outcome = self
                    .run_engine(portal, &statement, limit, &token, false)
                    .await;
                self.slot.end();
                outcome
            }
        }
    }

    async fn run_engine(
        &mut self,
        portal: &mut Portal,
        statement: &EngineStatement,
        limit: usize,
        token: &CancellationToken,
        fetch: bool,
    ) -> Result<Result<Outcome, PgError>, WireError> {
        if portal.running.is_none() {
            let output =
                match cancellable(token, self.session.execute(statement.planned.clone())).await {
                    Ok(output) => output,
                    Err(e) => return Ok(Err(pg_error(&e))),
                };
            portal.running = Some(Running {
                stream: output.stream,
                pending: None,
            });
        }
        let Some(running) = portal.running.as_mut() else {
            return Ok(Ok(Outcome::Done));
        };
        match &statement.result {
            ResultKind::Rows => {
                let mut sent = 0usize;
                loop {
                    if let Some((columns, rows, next)) = running.pending.take() {
                        let end = if limit == 0 {
                            rows
                        } else {
                            rows.min(next + (limit - sent))
                        };
                        {
                            let schema = running.stream.schema();
                            let mut writer = match RowWriter::new(&schema, &columns, &portal.binary)
                            {
                                Ok(writer) => writer,
                                Err(e) => {
                                    return Ok(Err(PgError::error(
                                        code::DATA_EXCEPTION,
                                        format!("cannot send a result column: {e}"),
                                    )));
                                }
                            };
                            for row in next..end {
                                writer.write_row(row, self.wire.out());
                            }
                        }
                        sent += end - next;
                        if end < rows {
                            running.pending = Some((columns, rows, end));
                        }
                        self.wire.flush_if_full().await?;
                        if limit != 0 && sent >= limit {
                            // A cursor's FETCH is complete with its rows; a
                            // portal is suspended until the next Execute.
                            if fetch {
                                self.complete(format!("FETCH {sent}"));
                            } else {
                                self.wire.push(PgWireBackendMessage::PortalSuspended(
                                    PortalSuspended::new(),
                                ));
                            }
                            return Ok(Ok(Outcome::Suspended));
                        }
                    }
                    let batch = match next_batch(token, &mut running.stream).await {
                        Ok(Some(batch)) => batch,
                        Ok(None) => break,
                        Err(e) => {
                            portal.running = None;
                            return Ok(Err(e));
                        }
                    };
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    match plain_columns(&batch) {
                        Ok(columns) => running.pending = Some((columns, batch.num_rows(), 0)),
                        Err(e) => {
                            portal.running = None;
                            return Ok(Err(PgError::error(
                                code::DATA_EXCEPTION,
                                format!("cannot send a result column: {e}"),
                            )));
                        }
                    }
                }
                portal.running = None;
                self.complete(if fetch {
                    format!("FETCH {sent}")
                } else {
                    format!("SELECT {sent}")
                });
                Ok(Ok(Outcome::Done))
            }
            ResultKind::Insert | ResultKind::Tag(_) => {
                let mut count: u64 = 0;
                loop {
                    match next_batch(token, &mut running.stream).await {
                        Ok(Some(batch)) => count += inserted(&batch),
                        Ok(None) => break,
                        Err(e) => {
                            portal.running = None;
                            return Ok(Err(e));
                        }
                    }
                }
                portal.running = None;
                let tag = match &statement.result {
                    ResultKind::Tag(tag) => tag.clone(),
                    _ => format!("INSERT 0 {count}"),
                };
                self.complete(tag);
                Ok(Ok(Outcome::Done))
            }
        }
    }

    fn complete(&mut self, tag: String) {
        self.wire
            .push(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                tag,
            )));
    }
}

/// Whether format code list `codes` makes item `index` (of `count`) binary.
fn format_at(codes: &[i16], index: usize, count: usize) -> Result<bool, PgError> {
    let code = match codes.len() {
        0 => 0,
        1 => codes[0],
        n if n == count => codes[index],
        n => {
            return Err(PgError::error(
                code::PROTOCOL_VIOLATION,
                format!("{n} format codes were sent for {count} values"),
            ));
        }
    };
    match code {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(PgError::error(
            code::PROTOCOL_VIOLATION,
            format!("unknown format code {other}"),
        )),
    }
}

/// Rows a deposit's result reports (its `count` column).
fn inserted(batch: &arrow::array::RecordBatch) -> u64 {
    let Some(column) = batch.columns().first() else {
        return 0;
    };
    match column.data_type() {
        DataType::UInt64 => column
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .iter()
            .flatten()
            .sum(),
        DataType::Int64 => column
            .as_primitive::<arrow::datatypes::Int64Type>()
            .iter()
            .flatten()
            .map(|n| n.max(0) as u64)
            .sum(),
        _ => 0,
    }
}

/// A running statement's next batch (`None` at its end), or why there is
/// none: cancelled, or failed.
async fn next_batch(
    token: &CancellationToken,
    stream: &mut SendableRecordBatchStream,
) -> Result<Option<arrow::array::RecordBatch>, PgError> {
    tokio::select! {
        biased;
        () = token.cancelled() => Err(PgError::error(code::QUERY_CANCELED, CANCELLED)),
        next = stream.next() => match next {
            None => Ok(None),
            Some(Ok(batch)) => Ok(Some(batch)),
            Some(Err(e)) => Err(pg_error(&bluelamp_engine::error::classify(&e))),
        },
    }
}

/// Races a future against the statement's cancellation.
async fn cancellable<T>(
    token: &CancellationToken,
    work: impl std::future::Future<Output = Result<T, QueryError>>,
) -> Result<T, QueryError> {
    tokio::select! {
        biased;
        () = token.cancelled() => Err(QueryError::new(ErrorKind::Cancelled, CANCELLED)),
        result = work => result,
    }
}

/// The command tag of a statement that returns no rows: `CREATE VIEW`,
/// `DROP TABLE`, `SET`, ...
fn command_tag(sql: &str) -> String {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(8)
        .map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphabetic())
                .to_ascii_uppercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let Some(first) = words.first() else {
        return String::new();
    };
    if matches!(first.as_str(), "CREATE" | "DROP" | "ALTER") {
        let skip = [
            "OR",
            "REPLACE",
            "TEMPORARY",
            "TEMP",
            "EXTERNAL",
            "UNLOGGED",
            "IF",
            "NOT",
            "EXISTS",
            "MATERIALIZED",
        ];
        if let Some(object) = words[1..].iter().find(|w| !skip.contains(&w.as_str())) {
            return format!("{first} {object}");
        }
    }
    first.clone()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn command_tags() {
        assert_eq!(
            command_tag("CREATE OR REPLACE VIEW v AS SELECT 1"),
            "CREATE VIEW"
        );
        assert_eq!(command_tag("drop table if exists t"), "DROP TABLE");
        assert_eq!(command_tag("SET bluelamp.purpose = 'x'"), "SET");
    }

    #[test]
    fn format_codes() {
        assert!(!format_at(&[], 2, 3).unwrap());
        assert!(format_at(&[1], 2, 3).unwrap());
        assert!(format_at(&[0, 1, 0], 1, 3).unwrap());
        assert!(format_at(&[0, 1], 1, 3).is_err());
    }
}
