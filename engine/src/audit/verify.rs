//! Checking an audit trail's chain, and searching its records.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::chain::{Head, hash_line, head_path, trail_files};
use super::{AuditRecord, GENESIS};

/// The first place a trail's chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The file it breaks in.
    pub file: PathBuf,
    /// The 1-based line in that file.
    pub line: usize,
    /// The record number expected there.
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: record {}: {}",
            self.file.display(),
            self.line,
            self.seq,
            self.reason
        )
    }
}

/// Walks the chain of the trail at `path` (its rotated files first) and
/// returns how many records it holds, or the first broken one: an edited
/// record (the next one's `prev` no longer matches), a deleted, inserted or
/// reordered one (numbers out of sequence), a line that is not a record, or
/// a trail cut short of its head file.
///
/// # Errors
/// The first [`Broken`] record.
pub fn verify(path: &Path) -> Result<u64, Broken> {
    let mut prev = GENESIS.to_string();
    let mut seq = 0u64;
    let mut last_place = (path.to_path_buf(), 0usize);
    for file in trail_files(path) {
        let reader = match File::open(&file) {
            Ok(f) => BufReader::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file == path => break,
            Err(e) => {
                return Err(Broken {
                    file,
                    line: 0,
                    seq: seq + 1,
                    reason: format!("cannot be read: {e}"),
                });
            }
        };
        for (index, line) in reader.split(b'\n').enumerate() {
            let broken = |reason: String| Broken {
                file: file.clone(),
                line: index + 1,
                seq: seq + 1,
                reason,
            };
            let line = line.map_err(|e| broken(format!("cannot be read: {e}")))?;
            if line.is_empty() {
                return Err(broken("an empty line where a record should be".into()));
            }
            let record: AuditRecord = serde_json::from_slice(&line).map_err(|e| {
                broken(format!(
                    "not an audit record ({e}); the line was altered or cut short"
                ))
            })?;
            if record.seq != seq + 1 {
                return Err(broken(format!(
                    "numbered {} where {} was expected: records were deleted, inserted or reordered",
                    record.seq,
                    seq + 1
                )));
            }
            if record.prev != prev {
                return Err(broken(
                    "its `prev` does not match the record before it: that record was altered, or this one was moved".into(),
                ));
            }
            prev = hash_line(&line);
            seq = record.seq;
            last_place = (file.clone(), index + 1);
        }
    }
    if let Ok(text) = std::fs::read(head_path(path)) {
        let head: Head = serde_json::from_slice(&text).map_err(|e| Broken {
            file: head_path(path),
            line: 1,
            seq,
            reason: format!("the head file is not readable ({e})"),
        })?;
        if head.seq > seq {
            return Err(Broken {
                file: last_place.0,
                line: last_place.1 + 1,
                seq: seq + 1,
                reason: format!(
                    "the trail ends at record {seq} but its head file says {}: records were cut off the end",
                    head.seq
                ),
            });
        }
        if head.seq == seq && head.hash != prev {
            return Err(Broken {
                file: last_place.0,
                line: last_place.1,
                seq,
                reason: "the last record does not match the head file: it was altered".into(),
            });
        }
    }
    Ok(seq)
}

/// Which records [`search`] returns; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// The user name.
    pub user: Option<String>,
    /// A table (`source.table`) among those the record names.
    pub table: Option<String>,
    /// Text contained in the stated purpose (case-insensitive).
    pub purpose: Option<String>,
    /// Records at or after this time (RFC 3339, or a date `YYYY-MM-DD`).
    pub since: Option<String>,
    /// Records before this time.
    pub until: Option<String>,
}

/// The records of the trail at `path` that match `filter`, oldest first.
///
/// # Errors
/// A file that cannot be read or a line that is not a record (run
/// [`verify`] to see why).
pub fn search(path: &Path, filter: &SearchFilter) -> Result<Vec<AuditRecord>, String> {
    let since = filter.since.as_deref().map(parse_time).transpose()?;
    let until = filter.until.as_deref().map(parse_time).transpose()?;
    let purpose = filter.purpose.as_deref().map(str::to_lowercase);
    let mut out = Vec::new();
    for file in trail_files(path) {
        let Ok(f) = File::open(&file) else {
            continue;
        };
        for (index, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| format!("{}: {e}", file.display()))?;
            let record: AuditRecord = serde_json::from_str(&line).map_err(|e| {
                format!(
                    "{}:{}: not an audit record ({e})",
                    file.display(),
                    index + 1
                )
            })?;
            let time = parse_time(&record.time).ok();
            let keep = filter.user.as_ref().is_none_or(|u| *u == record.user)
                && filter
                    .table
                    .as_ref()
                    .is_none_or(|t| record.tables.iter().any(|x| x == t))
                && purpose.as_ref().is_none_or(|p| {
                    record
                        .purpose
                        .as_deref()
                        .is_some_and(|x| x.to_lowercase().contains(p))
                })
                && since.is_none_or(|s| time.is_some_and(|t| t >= s))
                && until.is_none_or(|u| time.is_some_and(|t| t < u));
            if keep {
                out.push(record);
            }
        }
    }
    Ok(out)
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("'{text}' is not a time: use 2026-12-03 or 2026-12-03T10:00:00Z"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;
    use crate::audit::AuditLog;

    fn record(user: &str, table: &str) -> AuditRecord {
        AuditRecord {
            time: "2026-12-03T10:00:00.000Z".into(),
            event: "statement".into(),
            user: user.into(),
            auth: "password".into(),
            statement: format!("SELECT * FROM {table}"),
            tables: vec![table.into()],
            outcome: "ok".into(),
            ..AuditRecord::default()
        }
    }

    /// A trail of `n` records in a fresh folder.
    async fn trail(n: usize, rotate_bytes: u64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, rotate_bytes).unwrap();
        for i in 0..n {
            log.append(record(if i % 2 == 0 { "ann" } else { "bob" }, "rms.crimes"))
                .await
                .unwrap();
        }
        (dir, path)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[tokio::test]
    async fn an_intact_trail_verifies_and_continues_after_reopening() {
        let (_dir, path) = trail(5, u64::MAX).await;
        assert_eq!(verify(&path).unwrap(), 5);
        let log = AuditLog::open(&path, u64::MAX).unwrap();
        assert_eq!(log.append(record("ann", "cad.incidents")).await.unwrap(), 6);
        assert_eq!(verify(&path).unwrap(), 6);
    }

    #[tokio::test]
    async fn flush_waits_for_detached_records() {
        let (_dir, path) = trail(2, u64::MAX).await;
        let log = AuditLog::open(&path, u64::MAX).unwrap();
        for _ in 0..50 {
            log.append_detached(record("ann", "cad.incidents"));
        }
        assert_eq!(log.flush().await.unwrap(), 52);
        assert_eq!(lines(&path).len(), 52);
        assert_eq!(verify(&path).unwrap(), 52);
    }

    #[tokio::test]
    async fn two_openers_in_one_process_share_one_writer() {
        let (_dir, path) = trail(1, u64::MAX).await;
        let a = AuditLog::open(&path, u64::MAX).unwrap();
        let dotted = path
            .parent()
            .unwrap()
            .join(".")
            .join(path.file_name().unwrap());
        let b = AuditLog::open(&dotted, u64::MAX).unwrap();
        let writes = (0..40).map(|i| {
            let log = if i % 2 == 0 { a.clone() } else { b.clone() };
            async move { log.append(record("ann", "rms.crimes")).await.unwrap() }
        });
        let mut seqs = futures::future::join_all(writes).await;
        seqs.sort_unstable();
        assert_eq!(seqs, (2..=41).collect::<Vec<u64>>());
        assert_eq!(verify(&path).unwrap(), 41);
    }

    #[tokio::test]
    async fn an_edited_record_is_named() {
        let (_dir, path) = trail(5, u64::MAX).await;
        let mut l = lines(&path);
        l[2] = l[2]
            .replace("\"bob\"", "\"eve\"")
            .replace("\"ann\"", "\"eve\"");
        write_lines(&path, &l);
        let broken = verify(&path).unwrap_err();
        // The record after the edited one no longer chains to it.
        assert_eq!((broken.line, broken.seq), (4, 4), "{broken}");
        assert!(broken.reason.contains("altered"), "{broken}");
        // Editing the last record is caught by the head file.
        let (_dir, path) = trail(3, u64::MAX).await;
        let mut l = lines(&path);
        l[2] = l[2].replace("rms.crimes", "cad.incidents");
        write_lines(&path, &l);
        let broken = verify(&path).unwrap_err();
        assert_eq!(broken.seq, 3, "{broken}");
    }

    #[tokio::test]
    async fn deleted_inserted_and_reordered_records_are_named() {
        let (_dir, path) = trail(5, u64::MAX).await;
        let original = lines(&path);
        let mut deleted = original.clone();
        deleted.remove(1);
        write_lines(&path, &deleted);
        let broken = verify(&path).unwrap_err();
        assert_eq!((broken.line, broken.seq), (2, 2), "{broken}");
        assert!(broken.reason.contains("numbered 3"), "{broken}");

        let mut inserted = original.clone();
        inserted.insert(2, original[1].clone());
        write_lines(&path, &inserted);
        assert_eq!(verify(&path).unwrap_err().line, 3);

        let mut reordered = original.clone();
        reordered.swap(1, 2);
        write_lines(&path, &reordered);
        assert_eq!(verify(&path).unwrap_err().line, 2);

        // A forged record with the right number but a made-up `prev`.
        let mut forged = original.clone();
        let mut fake: AuditRecord = serde_json::from_str(&original[3]).unwrap();
        fake.user = "eve".into();
        forged[3] = serde_json::to_string(&fake).unwrap();
        write_lines(&path, &forged);
        let broken = verify(&path).unwrap_err();
        assert_eq!(broken.seq, 5, "{broken}");
    }

    #[tokio::test]
    async fn a_truncated_trail_is_caught() {
        let (_dir, path) = trail(5, u64::MAX).await;
        let l = lines(&path);
        write_lines(&path, &l[..3]);
        let broken = verify(&path).unwrap_err();
        assert!(broken.reason.contains("cut off the end"), "{broken}");
        assert_eq!(broken.seq, 4);
        // Cut in the middle of a line.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 20]).unwrap();
        assert!(
            verify(&path)
                .unwrap_err()
                .reason
                .contains("not an audit record")
        );
    }

    #[tokio::test]
    async fn rotation_carries_the_chain_across_files() {
        let (_dir, path) = trail(20, 1500).await;
        let rotated = crate::audit::chain::rotated_files(&path);
        assert!(rotated.len() >= 2, "{rotated:?}");
        assert_eq!(verify(&path).unwrap(), 20);
        // Deleting a whole rotated file breaks the chain where it was.
        std::fs::remove_file(&rotated[1]).unwrap();
        assert!(verify(&path).is_err());
    }

    #[tokio::test]
    async fn concurrent_appends_make_one_unbroken_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, u64::MAX).unwrap();
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move {
                    for _ in 0..20 {
                        log.append(record(&format!("u{i}"), "rms.crimes"))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(verify(&path).unwrap(), 640);
    }

    #[tokio::test]
    async fn search_filters_by_user_table_purpose_and_time() {
        let (_dir, path) = trail(4, u64::MAX).await;
        let log = AuditLog::open(&path, u64::MAX).unwrap();
        let mut r = record("ann", "cad.incidents");
        r.purpose = Some("Op Bluebell: missing person".into());
        r.time = "2026-12-04T09:00:00.000Z".into();
        log.append(r).await.unwrap();
        let by_user = search(
            &path,
            &SearchFilter {
                user: Some("bob".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(by_user.len(), 2);
        let by_table = search(
            &path,
            &SearchFilter {
                table: Some("cad.incidents".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(by_table.len(), 1);
        let by_purpose = search(
            &path,
            &SearchFilter {
                purpose: Some("bluebell".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(by_purpose[0].seq, 5);
        let since = search(
            &path,
            &SearchFilter {
                since: Some("2026-12-04".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(since.len(), 1);
        let until = search(
            &path,
            &SearchFilter {
                until: Some("2026-12-04".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(until.len(), 4);
        assert!(
            search(
                &path,
                &SearchFilter {
                    since: Some("yesterday".into()),
                    ..Default::default()
                }
            )
            .is_err()
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_full_disk_refuses_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let log = AuditLog::open(&path, u64::MAX).unwrap();
        let e = log.append(record("ann", "rms.crimes")).await.unwrap_err();
        assert!(e.to_string().contains("cannot be written"), "{e}");
    }
}
