//! `bluelamp scheduler` and `bluelamp executor`: a Ballista cluster that
//! runs Bluelamp's plans (see the `bluelamp-cluster` crate), and
//! [`start_engine`], which connects a front end's engine to the cluster its
//! configuration names.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use bluelamp_cluster::{ClusterRunner, ExecutorOptions, ServiceClient};
use bluelamp_engine::{Config, Engine};
use clap::Args;
use tokio::runtime::Runtime;

/// Options of `bluelamp scheduler`.
#[derive(Args)]
pub struct SchedulerArgs {
    /// Address to listen on, for executors and front ends.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50050")]
    listen: SocketAddr,
    /// Address of the cluster service (the sources' shared rate budgets,
    /// lost executors); default: the next port after --listen's, or a free
    /// one with port 0.
    #[arg(long, value_name = "ADDR")]
    service_listen: Option<SocketAddr>,
}

/// Options of `bluelamp executor`.
#[derive(Args)]
pub struct ExecutorArgs {
    #[command(flatten)]
    config: crate::ConfigFile,
    /// The scheduler, `df://HOST:PORT` (default: `[engine] cluster`).
    #[arg(long, value_name = "ADDR")]
    scheduler: Option<String>,
    /// Host to listen on and to tell the scheduler.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Arrow Flight port (results, shuffles); default: a free port.
    #[arg(long)]
    flight_port: Option<u16>,
    /// gRPC port (tasks from the scheduler); default: a free port.
    #[arg(long)]
    grpc_port: Option<u16>,
    /// Folder for shuffle files (default: a new temporary folder).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Tasks run at once (default: the machine's cores).
    #[arg(long)]
    tasks: Option<usize>,
    /// The cluster service, `http://HOST:PORT` (default: `[engine]
    /// cluster_service`, else the scheduler's host and next port).
    #[arg(long, value_name = "URL")]
    service: Option<String>,
}

/// The shared rate budgets of the cluster at `scheduler`, from its
/// service: `configured`, else beside the scheduler.
fn pacer_for(
    scheduler: &str,
    configured: Option<&str>,
) -> anyhow::Result<Arc<dyn bluelamp_engine::SharedPacer>> {
    let url = match configured {
        Some(url) => url.to_string(),
        None => ServiceClient::beside(scheduler)?,
    };
    Ok(Arc::new(ServiceClient::new(&url)?))
}

/// Starts the engine for `config`; where `[engine] cluster` names a
/// scheduler, its plans run there.
///
/// # Errors
/// As [`Engine::start`]; a cluster address that is not one.
pub async fn start_engine(config: Config) -> anyhow::Result<Engine> {
    crate::logging::init(Some(&config.telemetry))?;
    // A bad address fails before any source is connected.
    let runner = config
        .engine
        .cluster
        .as_deref()
        .map(|address| ClusterRunner::new(address, config.engine.cluster_service.as_deref()))
        .transpose()?;
    // What this process sends itself (planning's requests) comes out of the
    // cluster's budget too.
    let config = match config.engine.cluster.clone() {
        Some(scheduler) => {
            let pacer = pacer_for(&scheduler, config.engine.cluster_service.as_deref())?;
            config.with_shared_pacer(pacer)
        }
        None => config,
    };
    let engine = Engine::start(config, &bluelamp_connectors::registry()).await?;
    if let Some(runner) = runner {
        engine
            .set_plan_runner(Arc::new(runner))
            .map_err(|e| anyhow::anyhow!(e.message))?;
    }
    Ok(engine)
}

/// Runs the scheduler until the process is stopped.
///
/// # Errors
/// The address cannot be bound.
pub fn scheduler(rt: &Runtime, args: &SchedulerArgs) -> anyhow::Result<ExitCode> {
    rt.block_on(async {
        let service_listen = args.service_listen.unwrap_or_else(|| {
            // Port 0 picks free ports for both.
            let mut next = args.listen;
            next.set_port(match args.listen.port() {
                0 => 0,
                port => port.saturating_add(1),
            });
            next
        });
        let scheduler = bluelamp_cluster::start_scheduler(args.listen).await?;
        let service =
            bluelamp_cluster::start_service(service_listen, scheduler.losses.clone()).await?;
        println!(
            "ready scheduler=df://{} service=http://{}",
            scheduler.addr, service.addr
        );
        tokio::select! {
            result = scheduler.wait() => result?,
            result = service.wait() => result?,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs an executor with the sources of `--config` until the process is
/// stopped.
///
/// # Errors
/// A bad configuration, no scheduler named, or the executor cannot start.
pub fn executor(rt: &Runtime, args: ExecutorArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config.path)?.for_executor();
    {
        // An executor's scans have no statement span here: each is a trace
        // of its own.
        let _runtime = rt.enter();
        crate::logging::init(Some(&config.telemetry))?;
    }
    let address = args
        .scheduler
        .clone()
        .or_else(|| config.engine.cluster.clone())
        .context("no scheduler: give --scheduler df://HOST:PORT or set [engine] cluster")?;
    let (scheduler_host, scheduler_port) = ClusterRunner::host_and_port(&address)?;
    let pacer = pacer_for(
        &address,
        args.service
            .as_deref()
            .or(config.engine.cluster_service.as_deref()),
    )?;
    let config = config.with_shared_pacer(pacer);
    let flight_port = port_or_free(args.flight_port, &args.host)?;
    let grpc_port = port_or_free(args.grpc_port, &args.host)?;
    let work_dir = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("bluelamp-executor-{}", std::process::id())),
    };
    let tasks = args.tasks.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    });
    rt.block_on(async {
        let engine = Engine::start(config, &bluelamp_connectors::registry()).await?;
        for source in engine.sources() {
            if let Some(error) = &source.last_error {
                eprintln!("warning: source {} is down: {error}", source.name);
            }
        }
        println!(
            "ready executor flight={}:{flight_port} grpc={}:{grpc_port} scheduler={address}",
            args.host, args.host
        );
        bluelamp_cluster::run_executor(
            engine,
            ExecutorOptions {
                scheduler_host,
                scheduler_port,
                host: args.host.clone(),
                flight_port,
                grpc_port,
                work_dir,
                concurrent_tasks: tasks,
            },
        )
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `port`, or one free on `host` now.
fn port_or_free(port: Option<u16>, host: &str) -> anyhow::Result<u16> {
    if let Some(port) = port {
        return Ok(port);
    }
    let listener =
        TcpListener::bind((host, 0)).with_context(|| format!("no free port on {host}"))?;
    Ok(listener.local_addr()?.port())
}
