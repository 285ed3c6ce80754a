//! Security markings (Government Security Classifications) on results.
//!
//! `[[policy.marking]]` gives sources, tables and columns a classification
//! (OFFICIAL, OFFICIAL-SENSITIVE, SECRET) and handling caveats. A principal
//! reads only data their clearance reaches ([`super::rules::ReadPolicy::access`]
//! hides the rest), and every result carries the highest marking of the data
//! that produced it: computed here from what the statement reads, then sent
//! as Arrow schema metadata (`bluelamp.marking`) over Flight SQL, printed
//! above the REPL's table, recorded in the audit trail, and written into
//! files `COPY ... TO` makes — as Parquet key-value metadata. CSV and JSON
//! have nowhere to carry it, so data marked above plain OFFICIAL may be
//! copied only to Parquet.

use datafusion::logical_expr::LogicalPlan;

use super::rules::{Marking, ReadPolicy};
use crate::audit::trail::Touched;
use crate::error::{ErrorKind, QueryError};

/// The marking of a statement's result: the join of the markings of every
/// table and column it reads (as the audit trail lists them).
pub fn of_result(policy: &ReadPolicy, touched: &Touched) -> Marking {
    let (_, tables, columns) = touched;
    let mut marking = Marking::default();
    for table in tables {
        if let Some((source, table)) = table.split_once('.') {
            marking.join(&policy.marking_of(source, table, None));
        }
    }
    for column in columns {
        let mut parts = column.splitn(3, '.');
        if let (Some(source), Some(table), Some(column)) =
            (parts.next(), parts.next(), parts.next())
        {
            marking.join(&policy.marking_of(source, table, Some(column)));
        }
    }
    marking
}

/// The Parquet key-value metadata option `COPY` is given.
const PARQUET_MARKING: &str = "format.metadata::bluelamp.marking";

/// `plan`, where it is a `COPY ... TO`, made to write `marking` into the
/// file.
///
/// # Errors
/// [`ErrorKind::PermissionDenied`] for data marked above plain OFFICIAL
/// copied to a format that cannot carry the marking.
pub fn onto_copy(plan: LogicalPlan, marking: &Marking) -> Result<LogicalPlan, QueryError> {
    let LogicalPlan::Copy(mut copy) = plan else {
        return Ok(plan);
    };
    let format = copy.file_type.get_ext().to_ascii_lowercase();
    if format == "parquet" {
        copy.options
            .insert(PARQUET_MARKING.to_string(), marking.to_string());
        return Ok(LogicalPlan::Copy(copy));
    }
    if marking.is_baseline() {
        return Ok(LogicalPlan::Copy(copy));
    }
    Err(QueryError::new(
        ErrorKind::PermissionDenied,
        format!(
            "this data is marked {marking}, and a {format} file cannot carry its marking: COPY it TO a .parquet file (STORED AS PARQUET), whose metadata records it under bluelamp.marking"
        ),
    ))
}
