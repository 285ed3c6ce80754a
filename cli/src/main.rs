//! `bluelamp`: the command-line front end of the Bluelamp federated SQL engine.
//!
//! - `bluelamp sql`: the interactive REPL, or scripts with `-c` / `-f`.
//! - `bluelamp check`: connect to every configured source and report.
//! - `bluelamp serve`: the Arrow Flight SQL endpoint for BI tools and notebooks.
//! - `bluelamp hash-password`: an Argon2 hash (or, with `--scram`, a
//!   SCRAM-SHA-256 verifier) for a `[[user]]` entry.
//! - `bluelamp demo`: the built-in demo force.
//! - `bluelamp audit verify|search`: check and read the audit trail.
//!
//! Errors print as one line on stderr; the exit code is non-zero on any failure.

mod audit;
mod certify;
mod check;
mod cluster;
mod demo;
mod logging;
mod output;
mod repl;
mod runner;
mod serve;
mod simulate;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bluelamp_engine::{Config, Engine};
use clap::{Args, Parser, Subcommand};
use tokio::runtime::Runtime;

use output::Format;
use runner::Runner;

/// mimalloc, as DataFusion's own command line uses: query execution
/// allocates and frees large column buffers from many threads, which the
/// system allocator serves with fresh, page-faulting memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Federated SQL across police information systems.
#[derive(Parser)]
#[command(name = "bluelamp", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log detail on stderr (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Run SQL: an interactive prompt, or statements from -c / -f / stdin.
    Sql(SqlArgs),
    /// Connect to every source in a config and report each one's status.
    Check {
        #[command(flatten)]
        config: crate::ConfigFile,
    },
    /// Serve Arrow Flight SQL (BI tools, ADBC, JDBC) until SIGINT/SIGTERM.
    Serve(serve::ServeArgs),
    /// Print an Argon2 hash of a password for a `[[user]]` entry's
    /// `password_hash` (reads the password from the terminal, or one line
    /// from stdin); `--scram` prints a SCRAM-SHA-256 verifier for its
    /// `scram_sha256` (the PostgreSQL protocol's password check) instead.
    HashPassword(serve::HashArgs),
    /// The built-in demo force: generate its data, start its systems, open the prompt.
    Demo(demo::DemoArgs),
    /// Run one of the demo force's HTTP systems (cad, rms, stops) on its own.
    Simulate(simulate::SimulateArgs),
    /// Check or search the audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Certification: turn the interoperability tiers into evidence (intent,
    /// published).
    #[command(subcommand)]
    Certify(certify::CertifyCommand),
    /// Run a cluster's Apache Ballista scheduler (no configuration: it holds
    /// no credentials); front ends name it in `[engine] cluster`.
    Scheduler(cluster::SchedulerArgs),
    /// Run a cluster executor that reads the sources of `--config` with its
    /// own credentials.
    Executor(cluster::ExecutorArgs),
}

/// Options shared by every command that runs SQL.
#[derive(Args, Clone)]
pub struct QueryArgs {
    /// Run these statements and exit.
    #[arg(short = 'c', long = "command", conflicts_with = "file")]
    command: Option<String>,
    /// Run the statements in this file and exit.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Run as this `[[user]]` (default: `[local] user`, else the operating
    /// system's user), with its roles and attributes.
    #[arg(long = "as", value_name = "USER")]
    as_user: Option<String>,
}

impl QueryArgs {
    /// Whether statements come from -c or -f rather than a person at a prompt.
    pub fn is_scripted(&self) -> bool {
        self.command.is_some() || self.file.is_some()
    }
}

/// `--config` / `-C`: the configuration file a command reads.
#[derive(Args)]
pub struct ConfigFile {
    /// The configuration file: its sources, users and policies.
    #[arg(
        long = "config",
        short = 'C',
        default_value = "bluelamp.toml",
        env = "BLUELAMP_CONFIG"
    )]
    pub path: PathBuf,
}

#[derive(Args)]
struct SqlArgs {
    /// The configuration file (default: ./bluelamp.toml if present).
    #[arg(long, short = 'C', env = "BLUELAMP_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    query: QueryArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::set_verbosity(cli.verbose);
    // Commands that start an engine install logging once their
    // configuration (and its `[telemetry]`) is loaded.
    if !matches!(
        cli.command,
        Command::Sql(_) | Command::Serve(_) | Command::Executor(_)
    ) && let Err(e) = logging::init(None)
    {
        eprintln!("error: {}", one_line(&e));
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Sql(args) => run_sql(&rt, args),
        Command::Check { config } => check::run(&rt, &config.path),
        Command::Serve(args) => serve::run(&rt, args),
        Command::HashPassword(args) => serve::hash_password(&args),
        Command::Demo(args) => demo::run(&rt, args),
        Command::Simulate(args) => simulate::run(&rt, args),
        Command::Audit(command) => audit::run(command),
        Command::Certify(command) => certify::run(&rt, command),
        Command::Scheduler(args) => cluster::scheduler(&rt, &args),
        Command::Executor(args) => cluster::executor(&rt, args),
    };
    {
        let _runtime = rt.enter();
        logging::shutdown();
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes as one line, without repeating nested messages.
fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn run_sql(rt: &Runtime, args: SqlArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None if PathBuf::from("bluelamp.toml").is_file() => Config::load("bluelamp.toml")?,
        None => {
            if std::io::stdin().is_terminal()
                && args.query.command.is_none()
                && args.query.file.is_none()
            {
                eprintln!(
                    "note: no --config given and no ./bluelamp.toml; no sources are configured"
                );
            }
            Config::parse("", "<empty>", PathBuf::from("."))?
        }
    };
    let engine = rt.block_on(cluster::start_engine(config))?;
    run_queries(rt, &engine, &args.query)
}

/// Runs `-c`, `-f`, piped stdin, or the interactive prompt over a started engine.
pub fn run_queries(rt: &Runtime, engine: &Engine, args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let identity = engine
        .local_identity(args.as_user.as_deref())
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let interactive =
        args.command.is_none() && args.file.is_none() && std::io::stdin().is_terminal();
    let front_end = if interactive { "repl" } else { "script" };
    let session = engine.session_for(identity, front_end, None);
    let script = if let Some(command) = &args.command {
        Some(command.clone())
    } else if let Some(file) = &args.file {
        Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?,
        )
    } else if !std::io::stdin().is_terminal() {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        Some(text)
    } else {
        None
    };
    match script {
        Some(text) => {
            let runner = Runner::new(session, args.format, false);
            rt.block_on(runner.run_text(&text))?;
        }
        None => {
            let runner = Runner::new(session, args.format, true);
            repl::run(rt, engine, runner)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
