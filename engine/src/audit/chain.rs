//! The audit writer: one thread, group commit, a hash chain across rotated files.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak, mpsc};

use sha2::{Digest, Sha256};

use super::{AuditRecord, GENESIS};

/// Records taken into one write and one fsync at most.
const MAX_BATCH: usize = 4096;

/// The audit trail could not be written or read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the audit log {path} cannot be written: {message}")]
pub struct AuditError {
    /// The trail's file.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

type Done = tokio::sync::oneshot::Sender<Result<u64, AuditError>>;

/// One request to the writer thread.
enum Job {
    /// Append a record; answer with its `seq` once on disk, if asked.
    Append {
        record: Box<AuditRecord>,
        done: Option<Done>,
    },
    /// Answer once everything queued before it is on disk.
    Flush(Done),
}

/// A handle on the trail; clones share the one writer thread.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    jobs: Arc<Jobs>,
}

/// The writer thread's queue; the thread ends when the last handle goes.
#[derive(Debug)]
struct Jobs(Mutex<mpsc::Sender<Job>>);

impl Jobs {
    fn send(&self, job: Job) -> Result<(), ()> {
        self.0
            .lock()
            .map_err(|_| ())
            .and_then(|sender| sender.send(job).map_err(|_| ()))
    }
}

/// The trails open in this process, by file: a second engine (or any other
/// opener) in the same process joins the writer already there, so one chain
/// never has two writers.
fn open_trails() -> &'static Mutex<HashMap<PathBuf, OpenTrail>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, OpenTrail>>> = OnceLock::new();
    OPEN.get_or_init(Mutex::default)
}

/// A trail's writer in this process: its queue while handles hold it, and
/// whether its thread is still writing (it drains its queue after the last
/// handle has gone, and a new writer must not start before it is done).
struct OpenTrail {
    jobs: Weak<Jobs>,
    writing: Arc<AtomicBool>,
}

/// Longest wait for a closing writer to finish before a new one starts.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A path as one trail is known by, whatever spelling opened it.
fn trail_key(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or(absolute.clone()),
        _ => absolute,
    }
}

/// Where the chain stands: the last record's number and the hash of its line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    /// The last record's `seq` (0 before any).
    pub seq: u64,
    /// SHA-256 of its line ([`GENESIS`] before any).
    pub hash: String,
}

/// The head file beside a trail.
pub fn head_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".head");
    PathBuf::from(name)
}

/// A rotated file's name: `PATH.000001`, ...
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n:06}"));
    PathBuf::from(name)
}

/// The rotated files of a trail, oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for n in 1.. {
        let candidate = rotated_path(path, n);
        if !candidate.exists() {
            break;
        }
        out.push(candidate);
    }
    out
}

/// Every file of a trail, oldest first: its rotated files, then `path`.
pub fn trail_files(path: &Path) -> Vec<PathBuf> {
    let mut files = rotated_files(path);
    files.push(path.to_path_buf());
    files
}

/// SHA-256 of a line, in hex.
pub fn hash_line(line: &[u8]) -> String {
    Sha256::digest(line)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl AuditLog {
    /// Opens (or creates) the trail at `path` and continues its chain.
    ///
    /// # Errors
    /// The folder cannot be created, the file cannot be opened, or its last
    /// record cannot be read.
    pub fn open(path: &Path, rotate_bytes: u64) -> Result<Self, AuditError> {
        let fail = |message: String| AuditError {
            path: path.display().to_string(),
            message,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
        }
        let key = trail_key(path);
        let mut open = open_trails()
            .lock()
            .map_err(|_| fail("the register of open trails is poisoned".into()))?;
        if let Some(trail) = open.get(&key) {
            if let Some(jobs) = trail.jobs.upgrade() {
                return Ok(Self {
                    path: path.to_path_buf(),
                    jobs,
                });
            }
            // The last handle has gone but its writer may still be writing.
            let started = std::time::Instant::now();
            while trail.writing.load(Ordering::Acquire) {
                if started.elapsed() > DRAIN_WAIT {
                    return Err(fail(
                        "the previous writer of this trail has not finished".into(),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        open.retain(|_, trail| trail.writing.load(Ordering::Acquire));
        let head = last_record(path).map_err(fail)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| fail(e.to_string()))?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let mut writer = Writer {
            path: path.to_path_buf(),
            file,
            head,
            rotate_bytes: rotate_bytes.max(1),
        };
        let writing = Arc::new(AtomicBool::new(true));
        let done = Arc::clone(&writing);
        std::thread::Builder::new()
            .name("bluelamp-audit".into())
            .spawn(move || {
                writer.run(&queue);
                done.store(false, Ordering::Release);
            })
            .map_err(|e| fail(format!("cannot start the writer: {e}")))?;
        let jobs = Arc::new(Jobs(Mutex::new(jobs)));
        open.insert(
            key,
            OpenTrail {
                jobs: Arc::downgrade(&jobs),
                writing,
            },
        );
        Ok(Self {
            path: path.to_path_buf(),
            jobs,
        })
    }

    /// The trail's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a record and waits until it is on disk; returns its `seq`.
    ///
    /// # Errors
    /// [`AuditError`] if it could not be written and flushed.
    pub async fn append(&self, record: AuditRecord) -> Result<u64, AuditError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Append {
                record: Box::new(record),
                done: Some(done),
            })
            .map_err(|_| self.stopped())?;
        wait.await.map_err(|_| self.stopped())?
    }

    /// Appends a record without waiting (a result stream's end, which
    /// cannot wait). A failure is logged.
    pub fn append_detached(&self, record: AuditRecord) {
        if self
            .jobs
            .send(Job::Append {
                record: Box::new(record),
                done: None,
            })
            .is_err()
        {
            tracing::error!(target: "bluelamp::audit", "{}", self.stopped());
        }
    }

    /// Waits until every record appended before this call, detached ones
    /// included, is on disk; returns the last record's `seq`.
    ///
    /// # Errors
    /// [`AuditError`] if the writer has stopped.
    pub async fn flush(&self) -> Result<u64, AuditError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Flush(done))
            .map_err(|_| self.stopped())?;
        wait.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> AuditError {
        AuditError {
            path: self.path.display().to_string(),
            message: "the audit writer has stopped".into(),
        }
    }
}

/// The last record's number and hash: the head of the newest non-empty file.
fn last_record(path: &Path) -> Result<Head, String> {
    for file in trail_files(path).iter().rev() {
        // Only regular files are read; a device (say /dev/full in a test)
        // holds no records.
        if !std::fs::metadata(file).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let reader = BufReader::new(
            File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?,
        );
        let mut last: Option<String> = None;
        for line in reader.lines() {
            let line = line.map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            if !line.is_empty() {
                last = Some(line);
            }
        }
        if let Some(line) = last {
            let record: AuditRecord = serde_json::from_str(&line).map_err(|e| {
                format!(
                    "its last line is not an audit record ({e}); run `bluelamp audit verify {}`",
                    path.display()
                )
            })?;
            return Ok(Head {
                seq: record.seq,
                hash: hash_line(line.as_bytes()),
            });
        }
    }
    Ok(Head {
        seq: 0,
        hash: GENESIS.to_string(),
    })
}

struct Writer {
    path: PathBuf,
    file: File,
    head: Head,
    rotate_bytes: u64,
}

impl Writer {
    fn run(&mut self, queue: &mpsc::Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            // Every flush in the batch was sent after the appends before it,
            // so it is answered once the whole batch is written.
            let mut batch = Vec::with_capacity(jobs.len());
            let mut flushes = Vec::new();
            for job in jobs {
                match job {
                    Job::Append { record, done } => batch.push((*record, done)),
                    Job::Flush(done) => flushes.push(done),
                }
            }
            let (outcome, seqs) = self.write(&mut batch);
            for ((_, done), seq) in batch.into_iter().zip(seqs) {
                let answer = outcome.clone().map(|()| seq);
                if let Err(e) = &answer {
                    tracing::error!(target: "bluelamp::audit", "{e}");
                }
                if let Some(done) = done {
                    let _ = done.send(answer);
                }
            }
            for done in flushes {
                let _ = done.send(outcome.clone().map(|()| self.head.seq));
            }
        }
    }

    /// Writes a batch and flushes it; on failure the file is cut back to
    /// where it was, so no half-written record is left in the chain.
    fn write(
        &mut self,
        batch: &mut [(AuditRecord, Option<Done>)],
    ) -> (Result<(), AuditError>, Vec<u64>) {
        if batch.is_empty() {
            return (Ok(()), Vec::new());
        }
        let before = self.head.clone();
        let start_len = self.file.metadata().map(|m| m.len()).ok();
        let mut bytes = Vec::with_capacity(batch.len() * 512);
        let mut seqs = Vec::with_capacity(batch.len());
        let mut head = self.head.clone();
        for (record, _) in batch.iter_mut() {
            record.seq = head.seq + 1;
            record.prev = head.hash.clone();
            let line = match serde_json::to_vec(record) {
                Ok(line) => line,
                Err(e) => {
                    return (
                        Err(self.error(format!("cannot encode a record: {e}"))),
                        vec![0; batch.len()],
                    );
                }
            };
            head = Head {
                seq: record.seq,
                hash: hash_line(&line),
            };
            seqs.push(record.seq);
            bytes.extend_from_slice(&line);
            bytes.push(b'\n');
        }
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            if let Some(len) = start_len {
                let _ = self.file.set_len(len);
            }
            self.head = before;
            return (Err(self.error(e.to_string())), seqs);
        }
        self.head = head;
        if let Err(e) = self.write_head() {
            return (
                Err(self.error(format!("cannot update the head file: {e}"))),
                seqs,
            );
        }
        if let Err(e) = self.rotate_if_full() {
            tracing::error!(target: "bluelamp::audit", "cannot rotate {}: {e}", self.path.display());
        }
        (Ok(()), seqs)
    }

    /// Replaces the head file atomically (write, flush, rename).
    fn write_head(&self) -> std::io::Result<()> {
        let head = head_path(&self.path);
        let mut temporary = head.as_os_str().to_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let text = serde_json::to_vec(&self.head).map_err(std::io::Error::other)?;
        let mut file = File::create(&temporary)?;
        file.write_all(&text)?;
        file.sync_data()?;
        std::fs::rename(&temporary, &head)
    }

    fn rotate_if_full(&mut self) -> std::io::Result<()> {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return Ok(());
        };
        if !meta.is_file() || meta.len() < self.rotate_bytes {
            return Ok(());
        }
        let n = u32::try_from(rotated_files(&self.path).len() + 1).unwrap_or(u32::MAX);
        std::fs::rename(&self.path, rotated_path(&self.path, n))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        if let Some(parent) = self.path.parent()
            && let Ok(dir) = File::open(parent)
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    fn error(&self, message: String) -> AuditError {
        AuditError {
            path: self.path.display().to_string(),
            message,
        }
    }
}
