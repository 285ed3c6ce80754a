//! Where a session's own tables and views came from.
//!
//! A table made with `CREATE TABLE ... AS`, or filled with `INSERT INTO t
//! SELECT ...`, in the session's scratch schema holds data read from the
//! sources under policy. Reading it later must carry what reading the
//! sources carried: their marking, their place in the audit trail, and a
//! grant's required purpose. Each session remembers, per scratch table or
//! view, the sources, tables and columns its statements read (through
//! earlier scratch tables too); a statement naming the scratch table is
//! treated as reading those, so the session's checks on what a statement
//! reads (marking, required purpose, audit) see them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use datafusion::common::TableReference;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};

use crate::audit::trail::Touched;

/// A session's record of its scratch tables' origins.
#[derive(Debug, Default)]
pub struct Provenance {
    /// Per scratch table: the sources, tables and columns read to make it.
    by_table: Mutex<HashMap<String, Touched>>,
}

fn union(a: &Touched, b: &Touched) -> Touched {
    let merge = |x: &Vec<String>, y: &Vec<String>| -> Vec<String> {
        x.iter()
            .chain(y)
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    (merge(&a.0, &b.0), merge(&a.1, &b.1), merge(&a.2, &b.2))
}

impl Provenance {
    /// `touched` with the origins of the scratch tables it names added.
    pub fn expand(&self, touched: &Touched) -> Touched {
        let Ok(by_table) = self.by_table.lock() else {
            return touched.clone();
        };
        let mut out = touched.clone();
        for table in &touched.1 {
            if let Some(origin) = by_table.get(table) {
                out = union(&out, origin);
            }
        }
        out
    }

    /// Remembers `origin` for the scratch table or view `plan` creates or
    /// inserts into, if it does.
    pub fn record(&self, plan: &LogicalPlan, scratch: &str, origin: &Touched) {
        let name: Option<&TableReference> = match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => Some(&create.name),
            LogicalPlan::Ddl(DdlStatement::CreateView(create)) => Some(&create.name),
            LogicalPlan::Dml(dml) => Some(&dml.table_name),
            _ => None,
        };
        let Some(name) = name else {
            return;
        };
        if name.schema().unwrap_or(scratch) != scratch {
            return;
        }
        let key = format!("{scratch}.{}", name.table());
        if let Ok(mut by_table) = self.by_table.lock() {
            let entry = by_table.entry(key).or_default();
            *entry = union(entry, origin);
        }
    }
}
