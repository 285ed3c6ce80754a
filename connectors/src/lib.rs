//! # bluelamp-connectors
//!
//! One module per kind of source. Each implements the engine's
//! [`SourceFactory`](bluelamp_engine::SourceFactory): it reads its part of a
//! `[[source]]` table into a typed config (unknown keys rejected), connects, and
//! returns a DataFusion `SchemaProvider` whose tables are DataFusion's own
//! `TableProvider`s — no parallel abstraction layer.
//!
//! | kind | module | how |
//! |---|---|---|
//! | `files` | [`files`] | DataFusion listing tables over a folder or object store (CSV, NDJSON, Parquet) |
//! | `postgres` | [`sql`] | `datafusion-table-providers` + federation: sub-plans run in PostgreSQL |
//! | `mysql` | [`sql`] | the same, for MySQL and MariaDB |
//! | `sqlite` | [`sql`] | the same, for a SQLite file |
//! | `openapi` | [`openapi`] | a documented REST interface: pagination, auth, filter pushdown, streaming decode |
//! | `flightsql` | [`flightsql`] | any Arrow Flight SQL server (another force's Bluelamp): federation as declared by `GetSqlInfo` |
//!
//! [`registry`] returns every factory, for binaries and tests; [`names`] turns
//! source names into table names the same way for every connector.

pub mod files;
pub mod flightsql;
pub mod names;
pub mod openapi;
pub mod sql;

use std::sync::Arc;

use bluelamp_engine::FactoryRegistry;

/// Every connector this crate provides.
pub fn registry() -> FactoryRegistry {
    FactoryRegistry::new()
        .with(Arc::new(files::FilesSourceFactory))
        .with(Arc::new(flightsql::FlightSqlSourceFactory))
        .with(Arc::new(openapi::OpenApiSourceFactory))
        .with(Arc::new(sql::PostgresSourceFactory))
        .with(Arc::new(sql::MySqlSourceFactory))
        .with(Arc::new(sql::SqliteSourceFactory))
}
