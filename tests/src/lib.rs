//! # bluelamp-tests
//!
//! Support for Bluelamp's cross-crate tests, which live in `tests/tests/`:
//!
//! - `slt.rs` runs every `.slt` file in `tests/slt/` (SQL behaviour, including
//!   `statement error` cases) against an engine over a small demo force.
//! - `databases.rs` runs against the machine's real PostgreSQL and MariaDB and a
//!   SQLite file: type round-trips, pushdown proven from `EXPLAIN`, a four-way
//!   cross-source join, hostile filter values, and failure messages.
//!
//! Modules:
//! - [`services`]: throwaway databases on the machine's servers, created with a
//!   unique name and dropped afterwards; a missing server is reported loudly, and
//!   under `CI=true` it fails the test instead of skipping it.
//! - [`slt`]: the sqllogictest adapter over a Bluelamp session.
//! - [`fixtures`]: engines over generated demo data.
//! - [`plans`]: row counts read from `EXPLAIN ANALYZE` output.
//! - [`flight_client`]: reading Flight SQL results in tests.
//! - [`otlp`]: an OTLP/gRPC trace receiver standing in for a collector.
//! - [`pg`]: Bluelamp's PostgreSQL endpoint over a small folder of incidents.
//! - [`conformance`]: the connector conformance suite: one fixture, the same
//!   checks for every connector, each answer compared with DataFusion's own
//!   evaluation over the same rows.
//! - [`walkthrough`]: the small connector (`kind = "ipc"`, a folder of
//!   Arrow IPC files) that `docs/connectors.md` builds step by step.

pub mod conformance;
pub mod fixtures;
pub mod flight_client;
pub mod otlp;
pub mod pg;
pub mod plans;
pub mod services;
pub mod slt;
pub mod walkthrough;
