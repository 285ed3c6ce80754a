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
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::{self, Expr, Value};
use futures::StreamExt;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::messages::data::{FieldDescription, NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Close, CloseComplete, Describe, Execute, Parse, ParseComplete,
    PortalSuspended,
};
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::startup::ParameterStatus;
use tokio_util::sync::CancellationToken;

use crate::errors::{code, pg_error};
use crate::server::CancelSlot;
use crate::types::{RowWriter, oid, pg_field_type, pg_type, plain_columns, plain_schema};
use crate::wire::{PgError, Wire, WireError};

/// The message PostgreSQL sends for a cancelled statement.
const CANCELLED: &str = "canceling statement due to user request";

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
fn reported_name(name: &str) -> &str {
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

/// What one statement is, as this connection runs it.
#[derive(Clone)]
enum Kind {
    /// No statement (an empty or comment-only query).
    Empty,
    /// Answered by the protocol layer.
    Local(Local),
    /// Run by the session.
    Engine(Box<EngineStatement>),
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

#[derive(Clone)]
enum Local {
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

    // ---- the extended query protocol ----

    async fn parse(&mut self, parse: Parse) -> Result<(), PgError> {
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

    fn bind(&mut self, bind: Bind) -> Result<(), PgError> {
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
            Kind::Engine(statement) if count > 0 => {
                let named: Vec<(String, ScalarValue)> = values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("${}", i + 1), v))
                    .collect();
                let planned = statement
                    .planned
                    .bind_by_name(&named)
                    .map_err(|e| pg_error(&e))?;
                Kind::Engine(Box::new(EngineStatement {
                    planned,
                    result: statement.result,
                }))
            }
            other => other,
        };
        let columns = result_schema(&kind).map_or(0, |s| s.fields().len());
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

    fn describe(&mut self, describe: &Describe) -> Result<(), PgError> {
        let name = describe.name.clone().unwrap_or_default();
        if describe.target_type == b'S' {
            let prepared = self.statements.get(&name).ok_or_else(|| {
                PgError::error(
                    code::UNDEFINED_STATEMENT,
                    format!("prepared statement \"{name}\" does not exist"),
                )
            })?;
            let oids = prepared.parameter_oids.clone();
            let schema = result_schema(&prepared.kind);
            self.wire.push(PgWireBackendMessage::ParameterDescription(
                ParameterDescription::new(oids),
            ));
            self.push_row_description(schema.as_ref(), &[]);
        } else {
            let portal = self.portals.get(&name).ok_or_else(|| {
                PgError::error(
                    code::UNDEFINED_CURSOR,
                    format!("portal \"{name}\" does not exist"),
                )
            })?;
            let schema = result_schema(&portal.kind);
            let binary = portal.binary.clone();
            self.push_row_description(schema.as_ref(), &binary);
        }
        Ok(())
    }

    async fn execute(&mut self, execute: &Execute) -> Result<Result<(), PgError>, WireError> {
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

    fn close(&mut self, close: &Close) {
        let name = close.name.clone().unwrap_or_default();
        if close.target_type == b'S' {
            self.statements.remove(&name);
        } else {
            self.portals.remove(&name);
        }
        self.wire
            .push(PgWireBackendMessage::CloseComplete(CloseComplete::new()));
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

    /// RowDescription (or NoData) for a portal about to run in the simple
    /// protocol.
    fn describe_portal(&mut self, portal: &Portal) {
        if !matches!(portal.kind, Kind::Empty) {
            let schema = result_schema(&portal.kind);
            if schema.is_some() {
                self.push_row_description(schema.as_ref(), &portal.binary);
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
            Kind::Engine(statement) => {
                let token = self.slot.begin();
                let outcome = self.run_engine(portal, &statement, limit, &token).await;
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
                            self.wire.push(PgWireBackendMessage::PortalSuspended(
                                PortalSuspended::new(),
                            ));
                            return Ok(Ok(Outcome::Suspended));
                        }
                    }
                    let next = tokio::select! {
                        biased;
                        () = token.cancelled() => {
                            portal.running = None;
                            return Ok(Err(PgError::error(code::QUERY_CANCELED, CANCELLED)));
                        }
                        next = running.stream.next() => next,
                    };
                    match next {
                        None => break,
                        Some(Err(e)) => {
                            portal.running = None;
                            let e = bluelamp_engine::error::classify(&e);
                            return Ok(Err(pg_error(&e)));
                        }
                        Some(Ok(batch)) if batch.num_rows() == 0 => {}
                        Some(Ok(batch)) => match plain_columns(&batch) {
                            Ok(columns) => running.pending = Some((columns, batch.num_rows(), 0)),
                            Err(e) => {
                                portal.running = None;
                                return Ok(Err(PgError::error(
                                    code::DATA_EXCEPTION,
                                    format!("cannot send a result column: {e}"),
                                )));
                            }
                        },
                    }
                }
                portal.running = None;
                self.complete(format!("SELECT {sent}"));
                Ok(Ok(Outcome::Done))
            }
            ResultKind::Insert | ResultKind::Tag(_) => {
                let mut count: u64 = 0;
                loop {
                    let next = tokio::select! {
                        biased;
                        () = token.cancelled() => {
                            portal.running = None;
                            return Ok(Err(PgError::error(code::QUERY_CANCELED, CANCELLED)));
                        }
                        next = running.stream.next() => next,
                    };
                    match next {
                        None => break,
                        Some(Err(e)) => {
                            portal.running = None;
                            let e = bluelamp_engine::error::classify(&e);
                            return Ok(Err(pg_error(&e)));
                        }
                        Some(Ok(batch)) => count += inserted(&batch),
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

    fn run_local(&mut self, local: Local) -> Result<(), PgError> {
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
                let tag = if self.transaction == Transaction::Failed {
                    "ROLLBACK"
                } else {
                    "COMMIT"
                };
                if self.transaction == Transaction::Idle {
                    self.wire.push_notice(
                        code::NO_ACTIVE_TRANSACTION,
                        "there is no transaction in progress",
                    );
                }
                self.transaction = Transaction::Idle;
                self.complete(tag.into());
            }
            Local::Rollback => {
                if self.transaction == Transaction::Idle {
                    self.wire.push_notice(
                        code::NO_ACTIVE_TRANSACTION,
                        "there is no transaction in progress",
                    );
                }
                self.transaction = Transaction::Idle;
                self.complete("ROLLBACK".into());
            }
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

/// The columns a statement returns, if it returns rows.
fn result_schema(kind: &Kind) -> Option<SchemaRef> {
    match kind {
        Kind::Engine(statement) => match statement.result {
            ResultKind::Rows => Some(plain_schema(&statement.planned.schema())),
            _ => None,
        },
        Kind::Local(Local::Show(name)) => Some(Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new(name, DataType::Utf8, true),
        ]))),
        _ => None,
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
fn local(statement: &Statement) -> Option<Local> {
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
