//! PostgreSQL spellings DataFusion does not plan, rewritten in the syntax
//! tree before a statement is planned (the rewritten statement is checked
//! and audited like any other):
//!
//! - `a OPERATOR(pg_catalog.~) b` → `a ~ b` (psql writes every operator so);
//! - `x COLLATE pg_catalog.default` → `x` (Bluelamp compares by code point);
//! - `pg_catalog.f(...)` → `f(...)`, and an unqualified `pg_class` (any
//!   `pg_*` table) → `pg_catalog.pg_class`, as PostgreSQL resolves them;
//!   `information_schema.columns` → PostgreSQL's (see
//!   [`crate::catalog::PgInformationSchema`]);
//! - a correlated scalar subquery over `pg_catalog` tables only (psql's
//!   `(SELECT pg_get_expr(d.adbin, ...) FROM pg_attrdef d WHERE ...)`)
//!   takes `max()` of its one column, since DataFusion plans only
//!   aggregated correlated subqueries; over catalog tables, which hold at
//!   most one row per key, the answer is the same. Subqueries over a
//!   source's tables are never rewritten;
//! - a subquery that reads a `pg_catalog` table Bluelamp never fills
//!   (`pg_attrdef`, `pg_constraint`, `pg_index`, ...) through inner joins
//!   and does not aggregate has no rows: a scalar subquery is NULL, `EXISTS`
//!   false, `IN` false (`NOT` inverts both); a whole query over one (or over
//!   a derived table that surely has no rows) returns its columns, as NULLs,
//!   and no rows, reading nothing. DataFusion cannot plan some of the
//!   correlated subqueries psql sends over these tables (`ARRAY(SELECT
//!   ...)`, non-equality correlation);
//! - casts to `pg_catalog.text` (and the other built-in types) → the type;
//!   casts to `regclass`, `regtype`, `regproc`, `regnamespace`, `oid` →
//!   an unsigned integer (an OID is a number here), but a cast to
//!   `regclass` is `regclass_oid(x)` (and to `regproc` `regproc_oid(x)`),
//!   which reads a name
//!   (`'pg_namespace'::regclass`, `'"cad"."incidents"'::regclass`) as that
//!   relation's OID, and `x::regtype::text` is the type's name
//!   (`format_type(x, NULL)`);
//! - `SELECT c.oid, c.*` (DBeaver): a column named again by the wildcard of
//!   its own table is renamed `oid_1` (its position), since DataFusion wants
//!   distinct names;
//! - PostgreSQL's walk over an array by its subscripts, `FROM
//!   generate_series(array_lower(A, 1), array_upper(A, 1)) AS i, A AS s`
//!   reading only `s[i]` (Grafana lists the schemas on the search path so)
//!   → `FROM unnest(A) AS s(i)` reading `s.i`: the same elements in the
//!   same order. Where `i` is read otherwise, nothing is rewritten;
//! - `CASE WHEN x IN (SELECT ...)` in a projection → `CASE WHEN
//!   array_has((SELECT array_agg(...) ...), x)`, which DataFusion plans
//!   (see [`in_subquery_as_membership`] for why the answer is the same);
//! - `SELECT NULL, NULL`: a repeated unnamed expression is named
//!   `?column?_N` (N its position), since DataFusion wants distinct names.

use std::ops::ControlFlow;

use bluelamp_engine::Statement;
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, DataType as SqlType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, JoinOperator, ObjectName,
    ObjectNamePart, Query, Select, SelectItem, SetExpr, SetOperator, TableAlias,
    TableAliasColumnDef, TableFactor, TableWithJoins, Value, VisitMut, VisitorMut,
    visit_expressions, visit_expressions_mut, visit_relations, visit_relations_mut,
};

use crate::catalog::PG_CATALOG;

/// The highest `$n` placeholder in `statement` as written.
pub fn placeholder_count(statement: &Statement) -> usize {
    let mut highest = 0;
    if let Some(ast) = statement.ast() {
        let _ = visit_expressions(ast, |expr| {
            if let Expr::Value(value) = expr
                && let Value::Placeholder(name) = &value.value
                && let Some(n) = name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
            {
                highest = highest.max(n);
            }
            ControlFlow::<()>::Continue(())
        });
    }
    highest
}

/// Rewrites `statement` in place.
pub fn rewrite(statement: &mut Statement) {
    let Some(ast) = statement.ast_mut() else {
        return;
    };
    let _ = visit_expressions_mut(ast, |expr| {
        if let Expr::Subquery(query) = expr {
            rename_wildcard_duplicates(query);
        }
        ControlFlow::<()>::Continue(())
    });
    if let ast::Statement::Query(query) = ast {
        rename_wildcard_duplicates(query);
    }
    let _ = ast.visit(&mut SelectRewrites);
    if let ast::Statement::Query(query) = ast {
        qualify_catalog_tables(query);
        if surely_empty(query) {
            empty_result(query);
            return;
        }
    }
    let _ = visit_relations_mut(ast, |name| {
        qualify(name);
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_expressions_mut(ast, |expr| {
        regtype_names(expr);
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_expressions_mut(ast, |expr| {
        rewrite_expr(expr);
        ControlFlow::<()>::Continue(())
    });
}

fn qualify_catalog_tables(query: &mut Query) {
    let _ = visit_relations_mut(query, |name| {
        qualify(name);
        ControlFlow::<()>::Continue(())
    });
}

/// `pg_class` as `pg_catalog.pg_class`; `information_schema.tables` as
/// PostgreSQL's, not DataFusion's.
fn qualify(name: &mut ObjectName) {
    if name.0.len() == 2
        && let Some(ObjectNamePart::Identifier(schema)) = name.0.first_mut()
        && schema.value.eq_ignore_ascii_case("information_schema")
    {
        *schema = Ident::new(crate::catalog::INFORMATION_SCHEMA);
        return;
    }
    if name.0.len() == 1
        && let Some(ObjectNamePart::Identifier(ident)) = name.0.first()
        && ident.quote_style.is_none()
        && ident.value.to_ascii_lowercase().starts_with("pg_")
    {
        name.0
            .insert(0, ObjectNamePart::Identifier(Ident::new(PG_CATALOG)));
    }
}

/// A query known to return no rows, as its columns (NULL) and no rows.
fn empty_result(query: &mut Query) {
    // A set operation's columns are its first branch's.
    while let SetExpr::SetOperation { left, .. } = query.body.as_mut() {
        let left = std::mem::replace(
            left.as_mut(),
            SetExpr::Values(ast::Values {
                explicit_row: false,
                value_keyword: false,
                rows: Vec::new(),
            }),
        );
        *query.body = left;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let mut used = std::collections::HashSet::new();
    for (position, item) in select.projection.iter_mut().enumerate() {
        let name = match item {
            SelectItem::UnnamedExpr(expr) => match expr {
                Expr::Identifier(ident) => ident.value.clone(),
                Expr::CompoundIdentifier(parts) => parts
                    .last()
                    .map_or_else(|| "?column?".into(), |i| i.value.clone()),
                Expr::Function(f) => f.name.to_string(),
                _ => "?column?".into(),
            },
            SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
            _ => continue,
        };
        // DataFusion wants distinct names where PostgreSQL does not.
        let name = if used.insert(name.clone()) {
            name
        } else {
            format!("{name}_{}", position + 1)
        };
        *item = SelectItem::ExprWithAlias {
            expr: Expr::value(Value::Null),
            alias: Ident::with_quote('"', name),
        };
    }
    // Nothing is read: the FROM items (which may call functions Bluelamp
    // does not have, such as pgjdbc's `information_schema._pg_expandarray`)
    // and what refers to them go.
    select.from.clear();
    select.group_by = GroupByExpr::Expressions(Vec::new(), Vec::new());
    select.selection = Some(Expr::value(Value::Boolean(false)));
    query.order_by = None;
}

/// Renames `c.oid` in `SELECT c.oid, c.*` (the wildcard names it again).
fn rename_wildcard_duplicates(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let wildcards: Vec<String> = select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::QualifiedWildcard(
                ast::SelectItemQualifiedWildcardKind::ObjectName(name),
                _,
            ) => Some(name.to_string().to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    if wildcards.is_empty() {
        return;
    }
    // Renamed, not dropped: a client reading by position finds every
    // column where PostgreSQL puts it.
    for (position, item) in select.projection.iter_mut().enumerate() {
        if let SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) = item
            && let [table, column] = parts.as_slice()
            && wildcards.contains(&table.value.to_ascii_lowercase())
        {
            let alias = Ident::with_quote('"', format!("{}_{}", column.value, position + 1));
            *item = SelectItem::ExprWithAlias {
                expr: Expr::CompoundIdentifier(parts.clone()),
                alias,
            };
        }
    }
}

/// Rewrites each query's walk over an array by subscripts and names its
/// repeated unnamed columns (see the module overview).
struct SelectRewrites;

impl VisitorMut for SelectRewrites {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            walk_by_unnest(select);
            name_repeated_columns(select);
            in_subquery_as_membership(select);
        }
        ControlFlow::Continue(())
    }
}

/// `CASE WHEN x IN (SELECT ...) THEN ...` in a projection (Grafana's table
/// list), which DataFusion does not plan there, as `CASE WHEN
/// array_has((SELECT array_agg(member) FROM (SELECT ...) AS in_set
/// (member)), x) THEN ...`. Only a WHEN condition is rewritten: there a
/// NULL (no match where the set holds NULL, or `x` NULL) and false choose
/// the same branch, so `array_has`'s false for them answers the same.
fn in_subquery_as_membership(select: &mut Select) {
    for item in &mut select.projection {
        let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item else {
            continue;
        };
        let _ = visit_expressions_mut(expr, |expr| {
            // A simple CASE (`CASE x WHEN ...`) compares x with the
            // condition, where NULL and false differ: left alone.
            if let Expr::Case {
                operand: None,
                conditions,
                ..
            } = expr
            {
                for when in conditions {
                    if let Expr::InSubquery {
                        expr: member,
                        subquery,
                        negated: false,
                    } = &when.condition
                        && let Some(set) = parse_expr(&format!(
                            "(SELECT array_agg(in_set.member) FROM ({subquery}) AS in_set (member))"
                        ))
                    {
                        when.condition = call("array_has", vec![set, member.as_ref().clone()]);
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

fn parse_expr(sql: &str) -> Option<Expr> {
    datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::GenericDialect {},
    )
    .try_with_sql(sql)
    .ok()?
    .parse_expr()
    .ok()
}

/// `SELECT NULL, NULL` (pgjdbc's procedure list): PostgreSQL names both
/// `?column?`; DataFusion wants distinct names, so each repeat of an
/// unnamed expression (not a column) is named `?column?_N` (or
/// `function_N`), N its position from 1.
fn name_repeated_columns(select: &mut Select) {
    let mut seen = std::collections::HashSet::new();
    for (position, item) in select.projection.iter_mut().enumerate() {
        let SelectItem::UnnamedExpr(expr) = item else {
            continue;
        };
        if matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
            || seen.insert(expr.to_string())
        {
            continue;
        }
        let name = match expr {
            Expr::Function(f) => f
                .name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .map_or_else(|| "?column?".to_string(), |i| i.value.clone()),
            _ => "?column?".to_string(),
        };
        *item = SelectItem::ExprWithAlias {
            expr: expr.clone(),
            alias: Ident::with_quote('"', format!("{name}_{}", position + 1)),
        };
    }
}

fn walk_by_unnest(select: &mut Select) {
    let [series, array] = select.from.as_slice() else {
        return;
    };
    if !series.joins.is_empty() || !array.joins.is_empty() {
        return;
    }
    let (Some((index, bounded)), Some((elements, walked))) = (
        subscript_series(&series.relation),
        table_function(&array.relation),
    ) else {
        return;
    };
    if bounded.to_string() != walked.to_string() {
        return;
    }
    let mut rewritten = select.clone();
    rewritten.from = vec![TableWithJoins {
        relation: TableFactor::UNNEST {
            alias: Some(TableAlias {
                explicit: true,
                name: elements.clone(),
                columns: vec![TableAliasColumnDef {
                    name: index.clone(),
                    data_type: None,
                }],
                at: None,
            }),
            array_exprs: vec![walked],
            with_offset: false,
            with_offset_alias: None,
            with_ordinality: false,
        },
        joins: Vec::new(),
    }];
    let same = |a: &Ident, b: &Ident| a.value.eq_ignore_ascii_case(&b.value);
    let _ = visit_expressions_mut(&mut rewritten, |expr| {
        if let Expr::CompoundFieldAccess { root, access_chain } = expr
            && let Expr::Identifier(root) = root.as_ref()
            && same(root, &elements)
            && let [ast::AccessExpr::Subscript(ast::Subscript::Index { index: at })] =
                access_chain.as_slice()
            && matches!(at, Expr::Identifier(at) if same(at, &index))
        {
            *expr = Expr::CompoundIdentifier(vec![elements.clone(), index.clone()]);
        }
        ControlFlow::<()>::Continue(())
    });
    // `i` read other than as `s[i]` would now read an element, not a
    // subscript: leave such a query as it is.
    let mut index_read = false;
    let _ = visit_expressions(&rewritten, |expr| {
        index_read |= matches!(expr, Expr::Identifier(i) if same(i, &index));
        ControlFlow::<()>::Continue(())
    });
    if !index_read {
        *select = rewritten;
    }
}

/// `generate_series(array_lower(A, 1), array_upper(A, 1)) AS i`: `i` and `A`.
fn subscript_series(factor: &TableFactor) -> Option<(Ident, Expr)> {
    let (index, call) = table_function(factor)?;
    let Expr::Function(call) = call else {
        return None;
    };
    if !call
        .name
        .to_string()
        .eq_ignore_ascii_case("generate_series")
    {
        return None;
    }
    let args = function_args(&call.args)?;
    let [lower, upper] = args.as_slice() else {
        return None;
    };
    let lower = bound_of(lower, "array_lower")?;
    let upper = bound_of(upper, "array_upper")?;
    (lower.to_string() == upper.to_string()).then(|| (index, lower.clone()))
}

/// `array_lower(A, 1)` (or `array_upper`): `A`.
fn bound_of<'a>(expr: &'a Expr, name: &str) -> Option<&'a Expr> {
    let Expr::Function(call) = expr else {
        return None;
    };
    if !call.name.to_string().eq_ignore_ascii_case(name) {
        return None;
    }
    match function_args(&call.args)?.as_slice() {
        [array, dimension] if dimension.to_string() == "1" => Some(*array),
        _ => None,
    }
}

/// A function call's positional arguments, if all are.
fn function_args(args: &FunctionArguments) -> Option<Vec<&Expr>> {
    let FunctionArguments::List(list) = args else {
        return None;
    };
    list.args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr),
            _ => None,
        })
        .collect()
}

/// A table function in FROM with a plain alias (`f(args) AS a`): `a` and
/// the call as an expression.
fn table_function(factor: &TableFactor) -> Option<(Ident, Expr)> {
    let TableFactor::Table {
        name,
        alias: Some(alias),
        args: Some(args),
        with_ordinality: false,
        ..
    } = factor
    else {
        return None;
    };
    if !alias.columns.is_empty() || args.settings.is_some() {
        return None;
    }
    Some((
        alias.name.clone(),
        Expr::Function(Function {
            name: name.clone(),
            uses_odbc_syntax: false,
            parameters: FunctionArguments::None,
            args: FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: None,
                args: args.args.clone(),
                clauses: Vec::new(),
            }),
            filter: None,
            null_treatment: None,
            over: None,
            within_group: Vec::new(),
        }),
    ))
}

/// Whether every table `query` reads is in `pg_catalog`.
fn catalog_only(query: &Query) -> bool {
    let mut only = true;
    let mut tables = 0;
    let _ = visit_relations(query, |name| {
        let in_catalog = name.0.len() == 2
            && matches!(name.0.first(), Some(ObjectNamePart::Identifier(i)) if i.value.eq_ignore_ascii_case(PG_CATALOG));
        only &= in_catalog;
        tables += 1;
        ControlFlow::<()>::Continue(())
    });
    only && tables > 0
}

/// `SELECT x FROM pg_catalog... WHERE ...` as `SELECT max(x) ...`.
fn aggregate_catalog_subquery(query: &mut Query) {
    // An order or a limit picks a row that max() would not.
    if !catalog_only(query)
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
    {
        return;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    if !matches!(select.group_by, GroupByExpr::Expressions(ref e, _) if e.is_empty())
        || select.having.is_some()
        || select.projection.len() != 1
    {
        return;
    }
    let item = &mut select.projection[0];
    let expr = match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
        _ => return,
    };
    if matches!(expr, Expr::Function(f) if is_aggregate(&f.name)) {
        return;
    }
    let inner = std::mem::replace(expr, Expr::value(Value::Null));
    *expr = call("max", vec![inner]);
}

fn is_aggregate(name: &ObjectName) -> bool {
    let last = name.to_string().to_ascii_lowercase();
    [
        "count",
        "max",
        "min",
        "sum",
        "avg",
        "array_agg",
        "string_agg",
        "bool_and",
        "bool_or",
    ]
    .iter()
    .any(|a| last.ends_with(a))
}

/// Catalog tables that never hold a row.
const EMPTY_TABLES: &[&str] = &[
    "pg_attrdef",
    "pg_auth_members",
    "pg_collation",
    "pg_constraint",
    "pg_depend",
    "pg_description",
    "pg_enum",
    "pg_extension",
    "pg_foreign_table",
    "pg_index",
    "pg_inherits",
    "pg_partitioned_table",
    "pg_matviews",
    "pg_policy",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_range",
    "pg_rewrite",
    "pg_sequence",
    "pg_shdescription",
    "pg_statistic_ext",
    "pg_trigger",
];

fn is_empty_table(factor: &TableFactor) -> bool {
    let TableFactor::Table { name, .. } = factor else {
        return false;
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
        .collect();
    matches!(parts.as_slice(), [schema, table] if schema == PG_CATALOG && EMPTY_TABLES.contains(&table.as_str()))
}

/// An always-empty catalog table, or a derived table that surely has no
/// rows.
fn is_empty_factor(factor: &TableFactor) -> bool {
    match factor {
        TableFactor::Derived { subquery, .. } => surely_empty(subquery),
        other => is_empty_table(other),
    }
}

/// Whether `query` surely returns no rows: it reads an always-empty
/// catalog table as a FROM item or through an inner join, and its
/// projection has no aggregate (which would make one row of nothing).
fn surely_empty(query: &Query) -> bool {
    set_surely_empty(&query.body)
}

fn set_surely_empty(body: &SetExpr) -> bool {
    let select = match body {
        SetExpr::Select(select) => select,
        SetExpr::Query(query) => return surely_empty(query),
        SetExpr::SetOperation {
            op, left, right, ..
        } => {
            return match op {
                SetOperator::Union => set_surely_empty(left) && set_surely_empty(right),
                SetOperator::Intersect => set_surely_empty(left) || set_surely_empty(right),
                _ => set_surely_empty(left),
            };
        }
        _ => return false,
    };
    // An aggregate anywhere in the projection (`coalesce(count(*), 0)`)
    // makes one row of nothing.
    // (Subqueries are their own: their aggregates make their own row.)
    let mut own = select.projection.clone();
    let _ = visit_expressions_mut(&mut own, |expr| {
        if matches!(
            expr,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
        ) {
            *expr = Expr::value(Value::Null);
        }
        ControlFlow::<()>::Continue(())
    });
    let mut aggregated = false;
    let _ = visit_expressions(&own, |expr| {
        aggregated |= matches!(expr, Expr::Function(f) if is_aggregate(&f.name));
        ControlFlow::<()>::Continue(())
    });
    if aggregated || select.having.is_some() {
        return false;
    }
    select.from.iter().any(|from| {
        // A RIGHT or FULL join keeps the other side's rows.
        let keeps_rows = from.joins.iter().any(|join| {
            matches!(
                join.join_operator,
                JoinOperator::Right(_)
                    | JoinOperator::RightOuter(_)
                    | JoinOperator::FullOuter(_)
                    | JoinOperator::RightSemi(_)
                    | JoinOperator::RightAnti(_)
            )
        });
        !keeps_rows
            && (is_empty_factor(&from.relation)
                || from.joins.iter().any(|join| {
                    matches!(
                        join.join_operator,
                        JoinOperator::Inner(_) | JoinOperator::Join(_)
                    ) && is_empty_factor(&join.relation)
                }))
    })
}

/// `oid::regtype::text` as `format_type(oid, NULL)`: the type's name, as
/// PostgreSQL prints a regtype. (A pass of its own, before casts to
/// `regtype` become integers.)
fn regtype_names(expr: &mut Expr) {
    let Expr::Cast {
        expr: inner,
        data_type,
        ..
    } = expr
    else {
        return;
    };
    if !is_text_type(data_type)
        || !matches!(inner.as_ref(), Expr::Cast { data_type: t, .. } if is_named(t, "regtype"))
    {
        return;
    }
    let Expr::Cast { expr: oid, .. } = std::mem::replace(inner.as_mut(), Expr::value(Value::Null))
    else {
        return;
    };
    *expr = call("format_type", vec![*oid, Expr::value(Value::Null)]);
}

fn rewrite_expr(expr: &mut Expr) {
    match expr {
        Expr::Subquery(query) if surely_empty(query) => *expr = Expr::value(Value::Null),
        Expr::Exists { subquery, negated } if surely_empty(subquery) => {
            *expr = Expr::value(Value::Boolean(*negated));
        }
        Expr::InSubquery {
            subquery, negated, ..
        } if surely_empty(subquery) => {
            *expr = Expr::value(Value::Boolean(*negated));
        }
        Expr::Subquery(query) => aggregate_catalog_subquery(query),
        // `ARRAY(SELECT ...)` over an always-empty table.
        Expr::Function(function)
            if function.name.to_string().eq_ignore_ascii_case("array")
                && matches!(&function.args, FunctionArguments::Subquery(q) if surely_empty(q)) =>
        {
            *expr = Expr::value(Value::Null);
        }
        Expr::BinaryOp { op, .. } => {
            if let BinaryOperator::PGCustomBinaryOperator(parts) = op
                && let Some(standard) = parts.last().and_then(|o| standard_operator(o))
            {
                *op = standard;
            }
        }
        // Code-point order is what `default`, `C` and `POSIX` mean; any
        // other collation stays, for DataFusion to refuse.
        Expr::Collate {
            expr: inner,
            collation,
        } if matches!(
            collation
                .0
                .last()
                .and_then(|part| part.as_ident())
                .map(|i| i.value.to_ascii_lowercase())
                .as_deref(),
            Some("default" | "c" | "posix")
        ) =>
        {
            let inner = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
            *expr = inner;
            rewrite_expr(expr);
        }
        Expr::Function(function) => strip_catalog(&mut function.name),
        Expr::Cast {
            expr: inner,
            data_type,
            ..
        } => {
            if matches!(data_type, SqlType::Regclass) || is_named(data_type, "regclass") {
                let value = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
                *expr = call("regclass_oid", vec![value]);
            } else if is_named(data_type, "regproc") || is_named(data_type, "regprocedure") {
                let value = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
                *expr = call("regproc_oid", vec![value]);
            } else if let Some(plain) = plain_type(data_type) {
                *data_type = plain;
            }
        }
        _ => {}
    }
}

/// Whether a cast target names `type` (`regtype`, `pg_catalog.regtype`).
fn is_named(data_type: &SqlType, name: &str) -> bool {
    matches!(data_type, SqlType::Custom(object, _)
        if matches!(object.0.last(), Some(ObjectNamePart::Identifier(i)) if i.value.eq_ignore_ascii_case(name)))
}

fn is_text_type(data_type: &SqlType) -> bool {
    matches!(data_type, SqlType::Text | SqlType::Varchar(_)) || is_named(data_type, "text")
}

/// `name(args)` as an expression.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|arg| FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

fn strip_catalog(name: &mut ObjectName) {
    if name.0.len() == 2
        && let Some(ObjectNamePart::Identifier(first)) = name.0.first()
        && first.value.eq_ignore_ascii_case(PG_CATALOG)
    {
        name.0.remove(0);
    }
}

fn standard_operator(op: &str) -> Option<BinaryOperator> {
    Some(match op {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "~~" => BinaryOperator::PGLikeMatch,
        "~~*" => BinaryOperator::PGILikeMatch,
        "!~~" => BinaryOperator::PGNotLikeMatch,
        "!~~*" => BinaryOperator::PGNotILikeMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "+" => BinaryOperator::Plus,
        "-" => BinaryOperator::Minus,
        "*" => BinaryOperator::Multiply,
        "/" => BinaryOperator::Divide,
        "||" => BinaryOperator::StringConcat,
        _ => return None,
    })
}

/// A cast target DataFusion plans in place of a PostgreSQL-only one.
fn plain_type(data_type: &SqlType) -> Option<SqlType> {
    if matches!(data_type, SqlType::Regclass) {
        return Some(SqlType::BigIntUnsigned(None));
    }
    let SqlType::Custom(name, modifiers) = data_type else {
        return None;
    };
    let last = match name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => ident.value.to_ascii_lowercase(),
        _ => return None,
    };
    let qualified = name.0.len() == 2;
    Some(match last.as_str() {
        "regclass" | "regtype" | "regproc" | "regprocedure" | "regnamespace" | "regrole"
        | "regoper" | "oid" | "xid" => SqlType::BigIntUnsigned(None),
        "name" => SqlType::Text,
        _ if !qualified => return None,
        "text" => SqlType::Text,
        "varchar" => SqlType::Varchar(None),
        "bool" | "boolean" => SqlType::Boolean,
        "int2" | "smallint" => SqlType::SmallInt(None),
        "int4" | "int" | "integer" => SqlType::Int(None),
        "int8" | "bigint" => SqlType::BigInt(None),
        "float4" | "real" => SqlType::Real,
        "float8" => SqlType::DoublePrecision,
        "date" => SqlType::Date,
        "char" | "bpchar" => SqlType::Text,
        _ if modifiers.is_empty() => return None,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statement = bluelamp_engine::parse_statements(sql).unwrap().remove(0);
        rewrite(&mut statement);
        statement.to_string()
    }

    #[test]
    fn psql_spellings_become_datafusion_ones() {
        assert_eq!(
            rewritten(
                "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(x)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid)"
            ),
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname ~ '^(x)$' AND pg_table_is_visible(c.oid)"
        );
        assert_eq!(
            rewritten("SELECT typname::pg_catalog.text, 1::regclass FROM pg_type"),
            "SELECT typname::TEXT, regclass_oid(1) FROM pg_catalog.pg_type"
        );
        assert_eq!(
            rewritten("SELECT t.oid::regtype::text FROM pg_type t"),
            "SELECT format_type(t.oid, NULL) FROM pg_catalog.pg_type t"
        );
    }

    #[test]
    fn an_array_walked_by_subscripts_is_unnested() {
        assert_eq!(
            rewritten(
                "SELECT trim(s[i]) FROM generate_series(array_lower(string_to_array(current_setting('search_path'), ','), 1), array_upper(string_to_array(current_setting('search_path'), ','), 1)) AS i, string_to_array(current_setting('search_path'), ',') s"
            ),
            "SELECT TRIM(s.i) FROM UNNEST(string_to_array(current_setting('search_path'), ',')) AS s (i)"
        );
        // The subscript read on its own, another array, or another
        // dimension: left alone.
        for sql in [
            "SELECT i, s[i] FROM generate_series(array_lower(a(), 1), array_upper(a(), 1)) AS i, a() AS s",
            "SELECT s[i] FROM generate_series(array_lower(a(), 1), array_upper(b(), 1)) AS i, a() AS s",
            "SELECT s[i] FROM generate_series(array_lower(a(), 1), array_upper(a(), 1)) AS i, b() AS s",
            "SELECT s[i] FROM generate_series(array_lower(a(), 2), array_upper(a(), 2)) AS i, a() AS s",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
    }

    #[test]
    fn membership_in_a_projection_and_repeated_names() {
        assert_eq!(
            rewritten("SELECT CASE WHEN s IN (SELECT x FROM t) THEN 1 END FROM u"),
            "SELECT CASE WHEN array_has((SELECT array_agg(in_set.member) FROM (SELECT x FROM t) AS in_set (member)), s) THEN 1 END FROM u"
        );
        // NOT IN differs from NOT array_has where the set holds NULL: kept.
        let sql = "SELECT CASE WHEN s NOT IN (SELECT x FROM t) THEN 1 END FROM u";
        assert_eq!(rewritten(sql), sql);
        assert_eq!(
            rewritten("SELECT NULL, NULL AS b, NULL, f(1), f(1), a.x, a.x FROM a"),
            "SELECT NULL, NULL AS b, NULL AS \"?column?_3\", f(1), f(1) AS \"f_5\", a.x, a.x FROM a"
        );
    }

    #[test]
    fn outer_joins_and_nested_aggregates_keep_their_rows() {
        // A RIGHT or FULL join keeps the source's rows; an aggregate inside
        // an expression makes one row: neither is folded to nothing.
        for sql in [
            "SELECT i.urn FROM pg_catalog.pg_description AS d RIGHT JOIN cad.incidents AS i ON d.objoid = 1",
            "SELECT i.urn FROM pg_catalog.pg_index AS x FULL JOIN cad.incidents AS i ON x.indexrelid = 1",
            "SELECT coalesce(count(*), 0) FROM pg_catalog.pg_index",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
        // A collation other than code-point order stays, to be refused.
        let sql = "SELECT urn FROM cad.incidents ORDER BY urn COLLATE \"de_DE\"";
        assert_eq!(rewritten(sql), sql);
    }
}
