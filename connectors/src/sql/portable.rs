//! A database's federated sub-plan run by another process: a cluster's
//! executor.
//!
//! What crosses is the query text, exactly as one process would send it
//! ([`RemoteSql`]), with the source and one table it reads. Never the
//! connection: the executor finds the source's executor in its own
//! configuration ([`SqlQueryExec::for_table`]) and runs the text there.
//!
//! The text is the federation crate's own: [`remote_sql`] runs the planned
//! node once with [`Repaired`](super::exec::Repaired) in capture mode, which
//! records the final SQL instead of opening a connection. Both ends check
//! the text is one query in the database's dialect, with no statement
//! inside it, no `SELECT INTO` and no row lock. The check is syntax only:
//! it does not limit functions (`lo_import`, `setval`) or tables, so a
//! forged plan is stopped by the executor's database account, which should
//! only read the source's tables (see the README's cluster section). Flight
//! SQL sources do not cross: their sub-plans run as the session's principal,
//! which the text does not carry.

use std::cell::RefCell;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::sql::sqlparser::ast::{Query, SetExpr, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::{
    Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect,
};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_federation::FederatedTableProviderAdaptor;
use datafusion_federation::sql::{SQLExecutor, SQLTableSource, VirtualExecutionPlan};

use super::functions::Database;

/// A federated sub-plan as it crosses to another process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteSql {
    /// The source the query runs in.
    pub source: String,
    /// One table of the source the query reads: where the other process
    /// finds the source's executor.
    pub table: String,
    /// Which database the text is written for (`postgres`, `mysql`,
    /// `sqlite`), checked again where it runs.
    pub dialect: String,
    /// The query, exactly as one process sends it.
    pub sql: String,
}

/// What [`Repaired`](super::exec::Repaired) met while capturing.
struct Captured {
    source: String,
    database: Database,
    sql: String,
    dynamic_filters: usize,
}

thread_local! {
    /// `Some` while [`remote_sql`] captures on this thread: the executor
    /// records its query there instead of running it.
    static CAPTURE: RefCell<Option<Option<Captured>>> = const { RefCell::new(None) };
}

/// Ends capture mode on this thread when dropped, even on a panic.
struct Capturing;

impl Capturing {
    fn start() -> Self {
        CAPTURE.with(|c| *c.borrow_mut() = Some(None));
        Self
    }

    fn finish(self) -> Option<Captured> {
        CAPTURE.with(|c| c.borrow_mut().take()).flatten()
    }
}

impl Drop for Capturing {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

/// Called by [`Repaired`](super::exec::Repaired) before it runs `query`:
/// in capture mode, records it and returns an empty stream in place of a
/// connection; otherwise `None`, and the query runs.
pub(super) fn capture(
    source: &str,
    database: &Database,
    query: &str,
    schema: &SchemaRef,
    filters: &[Arc<dyn PhysicalExpr>],
) -> Option<SendableRecordBatchStream> {
    CAPTURE.with(|c| {
        let mut slot = c.borrow_mut();
        let waiting = slot.as_mut()?;
        *waiting = Some(Captured {
            source: source.to_string(),
            database: database.clone(),
            sql: query.to_string(),
            dynamic_filters: filters.len(),
        });
        Some(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(schema),
            futures::stream::empty(),
        )) as SendableRecordBatchStream)
    })
}

/// The dialect name a [`RemoteSql`] carries, for a database whose text may
/// cross; `None` for one whose may not.
fn dialect_name(database: &Database) -> Option<&'static str> {
    match database {
        Database::Postgres => Some("postgres"),
        Database::MySql => Some("mysql"),
        Database::Sqlite => Some("sqlite"),
        Database::FlightSql(_) => None,
    }
}

/// Checks `sql` is one query, and nothing that writes, in `dialect`.
///
/// # Errors
/// Naming the source, if it is anything else or does not parse.
fn read_only(source: &str, dialect: &str, sql: &str) -> Result<()> {
    let parser: Box<dyn Dialect> = match dialect {
        "postgres" => Box::new(PostgreSqlDialect {}),
        "mysql" => Box::new(MySqlDialect {}),
        "sqlite" => Box::new(SQLiteDialect {}),
        other => {
            return Err(DataFusionError::Plan(format!(
                "source '{source}': a query for an unknown database '{other}' cannot run here"
            )));
        }
    };
    let statements = Parser::parse_sql(parser.as_ref(), sql).map_err(|e| {
        DataFusionError::Plan(format!(
            "source '{source}': the query for the database does not parse as {dialect} SQL ({e}), \
             so it cannot cross to an executor"
        ))
    })?;
    let refusal = match statements.as_slice() {
        [statement @ Statement::Query(_)] => match statement.visit(&mut ReadOnly) {
            ControlFlow::Continue(()) => return Ok(()),
            ControlFlow::Break(what) => what,
        },
        [] => "no statement",
        _ => "more than one statement",
    };
    Err(DataFusionError::Plan(format!(
        "source '{source}': only a single read-only query may cross to an executor, and this \
         has {refusal}"
    )))
}

/// Finds what in a query would change the database or lock its rows: a
/// statement inside it (PostgreSQL's `WITH x AS (DELETE ...)`), `SELECT
/// INTO`, `FOR UPDATE`.
struct ReadOnly;

impl Visitor for ReadOnly {
    type Break = &'static str;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Self::Break> {
        if matches!(statement, Statement::Query(_)) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break("a statement that is not a query")
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Self::Break> {
        if !query.locks.is_empty() {
            return ControlFlow::Break("a row lock");
        }
        if selects_into(&query.body) {
            return ControlFlow::Break("SELECT INTO");
        }
        ControlFlow::Continue(())
    }
}

/// Whether a query body writes its rows into a table.
fn selects_into(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.into.is_some(),
        SetExpr::SetOperation { left, right, .. } => selects_into(left) || selects_into(right),
        _ => false,
    }
}

/// A federated database node's query, as it crosses to another process;
/// `None` if `node` is not a federated database node.
///
/// # Errors
/// If the node's query cannot be written, its source is a Flight SQL
/// server (whose sub-plans run as the session's user), it carries dynamic
/// filters, or the text is not one read-only query.
pub fn remote_sql(node: &dyn ExecutionPlan) -> Option<Result<RemoteSql>> {
    let federated = node.downcast_ref::<VirtualExecutionPlan>()?;
    Some(capture_sql(federated))
}

fn capture_sql(federated: &VirtualExecutionPlan) -> Result<RemoteSql> {
    let capturing = Capturing::start();
    // Runs the crate's own path to the final text; the executor records it
    // and returns no rows, without a connection.
    let ran = federated.execute(0, Arc::new(TaskContext::default()));
    let captured = capturing.finish();
    drop(ran?);
    let Some(captured) = captured else {
        return Err(DataFusionError::NotImplemented(format!(
            "a federated query to '{}' is not one of Bluelamp's databases, so it cannot cross \
             to an executor",
            federated.executor().name()
        )));
    };
    let Some(dialect) = dialect_name(&captured.database) else {
        return Err(DataFusionError::NotImplemented(format!(
            "source '{}' is a Flight SQL server, whose queries run as the session's user; they \
             do not cross to executors yet (run it without [engine] cluster)",
            captured.source
        )));
    };
    if captured.dynamic_filters > 0 {
        return Err(DataFusionError::NotImplemented(format!(
            "source '{}': a query narrowed by a join's dynamic filter does not cross to \
             executors (a cluster plans without dynamic filters)",
            captured.source
        )));
    }
    let table = first_table(federated.plan(), &captured.source)?;
    read_only(&captured.source, dialect, &captured.sql)?;
    Ok(RemoteSql {
        source: captured.source,
        table,
        dialect: dialect.to_string(),
        sql: captured.sql,
    })
}

/// The first federated table `plan` reads, by its name in `source`.
fn first_table(plan: &LogicalPlan, source: &str) -> Result<String> {
    let mut found = None;
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && datafusion_federation::get_table_source(&scan.source)
                .is_ok_and(|federated| federated.is_some())
        {
            found = Some(scan.table_name.table().to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    found.ok_or_else(|| {
        DataFusionError::Internal(format!(
            "source '{source}': a federated query that reads no table"
        ))
    })
}

/// Runs a [`RemoteSql`] with this process's own connection to its source.
pub struct SqlQueryExec {
    executor: Arc<dyn SQLExecutor>,
    query: RemoteSql,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for SqlQueryExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlQueryExec")
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl SqlQueryExec {
    /// `query`, returning rows of `schema`, run through `table`'s source
    /// (`table` is this process's own table of `query.source`).
    ///
    /// # Errors
    /// If `table` is not a federated database table, or the query is not
    /// one read-only query.
    pub fn for_table(
        table: &Arc<dyn TableProvider>,
        query: RemoteSql,
        schema: SchemaRef,
    ) -> Result<Self> {
        read_only(&query.source, &query.dialect, &query.sql)?;
        let executor = table
            .downcast_ref::<FederatedTableProviderAdaptor>()
            .and_then(|adaptor| {
                let source: &dyn std::any::Any = adaptor.source.as_ref();
                source.downcast_ref::<SQLTableSource>()
            })
            .map(|source| Arc::clone(&source.provider.executor))
            .ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "source '{}': table '{}' is not a database table in this process's \
                     configuration; every process of a cluster needs the same sources",
                    query.source, query.table
                ))
            })?;
        Ok(Self {
            executor,
            query,
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(schema),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
        })
    }

    /// What this node runs.
    pub fn query(&self) -> &RemoteSql {
        &self.query
    }
}

impl DisplayAs for SqlQueryExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SqlQueryExec: source={} sql={}",
            self.query.source, self.query.sql
        )
    }
}

impl ExecutionPlan for SqlQueryExec {
    fn name(&self) -> &str {
        "SqlQueryExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
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
                "a database query has no children".into(),
            ))
        }
    }

    fn execute(&self, partition: usize, _: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "a database query has one partition, not {partition}"
            )));
        }
        self.executor.execute(&self.query.sql, self.schema(), &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_read_only_query_passes() {
        for (dialect, sql) in [
            ("postgres", "SELECT \"a\" FROM \"t\" WHERE \"b\" = 'x'"),
            ("mysql", "SELECT `a` FROM `t` LIMIT 3"),
            ("sqlite", "WITH x AS (SELECT 1) SELECT * FROM x"),
        ] {
            assert!(read_only("s", dialect, sql).is_ok(), "{sql}");
        }
        for (dialect, sql) in [
            ("postgres", "DELETE FROM t"),
            ("postgres", "SELECT 1; DROP TABLE t"),
            ("mysql", "INSERT INTO t VALUES (1)"),
            ("sqlite", "ATTACH DATABASE 'x' AS y"),
            ("sqlite", "SELEC 1"),
            (
                "postgres",
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            ),
            ("postgres", "SELECT * INTO u FROM t"),
            ("postgres", "SELECT 1 UNION SELECT * INTO u FROM t"),
            ("mysql", "SELECT * FROM t FOR UPDATE"),
            ("postgres", ""),
            ("oracle", "SELECT 1"),
        ] {
            let error = read_only("s", dialect, sql).unwrap_err().to_string();
            assert!(error.contains("source 's'"), "{sql}: {error}");
        }
    }
}
