//! A [`Session`]'s own path: parsing, planning (schema checks, policy's guard
//! and rewrite, purpose and marking), executing with its audit record, the
//! `sql` shortcut, the tables it can see and `describe`, and the audit of a
//! statement that fails.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::common::config::ConfigNonZeroUsize;
use datafusion::datasource::provider_as_source;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::physical_plan::{execute_stream, execute_stream_partitioned};
use datafusion::sql::parser::Statement as DFStatement;

use super::statements::Parsed;
use super::{
    CATALOG, Identity, PartitionedOutput, Planned, QueryOutput, SCRATCH_SCHEMA, SYSTEM_SCHEMA,
    Session, Statement, marked, parse_statements,
};
use crate::error::{ErrorKind, QueryError};
use crate::principal::Principal;

impl Session {
    /// Who this session runs as.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The principal this session runs as, with its attributes.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Sets the rows per Arrow batch this session's queries produce (at
    /// least one), e.g. larger batches for results sent over the network.
    pub fn set_batch_size(&self, rows: usize) {
        let Ok(rows) = ConfigNonZeroUsize::try_new(rows.max(1)) else {
            return;
        };
        let state = self.ctx.state_ref();
        let mut state = state.write();
        state.config_mut().options_mut().execution.batch_size = rows;
    }

    /// Adds a schema of a front end's own to this session's catalog, such as
    /// the PostgreSQL protocol's `pg_catalog`, whose tables describe what
    /// this session can see. Its tables are read like any other, through
    /// [`Session::plan`]; it cannot take the name of a source, of the
    /// system schema or of the scratch schema.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidQuery`] for a name already in the catalog.
    pub fn add_schema(
        &self,
        name: &str,
        schema: Arc<dyn datafusion::catalog::SchemaProvider>,
    ) -> Result<(), QueryError> {
        let taken = || {
            QueryError::new(
                ErrorKind::InvalidQuery,
                format!("the schema '{name}' already exists in this session"),
            )
        };
        let catalog = self.ctx.catalog(CATALOG).ok_or_else(taken)?;
        if catalog.schema(name).is_some() || name == "information_schema" {
            return Err(taken());
        }
        catalog
            .register_schema(name, schema)
            .map_err(QueryError::from)?;
        if let Ok(mut added) = self.added_schemas.write() {
            added.push(name.to_string());
        }
        Ok(())
    }

    /// Adds scalar functions a front end's clients call (PostgreSQL's
    /// `pg_table_is_visible`, `format_type`) to this session only.
    pub fn add_functions(&self, functions: Vec<datafusion::logical_expr::ScalarUDF>) {
        for function in functions {
            self.ctx.register_udf(function);
        }
    }

    /// Splits text into statements (`;`-separated) without running them.
    ///
    /// # Errors
    /// [`ErrorKind::Syntax`] for a syntax error, naming the position.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, QueryError> {
        parse_statements(sql)
    }

    /// Plans one statement.
    ///
    /// # Errors
    /// A [`QueryError`] for unknown tables, type errors, or a source that is down.
    pub async fn plan(&self, statement: &Statement) -> Result<Planned, QueryError> {
        let state = self.ctx.state();
        let sql = statement.to_string();
        let statement = match &statement.inner {
            Parsed::Sql(statement) => statement,
            Parsed::Refresh(table) => {
                return match self.plan_refresh(table, &sql).await {
                    Ok(planned) => Ok(planned),
                    Err(e) => Err(self.audit_failure(&sql, e).await),
                };
            }
        };
        if let Err(e) = self.check_schemas(&state, statement) {
            return Err(self.audit_failure(&sql, e).await);
        }
        let plan = match state.statement_to_plan(statement.clone()).await {
            Ok(plan) => plan,
            Err(e) => return Err(self.audit_failure(&sql, QueryError::from(e)).await),
        };
        if let Err(e) = self.check_limits(&plan) {
            return Err(self.audit_failure(&sql, e).await);
        }
        if let Err(e) = crate::policy::guard::check_plan(
            &plan,
            &self.principal,
            &self.engine.config().policy,
            CATALOG,
            SCRATCH_SCHEMA,
            self.engine.audit_log().is_some(),
        ) {
            return Err(self.audit_failure(&sql, e).await);
        }
        // What the statement reads, through the session's own tables to
        // the sources they were made from.
        let touched = self
            .provenance
            .expand(&crate::audit::trail::touched(&plan, SCRATCH_SCHEMA));
        // A grant's required purpose, checked on everything the statement
        // reads: tables named directly, behind views (whose plans hold the
        // sources' tables) and behind the session's own tables.
        if self.engine.inner.policy_active && self.purpose().is_none() {
            let read_policy = &self.engine.config().policy.read;
            let needing: Vec<&str> = touched
                .1
                .iter()
                .filter(|table| {
                    table.split_once('.').is_some_and(|(source, table)| {
                        read_policy
                            .access(&self.principal, source, table, &[])
                            .require_purpose
                    })
                })
                .map(String::as_str)
                .collect();
            if !needing.is_empty() {
                let e = crate::audit::statements::purpose_needed(&needing);
                return Err(self.audit_failure(&sql, e).await);
            }
        }
        let (plan, policies) = if self.engine.inner.policy_active {
            let context = crate::policy::rewrite::Context {
                principal: &self.principal,
                mask_key: self.engine.config().policy.mask_key.as_deref(),
            };
            match crate::policy::rewrite::apply(plan, &context) {
                Ok(applied) => (applied.plan, applied.policies),
                Err(e) => return Err(self.audit_failure(&sql, e).await),
            }
        } else {
            (plan, Vec::new())
        };
        self.provenance.record(&plan, SCRATCH_SCHEMA, &touched);
        let touched = Arc::new(touched);
        let read = &self.engine.config().policy.read;
        let (plan, marking_value) = if read.markings.is_empty() {
            (plan, None)
        } else {
            let marking = crate::policy::marking::of_result(read, &touched);
            match crate::policy::marking::onto_copy(plan, &marking) {
                Ok(plan) => (plan, Some(marking)),
                Err(e) => return Err(self.audit_failure(&sql, e).await),
            }
        };
        let marking = marking_value.as_ref().map(|m| Arc::from(m.to_string()));
        Ok(Planned {
            plan,
            sql,
            touched,
            policies: Arc::new(policies),
            marking,
            marking_value,
        })
    }

    /// Plans `REFRESH TABLE table`: for users who may read the table (one
    /// they may not see is not found, as in a query), as a scan of the
    /// refresh named after the table, so it is audited as a read of it.
    async fn plan_refresh(&self, table: &TableReference, sql: &str) -> Result<Planned, QueryError> {
        let (source, name) = match table {
            TableReference::Partial { schema, table } => (schema.as_ref(), table.as_ref()),
            TableReference::Full {
                catalog,
                schema,
                table,
            } if catalog.as_ref() == CATALOG => (schema.as_ref(), table.as_ref()),
            _ => {
                return Err(QueryError::new(
                    ErrorKind::InvalidQuery,
                    format!(
                        "REFRESH TABLE {table}: name the source as well: REFRESH TABLE source.table"
                    ),
                ));
            }
        };
        let full = TableReference::full(CATALOG, source, name);
        // Resolved as the session sees it: a table policy hides is not found.
        self.check_source_names([full.clone()])?;
        self.ctx
            .table_provider(full.clone())
            .await
            .map_err(QueryError::from)?;
        let (schema, acceleration) = self.engine.accelerated(source, name)?;
        if self.engine.inner.policy_active {
            let access =
                self.engine
                    .config()
                    .policy
                    .read
                    .access(&self.principal, source, name, &[]);
            if !access.read {
                return Err(QueryError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "REFRESH TABLE {source}.{name} is refused: it needs a grant to read the table"
                    ),
                ));
            }
            if access.require_purpose && self.purpose().is_none() {
                let table = format!("{source}.{name}");
                return Err(crate::audit::statements::purpose_needed(&[table.as_str()]));
            }
        }
        let refresh = crate::accelerate::statement::RefreshTable::new(schema, acceleration);
        let plan = LogicalPlanBuilder::scan(full, provider_as_source(Arc::new(refresh)), None)
            .and_then(LogicalPlanBuilder::build)
            .map_err(QueryError::from)?;
        Ok(Planned {
            plan,
            sql: sql.to_string(),
            touched: Arc::new((
                vec![source.to_string()],
                vec![format!("{source}.{name}")],
                Vec::new(),
            )),
            policies: Arc::default(),
            marking: None,
            marking_value: None,
        })
    }

    /// The cluster that runs `plan`, if the engine has one, the plan only
    /// reads (a deposit runs here, where its journal and outcome are
    /// recorded) and the runner takes it.
    fn runner_for(
        &self,
        plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    ) -> Option<Arc<dyn crate::session::PlanRunner>> {
        let runner = self.engine.inner.runner.get()?;
        let mut writes = false;
        let _ = datafusion::common::tree_node::TreeNode::apply(plan, |node| {
            writes |= node.is::<datafusion::datasource::sink::DataSinkExec>();
            Ok(if writes {
                datafusion::common::tree_node::TreeNodeRecursion::Stop
            } else {
                datafusion::common::tree_node::TreeNodeRecursion::Continue
            })
        });
        (!writes && runner.accepts(plan)).then(|| Arc::clone(runner))
    }

    /// `df`'s physical plan, its task context, and the cluster that runs it
    /// where the engine has one that takes it. A plan the cluster declines
    /// runs here; one a join's keys must drive (see
    /// [`PlanRunner::needs_local_plan`]) is first planned again with one
    /// process's settings.
    ///
    /// [`PlanRunner::needs_local_plan`]: crate::session::PlanRunner::needs_local_plan
    async fn place(
        &self,
        df: datafusion::dataframe::DataFrame,
        span: &tracing::Span,
    ) -> datafusion::error::Result<(
        Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        Arc<datafusion::execution::TaskContext>,
        Option<Arc<dyn crate::session::PlanRunner>>,
    )> {
        let task = Arc::new(traced_task(df.task_ctx(), span));
        let (state, logical) = df.into_parts();
        let plan = state.create_physical_plan(&logical).await?;
        if self.engine.inner.runner.get().is_none() {
            return Ok((plan, task, None));
        }
        if let Some(runner) = self.runner_for(&plan) {
            return Ok((plan, task, Some(runner)));
        }
        if !self
            .engine
            .inner
            .runner
            .get()
            .is_some_and(|runner| runner.needs_local_plan(&plan))
        {
            return Ok((plan, task, None));
        }
        let mut local = state;
        super::engine::local_settings(local.config_mut());
        let plan = local.create_physical_plan(&logical).await?;
        Ok((
            plan,
            Arc::new(traced_task(
                datafusion::execution::TaskContext::from(&local),
                span,
            )),
            None,
        ))
    }

    /// Starts executing a planned statement. DDL and `SET` take effect here; queries
    /// start streaming.
    ///
    /// # Errors
    /// A [`QueryError`] if execution cannot start, or if its audit record
    /// cannot be written (then nothing runs).
    pub async fn execute(&self, planned: Planned) -> Result<QueryOutput, QueryError> {
        let mut output = self.start(planned, false).await?;
        let stream = output.streams.pop().ok_or_else(|| {
            QueryError::new(
                ErrorKind::Execution,
                "the statement produced no result stream",
            )
        })?;
        Ok(QueryOutput {
            schema: output.schema,
            stream,
        })
    }

    /// Starts a statement as one stream per output partition of its physical
    /// plan, so a front end can send them to a client side by side (Flight
    /// SQL endpoints). A plan that must produce one ordered stream (`ORDER
    /// BY`) has one partition.
    ///
    /// # Errors
    /// A [`QueryError`] if execution cannot start, or if its audit record
    /// cannot be written (then nothing runs).
    pub async fn execute_partitioned(
        &self,
        planned: Planned,
    ) -> Result<PartitionedOutput, QueryError> {
        self.start(planned, true).await
    }

    /// Audits, enters in `bluelamp.queries` and starts a planned statement:
    /// one stream per output partition where `partitioned`, else one. Each
    /// stream runs under the statement's timeout and cancel signal and is
    /// counted by its audit record.
    async fn start(
        &self,
        planned: Planned,
        partitioned: bool,
    ) -> Result<PartitionedOutput, QueryError> {
        let span = crate::ops::trace::statement_span(&self.identity.user, self.front_end());
        self.start_traced(planned, partitioned, span.clone())
            .instrument(span)
            .await
    }

    /// [`Session::start`] within the statement's span, which its audit
    /// records, its sources' spans and its errors refer to.
    async fn start_traced(
        &self,
        planned: Planned,
        partitioned: bool,
        span: tracing::Span,
    ) -> Result<PartitionedOutput, QueryError> {
        let started = Instant::now();
        let completion = match self.audit_statement(&planned, started).await {
            Ok(completion) => completion,
            // Refused (no purpose stated) or its record not written: nothing ran.
            Err(mut error) => {
                crate::ops::trace::record_end(&span, "refused", 0);
                if let Some(trace_id) = crate::ops::trace::trace_id(&span) {
                    error.message = crate::ops::trace::with_trace_id(&error.message, &trace_id);
                }
                return Err(error);
            }
        };
        let sql = planned.sql;
        let marking = planned.marking;
        let tracker = self.track(&sql, span.clone());
        let result = tracker
            .start(async {
                let df = self.ctx.execute_logical_plan(planned.plan).await?;
                let (plan, task, runner) = self.place(df, &span).await?;
                tracker.record().attach(&plan);
                let schema = result_schema(&plan, marking.as_deref());
                let streams = match runner {
                    Some(runner) => vec![runner.run(plan, task).await?],
                    None if partitioned => execute_stream_partitioned(plan, task)?,
                    None => vec![execute_stream(plan, task)?],
                };
                Ok::<_, datafusion::error::DataFusionError>(PartitionedOutput { schema, streams })
            })
            .await;
        if let Err(e) = &result {
            tracker.fail(e);
        }
        let result = result.map_err(|e| tracker.tag(e));
        let mut output = self
            .audit_start(&sql, started, result, completion.as_deref())
            .await?;
        output.streams = output
            .streams
            .into_iter()
            .map(|stream| {
                let stream = tracker.wrap(stream);
                match &completion {
                    Some(completion) => completion.wrap(stream),
                    None => stream,
                }
            })
            .collect();
        Ok(output)
    }

    /// Logs a statement's start; a statement that fails to start is audited
    /// by its `completion` (its `statement` record is already written), or
    /// with a record of its own where there is none.
    async fn audit_start<T>(
        &self,
        sql: &str,
        started: Instant,
        result: Result<T, datafusion::error::DataFusionError>,
        completion: Option<&crate::audit::trail::Completion>,
    ) -> Result<T, QueryError> {
        match result {
            Ok(output) => {
                tracing::info!(
                    target: "bluelamp::audit",
                    user = %self.identity.user,
                    auth = %self.identity.authenticated_by,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    sql = %sql,
                    "statement started"
                );
                Ok(output)
            }
            Err(e) => match completion {
                Some(completion) => {
                    let error = QueryError::from(e);
                    completion.fail(&error.message).await;
                    Err(error)
                }
                None => Err(self.audit_failure(sql, QueryError::from(e)).await),
            },
        }
    }

    /// Parses, plans and starts exactly one statement.
    ///
    /// # Errors
    /// A [`QueryError`]; [`ErrorKind::InvalidQuery`] if `sql` holds no statement or more than one.
    pub async fn sql(&self, sql: &str) -> Result<QueryOutput, QueryError> {
        let mut statements = self.parse(sql)?;
        if statements.len() != 1 {
            return Err(QueryError::new(
                ErrorKind::InvalidQuery,
                format!(
                    "expected exactly one SQL statement, found {}",
                    statements.len()
                ),
            ));
        }
        let statement = statements.remove(0);
        let planned = self.plan(&statement).await?;
        self.execute(planned).await
    }

    /// Table and column names visible to this session, for completion and `\d`.
    pub async fn table_names(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(catalog) = self.ctx.catalog(CATALOG) {
            for schema_name in catalog.schema_names() {
                if let Some(schema) = catalog.schema(&schema_name) {
                    for table in schema.table_names() {
                        out.push((schema_name.clone(), table));
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Column names and types of one table (`schema.table` or `table`).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if there is no such table.
    pub async fn describe(&self, table: &str) -> Result<SchemaRef, QueryError> {
        let provider = self
            .ctx
            .table_provider(table)
            .await
            .map_err(QueryError::from)?;
        Ok(provider.schema())
    }

    /// Column names and types of `schema.table`, with names taken literally.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if there is no such table.
    pub async fn describe_qualified(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<SchemaRef, QueryError> {
        let reference = datafusion::common::TableReference::partial(schema, table);
        let provider = self
            .ctx
            .table_provider(reference)
            .await
            .map_err(QueryError::from)?;
        Ok(provider.schema())
    }

    /// Names an unknown source before DataFusion reports a bare "table not found".
    fn check_schemas(
        &self,
        state: &SessionState,
        statement: &DFStatement,
    ) -> Result<(), QueryError> {
        let Ok(references) = state.resolve_table_references(statement) else {
            return Ok(());
        };
        self.check_source_names(references)
    }

    /// Fails for a reference to a schema the session has no source for,
    /// naming the sources it has.
    fn check_source_names(
        &self,
        references: impl IntoIterator<Item = TableReference>,
    ) -> Result<(), QueryError> {
        let Some(catalog) = self.ctx.catalog(CATALOG) else {
            return Ok(());
        };
        for reference in references {
            let schema = match &reference {
                TableReference::Partial { schema, .. } => schema.as_ref(),
                TableReference::Full {
                    catalog: c, schema, ..
                } if c.as_ref() == CATALOG => schema.as_ref(),
                _ => continue,
            };
            // information_schema is served by DataFusion beside the catalog.
            if schema != "information_schema" && catalog.schema(schema).is_none() {
                let mut sources: Vec<String> = catalog
                    .schema_names()
                    .into_iter()
                    .filter(|s| {
                        s != "information_schema"
                            && s != SCRATCH_SCHEMA
                            && s != SYSTEM_SCHEMA
                            && !self
                                .added_schemas
                                .read()
                                .is_ok_and(|added| added.contains(s))
                    })
                    .collect();
                sources.sort();
                let known = if sources.is_empty() {
                    "no sources are configured".to_string()
                } else {
                    format!("the sources are: {}", sources.join(", "))
                };
                return Err(QueryError::new(
                    ErrorKind::NotFound,
                    format!(
                        "table '{reference}' not found: there is no source named '{schema}'; {known}"
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn audit_failure(&self, sql: &str, error: QueryError) -> QueryError {
        tracing::info!(
            target: "bluelamp::audit",
            user = %self.identity.user,
            auth = %self.identity.authenticated_by,
            error = %error.message,
            sql = %sql,
            "statement failed"
        );
        let Some(log) = self.engine.audit_log() else {
            return error;
        };
        let mut record = self.audit_record("statement", sql);
        record.outcome = if error.kind == ErrorKind::PermissionDenied {
            "refused".into()
        } else {
            "error".into()
        };
        record.error = Some(error.message.clone());
        match log.append(record).await {
            Ok(_) => error,
            Err(audit) => QueryError::new(
                ErrorKind::Unavailable,
                format!("{}; and {audit}", error.message),
            ),
        }
    }
}

/// `task` carrying the statement's span for the sources that run under it,
/// where the span is traced.
fn traced_task(
    task: datafusion::execution::TaskContext,
    span: &tracing::Span,
) -> datafusion::execution::TaskContext {
    if span.is_disabled() {
        return task;
    }
    let config = task
        .session_config()
        .clone()
        .with_extension(Arc::new(crate::ops::trace::StatementSpan(span.clone())));
    task.with_session_config(config)
}

/// The schema a statement's rows arrive in, from its physical plan: with
/// its security marking (`bluelamp.marking`) where markings are configured,
/// and, where it reads local copies of accelerated tables, the oldest
/// copy's time (`bluelamp.as_of`, RFC 3339).
fn result_schema(
    plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    marking: Option<&str>,
) -> SchemaRef {
    let schema = marked(plan.schema(), marking);
    match crate::accelerate::oldest_copy(plan) {
        None => schema,
        Some(as_of) => {
            let mut metadata = schema.metadata().clone();
            metadata.insert(
                super::AS_OF_KEY.to_string(),
                chrono::DateTime::<chrono::Utc>::from(as_of)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            );
            Arc::new(schema.as_ref().clone().with_metadata(metadata))
        }
    }
}
