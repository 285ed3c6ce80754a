//! What governance costs: the cookbook's queries against the live demo
//! force with no policies, and again with the demo force's policies and its
//! audit trail (grants, markings, the officer's row filters and masks — none
//! for the officer — and a durable audit record per statement), in the same
//! process, alternating query by query so both meet the same machine.
//!
//! `cargo bench --bench policy_overhead` (`BLUELAMP_BENCH_SCALE`, default
//! 0.1; `BLUELAMP_BENCH_RUNS`, default 7 timed rounds after one warm-up).
//! The goal: policies and audit cost at most 5 %. Answers are
//! compared between the two engines before anything is timed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use bluelamp_engine::{Engine, Identity, Session};
use bluelamp_tests::fixtures::LiveDemo;
use futures::TryStreamExt;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(session: &Session, sql: &str) -> Vec<RecordBatch> {
    let output = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    output.stream.try_collect().await.unwrap()
}

fn text(batches: &[RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let scale: f64 = env("BLUELAMP_BENCH_SCALE", 0.1);
    let runs: usize = env("BLUELAMP_BENCH_RUNS", 7).max(1);
    let queries_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries");
    let mut queries: Vec<(String, String)> = std::fs::read_dir(&queries_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    queries.sort();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let audit = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let hash = bluelamp_flight_server::hash_password("demo").unwrap();
        let governed = format!(
            "{}\n[audit]\npath = \"{}\"\n",
            bluelamp_simulators::access::demo_access(&hash, None, &audit.path().display().to_string()),
            audit.path().join("audit.jsonl").display()
        );
        eprintln!("starting two demo forces at scale {scale}…");
        let plain = LiveDemo::start(scale, "").await;
        let policed = LiveDemo::start(scale, &governed).await;
        let engines: [(&str, &Engine); 2] = [("off", &plain.engine), ("on", &policed.engine)];
        let sessions: Vec<Session> = engines
            .iter()
            .map(|(_, e)| e.session(Identity::new("officer", "local")))
            .collect();
        // BLUELAMP_BENCH_EXPLAIN=04 prints both plans of the queries whose
        // file name contains it, to see what policy changed.
        if let Ok(which) = std::env::var("BLUELAMP_BENCH_EXPLAIN") {
            for (name, sql) in queries.iter().filter(|(n, _)| n.contains(&which)) {
                for (i, (label, _)) in engines.iter().enumerate() {
                    let plan = run(&sessions[i], &format!("EXPLAIN ANALYZE {sql}")).await;
                    println!("== {name}, policies {label}\n{}", text(&plan));
                }
            }
            return;
        }
        // Same answers first.
        for (name, sql) in &queries {
            let off = text(&run(&sessions[0], sql).await);
            let on = text(&run(&sessions[1], sql).await);
            assert_eq!(off, on, "{name}: the answers differ with policies on");
        }
        let mut times = vec![vec![Vec::new(); 2]; queries.len()];
        for round in 0..runs {
            for (q, (_, sql)) in queries.iter().enumerate() {
                // Alternate which goes first.
                let order = if (round + q) % 2 == 0 { [0, 1] } else { [1, 0] };
                for which in order {
                    let started = Instant::now();
                    run(&sessions[which], sql).await;
                    times[q][which].push(started.elapsed());
                }
            }
        }
        println!("| query | policies off | policies on | ratio |");
        println!("|---|---|---|---|");
        let (mut off_total, mut on_total) = (Duration::ZERO, Duration::ZERO);
        for (q, (name, _)) in queries.iter().enumerate() {
            let off = median(times[q][0].clone());
            let on = median(times[q][1].clone());
            off_total += off;
            on_total += on;
            println!(
                "| {name} | {:.1} ms | {:.1} ms | {:.3} |",
                off.as_secs_f64() * 1e3,
                on.as_secs_f64() * 1e3,
                on.as_secs_f64() / off.as_secs_f64()
            );
        }
        println!(
            "\ntotal of medians over {} queries, {runs} rounds: off {:.1} ms, on {:.1} ms: policies and audit cost {:+.1} % (target ≤ 5 %)",
            queries.len(),
            off_total.as_secs_f64() * 1e3,
            on_total.as_secs_f64() * 1e3,
            (on_total.as_secs_f64() / off_total.as_secs_f64() - 1.0) * 100.0
        );
    });
}
