//! Repairs to the SQL that `datafusion-federation` unparses before a database
//! sees it. DataFusion's scalar-subquery decorrelation produces two shapes
//! PostgreSQL rejects or misreads (TPC-H Q2 meets both):
//!
//! - `GROUP BY key, true`: a constant grouping key (`__always_true`).
//!   PostgreSQL refuses non-integer constants in GROUP BY. Grouping by a
//!   constant beside another key changes nothing, so it is dropped.
//! - an unaliased aggregate in a derived table (`SELECT min(x) ...`) that
//!   the outer query references by DataFusion's column name
//!   (`"sq"."min(t.x)"`); the database names the column `min`. Such items are
//!   given DataFusion's name as an alias.
//! - an outer query over one derived table (`... FROM (...) AS
//!   "derived_projection" ORDER BY "o"."part"`) that still qualifies columns
//!   with the inner tables' names, which are not in scope there; they are
//!   requalified with the derived table's alias.
//! - a table read under an alias (`FROM "public"."nation" AS "n1"`) whose
//!   pushed-down filter still names the table (`WHERE "nation"."n_name" =
//!   ...`); PostgreSQL refuses the name once the alias hides it. Such
//!   qualifiers are pointed at the alias, where exactly one alias of that
//!   table is in scope.
//! - a derived table whose aggregate is named without qualifiers
//!   (`min("ps_supplycost")`) while the query around it asks for
//!   `"sq"."min(partsupp.ps_supplycost)"`: the item takes the name asked for.
//!
//! Two shapes have to be mended in the plan, before unparsing
//! ([`prepare_plan`]). A table under two aliases (a view `nation` read as
//! `n1`) is rendered under the inner one, so the outer is kept alone. And
//! the unparser renders a semi or anti join as `EXISTS
//! (SELECT 1 FROM table AS alias WHERE ...)` and, where the subquery side is
//! a bare table scan, drops both the scan's own filters and the subquery's
//! alias. Giving that side an explicit projection makes it a derived table,
//! which is rendered whole. The same rendering turns `x NOT IN (SELECT y
//! ...)` (a null-aware anti join) into `NOT EXISTS (... WHERE x = y)`, which
//! keeps rows NOT IN drops when `x` or some `y` is NULL; the join is first
//! given the condition NOT IN means: `x = y OR x IS NULL OR y IS NULL`.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::{Arc, LazyLock};

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    ExprSchemable, Extension, Filter, JoinType, LogicalPlan, Projection, SortExpr, SubqueryAlias,
    TableScanBuilder,
};
use datafusion_federation::FederatedPlanNode;
use datafusion_federation::sql::{AstAnalyzer, LogicalOptimizer};
use regex::Regex;

use super::bytes::{compare_as_bytes, unmark};
use super::functions::{Database, keep_local};

use datafusion::sql::sqlparser::ast::{
    Expr, GroupByExpr, Ident, JoinConstraint, JoinOperator, OrderBy, OrderByKind, Query, Select,
    SelectItem, SetExpr, Statement, TableAlias, TableFactor, Value, VisitMut, VisitorMut,
};

struct Repair;

impl VisitorMut for Repair {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        repair_set_expr(&mut query.body);
        requalify(query);
        unhide_aliased_tables(&mut query.body);
        ControlFlow::Continue(())
    }

    /// After the derived tables inside have had their items named.
    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            name_derived_columns_as_asked(select);
        }
        ControlFlow::Continue(())
    }
}

/// Points `inner_table.column` at the one derived table a query reads, where
/// DataFusion's unparser made that table. The unparser renders a node above a
/// finished SELECT list (a projection over a `LIMIT` or a sort, say) by
/// wrapping what is below in a derived table (`derived_limit`, ...; unnamed
/// where the dialect allows it, as SQLite's does) but leaves the outer
/// expressions naming the tables inside, which are out of scope there:
/// `SELECT "recs"."station" FROM (SELECT ... FROM "recs" LIMIT 2) AS
/// "derived_limit"`. Such names are pointed at the derived table, which is
/// given a name if it has none. Names of tables that are not inside it (an
/// outer query's, in a correlated subquery) are left alone.
fn requalify(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let [from] = select.from.as_mut_slice() else {
        return;
    };
    if !from.joins.is_empty() {
        return;
    }
    let TableFactor::Derived {
        subquery, alias, ..
    } = &mut from.relation
    else {
        return;
    };
    let inside = relation_names(subquery);
    if inside.is_empty() {
        return;
    }
    let name = match alias {
        Some(alias) if alias.name.value.starts_with(UNPARSER_DERIVED) => alias.name.clone(),
        // A name from the query itself: references to it are the query's own.
        Some(_) => return,
        None => {
            let name = Ident::new(UNNAMED_DERIVED);
            *alias = Some(TableAlias {
                explicit: true,
                name: name.clone(),
                columns: Vec::new(),
                at: None,
            });
            name
        }
    };
    let renames: HashMap<String, Ident> = inside
        .into_iter()
        .filter(|inner| *inner != name.value)
        .map(|inner| (inner, name.clone()))
        .collect();
    let mut fix = Unhide {
        renames: &renames,
        depth: 0,
    };
    rename_in_select(select, &mut fix);
    if let Some(OrderBy {
        kind: OrderByKind::Expressions(items),
        ..
    }) = &mut query.order_by
    {
        for item in items {
            let _ = item.expr.visit(&mut fix);
        }
    }
}

/// The prefix of the names DataFusion's unparser gives the derived tables it
/// makes (`derived_projection`, `derived_limit`, `derived_sort`, ...).
const UNPARSER_DERIVED: &str = "derived_";

/// The name given to a derived table the unparser left unnamed.
const UNNAMED_DERIVED: &str = "derived_table";

/// The names of the tables a query reads, at any depth of its FROM clauses
/// (derived tables and set operations included, subqueries in expressions
/// not): each table's alias or its own last name part, and each derived
/// table's alias. None of them is in scope for a query that reads this one
/// as a derived table.
fn relation_names(query: &Query) -> HashSet<String> {
    fn walk(body: &SetExpr, names: &mut HashSet<String>) {
        match body {
            SetExpr::Select(select) => {
                let relations = select.from.iter().flat_map(|t| {
                    std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation))
                });
                for relation in relations {
                    match relation {
                        TableFactor::Table { name, alias, .. } => {
                            let own = alias
                                .as_ref()
                                .map(|a| &a.name)
                                .or_else(|| name.0.last().and_then(|p| p.as_ident()));
                            names.extend(own.map(|i| i.value.clone()));
                        }
                        TableFactor::Derived {
                            subquery, alias, ..
                        } => {
                            names.extend(alias.as_ref().map(|a| a.name.value.clone()));
                            walk(&subquery.body, names);
                        }
                        _ => {}
                    }
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                walk(left, names);
                walk(right, names);
            }
            SetExpr::Query(query) => walk(&query.body, names),
            _ => {}
        }
    }
    let mut names = HashSet::new();
    walk(&query.body, &mut names);
    names
}

/// Points `table.column` at `alias.column` in a SELECT that reads `table AS
/// alias` and has nothing else called `table` in scope. Subqueries are left to
/// their own visit: their scope differs.
fn unhide_aliased_tables(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => unhide_in_select(select),
        SetExpr::SetOperation { left, right, .. } => {
            unhide_aliased_tables(left);
            unhide_aliased_tables(right);
        }
        _ => {}
    }
}

fn unhide_in_select(select: &mut Select) {
    // Names in scope, and each aliased table's name -> its aliases.
    let mut visible = HashSet::new();
    let mut aliases: HashMap<String, Vec<Ident>> = HashMap::new();
    let relations = select
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    for relation in relations {
        match relation {
            TableFactor::Table { name, alias, .. } => {
                let Some(base) = name.0.last().and_then(|p| p.as_ident()) else {
                    continue;
                };
                match alias {
                    Some(alias) => {
                        visible.insert(alias.name.value.clone());
                        aliases
                            .entry(base.value.clone())
                            .or_default()
                            .push(alias.name.clone());
                    }
                    None => {
                        visible.insert(base.value.clone());
                    }
                }
            }
            TableFactor::Derived {
                alias: Some(alias), ..
            } => {
                visible.insert(alias.name.value.clone());
            }
            _ => {}
        }
    }
    let renames: HashMap<String, Ident> = aliases
        .into_iter()
        .filter(|(base, list)| list.len() == 1 && !visible.contains(base))
        .filter_map(|(base, mut list)| list.pop().map(|alias| (base, alias)))
        .collect();
    if renames.is_empty() {
        return;
    }
    let mut fix = Unhide {
        renames: &renames,
        depth: 0,
    };
    rename_in_select(select, &mut fix);
}

/// Applies `fix` to every expression of `select` that names its tables: the
/// items, WHERE, HAVING, GROUP BY and the joins' ON conditions.
fn rename_in_select(select: &mut Select, fix: &mut Unhide<'_>) {
    for item in &mut select.projection {
        match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                let _ = expr.visit(fix);
            }
            _ => {}
        }
    }
    if let Some(selection) = &mut select.selection {
        let _ = selection.visit(fix);
    }
    if let Some(having) = &mut select.having {
        let _ = having.visit(fix);
    }
    if let GroupByExpr::Expressions(keys, _) = &mut select.group_by {
        for key in keys {
            let _ = key.visit(fix);
        }
    }
    for table in &mut select.from {
        for join in &mut table.joins {
            if let Some(JoinConstraint::On(on)) = join_constraint(&mut join.join_operator) {
                let _ = on.visit(fix);
            }
        }
    }
}

fn join_constraint(operator: &mut JoinOperator) -> Option<&mut JoinConstraint> {
    match operator {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::LeftSemi(c)
        | JoinOperator::RightSemi(c)
        | JoinOperator::LeftAnti(c)
        | JoinOperator::RightAnti(c)
        | JoinOperator::Semi(c)
        | JoinOperator::Anti(c) => Some(c),
        _ => None,
    }
}

/// Requalifies two-part column references outside nested queries.
struct Unhide<'a> {
    renames: &'a HashMap<String, Ident>,
    depth: usize,
}

impl VisitorMut for Unhide<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if self.depth == 0
            && let Expr::CompoundIdentifier(parts) = expr
            && parts.len() == 2
            && let Some(alias) = self.renames.get(&parts[0].value)
        {
            parts[0] = alias.clone();
        }
        ControlFlow::Continue(())
    }
}

/// `min(partsupp.ps_supplycost)` -> `min(ps_supplycost)`.
fn without_qualifiers(name: &str) -> String {
    static QUALIFIER: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"[A-Za-z_][A-Za-z0-9_]*\.").ok());
    match QUALIFIER.as_ref() {
        Some(re) => re.replace_all(name, "").into_owned(),
        None => name.to_string(),
    }
}

/// Renames a derived table's item to the name the enclosing SELECT uses for
/// it, where the two differ only by qualifiers inside the name.
fn name_derived_columns_as_asked(select: &mut Select) {
    // Names the enclosing SELECT asks of each derived table.
    let mut asked: HashMap<String, HashSet<String>> = HashMap::new();
    let mut collect = |expr: &Expr| {
        let _ = datafusion::sql::sqlparser::ast::visit_expressions(expr, |e| {
            if let Expr::CompoundIdentifier(parts) = e
                && parts.len() == 2
            {
                asked
                    .entry(parts[0].value.clone())
                    .or_default()
                    .insert(parts[1].value.clone());
            }
            ControlFlow::<()>::Continue(())
        });
    };
    for item in &select.projection {
        if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item {
            collect(expr);
        }
    }
    if let Some(selection) = &select.selection {
        collect(selection);
    }
    for table in &mut select.from {
        for join in &mut table.joins {
            if let Some(JoinConstraint::On(on)) = join_constraint(&mut join.join_operator) {
                collect(on);
            }
        }
    }
    let relations = select.from.iter_mut().flat_map(|t| {
        std::iter::once(&mut t.relation).chain(t.joins.iter_mut().map(|j| &mut j.relation))
    });
    for relation in relations {
        let TableFactor::Derived {
            subquery,
            alias: Some(alias),
            ..
        } = relation
        else {
            continue;
        };
        let Some(names) = asked.get(&alias.name.value) else {
            continue;
        };
        let SetExpr::Select(inner) = subquery.body.as_mut() else {
            continue;
        };
        let offered: HashSet<String> = inner
            .projection
            .iter()
            .filter_map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                _ => None,
            })
            .collect();
        for name in names.iter().filter(|n| !offered.contains(*n)) {
            let wanted = without_qualifiers(name);
            let mut matches = inner.projection.iter_mut().filter_map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. }
                    if without_qualifiers(&alias.value) == wanted =>
                {
                    Some(alias)
                }
                _ => None,
            });
            if let (Some(alias), None) = (matches.next(), matches.next()) {
                *alias = Ident::with_quote('"', name.clone());
            }
        }
    }
}

/// A source's plan hook: the crate's own (if any), then what `database`
/// cannot run taken out (see [`super::functions`]), then [`prepare_plan`] on
/// each federated part.
pub fn plan_hook(
    mut inner: Option<LogicalOptimizer>,
    database: Database,
) -> Option<LogicalOptimizer> {
    Some(Box::new(move |plan| {
        let plan = match inner.as_mut() {
            Some(optimize) => optimize(plan)?,
            None => plan,
        };
        keep_local(plan, database.clone(), |part| {
            let part = prepare_plan(part)?;
            let part = match &database {
                Database::MySql => order_nulls_as_datafusion(part)?,
                Database::Postgres | Database::Sqlite | Database::FlightSql(_) => part,
            };
            compare_as_bytes(part, &database)
        })
    }))
}

/// Whether MySQL, sorting by `key` its own way (NULLs first going up, last
/// going down), would place NULLs elsewhere than `key` asks.
pub fn mysql_places_nulls_otherwise(key: &SortExpr) -> bool {
    key.nulls_first != key.asc
}

/// MySQL and MariaDB sort NULLs first going up and last going down, and
/// have no `NULLS FIRST`/`NULLS LAST` to say otherwise, so the unparser
/// leaves it out; DataFusion's default is the opposite. Each sort key of a
/// federated sub-plan whose NULLs MySQL would place otherwise (and that can
/// be NULL) gets `key IS NULL` before it, ascending for NULLs last and
/// descending for NULLs first: `ORDER BY station LIMIT 1` then returns the
/// first name, not a NULL. (Window functions' own orderings are kept out of
/// MySQL instead; see [`super::functions`].)
pub fn order_nulls_as_datafusion(plan: LogicalPlan) -> DFResult<LogicalPlan> {
    transform_federated(plan, |node| {
        let LogicalPlan::Sort(mut sort) = node else {
            return Ok(Transformed::no(node));
        };
        let schema = Arc::clone(sort.input.schema());
        let mut keys = Vec::with_capacity(sort.expr.len());
        let mut changed = false;
        for key in sort.expr {
            if mysql_places_nulls_otherwise(&key) && key.expr.nullable(&schema)? {
                keys.push(SortExpr::new(
                    key.expr.clone().is_null(),
                    !key.nulls_first,
                    false,
                ));
                changed = true;
            }
            keys.push(key);
        }
        sort.expr = keys;
        Ok(Transformed::new_transformed(
            LogicalPlan::Sort(sort),
            changed,
        ))
    })
}

/// A source's SQL hook: the crate's own (if any), then [`repair`], then each
/// byte-comparison mark written in `database`'s terms (see
/// [`super::bytes`]), then what only MySQL needs (a select list is never
/// empty), then `finish` (a source's own last step).
pub fn sql_hook(
    mut inner: Option<AstAnalyzer>,
    database: Database,
    mut finish: impl FnMut(&mut Statement) + 'static,
) -> Option<AstAnalyzer> {
    Some(Box::new(move |statement| {
        let statement = match inner.as_mut() {
            Some(analyze) => analyze(statement)?,
            None => statement,
        };
        let mut statement = repair(statement);
        unmark(&mut statement, &database);
        if database == Database::MySql {
            // MySQL has no empty select list (`SELECT FROM t`, which the
            // unparser writes for a derived table whose columns go unused).
            fill_empty_select_lists(&mut statement);
        }
        finish(&mut statement);
        Ok(statement)
    }))
}

/// Rewrites a federated sub-plan into shapes the SQL unparser renders
/// correctly (see the module notes); applied before the plan is unparsed.
/// The federated sub-plan node `plan` is, as a source's plan hook gets it.
pub fn federated(plan: &LogicalPlan) -> Option<&FederatedPlanNode> {
    let LogicalPlan::Extension(Extension { node }) = plan else {
        return None;
    };
    node.as_any().downcast_ref::<FederatedPlanNode>()
}

/// Applies `rewrite` bottom-up to every node of a federated sub-plan (`plan`
/// as a source's plan hook gets it: an extension node holding the sub-plan),
/// keeping the node's planner. Any other plan is returned as it is.
pub fn transform_federated(
    plan: LogicalPlan,
    rewrite: impl FnMut(LogicalPlan) -> DFResult<Transformed<LogicalPlan>>,
) -> DFResult<LogicalPlan> {
    let Some(federated) = federated(&plan) else {
        return Ok(plan);
    };
    let inner = federated.plan().clone().transform_up(rewrite)?;
    if !inner.transformed {
        return Ok(plan);
    }
    let planner = Arc::clone(&federated.planner);
    Ok(LogicalPlan::Extension(Extension {
        node: Arc::new(FederatedPlanNode::new(inner.data, planner)),
    }))
}

pub fn prepare_plan(plan: LogicalPlan) -> DFResult<LogicalPlan> {
    transform_federated(plan, |node| {
        let mut join = match node {
            LogicalPlan::Join(join) => join,
            LogicalPlan::SubqueryAlias(outer) => return collapse_aliases(outer),
            other => return Ok(Transformed::no(other)),
        };
        if join.null_aware {
            join = not_in_as_exists(join);
        }
        match join.join_type {
            JoinType::LeftSemi | JoinType::LeftAnti => {
                join.right = Arc::new(project_scans(Arc::unwrap_or_clone(join.right))?);
            }
            JoinType::RightSemi | JoinType::RightAnti => {
                join.left = Arc::new(project_scans(Arc::unwrap_or_clone(join.left))?);
            }
            _ => return Ok(Transformed::no(LogicalPlan::Join(join))),
        }
        Ok(Transformed::yes(LogicalPlan::Join(join)))
    })
}

/// `SubqueryAlias(a, SubqueryAlias(b, x))` as `SubqueryAlias(a, x)`: the
/// outer alias renames every column, so the inner one changes nothing; but
/// the unparser renders a table under two aliases with the inner one only
/// (`FROM nation AS nation` for a view `nation` read as `n1`), leaving the
/// query's `n1.…` references without a table.
fn collapse_aliases(outer: SubqueryAlias) -> DFResult<Transformed<LogicalPlan>> {
    let LogicalPlan::SubqueryAlias(inner) = outer.input.as_ref() else {
        return Ok(Transformed::no(LogicalPlan::SubqueryAlias(outer)));
    };
    Ok(Transformed::yes(LogicalPlan::SubqueryAlias(
        SubqueryAlias::try_new(Arc::clone(&inner.input), outer.alias)?,
    )))
}

/// A null-aware anti join on `x = y` (from `x NOT IN (SELECT y ...)`) as a
/// plain anti join whose condition holds wherever `x = y` is true or unknown:
/// NOT IN keeps a row only if `x <> y` is true for every `y`.
fn not_in_as_exists(mut join: datafusion::logical_expr::Join) -> datafusion::logical_expr::Join {
    let [(left, right)] = join.on.as_slice() else {
        return join;
    };
    let maybe_equal = left
        .clone()
        .eq(right.clone())
        .or(left.clone().is_null())
        .or(right.clone().is_null());
    join.filter = Some(match join.filter.take() {
        Some(filter) => filter.and(maybe_equal),
        None => maybe_equal,
    });
    join.on.clear();
    join.null_aware = false;
    join
}

/// The subquery side of a semi or anti join, made into a shape the unparser
/// renders whole: each table scan (under aliases and at most one projection)
/// gets its pushed-down filters as an explicit `Filter` and a projection
/// above, so it becomes a derived table `(SELECT ... FROM t WHERE ...)`.
/// (Left as scan filters, they are dropped or land in the outer query.)
fn project_scans(plan: LogicalPlan) -> DFResult<LogicalPlan> {
    match plan {
        LogicalPlan::SubqueryAlias(alias) => {
            let input = project_scans(Arc::unwrap_or_clone(alias.input))?;
            Ok(LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
                Arc::new(input),
                alias.alias,
            )?))
        }
        LogicalPlan::Projection(projection) => match projection.input.as_ref() {
            LogicalPlan::TableScan(_) => {
                let input = explicit_filters(Arc::unwrap_or_clone(projection.input))?;
                Ok(LogicalPlan::Projection(Projection::try_new(
                    projection.expr,
                    Arc::new(input),
                )?))
            }
            _ => Ok(LogicalPlan::Projection(projection)),
        },
        scan @ LogicalPlan::TableScan(_) => {
            let input = explicit_filters(scan)?;
            let schema = Arc::clone(input.schema());
            Ok(LogicalPlan::Projection(Projection::new_from_schema(
                Arc::new(input),
                schema,
            )))
        }
        other => Ok(other),
    }
}

/// A scan with pushed-down filters as `Filter(scan without them)`; the scan
/// also reads the columns the filters use.
fn explicit_filters(plan: LogicalPlan) -> DFResult<LogicalPlan> {
    let LogicalPlan::TableScan(scan) = plan else {
        return Ok(plan);
    };
    // A fetch counts rows after the filters: moving them above would change
    // the rows fetched; such scans stay as they are.
    let Some(predicate) =
        conjunction(scan.filters.iter().cloned()).filter(|_| scan.fetch.is_none())
    else {
        return Ok(LogicalPlan::TableScan(scan));
    };
    let projection = match &scan.projection {
        Some(indices) => {
            let mut indices = indices.clone();
            let source_schema = scan.source.schema();
            for column in predicate.column_refs() {
                if let Ok(index) = source_schema.index_of(&column.name)
                    && !indices.contains(&index)
                {
                    indices.push(index);
                }
            }
            Some(indices)
        }
        None => None,
    };
    let bare = TableScanBuilder::new(scan.table_name.clone(), Arc::clone(&scan.source))
        .with_projection(projection)
        .build()?;
    Ok(LogicalPlan::Filter(Filter::try_new(
        predicate,
        Arc::new(LogicalPlan::TableScan(bare)),
    )?))
}

fn repair_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            if let GroupByExpr::Expressions(keys, _) = &mut select.group_by {
                let constant = |e: &Expr| matches!(e, Expr::Value(v) if !matches!(v.value, Value::Placeholder(_)));
                if keys.iter().any(|k| !constant(k)) {
                    keys.retain(|k| !constant(k));
                }
            }
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr @ Expr::Function(_)) = item {
                    let name = expr.to_string().replace('"', "");
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias: Ident::with_quote('"', name),
                    };
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            repair_set_expr(left);
            repair_set_expr(right);
        }
        SetExpr::Query(query) => repair_set_expr(&mut query.body),
        _ => {}
    }
}

/// Gives every empty select list (`SELECT FROM t`, valid in PostgreSQL, a
/// syntax error in MySQL) the constant `1`.
pub fn fill_empty_select_lists(statement: &mut Statement) {
    struct Fill;
    impl VisitorMut for Fill {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_mut()
                && select.projection.is_empty()
            {
                select
                    .projection
                    .push(SelectItem::UnnamedExpr(Expr::value(Value::Number(
                        "1".into(),
                        false,
                    ))));
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Fill);
}

/// Applies the repairs to one statement.
pub fn repair(mut statement: Statement) -> Statement {
    let _ = statement.visit(&mut Repair);
    statement
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn fixed(sql: &str) -> String {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        repair(statement).to_string()
    }

    #[test]
    fn constant_group_keys_and_unnamed_aggregates() {
        assert_eq!(
            fixed(
                r#"SELECT * FROM t JOIN (SELECT min("s"."c"), "s"."k", true AS "__always_true" FROM s GROUP BY "s"."k", true) AS "q" ON t.k = "q"."k""#
            ),
            r#"SELECT * FROM t JOIN (SELECT min("s"."c") AS "min(s.c)", "s"."k", true AS "__always_true" FROM s GROUP BY "s"."k") AS "q" ON t.k = "q"."k""#
        );
        // A constant that is the only key is left alone (dropping it would
        // turn an empty result into one row).
        assert_eq!(
            fixed("SELECT count(x) FROM t GROUP BY true"),
            r#"SELECT count(x) AS "count(x)" FROM t GROUP BY true"#
        );
    }

    #[test]
    fn empty_select_lists_select_a_constant() {
        let mut statement = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT count(1) FROM (SELECT FROM t WHERE a = 1) AS d",
        )
        .unwrap()
        .remove(0);
        fill_empty_select_lists(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT count(1) FROM (SELECT 1 FROM t WHERE a = 1) AS d"
        );
    }

    #[test]
    fn derived_items_take_the_qualified_name_asked_for() {
        assert_eq!(
            fixed(
                r#"SELECT 1 FROM p JOIN (SELECT min("c") AS "min(c)", "k" FROM (SELECT ps.c, ps.k FROM ps) AS "derived_projection" GROUP BY "k") AS "sq" ON p.k = "sq"."k" AND p.c = "sq"."min(ps.c)""#
            ),
            r#"SELECT 1 FROM p JOIN (SELECT min("c") AS "min(ps.c)", "k" FROM (SELECT ps.c, ps.k FROM ps) AS "derived_projection" GROUP BY "k") AS "sq" ON p.k = "sq"."k" AND p.c = "sq"."min(ps.c)""#
        );
    }

    #[test]
    fn outer_names_over_an_unparser_derived_table_point_at_it() {
        // PostgreSQL and MySQL: the unparser names the derived table.
        assert_eq!(
            fixed(
                r#"SELECT "recs"."station" FROM (SELECT "recs"."station", "recs"."seq" FROM "public"."recs" ORDER BY "recs"."seq" DESC LIMIT 2) AS "derived_limit""#
            ),
            r#"SELECT "derived_limit"."station" FROM (SELECT "recs"."station", "recs"."seq" FROM "public"."recs" ORDER BY "recs"."seq" DESC LIMIT 2) AS "derived_limit""#
        );
        // SQLite: unnamed, so it is given a name; WHERE, ORDER BY and an
        // aliased table inside a nested derived table are covered too.
        assert_eq!(
            fixed(
                r#"SELECT upper("r"."s") AS "u" FROM (SELECT "r"."s", "r"."n" FROM (SELECT * FROM recs AS "r" LIMIT 9) AS "derived_sort" ORDER BY "r"."n" LIMIT 2) WHERE "r"."n" > 1 ORDER BY "r"."s""#
            ),
            r#"SELECT upper(derived_table."s") AS "u" FROM (SELECT "derived_sort"."s", "derived_sort"."n" FROM (SELECT * FROM recs AS "r" LIMIT 9) AS "derived_sort" ORDER BY "derived_sort"."n" LIMIT 2) AS derived_table WHERE derived_table."n" > 1 ORDER BY derived_table."s""#
        );
        // A derived table the query named itself: its references are its own.
        let named = r#"SELECT "q"."s" FROM (SELECT "r"."s" FROM recs AS "r" LIMIT 2) AS "q""#;
        assert_eq!(fixed(named), named);
        // An outer query's table, referenced from inside a subquery, stays.
        let correlated = r#"SELECT 1 FROM o WHERE EXISTS (SELECT 1 FROM (SELECT recs.k FROM recs LIMIT 2) AS "derived_limit" WHERE "derived_limit"."k" = o.k AND recs.k > 0)"#;
        assert_eq!(
            fixed(correlated),
            r#"SELECT 1 FROM o WHERE EXISTS (SELECT 1 FROM (SELECT recs.k FROM recs LIMIT 2) AS "derived_limit" WHERE "derived_limit"."k" = o.k AND "derived_limit".k > 0)"#
        );
    }

    #[test]
    fn filters_on_an_aliased_table_name_the_alias() {
        assert_eq!(
            fixed(
                r#"SELECT "n1"."n_name" FROM "public"."nation" AS "n1" WHERE "nation"."n_name" = 'FRANCE' OR "nation"."n_name" = 'GERMANY'"#
            ),
            r#"SELECT "n1"."n_name" FROM "public"."nation" AS "n1" WHERE "n1"."n_name" = 'FRANCE' OR "n1"."n_name" = 'GERMANY'"#
        );
        // Two aliases of one table: which one is meant is unknown; unchanged.
        let ambiguous = r#"SELECT * FROM nation AS a JOIN nation AS b ON "nation"."k" = b.k"#;
        assert_eq!(fixed(ambiguous), ambiguous);
        // The table's own name still in scope: unchanged.
        let visible = r#"SELECT * FROM nation JOIN nation AS b ON "nation"."k" = b.k"#;
        assert_eq!(fixed(visible), visible);
        // A subquery's own `nation` is not the outer alias.
        assert_eq!(
            fixed(
                r#"SELECT 1 FROM nation AS n1 WHERE nation.k = 1 AND EXISTS (SELECT 1 FROM nation WHERE nation.k = 2)"#
            ),
            r#"SELECT 1 FROM nation AS n1 WHERE n1.k = 1 AND EXISTS (SELECT 1 FROM nation WHERE nation.k = 2)"#
        );
    }
}
