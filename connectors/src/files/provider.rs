//! Tables over files: discovery of a folder's tables and the table provider that
//! makes sure each query's session can reach the files' object store.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session};
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::Result as DFResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use object_store::{ObjectStore, ObjectStoreExt};

use super::config::FileFormatKind;

/// A file or folder of files exposed as one table.
#[derive(Debug)]
pub struct FilesTableProvider {
    inner: ListingTable,
    store_url: ObjectStoreUrl,
    store: Arc<dyn ObjectStore>,
    /// The source and table, named when the table's file has gone.
    source: bluelamp_engine::SourceConfig,
    name: String,
}

impl FilesTableProvider {
    /// Wraps a listing table `name` of `source` whose files live in `store`.
    pub fn new(
        inner: ListingTable,
        store_url: ObjectStoreUrl,
        store: Arc<dyn ObjectStore>,
        source: &bluelamp_engine::SourceConfig,
        name: &str,
    ) -> Self {
        Self {
            inner,
            store_url,
            store,
            source: source.clone(),
            name: name.to_string(),
        }
    }

    /// The URL the table's store is registered under, and the store: what
    /// a process that runs this table's scans registers in its runtime (a
    /// cluster executor, for plans planned elsewhere).
    pub fn store(&self) -> (&ObjectStoreUrl, &Arc<dyn ObjectStore>) {
        (&self.store_url, &self.store)
    }

    /// A table that is one file fails when the file has gone, rather than
    /// listing nothing and answering as an empty table.
    async fn check_file(&self) -> DFResult<()> {
        for url in self.inner.table_paths() {
            if url.is_collection() {
                continue;
            }
            if let Err(object_store::Error::NotFound { .. }) = self.store.head(url.prefix()).await {
                return Err(bluelamp_engine::SourceError::unavailable(
                    &self.source,
                    format!(
                        "table '{}': its file {} no longer exists",
                        self.name,
                        url.prefix()
                    ),
                )
                .into_datafusion());
            }
        }
        Ok(())
    }
}

#[async_trait]
impl TableProvider for FilesTableProvider {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        // Sessions are created by the engine, which knows no object stores; the
        // table registers its own before reading (idempotent).
        state
            .runtime_env()
            .register_object_store(self.store_url.as_ref(), Arc::clone(&self.store));
        self.check_file().await?;
        self.inner.scan(state, projection, filters, limit).await
    }
}

/// The tables of one `files` source.
#[derive(Debug)]
pub struct FilesSchemaProvider {
    tables: BTreeMap<String, Arc<dyn TableProvider>>,
}

impl FilesSchemaProvider {
    /// A schema over already-built tables.
    pub fn new(tables: BTreeMap<String, Arc<dyn TableProvider>>) -> Self {
        Self { tables }
    }
}

#[async_trait]
impl SchemaProvider for FilesSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.tables.get(name).cloned())
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}

/// The DataFusion format and listing extension for a file format.
pub fn listing_options(
    format: FileFormatKind,
    extension: &str,
    has_header: bool,
    delimiter: u8,
) -> ListingOptions {
    let file_format: Arc<dyn FileFormat> = match format {
        FileFormatKind::Csv => Arc::new(
            CsvFormat::default()
                .with_has_header(has_header)
                .with_delimiter(delimiter),
        ),
        FileFormatKind::Ndjson => Arc::new(JsonFormat::default()),
        FileFormatKind::Parquet => Arc::new(ParquetFormat::default()),
    };
    ListingOptions::new(file_format).with_file_extension(extension)
}

/// Builds the listing table for one table path, inferring schema and hive-style
/// partition columns (`day=2026-01-01/`) unless a schema is given.
pub async fn build_table(
    state: &dyn Session,
    url: ListingTableUrl,
    options: ListingOptions,
    schema: Option<SchemaRef>,
) -> DFResult<ListingTable> {
    let partitions = if url.is_collection() {
        options.infer_partitions(state, &url).await?
    } else {
        Vec::new()
    };
    let options = options.with_table_partition_cols(
        partitions
            .into_iter()
            .map(|name| (name, DataType::Utf8))
            .collect(),
    );
    let file_schema = match schema {
        Some(schema) => schema,
        None => options.infer_schema(state, &url).await?,
    };
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(file_schema);
    ListingTable::try_new(config)
}

/// Parses a user-declared schema: column name → type name, in declaration order.
pub fn parse_schema(columns: &toml::Table) -> Result<SchemaRef, String> {
    let mut fields = Vec::with_capacity(columns.len());
    for (name, value) in columns {
        let Some(type_name) = value.as_str() else {
            return Err(format!(
                "column '{name}': the type must be a string such as \"Int64\""
            ));
        };
        let data_type = parse_type(type_name).map_err(|e| format!("column '{name}': {e}"))?;
        fields.push(Field::new(name, data_type, true));
    }
    if fields.is_empty() {
        return Err("an explicit schema needs at least one column".into());
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Arrow type from an SQL-style name (`bigint`) or an Arrow name (`Int64`).
pub fn parse_type(name: &str) -> Result<DataType, String> {
    let sql = match name.trim().to_ascii_lowercase().as_str() {
        "bigint" | "int8" | "long" => Some(DataType::Int64),
        "int" | "integer" | "int4" => Some(DataType::Int32),
        "smallint" | "int2" => Some(DataType::Int16),
        "text" | "varchar" | "string" => Some(DataType::Utf8),
        "double" | "float8" | "double precision" => Some(DataType::Float64),
        "real" | "float" | "float4" => Some(DataType::Float32),
        "boolean" | "bool" => Some(DataType::Boolean),
        "date" => Some(DataType::Date32),
        "timestamp" => Some(DataType::Timestamp(TimeUnit::Microsecond, None)),
        "timestamptz" => Some(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        )),
        _ => None,
    };
    match sql {
        Some(t) => Ok(t),
        None => name
            .parse::<DataType>()
            .map_err(|_| format!("unknown type '{name}' (use an Arrow type such as Int64, Utf8, Float64, or an SQL name such as bigint, text, timestamp)")),
    }
}

/// A table name from a file or folder name, without its extension.
pub fn table_name_for(entry: &str, extension: Option<&str>) -> String {
    let stem = match extension {
        Some(ext) if entry.to_ascii_lowercase().ends_with(ext) => &entry[..entry.len() - ext.len()],
        _ => entry,
    };
    crate::names::sql_name(stem)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn table_names_are_sql_friendly() {
        assert_eq!(
            table_name_for("Stop-Search.csv", Some(".csv")),
            "stop_search"
        );
        assert_eq!(table_name_for("2026_reads", None), "t2026_reads");
    }

    #[test]
    fn types_parse_from_sql_and_arrow_names() {
        assert_eq!(parse_type("bigint").unwrap(), DataType::Int64);
        assert_eq!(parse_type("Utf8").unwrap(), DataType::Utf8);
        assert!(parse_type("Timestamp(Millisecond, None)").is_ok());
        assert!(parse_type("nonsense").is_err());
    }
}
