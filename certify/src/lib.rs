//! The certification kit behind `bluelamp certify`: the interoperability
//! initiative's three tiers for a supplier's product (intent, published,
//! interworking) turned into checks that leave evidence a force can file.
//!
//! - [`intent`] (tier 1) validates a supplier's declaration of the interfaces
//!   it will publish, naming the file, line and field of every mistake, and
//!   makes the register entry.
//! - [`published`] (tier 2) checks a supplier's OpenAPI document: that it is
//!   valid, that every operation documents what it answers, and that its
//!   entities can be both retrieved and deposited. Each criterion is a line of
//!   the report with its evidence; criteria that need the live system are
//!   reported as not applicable when only a document is given.
//! - [`live`] runs tier 2 against a configured `openapi` source and its live
//!   system: the document served without credentials, answers matching their
//!   schemas, pagination reaching every record once, filters exact; and,
//!   with requests of its own, documented errors and 429, a deposit round
//!   trip (with `--allow-writes`) and transport security.
//! - [`interworking`] (tier 3) runs a scenario: a SQL workflow across two
//!   suppliers' systems (retrieve from one, deposit into the other, read
//!   back) and its SQL assertions, with every deposit's outcome as evidence.
//! - [`located`] names the file, line and field of a mistake in a
//!   declaration or a scenario.
//! - [`report`] is what every check produces: Markdown for people and JSON
//!   for registers, carrying the SHA-256 of the interface document, the
//!   Bluelamp version, the date and the tier reached.
//! - [`signing`] signs a report's JSON with an Ed25519 key and verifies it,
//!   and that the document still has the hash it was certified with.

pub mod intent;
pub mod interworking;
pub mod live;
pub mod located;
mod probes;
pub mod published;
pub mod report;
pub mod signing;

pub use report::{Criterion, Outcome, Report};
