//! Access policy: what a principal may do beyond reading the sources.
//!
//! Policies come from the configuration (`[[policy.files]]` so far) and are
//! resolved once, when the configuration is loaded, so a wrong one is a
//! `file:line` error at start-up rather than a door that silently stays open.
//! They are enforced in [`Session`](crate::Session) — the one entry point —
//! by [`guard::check_plan`], on the logical plan of every statement from every
//! front end, before anything runs.
//!
//! - [`files`]: `COPY ... TO` and `CREATE EXTERNAL TABLE` reach the server's
//!   file system and object stores, so they are refused unless a grant names
//!   the principal and the location lies inside a folder or prefix it lists.
//! - [`guard`]: the statement checks (file access, DDL only in the session's
//!   scratch schema, `SET` only on settings that cannot open the server).

pub mod files;
pub mod guard;

pub use files::{FileGrant, FileGrantConfig, Location};

/// Every policy in force, resolved from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Grants to write files (`COPY ... TO`) or read them as tables
    /// (`CREATE EXTERNAL TABLE`), in file order.
    pub files: Vec<FileGrant>,
}
