//! [`BluelampCodec`]: how Bluelamp's own plan nodes cross to a Ballista
//! scheduler and its executors.
//!
//! An OpenAPI scan travels as a [`RemoteScan`]: source, table, pushed
//! parameter values, columns, limit, the end user's header. Never the
//! source's client, whose credentials stay in each process's own
//! configuration: an executor rebuilds the scan from its own table of the
//! same name ([`Engine::live_table`]). A process without a configuration
//! (the scheduler, which only splits plans into stages) keeps the node as a
//! [`PendingScanExec`], which re-encodes to the same bytes and refuses to
//! run. A database's federated sub-plan travels as its final SQL
//! ([`RemoteSql`]), which an executor runs over its own connection to the
//! source, after checking it is one query that reads only the source's
//! tables with the functions Bluelamp sends that database. Files travel as
//! DataFusion's own scans (their store URLs are the
//! same in every process with the same configuration); Ballista's shuffle
//! nodes through Ballista's codec. Any other node fails to encode with an
//! error that names it, so a plan never runs short of a part.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use bluelamp_connectors::openapi::OpenApiTableProvider;
use bluelamp_connectors::openapi::exec::{OpenApiExec, RemoteScan};
use bluelamp_connectors::sql::portable::{RemoteSql, SqlQueryExec, remote_sql};
use bluelamp_engine::Engine;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion_federation::schema_cast::SchemaCastScanExec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

/// What starts every node this codec writes (Ballista's own nodes are
/// protobuf messages, which never start so).
const MAGIC: &[u8] = b"BLUELAMP-NODE/1\n";

/// One of Bluelamp's nodes on the wire.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum Node {
    /// An OpenAPI scan, and the columns it produces (so a process without
    /// the source can still plan around it).
    OpenApi {
        scan: RemoteScan,
        schema: serde_json::Value,
        /// The partitions the scan was planned with (one per request
        /// series, see `OpenApiExec`): the scheduler plans a task for each.
        partitions: usize,
    },
    /// A database's federated sub-plan: its final SQL, and the columns it
    /// returns.
    Sql {
        query: RemoteSql,
        schema: serde_json::Value,
    },
    /// The federation crate's cast of a sub-plan's rows to the columns
    /// planned (its one input travels as a child).
    SchemaCast { schema: serde_json::Value },
}

impl Node {
    /// The source a scan node reads, and the table (for messages).
    fn scan(&self) -> Option<(&str, &str)> {
        match self {
            Self::OpenApi { scan, .. } => Some((&scan.source, &scan.table)),
            Self::Sql { query, .. } => Some((&query.source, &query.table)),
            Self::SchemaCast { .. } => None,
        }
    }
}

fn to_schema(value: serde_json::Value, what: &str) -> Result<Schema> {
    serde_json::from_value(value)
        .map_err(|e| DataFusionError::Internal(format!("{what}'s columns: {e}")))
}

fn from_schema(schema: &Schema) -> Result<serde_json::Value> {
    serde_json::to_value(schema).map_err(json_error)
}

/// The physical codec of a Bluelamp cluster: Bluelamp's nodes, then
/// Ballista's, then DataFusion's built-in ones.
pub struct BluelampCodec {
    ballista: BallistaPhysicalExtensionCodec,
    /// Why the first node this codec could not encode did not (a clean
    /// error for the user, where DataFusion's would print the whole plan).
    refused: std::sync::Mutex<Option<DataFusionError>>,
    /// The process's own sources (executors); `None` in the scheduler and
    /// the client, which never run a scan.
    engine: Option<Engine>,
    /// The tokio runtime that decodes may block on to find a table.
    handle: Option<tokio::runtime::Handle>,
}

impl fmt::Debug for BluelampCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BluelampCodec")
            .field("runs_scans", &self.engine.is_some())
            .finish()
    }
}

impl BluelampCodec {
    /// A codec for a process that plans or splits plans but runs no scan:
    /// the client and the scheduler.
    pub fn planning() -> Self {
        Self {
            ballista: BallistaPhysicalExtensionCodec::default(),
            refused: std::sync::Mutex::default(),
            engine: None,
            handle: None,
        }
    }

    /// A codec for an executor, which rebuilds scans from `engine`'s own
    /// sources (started from the executor's configuration).
    pub fn executing(engine: Engine) -> Self {
        Self {
            ballista: BallistaPhysicalExtensionCodec::default(),
            refused: std::sync::Mutex::default(),
            engine: Some(engine),
            handle: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Why the last plan could not be encoded, naming the node that could
    /// not cross (and nothing else of the plan), if a node was the reason.
    pub fn refusal(&self) -> Option<DataFusionError> {
        self.refused.lock().ok()?.take()
    }

    /// Keeps `error` as the reason the plan could not be encoded, unless a
    /// reason is already kept, and returns an error of the same text.
    fn refuse(&self, error: DataFusionError) -> DataFusionError {
        let text = error.to_string();
        if let Ok(mut refused) = self.refused.lock() {
            refused.get_or_insert(error);
        }
        DataFusionError::Plan(text)
    }

    fn decode_node(
        &self,
        node: Node,
        inputs: &[Arc<dyn ExecutionPlan>],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let planned = match &node {
            Node::SchemaCast { schema } => {
                let schema = to_schema(schema.clone(), "a federated query")?;
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(format!(
                        "a federated query's cast has one input, not {}",
                        inputs.len()
                    )));
                };
                return Ok(Arc::new(SchemaCastScanExec::new(
                    Arc::clone(input),
                    Arc::new(schema),
                )));
            }
            Node::OpenApi { schema, .. } | Node::Sql { schema, .. } => schema.clone(),
        };
        let Some(engine) = &self.engine else {
            // The scheduler: the node's description, to send on, with the
            // partitions it was planned with (a task each).
            let schema = to_schema(planned, "a scan")?;
            let partitions = match &node {
                Node::OpenApi { partitions, .. } => *partitions,
                Node::Sql { .. } | Node::SchemaCast { .. } => 1,
            };
            return Ok(Arc::new(PendingScanExec::new(
                node,
                Arc::new(schema),
                partitions,
            )));
        };
        match node {
            Node::OpenApi {
                scan, partitions, ..
            } => {
                let schema = to_schema(planned, "an OpenAPI scan")?;
                let table = self.find_table(engine, &scan.source, &scan.table)?;
                let Some(provider) = table.downcast_ref::<OpenApiTableProvider>() else {
                    return Err(DataFusionError::Plan(format!(
                        "source '{}': table '{}' is not an OpenAPI table in this executor's \
                         configuration; every process of a cluster needs the same sources",
                        scan.source, scan.table
                    )));
                };
                let exec = provider.rescan(&scan)?;
                same_columns(&scan.source, &scan.table, &exec.schema(), &schema)?;
                let here = exec.properties().partitioning.partition_count();
                if here != partitions {
                    return Err(DataFusionError::Plan(format!(
                        "source '{}': table '{}' splits into {here} partitions in this executor \
                         but {partitions} where the query was planned; every process of a \
                         cluster needs the same version of Bluelamp and the same configuration",
                        scan.source, scan.table
                    )));
                }
                Ok(Arc::new(exec))
            }
            Node::Sql { query, .. } => {
                let schema = Arc::new(to_schema(planned, "a database query")?);
                let table = self.find_table(engine, &query.source, &query.table)?;
                // The query may read only the source's tables here (any
                // one that cannot be built here cannot be read either).
                let tables: Vec<_> = engine
                    .table_names(&query.source)
                    .iter()
                    .filter_map(|name| self.find_table(engine, &query.source, name).ok())
                    .collect();
                Ok(Arc::new(SqlQueryExec::for_table(
                    &table, &tables, query, schema,
                )?))
            }
            Node::SchemaCast { .. } => Err(DataFusionError::Internal(
                "a federated query's cast was decoded twice".into(),
            )),
        }
    }

    fn find_table(
        &self,
        engine: &Engine,
        source: &str,
        table: &str,
    ) -> Result<Arc<dyn datafusion::datasource::TableProvider>> {
        let lookup = engine.live_table(source, table);
        // Decoding is synchronous; executors decode on a runtime thread.
        let found = match &self.handle {
            Some(handle) => tokio::task::block_in_place(|| handle.block_on(lookup))?,
            None => {
                return Err(DataFusionError::Internal(
                    "this executor's codec has no runtime to look tables up on".into(),
                ));
            }
        };
        found.ok_or_else(|| {
            DataFusionError::Plan(format!(
                "source '{source}' has no table '{table}' in this executor's configuration; \
                 every process of a cluster needs the same sources"
            ))
        })
    }
}

/// Refuses a scan whose columns in this executor differ from those planned.
fn same_columns(source: &str, table: &str, here: &SchemaRef, planned: &Schema) -> Result<()> {
    if here.fields() == planned.fields() {
        return Ok(());
    }
    Err(DataFusionError::Plan(format!(
        "source '{source}': table '{table}' has other columns in this executor than where the \
         query was planned; every process of a cluster needs the same configuration and the \
         same version of the source's document"
    )))
}

fn json_error(e: serde_json::Error) -> DataFusionError {
    DataFusionError::Internal(format!("encoding a Bluelamp plan node: {e}"))
}

impl PhysicalExtensionCodec for BluelampCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match buf.strip_prefix(MAGIC) {
            Some(body) => {
                let node: Node = serde_json::from_slice(body)
                    .map_err(|e| DataFusionError::Internal(format!("a Bluelamp plan node: {e}")))?;
                self.decode_node(node, inputs)
            }
            None => self.ballista.try_decode(buf, inputs, ctx, proto_converter),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        let pending = node
            .inner()
            .as_ref()
            .downcast_ref::<PendingMask>()
            .map(|mask| mask.bytes.clone());
        match pending.or_else(|| bluelamp_engine::policy::masks::encode_mask(node)) {
            Some(bytes) => {
                buf.extend_from_slice(MAGIC);
                buf.extend_from_slice(&bytes);
                Ok(())
            }
            None => self.ballista.try_encode_udf(node, buf),
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        let Some(bytes) = buf.strip_prefix(MAGIC) else {
            return self.ballista.try_decode_udf(name, buf);
        };
        let key = self.engine.as_ref().and_then(Engine::mask_key);
        match bluelamp_engine::policy::masks::decode_mask(name, bytes, key) {
            Ok(udf) => Ok(Arc::new(udf)),
            // The scheduler has no configuration and never runs a mask: it
            // keeps a function of the same name that refuses to.
            Err(_) if self.engine.is_none() => Ok(Arc::new(ScalarUDF::new_from_impl(
                PendingMask::new(name, bytes),
            ))),
            Err(e) => Err(DataFusionError::Plan(e)),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let ours = if let Some(scan) = node.downcast_ref::<OpenApiExec>() {
            Some(Node::OpenApi {
                scan: scan.remote(),
                schema: from_schema(scan.schema().as_ref())?,
                partitions: scan.properties().partitioning.partition_count(),
            })
        } else if let Some(query) = remote_sql(node.as_ref()) {
            Some(Node::Sql {
                query: query.map_err(|e| self.refuse(e))?,
                schema: from_schema(node.schema().as_ref())?,
            })
        } else if node.downcast_ref::<SchemaCastScanExec>().is_some() {
            Some(Node::SchemaCast {
                schema: from_schema(node.schema().as_ref())?,
            })
        } else {
            node.downcast_ref::<PendingScanExec>()
                .map(|pending| pending.node.clone())
        };
        match ours {
            Some(ours) => {
                buf.extend_from_slice(MAGIC);
                serde_json::to_writer(buf, &ours).map_err(json_error)
            }
            None => self
                .ballista
                .try_encode(Arc::clone(&node), buf, proto_converter)
                .map_err(|_| {
                    self.refuse(DataFusionError::NotImplemented(format!(
                        "this query cannot run on the cluster: its plan has a {} node, which \
                         does not cross to executors yet (run it without [engine] cluster)",
                        node.name()
                    )))
                }),
        }
    }
}

/// A mask in a process without Bluelamp's configuration (the scheduler):
/// the same name and bytes on, and refuses to run.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PendingMask {
    name: String,
    bytes: Vec<u8>,
    signature: datafusion::logical_expr::Signature,
}

impl PendingMask {
    fn new(name: &str, bytes: &[u8]) -> Self {
        Self {
            name: name.to_string(),
            bytes: bytes.to_vec(),
            signature: datafusion::logical_expr::Signature::any(
                1,
                datafusion::logical_expr::Volatility::Immutable,
            ),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for PendingMask {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[arrow::datatypes::DataType]) -> Result<arrow::datatypes::DataType> {
        Ok(arrow::datatypes::DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        _: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> Result<datafusion::logical_expr::ColumnarValue> {
        Err(DataFusionError::Execution(
            "a mask reached a process without Bluelamp's configuration: run executors with \
             `bluelamp executor --config FILE`"
                .into(),
        ))
    }
}

/// A scan of a Bluelamp source in a process that has no configuration (the
/// scheduler): it keeps the node's description to send on, and refuses to
/// run.
#[derive(Debug)]
pub struct PendingScanExec {
    node: Node,
    properties: Arc<PlanProperties>,
}

impl PendingScanExec {
    fn new(node: Node, schema: SchemaRef, partitions: usize) -> Self {
        Self {
            node,
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(schema),
                Partitioning::UnknownPartitioning(partitions.max(1)),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
        }
    }
}

impl DisplayAs for PendingScanExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (source, table) = self.node.scan().unwrap_or(("?", "?"));
        write!(f, "PendingScanExec: source={source} table={table}")
    }
}

impl ExecutionPlan for PendingScanExec {
    fn name(&self) -> &str {
        "PendingScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "a pending scan has no children".into(),
            ))
        }
    }

    fn execute(&self, _: usize, _: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        Err(DataFusionError::Execution(
            "a scan reached a process without Bluelamp's configuration: run executors with \
             `bluelamp executor --config FILE`"
                .into(),
        ))
    }
}
