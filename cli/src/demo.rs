//! `bluelamp demo`: the built-in demo force. Generates the force's data for a seed
//! and scale (cached, so the second start is instant), registers each system as a
//! source, and opens the prompt — or runs `-c` / `-f` and exits.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use bluelamp_engine::{Config, Engine};
use bluelamp_simulators::{generate, write_force};
use clap::Args;
use tokio::runtime::Runtime;

use crate::QueryArgs;

/// Options for `bluelamp demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Size of the force: 1.0 is about a month of a mid-sized force
    /// (50k incidents, 1M ANPR reads).
    #[arg(long, default_value_t = 0.1)]
    scale: f64,
    /// Seed for the synthetic data; the same seed and scale give identical data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to keep generated data (default: the user's cache folder).
    #[arg(long, env = "BLUELAMP_DEMO_DIR")]
    data_dir: Option<PathBuf>,
    /// Generate the data again even if it is cached.
    #[arg(long)]
    regenerate: bool,
    #[command(flatten)]
    query: QueryArgs,
}

fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("bluelamp")
        .join("demo")
}

/// Generates (or reuses) the demo data and runs queries over it.
///
/// # Errors
/// Bad arguments, or data that cannot be written.
pub fn run(rt: &Runtime, args: DemoArgs) -> anyhow::Result<ExitCode> {
    if !(args.scale.is_finite() && args.scale > 0.0 && args.scale <= 100.0) {
        anyhow::bail!(
            "--scale must be a number above 0 and at most 100 (got {})",
            args.scale
        );
    }
    let root = args.data_dir.clone().unwrap_or_else(cache_root);
    let dir = root.join(format!("seed-{}-scale-{}", args.seed, args.scale));
    let config_path = dir.join("bluelamp.toml");
    if args.regenerate || !config_path.is_file() {
        let started = Instant::now();
        eprintln!(
            "generating the demo force (seed {}, scale {}) in {}",
            args.seed,
            args.scale,
            dir.display()
        );
        let force = generate(args.seed, args.scale, |step| eprintln!("  {step}…"));
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        write_force(&force, &dir)?;
        eprintln!(
            "  done in {:.1}s: {} incidents, {} crimes, {} people, {} custody records, {} ANPR reads, {} stop and search",
            started.elapsed().as_secs_f64(),
            force.incidents.len(),
            force.crimes.len(),
            force.people.len(),
            force.custody.len(),
            force.anpr.len(),
            force.stops.len()
        );
    }
    let config = Config::load(&config_path)?;
    let engine = rt.block_on(Engine::start(config, &bluelamp_connectors::registry()))?;
    crate::run_queries(rt, &engine, &args.query)
}
