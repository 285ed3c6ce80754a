//! The connector conformance suite: what every connector must get right,
//! checked the same way for each.
//!
//! Every connector is loaded with the same fixture rows ([`FIXTURE`]: NULLs,
//! empty strings, non-ASCII text, quotes and backslashes, a trailing space,
//! negative and large numbers, timestamps in UTC, dates) and an empty table.
//! Each [`Check`] is one SQL query run twice: through Bluelamp against the
//! connector's table, and through DataFusion's own evaluation over the same
//! rows held in memory (the oracle). The answers must be the same, so a
//! filter a connector reports as exact but its source evaluates differently
//! (case-insensitive `LIKE`, trailing spaces ignored by `=`, NULLs in
//! `NOT IN`) is caught.
//!
//! A connector's test file loads the fixture its own way and calls
//! [`run_check`] once per check; [`CHECKS`] names them all.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bluelamp_engine::Session;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

/// One fixture row.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Unique, never NULL.
    pub id: i64,
    /// Text, with every awkward value.
    pub label: Option<&'static str>,
    /// A float.
    pub amount: Option<f64>,
    /// A whole number.
    pub qty: Option<i64>,
    /// A boolean.
    pub flag: Option<bool>,
    /// A UTC timestamp, RFC 3339 to the second.
    pub at: Option<&'static str>,
    /// A date, `YYYY-MM-DD`.
    pub day: Option<&'static str>,
}

const fn row(
    id: i64,
    label: Option<&'static str>,
    amount: Option<f64>,
    qty: Option<i64>,
    flag: Option<bool>,
    at: Option<&'static str>,
    day: Option<&'static str>,
) -> Row {
    Row {
        id,
        label,
        amount,
        qty,
        flag,
        at,
        day,
    }
}

/// The rows every connector is loaded with.
pub const FIXTURE: &[Row] = &[
    row(
        1,
        Some("plain"),
        Some(1.5),
        Some(42),
        Some(true),
        Some("2026-01-31T08:00:00Z"),
        Some("2026-01-31"),
    ),
    row(
        2,
        Some("plain "),
        Some(-2.25),
        Some(-7),
        Some(false),
        Some("2026-06-01T00:00:00Z"),
        Some("2026-06-01"),
    ),
    row(
        3,
        Some(""),
        Some(0.0),
        Some(0),
        None,
        Some("2026-12-31T23:59:59Z"),
        Some("2026-12-31"),
    ),
    row(4, None, None, None, None, None, None),
    row(
        5,
        Some("O'Brien"),
        Some(1e15),
        Some(9_007_199_254_740_991),
        Some(true),
        Some("2000-02-29T12:30:00Z"),
        Some("2000-02-29"),
    ),
    row(
        6,
        Some("back\\slash"),
        Some(2.75),
        Some(42),
        Some(false),
        Some("1999-12-31T23:59:59Z"),
        Some("1999-12-31"),
    ),
    row(
        7,
        Some("Zoë Ångström – 日本語"),
        Some(-1e-9),
        Some(-9_007_199_254_740_991),
        Some(true),
        Some("2026-06-01T00:00:01Z"),
        Some("2026-06-02"),
    ),
    row(
        8,
        Some("PLAIN"),
        Some(100.0),
        Some(100),
        Some(false),
        Some("2026-01-31T08:00:00Z"),
        Some("2026-01-31"),
    ),
    row(
        9,
        Some("\"double\" quotes"),
        Some(3.0),
        Some(5),
        None,
        Some("2026-03-15T09:15:00Z"),
        None,
    ),
    row(
        10,
        Some("50% _off_"),
        Some(2.0),
        Some(-5),
        Some(true),
        None,
        Some("2026-03-15"),
    ),
];

/// The fixture's columns, as the oracle holds them.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("label", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("qty", DataType::Int64, true),
        Field::new("flag", DataType::Boolean, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("day", DataType::Date32, true),
    ]))
}

/// The fixture as one batch (the oracle's table, and what file connectors
/// write).
///
/// # Panics
/// Never: the fixture's values are fixed and valid.
#[allow(clippy::expect_used, reason = "fixed, valid fixture values")]
pub fn batch() -> RecordBatch {
    let micros = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .expect("fixture timestamp")
            .timestamp_micros()
    };
    let days = |d: &str| {
        let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("fixture date");
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
        i32::try_from((date - epoch).num_days()).expect("date in range")
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(FIXTURE.iter().map(|r| r.id))),
        Arc::new(StringArray::from_iter(FIXTURE.iter().map(|r| r.label))),
        Arc::new(Float64Array::from_iter(FIXTURE.iter().map(|r| r.amount))),
        Arc::new(Int64Array::from_iter(FIXTURE.iter().map(|r| r.qty))),
        Arc::new(BooleanArray::from_iter(FIXTURE.iter().map(|r| r.flag))),
        Arc::new(
            TimestampMicrosecondArray::from_iter(FIXTURE.iter().map(|r| r.at.map(micros)))
                .with_timezone("UTC"),
        ),
        Arc::new(Date32Array::from_iter(
            FIXTURE.iter().map(|r| r.day.map(days)),
        )),
    ];
    RecordBatch::try_new(schema(), columns).expect("fixture batch")
}

/// How a check's answers are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// The same rows, in any order.
    Rows,
    /// The same rows in the same order (the query has an `ORDER BY` that
    /// decides every position).
    Ordered,
    /// As many rows as the oracle, each one of the oracle's rows for the
    /// query without its `LIMIT` (a `LIMIT` without `ORDER BY` may return
    /// any such rows).
    AnyOf,
}

/// One conformance check: a query over `{t}` (the fixture table) or `{e}`
/// (the empty table).
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// Its name, which is also its test's name.
    pub name: &'static str,
    /// What it checks, for the failure message.
    pub what: &'static str,
    /// The query.
    pub sql: &'static str,
    /// How the answers are compared.
    pub compare: Compare,
}

const fn check(
    name: &'static str,
    what: &'static str,
    sql: &'static str,
    compare: Compare,
) -> Check {
    Check {
        name,
        what,
        sql,
        compare,
    }
}

/// Every check, in the order the suite runs them.
pub const CHECKS: &[Check] = &[
    check(
        "projection",
        "a projection returns every row's values",
        "SELECT id, label, qty FROM {t}",
        Compare::Rows,
    ),
    check(
        "all_columns",
        "every column's values survive the round trip",
        "SELECT id, label, amount, qty, flag, CAST(at AS VARCHAR) AS at, CAST(day AS VARCHAR) AS day FROM {t}",
        Compare::Rows,
    ),
    check(
        "filter_eq_text",
        "= on text, quotes inside",
        "SELECT id FROM {t} WHERE label = 'O''Brien'",
        Compare::Rows,
    ),
    check(
        "filter_eq_trailing_space",
        "= does not ignore trailing spaces",
        "SELECT id FROM {t} WHERE label = 'plain'",
        Compare::Rows,
    ),
    check(
        "filter_eq_case",
        "= on text is case-sensitive",
        "SELECT id FROM {t} WHERE label = 'PLAIN'",
        Compare::Rows,
    ),
    check(
        "filter_eq_empty_string",
        "the empty string is not NULL",
        "SELECT id FROM {t} WHERE label = ''",
        Compare::Rows,
    ),
    check(
        "filter_eq_backslash",
        "a backslash is an ordinary character",
        "SELECT id FROM {t} WHERE label = 'back\\slash'",
        Compare::Rows,
    ),
    check(
        "filter_eq_unicode",
        "non-ASCII text compares exactly",
        "SELECT id FROM {t} WHERE label = 'Zoë Ångström – 日本語'",
        Compare::Rows,
    ),
    check(
        "filter_eq_int",
        "= on a whole number",
        "SELECT id FROM {t} WHERE qty = 42",
        Compare::Rows,
    ),
    check(
        "filter_eq_large_int",
        "= on the largest exact double integer",
        "SELECT id FROM {t} WHERE qty = 9007199254740991",
        Compare::Rows,
    ),
    check(
        "filter_neq",
        "<> leaves out NULLs",
        "SELECT id FROM {t} WHERE label <> 'plain'",
        Compare::Rows,
    ),
    check(
        "filter_lt",
        "< on a whole number",
        "SELECT id FROM {t} WHERE qty < 0",
        Compare::Rows,
    ),
    check(
        "filter_le_float",
        "<= on a float",
        "SELECT id FROM {t} WHERE amount <= 1.5",
        Compare::Rows,
    ),
    check(
        "filter_gt_text",
        "> on text orders by code point",
        "SELECT id FROM {t} WHERE label > 'P'",
        Compare::Rows,
    ),
    check(
        "filter_between",
        "BETWEEN is inclusive",
        "SELECT id FROM {t} WHERE qty BETWEEN -7 AND 42",
        Compare::Rows,
    ),
    check(
        "filter_in",
        "IN over text, the empty string included",
        "SELECT id FROM {t} WHERE label IN ('plain', '', 'Zoë Ångström – 日本語')",
        Compare::Rows,
    ),
    check(
        "filter_not_in",
        "NOT IN leaves out NULLs",
        "SELECT id FROM {t} WHERE qty NOT IN (42, 0)",
        Compare::Rows,
    ),
    check(
        "filter_like_prefix",
        "LIKE is case-sensitive",
        "SELECT id FROM {t} WHERE label LIKE 'pl%'",
        Compare::Rows,
    ),
    check(
        "filter_like_wildcards",
        "LIKE's _ and % inside a pattern",
        "SELECT id FROM {t} WHERE label LIKE '%_off%'",
        Compare::Rows,
    ),
    check(
        "filter_is_null",
        "IS NULL",
        "SELECT id FROM {t} WHERE label IS NULL",
        Compare::Rows,
    ),
    check(
        "filter_is_not_null",
        "IS NOT NULL",
        "SELECT id FROM {t} WHERE amount IS NOT NULL",
        Compare::Rows,
    ),
    check(
        "filter_bool",
        "a boolean column as a predicate",
        "SELECT id FROM {t} WHERE flag",
        Compare::Rows,
    ),
    check(
        "filter_and_or_not",
        "AND, OR and NOT with NULLs",
        "SELECT id FROM {t} WHERE (qty > 0 AND flag) OR NOT (label IS NOT NULL) OR NOT flag",
        Compare::Rows,
    ),
    check(
        "filter_cast",
        "a comparison through a cast",
        "SELECT id FROM {t} WHERE CAST(qty AS VARCHAR) = '42'",
        Compare::Rows,
    ),
    check(
        "filter_timestamp",
        "a range on a timestamp with a zone",
        "SELECT id FROM {t} WHERE at >= TIMESTAMP '2026-06-01T00:00:00Z' AND at < TIMESTAMP '2026-12-31T23:59:59Z'",
        Compare::Rows,
    ),
    check(
        "filter_date",
        "= on a date",
        "SELECT id FROM {t} WHERE day = DATE '2026-01-31'",
        Compare::Rows,
    ),
    check(
        "limit_ordered",
        "LIMIT after ORDER BY",
        "SELECT id FROM {t} ORDER BY qty DESC NULLS LAST, id LIMIT 3",
        Compare::Ordered,
    ),
    check(
        "limit_unordered",
        "LIMIT without ORDER BY returns that many rows",
        "SELECT id FROM {t} LIMIT 3",
        Compare::AnyOf,
    ),
    check(
        "limit_filtered",
        "LIMIT after a filter",
        "SELECT id FROM {t} WHERE qty > 0 ORDER BY id LIMIT 2",
        Compare::Ordered,
    ),
    check(
        "order_nulls",
        "ORDER BY with NULLs first",
        "SELECT id, amount FROM {t} ORDER BY amount NULLS FIRST, id",
        Compare::Ordered,
    ),
    check(
        "aggregate",
        "count, sum, min and max",
        "SELECT count(*), count(label), sum(qty), min(qty), max(qty), min(amount), max(amount) FROM {t}",
        Compare::Rows,
    ),
    check(
        "group_by",
        "GROUP BY with a NULL group",
        "SELECT flag, count(*), sum(qty) FROM {t} GROUP BY flag",
        Compare::Rows,
    ),
    check(
        "filtered_aggregate",
        "an aggregate over a filter",
        "SELECT count(*), sum(qty) FROM {t} WHERE label LIKE '%a%'",
        Compare::Rows,
    ),
    check(
        "self_join",
        "a join within the source",
        "SELECT a.id, b.id FROM {t} a JOIN {t} b ON a.qty = b.qty AND a.id < b.id",
        Compare::Rows,
    ),
    check(
        "empty_table",
        "an empty table has no rows",
        "SELECT count(*) FROM {e}",
        Compare::Rows,
    ),
    check(
        "empty_scan",
        "an empty table scans to nothing",
        "SELECT * FROM {e}",
        Compare::Rows,
    ),
];

/// The check called `name`.
///
/// # Panics
/// If there is none (a test naming a check the suite does not have).
#[allow(clippy::panic, reason = "a test naming an unknown check is broken")]
pub fn named(name: &str) -> Check {
    CHECKS
        .iter()
        .copied()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no conformance check '{name}'"))
}

async fn oracle(sql: &str) -> Result<Vec<Vec<String>>, String> {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema(), vec![vec![batch()]]).map_err(|e| e.to_string())?;
    let empty = MemTable::try_new(schema(), vec![vec![]]).map_err(|e| e.to_string())?;
    ctx.register_table("t", Arc::new(table))
        .map_err(|e| e.to_string())?;
    ctx.register_table("e", Arc::new(empty))
        .map_err(|e| e.to_string())?;
    let sql = sql.replace("{t}", "t").replace("{e}", "e");
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    crate::slt::rows(&batches).map_err(|e| e.to_string())
}

/// Runs `check` against `table` (and `empty`) through `session`, and
/// against the oracle.
///
/// # Errors
/// A sentence naming the connector and the check, the SQL, and both
/// answers, when they differ or the query fails.
pub async fn run_check(
    connector: &str,
    session: &Session,
    table: &str,
    empty: &str,
    check: Check,
) -> Result<(), String> {
    let sql = check.sql.replace("{t}", table).replace("{e}", empty);
    let fail = |detail: String| {
        format!(
            "conformance: connector '{connector}' fails '{}' ({}):\n  {sql}\n  {detail}",
            check.name, check.what
        )
    };
    let got = crate::slt::try_session_rows(session, &sql)
        .await
        .map_err(|e| fail(format!("the query failed: {e}")))?;
    let oracle_sql = match check.compare {
        Compare::AnyOf => check
            .sql
            .split(" LIMIT ")
            .next()
            .unwrap_or(check.sql)
            .to_string(),
        _ => check.sql.to_string(),
    };
    let mut want = oracle(&oracle_sql)
        .await
        .map_err(|e| fail(format!("the oracle failed: {e}")))?;
    let mut got = got;
    match check.compare {
        Compare::Ordered => {}
        Compare::Rows => {
            got.sort();
            want.sort();
        }
        Compare::AnyOf => {
            let limit: usize = check
                .sql
                .rsplit(" LIMIT ")
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            let expected = limit.min(want.len());
            if got.len() != expected || got.iter().any(|r| !want.contains(r)) {
                return Err(fail(format!(
                    "expected {expected} of {want:?}\n  got {got:?}"
                )));
            }
            return Ok(());
        }
    }
    if got == want {
        Ok(())
    } else {
        // The plan shows what was sent to the source.
        let plan = crate::slt::try_session_rows(session, &format!("EXPLAIN {sql}"))
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| r.join("  "))
                    .collect::<Vec<_>>()
                    .join("\n    ")
            })
            .unwrap_or_else(|e| format!("(EXPLAIN failed: {e})"));
        Err(fail(format!(
            "expected {want:?}\n  got      {got:?}\n  plan:\n    {plan}"
        )))
    }
}

/// Sixteen scans of `table` at once through one session: each must return
/// every row.
///
/// # Errors
/// A sentence naming the connector and what went wrong.
pub async fn concurrent_scans(
    connector: &str,
    session: &Session,
    table: &str,
) -> Result<(), String> {
    let sql = format!("SELECT id, qty, amount FROM {table}");
    let mut want = oracle("SELECT id, qty, amount FROM {t}").await?;
    want.sort();
    let scans = (0..16).map(|_| crate::slt::try_session_rows(session, &sql));
    for (n, answer) in futures::future::join_all(scans)
        .await
        .into_iter()
        .enumerate()
    {
        let mut got = answer.map_err(|e| {
            format!("conformance: connector '{connector}' fails 'concurrent_scans': scan {n} of 16 failed: {e}")
        })?;
        got.sort();
        if got != want {
            return Err(format!(
                "conformance: connector '{connector}' fails 'concurrent_scans': scan {n} of 16 returned {} rows, not the {} of the table",
                got.len(),
                want.len()
            ));
        }
    }
    Ok(())
}

/// `EXPLAIN` of a filtered scan names the filter in the physical plan:
/// either the scan says it sends it to the source, or a filter above the
/// scan applies it; a filter that vanishes from the plan is neither.
///
/// # Errors
/// A sentence naming the connector, with the plan.
pub async fn explain_names_pushed(
    connector: &str,
    session: &Session,
    table: &str,
) -> Result<(), String> {
    let sql = format!("EXPLAIN SELECT id FROM {table} WHERE qty = 42");
    let rows = crate::slt::try_session_rows(session, &sql)
        .await
        .map_err(|e| format!("conformance: connector '{connector}': {sql} failed: {e}"))?;
    let physical: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == "physical_plan").collect();
    if physical.iter().any(|r| r.iter().any(|c| c.contains("42"))) {
        Ok(())
    } else {
        Err(format!(
            "conformance: connector '{connector}' fails 'explain_names_pushed': the physical plan does not show the filter qty = 42:\n{rows:?}"
        ))
    }
}

/// A scan dropped after its first batch (a cancelled query) leaves the
/// source usable: the next query, within ten seconds, answers in full.
///
/// # Errors
/// A sentence naming the connector and what went wrong.
pub async fn cancelled_scan(connector: &str, session: &Session, table: &str) -> Result<(), String> {
    use futures::StreamExt;
    let fail = |detail: String| {
        format!("conformance: connector '{connector}' fails 'cancelled_scan': {detail}")
    };
    // A join of the table with itself, so the scan has more than one batch to give.
    let sql = format!("SELECT a.id, b.id, c.id FROM {table} a, {table} b, {table} c");
    let mut output = session
        .sql(&sql)
        .await
        .map_err(|e| fail(format!("the query did not start: {e}")))?;
    if let Some(Err(e)) = output.stream.next().await {
        return Err(fail(format!("the first batch failed: {e}")));
    }
    drop(output);
    let again = format!("SELECT count(*) FROM {table}");
    let rows = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        crate::slt::try_session_rows(session, &again),
    )
    .await
    .map_err(|_| fail("the next query did not answer within 10 s".into()))?
    .map_err(|e| fail(format!("the next query failed: {e}")))?;
    let want = oracle("SELECT count(*) FROM {t}").await?;
    if rows == want {
        Ok(())
    } else {
        Err(fail(format!(
            "the next query answered {rows:?}, not {want:?}"
        )))
    }
}
