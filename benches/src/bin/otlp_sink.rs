//! An OTLP/gRPC trace receiver for benchmarks that run Bluelamp with traces
//! on (`benches/python/ops_overhead.py` with `BLUELAMP_BENCH_TELEMETRY=1`):
//! prints `listening on http://127.0.0.1:PORT`, keeps the spans it is sent,
//! and when its standard input closes prints how many it received.

#![allow(clippy::expect_used, reason = "a benchmark tool")]

use std::io::Read;
use std::time::Duration;

use bluelamp_tests::otlp::OtlpReceiver;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let mut receiver = OtlpReceiver::start().await;
    println!("listening on {}", receiver.endpoint());
    tokio::task::spawn_blocking(|| {
        let mut rest = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut rest);
    })
    .await
    .expect("wait for standard input to close");
    receiver.wait_for(Duration::from_secs(2), |_| false).await;
    println!("received {} spans", receiver.received.len());
}
