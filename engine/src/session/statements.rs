//! Statements: parsing SQL text into [`Statement`]s, as every front end does,
//! and the [`Planned`] form of one, whose schema, marking and parameters are
//! known before it runs and whose placeholders can be bound.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{ScalarValue, TableReference};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::marked;
use crate::error::{ErrorKind, QueryError};

/// The most parameters a statement may take (PostgreSQL's limit).
pub const MAX_PARAMETERS: usize = 65_535;

/// One parsed SQL statement, ready to run.
#[derive(Debug, Clone)]
pub struct Statement {
    pub(super) inner: Parsed,
}

/// What a statement is: SQL DataFusion plans, or one of Bluelamp's own.
#[derive(Debug, Clone)]
pub(super) enum Parsed {
    /// Any statement DataFusion's parser reads.
    Sql(DFStatement),
    /// `REFRESH TABLE source.table`: refresh an accelerated table now.
    Refresh(TableReference),
}

impl std::fmt::Display for Statement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Parsed::Sql(statement) => write!(f, "{statement}"),
            Parsed::Refresh(table) => write!(f, "REFRESH TABLE {table}"),
        }
    }
}

impl Statement {
    /// The statement's SQL syntax tree, for a front end that answers some
    /// statements itself (the PostgreSQL protocol's `BEGIN`, `SET
    /// client_encoding`): `None` for Bluelamp's own statements and
    /// DataFusion's extensions (`CREATE EXTERNAL TABLE`, `COPY`, `EXPLAIN`).
    pub fn ast(&self) -> Option<&datafusion::sql::sqlparser::ast::Statement> {
        match &self.inner {
            Parsed::Sql(DFStatement::Statement(statement)) => Some(statement),
            _ => None,
        }
    }

    /// The syntax tree, for a front end that rewrites its clients' dialect
    /// before planning (the PostgreSQL protocol turns `OPERATOR(pg_catalog.~)`
    /// into `~`). The rewritten statement is planned, checked and audited as
    /// any other.
    pub fn ast_mut(&mut self) -> Option<&mut datafusion::sql::sqlparser::ast::Statement> {
        match &mut self.inner {
            Parsed::Sql(DFStatement::Statement(statement)) => Some(statement),
            _ => None,
        }
    }

    /// Whether the statement is an `INSERT` (a deposit into a source).
    pub fn is_insert(&self) -> bool {
        matches!(
            &self.inner,
            Parsed::Sql(DFStatement::Statement(s)) if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Insert(_))
        )
    }
}

/// Splits text into statements (`;`-separated) without running them, as
/// every front end parses SQL.
///
/// # Errors
/// [`ErrorKind::Syntax`] for a syntax error, naming the position.
pub fn parse_statements(sql: &str) -> Result<Vec<Statement>, QueryError> {
    // Only text that could hold a REFRESH TABLE is split here first.
    if !sql.to_ascii_lowercase().contains("refresh") {
        return parse_sql(sql);
    }
    let dialect = GenericDialect {};
    let syntax = |e: &dyn std::fmt::Display| {
        QueryError::new(ErrorKind::Syntax, format!("SQL syntax error: {e}"))
    };
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| syntax(&e))?;
    // The text between semicolons, as written (never re-spelled from
    // tokens, which would lose quoting such as 'it''s').
    let mut parts = Vec::new();
    let mut start = 0;
    for token in tokens.iter().filter(|t| t.token == Token::SemiColon) {
        let end = byte_offset(sql, token.span.start.line, token.span.start.column);
        parts.push(&sql[start..end]);
        start = end + 1;
    }
    parts.push(&sql[start.min(sql.len())..]);
    let refresh_at = |part: &str| -> Result<Option<Vec<Token>>, QueryError> {
        let words: Vec<Token> = Tokenizer::new(&dialect, part)
            .tokenize()
            .map_err(|e| syntax(&e))?
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect();
        let is_refresh = matches!(
            words.as_slice(),
            [Token::Word(refresh), Token::Word(table), ..]
                if refresh.keyword == Keyword::REFRESH && table.keyword == Keyword::TABLE
        );
        Ok(is_refresh.then(|| words[2..].to_vec()))
    };
    let mut found = false;
    let mut split = Vec::with_capacity(parts.len());
    for part in parts {
        let refresh = refresh_at(part)?;
        found |= refresh.is_some();
        split.push((part, refresh));
    }
    if !found {
        return parse_sql(sql);
    }
    let mut statements = Vec::new();
    for (part, refresh) in split {
        match refresh {
            Some(name) => statements.push(Statement {
                inner: Parsed::Refresh(refresh_target(name)?),
            }),
            None if part.trim().is_empty() => {}
            None => statements.extend(parse_sql(part)?),
        }
    }
    Ok(statements)
}

/// The byte offset in `text` of 1-based `line` and `column` (in
/// characters), as the tokenizer counts them.
fn byte_offset(text: &str, line: u64, column: u64) -> usize {
    let mut offset = 0;
    for (number, content) in text.split_inclusive('\n').enumerate() {
        if number as u64 + 1 == line {
            let column = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
            return offset
                + content
                    .char_indices()
                    .nth(column)
                    .map_or(content.len(), |(i, _)| i);
        }
        offset += content.len();
    }
    text.len()
}

/// Statements DataFusion's parser reads.
fn parse_sql(sql: &str) -> Result<Vec<Statement>, QueryError> {
    let dialect = GenericDialect {};
    let statements: VecDeque<DFStatement> = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(QueryError::from)?;
    Ok(statements
        .into_iter()
        .map(|inner| Statement {
            inner: Parsed::Sql(inner),
        })
        .collect())
}

/// The table `REFRESH TABLE` names: exactly one name, nothing after it.
fn refresh_target(tokens: Vec<Token>) -> Result<TableReference, QueryError> {
    let usage = |why: String| {
        QueryError::new(
            ErrorKind::InvalidQuery,
            format!("{why}: write REFRESH TABLE source.table"),
        )
    };
    if tokens.is_empty() {
        return Err(usage("REFRESH TABLE needs a table".into()));
    }
    let mut parser = Parser::new(&GenericDialect {}).with_tokens(tokens);
    let name = parser
        .parse_object_name(false)
        .map_err(|e| usage(format!("REFRESH TABLE: {e}")))?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(usage(format!(
            "REFRESH TABLE takes one table name, and '{}' follows it",
            next.token
        )));
    }
    object_name_to_table_reference(name, true).map_err(|e| usage(e.message().to_string()))
}

/// The types untyped placeholders are cast to (`$1::BIGINT`), by name.
fn cast_placeholder_types(plan: &LogicalPlan) -> std::collections::HashMap<String, DataType> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Cast, Expr, TryCast, expr::Placeholder};
    let mut found = std::collections::HashMap::new();
    let mut visit = |expr: &Expr| {
        let (inner, data_type) = match expr {
            Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
                (expr.as_ref(), field.data_type())
            }
            _ => return Ok(TreeNodeRecursion::Continue),
        };
        if let Expr::Placeholder(Placeholder { id, field: None }) = inner {
            found.entry(id.clone()).or_insert_with(|| data_type.clone());
        }
        Ok::<_, datafusion::error::DataFusionError>(TreeNodeRecursion::Continue)
    };
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| expr.apply(&mut visit))?;
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// A planned statement: its result schema is known before any row is fetched.
/// Clones share nothing mutable, so a prepared statement can run many times.
#[derive(Clone)]
pub struct Planned {
    pub(crate) plan: LogicalPlan,
    pub(crate) sql: String,
    /// Sources, tables and columns the statement as written reads, for the
    /// audit trail (the plan itself reads through policy's rewrite).
    pub(crate) touched: Arc<crate::audit::trail::Touched>,
    /// Policies applied to the plan, for the audit trail.
    pub(crate) policies: Arc<Vec<String>>,
    /// The security marking of the result, where markings are configured.
    pub(crate) marking: Option<Arc<str>>,
    /// The same marking, as a value (for purposes required by marking).
    pub(crate) marking_value: Option<crate::policy::rules::Marking>,
}

impl Planned {
    /// The schema of the rows the statement will return, with its security
    /// marking in the metadata (`bluelamp.marking`) where markings are
    /// configured.
    pub fn schema(&self) -> SchemaRef {
        marked(
            Arc::clone(self.plan.schema().inner()),
            self.marking.as_deref(),
        )
    }

    /// The security marking of the statement's result, where markings are
    /// configured: the highest of the data it reads.
    pub fn marking(&self) -> Option<&str> {
        self.marking.as_deref()
    }

    /// The statement's SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The statement's placeholders (`$1`, `$2`, ...) in order, each with the
    /// type planning inferred for it (`None` where the SQL does not say, as in
    /// `SELECT $1`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidQuery`] if one placeholder is used with two types.
    pub fn parameters(&self) -> Result<Vec<(String, Option<DataType>)>, QueryError> {
        let cast = cast_placeholder_types(&self.plan);
        let mut parameters: Vec<(String, Option<DataType>)> = self
            .plan
            .get_parameter_types()
            .map_err(QueryError::from)?
            .into_iter()
            .map(|(name, data_type)| {
                // `$1::BIGINT`: the placeholder takes the type it is cast to,
                // as PostgreSQL types it.
                let data_type = data_type.or_else(|| cast.get(&name).cloned());
                (name, data_type)
            })
            .collect();
        parameters.sort_by_key(|(name, _)| {
            (
                name.trim_start_matches('$')
                    .parse::<u64>()
                    .unwrap_or(u64::MAX),
                name.clone(),
            )
        });
        Ok(parameters)
    }

    /// The statement with `values` in place of its placeholders, in order, each
    /// cast to the placeholder's inferred type.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidQuery`] for the wrong number of values or a value
    /// that cannot be cast to its placeholder's type.
    pub fn bind(&self, values: Vec<ScalarValue>) -> Result<Planned, QueryError> {
        let parameters = self.parameters()?;
        if values.len() != parameters.len() {
            return Err(QueryError::new(
                ErrorKind::InvalidQuery,
                format!(
                    "the statement has {} parameter(s) but {} value(s) were bound",
                    parameters.len(),
                    values.len()
                ),
            ));
        }
        self.bind_values(&parameters, values)
    }

    /// As [`Planned::bind`], with values by placeholder name (`$1`): each
    /// placeholder of the plan takes its value; values for names the plan
    /// does not hold (a front end rewrote them away) are ignored.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidQuery`] for a placeholder without a value, or a
    /// value that cannot be cast to its placeholder's type.
    pub fn bind_by_name(&self, values: &[(String, ScalarValue)]) -> Result<Planned, QueryError> {
        let parameters = self.parameters()?;
        let mut ordered = Vec::with_capacity(parameters.len());
        for (name, _) in &parameters {
            let value = values
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    QueryError::new(
                        ErrorKind::InvalidQuery,
                        format!("no value was bound for parameter {name}"),
                    )
                })?;
            ordered.push(value);
        }
        self.bind_values(&parameters, ordered)
    }

    /// Binds `values`, one per entry of `parameters` in order.
    fn bind_values(
        &self,
        parameters: &[(String, Option<DataType>)],
        values: Vec<ScalarValue>,
    ) -> Result<Planned, QueryError> {
        let mut cast = Vec::with_capacity(values.len());
        for ((name, data_type), value) in parameters.iter().zip(values) {
            let value = match data_type {
                Some(t) if value.data_type() != *t && !value.is_null() => {
                    value.cast_to(t).map_err(|e| {
                        QueryError::new(
                            ErrorKind::InvalidQuery,
                            format!(
                                "parameter {name}: cannot use {value:?} as {t}: {}",
                                e.message()
                            ),
                        )
                    })?
                }
                Some(t) if value.is_null() => ScalarValue::try_from(t).unwrap_or(value),
                _ => value,
            };
            cast.push(value);
        }
        // DataFusion reads `$n` from position n - 1: where numbers have
        // gaps (`$1` and `$3`), the list is padded with NULLs.
        let numbers: Option<Vec<usize>> = parameters
            .iter()
            .map(|(name, _)| name.strip_prefix('$').and_then(|n| n.parse().ok()))
            .collect();
        let values = match numbers {
            Some(numbers) if numbers.iter().enumerate().any(|(i, n)| *n != i + 1) => {
                let highest = numbers.iter().copied().max().unwrap_or(0);
                // The padding is as long as the highest number a client
                // wrote: bounded as PostgreSQL bounds parameters, so `$4000000000`
                // is an error, not billions of NULLs.
                if highest > MAX_PARAMETERS {
                    return Err(QueryError::new(
                        ErrorKind::InvalidQuery,
                        format!(
                            "${highest} is beyond the {MAX_PARAMETERS} parameters a statement may take"
                        ),
                    ));
                }
                let mut padded = vec![ScalarValue::Null; highest];
                for (n, value) in numbers.into_iter().zip(cast) {
                    if let Some(slot) = padded.get_mut(n.saturating_sub(1)) {
                        *slot = value;
                    }
                }
                padded
            }
            _ => cast,
        };
        let plan = self
            .plan
            .clone()
            .with_param_values(values)
            .map_err(QueryError::from)?;
        Ok(Planned {
            plan,
            sql: self.sql.clone(),
            touched: Arc::clone(&self.touched),
            policies: Arc::clone(&self.policies),
            marking: self.marking.clone(),
            marking_value: self.marking_value.clone(),
        })
    }

    /// Whether the statement changes something (DDL, DML, COPY, SET) rather than
    /// only reading.
    pub fn is_write(&self) -> bool {
        matches!(
            self.plan,
            LogicalPlan::Dml(_)
                | LogicalPlan::Ddl(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Statement(_)
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn texts(sql: &str) -> Vec<String> {
        parse_statements(sql)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn refresh_table_is_split_from_sql_as_written() {
        assert_eq!(
            texts("SELECT 'it''s' AS a, 1 AS last_refresh"),
            ["SELECT 'it''s' AS a, 1 AS last_refresh"]
        );
        assert_eq!(
            texts(
                "REFRESH TABLE a.b; SELECT 'x''y; refresh table' AS q -- refresh\n;\n\
                 refresh  table\n\"c\".d ;; SELECT 'é' AS e"
            ),
            [
                "REFRESH TABLE a.b",
                "SELECT 'x''y; refresh table' AS q",
                "REFRESH TABLE c.d",
                "SELECT 'é' AS e",
            ]
        );
    }

    #[test]
    fn byte_offsets_follow_lines_and_characters() {
        let text = "ab\né;x\n;";
        assert_eq!(byte_offset(text, 1, 1), 0);
        assert_eq!(byte_offset(text, 2, 2), "ab\né".len());
        assert_eq!(byte_offset(text, 3, 1), "ab\né;x\n".len());
    }
}
