//! How a MySQL or MariaDB query runs: string literals written as the
//! server reads them, and results read by our own reader
//! ([`crate::sql::upstream::mysql_reader`]) rather than the crate's.

use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::error::Result as DFResult;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::{self, ValueWithSpan, visit_expressions_mut};
use datafusion_table_providers::sql::db_connection_pool::DbConnectionPool;
use datafusion_table_providers::sql::db_connection_pool::mysqlpool::MySQLConnectionPool;
use futures::TryStreamExt;

use crate::sql::BoxError;
use crate::sql::exec::{Remote, Repaired};
use crate::sql::functions::Database;
use crate::sql::upstream::mysql_reader::mysql_stream;

/// Whether the server already treats `\` in string literals as an ordinary
/// character (`sql_mode` has `NO_BACKSLASH_ESCAPES`).
pub(super) async fn server_disables_backslash_escapes(
    pool: &Arc<MySQLConnectionPool>,
) -> Result<bool, BoxError> {
    let conn = pool.connect().await?;
    let Some(conn) = conn.as_async() else {
        return Ok(false);
    };
    let mut stream = conn
        .query_arrow("SELECT @@SESSION.sql_mode AS sql_mode", &[], None)
        .await?;
    let mut modes = String::new();
    while let Some(batch) = stream.try_next().await? {
        let text = arrow::util::pretty::pretty_format_batches(&[batch])?.to_string();
        modes.push_str(&text);
    }
    Ok(modes.contains("NO_BACKSLASH_ESCAPES"))
}

/// MySQL's differences from the crate's executor: two corrections, both of
/// which otherwise make a query silently return the wrong rows:
///
/// - DataFusion writes string literals the standard way (`'a\b'` is three
///   characters), but MySQL by default reads a backslash as an escape. This doubles
///   backslashes in every string literal, unless the server's `sql_mode` already
///   disables backslash escapes.
/// - The upstream connection deletes every `"` from the SQL text before sending it
///   (to undo ANSI identifier quoting), which also corrupts string literals such
///   as `'"double" quotes'` and column aliases. Queries here are sent as they are.
pub(super) struct MySqlRemote {
    pub(super) pool: Arc<MySQLConnectionPool>,
    pub(super) escape_backslashes: bool,
}

#[async_trait]
impl Remote for MySqlRemote {
    fn database(&self) -> Database {
        Database::MySql
    }

    fn finish(&self) -> Box<dyn FnMut(&mut ast::Statement)> {
        let escape = self.escape_backslashes;
        Box::new(move |statement| {
            if escape {
                let _ = visit_expressions_mut(statement, |expr| {
                    if let ast::Expr::Value(ValueWithSpan {
                        value: ast::Value::SingleQuotedString(text),
                        ..
                    }) = expr
                        && text.contains('\\')
                    {
                        *text = text.replace('\\', "\\\\");
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
        })
    }

    fn execute(
        &self,
        _executor: &Repaired<Self>,
        query: &str,
        schema: SchemaRef,
        _filters: &[Arc<dyn PhysicalExpr>],
    ) -> DFResult<SendableRecordBatchStream> {
        Ok(mysql_stream(
            Arc::clone(&self.pool),
            query.to_string(),
            schema,
        ))
    }
}
