//! `OpenApiTableProvider` and the source's schema: turns a scan's filters into
//! request sets (one per combination of path-parameter values and list chunks)
//! and hands them to [`OpenApiExec`].

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use bluelamp_engine::SourceError;
use datafusion::catalog::{SchemaProvider, Session};
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use reqwest::Url;

use super::client::ApiClient;
use super::discovery::TableSpec;
use super::exec::{OpenApiExec, RequestSet};
use super::pushdown::{Target, combine, plan, support};

/// Most request series one scan may fan out to (path-parameter values times
/// list chunks), so a careless join cannot flood a supplier.
const MAX_REQUEST_SETS: usize = 5_000;
/// Values per request for list parameters that document no `maxItems`.
const DEFAULT_LIST_CHUNK: usize = 100;

/// One table of an OpenAPI source.
#[derive(Debug)]
pub struct OpenApiTableProvider {
    source: String,
    spec: Arc<TableSpec>,
    schema: SchemaRef,
    client: Arc<ApiClient>,
    base: Url,
    page_size: Option<u64>,
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
        Self {
            source,
            spec: Arc::new(spec),
            schema,
            client,
            base,
            page_size,
        }
    }

    fn error(&self, message: String) -> DataFusionError {
        DataFusionError::External(Box::new(SourceError {
            source_name: self.source.clone(),
            kind: "openapi".into(),
            message,
            unavailable: false,
        }))
    }

    /// Request sets for these filters; `None` when they cannot match anything.
    fn request_sets(&self, filters: &[Expr]) -> DFResult<Option<Vec<RequestSet>>> {
        let refs: Vec<&Expr> = filters.iter().collect();
        let pushed: Vec<_> = plan(&self.spec, &refs).into_iter().flatten().collect();
        let Some(values) = combine(&pushed) else {
            return Ok(None);
        };
        // Each target contributes alternatives; the request sets are their product.
        let mut sets = vec![RequestSet {
            path: self.spec.path.clone(),
            query: Vec::new(),
            path_values: Vec::new(),
        }];
        for name in &self.spec.path_params {
            let Some(options) = values.get(&Target::Path(name.clone())) else {
                return Err(self.error(format!(
                    "table '{}.{}' is read through {}, which needs a value for '{name}': add WHERE {name} = '...' (or {name} IN (...))",
                    self.source,
                    self.spec.name,
                    self.spec.endpoint()
                )));
            };
            sets = product(sets, options, |set, value| {
                set.path = set
                    .path
                    .replace(&format!("{{{name}}}"), &percent_encode(value));
                set.path_values.push((name.clone(), value.clone()));
            });
            self.check_size(sets.len())?;
        }
        let query_targets: BTreeMap<usize, &Vec<String>> = values
            .iter()
            .filter_map(|(t, v)| match t {
                Target::Query(i) => Some((*i, v)),
                Target::Path(_) => None,
            })
            .collect();
        for (index, options) in query_targets {
            let filter = &self.spec.filters[index];
            let groups: Vec<String> = if filter.list {
                options
                    .chunks(filter.max_items.unwrap_or(DEFAULT_LIST_CHUNK).max(1))
                    .map(|chunk| chunk.join(","))
                    .collect()
            } else {
                options.clone()
            };
            sets = product(sets, &groups, |set, value| {
                set.query.push((filter.param.clone(), value.clone()))
            });
            self.check_size(sets.len())?;
        }
        Ok(Some(sets))
    }

    fn check_size(&self, n: usize) -> DFResult<()> {
        if n > MAX_REQUEST_SETS {
            return Err(self.error(format!(
                "{}: the filters would need {n} separate request series (more than {MAX_REQUEST_SETS}); narrow the query",
                self.spec.endpoint()
            )));
        }
        Ok(())
    }
}

fn product(
    sets: Vec<RequestSet>,
    options: &[String],
    apply: impl Fn(&mut RequestSet, &String),
) -> Vec<RequestSet> {
    let mut out = Vec::with_capacity(sets.len() * options.len());
    for set in sets {
        for option in options {
            let mut next = set.clone();
            apply(&mut next, option);
            out.push(next);
        }
    }
    out
}

fn percent_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[async_trait]
impl TableProvider for OpenApiTableProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(support(&self.spec, filters))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => Arc::clone(&self.schema),
        };
        let Some(requests) = self.request_sets(filters)? else {
            return Ok(Arc::new(EmptyExec::new(projected)));
        };
        Ok(Arc::new(OpenApiExec::new(
            self.source.clone(),
            Arc::clone(&self.spec),
            Arc::clone(&self.client),
            self.base.clone(),
            requests,
            Arc::clone(&self.schema),
            projection.cloned(),
            limit,
            self.page_size,
        )?))
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
