//! Deposits: what happened to each row an `INSERT` sent into a supplier
//! system. DataFusion reports only a row count; writing into another
//! organisation's system of record needs every row accounted for. Connectors
//! record one [`DepositOutcome`] per row in the session's [`DepositJournal`],
//! and `SELECT * FROM bluelamp.deposits` shows them — from the REPL and over
//! Flight SQL alike, since both are plain SQL.
//!
//! `SET bluelamp.deposit_mode = 'validate'` turns every deposit in the session
//! into validation only: rows are checked and the requests that would be sent
//! are recorded, but nothing is sent.

use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt16Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::config::ConfigExtension;
use datafusion::common::extensions_options;
use datafusion::datasource::TableProvider;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

extensions_options! {
    /// Bluelamp's own session settings, set with `SET bluelamp.<name> = ...`.
    pub struct BluelampOptions {
        /// `send` (default) sends deposits; `validate` checks every row and
        /// records the requests that would be sent, without sending them.
        pub deposit_mode: String, default = "send".to_string()
        /// Why the user is consulting the data, recorded with every statement
        /// in the audit trail (and required where `[audit] require_purpose`
        /// names a source the statement reads).
        pub purpose: String, default = String::new()
        /// `true` reads accelerated tables from their sources, not from
        /// their local copies, for this session.
        pub live: bool, default = false
        /// How long each statement may run (`'30s'`, `'5m'`), at most the
        /// server's `[engine] statement_timeout`; empty: the server's.
        pub statement_timeout: String, default = String::new()
    }
}

impl ConfigExtension for BluelampOptions {
    const PREFIX: &'static str = "bluelamp";
}

impl BluelampOptions {
    /// Whether the session reads accelerated tables from their sources
    /// (`SET bluelamp.live = true`).
    pub fn live(config: &datafusion::common::config::ConfigOptions) -> bool {
        config
            .extensions
            .get::<BluelampOptions>()
            .is_some_and(|o| o.live)
    }

    /// Whether a session's `INSERT`s are a dry run (`SET
    /// bluelamp.deposit_mode = 'validate'`): every sink checks the rows,
    /// records their outcomes and sends nothing.
    ///
    /// # Errors
    /// A message for a mode other than `send` or `validate`.
    pub fn validate_only(config: &datafusion::prelude::SessionConfig) -> Result<bool, String> {
        match config
            .options()
            .extensions
            .get::<BluelampOptions>()
            .map(|o| o.deposit_mode.as_str())
        {
            None | Some("send") => Ok(false),
            Some("validate") => Ok(true),
            Some(other) => Err(format!(
                "bluelamp.deposit_mode is '{other}'; use 'send' or 'validate'"
            )),
        }
    }
}

/// What happened to one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositOutcome {
    /// Which `INSERT` of the session (1, 2, ...).
    pub statement: u64,
    /// The row's number within the statement, from 1.
    pub row: u64,
    /// `source.table`.
    pub target: String,
    /// `stored`, `replayed` (already stored by an earlier attempt with the same
    /// idempotency key), `rejected` (the supplier refused it), `failed` (not
    /// stored; safe to send again), `unknown` (sent, but whether it was stored
    /// cannot be known), `invalid` (failed validation, nothing sent),
    /// `validated` (dry run) or `not sent` (another row was invalid).
    pub outcome: String,
    /// The supplier's HTTP status, if it answered.
    pub http_status: Option<u16>,
    /// The identifier the supplier assigned (e.g. a crime reference number).
    pub identifier: Option<String>,
    /// Why, for anything but `stored`.
    pub message: Option<String>,
    /// The `Idempotency-Key` sent, if the interface supports one.
    pub idempotency_key: Option<String>,
    /// `METHOD /path` and the JSON body sent (or that would be sent).
    pub request: String,
}

/// At most this many outcomes are kept per session; the oldest go first.
const MAX_OUTCOMES: usize = 100_000;

/// One session's deposit outcomes, newest statement last.
#[derive(Debug, Default)]
pub struct DepositJournal {
    inner: Mutex<(u64, Vec<DepositOutcome>)>,
}

impl DepositJournal {
    /// A number for a new statement.
    pub fn begin(&self) -> u64 {
        match self.inner.lock() {
            Ok(mut inner) => {
                inner.0 += 1;
                inner.0
            }
            Err(_) => 0,
        }
    }

    /// The number of the latest statement (0 before any).
    pub fn last_statement(&self) -> u64 {
        self.inner.lock().map(|inner| inner.0).unwrap_or(0)
    }

    /// Records a statement's outcomes.
    pub fn record(&self, outcomes: Vec<DepositOutcome>) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.1.extend(outcomes);
            let excess = inner.1.len().saturating_sub(MAX_OUTCOMES);
            inner.1.drain(..excess);
        }
    }

    /// Every kept outcome.
    pub fn outcomes(&self) -> Vec<DepositOutcome> {
        self.inner
            .lock()
            .map(|inner| inner.1.clone())
            .unwrap_or_default()
    }
}

fn deposits_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("statement", DataType::UInt64, false),
        Field::new("row", DataType::UInt64, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("http_status", DataType::UInt16, true),
        Field::new("identifier", DataType::Utf8, true),
        Field::new("message", DataType::Utf8, true),
        Field::new("idempotency_key", DataType::Utf8, true),
        Field::new("request", DataType::Utf8, false),
    ]))
}

/// `bluelamp.deposits`: the session's deposit outcomes, read at scan time.
#[derive(Debug)]
pub struct DepositsTable;

#[async_trait]
impl TableProvider for DepositsTable {
    fn schema(&self) -> SchemaRef {
        deposits_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let rows = state
            .config()
            .get_extension::<DepositJournal>()
            .map(|j| j.outcomes())
            .unwrap_or_default();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.statement),
            )),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.row))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.target.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.outcome.as_str()),
            )),
            Arc::new(UInt16Array::from_iter(rows.iter().map(|r| r.http_status))),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.identifier.as_deref()),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.message.as_deref()),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.idempotency_key.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.request.as_str()),
            )),
        ];
        let batch = RecordBatch::try_new(deposits_schema(), columns)?;
        crate::catalog::scan_batch(state, batch, projection, filters, limit).await
    }
}
