//! # bluelamp-flight-server
//!
//! Arrow Flight SQL over the Bluelamp engine, so BI tools, notebooks and
//! ADBC/JDBC/ODBC drivers connect to Bluelamp as to a database.
//!
//! Design decisions a newcomer should know:
//!
//! - **One entry point.** Every RPC authenticates its caller and then runs
//!   through that user's engine [`bluelamp_engine::Session`]; the service never
//!   touches DataFusion directly, so audit and policy apply here as in the REPL.
//! - **Authentication** ([`auth`]): `[[user]]` entries with Argon2 hashes. The
//!   Handshake trades basic credentials for a bearer token that expires; basic
//!   credentials also work on any call. TLS and mutual TLS come from `[server]`.
//! - **Tickets are opaque** ([`tickets`]): `GetFlightInfo` plans the statement
//!   (so the result schema is known) and returns a random handle bound to the
//!   user and expiring; `DoGet` executes it and streams batch by batch, never
//!   holding a whole result. `CancelFlightInfo` stops a waiting or running one.
//! - **Metadata drivers ask for** ([`metadata`]): `GetSqlInfo`,
//!   `GetXdbcTypeInfo`, catalogs/schemas/tables with patterns and schemas,
//!   table types, primary keys, and empty-but-typed foreign-key answers.
//! - **Errors** ([`error`]) map to gRPC codes in one place, with paths on the
//!   server's disk reduced to file names.
//! - **Results are not copied on the way out**: `DoGet` is answered by our
//!   own HTTP/2 handler (`direct`), which frames the batches' own Arrow
//!   buffers as gRPC messages (`wire`); every other call goes through tonic's
//!   generated server.
//!
//! Modules: [`server`] (bind, TLS, shutdown), [`service`] (the
//! `FlightSqlService`), [`auth`], [`tickets`], [`metadata`], [`error`].

pub mod auth;
mod direct;
pub mod error;
pub mod metadata;
pub mod server;
pub mod service;
pub mod tickets;
mod wire;

pub use auth::{Authenticator, hash_password};
pub use server::{RunningServer, ServeError, serve};
pub use service::BluelampFlightSql;
