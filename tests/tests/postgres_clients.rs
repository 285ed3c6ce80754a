//! The PostgreSQL protocol with real clients: psycopg 3, asyncpg,
//! SQLAlchemy and pandas from PyPI (`tests/python/test_postgres.py`) and
//! node-postgres from npm (`tests/node/test_postgres.mjs`) and pgjdbc, the
//! JDBC driver of DBeaver, Metabase and Tableau (`tests/java/PgJdbcTest.java`),
//! against a plain and a TLS-only endpoint. The packages live in the
//! project's virtualenv, `tests/node/node_modules` and Debian's
//! `/usr/share/java/postgresql.jar`, which `tests/run` installs with
//! `tests/python/setup.sh`, `tests/node/setup.sh` and `tests/java/setup.sh`;
//! without them these tests say so loudly, and fail under `CI=true`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;

use bluelamp_tests::pg::PgFixture;
use bluelamp_tests::services::{service_missing, venv_python};

/// Runs `command` (a client's test program) against a plain and a
/// TLS-only endpoint, named in its environment (`BLUELAMP_PG_PORT`,
/// `BLUELAMP_PG_TLS_PORT`, `BLUELAMP_PG_USER`, password `demo`), and
/// asserts it succeeds. `what` names the program where it cannot start.
async fn run_client(what: &str, mut command: tokio::process::Command) {
    let plain = PgFixture::start("").await;
    let (tls, _pki) = PgFixture::start_tls().await;
    command
        .env("BLUELAMP_PG_PORT", plain.pg.addr.port().to_string())
        .env("BLUELAMP_PG_TLS_PORT", tls.pg.addr.port().to_string())
        .env("BLUELAMP_PG_USER", "analyst")
        .env("TZ", "UTC");
    let output = match command.output().await {
        Ok(output) => output,
        Err(e) => return service_missing(what, &e.to_string()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{stderr}"
    );
    plain.pg.shutdown().await;
    tls.pg.shutdown().await;
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
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/test_postgres.py");
    let mut pytest = tokio::process::Command::new(python);
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(script);
    run_client("pytest", pytest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("node");
    if !folder.join("node_modules/pg/package.json").is_file() {
        return service_missing(
            "node-postgres",
            "tests/node/node_modules/pg is not installed; run tests/node/setup.sh",
        );
    }
    let mut node = tokio::process::Command::new("node");
    node.args(["--test", "test_postgres.mjs"])
        .current_dir(&folder);
    run_client("node --test (Node.js)", node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc() {
    let jar = Path::new("/usr/share/java/postgresql.jar");
    if !jar.is_file() {
        return service_missing(
            "pgjdbc",
            "/usr/share/java/postgresql.jar is not installed; run tests/java/setup.sh",
        );
    }
    let mut java = tokio::process::Command::new("java");
    java.arg("-cp")
        .arg(jar)
        .arg("PgJdbcTest.java")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("java"));
    run_client("java PgJdbcTest.java (a JDK 17 or later)", java).await;
}
