//! One SQL source's tables, as DataFusion sees them.
//!
//! [`SqlSchemaProvider`] lists the tables when the source connects and
//! builds each table's provider on first use (through the backend's
//! [`SqlBackend::table_provider`]), caching it; an error building one names
//! the source and the table and never shows a password. [`key_constraints`]
//! turns the keys a database's catalog declares into DataFusion's
//! constraints, which every backend reports for its tables.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::Schema;
use async_trait::async_trait;
use bluelamp_engine::{SourceConfig, SourceError};
use datafusion::catalog::SchemaProvider;
use datafusion::common::{Constraint, Constraints};
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result as DFResult};
use tokio::sync::Mutex;

use super::write::dry_runnable;
use super::{SqlBackend, describe, hide};

/// One SQL source's tables: listed at connect time, built on first use.
#[derive(Debug)]
pub(crate) struct SqlSchemaProvider {
    source: SourceConfig,
    /// Remote secrets (e.g. a literal password) to strip from error text.
    hide: Vec<String>,
    tables: Vec<String>,
    backend: Arc<dyn SqlBackend>,
    cache: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
}

impl SqlSchemaProvider {
    pub(crate) fn new(
        source: &SourceConfig,
        hide: Vec<String>,
        mut tables: Vec<String>,
        backend: Arc<dyn SqlBackend>,
    ) -> Self {
        tables.sort();
        tables.dedup();
        Self {
            source: source.clone(),
            hide,
            tables,
            backend,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl SchemaProvider for SqlSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.tables.clone()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if !self.table_exist(name) {
            return Ok(None);
        }
        let mut cache = self.cache.lock().await;
        if let Some(table) = cache.get(name) {
            return Ok(Some(Arc::clone(table)));
        }
        let table = self
            .backend
            .table_provider(&self.source, name)
            .await
            .map_err(|e| {
                let message = hide(
                    &format!("cannot read table '{name}': {}", describe(e.as_ref())),
                    &self.hide,
                );
                DataFusionError::External(Box::new(SourceError::new(&self.source, message)))
            })?;
        let table = dry_runnable(table, format!("{}.{name}", self.source.name));
        cache.insert(name.to_string(), Arc::clone(&table));
        Ok(Some(table))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name)
    }
}

/// A table's primary key and unique constraints as DataFusion constraints over
/// `schema`, from the database's catalog: each key is whether it is the
/// primary key, and its column names in key order. They tell the planner
/// which joins cannot multiply rows (see `bluelamp_engine::source_joins`) and
/// answer Flight SQL's `GetPrimaryKeys`. A key naming a column the table does
/// not expose is skipped.
pub(super) fn key_constraints(
    schema: &Schema,
    keys: impl IntoIterator<Item = (bool, Vec<String>)>,
) -> Constraints {
    let constraints = keys
        .into_iter()
        .filter_map(|(primary, columns)| {
            let indices: Option<Vec<usize>> = columns
                .iter()
                .map(|name| schema.index_of(name).ok())
                .collect();
            indices.filter(|i| !i.is_empty()).map(|indices| {
                if primary {
                    Constraint::PrimaryKey(indices)
                } else {
                    Constraint::Unique(indices)
                }
            })
        })
        .collect();
    Constraints::new_unverified(constraints)
}
