//! Tier 3, interworking: a police customer certifies that two suppliers'
//! products work together in practice. `bluelamp certify interworking
//! SCENARIO` reads a scenario file, runs its SQL workflow against the
//! configured sources (retrieve from one, deposit into another, read back),
//! checks its assertions, and reports the evidence: each statement's rows,
//! every deposit's outcome and the identifiers the suppliers assigned.
//!
//! ```toml
//! name = "C&C and RMS: crime references for closed crime incidents"
//! workflow = "record_missing_crimes.sql"   # relative to this file
//! purpose = "interoperability certification"   # recorded in the audit trail
//!
//! [[source]]
//! name = "cad"                  # a source in the configuration
//! supplier = "Demo C&C supplier"
//! [[source]]
//! name = "rms"
//! supplier = "Demo RMS supplier"
//!
//! [[precondition]]              # before the workflow: something to do
//! title = "Closed crime incidents without a crime reference"
//! sql = "SELECT urn FROM cad.incidents WHERE ..."
//! expect = "rows"               # rows | no rows | true
//!
//! [[assert]]                    # after the workflow
//! id = "crn-in-cad"
//! title = "Every closed crime incident carries a crime reference"
//! sql = "SELECT urn FROM cad.incidents WHERE ..."
//! expect = "no rows"
//! ```
//!
//! A precondition that does not hold means the data gives the workflow
//! nothing to show, so the run proves nothing and the tier is not reached
//! (the workflow is not run). Mistakes in the file are named by file, line
//! and field.
//!
//! - `scenario`: reading and checking the scenario file and its workflow.
//! - `running`: running the workflow and judging the criteria
//!   (`interworking.sources`, `.preconditions`, `.workflow`, `assert.*`).

mod running;
mod scenario;

pub use running::run;
pub use scenario::{Check, Expect, Scenario, ScenarioSource, load, parse};
