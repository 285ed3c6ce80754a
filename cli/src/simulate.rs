//! `bluelamp simulate SYSTEM`: one of the demo force's HTTP systems on its own,
//! for connector authors and for trying faults by hand.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use bluelamp_simulators::generate;
use bluelamp_simulators::http::{Faults, SystemKind, SystemOptions, start};
use clap::Args;
use tokio::runtime::Runtime;

use crate::demo::{print_system, shutdown_signal};

/// Options for `bluelamp simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    /// The system: cad, rms or stops.
    system: SystemKind,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Size of the force (1.0 is about a month of a mid-sized force).
    #[arg(long, default_value_t = 0.1)]
    scale: f64,
    /// Seed for the synthetic data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Faults to inject, e.g. "latency=50ms,errors=0.1,burst429=3,reset=0.05,malformed=0.05,drift=extra+missing+wrongtype";
    /// `rms:doc-NAME` entries make RMS break its own documentation, for
    /// `bluelamp certify` to catch (the names are in `bluelamp demo --help`).
    #[arg(long, default_value = "none")]
    faults: Faults,
}

/// Runs one system until Ctrl-C or SIGTERM.
///
/// # Errors
/// Bad arguments or a port that cannot be bound.
pub fn run(rt: &Runtime, args: SimulateArgs) -> anyhow::Result<ExitCode> {
    crate::demo::check_scale(args.scale)?;
    let force = Arc::new(generate(args.seed, args.scale, |_| {}));
    let options = SystemOptions {
        faults: args.faults,
        ..SystemOptions::default()
    };
    rt.block_on(async {
        let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
        let system = start(args.system, force, options.clone(), addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let stop = shutdown_signal();
        print_system(&system, &options);
        println!("ready");
        stop.await;
        system.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
