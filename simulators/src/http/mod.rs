//! The demo force's HTTP systems: real servers on loopback ports, each in the
//! style of a different supplier.
//!
//! | system | style |
//! |---|---|
//! | [`cad`] | OpenAPI 3.1 JSON, API-key header, cursor in the body |
//! | [`rms`] | OpenAPI 3.0 YAML, OAuth2 client credentials, offset/limit with a total, rate limit, idempotent deposits |
//! | [`stops`] | data.police.uk style, no auth, page numbers advertised in a `Link` header |
//!
//! Every system counts requests and records at `GET /_stats` (reset with
//! `DELETE /_stats`) and can inject [`Faults`].

pub mod cad;
pub mod faults;
pub mod rms;
mod server;
pub mod stops;

pub use faults::{Action, Faults};
pub use server::{RunningSystem, Stats, SystemKind, SystemOptions, start};
