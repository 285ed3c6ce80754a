//! Filters a database would answer differently stay in DataFusion.
//!
//! A table's own scan (used where federation does not take the whole
//! sub-plan) asks the `datafusion-table-providers` table which filters it
//! can push, and that table accepts any it can write as SQL. Some of those
//! the database answers otherwise than DataFusion (SQLite's `CAST(x AS
//! DATE)` makes a number of `x`), which would return wrong rows with no
//! error. [`Guarded`] refuses such filters, using the same rules as the
//! federated path ([`super::functions`]), so DataFusion applies them to the
//! rows the database returns: slower, never wrong.
//!
//! The same wrapper also reports a table's keys, read from the database's
//! catalog, where the crate's provider reports none (the MySQL writer).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Constraints, DFSchema, Statistics};
use datafusion::datasource::TableProvider;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::functions::Database;

/// `inner`, with the filters `guard` would evaluate differently kept back,
/// and `constraints` reported in place of its own; everything else, writes
/// included, is `inner`'s.
#[derive(Debug)]
pub(super) struct Guarded {
    inner: Arc<dyn TableProvider>,
    guard: Option<Database>,
    constraints: Option<Constraints>,
}

impl Guarded {
    /// `inner`, pushing only the filters `database` answers as DataFusion.
    pub(super) fn new(inner: Arc<dyn TableProvider>, database: Database) -> Self {
        Self {
            inner,
            guard: Some(database),
            constraints: None,
        }
    }

    /// `inner`, reporting `constraints` (read from the database's catalog).
    pub(super) fn keyed(inner: Arc<dyn TableProvider>, constraints: Constraints) -> Self {
        Self {
            inner,
            guard: None,
            constraints: Some(constraints),
        }
    }
}

/// `expr` with its columns unqualified, to be typed against the table's
/// own schema.
fn unqualified(expr: &Expr) -> Expr {
    expr.clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) if c.relation.is_some() => {
                    Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))
                }
                other => Transformed::no(other),
            })
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| expr.clone())
}

#[async_trait]
impl TableProvider for Guarded {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.constraints
            .as_ref()
            .or_else(|| self.inner.constraints())
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.inner.get_column_default(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        let answers = self.inner.supports_filters_pushdown(filters)?;
        let Some(database) = &self.guard else {
            return Ok(answers);
        };
        let schema = DFSchema::try_from(self.inner.schema().as_ref().clone()).ok();
        Ok(filters
            .iter()
            .zip(answers)
            .map(|(filter, answer)| {
                if database.evaluates_as_datafusion(&unqualified(filter), schema.as_ref()) {
                    answer
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        self.inner.insert_into(state, input, insert_op).await
    }
}
