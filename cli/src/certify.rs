//! `bluelamp certify`: the interoperability tiers as checks with evidence
//! (see the `bluelamp-certify` crate). Reports go to standard output as
//! Markdown, or as JSON with `--json`; the exit code is 1 when a criterion
//! fails.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use tokio::runtime::Runtime;

/// `bluelamp certify ...`.
#[derive(Subcommand)]
pub enum CertifyCommand {
    /// Tier 1: check a supplier's declaration of intent (TOML) and print its
    /// register entry; each mistake names the file, line and field.
    Intent {
        /// The declaration.
        file: PathBuf,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Tier 2: check a supplier's published interface. With --spec, the
    /// criteria that need only the document.
    Published {
        /// The OpenAPI document (JSON or YAML, 3.0 or 3.1; may refer to
        /// sibling files).
        #[arg(long)]
        spec: PathBuf,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Where reports go.
#[derive(Args)]
pub struct OutputArgs {
    /// Print JSON (for registers) instead of Markdown.
    #[arg(long)]
    json: bool,
    /// Also write the report to this file (JSON if it ends in .json,
    /// Markdown otherwise).
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

impl OutputArgs {
    fn emit(&self, markdown: &str, json: &str) -> anyhow::Result<()> {
        println!("{}", if self.json { json } else { markdown });
        if let Some(path) = &self.output {
            let text = if path.extension().is_some_and(|e| e == "json") {
                json
            } else {
                markdown
            };
            std::fs::write(path, text)
                .with_context(|| format!("cannot write the report to {}", path.display()))?;
        }
        Ok(())
    }
}

/// Runs one `certify` command.
///
/// # Errors
/// A file that cannot be read or written.
pub fn run(rt: &Runtime, command: CertifyCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertifyCommand::Intent { file, output } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let today = chrono::Utc::now().date_naive();
            match bluelamp_certify::intent::check(&text, &file.display().to_string(), today) {
                Ok(entry) => {
                    output.emit(&entry.to_markdown(), &serde_json::to_string_pretty(&entry)?)?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!("error: {e}");
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        CertifyCommand::Published { spec, output } => {
            let report = rt
                .block_on(bluelamp_certify::published::check_document(&spec))
                .map_err(anyhow::Error::msg)?;
            output.emit(&report.to_markdown(), &report.to_json()?)?;
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
