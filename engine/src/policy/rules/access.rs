//! The resolved read and write policy ([`ReadPolicy`]) and what it allows
//! one principal on one table ([`TableAccess`]), markings and clearance
//! included.

use std::collections::BTreeSet;

use super::{Grant, Marking, MarkingRule, Mask, RowFilter};
use crate::principal::Principal;

/// What the policy allows one principal on one table.
#[derive(Debug, Clone, Default)]
pub struct TableAccess {
    /// Some grant lets the principal read it.
    pub read: bool,
    /// Some grant lets the principal deposit into it.
    pub write: bool,
    /// Every grant that lets the principal read it needs a stated purpose.
    pub require_purpose: bool,
    /// Columns no reading grant shows.
    pub hidden: BTreeSet<String>,
    /// Masks on visible columns: column name and mask, first match in file order.
    pub masks: Vec<(String, Mask)>,
    /// Row filters, all of which a row must pass.
    pub filters: Vec<RowFilter>,
    /// Names of the grants, filters and masks that apply, for the audit trail.
    pub applied: Vec<String>,
}

impl TableAccess {
    /// Whether the principal may know the table exists.
    pub fn visible(&self) -> bool {
        self.read || self.write
    }

    /// The mask on `column`, if any.
    pub fn mask(&self, column: &str) -> Option<&Mask> {
        self.masks
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, mask)| mask)
    }
}

/// The read and write policy: grants, row filters and masks.
#[derive(Debug, Clone, Default)]
pub struct ReadPolicy {
    /// `[[policy.grant]]`, in file order.
    pub grants: Vec<Grant>,
    /// `[[policy.row_filter]]`, in file order.
    pub row_filters: Vec<RowFilter>,
    /// `[[policy.mask]]`, in file order.
    pub masks: Vec<Mask>,
    /// `[[policy.marking]]`, in file order.
    pub markings: Vec<MarkingRule>,
}

impl ReadPolicy {
    /// Whether any read policy is configured; then access is denied by default.
    pub fn is_active(&self) -> bool {
        !(self.grants.is_empty()
            && self.row_filters.is_empty()
            && self.masks.is_empty()
            && self.markings.is_empty())
    }

    /// The marking of `source.table` (its column `column`, or the table as
    /// a whole): every entry covering it joined; OFFICIAL where none does.
    pub fn marking_of(&self, source: &str, table: &str, column: Option<&str>) -> Marking {
        let mut marking = Marking::default();
        for rule in &self.markings {
            let covers = rule.tables.iter().any(|t| t.covers(source, table))
                || column.is_some_and(|column| {
                    rule.columns
                        .iter()
                        .any(|c| c.is(source, table) && c.column == column)
                });
            if covers {
                marking.join(&Marking {
                    classification: rule.classification,
                    caveats: rule.caveats.iter().cloned().collect(),
                });
            }
        }
        marking
    }

    /// Whether a principal's clearance (OFFICIAL where none is configured)
    /// reaches `marking`.
    fn cleared(principal: &Principal, marking: &Marking) -> bool {
        principal
            .clearance
            .unwrap_or(crate::principal::Clearance::Official)
            >= marking.classification
    }

    /// Whether `principal` may know that `source` exists: some grant of
    /// theirs covers one of its tables.
    pub fn sees_source(&self, principal: &Principal, source: &str) -> bool {
        self.grants
            .iter()
            .any(|g| g.who.applies_to(principal) && g.tables.iter().any(|t| t.source == source))
    }

    /// What `principal` may do with `source.table`, whose columns are `columns`.
    pub fn access(
        &self,
        principal: &Principal,
        source: &str,
        table: &str,
        columns: &[String],
    ) -> TableAccess {
        let mut access = TableAccess::default();
        let grants: Vec<&Grant> = self
            .grants
            .iter()
            .filter(|g| g.who.applies_to(principal) && g.covers(source, table))
            .collect();
        let readers: Vec<&&Grant> = grants.iter().filter(|g| g.read).collect();
        access.read = !readers.is_empty();
        access.write = grants.iter().any(|g| g.write);
        access.require_purpose = access.read && readers.iter().all(|g| g.require_purpose);
        for column in columns {
            let shown = readers.iter().any(|g| {
                !g.hide
                    .iter()
                    .any(|h| h.is(source, table) && &h.column == column)
            });
            if !shown {
                access.hidden.insert(column.clone());
            }
        }
        access.applied = grants.iter().map(|g| g.name.clone()).collect();
        if !self.markings.is_empty() {
            // Above the principal's clearance, a table is as good as absent
            // and a column hidden.
            if !Self::cleared(principal, &self.marking_of(source, table, None)) {
                return TableAccess::default();
            }
            for column in columns {
                if !Self::cleared(principal, &self.marking_of(source, table, Some(column))) {
                    access.hidden.insert(column.clone());
                }
            }
        }
        if !access.read {
            return access;
        }
        for mask in self.masks.iter().filter(|m| m.who.applies_to(principal)) {
            for column in &mask.columns {
                if column.is(source, table)
                    && !access.hidden.contains(&column.column)
                    && access.mask(&column.column).is_none()
                {
                    access.masks.push((column.column.clone(), mask.clone()));
                    if !access.applied.contains(&mask.name) {
                        access.applied.push(mask.name.clone());
                    }
                }
            }
        }
        for filter in &self.row_filters {
            if filter.who.applies_to(principal) && filter.source == source && filter.table == table
            {
                access.filters.push(filter.clone());
                access.applied.push(filter.name.clone());
            }
        }
        access
    }
}
