//! Result formatting: aligned tables for people, CSV / JSON / NDJSON for scripts.
//! Machine formats stream batch by batch; only the table format holds a result
//! whole, because column widths depend on every row.

use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::pretty::pretty_format_batches;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned table with borders.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "ndjson" => Ok(Format::Ndjson),
            other => Err(format!(
                "unknown format '{other}' (use table, csv, json or ndjson)"
            )),
        }
    }
}

/// Writes batches in one format as they arrive.
pub enum ResultWriter<W: Write> {
    /// Collects for the final layout.
    Table {
        out: W,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    /// Streams CSV.
    Csv(Box<arrow::csv::Writer<W>>),
    /// Streams a JSON array.
    Json(arrow::json::ArrayWriter<W>),
    /// Streams NDJSON.
    Ndjson(arrow::json::LineDelimitedWriter<W>),
}

impl<W: Write> ResultWriter<W> {
    /// A writer for `format`.
    pub fn new(format: Format, schema: SchemaRef, out: W) -> Self {
        match format {
            Format::Table => ResultWriter::Table {
                out,
                schema,
                batches: Vec::new(),
            },
            Format::Csv => ResultWriter::Csv(Box::new(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out),
            )),
            Format::Json => ResultWriter::Json(arrow::json::ArrayWriter::new(out)),
            Format::Ndjson => ResultWriter::Ndjson(arrow::json::LineDelimitedWriter::new(out)),
        }
    }

    /// Adds one batch.
    pub fn write(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        match self {
            ResultWriter::Table { batches, .. } => batches.push(batch.clone()),
            ResultWriter::Csv(w) => w.write(batch)?,
            ResultWriter::Json(w) => w.write(batch)?,
            ResultWriter::Ndjson(w) => w.write(batch)?,
        }
        Ok(())
    }

    /// Finishes the output (prints the table, closes the JSON array).
    pub fn finish(self) -> anyhow::Result<()> {
        match self {
            ResultWriter::Table {
                mut out,
                schema,
                batches,
            } => {
                if schema.fields().is_empty() {
                    return Ok(());
                }
                let batches = if batches.is_empty() {
                    vec![RecordBatch::new_empty(Arc::clone(&schema))]
                } else {
                    batches
                };
                // The result's security marking heads the table.
                if let Some(marking) = schema.metadata().get(bluelamp_engine::session::MARKING_KEY)
                {
                    writeln!(out, "marking: {marking}")?;
                }
                if let Some(as_of) = as_of_note(&schema) {
                    writeln!(out, "{as_of}")?;
                }
                writeln!(out, "{}", pretty_format_batches(&batches)?)?;
                out.flush()?;
            }
            ResultWriter::Csv(w) => {
                let mut out = w.into_inner();
                out.flush()?;
            }
            ResultWriter::Json(mut w) => {
                w.finish()?;
                let mut out = w.into_inner();
                writeln!(out)?;
                out.flush()?;
            }
            ResultWriter::Ndjson(mut w) => {
                w.finish()?;
                w.into_inner().flush()?;
            }
        }
        Ok(())
    }
}

/// How long ago `time` was, in the largest whole unit: `42s`, `5m`, `3h`,
/// `2d`.
pub fn age(time: std::time::SystemTime) -> String {
    let seconds = time.elapsed().unwrap_or_default().as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3_600 => format!("{}m", seconds / 60),
        3_600..86_400 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// For a result read from local copies of accelerated tables, a line
/// saying how fresh it is (`bluelamp.as_of`).
pub fn as_of_note(schema: &arrow::datatypes::Schema) -> Option<String> {
    let as_of = schema.metadata().get(bluelamp_engine::session::AS_OF_KEY)?;
    let age = chrono::DateTime::parse_from_rfc3339(as_of)
        .ok()
        .map(|t| format!(", {} old", age(std::time::SystemTime::from(t))))
        .unwrap_or_default();
    Some(format!("from local copies as of {as_of}{age}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a,b"), None])),
            ],
        )
        .unwrap()
    }

    fn render(format: Format) -> String {
        let b = batch();
        let mut buf = Vec::new();
        let mut w = ResultWriter::new(format, b.schema(), &mut buf);
        w.write(&b).unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn freshness_is_told_in_whole_units() {
        use std::time::{Duration, SystemTime};
        let ago = |s: u64| age(SystemTime::now() - Duration::from_secs(s));
        assert_eq!(
            [ago(5), ago(125), ago(7_300), ago(200_000)],
            ["5s", "2m", "2h", "2d"]
        );
        let mut metadata = std::collections::HashMap::new();
        let as_of = chrono::Utc::now() - chrono::Duration::seconds(90);
        let text = as_of.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        metadata.insert(
            bluelamp_engine::session::AS_OF_KEY.to_string(),
            text.clone(),
        );
        let schema = Schema::new(vec![Field::new("n", DataType::Int64, false)]);
        assert_eq!(as_of_note(&schema), None);
        assert_eq!(
            as_of_note(&schema.with_metadata(metadata)).unwrap(),
            format!("from local copies as of {text}, 1m old")
        );
    }

    #[test]
    fn csv_has_one_header_and_quotes() {
        assert_eq!(
            render(Format::Csv),
            "id,name\n1,\"a,b\"\n2,\n1,\"a,b\"\n2,\n"
        );
    }

    #[test]
    fn json_is_one_array() {
        let text = render(Format::Json);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 4);
    }

    #[test]
    fn ndjson_is_one_object_per_line() {
        assert_eq!(render(Format::Ndjson).lines().count(), 4);
    }

    #[test]
    fn table_has_borders() {
        assert!(render(Format::Table).contains("| id | name |"));
    }
}
