//! The interactive `bluelamp sql` prompt: rustyline with persistent history,
//! multi-line statements ended by `;`, completion of keywords and names, and
//! backslash meta-commands.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use bluelamp_engine::Engine;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper};
use tokio::runtime::Runtime;

use crate::output::Format;
use crate::runner::Runner;

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "JOIN",
    "LEFT JOIN",
    "RIGHT JOIN",
    "FULL JOIN",
    "INNER JOIN",
    "ON",
    "USING",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS NULL",
    "IS NOT NULL",
    "LIKE",
    "ILIKE",
    "BETWEEN",
    "DISTINCT",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "WITH",
    "UNION",
    "UNION ALL",
    "EXCEPT",
    "INTERSECT",
    "INSERT INTO",
    "VALUES",
    "EXPLAIN",
    "EXPLAIN ANALYZE",
    "COPY",
    "TO",
    "SHOW",
    "SET",
    "DESCRIBE",
    "CREATE VIEW",
    "DROP VIEW",
    "CAST",
    "DATE",
    "TIMESTAMP",
    "INTERVAL",
    "NULL",
    "TRUE",
    "FALSE",
    "ASC",
    "DESC",
    "NULLS FIRST",
    "NULLS LAST",
    "OVER",
    "PARTITION BY",
];

/// What `\queries` runs: the running statements the user may see.
const RUNNING_QUERIES: &str = "SELECT id, \"user\", client, elapsed_ms, rows, requests, \
     records_fetched, sql FROM bluelamp.queries WHERE state = 'running' ORDER BY started";

const HELP: &str = "\
Statements end with ';' and may span lines. Tab completes keywords, sources, tables, columns.
  \\d              list tables
  \\d TABLE        describe a table's columns
  \\dn             list sources and their status
  \\queries        running statements you may see (all, for an operator);
                   stop one with SELECT bluelamp.cancel_query('ID');
  \\timing         toggle elapsed-time display
  \\format FORMAT  table | csv | json | ndjson
  \\?              this help
  \\q              quit (or Ctrl-D)
Ctrl-C cancels a running query; at the prompt it clears the line.";

/// Words offered by tab completion; refreshed after each statement.
#[derive(Default)]
struct Names {
    words: Vec<String>,
}

struct SqlHelper {
    names: Arc<RwLock<Names>>,
}

impl Helper for SqlHelper {}
impl Hinter for SqlHelper {
    type Hint = String;
}
impl Highlighter for SqlHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}

impl Validator for SqlHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let input = ctx.input().trim();
        if input.is_empty() || input.starts_with('\\') || input.ends_with(';') {
            Ok(ValidationResult::Valid(None))
        } else {
            Ok(ValidationResult::Incomplete)
        }
    }
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .map_or(0, |i| i + 1);
        let word = &line[start..pos];
        if word.is_empty() {
            return Ok((start, Vec::new()));
        }
        let lower = word.to_ascii_lowercase();
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Pair> = names
            .words
            .iter()
            .filter(|w| w.to_ascii_lowercase().starts_with(&lower))
            .map(|w| Pair {
                display: w.clone(),
                replacement: w.clone(),
            })
            .collect();
        let upper = word.to_ascii_uppercase();
        out.extend(KEYWORDS.iter().filter(|k| k.starts_with(&upper)).map(|k| {
            // Keep the user's case.
            let text = if word.chars().any(|c| c.is_ascii_lowercase()) {
                k.to_ascii_lowercase()
            } else {
                (*k).to_string()
            };
            Pair {
                display: text.clone(),
                replacement: text,
            }
        }));
        out.sort_by(|a, b| a.display.cmp(&b.display));
        out.dedup_by(|a, b| a.display == b.display);
        Ok((start, out))
    }
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("BLUELAMP_HISTORY")
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|h| h.join(".bluelamp_history")))
}

/// Runs the prompt until `\q` or Ctrl-D.
///
/// # Errors
/// Only if the terminal cannot be used at all.
pub fn run(rt: &Runtime, engine: &Engine, mut runner: Runner) -> anyhow::Result<()> {
    let names = Arc::new(RwLock::new(Names::default()));
    let mut editor: Editor<SqlHelper, DefaultHistory> = Editor::new()?;
    editor.set_helper(Some(SqlHelper {
        names: Arc::clone(&names),
    }));
    let history = history_path();
    if let Some(path) = &history {
        // A missing history file is normal on first use.
        let _ = editor.load_history(path);
    }
    rt.block_on(refresh_names(&runner, &names));
    println!(
        "bluelamp {} — type \\? for help, \\q to quit",
        env!("CARGO_PKG_VERSION")
    );
    print_sources(engine, true);

    loop {
        match editor.readline("bluelamp> ") {
            Ok(line) => {
                let input = line.trim();
                if input.is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(input);
                if let Some(history) = &history {
                    let _ = editor.save_history(history);
                }
                if let Some(meta) = input.strip_prefix('\\') {
                    match meta_command(rt, engine, &mut runner, meta) {
                        Ok(true) => break,
                        Ok(false) => {}
                        Err(e) => eprintln!("error: {e}"),
                    }
                    continue;
                }
                if let Err(e) = rt.block_on(runner.run_text(input)) {
                    eprintln!("error: {e}");
                }
                rt.block_on(refresh_names(&runner, &names));
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Handles `\x` commands; returns true to quit.
fn meta_command(
    rt: &Runtime,
    engine: &Engine,
    runner: &mut Runner,
    meta: &str,
) -> anyhow::Result<bool> {
    let mut parts = meta
        .trim()
        .trim_end_matches(';')
        .splitn(2, char::is_whitespace);
    let command = parts.next().unwrap_or_default();
    let argument = parts.next().map(str::trim).filter(|a| !a.is_empty());
    match (command, argument) {
        ("q", _) => return Ok(true),
        ("?" | "h" | "help", _) => println!("{HELP}"),
        ("timing", _) => {
            runner.timing = !runner.timing;
            println!("timing is {}", if runner.timing { "on" } else { "off" });
        }
        ("format", None) => println!("format is {:?}", runner.format),
        ("format", Some(f)) => {
            runner.format = f.parse::<Format>().map_err(anyhow::Error::msg)?;
        }
        ("dn", _) => print_sources(engine, false),
        ("queries", _) => {
            rt.block_on(runner.run_text(RUNNING_QUERIES))?;
        }
        ("d", None) => {
            let tables = rt.block_on(runner.session().table_names());
            let width = tables
                .iter()
                .map(|(s, _)| s.len())
                .max()
                .unwrap_or(6)
                .max(6);
            let copies = engine.accelerations();
            println!("{:width$}  table", "schema");
            for (schema, table) in tables {
                if schema != "information_schema" {
                    // An accelerated table says how fresh its copy is.
                    let copy = copies
                        .iter()
                        .find(|a| a.source == schema && a.table == table)
                        .map(|a| format!("  ({})", freshness(a)))
                        .unwrap_or_default();
                    println!("{schema:width$}  {table}{copy}");
                }
            }
        }
        ("d", Some(table)) => {
            let schema = rt.block_on(runner.session().describe(table))?;
            let width = schema
                .fields()
                .iter()
                .map(|f| f.name().len())
                .max()
                .unwrap_or(6)
                .max(6);
            println!("{:width$}  {:24}  nullable", "column", "type");
            for field in schema.fields() {
                // A connector's note on a column (a path parameter's, say).
                let note = field
                    .metadata()
                    .get("bluelamp.note")
                    .map(|n| format!("  {n}"))
                    .unwrap_or_default();
                println!(
                    "{:width$}  {:24}  {:8}{note}",
                    field.name(),
                    field.data_type().to_string(),
                    if field.is_nullable() { "yes" } else { "no" }
                );
            }
            let mut parts = table.rsplit('.');
            let (name, source) = (parts.next(), parts.next());
            if let Some(copy) = engine
                .accelerations()
                .iter()
                .find(|a| Some(a.table.as_str()) == name && Some(a.source.as_str()) == source)
            {
                println!("accelerated: {}", freshness(copy));
                if let Some(change) = &copy.schema_change {
                    println!("  {change}");
                }
                if let Some(error) = &copy.last_error {
                    println!("  last refresh: {error}");
                }
            }
        }
        (other, _) => anyhow::bail!("unknown command \\{other}; \\? lists the commands"),
    }
    Ok(false)
}

/// How fresh an accelerated table's copy is, in a few words.
fn freshness(copy: &bluelamp_engine::accelerate::AccelerationStatus) -> String {
    let state = match copy.as_of {
        None => "no copy yet: the source answers".to_string(),
        Some(as_of) => format!(
            "copy of {} rows, {} old",
            copy.rows.unwrap_or(0),
            crate::output::age(as_of)
        ),
    };
    let failing = if copy.last_error.is_some() {
        ", last refresh failed"
    } else {
        ""
    };
    format!("{} {}, {state}{failing}", copy.mode, copy.storage)
}

/// Prints sources; with `only_problems`, just those that are down.
pub fn print_sources(engine: &Engine, only_problems: bool) {
    let copies = engine.accelerations();
    for s in engine.sources() {
        if only_problems && s.last_error.is_none() {
            continue;
        }
        let ours: Vec<_> = copies.iter().filter(|a| a.source == s.name).collect();
        let accelerated = match ours.iter().filter_map(|a| a.as_of).min() {
            _ if ours.is_empty() => String::new(),
            Some(oldest) => format!(
                "; {} accelerated, oldest copy {} old",
                ours.len(),
                crate::output::age(oldest)
            ),
            None => format!("; {} accelerated, no copy yet", ours.len()),
        };
        match &s.last_error {
            None => println!(
                "{:12} {:10} up    {} table{}{accelerated}",
                s.name,
                s.kind,
                s.tables,
                if s.tables == 1 { "" } else { "s" }
            ),
            Some(e) => println!("{:12} {:10} DOWN  {e}", s.name, s.kind),
        }
    }
}

async fn refresh_names(runner: &Runner, names: &Arc<RwLock<Names>>) {
    let tables = runner.session().table_names().await;
    let mut words: Vec<String> = Vec::new();
    for (schema, table) in &tables {
        words.push(schema.clone());
        words.push(table.clone());
        words.push(format!("{schema}.{table}"));
    }
    // Describing a table may contact its source; bound the whole refresh so the
    // prompt never waits on a slow system.
    let session = runner.session();
    let describe_all = futures::future::join_all(
        tables
            .iter()
            .filter(|(s, _)| s != "information_schema")
            .map(|(schema, table)| session.describe_qualified(schema, table)),
    );
    if let Ok(schemas) =
        tokio::time::timeout(std::time::Duration::from_millis(500), describe_all).await
    {
        for schema in schemas.into_iter().flatten() {
            words.extend(schema.fields().iter().map(|f| f.name().clone()));
        }
    }
    words.sort();
    words.dedup();
    names.write().unwrap_or_else(|p| p.into_inner()).words = words;
}
