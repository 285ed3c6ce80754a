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
//! records the final SQL instead of opening a connection. Both ends parse
//! the text in the database's dialect and refuse anything but one query
//! that reads the source's tables (the ones the plan reads, and on the
//! executor the ones its own configuration has) and calls only the
//! functions this process sends that database: no statement inside it, no
//! `SELECT INTO`, no row lock, no `WITH`, no table function, no
//! `pg_sleep`, `lo_import` or `setval`. So a forged plan can read no more
//! than the source's configured tables; the executor's database account
//! should still be read-only (see the README's cluster section). Flight SQL
//! sources do not cross: their sub-plans run as the session's principal,
//! which the text does not carry.

use std::cell::RefCell;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::TableProvider;
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectName, Query, SetExpr, Statement, TableFactor, Visit, Visitor,
};
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

/// How deep the text of a query that crosses may nest. Higher than the
/// parser's default (50): the unparser writes every `AND` of a long filter
/// in brackets, so a filter of 48 conditions that planned in one process
/// would otherwise be refused on a cluster. The parser grows its stack as
/// it recurses, so depth costs memory, not a crash.
const NESTING_LIMIT: usize = 2048;

/// Checks `sql` is one query in `dialect` that only reads `tables` and
/// calls only what the database is sent by this process: the functions on
/// its lists ([`Database::may_call`]). `tables` are the source's tables,
/// each by its name in the database (as [`TableReference::to_vec`] gives
/// it).
///
/// # Errors
/// Naming the source and what was refused, if it is anything else or does
/// not parse.
fn allowed(source: &str, dialect: &str, sql: &str, tables: &[Vec<String>]) -> Result<()> {
    check(source, dialect, sql, Tables::Only(tables))
}

/// Which tables a query checked by [`check`] may read.
#[derive(Clone, Copy)]
enum Tables<'a> {
    /// These, each by its name in the database.
    Only(&'a [Vec<String>]),
    /// Any: for [`assert_would_cross`], which has no list.
    #[cfg(debug_assertions)]
    Any,
}

/// In debug builds (the tests), every query this process sends a database
/// is checked as an executor would check it, but for its tables: a query
/// that runs in one process but would be refused on a cluster is a bug in
/// [`Database::may_call`]'s lists, and fails the test that sent it.
///
/// # Panics
/// If the query would be refused.
#[cfg(debug_assertions)]
#[allow(clippy::panic, reason = "an assertion of debug builds")]
pub(super) fn assert_would_cross(source: &str, database: &Database, sql: &str) {
    if let Some(dialect) = dialect_name(database)
        && let Err(e) = check(source, dialect, sql, Tables::Any)
    {
        panic!("a query this process sends would be refused on a cluster: {e}\n{sql}");
    }
}

fn check(source: &str, dialect: &str, sql: &str, tables: Tables<'_>) -> Result<()> {
    let (parser, database): (Box<dyn Dialect>, Database) = match dialect {
        "postgres" => (Box::new(PostgreSqlDialect {}), Database::Postgres),
        "mysql" => (Box::new(MySqlDialect {}), Database::MySql),
        "sqlite" => (Box::new(SQLiteDialect {}), Database::Sqlite),
        other => {
            return Err(DataFusionError::Plan(format!(
                "source '{source}': a query for an unknown database '{other}' cannot run here"
            )));
        }
    };
    let statements = Parser::new(parser.as_ref())
        .with_recursion_limit(NESTING_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| {
            DataFusionError::Plan(format!(
                "source '{source}': the query for the database does not parse as {dialect} \
                 SQL ({e}), so it cannot cross to an executor"
            ))
        })?;
    let refusal = match statements.as_slice() {
        [statement] => {
            let mut check = Reads {
                database,
                folds_to_lower: dialect == "postgres",
                tables,
            };
            match statement.visit(&mut check) {
                ControlFlow::Continue(()) => return Ok(()),
                ControlFlow::Break(what) => what,
            }
        }
        [] => "no statement".to_string(),
        _ => "more than one statement".to_string(),
    };
    Err(DataFusionError::Plan(format!(
        "source '{source}': only a query that reads the source's own tables with the \
         functions Bluelamp sends it may cross to an executor, and this has {refusal}"
    )))
}

/// Finds what in a query goes beyond reading the source's tables: a
/// statement inside it (PostgreSQL's `WITH x AS (DELETE ...)`), `SELECT
/// INTO`, a row lock, a `WITH` clause (the unparser writes none, and a
/// common table expression could hide a table's name), a table function,
/// a table that is not the source's, or a function not on the database's
/// lists (`pg_sleep`, `lo_import`, `setval`, `load_extension`).
struct Reads<'a> {
    database: Database,
    /// Whether the database folds an unquoted name to lower case
    /// (PostgreSQL).
    folds_to_lower: bool,
    tables: Tables<'a>,
}

impl Reads<'_> {
    /// `ident` as the database resolves it.
    fn resolved(&self, ident: &Ident) -> String {
        if ident.quote_style.is_none() && self.folds_to_lower {
            ident.value.to_lowercase()
        } else {
            ident.value.clone()
        }
    }

    /// `name`'s parts as the database resolves them; `None` if a part is
    /// not a plain name.
    fn parts(&self, name: &ObjectName) -> Option<Vec<String>> {
        name.0
            .iter()
            .map(|part| part.as_ident().map(|ident| self.resolved(ident)))
            .collect()
    }
}

impl Visitor for Reads<'_> {
    type Break = String;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Self::Break> {
        if matches!(statement, Statement::Query(_)) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break("a statement that is not a query".into())
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Self::Break> {
        if !query.locks.is_empty() {
            return ControlFlow::Break("a row lock".into());
        }
        if selects_into(&query.body) {
            return ControlFlow::Break("SELECT INTO".into());
        }
        if query.with.is_some() {
            return ControlFlow::Break("a WITH clause".into());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Self::Break> {
        match factor {
            TableFactor::Table {
                name, args: None, ..
            } => match (self.parts(name), self.tables) {
                (Some(parts), Tables::Only(tables)) if tables.contains(&parts) => {
                    ControlFlow::Continue(())
                }
                #[cfg(debug_assertions)]
                (_, Tables::Any) => ControlFlow::Continue(()),
                _ => ControlFlow::Break(format!(
                    "the table {name}, which is not one of the source's tables"
                )),
            },
            TableFactor::Table { name, .. } => {
                ControlFlow::Break(format!("the table function {name}"))
            }
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => {
                ControlFlow::Continue(())
            }
            other => ControlFlow::Break(format!("the FROM item {other}")),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Self::Break> {
        let Expr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        let sent = match self.parts(&function.name).as_deref() {
            Some([name]) => self.database.may_call(name),
            _ => false,
        };
        if sent {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(format!(
                "the function {}, which Bluelamp does not send this database",
                function.name
            ))
        }
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

/// The federated database table behind `table`, if it is one.
fn sql_table(table: &dyn TableProvider) -> Option<&SQLTableSource> {
    let adaptor = table.downcast_ref::<FederatedTableProviderAdaptor>()?;
    let source: &dyn std::any::Any = adaptor.source.as_ref();
    source.downcast_ref::<SQLTableSource>()
}

/// `table`'s name in its database, part by part.
fn remote_name(table: &SQLTableSource) -> Vec<String> {
    table.table_reference().to_vec()
}

/// A federated database node's query, as it crosses to another process;
/// `None` if `node` is not a federated database node.
///
/// # Errors
/// If the node's query cannot be written, its source is a Flight SQL
/// server (whose sub-plans run as the session's user), it carries dynamic
/// filters, or the text is not one query that reads only the plan's tables
/// with the functions the database is sent.
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
    let (table, remote) = tables_read(federated.plan(), &captured.source)?;
    allowed(&captured.source, dialect, &captured.sql, &remote)?;
    Ok(RemoteSql {
        source: captured.source,
        table,
        dialect: dialect.to_string(),
        sql: captured.sql,
    })
}

/// The federated tables `plan` reads: the first by its name in `source`
/// (where another process finds the source), and every one by its name
/// in the database.
fn tables_read(plan: &LogicalPlan, source: &str) -> Result<(String, Vec<Vec<String>>)> {
    let mut first = None;
    let mut remote = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(table) = sql_table(provider.as_ref())
        {
            first.get_or_insert_with(|| scan.table_name.table().to_string());
            remote.push(remote_name(table));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let first = first.ok_or_else(|| {
        DataFusionError::Internal(format!(
            "source '{source}': a federated query that reads no table"
        ))
    })?;
    Ok((first, remote))
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
    /// (`table` is this process's own table of `query.source`); `tables`
    /// are every table this process has of the source, the only ones the
    /// query may read.
    ///
    /// # Errors
    /// If `table` is not a federated database table, or the query is
    /// anything but a query that reads `tables` with the functions this
    /// process would send the database.
    pub fn for_table(
        table: &Arc<dyn TableProvider>,
        tables: &[Arc<dyn TableProvider>],
        query: RemoteSql,
        schema: SchemaRef,
    ) -> Result<Self> {
        let readable: Vec<Vec<String>> = tables
            .iter()
            .filter_map(|t| sql_table(t.as_ref()))
            .map(remote_name)
            .collect();
        allowed(&query.source, &query.dialect, &query.sql, &readable)?;
        let executor = sql_table(table.as_ref())
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

    fn tables(names: &[&[&str]]) -> Vec<Vec<String>> {
        names
            .iter()
            .map(|parts| parts.iter().map(|p| (*p).to_string()).collect())
            .collect()
    }

    #[test]
    fn a_query_of_the_sources_tables_with_its_functions_passes() {
        let deep = (0..200)
            .map(|i| format!("\"a\" <> {i}"))
            .fold(String::from("TRUE"), |all, c| format!("({all} AND {c})"));
        for (dialect, sql, readable) in [
            (
                "postgres",
                "SELECT \"a\", lower(\"b\") FROM \"t\" WHERE \"b\" = 'x'",
                tables(&[&["t"]]),
            ),
            (
                "postgres",
                "SELECT count(*), sum(\"x\".\"n\") FROM \"public\".\"t\" AS \"x\" \
                 JOIN (SELECT \"k\" FROM \"u\") AS \"y\" ON \"x\".\"k\" = \"y\".\"k\" \
                 WHERE EXISTS (SELECT 1 FROM \"u\")",
                tables(&[&["public", "t"], &["u"]]),
            ),
            (
                "postgres",
                "SELECT row_number() OVER (ORDER BY \"a\") FROM t",
                tables(&[&["t"]]),
            ),
            (
                "mysql",
                "SELECT `a` FROM `s`.`t` LIMIT 3",
                tables(&[&["s", "t"]]),
            ),
            (
                "sqlite",
                "SELECT strftime('%Y', `d`), length(`e`) FROM `t`",
                tables(&[&["t"]]),
            ),
            (
                "postgres",
                &format!("SELECT \"a\" FROM \"t\" WHERE {deep}"),
                tables(&[&["t"]]),
            ),
        ] {
            let checked = allowed("s", dialect, sql, &readable);
            assert!(checked.is_ok(), "{sql}: {checked:?}");
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_source() {
        let t = tables(&[&["t"]]);
        for (dialect, sql, what) in [
            ("postgres", "DELETE FROM t", "not a query"),
            ("postgres", "SELECT 1; DROP TABLE t", "more than one"),
            ("mysql", "INSERT INTO t VALUES (1)", "not a query"),
            ("sqlite", "ATTACH DATABASE 'x' AS y", "not a query"),
            ("sqlite", "SELEC 1", "does not parse"),
            (
                "postgres",
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                "WITH",
            ),
            ("sqlite", "WITH x AS (SELECT 1) SELECT * FROM x", "WITH"),
            ("postgres", "SELECT * INTO u FROM t", "SELECT INTO"),
            (
                "postgres",
                "SELECT 1 UNION SELECT * INTO u FROM t",
                "SELECT INTO",
            ),
            ("mysql", "SELECT * FROM t FOR UPDATE", "row lock"),
            ("postgres", "", "no statement"),
            ("oracle", "SELECT 1", "unknown database"),
            ("postgres", "SELECT pg_sleep(10) FROM t", "pg_sleep"),
            ("postgres", "SELECT lo_import('/etc/passwd')", "lo_import"),
            ("postgres", "SELECT setval('s', 1)", "setval"),
            (
                "postgres",
                "SELECT pg_catalog.lower(a) FROM t",
                "pg_catalog.lower",
            ),
            ("postgres", "SELECT \"LOWER\"(a) FROM t", "LOWER"),
            ("mysql", "SELECT sleep(5) FROM t", "sleep"),
            (
                "sqlite",
                "SELECT load_extension('x') FROM t",
                "load_extension",
            ),
            ("postgres", "SELECT * FROM \"secret\"", "secret"),
            ("postgres", "SELECT * FROM \"public\".\"t\"", "public"),
            (
                "postgres",
                "SELECT * FROM t WHERE a IN (SELECT b FROM secret)",
                "secret",
            ),
            (
                "postgres",
                "SELECT * FROM t JOIN (SELECT * FROM secret) AS s ON true",
                "secret",
            ),
            (
                "postgres",
                "SELECT * FROM pg_read_file('x')",
                "table function",
            ),
            (
                "postgres",
                "SELECT * FROM t, UNNEST(ARRAY[1]) AS u",
                "UNNEST",
            ),
        ] {
            let error = allowed("s", dialect, sql, &t).expect_err(sql).to_string();
            assert!(error.contains("source 's'"), "{sql}: {error}");
            assert!(error.contains(what), "{sql}: {error}");
        }
        // A name the database folds to lower case is the table it folds to.
        let upper = tables(&[&["T"]]);
        assert!(allowed("s", "postgres", "SELECT * FROM T", &upper).is_err());
        assert!(allowed("s", "postgres", "SELECT * FROM \"T\"", &upper).is_ok());
        assert!(allowed("s", "postgres", "SELECT * FROM T", &t).is_ok());
    }
}
