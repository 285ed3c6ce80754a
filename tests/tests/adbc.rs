//! The Flight SQL endpoint with a real client: the ADBC Flight SQL driver and
//! pyarrow (`tests/python/test_adbc.py`), against the live demo force. The
//! Python packages live in the project's virtualenv, which `tests/run` makes
//! with `tests/python/setup.sh`; without it this test says so loudly, and
//! fails under `CI=true`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;

use bluelamp_flight_server::{hash_password, serve};
use bluelamp_tests::fixtures::LiveDemo;
use bluelamp_tests::services::{service_missing, venv_python};
use chrono::{TimeZone, Utc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_driver_and_pyarrow_use_the_endpoint() {
    let python = venv_python();
    if !python.is_file() {
        return service_missing(
            "the Python ADBC client virtualenv",
            &format!(
                "{} does not exist; run tests/python/setup.sh",
                python.display()
            ),
        );
    }
    let users = format!(
        "[[user]]\nname = \"analyst\"\npassword_hash = \"{}\"\n",
        hash_password("demo").unwrap()
    );
    let demo = LiveDemo::start(0.02, &users).await;
    let server = serve(demo.engine.clone(), Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();

    // Expected answers, from the generated force itself.
    let (from, to) = (
        Utc.with_ymd_and_hms(2026, 10, 7, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 10, 8, 0, 0, 0).unwrap(),
    );
    let day: Vec<&str> = demo
        .force
        .incidents
        .iter()
        .filter(|i| i.opened_at >= from && i.opened_at < to)
        .map(|i| i.urn.as_str())
        .collect();
    let day_crimes = demo
        .force
        .crimes
        .iter()
        .filter(|c| day.contains(&c.incident_urn.as_str()))
        .count();
    let busiest = demo
        .force
        .crimes
        .iter()
        .map(|c| c.incident_urn.as_str())
        .max_by_key(|urn| {
            (
                demo.force
                    .crimes
                    .iter()
                    .filter(|c| c.incident_urn == *urn)
                    .count(),
                *urn,
            )
        })
        .unwrap();
    let mut urn_crimes: Vec<&str> = demo
        .force
        .crimes
        .iter()
        .filter(|c| c.incident_urn == busiest)
        .map(|c| c.crime_reference.as_str())
        .collect();
    urn_crimes.sort_unstable();
    assert!(day_crimes > 0);
    let expect = serde_json::json!({
        "day_crimes": day_crimes,
        "urn": busiest,
        "urn_crimes": urn_crimes,
    });

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/test_adbc.py");
    let addr = server.addr;
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .arg(script)
            .env("BLUELAMP_FLIGHT_URI", format!("grpc://{addr}"))
            .env("BLUELAMP_FLIGHT_USER", "analyst")
            .env("BLUELAMP_FLIGHT_PASSWORD", "demo")
            .env("BLUELAMP_EXPECT_JOIN", expect.to_string())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "pytest failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed"), "{stdout}");
    server.shutdown().await;
}
