//! `bluelamp serve` (Flight SQL, and the PostgreSQL protocol when asked)
//! and `bluelamp hash-password`.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use bluelamp_engine::Config;
use clap::Args;
use tokio::runtime::Runtime;

/// Options of `bluelamp serve`.
#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: crate::ConfigFile,
    /// Address to listen on (default: `[server] listen`, else 127.0.0.1:50051).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Also serve the PostgreSQL wire protocol on ADDR (default: `[server]
    /// postgres_listen`; off when neither is set).
    #[arg(long, value_name = "ADDR")]
    pg_listen: Option<SocketAddr>,
    /// Serve `/metrics` (Prometheus), `/healthz` and `/readyz` over HTTP
    /// on ADDR (default: `[server] metrics_listen`; off when neither is set).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Run queries on the Ballista cluster whose scheduler is at ADDR
    /// (`df://HOST:PORT`; default: `[engine] cluster`).
    #[arg(long, value_name = "ADDR")]
    cluster: Option<String>,
}

/// Options of `bluelamp hash-password`.
#[derive(Args)]
pub struct HashArgs {
    /// Print a SCRAM-SHA-256 verifier (for `scram_sha256`, the PostgreSQL
    /// protocol) rather than an Argon2 hash (for `password_hash`).
    #[arg(long)]
    scram: bool,
}

/// Connects the sources, serves Flight SQL and waits for a signal.
///
/// # Errors
/// A bad config, no users, unreadable TLS files or an address in use.
pub fn run(rt: &Runtime, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(&args.config.path)?;
    if let Some(cluster) = &args.cluster {
        config.engine.cluster = Some(cluster.clone());
    }
    rt.block_on(async {
        let engine = crate::cluster::start_engine(config).await?;
        for source in engine.sources() {
            if let Some(error) = &source.last_error {
                eprintln!("warning: source {} is down: {error}", source.name);
            }
        }
        let monitor = match args
            .metrics_listen
            .or(engine.config().server.metrics_listen)
        {
            Some(addr) => Some(bluelamp_monitor::serve(engine.clone(), addr).await?),
            None => None,
        };
        let pg_wanted =
            args.pg_listen.is_some() || engine.config().server.postgres_listen.is_some();
        let server = bluelamp_flight_server::serve(engine.clone(), args.listen).await?;
        let pg = if pg_wanted {
            match bluelamp_pg_server::serve(engine, args.pg_listen).await {
                Ok(pg) => Some(pg),
                Err(e) => {
                    server.shutdown().await;
                    return Err(e.into());
                }
            }
        } else {
            None
        };
        let stop = crate::demo::shutdown_signal();
        announce(&server);
        if let Some(pg) = &pg {
            announce_pg(pg);
        }
        if let Some(monitor) = &monitor {
            println!(
                "Metrics on http://{}/metrics (health: /healthz, /readyz)",
                monitor.addr
            );
        }
        stop.await;
        eprintln!("shutting down");
        if let Some(pg) = pg {
            pg.shutdown().await;
        }
        server.shutdown().await;
        if let Some(monitor) = monitor {
            monitor.shutdown().await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Tells the user (stdout, one line, for scripts) where to connect.
pub fn announce(server: &bluelamp_flight_server::RunningServer) {
    let scheme = if server.tls { "grpc+tls" } else { "grpc" };
    println!("Flight SQL listening on {scheme}://{}", server.addr);
}

/// Tells the user (stdout, one line) where PostgreSQL clients connect.
pub fn announce_pg(server: &bluelamp_pg_server::RunningPgServer) {
    println!("PostgreSQL listening on {}", pg_url(server));
}

/// A PostgreSQL connection URL for the endpoint (without credentials).
pub fn pg_url(server: &bluelamp_pg_server::RunningPgServer) -> String {
    let ssl = if server.tls { "?sslmode=require" } else { "" };
    format!(
        "postgres://{}/{}{ssl}",
        server.addr,
        bluelamp_engine::session::CATALOG
    )
}

/// Reads a password and prints its hash.
///
/// # Errors
/// No password given, or a terminal that cannot be read.
pub fn hash_password(args: &HashArgs) -> anyhow::Result<ExitCode> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ").context("cannot read the password")?;
        let second = rpassword::prompt_password("again: ").context("cannot read the password")?;
        if first != second {
            anyhow::bail!("the two passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        anyhow::bail!("an empty password is not allowed");
    }
    if args.scram {
        println!("{}", bluelamp_engine::scram::ScramVerifier::new(&password));
        return Ok(ExitCode::SUCCESS);
    }
    let hash = bluelamp_flight_server::hash_password(&password).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}
