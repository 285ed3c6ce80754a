//! The audit writer's sustained rate: statements per second appended, each
//! durable (fsynced) before its `append` returns, from many concurrent
//! sessions as a busy Flight SQL server would send them.
//!
//! `cargo bench --bench audit_writer` (`BLUELAMP_BENCH_RECORDS`, default
//! 20000; `BLUELAMP_BENCH_WRITERS`, default 64). The goal is at least
//! 5,000 statements/s on a 2-core machine. The trail goes to a temporary
//! folder on the machine's own disk (`TMPDIR` chooses it).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark")]

use std::time::Instant;

use bluelamp_engine::audit::{AuditLog, AuditRecord, verify};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn record(i: usize) -> AuditRecord {
    AuditRecord {
        time: "2026-12-03T10:00:00.000Z".into(),
        event: "statement".into(),
        user: format!("analyst{}", i % 50),
        auth: "token".into(),
        client: Some("127.0.0.1:50123".into()),
        purpose: Some("Op Bluebell: missing person enquiry".into()),
        statement: "SELECT i.urn, c.crime_reference FROM cad.incidents i JOIN rms.crimes c ON c.incident_urn = i.urn WHERE i.grade = 'I'".into(),
        sources: vec!["cad".into(), "rms".into()],
        tables: vec!["cad.incidents".into(), "rms.crimes".into()],
        columns: vec![
            "cad.incidents.grade".into(),
            "cad.incidents.urn".into(),
            "rms.crimes.crime_reference".into(),
            "rms.crimes.incident_urn".into(),
        ],
        recipient: Some("analyst".into()),
        outcome: "ok".into(),
        ..AuditRecord::default()
    }
}

fn main() {
    let records = env_usize("BLUELAMP_BENCH_RECORDS", 20_000);
    let writers = env_usize("BLUELAMP_BENCH_WRITERS", 64).max(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let log = AuditLog::open(&path, 64 * 1024 * 1024).unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        let per_writer = records / writers;
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..per_writer {
                        log.append(record(w * per_writer + i)).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let elapsed = started.elapsed();
    let written = verify(&path).unwrap();
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "audit writer: {written} records from {writers} concurrent writers in {:.3} s = {:.0} statements/s ({:.0} bytes/record; goal >= 5000/s)",
        elapsed.as_secs_f64(),
        written as f64 / elapsed.as_secs_f64(),
        bytes as f64 / written.max(1) as f64
    );
}
