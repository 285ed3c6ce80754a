//! # bluelamp-simulators
//!
//! The demo force: a fictional police force whose systems hold synthetic data,
//! generated deterministically from a seed and sized by a scale factor, so that
//! Bluelamp can be built, tested and shown without any real system or real
//! personal data.
//!
//! Records link across systems as they do in life: crimes in RMS cite the C&C
//! incident they came from, custody records cite a crime and a person, and ANPR
//! reads cluster near incidents in time and place.
//!
//! Modules:
//! - [`rng`]: a small seeded generator, so output is byte-identical for a seed.
//! - [`force`]: the data model and generator.
//! - [`write`]: writes the force as files (CSV, NDJSON, Parquet) and a SQLite
//!   database, with a `bluelamp.toml` that registers them.
//! - [`http`]: the HTTP systems (`cad`, `rms`, `stops`) as real servers, each in a
//!   different supplier's style, with fault injection and request accounting.

pub mod access;
pub mod force;
pub mod http;
pub mod rng;
pub mod write;

pub use force::{Force, generate};
pub use write::{DemoFiles, WriteError, write_force};
