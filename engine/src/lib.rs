//! # bluelamp-engine
//!
//! The core of Bluelamp, a federated SQL engine for police information systems.
//! It turns a `bluelamp.toml` into one DataFusion catalog — each `[[source]]` a SQL
//! schema, so tables read `rms.crimes` — and runs every query, from every front end,
//! through one entry point that knows who is asking.
//!
//! Design decisions a newcomer should know:
//!
//! - **No connector knowledge here.** The engine knows nothing of HTTP, PostgreSQL or
//!   Flight. Connectors implement [`SourceFactory`] (config table → DataFusion
//!   `SchemaProvider`) in the `bluelamp-connectors` crate and are handed in through a
//!   [`FactoryRegistry`].
//! - **A down source never stops the others.** Each source is wrapped in a
//!   [`catalog::SourceSchema`] that records its state, fails queries that touch it with an
//!   error naming it, and reconnects on demand. `bluelamp.sources` shows every
//!   source's status.
//! - **One choke point.** Front ends get a [`Session`] for an [`Identity`] and never
//!   the DataFusion `SessionContext`; planning, execution and audit happen in
//!   [`Session`], where access policy is enforced on every statement's plan:
//!   each governed table is read as `SELECT <masked columns> FROM t WHERE
//!   <row filters>` before the optimizer runs, so joins, views, subqueries and
//!   pushdown all see only what the principal may.
//! - **Federation on.** Sessions use `datafusion-federation`'s optimizer rules and
//!   planner, so connectors that support it run whole sub-plans remotely.
//! - **Errors are sentences.** [`QueryError`] carries one clean line and an
//!   [`ErrorKind`] that front ends map to their own codes.
//!
//! Modules:
//! - [`audit`]: the hash-chained, fsynced audit trail of every statement.
//! - [`config`]: the typed `bluelamp.toml` model, `${ENV}` secrets, located errors.
//! - [`source`]: the connector contract ([`SourceFactory`], [`SourceError`]).
//! - [`catalog`]: source schemas with live status, and the `bluelamp` system schema.
//! - [`accelerate`]: local copies of slow sources' tables, refreshed in the
//!   background and read instead of the source (`bluelamp.accelerations`).
//! - [`session`]: [`Engine`], [`Session`], [`Identity`], statement parsing and execution.
//! - [`deposits`]: per-row outcomes of INSERTs into supplier systems, `bluelamp.deposits`.
//! - [`listing`]: catalogs, schemas, tables, keys and functions a session sees.
//! - [`scram`]: SCRAM-SHA-256 verifiers and the server side of its exchange
//!   (the PostgreSQL wire protocol's password check).
//! - [`users`]: the `[[user]]` entries every front end shares — passwords,
//!   bearer tokens, who may act for whom.
//! - [`principal`]: [`Principal`] — who is asking, with roles, force, clearance
//!   and teams; carried in each session's DataFusion `SessionConfig`.
//! - [`policy`]: access policy from the configuration — grants, row filters,
//!   masks and security markings, enforced by rewriting each statement's
//!   plan; a per-principal catalog that hides what they may not see; and
//!   the statement guard that refuses file-system access, DDL outside
//!   `public` and risky `SET`s.
//! - [`prefilter`]: join keys applied to file rows before an aggregate reads them.
//! - [`source_joins`]: joins between one database's tables regrouped so the database runs them.
//! - [`error`]: [`QueryError`] and its classification.
//! - [`ops`]: operations — running and recent statements (`bluelamp.queries`,
//!   `bluelamp.cancel_query`), statement timeouts, guards on functions that
//!   make huge values, and the Prometheus metrics.

pub mod accelerate;
pub mod audit;
pub mod catalog;
pub mod config;
pub mod deposits;
pub mod error;
pub mod listing;
pub mod ops;
pub mod policy;
pub mod prefilter;
pub mod principal;
pub mod scram;
pub mod session;
pub mod source;
pub mod source_joins;
pub mod users;

pub use catalog::{SourceState, SourceStatus};
pub use config::{
    Config, ConfigError, LocalSettings, Secret, ServerSettings, SourceConfig, UserConfig,
};
pub use deposits::{BluelampOptions, DepositJournal, DepositOutcome};
pub use error::{ErrorKind, QueryError};
pub use listing::{TABLE_TYPES, TableEntry};
pub use policy::Policy;
pub use principal::{Clearance, Principal};
pub use session::{
    Engine, Identity, PartitionedOutput, PlanRunner, Planned, QueryOutput, Session, Statement,
    parse_statements,
};
pub use source::{ConnectedSource, FactoryRegistry, SharedPacer, SourceError, SourceFactory};
