//! The metadata side of the Flight SQL service: the answers BI tools and
//! drivers ask for before they query — GetSqlInfo, GetXdbcTypeInfo,
//! catalogs, schemas, tables (with their schemas if asked), table types,
//! primary keys, and empty-but-typed imported/exported keys and cross
//! reference. `GetFlightInfo` announces each answer's schema with the
//! command itself as the ticket; `DoGet` builds the batch from the caller's
//! session (or the static data built in [`crate::metadata`]).

use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::metadata::{GetCatalogsBuilder, GetTablesBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, ProstMessageExt,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use bluelamp_engine::TABLE_TYPES;
use datafusion::arrow::array::{Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::Schema;
use futures::{TryStreamExt, stream};
use prost::Message;
use tonic::{Request, Response, Status};

use super::{BluelampFlightSql, DoGetStream, flight_status, internal};
use crate::error::status;
use crate::metadata::{foreign_keys_schema, primary_keys_schema};

impl BluelampFlightSql {
    /// A `FlightInfo` whose one endpoint's ticket is `ticket`.
    fn info(
        schema: &Schema,
        descriptor: FlightDescriptor,
        ticket: Vec<u8>,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| internal("cannot encode a schema", e))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// A `FlightInfo` for a metadata command: the ticket is the command itself.
    fn command_info(
        schema: &Schema,
        descriptor: FlightDescriptor,
        command: &impl ProstMessageExt,
    ) -> Result<Response<FlightInfo>, Status> {
        Self::info(schema, descriptor, command.as_any().encode_to_vec())
    }

    /// Streams a batch as a `DoGet` response.
    fn batch_stream(batch: RecordBatch) -> Response<DoGetStream> {
        let schema = batch.schema();
        let batches = stream::iter([Ok(batch)]);
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(flight_status);
        Response::new(Box::pin(flight))
    }

    pub(super) async fn flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = GetCatalogsBuilder::new().schema();
        Self::command_info(&schema, request.into_inner(), &query)
    }

    pub(super) async fn flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.clone().into_builder().schema();
        Self::command_info(&schema, request.into_inner(), &query)
    }

    pub(super) async fn flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.clone().into_builder().schema();
        Self::command_info(&schema, request.into_inner(), &query)
    }

    pub(super) async fn flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.into_builder().schema();
        Self::command_info(&schema, request.into_inner(), &query)
    }

    pub(super) async fn flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        Self::command_info(&schema, request.into_inner(), &query)
    }

    pub(super) async fn flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        Self::command_info(&primary_keys_schema(), request.into_inner(), &query)
    }

    pub(super) async fn flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        Self::command_info(&foreign_keys_schema(), request.into_inner(), &query)
    }

    pub(super) async fn flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        Self::command_info(&foreign_keys_schema(), request.into_inner(), &query)
    }

    pub(super) async fn flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        Self::command_info(&foreign_keys_schema(), request.into_inner(), &query)
    }

    pub(super) async fn flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.into_builder(&self.xdbc).schema();
        Self::command_info(&schema, request.into_inner(), &query)
    }

    pub(super) async fn stream_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let mut builder = query.into_builder();
        for catalog in session.catalog_names() {
            builder.append(catalog);
        }
        let batch = builder.build().map_err(|e| internal("catalogs", e))?;
        Ok(Self::batch_stream(batch))
    }

    pub(super) async fn stream_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let mut builder = query.into_builder();
        for catalog in session.catalog_names() {
            for schema in session.schema_names() {
                builder.append(&catalog, schema);
            }
        }
        let batch = builder.build().map_err(|e| internal("schemas", e))?;
        Ok(Self::batch_stream(batch))
    }

    pub(super) async fn stream_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let include_schema = query.include_schema;
        let mut builder: GetTablesBuilder = query.into_builder();
        for entry in session.tables().await {
            let schema = if include_schema {
                match session.table_schema(&entry.schema, &entry.table).await {
                    Ok(schema) => schema,
                    // A source that went down since listing: skip its table.
                    Err(_) => continue,
                }
            } else {
                Arc::new(Schema::empty())
            };
            builder
                .append(
                    &entry.catalog,
                    &entry.schema,
                    &entry.table,
                    entry.table_type,
                    &schema,
                )
                .map_err(|e| internal("tables", e))?;
        }
        let batch = builder.build().map_err(|e| internal("tables", e))?;
        Ok(Self::batch_stream(batch))
    }

    pub(super) async fn stream_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        let mut builder = query.into_builder();
        for table_type in TABLE_TYPES {
            builder.append(table_type);
        }
        let batch = builder.build().map_err(|e| internal("table types", e))?;
        Ok(Self::batch_stream(batch))
    }

    pub(super) async fn stream_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        let batch = query
            .into_builder(&self.sql_info)
            .build()
            .map_err(|e| internal("sql info", e))?;
        Ok(Self::batch_stream(batch))
    }

    pub(super) async fn stream_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let catalog = query
            .catalog
            .clone()
            .unwrap_or_else(|| bluelamp_engine::session::CATALOG.to_string());
        let mut rows: Vec<(String, String, String, i32)> = Vec::new();
        if session.catalog_names().contains(&catalog) {
            let schemas = match &query.db_schema {
                Some(s) => vec![s.clone()],
                None => session.schema_names(),
            };
            for schema in schemas {
                match session.primary_key(&schema, &query.table).await {
                    Ok(columns) => rows.extend(
                        columns
                            .into_iter()
                            .enumerate()
                            .map(|(i, c)| (schema.clone(), query.table.clone(), c, i as i32 + 1)),
                    ),
                    Err(e) if query.db_schema.is_some() => return Err(status(&e)),
                    Err(_) => {}
                }
            }
        }
        let n = rows.len();
        let batch = RecordBatch::try_new(
            primary_keys_schema(),
            vec![
                Arc::new(StringArray::from(vec![Some(catalog.as_str()); n])),
                Arc::new(StringArray::from_iter(
                    rows.iter().map(|r| Some(r.0.as_str())),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.1.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.2.as_str()),
                )),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.3))),
                Arc::new(StringArray::from(vec![None::<&str>; n])),
            ],
        )
        .map_err(|e| internal("primary keys", e))?;
        Ok(Self::batch_stream(batch))
    }

    pub(super) async fn stream_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        Ok(Self::batch_stream(RecordBatch::new_empty(
            foreign_keys_schema(),
        )))
    }

    pub(super) async fn stream_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        Ok(Self::batch_stream(RecordBatch::new_empty(
            foreign_keys_schema(),
        )))
    }

    pub(super) async fn stream_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        Ok(Self::batch_stream(RecordBatch::new_empty(
            foreign_keys_schema(),
        )))
    }

    pub(super) async fn stream_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        let batch = query
            .into_builder(&self.xdbc)
            .build()
            .map_err(|e| internal("type info", e))?;
        Ok(Self::batch_stream(batch))
    }
}
