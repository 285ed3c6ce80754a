//! The audit trail: who consulted or disclosed what, when and why
//! (Data Protection Act 2018, Part 3, s.62).
//!
//! Every statement appends a [`AuditRecord`] to an append-only file of JSON
//! lines. Each record carries the SHA-256 of the line before it (`prev`), so
//! editing, deleting, inserting or reordering a record breaks the chain; a
//! head file beside the log (`PATH.head`) holds the last record's number and
//! hash, so cutting records off the end is caught too. [`verify`] walks the
//! chain and names the first broken record.
//!
//! Records are written by one thread that takes whatever has queued, writes
//! it, and fsyncs once for all of it (group commit), so many concurrent
//! statements cost one disk flush. A statement's record is durable before its
//! first row is released; if it cannot be written (disk full, permissions),
//! the statement is refused and nothing is run or returned — the trail
//! fails closed.
//!
//! A query appends two records: `statement` before any row leaves
//! (consultation: who, why, which tables and columns) and `completed` when its
//! results end or are abandoned (disclosure: how many rows went to whom, the
//! deposits' outcomes, the result). Refused and failed statements append one.
//!
//! Modules: [`chain`] (the writer: hashing, group commit, rotation),
//! [`trail`] (what a statement touched; result streams that report their
//! end), [`probes`] (requests sent to a source outside SQL), [`verify`] (checking a chain and searching records).

pub mod chain;
pub mod probes;
pub(crate) mod statements;
pub mod trail;
pub mod verify;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use chain::{AuditError, AuditLog};
pub use probes::ProbeGrant;
pub use verify::{Broken, SearchFilter, search, verify};

/// The `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the audit trail. Field order is fixed: the hash chain is over
/// the exact bytes of each line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the trail, from 1, across rotated files.
    pub seq: u64,
    /// When, in UTC (RFC 3339, milliseconds).
    pub time: String,
    /// `statement`, `completed`, `metadata`, `probe`.
    pub event: String,
    /// For `completed`: the `seq` of the statement it completes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub statement_seq: Option<u64>,
    /// The principal's user name.
    pub user: String,
    /// How they authenticated (`password`, `token`, `local`).
    pub auth: String,
    /// The client's network address, where there is one.
    pub client: Option<String>,
    /// The purpose the user stated (`SET bluelamp.purpose = '...'`).
    pub purpose: Option<String>,
    /// The statement's SQL text, or the metadata call.
    pub statement: String,
    /// Sources read or written.
    pub sources: Vec<String>,
    /// Tables read or written, `source.table` (consultation; more than one
    /// source is a combination).
    pub tables: Vec<String>,
    /// Columns referenced, `source.table.column`.
    pub columns: Vec<String>,
    /// Rows returned (disclosure), on `completed`.
    pub rows: Option<u64>,
    /// Who the rows went to.
    pub recipient: Option<String>,
    /// Deposit outcomes by kind (`stored`, `rejected`, ...), on `completed`
    /// of an INSERT into a supplier system (collection, alteration).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub deposits: BTreeMap<String, u64>,
    /// Policies applied to the statement.
    pub policies: Vec<String>,
    /// The result's security marking, where known.
    pub marking: Option<String>,
    /// `ok`, `error`, `refused`, `cancelled`.
    pub outcome: String,
    /// Why, for anything but `ok`.
    pub error: Option<String>,
    /// The statement's OpenTelemetry trace id, where traces are exported
    /// (`[telemetry]`): the way from this record to the statement's spans.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trace_id: Option<String>,
    /// Milliseconds from the statement's start to this record.
    pub duration_ms: u64,
    /// SHA-256 (hex) of the previous line.
    pub prev: String,
}

/// `[audit]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// The trail's file; rotated files sit beside it as `PATH.000001`, ...
    pub path: Option<std::path::PathBuf>,
    /// A file is rotated once it reaches this many bytes.
    pub rotate_bytes: u64,
    /// Statements must state a purpose first where they read one of these
    /// sources, or where their result is marked at or above one of these
    /// classifications (`OFFICIAL-SENSITIVE`) or carries one of these
    /// caveats (`PERSONAL`).
    pub require_purpose: Vec<String>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            path: None,
            rotate_bytes: 64 * 1024 * 1024,
            require_purpose: Vec::new(),
        }
    }
}
