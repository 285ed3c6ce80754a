//! # bluelamp-pg-server
//!
//! The PostgreSQL wire protocol over Bluelamp's engine, so `psql`, DBeaver,
//! Power BI, Tableau, Grafana and Metabase connect as they would to
//! PostgreSQL. [`serve`] listens on `[server] postgres_listen` (or the
//! address given) beside Flight SQL and returns a [`RunningPgServer`].
//!
//! Design decisions a newcomer should know:
//!
//! - **Every statement goes through a [`bluelamp_engine::Session`]**, one per
//!   connection, bound to the user who authenticated: the same policy,
//!   purpose and audit as Flight SQL and the REPL. Only the protocol's own
//!   statements are answered here (`BEGIN`/`COMMIT`, `SET client_encoding`
//!   and the other parameters drivers send); see [`statements`].
//! - **pgwire for the messages, the rest ours.** The `pgwire` crate encodes
//!   and decodes the protocol's messages; the connection's state machine is
//!   ours, so results stream with back-pressure, portals keep their running
//!   stream between row-limited `Execute`s, and `CancelRequest` reaches a
//!   statement at any point (planning, execution, or mid-result).
//! - **Authentication is SCRAM-SHA-256 only** (no MD5, no trust), against a
//!   user's `scram_sha256` verifier ([`bluelamp_engine::scram`]). With
//!   `[server] tls_cert`/`tls_key` set, plaintext connections are refused
//!   (`sslmode=require`); `client_ca` asks for client certificates.
//! - **Types**: [`types`] maps Arrow to PostgreSQL types and writes both
//!   text and binary formats; nested values are sent as JSON.
//! - **Errors carry SQLSTATEs** ([`errors`]): `42601` syntax, `42P01`
//!   unknown table, `28P01` wrong password, `57014` cancelled.
//!
//! - **Enough `pg_catalog` for clients to introspect**: [`catalog`] computes
//!   `pg_class`, `pg_attribute`, `pg_namespace`, `pg_type`, ... from the
//!   session's own catalog (so policy-hidden tables and columns are absent),
//!   [`functions`] adds `format_type`, `pg_table_is_visible` and the like,
//!   and [`dialect`] rewrites PostgreSQL-only spellings (`OPERATOR(pg_catalog.~)`,
//!   `COLLATE`, `::regclass`) that DataFusion does not plan.
//!
//! Modules: [`server`] (binding, TLS, cancel registry), [`connection`]
//! (start-up and authentication), [`statements`] (simple and extended
//! query protocols), [`types`], [`params`] (bound parameters), [`errors`],
//! [`wire`] (buffered message I/O), [`catalog`], [`functions`], [`dialect`].

pub mod catalog;
pub mod connection;
pub mod dialect;
pub mod errors;
pub mod functions;
pub mod params;
pub mod server;
pub mod statements;
pub mod types;
pub mod wire;

pub use server::{PgServeError, RunningPgServer, serve};
