//! The process's `tracing` subscriber: log lines on stderr (`-v`, `-vv`,
//! `RUST_LOG`) and, where the configuration's `[telemetry]` names an OTLP
//! collector, statement traces sent there.
//!
//! A command that starts an engine installs the subscriber once its
//! configuration is loaded ([`init`] with its `[telemetry]`), since the
//! exporter is part of the subscriber and `tracing` cannot add a layer to a
//! subscriber in use; other commands install it at once, without traces.
//! Either way it is installed once; [`shutdown`] sends the last spans.

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};

use bluelamp_engine::config::TelemetrySettings;
use bluelamp_monitor::telemetry::Telemetry;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `-v` given on the command line, for [`init`].
static VERBOSITY: OnceLock<u8> = OnceLock::new();
/// Whether the subscriber is installed.
static INSTALLED: OnceLock<()> = OnceLock::new();
/// The trace exporter, where there is one, for [`shutdown`].
static EXPORTER: Mutex<Option<Telemetry>> = Mutex::new(None);

/// Remembers how verbose the log lines are to be.
pub fn set_verbosity(verbose: u8) {
    let _ = VERBOSITY.set(verbose);
}

/// Installs the subscriber, with a trace exporter where `telemetry` names
/// a collector; later calls do nothing. Call it within the tokio runtime.
///
/// # Errors
/// The exporter cannot be set up from `[telemetry]`.
pub fn init(telemetry: Option<&TelemetrySettings>) -> anyhow::Result<()> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let exporter = match telemetry {
        Some(settings) => Telemetry::start(settings)?,
        None => None,
    };
    let default = match VERBOSITY.get().copied().unwrap_or(0) {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
        // Statement traces go to the exporter, never into log lines.
        .add_directive(
            "bluelamp::trace=off"
                .parse()
                .map_err(|e| anyhow::anyhow!("the log filter: {e}"))?,
        );
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a file or pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter);
    let traces = exporter.as_ref().map(Telemetry::layer);
    if tracing_subscriber::registry()
        .with(lines)
        .with(traces)
        .try_init()
        .is_ok()
    {
        let _ = INSTALLED.set(());
        if let Some(exporter) = exporter {
            tracing::info!("sending statement traces to {}", exporter.endpoint());
            if let Ok(mut slot) = EXPORTER.lock() {
                *slot = Some(exporter);
            }
        }
    }
    Ok(())
}

/// Sends the spans not yet sent and stops the exporter, before the process
/// (and the runtime the exporter's channel runs on) ends.
pub fn shutdown() {
    let exporter = EXPORTER.lock().ok().and_then(|mut slot| slot.take());
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
}
