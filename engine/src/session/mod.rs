//! The engine and its sessions: the one entry point every query goes through.
//!
//! [`Engine::start`] connects every source (concurrently, each bounded by the connect
//! timeout) and assembles the shared schemas. [`Engine::session`] gives a [`Session`]
//! bound to an [`Identity`]; the session owns its DataFusion `SessionContext`, which
//! no front end can reach, so policy and audit can be enforced here for every query.
//!
//! The code is split along its seams: `engine` starts the [`Engine`] and builds
//! each session's DataFusion context (settings and optimizer rules);
//! `statements` parses SQL into [`Statement`]s and holds their [`Planned`] form;
//! `run` is a [`Session`]'s parse, plan and execute path, with `describe` and
//! the audit of statements that fail. The types they share live here.

mod engine;
mod run;
mod statements;
mod tracking;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;

use crate::principal::Principal;

pub(crate) use engine::federated_context;
pub use engine::{Engine, PlanRunner};
pub use statements::{MAX_PARAMETERS, Planned, Statement, parse_statements};

/// The catalog every source schema lives in (`bluelamp.rms.crimes` in full).
pub const CATALOG: &str = "bluelamp";
/// The schema for the engine's own tables (`bluelamp.sources`).
pub const SYSTEM_SCHEMA: &str = "bluelamp";
/// A per-session scratch schema for views and temporary tables.
pub const SCRATCH_SCHEMA: &str = "public";

/// Who is asking. Every statement runs as an identity, so that access policy and
/// audit can act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name.
    pub user: String,
    /// How the user was authenticated (`local`, `password`, ...).
    pub authenticated_by: String,
}

impl Identity {
    /// The operating-system user running the process, for the REPL and scripts.
    pub fn local() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "local".to_string());
        Self {
            user,
            authenticated_by: "local".to_string(),
        }
    }

    /// A named user authenticated by `method`.
    pub fn new(user: impl Into<String>, method: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            authenticated_by: method.into(),
        }
    }
}

/// One user's conversation with the engine. Clones share settings and views.
#[derive(Clone)]
pub struct Session {
    pub(crate) ctx: SessionContext,
    pub(crate) identity: Identity,
    pub(crate) principal: Arc<Principal>,
    pub(crate) client: Option<String>,
    pub(crate) engine: Engine,
    /// What the session's own tables and views were made from.
    pub(crate) provenance: Arc<crate::policy::provenance::Provenance>,
    /// Schemas a front end added ([`Session::add_schema`]): not sources.
    pub(crate) added_schemas: Arc<std::sync::RwLock<Vec<String>>>,
    /// The front end it serves (`repl`, `flight-sql`, ...), for
    /// `bluelamp.queries` and the metrics.
    pub(crate) front_end: Arc<str>,
    /// Counts the session as open in the metrics until its last clone goes.
    pub(crate) _open: Arc<crate::ops::SessionGauge>,
    /// The statement it started last, for progress reports.
    pub(crate) latest: Arc<std::sync::Mutex<Option<Arc<crate::ops::QueryRecord>>>>,
}

/// The schema metadata key carrying a result's security marking.
pub const MARKING_KEY: &str = "bluelamp.marking";

/// The schema metadata key carrying, for a result read from local copies
/// of accelerated tables, the oldest copy's time (RFC 3339, UTC).
pub const AS_OF_KEY: &str = "bluelamp.as_of";

/// `schema` with `marking` in its metadata under [`MARKING_KEY`].
fn marked(schema: SchemaRef, marking: Option<&str>) -> SchemaRef {
    match marking {
        None => schema,
        Some(marking) => {
            let mut metadata = schema.metadata().clone();
            metadata.insert(MARKING_KEY.to_string(), marking.to_string());
            Arc::new(schema.as_ref().clone().with_metadata(metadata))
        }
    }
}

/// A running statement's output as independent streams, one per partition.
/// Dropping them cancels the statement.
pub struct PartitionedOutput {
    /// Result schema, shared by every stream.
    pub schema: SchemaRef,
    /// The rows, partition by partition.
    pub streams: Vec<SendableRecordBatchStream>,
}

/// A running statement's output: a stream of record batches. Dropping it cancels
/// the statement.
pub struct QueryOutput {
    /// Result schema.
    pub schema: SchemaRef,
    /// The rows, batch by batch.
    pub stream: SendableRecordBatchStream,
}
