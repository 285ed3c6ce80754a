//! `bluelamp check`: connect to every source and print one line each, without
//! stopping at the first failure.

use std::path::Path;
use std::process::ExitCode;

use bluelamp_engine::{Config, Engine, SourceState};
use tokio::runtime::Runtime;

/// Prints each source's kind, status, table count and error; fails if any is down.
///
/// # Errors
/// A config that cannot be loaded.
pub fn run(rt: &Runtime, path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    if config.sources.is_empty() {
        println!("{}: no [[source]] tables", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let engine = rt.block_on(Engine::start(config, &bluelamp_connectors::registry()))?;
    let statuses = engine.sources();
    let name_width = statuses
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(6);
    let kind_width = statuses
        .iter()
        .map(|s| s.kind.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut failed = 0;
    for s in &statuses {
        match (&s.state, &s.last_error) {
            (SourceState::Up, _) => {
                let readable = s.tables.saturating_sub(s.insert_only);
                let plural = |n: usize| if n == 1 { "" } else { "s" };
                let insert_only = match s.insert_only {
                    0 => String::new(),
                    n => format!(", {n} insert-only table{}", plural(n)),
                };
                println!(
                    "{:name_width$}  {:kind_width$}  ok      {readable} table{}{insert_only}",
                    s.name,
                    s.kind,
                    plural(readable)
                );
            }
            (SourceState::Down, error) => {
                failed += 1;
                println!(
                    "{:name_width$}  {:kind_width$}  FAILED  {}",
                    s.name,
                    s.kind,
                    error.as_deref().unwrap_or("unknown error")
                );
            }
        }
        for warning in &s.warnings {
            println!("{:name_width$}  {:kind_width$}  warning {warning}", "", "");
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} sources failed", statuses.len());
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}
