//! `bluelamp audit verify` and `bluelamp audit search`: checking and reading
//! the audit trail a configuration's `[audit] path` names.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bluelamp_engine::Config;
use bluelamp_engine::audit::{SearchFilter, search, verify};
use clap::{Args, Subcommand};

/// `bluelamp audit ...`.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the trail's hash chain: exit 0 if intact, 1 naming the first
    /// broken record (edited, deleted, inserted, reordered or cut off).
    Verify(TrailArgs),
    /// Print the records that match, one JSON line each, oldest first.
    Search {
        #[command(flatten)]
        trail: TrailArgs,
        /// Only this user's records.
        #[arg(long)]
        user: Option<String>,
        /// Only records naming this table (`source.table`).
        #[arg(long)]
        table: Option<String>,
        /// Only records whose stated purpose contains this text.
        #[arg(long)]
        purpose: Option<String>,
        /// Only records at or after this time (`2026-12-03` or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only records before this time.
        #[arg(long)]
        until: Option<String>,
    },
}

/// Which trail: a path, or the one a configuration names.
#[derive(Args)]
pub struct TrailArgs {
    /// The trail's file (default: `[audit] path` of the configuration).
    path: Option<PathBuf>,
    /// The configuration file whose `[audit] path` to use.
    #[arg(long, short = 'C', env = "BLUELAMP_CONFIG")]
    config: Option<PathBuf>,
}

impl TrailArgs {
    fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.path {
            return Ok(path.clone());
        }
        let config = self
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("bluelamp.toml"));
        let loaded = Config::load(&config)?;
        loaded.audit.path.with_context(|| {
            format!(
                "{} has no [audit] path; give the trail's file as an argument",
                config.display()
            )
        })
    }
}

/// Runs an audit subcommand.
///
/// # Errors
/// A trail that cannot be found or read.
pub fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify(trail) => {
            let path = trail.path()?;
            if !path.exists() {
                anyhow::bail!("there is no audit trail at {}", path.display());
            }
            match verify(&path) {
                Ok(records) => {
                    println!("{}: intact, {records} records", path.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(broken) => {
                    println!("BROKEN {broken}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::Search {
            trail,
            user,
            table,
            purpose,
            since,
            until,
        } => {
            let path = trail.path()?;
            let filter = SearchFilter {
                user,
                table,
                purpose,
                since,
                until,
            };
            let records = search(&path, &filter).map_err(anyhow::Error::msg)?;
            for record in records {
                println!("{}", serde_json::to_string(&record)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
