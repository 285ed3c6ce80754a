//! Engines over generated data, for tests.

use std::path::{Path, PathBuf};

use std::net::SocketAddr;
use std::sync::Arc;

use bluelamp_engine::{Config, Engine};
use bluelamp_simulators::Force;
use bluelamp_simulators::http::{
    DemoAcceleration, RunningSystem, SystemKind, SystemOptions, live_config_with, start,
};

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
    pub async fn start_with(scale: f64, extra: &str, options: SystemOptions) -> Self {
        Self::start_accelerated(scale, extra, options, None).await
    }

    /// As [`LiveDemo::start_with`], with the HTTP systems' tables
    /// accelerated as `bluelamp demo --accelerate` does.
    ///
    /// # Panics
    /// As for [`LiveDemo::start`].
    #[allow(clippy::expect_used, reason = "test fixture")]
    pub async fn start_accelerated(
        scale: f64,
        extra: &str,
        options: SystemOptions,
        accelerate: Option<&DemoAcceleration>,
    ) -> Self {
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
        let text = format!(
            "{}\n{extra}",
            live_config_with(&systems, &options, accelerate)
        );
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

/// The user a remote Bluelamp ([`RemoteBluelamp`]) lets federate, and its
/// password.
pub const FEDERATION_USER: (&str, &str) = ("federation", "federation-pass");

/// Another force's Bluelamp, serving Flight SQL on a loopback port: an
/// engine over config `text` (relative paths against `base`) plus the
/// [`FEDERATION_USER`].
pub struct RemoteBluelamp {
    /// The running endpoint.
    pub server: bluelamp_flight_server::RunningServer,
    /// `grpc://127.0.0.1:PORT`.
    pub url: String,
    /// The remote's engine, for oracle queries.
    pub engine: Engine,
}

impl RemoteBluelamp {
    /// Starts the remote; `federation` holds more keys of the federation
    /// user's `[[user]]` entry (`act_for = [...]`, `roles = [...]`).
    ///
    /// # Panics
    /// If the config does not load or no port can be bound (a broken
    /// fixture or machine).
    #[allow(clippy::expect_used, reason = "test fixture")]
    pub async fn start(text: &str, federation: &str, base: &Path) -> Self {
        let hash = bluelamp_flight_server::hash_password(FEDERATION_USER.1).expect("hash");
        let config = format!(
            "{text}\n[[user]]\nname = \"{}\"\npassword_hash = \"{hash}\"\n{federation}\n",
            FEDERATION_USER.0
        );
        let engine = engine_from_text(&config, base)
            .await
            .expect("remote engine starts");
        let server = bluelamp_flight_server::serve(
            engine.clone(),
            Some("127.0.0.1:0".parse().expect("address")),
        )
        .await
        .expect("remote serves");
        let url = format!("grpc://{}", server.addr);
        Self {
            server,
            url,
            engine,
        }
    }

    /// A `[[source]]` reading this remote as `name`, with `extra` options.
    pub fn source(&self, name: &str, extra: &str) -> String {
        format!(
            "[[source]]\nname = \"{name}\"\nkind = \"flightsql\"\nurl = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\n{extra}\n",
            self.url, FEDERATION_USER.0, FEDERATION_USER.1
        )
    }
}

/// A test certificate authority, a server certificate for `localhost`
/// and a client certificate it signed (all PEM).
pub struct Pki {
    /// PEM.
    pub ca: String,
    /// PEM.
    pub server_cert: String,
    /// PEM.
    pub server_key: String,
    /// PEM.
    pub client_cert: String,
    /// PEM.
    pub client_key: String,
}

/// Makes a fresh [`Pki`].
///
/// # Panics
/// If rcgen cannot make a key (a broken machine).
#[allow(clippy::expect_used, reason = "test fixture")]
pub fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("rcgen");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("rcgen");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Bluelamp test CA");
    let ca = ca_params.self_signed(&ca_key).expect("rcgen");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("rcgen");
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("rcgen")
        .signed_by(&server_key, &issuer)
        .expect("rcgen");
    let client_key = rcgen::KeyPair::generate().expect("rcgen");
    let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("rcgen");
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "analyst");
    let client = client_params
        .signed_by(&client_key, &issuer)
        .expect("rcgen");
    Pki {
        ca: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// Writes `cad/incidents.csv` under `dir`: 300 incidents `XY-00000` to
/// `XY-00299`, grades A, B, C in turn, at stations `station-0` to
/// `station-6` in turn, every fourth closed.
///
/// # Panics
/// If the folder cannot be written (a broken test machine).
#[allow(clippy::expect_used, reason = "test fixture")]
pub fn write_incidents(dir: &Path) {
    let cad = dir.join("cad");
    std::fs::create_dir_all(&cad).expect("create cad folder");
    let mut text = String::from("urn,grade,station,closed\n");
    for i in 0..300 {
        let grade = ["A", "B", "C"][i % 3];
        text.push_str(&format!(
            "XY-{i:05},{grade},station-{},{}\n",
            i % 7,
            i % 4 == 0
        ));
    }
    std::fs::write(cad.join("incidents.csv"), text).expect("write incidents");
}
