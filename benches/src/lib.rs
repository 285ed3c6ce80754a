//! # bluelamp-benches
//!
//! Benchmarks measure; tests assert. Figures from here go into issue notes and
//! `benches/README.md`, never into test thresholds.
//!
//! This crate holds whole-workload runs (for example the federated TPC-H
//! comparison and the OpenAPI scan and join-lookup benchmarks) as `[[bench]]`
//! targets with `harness = false`, so each is one documented
//! `cargo bench -p bluelamp-benches --bench <name>` command. None is written
//! yet; see the open issues.
