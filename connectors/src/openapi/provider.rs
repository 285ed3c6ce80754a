//! `OpenApiTableProvider` and the source's schema: turns a scan's filters into
//! request sets (one per combination of path-parameter values and list chunks)
//! and hands them to [`OpenApiExec`].

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session};
use datafusion::common::{Constraint, Constraints};
use datafusion::datasource::TableProvider;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use reqwest::Url;

use super::client::ApiClient;
use super::discovery::TableSpec;
use super::exec::{OpenApiExec, RemoteScan};
use super::pushdown::{combine, plan, support};
use super::write::sink::OpenApiSink;

/// One table of an OpenAPI source.
#[derive(Debug)]
pub struct OpenApiTableProvider {
    source: String,
    spec: Arc<TableSpec>,
    schema: SchemaRef,
    client: Arc<ApiClient>,
    base: Url,
    page_size: Option<u64>,
    /// The configured primary key, so BI tools can see it (`GetPrimaryKeys`).
    constraints: Constraints,
}

impl OpenApiTableProvider {
    /// A table over one discovered list operation.
    pub fn new(
        source: String,
        spec: TableSpec,
        client: Arc<ApiClient>,
        base: Url,
        page_size: Option<u64>,
    ) -> Self {
        let schema = Arc::new(Schema::new(
            spec.columns
                .iter()
                .map(|(f, _)| f.clone())
                .collect::<Vec<_>>(),
        ));
        let key: Vec<usize> = spec
            .primary_key
            .iter()
            .filter_map(|name| schema.index_of(name).ok())
            .collect();
        let constraints = if key.is_empty() || key.len() != spec.primary_key.len() {
            Constraints::default()
        } else {
            Constraints::new_unverified(vec![Constraint::PrimaryKey(key)])
        };
        Self {
            source,
            spec: Arc::new(spec),
            schema,
            client,
            base,
            page_size,
            constraints,
        }
    }
}

#[async_trait]
impl TableProvider for OpenApiTableProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(support(&self.spec, filters))
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if !self.spec.readable {
            return Err(self.error(format!(
                "{}.{} is insert-only (POST {}): INSERT INTO it; it cannot be read",
                self.source, self.spec.name, self.spec.path
            )));
        }
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => Arc::clone(&self.schema),
        };
        let refs: Vec<&Expr> = filters.iter().collect();
        let pushed: Vec<_> = plan(&self.spec, &refs).into_iter().flatten().collect();
        let Some(values) = combine(&pushed) else {
            // The filters contradict each other: nothing to fetch.
            return Ok(Arc::new(EmptyExec::new(projected)));
        };
        let identity = self.identity(state)?;
        Ok(Arc::new(
            OpenApiExec::new(
                self.source.clone(),
                Arc::clone(&self.spec),
                Arc::clone(&self.client),
                self.base.clone(),
                values,
                Arc::clone(&self.schema),
                projection.cloned(),
                limit,
                self.page_size,
            )?
            .with_identity(identity),
        ))
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let Some(write) = &self.spec.write else {
            return Err(self.error(format!(
                "{}.{} has no documented create operation (POST {}), so it cannot be inserted into",
                self.source, self.spec.name, self.spec.path
            )));
        };
        if insert_op != InsertOp::Append {
            return Err(self.error(format!(
                "{}.{}: only INSERT (append) is supported; a supplier's records cannot be overwritten or replaced",
                self.source, self.spec.name
            )));
        }
        let sink = OpenApiSink::new(
            self.source.clone(),
            self.spec.name.clone(),
            Arc::clone(write),
            Arc::clone(&self.client),
            self.base.clone(),
            &self.schema,
        )
        .with_identity(self.identity(state)?);
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

impl OpenApiTableProvider {
    /// The header naming the session's principal, where the source sends one.
    fn identity(&self, state: &dyn Session) -> DFResult<Option<super::client::Identity>> {
        let principal = bluelamp_engine::Principal::of(state.config());
        self.client
            .identity(principal.as_deref())
            .map_err(|m| self.error(m))
    }

    /// The scan another process described ([`RemoteScan`]), with this
    /// process's own client for the source.
    ///
    /// # Errors
    /// The scan names parameters or columns this table does not have (the
    /// two processes' configurations or the source's document differ).
    pub fn rescan(&self, scan: &RemoteScan) -> DFResult<OpenApiExec> {
        let columns = self.schema.fields().len();
        // A filter is found by position and must have the same parameter:
        // a document that lists its filters in another order would send a
        // value as a different parameter.
        let bad_query = scan
            .query
            .iter()
            .any(|(i, param, _)| self.spec.filters.get(*i).is_none_or(|f| f.param != *param));
        let bad_path = scan
            .path
            .iter()
            .any(|(column, _)| self.spec.path_param(column).is_none());
        let bad_projection = scan
            .projection
            .as_ref()
            .is_some_and(|p| p.iter().any(|i| *i >= columns));
        if bad_query || bad_path || bad_projection || scan.table != self.spec.name {
            return Err(self.error(format!(
                "a plan for table '{}' does not fit this process's table '{}': \
                 are the configurations and the source's document the same everywhere?",
                scan.table, self.spec.name
            )));
        }
        let identity = match &scan.identity {
            Some((name, value)) => Some((
                reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| self.error(format!("identity header: {e}")))?,
                reqwest::header::HeaderValue::from_bytes(value)
                    .map_err(|e| self.error(format!("identity header: {e}")))?,
            )),
            None => None,
        };
        OpenApiExec::new(
            self.source.clone(),
            Arc::clone(&self.spec),
            Arc::clone(&self.client),
            self.base.clone(),
            OpenApiExec::remote_values(scan),
            Arc::clone(&self.schema),
            scan.projection.clone(),
            scan.limit,
            self.page_size,
        )?
        .with_identity(identity)
        .slice_of(scan.slice)
        .with_stripe(scan.stripe)
    }

    fn error(&self, message: String) -> DataFusionError {
        super::source_error(&self.source, message, false)
    }
}

/// The tables of one OpenAPI source.
#[derive(Debug)]
pub struct OpenApiSchemaProvider {
    tables: BTreeMap<String, Arc<OpenApiTableProvider>>,
}

impl OpenApiSchemaProvider {
    /// A schema over these tables.
    pub fn new(tables: Vec<OpenApiTableProvider>) -> Self {
        Self {
            tables: tables
                .into_iter()
                .map(|t| (t.spec.name.clone(), Arc::new(t)))
                .collect(),
        }
    }
}

#[async_trait]
impl SchemaProvider for OpenApiSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Ok(self
            .tables
            .get(name)
            .map(|t| Arc::clone(t) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}
