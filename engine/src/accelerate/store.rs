//! `storage = "parquet"`: each new copy written to
//! `DATA_DIR/accelerations/SOURCE/TABLE.parquet`, with the copy's time in
//! the file's metadata, and read back at start so a restart serves the copy
//! without fetching. A copy is written to a temporary file beside its place
//! and then renamed over it, so a crash mid-write leaves the previous file
//! whole.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;

/// The metadata key holding the copy's time (milliseconds since 1970).
const AS_OF_KEY: &str = "bluelamp.as_of";

/// Where one table's copy is kept.
#[derive(Debug, Clone)]
pub(super) struct Store {
    path: PathBuf,
}

/// A copy read back from its file.
pub(super) struct Stored {
    pub(super) schema: SchemaRef,
    pub(super) batches: Vec<RecordBatch>,
    pub(super) as_of: SystemTime,
}

impl Store {
    /// The file for `source.table` under `data_dir`.
    pub(super) fn new(data_dir: &Path, source: &str, table: &str) -> Self {
        Self {
            path: data_dir
                .join("accelerations")
                .join(source)
                .join(format!("{table}.parquet")),
        }
    }

    /// Writes `batches` as the stored copy made at `as_of`, replacing the
    /// previous file in one step.
    ///
    /// # Errors
    /// The folder or file cannot be written, naming the path.
    pub(super) fn write(
        &self,
        schema: &SchemaRef,
        batches: &[RecordBatch],
        as_of: SystemTime,
    ) -> Result<(), String> {
        let fail = |e: &dyn std::fmt::Display| {
            format!("the copy cannot be written to {}: {e}", self.path.display())
        };
        if let Some(folder) = self.path.parent() {
            std::fs::create_dir_all(folder).map_err(|e| fail(&e))?;
        }
        let millis = crate::catalog::unix_millis(as_of);
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                AS_OF_KEY.to_string(),
                millis.to_string(),
            )]))
            .build();
        let partial = self.path.with_extension("parquet.partial");
        let file = File::create(&partial).map_err(|e| fail(&e))?;
        let mut writer =
            ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(|e| fail(&e))?;
        for batch in batches {
            writer.write(batch).map_err(|e| fail(&e))?;
        }
        let file = writer.into_inner().map_err(|e| fail(&e))?;
        file.sync_all().map_err(|e| fail(&e))?;
        std::fs::rename(&partial, &self.path).map_err(|e| fail(&e))
    }

    /// The stored copy, or `None` if there is no file.
    ///
    /// # Errors
    /// The file exists but cannot be read, or has no copy time.
    pub(super) fn read(&self) -> Result<Option<Stored>, String> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", self.path.display());
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fail(&e))?;
        let as_of = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|pairs| pairs.iter().find(|kv| kv.key == AS_OF_KEY))
            .and_then(|kv| kv.value.as_deref())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|millis| UNIX_EPOCH + Duration::from_millis(millis))
            .ok_or_else(|| fail(&format!("no {AS_OF_KEY} in its metadata")))?;
        let schema = builder.schema().clone();
        let batches = builder
            .build()
            .map_err(|e| fail(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(&e))?;
        Ok(Some(Stored {
            schema,
            batches,
            as_of,
        }))
    }
}
