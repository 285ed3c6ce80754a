//! One table's view of an object store: its own folder or prefix, nothing else.
//!
//! A `files` table must make its store reachable from the session that scans
//! it, and DataFusion finds stores by URL (`scheme://bucket`). Registering the
//! source's store under the bucket's own URL would open the whole bucket, with
//! the source's credentials, to anything else in that session that names a
//! URL in it. So each table registers a [`ScopedStore`] under a URL of its
//! own ([`table_store_url`]): the store answers only for paths under the
//! table's location and refuses the rest as not found.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::execution::object_store::ObjectStoreUrl;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// The URL scheme under which tables register their scoped stores.
pub const SCHEME: &str = "bluelamp-files";

/// The URL under which the table of `source` at `location` registers its
/// store: the same in every process with the same configuration (a
/// cluster's executors find a table's store by it), and different for any
/// other source or location.
pub fn table_store_url(
    source: &str,
    location: &str,
) -> Result<ObjectStoreUrl, datafusion::error::DataFusionError> {
    // FNV-1a: stable across processes and builds, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in source.bytes().chain([0]).chain(location.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let host: String = source
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    ObjectStoreUrl::parse(format!("{SCHEME}://{host}-{hash:016x}"))
}

/// An object store limited to the paths under one prefix.
#[derive(Debug)]
pub struct ScopedStore {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl ScopedStore {
    /// `inner`, answering only for `prefix` and the paths under it.
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self { inner, prefix }
    }

    fn inside(&self, location: &Path) -> bool {
        inside(&self.prefix, location)
    }

    fn check(&self, location: &Path) -> Result<()> {
        check(&self.prefix, location)
    }

    /// The listing prefix to use: the table's own when none is asked for.
    fn listing_prefix(&self, prefix: Option<&Path>) -> Result<Path> {
        match prefix {
            None => Ok(self.prefix.clone()),
            Some(p) if self.inside(p) => Ok(p.clone()),
            Some(p) if self.prefix.prefix_matches(p) => Ok(self.prefix.clone()),
            Some(p) => check(&self.prefix, p).map(|()| p.clone()),
        }
    }
}

/// Whether `location` is `prefix` or under it (whole segments).
fn inside(prefix: &Path, location: &Path) -> bool {
    location == prefix || location.prefix_matches(prefix)
}

/// `location`, if inside `prefix`; otherwise not found, as if absent.
fn check(prefix: &Path, location: &Path) -> Result<()> {
    if inside(prefix, location) {
        Ok(())
    } else {
        Err(object_store::Error::NotFound {
            path: location.to_string(),
            source: "outside the table's location".into(),
        })
    }
}

impl fmt::Display for ScopedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scoped({}, {})", self.inner, self.prefix)
    }
}

#[async_trait]
impl ObjectStore for ScopedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.check(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.check(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.check(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let prefix = self.prefix.clone();
        let checked = locations.map(move |location| {
            let location = location?;
            check(&prefix, &location).map(|()| location)
        });
        self.inner.delete_stream(checked.boxed())
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.listing_prefix(prefix) {
            Ok(p) => self.inner.list(Some(&p)),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.listing_prefix(prefix) {
            Ok(p) => self.inner.list_with_offset(Some(&p), offset),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        match prefix {
            // Above the table's location: show only the way down to it.
            Some(p) if !self.inside(p) && self.prefix.prefix_matches(p) => {
                let mut listed = self.inner.list_with_delimiter(Some(p)).await?;
                listed.objects.clear();
                listed
                    .common_prefixes
                    .retain(|c| self.prefix == *c || self.prefix.prefix_matches(c));
                Ok(listed)
            }
            _ => {
                let p = self.listing_prefix(prefix)?;
                self.inner.list_with_delimiter(Some(&p)).await
            }
        }
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn only_the_prefix_is_reachable() {
        let bucket = Arc::new(InMemory::new());
        bucket
            .put(&Path::from("anpr/reads/a.csv"), "x".into())
            .await
            .unwrap();
        bucket
            .put(&Path::from("custody/secret.csv"), "y".into())
            .await
            .unwrap();
        let scoped = ScopedStore::new(bucket, Path::from("anpr/reads"));
        assert!(scoped.get(&Path::from("anpr/reads/a.csv")).await.is_ok());
        let e = scoped
            .get(&Path::from("custody/secret.csv"))
            .await
            .unwrap_err();
        assert!(matches!(e, object_store::Error::NotFound { .. }), "{e}");
        // Listing the whole bucket shows only the table's files.
        let all: Vec<ObjectMeta> = scoped.list(None).try_collect().await.unwrap();
        assert_eq!(all.len(), 1);
        let root: Vec<ObjectMeta> = scoped
            .list(Some(&Path::from("custody")))
            .try_collect()
            .await
            .unwrap_or_default();
        assert!(root.is_empty());
        let above = scoped.list_with_delimiter(None).await.unwrap();
        assert_eq!(above.objects.len(), 1);
        let top = scoped.list_with_delimiter(Some(&Path::from(""))).await;
        // The empty path is the bucket's root; only the way down to the table shows.
        if let Ok(top) = top {
            assert!(top.objects.is_empty());
            assert!(top.common_prefixes.iter().all(|c| c.as_ref() == "anpr"));
        }
        assert!(
            scoped
                .put(&Path::from("custody/new.csv"), "z".into())
                .await
                .is_err()
        );
        // A sibling whose name merely starts the same is outside.
        assert!(!scoped.inside(&Path::from("anpr/reads-old/a.csv")));
    }
}
