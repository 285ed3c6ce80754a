//! What JDBC, ODBC and ADBC drivers ask before a query: `GetSqlInfo` (server
//! identity, SQL dialect facts, function lists), `GetXdbcTypeInfo` (the SQL
//! types and how to write them), and the fixed schemas of the key commands,
//! which Bluelamp answers empty because supplier interfaces declare no
//! foreign keys.

use std::sync::Arc;

use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel,
    SqlSupportedCaseSensitivity, SqlSupportedGroupBy, SqlSupportedSubqueries,
    SqlSupportedTransaction, SqlSupportedUnions, SupportedSqlGrammar, XdbcDataType,
    XdbcDatetimeSubcode,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// Functions `GetSqlInfo` lists by JDBC category; only those the engine knows
/// are reported.
const NUMERIC: &[&str] = &[
    "abs", "acos", "asin", "atan", "atan2", "cbrt", "ceil", "cos", "cot", "degrees", "exp",
    "floor", "ln", "log", "log10", "log2", "mod", "pi", "power", "radians", "random", "round",
    "signum", "sin", "sqrt", "tan", "trunc",
];
const STRING: &[&str] = &[
    "ascii",
    "btrim",
    "char_length",
    "character_length",
    "chr",
    "concat",
    "concat_ws",
    "initcap",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "octet_length",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "substring",
    "to_hex",
    "translate",
    "trim",
    "upper",
];
const SYSTEM: &[&str] = &["arrow_typeof", "coalesce", "nullif", "version"];
const DATETIME: &[&str] = &[
    "current_date",
    "current_time",
    "date_bin",
    "date_part",
    "date_trunc",
    "datepart",
    "datetrunc",
    "from_unixtime",
    "make_date",
    "now",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_timestamp_micros",
    "to_timestamp_millis",
    "to_timestamp_seconds",
    "to_unixtime",
];
/// Keywords beyond SQL-92 that the dialect reserves.
const KEYWORDS: &[&str] = &[
    "ANALYZE", "COPY", "EXPLAIN", "FILTER", "ILIKE", "LIMIT", "OFFSET", "QUALIFY", "UNNEST",
    "WINDOW",
];

fn known(names: &[String], category: &[&str]) -> Vec<String> {
    category
        .iter()
        .filter(|f| names.iter().any(|n| n == *f))
        .map(|f| f.to_string())
        .collect()
}

fn bits<T: Into<i32>>(values: impl IntoIterator<Item = T>) -> i32 {
    values.into_iter().fold(0, |acc, v| acc | (1 << v.into()))
}

/// The `GetSqlInfo` answers. `functions` are the engine's function names.
///
/// # Errors
/// Only if the builder rejects a value (a bug).
pub fn sql_info(functions: &[String]) -> Result<SqlInfoData, FlightError> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Bluelamp");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59.3");
    // INSERT and DDL are accepted, so the server is not read-only.
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    // Unquoted identifiers fold to lower case; quoted ones keep their case.
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    // NULLs sort last ascending and first descending: "high".
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlKeywords, KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, known(functions, NUMERIC));
    b.append(SqlInfo::SqlStringFunctions, known(functions, STRING));
    b.append(SqlInfo::SqlSystemFunctions, known(functions, SYSTEM));
    b.append(SqlInfo::SqlDatetimeFunctions, known(functions, DATETIME));
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(
        SqlInfo::SqlSupportedGroupBy,
        bits([SqlSupportedGroupBy::SqlGroupByUnrelated as i32]),
    );
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        bits([
            SupportedSqlGrammar::SqlMinimumGrammar as i32,
            SupportedSqlGrammar::SqlCoreGrammar as i32,
        ]),
    );
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
    );
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(
        SqlInfo::SqlSupportedSubqueries,
        bits([
            SqlSupportedSubqueries::SqlSubqueriesInComparisons as i32,
            SqlSupportedSubqueries::SqlSubqueriesInExists as i32,
            SqlSupportedSubqueries::SqlSubqueriesInIns as i32,
        ]),
    );
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(
        SqlInfo::SqlSupportedUnions,
        bits([
            SqlSupportedUnions::SqlUnion as i32,
            SqlSupportedUnions::SqlUnionAll as i32,
        ]),
    );
    for limit in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        // 0: no fixed limit.
        b.append(limit, 0i64);
    }
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, false);
    b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i64);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false);
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.build()
}

#[allow(
    clippy::too_many_arguments,
    reason = "one row of a fixed table, written out where it is read"
)]
fn xdbc(
    name: &str,
    data_type: XdbcDataType,
    column_size: Option<i32>,
    quote: Option<&str>,
    searchable: Searchable,
    unsigned: Option<bool>,
    scale: Option<(i32, i32)>,
    subcode: Option<XdbcDatetimeSubcode>,
) -> XdbcTypeInfo {
    let sql_data_type = if subcode.is_some() {
        XdbcDataType::XdbcDatetime
    } else {
        data_type
    };
    XdbcTypeInfo {
        type_name: name.to_string(),
        data_type,
        column_size,
        literal_prefix: quote.map(str::to_string),
        literal_suffix: quote.map(|_| "'".to_string()),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: matches!(data_type, XdbcDataType::XdbcVarchar),
        searchable,
        unsigned_attribute: unsigned,
        fixed_prec_scale: false,
        auto_increment: unsigned.map(|_| false),
        local_type_name: Some(name.to_string()),
        minimum_scale: scale.map(|s| s.0),
        maximum_scale: scale.map(|s| s.1),
        sql_data_type,
        datetime_subcode: subcode,
        num_prec_radix: unsigned.map(|_| 10),
        interval_precision: None,
    }
}

/// The `GetXdbcTypeInfo` answers: the SQL types queries can name.
///
/// # Errors
/// Only if the builder rejects a value (a bug).
pub fn xdbc_type_info() -> Result<XdbcTypeInfoData, FlightError> {
    use Searchable::{Basic, Full};
    use XdbcDataType as T;
    let mut b = XdbcTypeInfoDataBuilder::new();
    for info in [
        xdbc(
            "BOOLEAN",
            T::XdbcBit,
            Some(1),
            None,
            Basic,
            None,
            None,
            None,
        ),
        xdbc(
            "TINYINT",
            T::XdbcTinyint,
            Some(3),
            None,
            Basic,
            Some(false),
            Some((0, 0)),
            None,
        ),
        xdbc(
            "SMALLINT",
            T::XdbcSmallint,
            Some(5),
            None,
            Basic,
            Some(false),
            Some((0, 0)),
            None,
        ),
        xdbc(
            "INTEGER",
            T::XdbcInteger,
            Some(10),
            None,
            Basic,
            Some(false),
            Some((0, 0)),
            None,
        ),
        xdbc(
            "BIGINT",
            T::XdbcBigint,
            Some(19),
            None,
            Basic,
            Some(false),
            Some((0, 0)),
            None,
        ),
        xdbc(
            "REAL",
            T::XdbcReal,
            Some(7),
            None,
            Basic,
            Some(false),
            None,
            None,
        ),
        xdbc(
            "DOUBLE",
            T::XdbcDouble,
            Some(15),
            None,
            Basic,
            Some(false),
            None,
            None,
        ),
        xdbc(
            "DECIMAL",
            T::XdbcDecimal,
            Some(38),
            None,
            Basic,
            Some(false),
            Some((0, 38)),
            None,
        ),
        xdbc(
            "VARCHAR",
            T::XdbcVarchar,
            None,
            Some("'"),
            Full,
            None,
            None,
            None,
        ),
        xdbc(
            "BYTEA",
            T::XdbcVarbinary,
            None,
            Some("X'"),
            Basic,
            None,
            None,
            None,
        ),
        xdbc(
            "DATE",
            T::XdbcDate,
            Some(10),
            Some("DATE '"),
            Basic,
            None,
            None,
            Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
        ),
        xdbc(
            "TIME",
            T::XdbcTime,
            Some(15),
            Some("TIME '"),
            Basic,
            None,
            None,
            Some(XdbcDatetimeSubcode::XdbcSubcodeTime),
        ),
        xdbc(
            "TIMESTAMP",
            T::XdbcTimestamp,
            Some(26),
            Some("TIMESTAMP '"),
            Basic,
            None,
            None,
            Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        ),
    ] {
        b.append(info);
    }
    b.build()
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// The schema of `GetPrimaryKeys` results.
pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("catalog_name", true),
        utf8("db_schema_name", true),
        utf8("table_name", false),
        utf8("column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        utf8("key_name", true),
    ]))
}

/// The schema of `GetExportedKeys`, `GetImportedKeys` and `GetCrossReference`
/// results.
pub fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("pk_catalog_name", true),
        utf8("pk_db_schema_name", true),
        utf8("pk_table_name", false),
        utf8("pk_column_name", false),
        utf8("fk_catalog_name", true),
        utf8("fk_db_schema_name", true),
        utf8("fk_table_name", false),
        utf8("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        utf8("fk_key_name", true),
        utf8("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}
