//! Running a scenario: its sources checked, its preconditions, its workflow
//! and its assertions, each a criterion of the report with its evidence.

use bluelamp_connectors::openapi::OpenApiConfig;
use bluelamp_engine::{Config, Engine, Session, parse_statements};

use super::scenario::{Check, Expect, Scenario};
use crate::report::{Criterion, Outcome, Report, Subject, finish, sha256_hex};

/// Offending rows an assertion's evidence shows before counting the rest.
const ROWS_SHOWN: usize = 5;

/// Identifiers a workflow's evidence lists before counting the rest.
const IDENTIFIERS_SHOWN: usize = 20;

/// Runs `scenario` against the sources of `config`, reading and depositing
/// as `as_user` (default: the configuration's local user), whose policies
/// apply.
///
/// # Errors
/// A scenario source missing from the configuration, or an engine that
/// cannot start; what the systems do wrong is in the report instead.
pub async fn run(
    scenario: &Scenario,
    config: Config,
    as_user: Option<&str>,
) -> Result<Report, String> {
    for s in &scenario.sources {
        if !config.sources.iter().any(|c| c.name == s.name) {
            let names: Vec<&str> = config.sources.iter().map(|c| c.name.as_str()).collect();
            return Err(format!(
                "{}:{}: source '{}' is not in the configuration (its sources: {})",
                scenario.file,
                s.line,
                s.name,
                names.join(", ")
            ));
        }
    }
    let mut documents = vec![Subject {
        location: scenario.workflow_path.display().to_string(),
        sha256: sha256_hex(scenario.workflow.as_bytes()),
        title: Some("workflow".into()),
        version: None,
    }];
    let mut source_evidence = Vec::new();
    let mut source_problems = Vec::new();
    for s in &scenario.sources {
        let Some(source) = config.sources.iter().find(|c| c.name == s.name) else {
            continue;
        };
        let product = s
            .product
            .as_ref()
            .map(|p| format!(" {p}"))
            .unwrap_or_default();
        if source.kind == "openapi" {
            let options: Result<OpenApiConfig, _> = source.options();
            match options {
                Ok(options) => match crate::live::fetch_document(source, &options).await {
                    Ok((bytes, location, _)) => {
                        let mut subject = Subject::of(&location, &bytes);
                        if let Ok(doc) = bluelamp_connectors::openapi::spec::Document::parse(
                            &String::from_utf8_lossy(&bytes),
                        ) {
                            subject.describe(&doc.root);
                        }
                        source_evidence.push(format!(
                            "{} ({}{product}): openapi, document {location}, SHA-256 {}",
                            s.name, s.supplier, subject.sha256
                        ));
                        documents.push(subject);
                    }
                    Err(e) => source_problems.push(format!("{}: {e}", s.name)),
                },
                Err(e) => source_problems.push(format!("{}: {e}", s.name)),
            }
        } else {
            source_evidence.push(format!(
                "{} ({}{product}): {} (no interface document to hash)",
                s.name, s.supplier, source.kind
            ));
        }
    }
    let engine = Engine::start(config, &bluelamp_connectors::registry())
        .await
        .map_err(|e| e.to_string())?;
    let identity = engine.local_identity(as_user).map_err(|e| e.message)?;
    let reader = identity.user.clone();
    let session = engine.session(identity);
    // Every statement of the run is recorded with why it was made.
    crate::live::rows(
        &session,
        &format!(
            "SET bluelamp.purpose = '{}'",
            scenario.purpose.replace('\'', "''")
        ),
    )
    .await?;
    for s in &scenario.sources {
        let sql = format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{}'",
            s.name.replace('\'', "''")
        );
        match crate::live::rows(&session, &sql).await {
            Ok(rows)
                if rows
                    .first()
                    .and_then(|r| r.first())
                    .is_some_and(|n| n != "0") => {}
            Ok(_) => source_problems.push(format!(
                "{}: no tables (is the system down, or is user '{reader}' not granted it?)",
                s.name
            )),
            Err(e) => source_problems.push(format!("{}: {e}", s.name)),
        }
    }
    source_evidence.insert(
        0,
        format!(
            "run as user '{reader}', whose policies apply; purpose recorded: {}",
            scenario.purpose
        ),
    );
    let mut criteria = vec![if source_problems.is_empty() {
        Criterion::new(
            "interworking.sources",
            "Every source of the scenario answers, each from its supplier",
            Outcome::Pass,
            source_evidence,
        )
    } else {
        source_evidence.extend(source_problems);
        Criterion::new(
            "interworking.sources",
            "Every source of the scenario answers, each from its supplier",
            Outcome::Fail,
            source_evidence,
        )
    }];
    // Preconditions: the data must give the workflow something to show.
    let mut met = Vec::new();
    let mut unmet = Vec::new();
    let mut broken = Vec::new();
    for check in &scenario.preconditions {
        match evaluate(&session, check).await {
            Ok((true, evidence)) => met.push(format!("{}: {evidence}", check.title)),
            Ok((false, evidence)) => unmet.push(format!("{}: {evidence}", check.title)),
            Err(e) => broken.push(format!("{}: {e}", check.title)),
        }
    }
    let ready = unmet.is_empty() && broken.is_empty();
    let title = "Before the workflow, the data gives it something to show";
    criteria.push(if !broken.is_empty() {
        Criterion::new("interworking.preconditions", title, Outcome::Fail, broken)
    } else if !unmet.is_empty() {
        unmet.push("the workflow was not run: on this data it would prove nothing, so the scenario cannot be certified here".into());
        Criterion::new("interworking.preconditions", title, Outcome::NotApplicable, unmet)
    } else if met.is_empty() {
        Criterion::new(
            "interworking.preconditions",
            title,
            Outcome::Pass,
            vec!["the scenario states none".into()],
        )
    } else {
        Criterion::new("interworking.preconditions", title, Outcome::Pass, met)
    });
    if !ready {
        criteria.push(Criterion::new(
            "interworking.workflow",
            "The workflow runs, and every deposit is stored",
            Outcome::NotApplicable,
            vec!["not run: a precondition does not hold".into()],
        ));
        for check in &scenario.assertions {
            criteria.push(Criterion::new(
                &format!("assert.{}", check.id.trim_start_matches("assert.")),
                &check.title,
                Outcome::NotApplicable,
                vec!["not checked: the workflow was not run".into()],
            ));
        }
    } else {
        criteria.push(workflow(&session, scenario).await);
        for check in &scenario.assertions {
            let id = format!("assert.{}", check.id.trim_start_matches("assert."));
            let (outcome, evidence) = match evaluate(&session, check).await {
                Ok((true, evidence)) => (Outcome::Pass, vec![evidence]),
                Ok((false, evidence)) => (Outcome::Fail, vec![evidence]),
                Err(e) => (Outcome::Fail, vec![format!("the query failed: {e}")]),
            };
            criteria.push(Criterion::new(&id, &check.title, outcome, evidence));
        }
    }
    let subject = Subject {
        location: scenario.file.clone(),
        sha256: scenario.sha256.clone(),
        title: Some(scenario.name.clone()),
        version: None,
    };
    let mut report = finish("interworking", 3, subject, criteria);
    report.documents = documents;
    Ok(report)
}

/// Runs the workflow's statements in order, stopping at the first error,
/// and reports each statement's rows and every deposit's outcome.
async fn workflow(session: &Session, scenario: &Scenario) -> Criterion {
    let title = "The workflow runs, and every deposit is stored";
    let file = scenario.workflow_path.display();
    let mut evidence = Vec::new();
    let statements = match parse_statements(&scenario.workflow) {
        Ok(s) => s,
        Err(e) => {
            return Criterion::new(
                "interworking.workflow",
                title,
                Outcome::Fail,
                vec![format!("{file}: {}", e.message)],
            );
        }
    };
    let mut failed = false;
    for (n, statement) in statements.iter().enumerate() {
        let sql = statement.to_string();
        let summary: String = sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ");
        match crate::live::rows(session, &sql).await {
            Ok(rows) if statement.is_insert() => {
                let count = rows
                    .first()
                    .and_then(|r| r.first())
                    .cloned()
                    .unwrap_or_default();
                evidence.push(format!(
                    "statement {}: {summary} ...: {count} rows deposited",
                    n + 1
                ));
            }
            Ok(rows) => evidence.push(format!(
                "statement {}: {summary} ...: {} rows",
                n + 1,
                rows.len()
            )),
            Err(e) => {
                evidence.push(format!("statement {} ({summary} ...) failed: {e}", n + 1));
                failed = true;
                break;
            }
        }
    }
    // Every deposit, by target and outcome, and the identifiers assigned.
    let outcomes = crate::live::rows(
        session,
        "SELECT target, outcome, count(*) FROM bluelamp.deposits GROUP BY target, outcome ORDER BY target, outcome",
    )
    .await;
    let mut deposited = 0usize;
    match outcomes {
        Ok(rows) => {
            for row in &rows {
                let n: usize = row[2].parse().unwrap_or(0);
                deposited += n;
                evidence.push(format!("deposits into {}: {n} {}", row[0], row[1]));
                if row[1] != "stored" && row[1] != "replayed" {
                    failed = true;
                }
            }
        }
        Err(e) => {
            evidence.push(format!("cannot read bluelamp.deposits: {e}"));
            failed = true;
        }
    }
    if let Ok(bad) = crate::live::rows(
        session,
        "SELECT target, \"row\", outcome, message FROM bluelamp.deposits WHERE outcome NOT IN ('stored', 'replayed') ORDER BY statement, \"row\" LIMIT 1",
    )
    .await
        && let Some(row) = bad.first()
    {
        evidence.push(format!(
            "first deposit not stored: {} row {}: {}: {}",
            row[0], row[1], row[2], row[3]
        ));
    }
    if let Ok(ids) = crate::live::rows(
        session,
        "SELECT target, identifier FROM bluelamp.deposits WHERE identifier IS NOT NULL ORDER BY statement, \"row\"",
    )
    .await
        && !ids.is_empty()
    {
        let mut by_target: Vec<(String, Vec<String>)> = Vec::new();
        for row in ids {
            match by_target.iter_mut().find(|(t, _)| *t == row[0]) {
                Some((_, list)) => list.push(row[1].clone()),
                None => by_target.push((row[0].clone(), vec![row[1].clone()])),
            }
        }
        for (target, list) in by_target {
            let mut shown: Vec<String> = list.iter().take(IDENTIFIERS_SHOWN).cloned().collect();
            if list.len() > IDENTIFIERS_SHOWN {
                shown.push(format!("and {} more", list.len() - IDENTIFIERS_SHOWN));
            }
            evidence.push(format!("identifiers assigned by {target}: {}", shown.join(", ")));
        }
    }
    if deposited == 0 && !failed {
        evidence
            .push("the workflow deposited nothing, so nothing shows the systems interwork".into());
        failed = true;
    }
    Criterion::new(
        "interworking.workflow",
        title,
        if failed { Outcome::Fail } else { Outcome::Pass },
        evidence,
    )
}

/// Runs one check: whether it holds, and what its query returned.
async fn evaluate(session: &Session, check: &Check) -> Result<(bool, String), String> {
    let rows = crate::live::rows(session, &check.sql).await?;
    let shown = |rows: &[Vec<String>]| {
        let mut lines: Vec<String> = rows.iter().take(ROWS_SHOWN).map(|r| r.join(", ")).collect();
        if rows.len() > ROWS_SHOWN {
            lines.push(format!("and {} more", rows.len() - ROWS_SHOWN));
        }
        lines.join("; ")
    };
    Ok(match check.expect {
        Expect::NoRows if rows.is_empty() => (true, "no rows, as expected".into()),
        Expect::NoRows => (
            false,
            format!(
                "{} rows where none were expected: {}",
                rows.len(),
                shown(&rows)
            ),
        ),
        Expect::Rows if rows.is_empty() => (false, "no rows, where some were expected".into()),
        Expect::Rows => (
            true,
            format!("{} rows, e.g. {}", rows.len(), shown(&rows[..1])),
        ),
        Expect::True => match rows.as_slice() {
            [row] if row.len() == 1 && row[0] == "true" => (true, "true".into()),
            _ => (false, format!("expected true, got {}", shown(&rows))),
        },
    })
}
