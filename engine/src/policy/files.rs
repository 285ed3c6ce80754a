//! Grants to touch the server's file system or object stores.
//!
//! `COPY (...) TO 'path'` writes wherever the server process may write, and
//! `CREATE EXTERNAL TABLE ... LOCATION 'path'` reads whatever it may read, so
//! neither is open to anyone by default. A `[[policy.files]]` entry names who
//! (`roles`, `users`) and where (`copy_to`, `external_tables`: folders, or
//! object-store prefixes such as `s3://exports/analysts/`).
//!
//! A location is inside a granted folder only if it still is after `..` is
//! resolved and symbolic links are followed as far as the path exists, so
//! `exports/../../etc` and a link out of the folder are both refused. Object
//! store URLs compare scheme, bucket and whole path segments, and any `.` or
//! `..` segment is refused outright rather than interpreted.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::principal::Principal;

/// A `[[policy.files]]` entry as written in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGrantConfig {
    /// Principals holding any of these roles get the grant.
    #[serde(default)]
    pub roles: Vec<String>,
    /// These users get the grant.
    #[serde(default)]
    pub users: Vec<String>,
    /// Folders or prefixes `COPY ... TO` may write under.
    #[serde(default)]
    pub copy_to: Vec<String>,
    /// Folders or prefixes `CREATE EXTERNAL TABLE` may read from.
    #[serde(default)]
    pub external_tables: Vec<String>,
}

/// What a statement wants to do with a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAccess {
    /// `COPY ... TO`: write files.
    CopyTo,
    /// `CREATE EXTERNAL TABLE`: read files as a table.
    ExternalTable,
}

impl FileAccess {
    /// The grant key that allows it.
    pub fn key(self) -> &'static str {
        match self {
            FileAccess::CopyTo => "copy_to",
            FileAccess::ExternalTable => "external_tables",
        }
    }
}

/// A resolved `[[policy.files]]` entry.
#[derive(Debug, Clone)]
pub struct FileGrant {
    /// Roles it applies to.
    pub roles: Vec<String>,
    /// Users it applies to.
    pub users: Vec<String>,
    /// Where `COPY ... TO` may write.
    pub copy_to: Vec<Location>,
    /// Where `CREATE EXTERNAL TABLE` may read.
    pub external_tables: Vec<Location>,
}

impl FileGrant {
    /// Resolves a grant; relative folders are taken from `base_dir` (the
    /// configuration file's folder).
    ///
    /// # Errors
    /// A message naming the key at fault: a grant for no one, a grant of
    /// nothing, or a location that is not a folder path or URL.
    pub fn resolve(raw: FileGrantConfig, base_dir: &Path) -> Result<Self, (String, String)> {
        if raw.roles.is_empty() && raw.users.is_empty() {
            return Err((
                "roles".into(),
                "a grant must name `roles` or `users` (or both); a grant for everyone is not allowed".into(),
            ));
        }
        if raw.copy_to.is_empty() && raw.external_tables.is_empty() {
            return Err((
                "copy_to".into(),
                "the grant allows nothing: list folders under `copy_to` and/or `external_tables`"
                    .into(),
            ));
        }
        let locations = |key: &str, items: Vec<String>| {
            items
                .into_iter()
                .enumerate()
                .map(|(i, text)| {
                    Location::parse(&text, base_dir).map_err(|m| (format!("{key}[{i}]"), m))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            copy_to: locations("copy_to", raw.copy_to)?,
            external_tables: locations("external_tables", raw.external_tables)?,
            roles: raw.roles,
            users: raw.users,
        })
    }

    /// Whether this grant names the principal.
    pub fn applies_to(&self, principal: &Principal) -> bool {
        self.users.contains(&principal.user) || self.roles.iter().any(|r| principal.has_role(r))
    }

    /// The locations this grant allows for `access`.
    pub fn locations(&self, access: FileAccess) -> &[Location] {
        match access {
            FileAccess::CopyTo => &self.copy_to,
            FileAccess::ExternalTable => &self.external_tables,
        }
    }
}

/// A folder on the server or a prefix in an object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An absolute folder path (symbolic links resolved when checked).
    Folder(PathBuf),
    /// An object-store prefix: scheme, bucket (authority) and path segments.
    Prefix {
        /// `s3`, `gs`, `az`, ...
        scheme: String,
        /// The bucket or container.
        authority: String,
        /// Path segments under the bucket.
        segments: Vec<String>,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Folder(path) => write!(f, "{}", path.display()),
            Location::Prefix {
                scheme,
                authority,
                segments,
            } => write!(f, "{scheme}://{authority}/{}", segments.join("/")),
        }
    }
}

impl Location {
    /// Parses a folder path (relative ones against `base`) or a URL.
    ///
    /// # Errors
    /// A URL that does not parse or has `.`/`..` segments.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty location is not allowed".into());
        }
        if text.contains("://") {
            let url = Url::parse(text).map_err(|e| format!("'{text}' is not a valid URL: {e}"))?;
            if url.scheme() == "file" {
                let path = url
                    .to_file_path()
                    .map_err(|()| format!("'{text}' is not a local file URL"))?;
                return Ok(Location::Folder(normalise(&path)));
            }
            if url.authority().is_empty() {
                return Err(format!("'{text}' names no bucket or host"));
            }
            let segments = segments(&url)?;
            return Ok(Location::Prefix {
                scheme: url.scheme().to_string(),
                authority: url.authority().to_string(),
                segments,
            });
        }
        let path = Path::new(text);
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        };
        Ok(Location::Folder(normalise(&absolute)))
    }

    /// Whether `target` (a path relative to the process's working folder,
    /// or a URL) lies inside this location.
    pub fn contains(&self, target: &Location) -> bool {
        match (self, target) {
            (Location::Folder(root), Location::Folder(path)) => {
                resolve_links(path).starts_with(resolve_links(root))
            }
            (
                Location::Prefix {
                    scheme,
                    authority,
                    segments,
                },
                Location::Prefix {
                    scheme: s,
                    authority: a,
                    segments: p,
                },
            ) => scheme == s && authority == a && p.starts_with(segments),
            _ => false,
        }
    }

    /// A statement's target: a path relative to the working folder, or a URL.
    ///
    /// # Errors
    /// As for [`Location::parse`].
    pub fn target(text: &str) -> Result<Self, String> {
        let cwd = std::env::current_dir().map_err(|e| format!("no working folder: {e}"))?;
        Self::parse(text, &cwd)
    }
}

/// A URL's path as segments, empty ones dropped; `.`/`..` (even
/// percent-encoded) are refused rather than interpreted.
fn segments(url: &Url) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for raw in url.path().split('/') {
        let dots = raw.to_ascii_lowercase().replace("%2e", ".");
        if dots == "." || dots == ".." {
            return Err(format!(
                "'{url}' has a '.' or '..' segment; write the location without them"
            ));
        }
        if !raw.is_empty() {
            out.push(raw.to_string());
        }
    }
    Ok(out)
}

/// Resolves `.` and `..` without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Follows symbolic links along the longest part of `path` that exists, so a
/// link inside a granted folder that points outside it is seen for what it is.
fn resolve_links(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return normalise(&out);
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn folders_contain_their_own_paths_only() {
        let dir = tempfile::tempdir().unwrap();
        let exports = dir.path().join("exports");
        std::fs::create_dir_all(&exports).unwrap();
        let root = Location::parse("exports", dir.path()).unwrap();
        let inside = Location::parse("exports/a/b.parquet", dir.path()).unwrap();
        let escape = Location::parse("exports/../secret.csv", dir.path()).unwrap();
        let sibling = Location::parse("exports-old/x.csv", dir.path()).unwrap();
        assert!(root.contains(&inside));
        assert!(!root.contains(&escape));
        assert!(!root.contains(&sibling));
    }

    #[cfg(unix)]
    #[test]
    fn a_link_out_of_the_folder_is_outside() {
        let dir = tempfile::tempdir().unwrap();
        let exports = dir.path().join("exports");
        let secret = dir.path().join("secret");
        std::fs::create_dir_all(&exports).unwrap();
        std::fs::create_dir_all(&secret).unwrap();
        std::os::unix::fs::symlink(&secret, exports.join("link")).unwrap();
        let root = Location::parse("exports", dir.path()).unwrap();
        let through_link = Location::parse("exports/link/x.csv", dir.path()).unwrap();
        assert!(!root.contains(&through_link));
    }

    #[test]
    fn prefixes_compare_bucket_and_whole_segments() {
        let base = Path::new("/");
        let root = Location::parse("s3://exports/analysts/", base).unwrap();
        let inside = Location::parse("s3://exports/analysts/q1/x.parquet", base).unwrap();
        let other_bucket = Location::parse("s3://other/analysts/x", base).unwrap();
        let similar = Location::parse("s3://exports/analysts-old/x", base).unwrap();
        assert!(root.contains(&inside));
        assert!(!root.contains(&other_bucket));
        assert!(!root.contains(&similar));
        // `..` is either refused or resolved (as DataFusion resolves it), never followed out.
        assert!(
            Location::parse("s3://exports/analysts/../x", base)
                .map_or(true, |l| !root.contains(&l))
        );
        assert!(
            Location::parse("s3://exports/analysts/%2E%2E/x", base)
                .map_or(true, |l| !root.contains(&l))
        );
        assert!(!root.contains(&Location::parse("/exports/analysts/x", base).unwrap()));
    }

    #[test]
    fn grants_need_someone_and_something() {
        let raw = |roles: Vec<&str>, copy: Vec<&str>| FileGrantConfig {
            roles: roles.into_iter().map(String::from).collect(),
            users: vec![],
            copy_to: copy.into_iter().map(String::from).collect(),
            external_tables: vec![],
        };
        let base = Path::new("/etc/bluelamp");
        assert_eq!(
            FileGrant::resolve(raw(vec![], vec!["x"]), base)
                .unwrap_err()
                .0,
            "roles"
        );
        assert_eq!(
            FileGrant::resolve(raw(vec!["a"], vec![]), base)
                .unwrap_err()
                .0,
            "copy_to"
        );
        let grant = FileGrant::resolve(raw(vec!["a"], vec!["out"]), base).unwrap();
        assert_eq!(
            grant.copy_to,
            vec![Location::Folder(PathBuf::from("/etc/bluelamp/out"))]
        );
    }
}
