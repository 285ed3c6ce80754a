//! Security markings: `[[policy.marking]]` as written and resolved, and the
//! marking of some data (its highest classification and every caveat).

use serde::Deserialize;

use super::{ColumnRef, Located, TablePattern};

/// A `[[policy.marking]]` entry as written: a security classification and
/// handling caveats for sources, tables or columns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkingConfig {
    /// `source.table` or `source.*`.
    #[serde(default)]
    pub tables: Vec<String>,
    /// `source.table.column`.
    #[serde(default)]
    pub columns: Vec<String>,
    /// OFFICIAL, OFFICIAL-SENSITIVE or SECRET.
    pub classification: crate::principal::Clearance,
    /// Handling caveats or descriptors, e.g. `PERSONAL`.
    #[serde(default)]
    pub caveats: Vec<String>,
}

/// A resolved marking entry.
#[derive(Debug, Clone)]
pub struct MarkingRule {
    /// Tables it marks (every column of them).
    pub tables: Vec<TablePattern>,
    /// Columns it marks.
    pub columns: Vec<ColumnRef>,
    /// The classification.
    pub classification: crate::principal::Clearance,
    /// Caveats, upper case.
    pub caveats: Vec<String>,
    /// Where it was written.
    pub at: Located,
}

impl MarkingRule {
    /// Resolves a marking entry.
    ///
    /// # Errors
    /// The field at fault and why.
    pub fn resolve(raw: MarkingConfig, at: Located) -> Result<Self, (String, String)> {
        if raw.tables.is_empty() && raw.columns.is_empty() {
            return Err((
                "tables".into(),
                "the marking covers nothing: list `tables` and/or `columns`".into(),
            ));
        }
        let tables = raw
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| TablePattern::parse(t).map_err(|m| (format!("tables[{i}]"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        let columns = raw
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| ColumnRef::parse(c).map_err(|m| (format!("columns[{i}]"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut caveats = Vec::new();
        for (i, caveat) in raw.caveats.iter().enumerate() {
            let caveat = caveat.trim().to_ascii_uppercase();
            if caveat.is_empty() || caveat.contains(['[', ']']) {
                return Err((
                    format!("caveats[{i}]"),
                    "a caveat is a non-empty name without brackets, e.g. PERSONAL".into(),
                ));
            }
            caveats.push(caveat);
        }
        Ok(Self {
            tables,
            columns,
            classification: raw.classification,
            caveats,
            at,
        })
    }
}

/// The marking of some data: the highest classification and every caveat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marking {
    /// The classification.
    pub classification: crate::principal::Clearance,
    /// Caveats, sorted.
    pub caveats: std::collections::BTreeSet<String>,
}

impl Default for Marking {
    fn default() -> Self {
        Self {
            classification: crate::principal::Clearance::Official,
            caveats: std::collections::BTreeSet::new(),
        }
    }
}

impl Marking {
    /// Raises this marking to cover `other` too.
    pub fn join(&mut self, other: &Marking) {
        self.classification = self.classification.max(other.classification);
        self.caveats.extend(other.caveats.iter().cloned());
    }

    /// Whether the data may go where a marking cannot follow it (plain
    /// OFFICIAL, no caveats).
    pub fn is_baseline(&self) -> bool {
        self.classification == crate::principal::Clearance::Official && self.caveats.is_empty()
    }
}

impl std::fmt::Display for Marking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.classification)?;
        for caveat in &self.caveats {
            write!(f, " [{caveat}]")?;
        }
        Ok(())
    }
}
