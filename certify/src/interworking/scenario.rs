//! The scenario file: its TOML as written, checked into a [`Scenario`] with
//! every mistake named by file, line and field, and its workflow read and
//! checked to deposit.

use std::path::{Path, PathBuf};

use bluelamp_engine::parse_statements;
use serde::Deserialize;
use toml::Spanned;

use crate::located::{FileError, from_toml, line_of};
use crate::report::sha256_hex;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    purpose: Option<String>,
    workflow: Spanned<String>,
    #[serde(default, rename = "source")]
    sources: Vec<RawSource>,
    #[serde(default, rename = "precondition")]
    preconditions: Vec<RawCheck>,
    #[serde(default, rename = "assert")]
    assertions: Vec<RawCheck>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    supplier: Spanned<String>,
    #[serde(default)]
    product: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    #[serde(default)]
    id: Option<Spanned<String>>,
    title: Spanned<String>,
    sql: Spanned<String>,
    expect: Spanned<String>,
}

/// What a check's query must return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `no rows`: every row returned is an offender.
    NoRows,
    /// `rows`: at least one row.
    Rows,
    /// `true`: one row of one column, `true`.
    True,
}

impl Expect {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "no rows" => Some(Self::NoRows),
            "rows" => Some(Self::Rows),
            "true" => Some(Self::True),
            _ => None,
        }
    }
}

/// A source the scenario uses, and whose product it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioSource {
    /// The source's name in the configuration.
    pub name: String,
    /// The supplier whose product it is.
    pub supplier: String,
    /// The product, where the scenario names it.
    pub product: Option<String>,
    /// Where the scenario names it.
    pub(super) line: usize,
}

/// A precondition or an assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// A stable identifier (`crn-in-cad`; `assert.N` when none is given).
    pub id: String,
    /// What it shows, in a sentence.
    pub title: String,
    /// One SQL query.
    pub sql: String,
    /// What the query must return.
    pub expect: Expect,
}

/// A checked scenario file and its workflow.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file, as given.
    pub file: String,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// Its name.
    pub name: String,
    /// What it shows, where it says.
    pub description: Option<String>,
    /// Recorded as the purpose of every statement in the audit trail.
    pub purpose: String,
    /// The sources, two or more, from two or more suppliers.
    pub sources: Vec<ScenarioSource>,
    /// The workflow's file, resolved against the scenario's folder.
    pub workflow_path: PathBuf,
    /// The workflow's SQL.
    pub workflow: String,
    /// Checked before the workflow runs.
    pub preconditions: Vec<Check>,
    /// Checked after it.
    pub assertions: Vec<Check>,
}

/// Reads and checks the scenario at `path` and its workflow.
///
/// # Errors
/// Every mistake found, each naming the file, line and field.
pub fn load(path: &Path) -> Result<Scenario, Vec<FileError>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![FileError {
            file: file.clone(),
            line: 1,
            field: "scenario".into(),
            message: format!("cannot read it: {e}"),
        }]
    })?;
    let folder = path.parent().unwrap_or(Path::new("."));
    parse(&text, &file, folder)
}

/// Checks a scenario's `text`, read from `file`; its workflow is read
/// relative to `folder`.
///
/// # Errors
/// Every mistake found, each naming the file, line and field.
pub fn parse(text: &str, file: &str, folder: &Path) -> Result<Scenario, Vec<FileError>> {
    let raw: Raw = from_toml(text, file, "scenario").map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let error = |span: std::ops::Range<usize>, field: &str, message: String| FileError {
        file: file.to_string(),
        line: line_of(text, span.start),
        field: field.to_string(),
        message,
    };
    if raw.name.get_ref().trim().is_empty() {
        errors.push(error(raw.name.span(), "name", "is empty".into()));
    }
    // The sources: two or more, named once each, from two or more suppliers.
    let mut sources: Vec<ScenarioSource> = Vec::new();
    for (i, s) in raw.sources.iter().enumerate() {
        let name = s.name.get_ref().trim().to_string();
        let supplier = s.supplier.get_ref().trim().to_string();
        if name.is_empty() {
            errors.push(error(
                s.name.span(),
                &format!("source[{}].name", i + 1),
                "is empty".into(),
            ));
        } else if sources.iter().any(|o| o.name == name) {
            errors.push(error(
                s.name.span(),
                &format!("source[{}].name", i + 1),
                format!("'{name}' is named twice"),
            ));
        }
        if supplier.is_empty() {
            errors.push(error(
                s.supplier.span(),
                &format!("source[{}].supplier", i + 1),
                "is empty: name the supplier whose product the source is".into(),
            ));
        }
        sources.push(ScenarioSource {
            name,
            supplier,
            product: s.product.clone(),
            line: line_of(text, s.name.span().start),
        });
    }
    let end = line_of(text, text.len());
    if sources.len() < 2 {
        errors.push(FileError {
            file: file.to_string(),
            line: end,
            field: "source".into(),
            message: format!(
                "{} [[source]] given: tier 3 is two or more products interworking, so name at least two",
                sources.len()
            ),
        });
    } else {
        let mut suppliers: Vec<&str> = sources.iter().map(|s| s.supplier.as_str()).collect();
        suppliers.sort_unstable();
        suppliers.dedup();
        if suppliers.len() < 2
            && let Some(first) = raw.sources.first()
        {
            errors.push(error(
                first.supplier.span(),
                "source[1].supplier",
                format!(
                    "every source is from '{}': tier 3 is products of different suppliers interworking",
                    suppliers.join("")
                ),
            ));
        }
    }
    // The workflow: a SQL file that deposits.
    let workflow_path = folder.join(raw.workflow.get_ref().trim());
    let workflow = match std::fs::read_to_string(&workflow_path) {
        Ok(sql) => sql,
        Err(e) => {
            errors.push(error(
                raw.workflow.span(),
                "workflow",
                format!("cannot read {}: {e}", workflow_path.display()),
            ));
            String::new()
        }
    };
    if !workflow.is_empty() {
        match parse_statements(&workflow) {
            Ok(statements) if !statements.iter().any(|s| s.is_insert()) => {
                errors.push(error(
                    raw.workflow.span(),
                    "workflow",
                    format!(
                        "{} has no INSERT: a workflow deposits into one system what it retrieved from another",
                        workflow_path.display()
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) => errors.push(FileError {
                file: workflow_path.display().to_string(),
                line: sql_line(&e.message).unwrap_or(1),
                field: "workflow".into(),
                message: e.message,
            }),
        }
    }
    // The checks: one query each, an expectation we know, ids unique.
    let checks = |raws: &[RawCheck], table: &str, errors: &mut Vec<FileError>| {
        let mut out: Vec<Check> = Vec::new();
        for (i, c) in raws.iter().enumerate() {
            let field = |name: &str| format!("{table}[{}].{name}", i + 1);
            let id = match &c.id {
                Some(id) if id.get_ref().trim().is_empty() => {
                    errors.push(error(id.span(), &field("id"), "is empty".into()));
                    String::new()
                }
                Some(id) => id.get_ref().trim().to_string(),
                None => format!("{table}.{}", i + 1),
            };
            if out.iter().any(|o| o.id == id) {
                let span = c.id.as_ref().map_or(c.title.span(), Spanned::span);
                errors.push(error(span, &field("id"), format!("'{id}' is used twice")));
            }
            if c.title.get_ref().trim().is_empty() {
                errors.push(error(c.title.span(), &field("title"), "is empty".into()));
            }
            match parse_statements(c.sql.get_ref()) {
                Ok(statements) if statements.len() == 1 && !statements[0].is_insert() => {}
                Ok(statements) if statements.len() == 1 => errors.push(error(
                    c.sql.span(),
                    &field("sql"),
                    "is an INSERT: a check only reads; deposits belong in the workflow".into(),
                )),
                Ok(statements) => errors.push(error(
                    c.sql.span(),
                    &field("sql"),
                    format!(
                        "holds {} statements: give exactly one query",
                        statements.len()
                    ),
                )),
                Err(e) => errors.push(error(c.sql.span(), &field("sql"), e.message)),
            }
            let expect = Expect::parse(c.expect.get_ref());
            if expect.is_none() {
                errors.push(error(
                    c.expect.span(),
                    &field("expect"),
                    format!(
                        "'{}' is not an expectation: use \"no rows\", \"rows\" or \"true\"",
                        c.expect.get_ref()
                    ),
                ));
            }
            out.push(Check {
                id,
                title: c.title.get_ref().trim().to_string(),
                sql: c.sql.get_ref().clone(),
                expect: expect.unwrap_or(Expect::NoRows),
            });
        }
        out
    };
    let preconditions = checks(&raw.preconditions, "precondition", &mut errors);
    let assertions = checks(&raw.assertions, "assert", &mut errors);
    if assertions.is_empty() {
        errors.push(FileError {
            file: file.to_string(),
            line: end,
            field: "assert".into(),
            message: "no [[assert]]: say what must hold after the workflow, as SQL".into(),
        });
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.file != file, e.line));
        return Err(errors);
    }
    let name = raw.name.into_inner().trim().to_string();
    Ok(Scenario {
        file: file.to_string(),
        sha256: sha256_hex(text.as_bytes()),
        purpose: raw
            .purpose
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| format!("interoperability certification (tier 3): {name}")),
        name,
        description: raw.description,
        sources,
        workflow_path,
        workflow,
        preconditions,
        assertions,
    })
}

/// The line a DataFusion parser message names (`... at Line: 3, Column: 5`).
fn sql_line(message: &str) -> Option<usize> {
    let (_, rest) = message.split_once("Line: ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    const GOOD: &str = r#"name = "C&C and RMS"
workflow = "flow.sql"

[[source]]
name = "cad"
supplier = "Acme"

[[source]]
name = "rms"
supplier = "Bolt"

[[precondition]]
title = "work to do"
sql = "SELECT 1"
expect = "rows"

[[assert]]
id = "done"
title = "all done"
sql = "SELECT 1 WHERE false"
expect = "no rows"
"#;

    fn folder(sql: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flow.sql"), sql).unwrap();
        dir
    }

    fn errors(text: &str, sql: &str) -> Vec<String> {
        let dir = folder(sql);
        parse(text, "s.toml", dir.path())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const FLOW: &str = "INSERT INTO rms.crimes (a) SELECT 1;\nSELECT 2;";

    #[test]
    fn a_good_scenario_loads() {
        let dir = folder(FLOW);
        let s = parse(GOOD, "s.toml", dir.path()).unwrap();
        assert_eq!(s.sources.len(), 2);
        assert_eq!(s.assertions[0].id, "done");
        assert_eq!(s.preconditions[0].id, "precondition.1");
        assert_eq!(s.preconditions[0].expect, Expect::Rows);
        assert_eq!(s.sha256, sha256_hex(GOOD.as_bytes()));
        assert!(s.purpose.contains("C&C and RMS"));
    }

    #[test]
    fn mistakes_name_file_line_and_field() {
        let bad = GOOD
            .replace("supplier = \"Bolt\"", "supplier = \"Acme\"")
            .replace("expect = \"rows\"", "expect = \"lots\"")
            .replace("SELECT 1 WHERE false", "SELEC 1");
        assert_eq!(
            errors(&bad, FLOW),
            [
                "s.toml:6: source[1].supplier: every source is from 'Acme': tier 3 is products of different suppliers interworking",
                "s.toml:15: precondition[1].expect: 'lots' is not an expectation: use \"no rows\", \"rows\" or \"true\"",
                "s.toml:20: assert[1].sql: SQL syntax error: Expected: an SQL statement, found: SELEC at Line: 1, Column: 1",
            ]
        );
        let unknown = GOOD.replace(
            "workflow = \"flow.sql\"",
            "workflow = \"flow.sql\"\nsteps = 3",
        );
        let e = errors(&unknown, FLOW);
        assert!(e[0].starts_with("s.toml:3: "), "{e:?}");
        assert!(e[0].contains("steps"), "{e:?}");
    }

    #[test]
    fn the_workflow_must_parse_and_deposit() {
        let e = errors(GOOD, "SELECT 1;\nSELECT 2;");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("s.toml:2: workflow: "), "{e:?}");
        assert!(e[0].contains("has no INSERT"), "{e:?}");
        let e = errors(GOOD, "INSERT INTO t SELECT 1;\n\nSELEKT 2;");
        assert!(e[0].contains("flow.sql:3: workflow: "), "{e:?}");
        let missing = GOOD.replace("flow.sql", "nowhere.sql");
        let e = errors(&missing, FLOW);
        assert!(
            e[0].starts_with("s.toml:2: workflow: cannot read "),
            "{e:?}"
        );
    }

    #[test]
    fn one_source_or_no_assertion_is_not_a_scenario() {
        let one = GOOD.replace("[[source]]\nname = \"rms\"\nsupplier = \"Bolt\"\n", "");
        let e = errors(&one, FLOW);
        assert!(
            e.iter().any(|e| e.contains("source: 1 [[source]] given")),
            "{e:?}"
        );
        let start = GOOD.find("[[assert]]").unwrap();
        let e = errors(&GOOD[..start], FLOW);
        assert!(
            e.iter().any(|e| e.contains("assert: no [[assert]]")),
            "{e:?}"
        );
        let insert = GOOD.replace("SELECT 1 WHERE false", "INSERT INTO t SELECT 1");
        let e = errors(&insert, FLOW);
        assert!(e[0].contains("is an INSERT"), "{e:?}");
    }
}
