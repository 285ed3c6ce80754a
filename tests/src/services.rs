//! Throwaway databases on the machine's PostgreSQL and MariaDB servers.

use std::time::Duration;

use mysql_async::prelude::Queryable;

/// PostgreSQL host, port and user (overridable for other machines).
pub fn pg_host() -> String {
    std::env::var("BLUELAMP_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into())
}
/// PostgreSQL port.
pub fn pg_port() -> u16 {
    std::env::var("BLUELAMP_TEST_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432)
}
/// MariaDB host.
pub fn mariadb_host() -> String {
    std::env::var("BLUELAMP_TEST_MARIADB_HOST").unwrap_or_else(|_| "127.0.0.1".into())
}
/// MariaDB port.
pub fn mariadb_port() -> u16 {
    std::env::var("BLUELAMP_TEST_MARIADB_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3306)
}

/// Called when a service a test needs is not there: under `CI=true` the test
/// fails; otherwise it says so loudly on stderr and the caller returns early.
///
/// # Panics
/// Under `CI=true`, always: CI must never pass by skipping.
pub fn service_missing(service: &str, error: &str) {
    let message = format!("{service} is not reachable: {error}");
    assert!(
        std::env::var("CI").map(|v| v != "true").unwrap_or(true),
        "{message} (CI=true, so this test fails instead of skipping)"
    );
    eprintln!(
        "\n!!!!!!!! SKIPPED: {message}. Start it or set CI=true to make this a failure. !!!!!!!!\n"
    );
}

fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
        .chars()
        .take(40)
        .collect()
}

/// A PostgreSQL database that exists for one test and is dropped after it.
pub struct PgDatabase {
    /// The database's name.
    pub name: String,
    /// A connection to it, for setting up data.
    pub client: tokio_postgres::Client,
}

impl PgDatabase {
    /// Creates a uniquely named database; `Err` with the reason if the server is not there.
    ///
    /// # Errors
    /// The connection error, as text.
    pub async fn create() -> Result<Self, String> {
        let name = unique_name("bluelamp_test");
        let admin = pg_connect("postgres").await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| e.to_string())?;
        let client = pg_connect(&name).await?;
        Ok(Self { name, client })
    }
}

async fn pg_connect(db: &str) -> Result<tokio_postgres::Client, String> {
    let config = format!(
        "host={} port={} user=postgres dbname={db} connect_timeout=5",
        pg_host(),
        pg_port()
    );
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a separate thread with its own
        // runtime can block on the cleanup safely, even after a panic.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(admin) = pg_connect("postgres").await {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A MariaDB database that exists for one test and is dropped after it.
pub struct MariaDatabase {
    /// The database's name.
    pub name: String,
    pool: mysql_async::Pool,
}

fn mariadb_url(db: Option<&str>) -> String {
    format!(
        "mysql://root@{}:{}/{}",
        mariadb_host(),
        mariadb_port(),
        db.unwrap_or("")
    )
}

impl MariaDatabase {
    /// Creates a uniquely named database; `Err` with the reason if the server is not there.
    ///
    /// # Errors
    /// The connection error, as text.
    pub async fn create() -> Result<Self, String> {
        let name = unique_name("bluelamp_test");
        let admin = mysql_async::Pool::new(mariadb_url(None).as_str());
        let mut conn = tokio::time::timeout(Duration::from_secs(5), admin.get_conn())
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        conn.query_drop(format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| e.to_string())?;
        drop(conn);
        let _ = admin.disconnect().await;
        let pool = mysql_async::Pool::new(mariadb_url(Some(&name)).as_str());
        Ok(Self { name, pool })
    }

    /// Runs statements (setup only).
    ///
    /// # Errors
    /// The server's error, as text.
    pub async fn execute(&self, sql: &str) -> Result<(), String> {
        let mut conn = self.pool.get_conn().await.map_err(|e| e.to_string())?;
        conn.query_drop(sql).await.map_err(|e| e.to_string())
    }

    /// Runs a query returning one column of strings (checks only).
    ///
    /// # Errors
    /// The server's error, as text.
    pub async fn query_strings(&self, sql: &str) -> Result<Vec<Option<String>>, String> {
        let mut conn = self.pool.get_conn().await.map_err(|e| e.to_string())?;
        conn.query::<Option<String>, _>(sql)
            .await
            .map_err(|e| e.to_string())
    }
}

impl Drop for MariaDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // The test's pool belongs to the test's runtime, which is blocked while this
        // runs; clean up over a fresh connection from a runtime of our own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let admin = mysql_async::Pool::new(mariadb_url(None).as_str());
                if let Ok(mut conn) = admin.get_conn().await {
                    let _ = conn
                        .query_drop(format!("DROP DATABASE IF EXISTS {name}"))
                        .await;
                }
                let _ = admin.disconnect().await;
            });
        })
        .join();
    }
}

/// The Python of the project's test virtualenv (`tests/.venv`, or
/// `$BLUELAMP_VENV`), which `tests/python/setup.sh` makes.
pub fn venv_python() -> std::path::PathBuf {
    let venv = std::env::var_os("BLUELAMP_VENV").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"),
        std::path::PathBuf::from,
    );
    venv.join("bin").join("python")
}
