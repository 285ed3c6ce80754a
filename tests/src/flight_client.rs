//! Small helpers for tests that talk to Bluelamp's Flight SQL endpoint with
//! arrow-flight's own client: read every endpoint of a `FlightInfo`, and a
//! result column as text.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow_flight::FlightInfo;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::Channel;

/// Reads every endpoint's ticket of `info`, in order.
///
/// # Errors
/// The first error a `DoGet` or its stream returns.
pub async fn fetch(
    c: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>, arrow_flight::error::FlightError> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let Some(ticket) = endpoint.ticket else {
            continue;
        };
        let stream = c.do_get(ticket).await?;
        out.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok(out)
}

/// A column of every batch cast to text, `NULL` for nulls; empty if the
/// column is missing or cannot be cast.
pub fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(column)
                .and_then(|c| arrow::compute::cast(c, &DataType::Utf8).ok())
                .map(|c| {
                    c.as_string::<i32>()
                        .iter()
                        .map(|v| v.unwrap_or("NULL").to_string())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect()
}
