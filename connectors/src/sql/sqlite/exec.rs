//! How a SQLite query runs: the crate's executor's SQL, with the repairs
//! every database gets, read by our own reader
//! ([`crate::sql::upstream::sqlite_reader`]), which fails rather than end a
//! result early. SQLite's other differences are in what it is sent
//! (`crate::sql::functions`, `crate::sql::bytes`).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::Result as DFResult;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion_table_providers::sql::db_connection_pool::sqlitepool::SqliteConnectionPool;
use futures::{StreamExt, TryStreamExt};

use crate::sql::exec::{Remote, Repaired};
use crate::sql::functions::Database;
use crate::sql::upstream::sqlite_reader::sqlite_read;

/// SQLite: our repairs, and our reader.
pub(super) struct SqliteRemote {
    pub(super) pool: Arc<SqliteConnectionPool>,
}

impl Remote for SqliteRemote {
    fn database(&self) -> Database {
        Database::Sqlite
    }

    fn execute(
        &self,
        _executor: &Repaired<Self>,
        query: &str,
        schema: SchemaRef,
        _filters: &[Arc<dyn PhysicalExpr>],
    ) -> DFResult<SendableRecordBatchStream> {
        let read = sqlite_read(
            Arc::clone(&self.pool),
            query.to_string(),
            Arc::clone(&schema),
        );
        let batches = futures::stream::once(read)
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten()
            .boxed();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}
