//! `bluelamp demo`: the built-in demo force. Generates the force's data for a seed
//! and scale (files are cached, so later starts skip writing them), starts the
//! HTTP systems on free loopback ports, registers the file and database systems
//! as sources, and opens the prompt — or runs `-c` / `-f` and exits, or with
//! `--listen` serves Flight SQL and the PostgreSQL protocol until
//! SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bluelamp_engine::{Config, Engine};
use bluelamp_simulators::http::{
    DemoAcceleration, Faults, RunningSystem, SystemKind, SystemOptions, live_config_with, start,
};
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
    /// Serve Arrow Flight SQL on ADDR, and the PostgreSQL protocol beside
    /// it (user `analyst`, password `demo`), with no prompt until
    /// SIGINT/SIGTERM, printing one line starting `ready` once every system
    /// and both endpoints accept connections.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["command", "file"])]
    listen: Option<SocketAddr>,
    /// With `--listen`, where the PostgreSQL protocol listens (default: a
    /// free port on 127.0.0.1, printed on the `ready` line as `pg=`).
    #[arg(long, value_name = "ADDR", requires = "listen")]
    pg_listen: Option<SocketAddr>,
    /// Faults for the HTTP systems, comma-separated: transport faults such
    /// as "latency=20ms,errors=0.05" (see `bluelamp simulate --help`), and
    /// entries that make one system break its own documentation, for
    /// `bluelamp certify` to catch:
    ///
    /// rms:doc-wrong-type      a record has a field of the wrong type;
    /// rms:doc-ignore-filter   the crimes list ignores its documented filters;
    /// rms:doc-repeat-page     a list answers its second page with the first;
    /// rms:doc-skip-record     a walk without filters misses a record;
    /// rms:doc-no-post         the document leaves out POST /crimes;
    /// rms:doc-drop-deposits   POST /crimes answers 201 but stores nothing;
    /// rms:doc-deposit-500     POST /crimes answers an undocumented 500;
    /// rms:doc-no-retry-after  429 answers lack their documented Retry-After.
    #[arg(long, default_value = "none", verbatim_doc_comment)]
    faults: Faults,
    /// Keep local copies of the HTTP systems' tables, refreshed every
    /// INTERVAL (default 1m): RMS crimes by appending what is new since the
    /// last refresh, the rest whole. See `bluelamp.accelerations`;
    /// `REFRESH TABLE rms.crimes` refreshes now.
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "1m")]
    accelerate: Option<String>,
    /// New C&C incidents and RMS crimes each system adds per second while
    /// the demo runs (e.g. 0.5), so refreshes have something new to fetch.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 0.0)]
    live_rate: f64,
    /// Generate the force's data (unless it is already there), print its
    /// folder and exit, without starting the systems: for preparing a large
    /// force ahead of time (scale 100 is about 100M ANPR reads and takes
    /// minutes), or for reading its files with a configuration of your own.
    #[arg(long, conflicts_with_all = ["listen", "command", "file", "accelerate"])]
    prepare: bool,
    #[command(flatten)]
    query: QueryArgs,
}

/// The demo's Flight SQL user, stated in the README.
pub const DEMO_USER: &str = "analyst";
/// The demo user's password.
pub const DEMO_PASSWORD: &str = bluelamp_simulators::access::PASSWORD;

fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("bluelamp")
        .join("demo")
}

/// The demo force's users and policies ([`bluelamp_simulators::access`]):
/// the person at the prompt runs as `officer`, who may `COPY ... TO`
/// files under the folder the demo was started from; `analyst` and
/// `supervisor` (password `demo`) see what policy lets them.
fn access_config() -> anyhow::Result<String> {
    let cwd = std::env::current_dir().context("cannot read the working folder")?;
    let hash = bluelamp_flight_server::hash_password(DEMO_PASSWORD).map_err(anyhow::Error::msg)?;
    let scram = bluelamp_engine::scram::ScramVerifier::new(DEMO_PASSWORD).to_string();
    Ok(bluelamp_simulators::access::demo_access(
        &hash,
        Some(&scram),
        &cwd.display().to_string(),
    ))
}

/// Rejects scales the generator cannot serve sensibly.
///
/// # Errors
/// A scale that is not a positive number up to 100.
pub fn check_scale(scale: f64) -> anyhow::Result<()> {
    if !(scale.is_finite() && scale > 0.0 && scale <= 100.0) {
        anyhow::bail!("--scale must be a number above 0 and at most 100 (got {scale})");
    }
    Ok(())
}

/// Prints where a system is and how to authenticate to it.
pub fn print_system(system: &RunningSystem, options: &SystemOptions) {
    let auth = match system.kind {
        SystemKind::Cad => format!("header X-API-Key: {}", options.cad_api_key),
        SystemKind::Rms => format!(
            "OAuth2 client credentials {} / {} at {}/oauth/token",
            options.rms_client_id, options.rms_client_secret, system.url
        ),
        SystemKind::Stops => "no authentication".to_string(),
    };
    eprintln!(
        "{:6} {}  OpenAPI {}  ({auth})",
        system.kind.name(),
        system.url,
        system.openapi_url()
    );
}

/// Listens for Ctrl-C (SIGINT) and SIGTERM from this call on; the returned
/// future resolves on either. Call it before announcing that the process is
/// ready, so a signal sent right after the announcement is not missed (it
/// would otherwise end the process with the default action).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        async fn received(signal: Option<Signal>) {
            match signal {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            tokio::select! {
                () = received(interrupt) => {}
                () = received(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Generates (or reuses) the demo data, starts the systems and runs queries over them.
///
/// # Errors
/// Bad arguments, data that cannot be written, or a port that cannot be bound.
pub fn run(rt: &Runtime, args: DemoArgs) -> anyhow::Result<ExitCode> {
    check_scale(args.scale)?;
    let root = args.data_dir.clone().unwrap_or_else(cache_root);
    let dir = root.join(format!("seed-{}-scale-{}", args.seed, args.scale));
    let config_path = dir.join("bluelamp.toml");
    let scripted = args.query.is_scripted();
    let started = Instant::now();
    let write_files = args.regenerate || !config_path.is_file();
    if args.prepare && !write_files {
        eprintln!(
            "the demo force (seed {}, scale {}) is already in {}",
            args.seed,
            args.scale,
            dir.display()
        );
        println!("{}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    if write_files {
        eprintln!(
            "generating the demo force (seed {}, scale {}) in {}",
            args.seed,
            args.scale,
            dir.display()
        );
    }
    let force = generate(args.seed, args.scale, |step| {
        if write_files {
            eprintln!("  {step}…");
        }
    });
    if write_files {
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
    if args.prepare {
        println!("{}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let force = Arc::new(force);
    if !(args.live_rate.is_finite() && (0.0..=1000.0).contains(&args.live_rate)) {
        anyhow::bail!(
            "--live-rate must be a number of new records per second from 0 to 1000 (got {})",
            args.live_rate
        );
    }
    let accelerate = match &args.accelerate {
        None => None,
        Some(interval) => {
            bluelamp_engine::config::parse_duration(interval)
                .map_err(|e| anyhow::anyhow!("--accelerate: {e}"))?;
            Some(DemoAcceleration {
                refresh: interval.clone(),
                as_user: bluelamp_simulators::access::LOCAL_USER.to_string(),
                crimes_window: None,
            })
        }
    };
    let options = SystemOptions {
        faults: args.faults.clone(),
        live_rate: args.live_rate,
        ..SystemOptions::default()
    };
    let (systems, engine, text) = rt.block_on(async {
        let mut systems = Vec::new();
        for kind in SystemKind::ALL {
            let system = start(
                kind,
                Arc::clone(&force),
                options.clone(),
                SocketAddr::from(([127, 0, 0, 1], 0)),
            )
            .await
            .with_context(|| format!("cannot start the {} system", kind.name()))?;
            systems.push(system);
        }
        let mut text = live_config_with(&systems, &options, accelerate.as_ref());
        text.push_str(&access_config()?);
        let audit_path = dir.join("audit").join("audit.jsonl");
        text.push_str(&format!(
            "\n[audit]\npath = {}\n",
            toml::Value::String(audit_path.display().to_string())
        ));
        let config = Config::parse(&text, &config_path.display().to_string(), dir.clone())?;
        let engine = Engine::start(config, &bluelamp_connectors::registry()).await?;
        Ok::<_, anyhow::Error>((systems, engine, text))
    })?;
    let (systems, engine, text) = (systems, engine, text);
    if !scripted {
        for system in &systems {
            print_system(system, &options);
        }
    }
    // The HTTP systems run on the runtime's worker threads while the prompt (or
    // the wait for a signal) holds this one.
    let outcome = match args.listen {
        Some(addr) => rt.block_on(async {
            let server = bluelamp_flight_server::serve(engine.clone(), Some(addr)).await?;
            let pg_addr = args
                .pg_listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
            let pg = match bluelamp_pg_server::serve(engine.clone(), Some(pg_addr)).await {
                Ok(pg) => pg,
                Err(e) => {
                    server.shutdown().await;
                    return Err(e.into());
                }
            };
            let stop = shutdown_signal();
            let urls: Vec<String> = systems
                .iter()
                .map(|s| format!("{}={}", s.kind.name(), s.url))
                .collect();
            let audit = engine
                .audit_log()
                .map(|log| log.path().display().to_string())
                .unwrap_or_default();
            let live = write_live_config(&dir, &text, &audit)?;
            println!(
                "ready {} flight=grpc://{} pg={} user={DEMO_USER} password={DEMO_PASSWORD} audit={audit} config={}",
                urls.join(" "),
                server.addr,
                crate::serve::pg_url(&pg),
                live.display()
            );
            stop.await;
            pg.shutdown().await;
            server.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }),
        None => crate::run_queries(rt, &engine, &args.query),
    };
    rt.block_on(async {
        for system in systems {
            system.shutdown().await;
        }
    });
    outcome
}

/// Writes `live.toml` beside the demo's data: the configuration of the running
/// demo (its live systems, with the demo's credentials), so `bluelamp sql
/// --config PATH` and `bluelamp certify published --config PATH --source rms`
/// work from another terminal while it runs. Its audit trail is a file of its
/// own (`audit/live.jsonl`): two processes never append to one chain.
fn write_live_config(
    dir: &std::path::Path,
    text: &str,
    demo_audit: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("live.toml");
    let own_audit = dir.join("audit").join("live.jsonl");
    let text = text.replace(
        &toml::Value::String(demo_audit.to_string()).to_string(),
        &toml::Value::String(own_audit.display().to_string()).to_string(),
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
