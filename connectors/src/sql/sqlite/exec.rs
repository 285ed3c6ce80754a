//! How a SQLite query runs: the crate's executor, with the repairs every
//! database gets. SQLite needs nothing of its own here; its differences are
//! in what it is sent (`crate::sql::functions`, `crate::sql::bytes`).

use crate::sql::exec::Remote;
use crate::sql::functions::Database;

/// SQLite: our repairs, and otherwise the crate's executor.
pub(super) struct SqliteRemote;

impl Remote for SqliteRemote {
    fn database(&self) -> Database {
        Database::Sqlite
    }
}
