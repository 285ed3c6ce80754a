//! What a Flight SQL server says it runs (`GetSqlInfo`), and so which parts
//! of a plan may be sent to it.
//!
//! Federation would send a remote server every sub-plan over its tables. A
//! Flight SQL server may be another Bluelamp or anything else (ROAPI,
//! Dremio, a database's own Flight SQL front), so only constructs the server
//! declares are sent: functions by the names in its function lists,
//! aggregates and inner joins where it declares an SQL grammar, outer joins
//! by its declared level, subqueries and unions by their bitmasks. The rest
//! runs in Bluelamp over what the server returns (see
//! `crate::sql::functions`, which splits plans by these answers). A server
//! that declares nothing is sent scans, projections, filters of plain
//! comparisons, sorts and limits only.

use std::collections::BTreeSet;

use arrow::array::{
    Array, AsArray, BooleanArray, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    UInt32Array, UnionArray,
};
use arrow_flight::sql::{SqlInfo, SqlSupportedSubqueries, SqlSupportedUnions, SupportedSqlGrammar};
use datafusion::common::JoinType;
use datafusion::logical_expr::{Expr, LogicalPlan};

/// What a server declared in `GetSqlInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// `FlightSqlServerName` and version, for messages and EXPLAIN.
    pub server: String,
    /// The character that quotes identifiers (default `"`).
    pub quote: char,
    /// Every function in its numeric, string, date-time and system lists,
    /// lower case.
    pub functions: BTreeSet<String>,
    /// It declares the ODBC minimum or core SQL grammar: aggregates,
    /// `GROUP BY` and inner joins.
    pub grammar: bool,
    /// 0: no outer joins; 1: left and right; 2: full as well.
    pub outer_joins: i32,
    /// `SqlSupportedSubqueries` bitmask.
    pub subqueries: i32,
    /// Correlated subqueries.
    pub correlated: bool,
    /// `SqlSupportedUnions` bitmask.
    pub unions: i32,
}

impl Default for Declared {
    /// A server that declares nothing.
    fn default() -> Self {
        Self {
            server: "a Flight SQL server".into(),
            quote: '"',
            functions: BTreeSet::new(),
            grammar: false,
            outer_joins: 0,
            subqueries: 0,
            correlated: false,
            unions: 0,
        }
    }
}

/// The standard aggregates, sent where the server declares a grammar.
const STANDARD_AGGREGATES: &[&str] = &["avg", "count", "max", "min", "sum"];

fn bit(mask: i32, flag: i32) -> bool {
    flag < 31 && mask & (1 << flag) != 0
}

impl Declared {
    /// Reads `GetSqlInfo`'s answer (`info_name`, `value` union columns).
    /// Entries of a shape other than the specification's are ignored, so a
    /// server that answers oddly is simply sent less.
    pub fn from_batches(batches: &[RecordBatch]) -> Self {
        let mut declared = Self::default();
        for batch in batches {
            let (Some(names), Some(values)) = (
                batch
                    .column_by_name("info_name")
                    .and_then(|c| c.as_any().downcast_ref::<UInt32Array>()),
                batch
                    .column_by_name("value")
                    .and_then(|c| c.as_any().downcast_ref::<UnionArray>()),
            ) else {
                continue;
            };
            for row in 0..batch.num_rows() {
                if names.is_null(row) {
                    continue;
                }
                declared.take(names.value(row), values, row);
            }
        }
        declared
    }

    fn take(&mut self, name: u32, values: &UnionArray, row: usize) {
        let type_id = values.type_id(row);
        let offset = values.value_offset(row);
        let child = values.child(type_id);
        let text = || {
            child
                .as_any()
                .downcast_ref::<StringArray>()
                .filter(|a| a.is_valid(offset))
                .map(|a| a.value(offset).to_string())
        };
        let boolean = || {
            child
                .as_any()
                .downcast_ref::<BooleanArray>()
                .filter(|a| a.is_valid(offset))
                .map(|a| a.value(offset))
        };
        let int = || {
            child
                .as_any()
                .downcast_ref::<Int32Array>()
                .filter(|a| a.is_valid(offset))
                .map(|a| a.value(offset))
                .or_else(|| {
                    child
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .filter(|a| a.is_valid(offset))
                        .and_then(|a| i32::try_from(a.value(offset)).ok())
                })
        };
        let list = || -> Vec<String> {
            child
                .as_any()
                .downcast_ref::<ListArray>()
                .filter(|a| a.is_valid(offset))
                .map(|a| {
                    let items = a.value(offset);
                    items
                        .as_string_opt::<i32>()
                        .map(|s| s.iter().flatten().map(str::to_lowercase).collect())
                        .unwrap_or_default()
                })
                .unwrap_or_default()
        };
        let Ok(info) = SqlInfo::try_from(name as i32) else {
            return;
        };
        match info {
            SqlInfo::FlightSqlServerName => {
                if let Some(name) = text() {
                    self.server = name;
                }
            }
            SqlInfo::FlightSqlServerVersion => {
                if let Some(version) = text() {
                    self.server = format!("{} {version}", self.server);
                }
            }
            SqlInfo::SqlIdentifierQuoteChar => {
                if let Some(q) = text().and_then(|t| {
                    let mut chars = t.chars();
                    chars.next().filter(|_| chars.next().is_none())
                }) {
                    self.quote = q;
                }
            }
            SqlInfo::SqlNumericFunctions
            | SqlInfo::SqlStringFunctions
            | SqlInfo::SqlSystemFunctions
            | SqlInfo::SqlDatetimeFunctions => self.functions.extend(list()),
            SqlInfo::SqlSupportedGrammar => {
                if let Some(mask) = int() {
                    self.grammar = bit(mask, SupportedSqlGrammar::SqlMinimumGrammar as i32)
                        || bit(mask, SupportedSqlGrammar::SqlCoreGrammar as i32);
                }
            }
            SqlInfo::SqlOuterJoinsSupportLevel => {
                if let Some(level) = int() {
                    self.outer_joins = level.clamp(0, 2);
                }
            }
            SqlInfo::SqlSupportedSubqueries => {
                if let Some(mask) = int() {
                    self.subqueries = mask;
                }
            }
            SqlInfo::SqlCorrelatedSubqueriesSupported => {
                if let Some(b) = boolean() {
                    self.correlated = b;
                }
            }
            SqlInfo::SqlSupportedUnions => {
                if let Some(mask) = int() {
                    self.unions = mask;
                }
            }
            _ => {}
        }
    }

    /// Whether the server declares the scalar function `name`.
    pub fn runs_scalar(&self, name: &str) -> bool {
        self.functions.contains(&name.to_lowercase())
    }

    /// Whether the server runs the aggregate `name`: a standard one, where
    /// it declares a grammar.
    pub fn runs_aggregate(&self, name: &str) -> bool {
        self.grammar && STANDARD_AGGREGATES.contains(&name)
    }

    fn subquery(&self, kind: SqlSupportedSubqueries) -> bool {
        bit(self.subqueries, kind as i32)
    }

    /// Whether the server declares what the expression `expr` itself is (a
    /// subquery's own nodes are checked as nodes).
    pub fn runs_expr_kind(&self, expr: &Expr) -> bool {
        match expr {
            // ILIKE and SIMILAR TO are not standard SQL.
            Expr::Like(like) => !like.case_insensitive,
            Expr::SimilarTo(_) => false,
            Expr::ScalarSubquery(s) => {
                self.subquery(SqlSupportedSubqueries::SqlSubqueriesInComparisons)
                    && (self.correlated || s.outer_ref_columns.is_empty())
            }
            Expr::Exists(e) => {
                self.subquery(SqlSupportedSubqueries::SqlSubqueriesInExists)
                    && (self.correlated || e.subquery.outer_ref_columns.is_empty())
            }
            Expr::InSubquery(i) => {
                self.subquery(SqlSupportedSubqueries::SqlSubqueriesInIns)
                    && (self.correlated || i.subquery.outer_ref_columns.is_empty())
            }
            Expr::OuterReferenceColumn(..) => self.correlated,
            Expr::WindowFunction(_) => false,
            _ => true,
        }
    }

    /// Whether the server declares what the node `plan` itself is.
    pub fn runs_node_kind(&self, plan: &LogicalPlan) -> bool {
        match plan {
            LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) => self.grammar,
            LogicalPlan::Join(join) => match join.join_type {
                JoinType::Inner => self.grammar,
                JoinType::Left | JoinType::Right => self.grammar && self.outer_joins >= 1,
                JoinType::Full => self.grammar && self.outer_joins >= 2,
                // Written as EXISTS / NOT EXISTS / IN subqueries.
                JoinType::LeftSemi
                | JoinType::LeftAnti
                | JoinType::RightSemi
                | JoinType::RightAnti => {
                    self.grammar
                        && self.subquery(SqlSupportedSubqueries::SqlSubqueriesInExists)
                        && self.correlated
                }
                JoinType::LeftMark | JoinType::RightMark => false,
            },
            LogicalPlan::Union(_) => bit(self.unions, SqlSupportedUnions::SqlUnionAll as i32),
            LogicalPlan::Window(_) => false,
            LogicalPlan::Subquery(_) | LogicalPlan::SubqueryAlias(_) => true,
            _ => true,
        }
    }

    /// One line for EXPLAIN and `bluelamp check`: what is sent.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        parts.push(format!("{} functions", self.functions.len()));
        if self.grammar {
            parts.push("aggregates and inner joins".into());
        }
        match self.outer_joins {
            1 => parts.push("left and right joins".into()),
            2 => parts.push("outer joins".into()),
            _ => {}
        }
        if self.subqueries != 0 {
            parts.push("subqueries".into());
        }
        if bit(self.unions, SqlSupportedUnions::SqlUnionAll as i32) {
            parts.push("UNION ALL".into());
        }
        format!("{} declares {}", self.server, parts.join(", "))
    }
}
