//! Local folders, read without zero-filling.
//!
//! [`LocalFiles`] is `object_store`'s [`LocalFileSystem`] with one change:
//! byte ranges (how the Parquet reader fetches column chunks) are read into
//! fresh buffers directly. `LocalFileSystem` first fills each buffer with
//! zeros and then reads over them — streaming a Parquet file to a Flight
//! client, that `memset` was a twentieth of the server's CPU. Everything
//! else (listing, metadata, whole-file reads, writes) is `LocalFileSystem`'s.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

const STORE: &str = "LocalFileSystem";

/// The local file system, as [`LocalFileSystem`], with byte ranges read
/// without first zero-filling their buffers.
#[derive(Debug, Default)]
pub(crate) struct LocalFiles {
    inner: LocalFileSystem,
}

impl LocalFiles {
    pub(crate) fn new() -> Self {
        Self::default()
    }
}

impl fmt::Display for LocalFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalFiles({})", self.inner)
    }
}

/// Reads `ranges` of the file at `path`, in order, each into its own buffer.
/// A range past the end of the file, or one that ends before it starts, is
/// an error naming the file and range, never a short or empty buffer.
fn read_ranges(path: &std::path::Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
    let mut file = File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => object_store::Error::NotFound {
            path: path.display().to_string(),
            source: source.into(),
        },
        _ => generic(path, "cannot open", source),
    })?;
    ranges
        .iter()
        .map(|range| {
            let wanted = range.end.checked_sub(range.start).ok_or_else(|| {
                generic(
                    path,
                    "cannot read",
                    format!(
                        "bytes {}..{} requested: the range ends before it starts",
                        range.start, range.end
                    ),
                )
            })?;
            let len = usize::try_from(wanted).map_err(|e| generic(path, "cannot read", e))?;
            file.seek(SeekFrom::Start(range.start))
                .map_err(|e| generic(path, "cannot seek in", e))?;
            // `read_to_end` fills spare capacity without zeroing it first.
            let mut buffer = Vec::with_capacity(len);
            (&mut file)
                .take(wanted)
                .read_to_end(&mut buffer)
                .map_err(|e| generic(path, "cannot read", e))?;
            if buffer.len() != len {
                return Err(generic(
                    path,
                    "cannot read",
                    format!(
                        "bytes {}..{} requested, the file ends after {} of them",
                        range.start,
                        range.end,
                        buffer.len()
                    ),
                ));
            }
            Ok(Bytes::from(buffer))
        })
        .collect()
}

fn generic(
    path: &std::path::Path,
    what: &str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> object_store::Error {
    let source: Box<dyn std::error::Error + Send + Sync> = source.into();
    object_store::Error::Generic {
        store: STORE,
        source: format!("{what} {}: {source}", path.display()).into(),
    }
}

#[async_trait]
impl ObjectStore for LocalFiles {
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let path: PathBuf = self.inner.path_to_filesystem(location)?;
        let ranges = ranges.to_vec();
        tokio::task::spawn_blocking(move || read_ranges(&path, &ranges))
            .await
            .map_err(|e| object_store::Error::Generic {
                store: STORE,
                source: e.into(),
            })?
    }

    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    fn location(path: &std::path::Path) -> Path {
        Path::from_absolute_path(path).expect("a test path")
    }

    #[tokio::test]
    async fn ranges_are_read_exactly_and_in_order() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("data.bin");
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &content).expect("write");
        let store = LocalFiles::new();
        let ranges = [10..20, 0..0, 150_000..200_000, 3..100_003, 199_999..200_000];
        let read = store
            .get_ranges(&location(&file), &ranges)
            .await
            .expect("read");
        assert_eq!(read.len(), ranges.len());
        for (range, bytes) in ranges.iter().zip(&read) {
            assert_eq!(
                bytes.as_ref(),
                &content[range.start as usize..range.end as usize]
            );
        }
        // Everything else is LocalFileSystem's.
        assert_eq!(
            store.head(&location(&file)).await.expect("head").size,
            200_000
        );
    }

    /// The error reading `ranges` of a ten-byte file called `name`.
    async fn error_reading(name: &str, ranges: &[Range<u64>]) -> String {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join(name);
        std::fs::write(&file, b"0123456789").expect("write");
        LocalFiles::new()
            .get_ranges(&location(&file), ranges)
            .await
            .expect_err("a bad range")
            .to_string()
    }

    #[tokio::test]
    async fn a_range_past_the_end_is_an_error_naming_the_file() {
        let text = error_reading("short.bin", &[2..4, 5..40]).await;
        assert!(text.contains("short.bin"), "{text}");
        assert!(text.contains("5..40"), "{text}");
        assert!(text.contains("after 5"), "{text}");
    }

    #[tokio::test]
    async fn an_inverted_range_is_an_error_naming_the_file() {
        let text = error_reading("data.bin", &[0..2, Range { start: 6, end: 3 }]).await;
        assert!(text.contains("data.bin"), "{text}");
        assert!(text.contains("6..3"), "{text}");
        assert!(text.contains("ends before it starts"), "{text}");
    }

    #[tokio::test]
    async fn a_missing_file_is_not_found() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let err = LocalFiles::new()
            .get_ranges(&location(&dir.path().join("gone.parquet")), &[0..4, 4..8])
            .await
            .expect_err("missing");
        assert!(
            matches!(err, object_store::Error::NotFound { .. }),
            "{err:?}"
        );
    }
}
