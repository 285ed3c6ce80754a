//! The principal's attributes inside policy SQL.
//!
//! Row filters and `sql` masks may say who is asking:
//!
//! - `principal('user')`, `principal('force')`, `principal('clearance')`,
//!   `principal('auth')`, or `principal('key')` for a `[user.attributes]`
//!   key: a string, NULL where the principal has none;
//! - `x = ANY(principal_teams())` and `x = ANY(principal_roles())`: whether
//!   `x` is one of the principal's teams (roles).
//!
//! Each is replaced by a constant before the expression is planned, so a
//! filter such as `force_code = principal('force')` reaches the source as
//! `force_code = 'XY'` and can be pushed down like any other predicate.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart, Value,
    VisitMut, VisitorMut,
};

use crate::principal::Principal;

/// `expr` with the principal's attributes in place of the calls above.
///
/// # Errors
/// A message for a call used any other way (`principal()` without a key,
/// `principal_teams()` outside `= ANY(...)`).
pub fn substitute(expr: &Expr, principal: &Principal) -> Result<Expr, String> {
    let mut expr = expr.clone();
    let mut visitor = Substitute { principal };
    match expr.visit(&mut visitor) {
        ControlFlow::Continue(()) => Ok(expr),
        ControlFlow::Break(message) => Err(message),
    }
}

struct Substitute<'a> {
    principal: &'a Principal,
}

/// The function's name, lower case, if `expr` is a call of a one-part name.
fn call_name(expr: &Expr) -> Option<String> {
    let Expr::Function(function) = expr else {
        return None;
    };
    match function.name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Some(ident.value.to_ascii_lowercase()),
        _ => None,
    }
}

/// The arguments of a call, if they are plain expressions.
fn call_args(expr: &Expr) -> Option<Vec<&Expr>> {
    let Expr::Function(function) = expr else {
        return None;
    };
    match &function.args {
        FunctionArguments::None => Some(Vec::new()),
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        FunctionArguments::Subquery(_) => None,
    }
}

fn text(value: Option<&str>) -> Expr {
    match value {
        Some(v) => Expr::value(Value::SingleQuotedString(v.to_string())),
        None => Expr::value(Value::Null),
    }
}

impl Substitute<'_> {
    fn attribute(&self, key: &str) -> Option<String> {
        let p = self.principal;
        match key {
            "user" => Some(p.user.clone()),
            "auth" => Some(p.authenticated_by.clone()),
            "force" => p.force.clone(),
            "clearance" => p.clearance.map(|c| c.as_str().to_string()),
            other => p.attributes.get(other).cloned(),
        }
    }

    fn list(&self, name: &str) -> Option<&[String]> {
        match name {
            "principal_teams" => Some(&self.principal.teams),
            "principal_roles" => Some(&self.principal.roles),
            _ => None,
        }
    }
}

impl VisitorMut for Substitute<'_> {
    type Break = String;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<String> {
        if let Expr::AnyOp {
            left,
            compare_op,
            right,
            ..
        } = expr
            && let Some(name) = call_name(right)
            && let Some(values) = self.list(&name)
        {
            if *compare_op != BinaryOperator::Eq {
                return ControlFlow::Break(format!("{name}() is used as `value = ANY({name}())`"));
            }
            let replacement = if values.is_empty() {
                Expr::value(Value::Boolean(false))
            } else {
                Expr::InList {
                    expr: left.clone(),
                    list: values.iter().map(|v| text(Some(v))).collect(),
                    negated: false,
                }
            };
            *expr = Expr::Nested(Box::new(replacement));
            return ControlFlow::Continue(());
        }
        let Some(name) = call_name(expr) else {
            return ControlFlow::Continue(());
        };
        if self.list(&name).is_some() {
            return ControlFlow::Break(format!(
                "{name}() can only be used as `value = ANY({name}())`"
            ));
        }
        if name == "principal" {
            let key = call_args(expr).and_then(|args| match args.as_slice() {
                [Expr::Value(v)] => match &v.value {
                    Value::SingleQuotedString(key) => Some(key.clone()),
                    _ => None,
                },
                _ => None,
            });
            let Some(key) = key else {
                return ControlFlow::Break(
                    "principal(...) takes one quoted attribute name, e.g. principal('force')"
                        .into(),
                );
            };
            *expr = text(self.attribute(&key).as_deref());
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::policy::rules::parse_sql_expr;

    fn with(sql: &str, principal: &Principal) -> Result<String, String> {
        substitute(&parse_sql_expr(sql).unwrap(), principal).map(|e| e.to_string())
    }

    #[test]
    fn attributes_and_lists_become_constants() {
        let mut p = Principal::bare("ann", "password");
        p.force = Some("XY".into());
        p.teams = vec!["cid".into(), "major-crime".into()];
        p.attributes.insert("station".into(), "north".into());
        assert_eq!(
            with(
                "NOT restricted OR 'major-crime' = ANY(principal_teams())",
                &p
            )
            .unwrap(),
            "NOT restricted OR ('major-crime' IN ('cid', 'major-crime'))"
        );
        assert_eq!(
            with("force_code = principal('force') AND s = principal('station') AND u = principal('user')", &p).unwrap(),
            "force_code = 'XY' AND s = 'north' AND u = 'ann'"
        );
        assert_eq!(with("x = principal('missing')", &p).unwrap(), "x = NULL");
        assert_eq!(with("'a' = ANY(principal_roles())", &p).unwrap(), "(false)");
    }

    #[test]
    fn other_uses_are_refused() {
        let p = Principal::bare("ann", "password");
        for (sql, says) in [
            ("cardinality(principal_teams()) > 0", "can only be used as"),
            ("x > ANY(principal_teams())", "is used as"),
            ("x = principal()", "takes one quoted attribute name"),
            ("x = principal(force)", "takes one quoted attribute name"),
        ] {
            let e = with(sql, &p).unwrap_err();
            assert!(e.contains(says), "{sql}: {e}");
        }
    }
}
