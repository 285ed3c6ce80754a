//! # bluelamp-workspace-hack
//!
//! No code: a crate whose dependencies turn on, in every build, the crate
//! features that only some of the workspace's builds would turn on (see its
//! `Cargo.toml`). Cargo compiles a crate once per set of features, so a
//! feature that differs between the release binary, the benchmarks and the
//! tests means compiling the crate, and everything above it, twice. Every
//! Bluelamp crate depends on the engine, and the engine on this crate.
