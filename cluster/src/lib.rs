//! Bluelamp on an Apache Ballista cluster, for when one machine is not
//! enough.
//!
//! Three processes make a cluster, all from the `bluelamp` binary and all
//! Ballista's own code: [`run_scheduler`] (Ballista's scheduler, which
//! splits plans into stages and hands tasks out), [`run_executor`] (a
//! Ballista executor that knows Bluelamp's connectors, started from the
//! same configuration file as the front end), and a front end (`bluelamp
//! sql`, `serve`) whose configuration names the scheduler in `[engine]
//! cluster`. The front end plans, checks and audits every statement exactly
//! as on one machine; [`ClusterRunner`] then sends the finished physical
//! plan to the scheduler instead of running it here.
//!
//! What crosses the wire is in [`codec`]: plans, never credentials. Each
//! executor resolves a source by name from its own configuration. A
//! source's rate limit is one budget for the whole cluster, kept by the
//! cluster service beside the scheduler ([`start_service`]) and taken slot
//! by slot by every executor ([`ServiceClient`]); the same service counts
//! lost executors, so a job that lived through one is refused.

pub mod codec;
mod executor;
mod losses;
mod runner;
mod scheduler;
mod service;

pub use codec::BluelampCodec;
pub use executor::{ExecutorOptions, run_executor};
pub use losses::Losses;
pub use runner::{ClusterRunner, has_lookup, runs_on_cluster, sliced};
pub use scheduler::{Scheduler, start_scheduler};
pub use service::{ClusterService, ServiceClient, start_service};

/// A cluster process could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClusterError(pub String);
