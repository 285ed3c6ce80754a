//! The PostgreSQL protocol with real clients from PyPI: psycopg 3, asyncpg,
//! SQLAlchemy and pandas (`tests/python/test_postgres.py`), against a plain
//! and a TLS-only endpoint. The packages live in the project's virtualenv,
//! which `tests/run` makes with `tests/python/setup.sh`; without it this
//! test says so loudly, and fails under `CI=true`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::{Path, PathBuf};

use bluelamp_tests::pg::PgFixture;
use bluelamp_tests::services::service_missing;

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("BLUELAMP_VENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"),
        PathBuf::from,
    );
    venv.join("bin").join("python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_asyncpg_sqlalchemy_and_pandas() {
    let python = venv_python();
    let probe = std::process::Command::new(&python)
        .args(["-c", "import psycopg, asyncpg, sqlalchemy, pandas"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return service_missing(
                "the Python PostgreSQL clients",
                &format!(
                    "{}; run tests/python/setup.sh",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            );
        }
        Err(e) => {
            return service_missing(
                "the Python client virtualenv",
                &format!("{}: {e}; run tests/python/setup.sh", python.display()),
            );
        }
    }
    let plain = PgFixture::start("").await;
    let (tls, _pki) = PgFixture::start_tls().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/test_postgres.py");
    let (port, tls_port) = (plain.pg.addr.port(), tls.pg.addr.port());
    let output = tokio::process::Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(script)
        .env("BLUELAMP_PG_PORT", port.to_string())
        .env("BLUELAMP_PG_TLS_PORT", tls_port.to_string())
        .env("BLUELAMP_PG_USER", "analyst")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "pytest failed:\n{stdout}\n{stderr}"
    );
    plain.pg.shutdown().await;
    tls.pg.shutdown().await;
}
