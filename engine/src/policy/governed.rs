//! What a governed principal's catalog shows: only the sources, tables and
//! columns policy lets them see.
//!
//! Once read policy is active, each session's catalog holds a
//! [`GovernedSchema`] per source the principal has some grant on (a source
//! with none is simply absent), listing only the tables they may read or
//! deposit into. Each such table is a [`GovernedTable`]: the source's table
//! with hidden columns gone and masked columns shown with their masked type.
//! Everything that lists or describes — `information_schema`, `\d`, Tab
//! completion, Flight SQL's metadata calls, planning itself — reads this
//! catalog, so a user never learns the name of a table or column they may
//! not see, and a query naming one fails exactly as for a name that does not
//! exist.
//!
//! A `GovernedTable` is never scanned: [`super::rewrite`] replaces it in
//! every plan with the real table under the principal's row filters and
//! masks. If a plan ever reached its `scan`, it would fail rather than read.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session as CatalogSession, TableProvider};
use datafusion::common::{Constraint, Constraints, DFSchema};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, ExprSchemable, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::masks::{mask_expr, masked_type};
use super::rules::{ReadPolicy, TableAccess};
use crate::catalog::SourceSchema;
use crate::principal::Principal;

/// One source as one principal may see it.
#[derive(Debug)]
pub struct GovernedSchema {
    source: Arc<SourceSchema>,
    policy: Arc<ReadPolicy>,
    principal: Arc<Principal>,
    mask_key: Option<Arc<[u8]>>,
}

impl GovernedSchema {
    /// `source` as `principal` may see it under `policy`.
    pub fn new(
        source: Arc<SourceSchema>,
        policy: Arc<ReadPolicy>,
        principal: Arc<Principal>,
        mask_key: Option<Arc<[u8]>>,
    ) -> Self {
        Self {
            source,
            policy,
            principal,
            mask_key,
        }
    }

    fn visible(&self, table: &str) -> bool {
        self.policy
            .access(&self.principal, self.source.name(), table, &[])
            .visible()
    }

    fn not_found(&self, name: &str) -> DataFusionError {
        let source = self.source.name();
        let names = self.table_names();
        let list = if names.is_empty() {
            "it has no tables you can see".to_string()
        } else if names.len() <= 20 {
            format!("its tables are: {}", names.join(", "))
        } else {
            format!(
                "it has {} tables; run \\d {source} to list them",
                names.len()
            )
        };
        DataFusionError::Plan(format!(
            "table '{source}.{name}' not found: source '{source}' ({}) has no table '{name}'; {list}",
            self.source.kind()
        ))
    }
}

#[async_trait]
impl SchemaProvider for GovernedSchema {
    fn table_names(&self) -> Vec<String> {
        self.source
            .table_names()
            .into_iter()
            .filter(|t| self.visible(t))
            .collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if !self.visible(name) {
            return Err(self.not_found(name));
        }
        let inner = match self.source.table(name).await {
            Ok(Some(inner)) => inner,
            // The source's own "not found" lists every table; ours lists
            // only those the principal may see.
            Ok(None) | Err(DataFusionError::Plan(_)) => return Err(self.not_found(name)),
            Err(e) => return Err(e),
        };
        let table = GovernedTable::new(
            self.source.name(),
            name,
            inner,
            &self.policy,
            &self.principal,
            self.mask_key.as_deref(),
        )
        .map_err(DataFusionError::Plan)?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.visible(name) && self.source.table_exist(name)
    }
}

/// One table as one principal may see it: hidden columns gone, masked
/// columns with their masked type. Planning reads it; the rewrite replaces it.
#[derive(Debug)]
pub struct GovernedTable {
    /// The source.
    pub source: String,
    /// The table.
    pub table: String,
    /// The source's table, read in its place.
    pub inner: Arc<dyn TableProvider>,
    /// The columns the principal sees.
    schema: SchemaRef,
    constraints: Option<Constraints>,
    /// What the principal may do, filters and masks included.
    pub access: Arc<TableAccess>,
}

impl GovernedTable {
    fn new(
        source: &str,
        table: &str,
        inner: Arc<dyn TableProvider>,
        policy: &ReadPolicy,
        principal: &Principal,
        key: Option<&[u8]>,
    ) -> Result<Self, String> {
        let full = inner.schema();
        let columns: Vec<String> = full.fields().iter().map(|f| f.name().clone()).collect();
        let access = policy.access(principal, source, table, &columns);
        let qualified = DFSchema::try_from_qualified_schema(table, &full)
            .map_err(|e| format!("table '{source}.{table}': {e}"))?;
        let mut fields = Vec::new();
        let mut kept = Vec::new();
        for (index, field) in full.fields().iter().enumerate() {
            if access.hidden.contains(field.name()) {
                continue;
            }
            let field = match access.mask(field.name()) {
                None => {
                    kept.push(Some(fields.len()));
                    field.as_ref().clone()
                }
                Some(mask) => {
                    kept.push(None);
                    let data_type = match masked_type(&mask.kind, field.data_type()) {
                        Some(t) => t,
                        None => {
                            let column = Expr::Column(qualified.columns()[index].clone());
                            mask_expr(
                                &mask.kind,
                                column,
                                field.data_type(),
                                &qualified,
                                key,
                                principal,
                            )
                            .and_then(|e| e.get_type(&qualified).map_err(|e| e.to_string()))
                            .map_err(|m| {
                                format!(
                                    "policy {} on {source}.{table}.{}: {m}",
                                    mask.name,
                                    field.name()
                                )
                            })?
                        }
                    };
                    Field::new(field.name(), data_type, true)
                }
            };
            fields.push(field);
        }
        // Keys survive only where every key column is shown as it is.
        let visible_index = |i: &usize| {
            let hidden_before = full.fields()[..*i]
                .iter()
                .filter(|f| access.hidden.contains(f.name()))
                .count();
            if access.hidden.contains(full.field(*i).name()) {
                None
            } else {
                kept.get(i - hidden_before).copied().flatten()
            }
        };
        let remap = |indices: &Vec<usize>| -> Option<Vec<usize>> {
            indices.iter().map(visible_index).collect()
        };
        let constraints = inner.constraints().map(|c| {
            Constraints::new_unverified(
                c.iter()
                    .filter_map(|constraint| match constraint {
                        Constraint::PrimaryKey(i) => remap(i).map(Constraint::PrimaryKey),
                        Constraint::Unique(i) => remap(i).map(Constraint::Unique),
                    })
                    .collect(),
            )
        });
        Ok(Self {
            source: source.to_string(),
            table: table.to_string(),
            inner,
            schema: Arc::new(Schema::new_with_metadata(fields, full.metadata().clone())),
            constraints,
            access: Arc::new(access),
        })
    }

    fn unrewritten(&self) -> DataFusionError {
        DataFusionError::Internal(format!(
            "table '{}.{}' was reached without its access policy applied; refusing to read it",
            self.source, self.table
        ))
    }
}

#[async_trait]
impl TableProvider for GovernedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.constraints.as_ref()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        _state: &dyn CatalogSession,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Err(self.unrewritten())
    }

    async fn insert_into(
        &self,
        _state: &dyn CatalogSession,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Err(self.unrewritten())
    }
}
