//! Bluelamp's PostgreSQL endpoint over the incidents folder
//! ([`crate::fixtures::write_incidents`]), for the wire-protocol tests and
//! the real-client tests: users `analyst` (password `demo`, with a SCRAM
//! verifier) and `flightonly` (an Argon2 hash only, so it cannot use the
//! PostgreSQL protocol).

use bluelamp_engine::Engine;
use bluelamp_engine::scram::ScramVerifier;
use bluelamp_pg_server::{RunningPgServer, serve};

use crate::fixtures::{Pki, engine_from_text, pki, write_incidents};

/// An engine over the incidents folder and its PostgreSQL endpoint.
pub struct PgFixture {
    /// The engine.
    pub engine: Engine,
    /// Its PostgreSQL endpoint on a free loopback port.
    pub pg: RunningPgServer,
    /// The folder holding the data (and any certificates).
    pub dir: tempfile::TempDir,
}

/// The fixture's configuration, with `extra` appended.
///
/// # Panics
/// If a password cannot be hashed (a broken machine).
#[allow(clippy::expect_used, reason = "test fixture")]
pub fn config(extra: &str) -> String {
    let scram = ScramVerifier::new("demo").to_string();
    let hash = bluelamp_flight_server::hash_password("demo").expect("hash");
    format!(
        r#"
[[source]]
name = "cad"
kind = "files"
location = "cad"

[[user]]
name = "analyst"
password_hash = "{hash}"
scram_sha256 = "{scram}"

[[user]]
name = "flightonly"
password_hash = "{hash}"
{extra}
"#
    )
}

impl PgFixture {
    /// Starts the engine (config plus `extra`) and its endpoint.
    ///
    /// # Panics
    /// If the config does not load or no port can be bound.
    #[allow(clippy::expect_used, reason = "test fixture")]
    pub async fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        Self::start_in(dir, extra).await
    }

    /// As [`PgFixture::start`], with a server that accepts only TLS
    /// (a certificate for `localhost` from a fresh [`Pki`]).
    ///
    /// # Panics
    /// As for [`PgFixture::start`].
    #[allow(clippy::expect_used, reason = "test fixture")]
    pub async fn start_tls() -> (Self, Pki) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let pki = pki();
        std::fs::write(dir.path().join("server.pem"), &pki.server_cert).expect("write cert");
        std::fs::write(dir.path().join("server.key"), &pki.server_key).expect("write key");
        let tls = "\n[server]\ntls_cert = \"server.pem\"\ntls_key = \"server.key\"\n";
        (Self::start_in(dir, tls).await, pki)
    }

    #[allow(clippy::expect_used, reason = "test fixture")]
    async fn start_in(dir: tempfile::TempDir, extra: &str) -> Self {
        write_incidents(dir.path());
        let engine = engine_from_text(&config(extra), dir.path())
            .await
            .expect("engine starts");
        let pg = serve(engine.clone(), Some(([127, 0, 0, 1], 0).into()))
            .await
            .expect("PostgreSQL endpoint starts");
        Self { engine, pg, dir }
    }
}
