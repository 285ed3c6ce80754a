//! The sqllogictest adapter: each `.slt` record runs through a Bluelamp session,
//! exactly as a REPL or Flight SQL statement would.

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use bluelamp_engine::{QueryError, Session};
use futures::TryStreamExt;
use sqllogictest::{DBOutput, DefaultColumnType};

/// A failed statement, as sqllogictest sees it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SltError(String);

impl From<QueryError> for SltError {
    fn from(e: QueryError) -> Self {
        SltError(e.message)
    }
}

/// A session that sqllogictest can drive.
pub struct SltSession {
    session: Session,
}

impl SltSession {
    /// Wraps a session.
    pub fn new(session: Session) -> Self {
        Self { session }
    }
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            DefaultColumnType::FloatingPoint
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

/// Runs `sql` in `session` and returns its rows as [`rows`] shows them.
///
/// # Panics
/// If the statement fails; the panic names the SQL and the error.
#[allow(
    clippy::panic,
    reason = "test helper: a failing statement fails the test"
)]
pub async fn session_rows(session: &Session, sql: &str) -> Vec<Vec<String>> {
    try_session_rows(session, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs one statement to its end: its rows as display strings, or the error
/// it failed with (as it starts or while it streams).
///
/// # Panics
/// If a column cannot be displayed (a type the test helpers do not know).
#[allow(
    clippy::panic,
    reason = "test helper: an undisplayable column is a broken test"
)]
pub async fn try_session_rows(
    session: &Session,
    sql: &str,
) -> Result<Vec<Vec<String>>, bluelamp_engine::QueryError> {
    let output = session.sql(sql).await?;
    let batches: Vec<RecordBatch> = output
        .stream
        .try_collect()
        .await
        .map_err(bluelamp_engine::QueryError::from)?;
    Ok(rows(&batches).unwrap_or_else(|e| panic!("{sql}: {e}")))
}

/// Batches as rows of display strings (NULL as `NULL`, empty strings as `(empty)`).
///
/// # Errors
/// A column type arrow cannot display.
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, SltError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SltError(e.to_string()))?;
        for row in 0..batch.num_rows() {
            let mut values = Vec::with_capacity(formatters.len());
            for (formatter, column) in formatters.iter().zip(batch.columns()) {
                let text = formatter.value(row).to_string();
                // sqllogictest compares whitespace-separated tokens; keep empty strings visible.
                values.push(if text.is_empty() && !column.is_null(row) {
                    "(empty)".into()
                } else {
                    text
                });
            }
            out.push(values);
        }
    }
    Ok(out)
}

#[async_trait]
impl sqllogictest::AsyncDB for SltSession {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let output = self.session.sql(sql).await?;
        let schema = output.schema.clone();
        let batches: Vec<RecordBatch> = output
            .stream
            .try_collect()
            .await
            .map_err(|e| SltError::from(QueryError::from(e)))?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows {
            types: schema
                .fields()
                .iter()
                .map(|f| column_type(f.data_type()))
                .collect(),
            rows: rows(&batches)?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "bluelamp"
    }
}
