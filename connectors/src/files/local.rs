//! Local folders, read without zero-filling.
//!
//! [`LocalFiles`] is `object_store`'s [`LocalFileSystem`] with one change:
//! byte ranges (how the Parquet reader fetches column chunks) are read
//! directly into buffers that are used again. `LocalFileSystem` first fills
//! each fresh buffer with zeros and then reads over them — streaming a
//! Parquet file to a Flight client, that `memset` was a twentieth of the
//! server's CPU — and even unfilled, a fresh buffer of megabytes is new
//! memory the kernel must zero page by page as the read first touches it
//! (another fourteenth). Large buffers therefore go back to a bounded pool
//! ([`ReadBuffers`]) once nothing refers to them, and the next large read
//! fills one of those; a buffer left idle for [`IDLE_FOR`] goes back to the
//! allocator, so a server that has finished its scans does not hold their
//! buffers in the pool. Everything else (listing, metadata, whole-file reads, writes) is
//! `LocalFileSystem`'s.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

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

/// Reads smaller than this get buffers of their own from the allocator,
/// which reuses small blocks well by itself; larger ones use the pool.
const POOLED_FROM: usize = 1 << 20;

/// Idle buffers the process-wide pool keeps at most, in bytes: the column
/// chunks of a row group or two per partition on a small server (a row
/// group of the 10-million-row benchmark file is about 30 MB), and a small
/// share of any server's memory. Reads beyond it get fresh buffers.
const POOL_HOLDS: usize = 128 << 20;

/// How long an idle buffer is kept: long enough for the next query of an
/// analyst's or a dashboard's series to find it, short enough that a quiet
/// server gives its scans' memory back.
const IDLE_FOR: Duration = Duration::from_secs(30);

/// The pool every [`LocalFiles`] shares, so the bound holds however many
/// folders are configured. A thread of its own drops buffers idle for
/// [`IDLE_FOR`] even when no read comes to do it.
static BUFFERS: LazyLock<Arc<ReadBuffers>> = LazyLock::new(|| {
    let pool = Arc::new(ReadBuffers::new(POOL_HOLDS));
    let weak = Arc::downgrade(&pool);
    let sweeper = std::thread::Builder::new()
        .name("bluelamp-read-buffers".into())
        .spawn(move || {
            while let Some(pool) = weak.upgrade() {
                pool.expire(Instant::now());
                drop(pool);
                std::thread::sleep(IDLE_FOR / 2);
            }
        });
    if let Err(e) = sweeper {
        // Reads still expire idle buffers; only a quiet server keeps them.
        tracing::warn!("cannot start the read-buffer sweeper: {e}");
    }
    pool
});

/// Large read buffers kept for the next read once their bytes are no longer
/// referenced — by the Parquet reader, or by arrays decoded from them.
///
/// A buffer lent out as [`Bytes`] comes back when the last clone or slice
/// of those bytes is dropped. The pool keeps at most `holds` bytes of idle
/// buffers and drops any beyond that, and drops a buffer idle for
/// [`IDLE_FOR`] at the next read, return or [`ReadBuffers::expire`]; a read
/// takes the smallest idle buffer that fits without being more than twice
/// its size, so one large buffer is not tied up by a small read.
#[derive(Debug)]
pub(crate) struct ReadBuffers {
    holds: usize,
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    /// Each idle buffer, with when it came back.
    buffers: Vec<(Vec<u8>, Instant)>,
    bytes: usize,
}

impl Idle {
    /// Drops the buffers that came back before `since`.
    fn drop_returned_before(&mut self, since: Instant) {
        let mut freed = 0;
        self.buffers.retain(|(buffer, returned)| {
            let keep = *returned >= since;
            if !keep {
                freed += buffer.capacity();
            }
            keep
        });
        self.bytes -= freed;
    }
}

impl ReadBuffers {
    pub(crate) fn new(holds: usize) -> Self {
        Self {
            holds,
            idle: Mutex::new(Idle::default()),
        }
    }

    /// An empty buffer with room for `len` bytes: an idle one if one fits.
    fn take(&self, len: usize) -> Vec<u8> {
        if len >= POOLED_FROM
            && let Ok(mut idle) = self.idle.lock()
        {
            if let Some(since) = Instant::now().checked_sub(IDLE_FOR) {
                idle.drop_returned_before(since);
            }
            let best = idle
                .buffers
                .iter()
                .enumerate()
                .filter(|(_, (b, _))| b.capacity() >= len && b.capacity() / 2 <= len)
                .min_by_key(|(_, (b, _))| b.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let (mut buffer, _) = idle.buffers.swap_remove(i);
                idle.bytes -= buffer.capacity();
                buffer.clear();
                return buffer;
            }
        }
        Vec::with_capacity(len)
    }

    /// `buffer`'s bytes, returning it to `pool` once they are dropped.
    fn lend(pool: &Arc<Self>, buffer: Vec<u8>) -> Bytes {
        if buffer.capacity() < POOLED_FROM {
            return Bytes::from(buffer);
        }
        Bytes::from_owner(Lent {
            buffer,
            home: Arc::downgrade(pool),
        })
    }

    fn give_back(&self, buffer: Vec<u8>) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let now = Instant::now();
        if let Some(since) = now.checked_sub(IDLE_FOR) {
            idle.drop_returned_before(since);
        }
        if idle.bytes + buffer.capacity() <= self.holds {
            idle.bytes += buffer.capacity();
            idle.buffers.push((buffer, now));
        }
    }

    /// Drops the buffers that have been idle for [`IDLE_FOR`] at `now`.
    fn expire(&self, now: Instant) {
        if let (Ok(mut idle), Some(since)) = (self.idle.lock(), now.checked_sub(IDLE_FOR)) {
            idle.drop_returned_before(since);
        }
    }

    /// Bytes held in idle buffers.
    #[cfg(test)]
    fn idle_bytes(&self) -> usize {
        self.idle.lock().map(|idle| idle.bytes).unwrap_or(0)
    }
}

/// A pooled buffer while its bytes are in use.
struct Lent {
    buffer: Vec<u8>,
    home: Weak<ReadBuffers>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(pool) = self.home.upgrade() {
            pool.give_back(std::mem::take(&mut self.buffer));
        }
    }
}

/// The local file system, as [`LocalFileSystem`], with byte ranges read
/// without zero-filling their buffers, into buffers that are used again.
#[derive(Debug)]
pub(crate) struct LocalFiles {
    inner: LocalFileSystem,
    buffers: Arc<ReadBuffers>,
}

impl LocalFiles {
    /// Reading into the process-wide buffer pool.
    pub(crate) fn new() -> Self {
        Self::with_buffers(Arc::clone(&BUFFERS))
    }

    fn with_buffers(buffers: Arc<ReadBuffers>) -> Self {
        Self {
            inner: LocalFileSystem::default(),
            buffers,
        }
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
fn read_ranges(
    path: &std::path::Path,
    ranges: &[Range<u64>],
    buffers: &Arc<ReadBuffers>,
) -> Result<Vec<Bytes>> {
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
            let mut buffer = buffers.take(len);
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
            Ok(ReadBuffers::lend(buffers, buffer))
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
        let buffers = Arc::clone(&self.buffers);
        tokio::task::spawn_blocking(move || read_ranges(&path, &ranges, &buffers))
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

    const MIB: usize = 1 << 20;

    /// A file of `len` bytes of a repeating pattern, and its content.
    fn patterned(dir: &tempfile::TempDir, len: usize) -> (Path, Vec<u8>) {
        let file = dir.path().join("chunks.bin");
        let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &content).expect("write");
        (location(&file), content)
    }

    /// A store reading into a pool of its own that keeps up to `holds` bytes.
    fn pooled(holds: usize) -> (Arc<ReadBuffers>, LocalFiles) {
        let pool = Arc::new(ReadBuffers::new(holds));
        (Arc::clone(&pool), LocalFiles::with_buffers(pool))
    }

    async fn read(store: &LocalFiles, at: &Path, range: Range<usize>) -> Bytes {
        let wanted = range.start as u64..range.end as u64;
        let mut read = store.get_ranges(at, &[wanted]).await.expect("read");
        read.pop().expect("one range")
    }

    #[tokio::test]
    async fn a_large_buffer_is_used_again_once_nothing_refers_to_it() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (at, content) = patterned(&dir, 4 * MIB);
        let (pool, store) = pooled(64 * MIB);

        let first = read(&store, &at, 0..2 * MIB).await;
        let slice = first.slice(10..20);
        let second = read(&store, &at, 0..2 * MIB).await;
        let lent = [first.as_ptr(), second.as_ptr()];
        assert_ne!(lent[0], lent[1], "a buffer in use is lent once");
        drop(first);
        drop(second);
        // A slice still refers to the first buffer: only the second is back.
        assert_eq!(pool.idle_bytes(), 2 * MIB);
        assert_eq!(slice.as_ref(), &content[10..20]);
        drop(slice);
        assert_eq!(pool.idle_bytes(), 4 * MIB);

        // A smaller read of other bytes fills an idle buffer with exactly them.
        let again = read(&store, &at, MIB + 7..MIB + 7 + 3 * MIB / 2).await;
        assert_eq!(again.as_ref(), &content[MIB + 7..MIB + 7 + 3 * MIB / 2]);
        assert!(lent.contains(&again.as_ptr()), "an idle buffer is used");
        assert_eq!(pool.idle_bytes(), 2 * MIB);
    }

    #[tokio::test]
    async fn a_small_read_neither_takes_a_large_buffer_nor_is_kept() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (at, content) = patterned(&dir, 9 * MIB);
        let (pool, store) = pooled(64 * MIB);

        drop(read(&store, &at, 0..8 * MIB).await);
        assert_eq!(pool.idle_bytes(), 8 * MIB);
        // A quarter of the idle buffer: a buffer of its own, pooled after.
        let quarter = read(&store, &at, 5..5 + 2 * MIB).await;
        assert_eq!(quarter.as_ref(), &content[5..5 + 2 * MIB]);
        assert_eq!(pool.idle_bytes(), 8 * MIB);
        drop(quarter);
        assert_eq!(pool.idle_bytes(), 10 * MIB);
        // Below the pooling size: the allocator's business.
        drop(read(&store, &at, 0..1000).await);
        assert_eq!(pool.idle_bytes(), 10 * MIB);
    }

    #[tokio::test]
    async fn buffers_idle_too_long_go_back_to_the_allocator() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (at, _) = patterned(&dir, 4 * MIB);
        let (pool, store) = pooled(64 * MIB);
        drop(read(&store, &at, 0..2 * MIB).await);
        let returned = Instant::now();
        drop(read(&store, &at, 0..3 * MIB).await);
        assert_eq!(
            pool.idle_bytes(),
            5 * MIB,
            "both the lent buffer and a fresh one"
        );

        pool.expire(returned + IDLE_FOR / 2);
        assert_eq!(pool.idle_bytes(), 5 * MIB, "kept while recently used");
        pool.expire(Instant::now() + IDLE_FOR + Duration::from_millis(1));
        assert_eq!(pool.idle_bytes(), 0, "dropped once idle for IDLE_FOR");

        // The pool still lends after expiring everything.
        drop(read(&store, &at, 0..2 * MIB).await);
        assert_eq!(pool.idle_bytes(), 2 * MIB);
    }

    #[tokio::test]
    async fn the_pool_keeps_no_more_than_its_bound() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (at, _) = patterned(&dir, 4 * MIB);
        let (pool, store) = pooled(3 * MIB);
        let read = store
            .get_ranges(&at, &[0..2 * MIB as u64, 0..2 * MIB as u64])
            .await
            .expect("read");
        drop(read);
        assert_eq!(pool.idle_bytes(), 2 * MIB);
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
