//! Engines over generated data, for tests.

use std::path::{Path, PathBuf};

use std::net::SocketAddr;
use std::sync::Arc;

use bluelamp_engine::{Config, Engine};
use bluelamp_simulators::Force;
use bluelamp_simulators::http::{RunningSystem, SystemKind, SystemOptions, live_config, start};

/// Seed and scale of the small demo force the SQL logic tests read; results in
/// `.slt` files depend on them.
pub const SLT_SEED: u64 = 1;
/// See [`SLT_SEED`].
pub const SLT_SCALE: f64 = 0.01;

/// Writes the small demo force into `dir` and returns its config path.
///
/// # Panics
/// If the files cannot be written (a broken test machine).
pub fn write_demo(dir: &Path) -> PathBuf {
    let force = bluelamp_simulators::generate(SLT_SEED, SLT_SCALE, |_| {});
    #[allow(clippy::expect_used, reason = "test fixture")]
    let files =
        bluelamp_simulators::write_force(&force, &dir.join("force")).expect("write demo force");
    files.config
}

/// An engine over a config file.
///
/// # Panics
/// If the config is invalid (a broken fixture).
pub async fn engine(config: &Path) -> Engine {
    #[allow(clippy::expect_used, reason = "test fixture")]
    let config = Config::load(config).expect("fixture config loads");
    #[allow(clippy::expect_used, reason = "test fixture")]
    Engine::start(config, &bluelamp_connectors::registry())
        .await
        .expect("engine starts")
}

/// An engine over config text (relative paths resolve against `base`).
///
/// # Errors
/// The config error, as text.
pub async fn engine_from_text(text: &str, base: &Path) -> Result<Engine, String> {
    let config = Config::parse(text, "test.toml", base.to_path_buf()).map_err(|e| e.to_string())?;
    Engine::start(config, &bluelamp_connectors::registry())
        .await
        .map_err(|e| e.to_string())
}

/// The demo force running as `bluelamp demo` runs it: the HTTP systems on
/// loopback ports, custody and ANPR files in a temporary folder, and an engine
/// over all of them (the cookbook's and the real-client tests' fixture).
pub struct LiveDemo {
    /// The generated force, for computing expected answers.
    pub force: Arc<Force>,
    /// The engine over the live systems.
    pub engine: Engine,
    /// The running HTTP systems (cad, rms, stops); they stop when this is dropped.
    pub systems: Vec<RunningSystem>,
    _dir: tempfile::TempDir,
}

impl LiveDemo {
    /// Generates the force (seed 1) at `scale`, starts its systems and an
    /// engine whose config is the demo's plus `extra` (e.g. `[[user]]`s).
    ///
    /// # Panics
    /// If a port cannot be bound or the config does not load (a broken test
    /// machine or fixture).
    pub async fn start(scale: f64, extra: &str) -> Self {
        Self::start_with(scale, extra, SystemOptions::default()).await
    }

    /// As [`LiveDemo::start`], with the systems' options (faults, credentials).
    ///
    /// # Panics
    /// As for [`LiveDemo::start`].
    #[allow(clippy::expect_used, reason = "test fixture")]
    pub async fn start_with(scale: f64, extra: &str, options: SystemOptions) -> Self {
        let force = Arc::new(bluelamp_simulators::generate(1, scale, |_| {}));
        let dir = tempfile::tempdir().expect("temporary folder");
        let files = bluelamp_simulators::write_force(&force, &dir.path().join("force"))
            .expect("write demo force");
        let mut systems = Vec::new();
        for kind in SystemKind::ALL {
            let addr = SocketAddr::from(([127, 0, 0, 1], 0));
            systems.push(
                start(kind, Arc::clone(&force), options.clone(), addr)
                    .await
                    .expect("start a demo system"),
            );
        }
        let base = files
            .config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().to_path_buf());
        let text = format!("{}\n{extra}", live_config(&systems, &options));
        let config = Config::parse(&text, "live.toml", base).expect("live config loads");
        let engine = Engine::start(config, &bluelamp_connectors::registry())
            .await
            .expect("engine starts");
        Self {
            force,
            engine,
            systems,
            _dir: dir,
        }
    }
}

/// Serves `routes` plus `document` at `/openapi.json` on a free local port,
/// for an OpenAPI fixture of a test's own; returns the base URL.
///
/// # Panics
/// If no local port can be bound (a broken test machine).
#[allow(clippy::expect_used, reason = "test fixture")]
pub async fn serve_openapi(document: serde_json::Value, routes: axum::Router) -> String {
    let app = routes.route(
        "/openapi.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { axum::Json(document) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}
