//! # bluelamp-monitor
//!
//! The operations endpoint of `bluelamp serve` (`[server] metrics_listen`):
//! plain HTTP for a Prometheus scraper, a load balancer and Kubernetes. It
//! only reads the engine — metrics, source checks — and runs no SQL, so it
//! needs no session and no login; keep it on a network only operators reach.
//!
//! - `GET /metrics`: the engine's metrics in Prometheus's text format.
//! - `GET /healthz`: 200 while the process serves requests.
//! - `GET /readyz`: 200 when every source answers now, else 503; the body
//!   is JSON with each source's state. Each probe asks the sources again,
//!   but answers from the last check for [`READY_REUSE`], so a busy prober
//!   cannot turn into load on the suppliers' systems.
//!
//! [`telemetry`] exports statement traces over OTLP (`[telemetry]`), for
//! the processes that load a configuration: `serve`, `sql`, `executor`.

pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bluelamp_engine::Engine;
use tokio::sync::Mutex;

/// How long one readiness check answers later probes.
pub const READY_REUSE: Duration = Duration::from_secs(2);

/// A running operations endpoint; dropping it does not stop it, call
/// [`RunningMonitor::shutdown`].
pub struct RunningMonitor {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningMonitor {
    /// Stops serving and waits for the server to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

struct Shared {
    engine: Engine,
    last: Mutex<Option<(Instant, StatusCode, String)>>,
}

/// Serves the endpoint on `addr` (port 0: any free port).
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(engine: Engine, addr: SocketAddr) -> std::io::Result<RunningMonitor> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {addr}: {e}"),
        )
    })?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        engine,
        last: Mutex::new(None),
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(shared);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = serving.await {
            tracing::error!("the metrics endpoint stopped: {e}");
        }
    });
    Ok(RunningMonitor { addr, stop, task })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.engine.metrics_text(),
    )
}

async fn ready(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mut last = shared.last.lock().await;
    if let Some((at, status, body)) = last.as_ref()
        && at.elapsed() < READY_REUSE
    {
        return (*status, json_type(), body.clone());
    }
    let checks = shared.engine.check_sources().await;
    let ready = checks.iter().all(|(_, result)| result.is_ok());
    let sources: serde_json::Map<String, serde_json::Value> = checks
        .into_iter()
        .map(|(name, result)| {
            let entry = match result {
                Ok(()) => serde_json::json!({ "status": "up" }),
                Err(error) => serde_json::json!({ "status": "down", "error": error }),
            };
            (name, entry)
        })
        .collect();
    let body = serde_json::json!({ "ready": ready, "sources": sources }).to_string();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    *last = Some((Instant::now(), status, body.clone()));
    (status, json_type(), body)
}

fn json_type() -> [(header::HeaderName, &'static str); 1] {
    [(header::CONTENT_TYPE, "application/json")]
}
