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
//!   false, `IN` false (`NOT` inverts both); a whole query over one returns
//!   its columns, as NULLs, and no rows. DataFusion cannot plan some of the
//!   correlated subqueries psql sends over these tables (`ARRAY(SELECT
//!   ...)`, non-equality correlation);
//! - casts to `pg_catalog.text` (and the other built-in types) → the type;
//!   casts to `regclass`, `regtype`, `regproc`, `regnamespace`, `oid` →
//!   an unsigned integer (an OID is a number here), but a cast to
//!   `regclass` is `regclass_oid(x)`, which reads a name
//!   (`'pg_namespace'::regclass`, `'"cad"."incidents"'::regclass`) as that
//!   relation's OID, and `x::regtype::text` is the type's name
//!   (`format_type(x, NULL)`);
//! - `SELECT c.oid, c.*` (DBeaver): a column named again by the wildcard of
//!   its own table is dropped, since DataFusion wants distinct names.

use std::ops::ControlFlow;

use bluelamp_engine::Statement;
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, DataType as SqlType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, JoinOperator, ObjectName,
    ObjectNamePart, Query, SelectItem, SetExpr, SetOperator, TableFactor, Value, visit_expressions,
    visit_expressions_mut, visit_relations, visit_relations_mut,
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
            drop_wildcard_duplicates(query);
        }
        ControlFlow::<()>::Continue(())
    });
    if let ast::Statement::Query(query) = ast {
        drop_wildcard_duplicates(query);
    }
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
    select.selection = Some(Expr::value(Value::Boolean(false)));
    query.order_by = None;
}

/// Drops `c.oid` from `SELECT c.oid, c.*` (the wildcard names it again).
fn drop_wildcard_duplicates(query: &mut Query) {
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
    select.projection.retain(|item| {
        !matches!(item, SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts))
            if parts.len() == 2 && wildcards.contains(&parts[0].value.to_ascii_lowercase()))
    });
}

/// Whether every table `query` reads is in `pg_catalog`.
fn catalog_only(query: &Query) -> bool {
    let mut only = true;
    let _ = visit_relations(query, |name| {
        let in_catalog = name.0.len() == 2
            && matches!(name.0.first(), Some(ObjectNamePart::Identifier(i)) if i.value.eq_ignore_ascii_case(PG_CATALOG));
        only &= in_catalog;
        ControlFlow::<()>::Continue(())
    });
    only
}

/// `SELECT x FROM pg_catalog... WHERE ...` as `SELECT max(x) ...`.
fn aggregate_catalog_subquery(query: &mut Query) {
    if !catalog_only(query) {
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
    let aggregated = select.projection.iter().any(|item| match item {
        SelectItem::UnnamedExpr(Expr::Function(f))
        | SelectItem::ExprWithAlias {
            expr: Expr::Function(f),
            ..
        } => is_aggregate(&f.name),
        _ => false,
    });
    if aggregated || select.having.is_some() {
        return false;
    }
    select.from.iter().any(|from| {
        is_empty_table(&from.relation)
            || from.joins.iter().any(|join| {
                matches!(
                    join.join_operator,
                    JoinOperator::Inner(_) | JoinOperator::Join(_)
                ) && is_empty_table(&join.relation)
            })
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
        Expr::Collate { expr: inner, .. } => {
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
}
