//! Runs SQL text statement by statement and prints results, for the REPL and for
//! scripts alike. Interactive runs get a spinner, a row-count line and Ctrl-C
//! cancellation; script runs print only data.
//!
//! A running query keeps every runtime worker busy, so neither the spinner nor
//! Ctrl-C may depend on the async runtime: the spinner is a plain thread, and
//! SIGINT is caught by a process-wide handler that wakes the waiting prompt
//! through a channel. The query itself runs as a task that is aborted on Ctrl-C.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bluelamp_engine::{QueryError, Session, Statement};
use futures::StreamExt;
use tokio::sync::oneshot;

use crate::output::{Format, ResultWriter};

/// What happened to one statement.
pub enum Outcome {
    /// It ran; this many rows came back.
    Done {
        /// Rows returned.
        rows: usize,
        /// Wall time.
        elapsed: Duration,
        /// Whether the statement returns rows at all.
        has_columns: bool,
    },
    /// The user pressed Ctrl-C.
    Cancelled,
}

/// Runs statements for one session.
pub struct Runner {
    session: Session,
    /// Output format.
    pub format: Format,
    /// Print elapsed time after results.
    pub timing: bool,
    interactive: bool,
}

/// The sender that Ctrl-C fires for the statement running now, if any.
static CANCEL: OnceLock<Mutex<Option<oneshot::Sender<()>>>> = OnceLock::new();

fn cancel_slot() -> &'static Mutex<Option<oneshot::Sender<()>>> {
    CANCEL.get_or_init(|| {
        // With no statement running (at the prompt the terminal is in raw mode and
        // Ctrl-C is a key, not a signal), an interrupt is simply ignored.
        let _ = ctrlc::set_handler(|| {
            if let Some(slot) = CANCEL.get()
                && let Ok(mut guard) = slot.lock()
                && let Some(tx) = guard.take()
            {
                let _ = tx.send(());
            }
        });
        Mutex::new(None)
    })
}

impl Runner {
    /// A runner; `interactive` enables the spinner, summaries and Ctrl-C handling.
    pub fn new(session: Session, format: Format, interactive: bool) -> Self {
        Self {
            session,
            format,
            timing: true,
            interactive,
        }
    }

    /// The session statements run in.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Runs every statement in `text`, stopping at the first error.
    ///
    /// # Errors
    /// The first statement's [`QueryError`], or an output error.
    pub async fn run_text(&self, text: &str) -> anyhow::Result<()> {
        let statements = self.session.parse(text)?;
        for statement in statements {
            match self.run_one(statement).await? {
                Outcome::Cancelled => {
                    eprintln!("cancelled");
                    return Ok(());
                }
                Outcome::Done {
                    rows,
                    elapsed,
                    has_columns,
                } => {
                    if self.interactive {
                        let noun = if rows == 1 { "row" } else { "rows" };
                        let what = if has_columns {
                            format!("{rows} {noun}")
                        } else {
                            "OK".to_string()
                        };
                        if self.timing {
                            println!("{what} in {:.3}s", elapsed.as_secs_f64());
                        } else {
                            println!("{what}");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn run_one(&self, statement: Statement) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        if !self.interactive {
            let (rows, has_columns) = execute(self.session.clone(), self.format, statement).await?;
            return Ok(Outcome::Done {
                rows,
                elapsed: started.elapsed(),
                has_columns,
            });
        }
        let (tx, rx) = oneshot::channel();
        if let Ok(mut slot) = cancel_slot().lock() {
            *slot = Some(tx);
        }
        let spinner = Spinner::start(self.session.clone());
        let mut task = tokio::spawn(execute(self.session.clone(), self.format, statement));
        let result = tokio::select! {
            joined = &mut task => Some(joined),
            _ = rx => None,
        };
        spinner.stop();
        if let Ok(mut slot) = cancel_slot().lock() {
            slot.take();
        }
        match result {
            None => {
                // Dropping the query's streams stops its work and its remote requests.
                task.abort();
                Ok(Outcome::Cancelled)
            }
            Some(joined) => {
                let (rows, has_columns) = joined
                    .map_err(|e| anyhow::anyhow!("the query stopped unexpectedly: {e}"))??;
                Ok(Outcome::Done {
                    rows,
                    elapsed: started.elapsed(),
                    has_columns,
                })
            }
        }
    }
}

async fn execute(
    session: Session,
    format: Format,
    statement: Statement,
) -> anyhow::Result<(usize, bool)> {
    let planned = session.plan(&statement).await?;
    let output = session.execute(planned).await?;
    let has_columns = !output.schema.fields().is_empty();
    // Machine-readable formats keep stdout to the data; the marking goes to
    // stderr (the table prints it above itself).
    if !matches!(format, Format::Table)
        && let Some(marking) = output
            .schema
            .metadata()
            .get(bluelamp_engine::session::MARKING_KEY)
    {
        eprintln!("marking: {marking}");
    }
    if !matches!(format, Format::Table)
        && let Some(as_of) = crate::output::as_of_note(&output.schema)
    {
        eprintln!("{as_of}");
    }
    let mut writer = ResultWriter::new(format, output.schema.clone(), std::io::stdout());
    let mut stream = output.stream;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(QueryError::from)?;
        rows += batch.num_rows();
        writer.write(&batch)?;
    }
    writer.finish()?;
    Ok((rows, has_columns))
}

/// A stderr spinner that appears only after a second, so quick queries stay
/// quiet. A thread of its own, so a busy runtime cannot starve it.
struct Spinner {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a running statement has fetched so far, per source:
/// `cad: 12 requests, 4500 records`.
fn progress(session: &Session) -> String {
    let Some(statement) = session.running_statement() else {
        return String::new();
    };
    let fetched = statement.fetched();
    if fetched.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = fetched
        .iter()
        .map(|(source, f)| format!("{source}: {} requests, {} records", f.requests, f.records))
        .collect();
    format!(" — {}", parts.join("; "))
}

impl Spinner {
    fn start(session: Session) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Self { stop, thread: None };
        }
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut shown = false;
            let mut i = 0;
            let mut fetched = String::new();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if started.elapsed() < Duration::from_secs(1) || flag.load(Ordering::Relaxed) {
                    continue;
                }
                // Per source, what the statement has fetched, twice a second.
                if i % 5 == 0 {
                    fetched = progress(&session);
                }
                eprint!(
                    "\r\x1b[2K{} running… {:.1}s{fetched} (Ctrl-C to cancel)",
                    frames[i % frames.len()],
                    started.elapsed().as_secs_f64()
                );
                let _ = std::io::stderr().flush();
                shown = true;
                i += 1;
            }
            if shown {
                eprint!("\r\x1b[2K");
                let _ = std::io::stderr().flush();
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread {
            let _ = thread.join();
        }
    }
}
