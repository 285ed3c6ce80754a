//! Operations: what the people who run Bluelamp see and control.
//!
//! - [`queries`]: running and recent statements (`bluelamp.queries`) and
//!   `bluelamp.cancel_query('id')`.
//! - [`tracked`]: each statement's streams under its statement timeout and
//!   cancel signal, entered in the registry and counted in the metrics.
//! - [`values`]: guards on functions whose results dwarf their arguments
//!   (`repeat`, `array_repeat`, `range`, ...), which would otherwise
//!   allocate beyond the memory limit.
//! - [`metrics`]: the Prometheus registry (per source, per front end,
//!   memory pool).
//! - [`trace`]: a span per statement and per source request, exported as
//!   OpenTelemetry traces where `[telemetry]` says where.
//!
//! One [`Operations`] belongs to each engine and is shared by its sessions.

pub mod metrics;
pub mod queries;
pub mod trace;
pub mod tracked;
pub mod values;

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TableType,
    Volatility,
};
use datafusion::physical_plan::ExecutionPlan;

pub use metrics::{Metrics, RequestError, SessionGauge, SourceMetrics};
pub use queries::{CancelRefused, Fetched, QueryOrigin, QueryRecord, QueryRegistry, QueryState};
pub use tracked::Stopped;

use crate::principal::Principal;

/// The operations side of one engine: its statements and its metrics.
#[derive(Debug, Default)]
pub struct Operations {
    /// Running and recent statements.
    pub queries: QueryRegistry,
    /// The Prometheus registry.
    pub metrics: Metrics,
    /// The role whose users see and may cancel every user's statements.
    pub operator_role: String,
}

impl Operations {
    /// Whether `principal` may see (and cancel) `record`: their own, or
    /// anyone's for an operator.
    pub fn may_see(&self, principal: &Principal, record: &QueryRecord) -> bool {
        record.origin.user == principal.user || self.is_operator(principal)
    }

    /// Whether `principal` has the operator role.
    pub fn is_operator(&self, principal: &Principal) -> bool {
        principal.roles.contains(&self.operator_role)
    }
}

/// The principal of the session scanning or calling, from its settings.
fn principal_of(config: &datafusion::prelude::SessionConfig) -> DFResult<Arc<Principal>> {
    config.get_extension::<Principal>().ok_or_else(|| {
        DataFusionError::Plan("this session has no principal to answer for".to_string())
    })
}

/// `bluelamp.queries`: the statements the reader may see, running first.
#[derive(Debug)]
pub struct QueriesTable {
    ops: Arc<Operations>,
}

impl QueriesTable {
    /// The table over `ops`' registry.
    pub fn new(ops: Arc<Operations>) -> Self {
        Self { ops }
    }
}

fn queries_schema() -> SchemaRef {
    let utc = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("user", DataType::Utf8, false),
        Field::new("client", DataType::Utf8, false),
        Field::new("address", DataType::Utf8, true),
        Field::new("purpose", DataType::Utf8, true),
        Field::new("sql", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("started", utc(), false),
        Field::new("elapsed_ms", DataType::UInt64, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("sources", DataType::Utf8, true),
        Field::new("requests", DataType::UInt64, false),
        Field::new("records_fetched", DataType::UInt64, false),
        Field::new("bytes_fetched", DataType::UInt64, false),
        Field::new("error", DataType::Utf8, true),
    ]))
}

#[async_trait]
impl TableProvider for QueriesTable {
    fn schema(&self) -> SchemaRef {
        queries_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let principal = principal_of(state.config())?;
        let records = self.ops.queries.list(|r| self.ops.may_see(&principal, r));
        let fetched: Vec<_> = records.iter().map(|r| r.fetched()).collect();
        let sum = |pick: fn(&Fetched) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(
                fetched.iter().map(|f| f.values().map(pick).sum::<u64>()),
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| r.id.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| r.origin.user.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| r.origin.client.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                records.iter().map(|r| r.origin.address.as_deref()),
            )),
            Arc::new(StringArray::from_iter(
                records.iter().map(|r| r.origin.purpose.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| r.origin.sql.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| r.state().as_str()),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    records
                        .iter()
                        .map(|r| crate::catalog::unix_millis(r.started)),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(UInt64Array::from_iter_values(records.iter().map(|r| {
                u64::try_from(r.elapsed().as_millis()).unwrap_or(u64::MAX)
            }))),
            Arc::new(UInt64Array::from_iter_values(
                records.iter().map(|r| r.rows()),
            )),
            Arc::new(StringArray::from_iter(fetched.iter().map(|f| {
                (!f.is_empty()).then(|| {
                    f.iter()
                        .map(|(source, f)| {
                            format!(
                                "{source}: {} requests, {} records, {} bytes",
                                f.requests, f.records, f.bytes
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            }))),
            sum(|f| f.requests),
            sum(|f| f.records),
            sum(|f| f.bytes),
            Arc::new(StringArray::from_iter(records.iter().map(|r| r.error()))),
        ];
        let batch = RecordBatch::try_new(queries_schema(), columns)?;
        crate::catalog::scan_batch(state, batch, projection, filters, limit).await
    }
}

/// `bluelamp.cancel_query('id')`: stops a running statement of the
/// caller's own, or anyone's for an operator; its client gets a cancelled
/// error. Answers with a sentence saying what was cancelled.
pub fn cancel_query_function(ops: Arc<Operations>, caller: Arc<Principal>) -> ScalarUDF {
    ScalarUDF::new_from_impl(CancelQuery {
        ops: ByAddress(ops),
        caller: ByAddress(caller),
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Volatile),
    })
}

/// A shared value compared and hashed by identity, for function structs
/// DataFusion compares (`ScalarUDFImpl` needs `Eq` and `Hash`).
#[derive(Debug)]
pub(crate) struct ByAddress<T: ?Sized>(pub(crate) Arc<T>);

impl<T: ?Sized> PartialEq for ByAddress<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T: ?Sized> Eq for ByAddress<T> {}

impl<T: ?Sized> std::hash::Hash for ByAddress<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0).cast::<u8>(), state);
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CancelQuery {
    ops: ByAddress<Operations>,
    caller: ByAddress<Principal>,
    signature: Signature,
}

impl ScalarUDFImpl for CancelQuery {
    fn name(&self) -> &str {
        "bluelamp.cancel_query"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let ops = &self.ops.0;
        let caller = &self.caller.0;
        let ids: Vec<Option<String>> = match &args.args[..] {
            [ColumnarValue::Scalar(value)] => vec![scalar_text(value)],
            [ColumnarValue::Array(array)] => (0..array.len())
                .map(|i| {
                    ScalarValue::try_from_array(array, i)
                        .ok()
                        .and_then(|v| scalar_text(&v))
                })
                .collect(),
            _ => {
                return Err(DataFusionError::Plan(
                    "bluelamp.cancel_query takes one argument: the statement's id ('q12')"
                        .to_string(),
                ));
            }
        };
        let mut answers = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(id) = id else {
                answers.push(None);
                continue;
            };
            match ops
                .queries
                .cancel(&id, &caller.user, |r| ops.may_see(caller, r))
            {
                Ok(record) => answers.push(Some(format!(
                    "cancelled {id} ({} by {})",
                    record.origin.client, record.origin.user
                ))),
                Err(CancelRefused::NotFound) => {
                    return Err(DataFusionError::Execution(format!(
                        "bluelamp.cancel_query: there is no statement '{id}' that you may \
                         cancel (see bluelamp.queries: users may cancel their own statements, \
                         the '{}' role anyone's)",
                        ops.operator_role
                    )));
                }
                Err(CancelRefused::Ended(state)) => {
                    return Err(DataFusionError::Execution(format!(
                        "bluelamp.cancel_query: statement '{id}' has already ended ({})",
                        state.as_str()
                    )));
                }
            }
        }
        Ok(match &args.args[0] {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::Utf8(answers.into_iter().next().flatten()))
            }
            ColumnarValue::Array(_) => {
                ColumnarValue::Array(Arc::new(StringArray::from(answers)) as ArrayRef)
            }
        })
    }
}

fn scalar_text(value: &ScalarValue) -> Option<String> {
    match value {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => v.clone(),
        _ => None,
    }
}
