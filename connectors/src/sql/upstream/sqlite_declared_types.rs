//! Workaround for `datafusion-table-providers` 0.15.1's SQLite schema
//! (`SqliteConnection::get_schema`): it infers a table's columns from a row
//! it reads, not from the table's declaration. So an empty table (the usual
//! target of a first `INSERT`) has no columns at all, and a column declared
//! `BOOLEAN`, which SQLite stores as 0 and 1, reads as an integer.
//!
//! [`declared_schema`] reads the declared columns (`pragma_table_info`), by
//! SQLite's own affinity rules; an empty table gets that schema, and a table
//! with rows keeps the inferred one with each `BOOLEAN` column read as a
//! boolean ([`booleans_as_declared`]; the crate decodes 0 and 1 into a
//! boolean column when the schema asks for one).
//!
//! Upstream issue: none found as of 2026-12; one should be filed against
//! datafusion-contrib/datafusion-table-providers (the schema could come from
//! `pragma_table_info`).
//!
//! Remove when: the crate's schema for a table follows its declaration,
//! which the test `upstream_still_infers_columns_from_rows` notices by
//! failing; then the SQLite backend can take `get_schema`'s answer as it is.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::sql::BoxError;

/// The columns of an empty table, from their declared types. The crate infers
/// a SQLite table's schema from its rows, so an empty table (the usual target
/// of a first `INSERT`) would otherwise have no columns at all. Dates and
/// times are kept as text, as SQLite stores them.
pub(in crate::sql) fn declared_schema(
    conn: &rusqlite::Connection,
    table: &str,
) -> Result<SchemaRef, BoxError> {
    let mut statement =
        conn.prepare("SELECT name, type, \"notnull\" FROM pragma_table_info(?1)")?;
    let fields = statement
        .query_map([table], |row| {
            let name: String = row.get(0)?;
            let declared: String = row.get(1)?;
            let not_null: bool = row.get(2)?;
            let upper = declared.to_ascii_uppercase();
            // SQLite's own affinity rules, in its order.
            let data_type = if upper.contains("INT") {
                DataType::Int64
            } else if upper.contains("CHAR") || upper.contains("CLOB") || upper.contains("TEXT") {
                DataType::Utf8
            } else if upper.contains("BLOB") || upper.is_empty() {
                DataType::Binary
            } else if upper.contains("BOOL") {
                DataType::Boolean
            } else if upper.contains("REAL")
                || upper.contains("FLOA")
                || upper.contains("DOUB")
                || upper.contains("NUM")
                || upper.contains("DEC")
            {
                DataType::Float64
            } else {
                DataType::Utf8
            };
            Ok(Field::new(name, data_type, !not_null))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// `inferred` with each column declared `BOOLEAN` read as a boolean: SQLite
/// stores booleans as 0 and 1, so a row shows only an integer.
pub(in crate::sql) fn booleans_as_declared(
    inferred: &SchemaRef,
    declared: &SchemaRef,
) -> SchemaRef {
    let fields: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|f| {
            let boolean = declared
                .field_with_name(f.name())
                .is_ok_and(|d| d.data_type() == &DataType::Boolean);
            if boolean && f.data_type().is_integer() {
                Field::new(f.name(), DataType::Boolean, f.is_nullable())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use datafusion::common::TableReference;
    use datafusion_table_providers::sql::db_connection_pool::DbConnectionPool;
    use datafusion_table_providers::sql::db_connection_pool::dbconnection::get_schema;

    use super::*;

    #[tokio::test]
    async fn upstream_still_infers_columns_from_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("declared.sqlite");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE flags (id INTEGER, open BOOLEAN, label TEXT);
             INSERT INTO flags VALUES (1, 1, 'a');
             CREATE TABLE vacant (id INTEGER, open BOOLEAN);",
        )
        .unwrap();
        let pool = super::super::sqlite_pool(&path).await;
        let fixed = "upstream fixed this: delete upstream/sqlite_declared_types.rs (see its doc)";
        let inferred = get_schema(
            pool.connect().await.unwrap(),
            &TableReference::bare("flags"),
        )
        .await
        .unwrap();
        let open = inferred
            .field_with_name("open")
            .unwrap()
            .data_type()
            .clone();
        assert!(open.is_integer(), "{fixed}: BOOLEAN read as {open}");
        let empty = get_schema(
            pool.connect().await.unwrap(),
            &TableReference::bare("vacant"),
        )
        .await
        .unwrap();
        assert!(empty.fields().is_empty(), "{fixed}: {empty:?}");
        // Ours follows the declaration.
        let declared = declared_schema(&conn, "vacant").unwrap();
        assert_eq!(declared.field(1).data_type(), &DataType::Boolean);
        let mended = booleans_as_declared(&inferred, &declared_schema(&conn, "flags").unwrap());
        assert_eq!(mended.field(1).data_type(), &DataType::Boolean);
        assert_eq!(mended.field(0).data_type(), inferred.field(0).data_type());
    }
}
