//! Runs SQL text statement by statement and prints results, for the REPL and for
//! scripts alike. Interactive runs get a spinner, a row-count line and Ctrl-C
//! cancellation; script runs print only data.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use bluelamp_engine::{QueryError, Session};
use futures::StreamExt;

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
            match self.run_one(&statement).await? {
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

    async fn run_one(&self, statement: &bluelamp_engine::Statement) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let work = self.execute(statement);
        if !self.interactive {
            let (rows, has_columns) = work.await?;
            return Ok(Outcome::Done {
                rows,
                elapsed: started.elapsed(),
                has_columns,
            });
        }
        let spinner = Spinner::start();
        let result = tokio::select! {
            result = work => Some(result),
            _ = tokio::signal::ctrl_c() => None,
        };
        spinner.stop();
        match result {
            None => Ok(Outcome::Cancelled),
            Some(result) => {
                let (rows, has_columns) = result?;
                Ok(Outcome::Done {
                    rows,
                    elapsed: started.elapsed(),
                    has_columns,
                })
            }
        }
    }

    async fn execute(
        &self,
        statement: &bluelamp_engine::Statement,
    ) -> anyhow::Result<(usize, bool)> {
        let planned = self.session.plan(statement).await?;
        let output = self.session.execute(planned).await?;
        let has_columns = !output.schema.fields().is_empty();
        let stdout = std::io::stdout();
        let mut writer = ResultWriter::new(self.format, output.schema.clone(), stdout.lock());
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
}

/// A stderr spinner that appears only after a second, so quick queries stay quiet.
struct Spinner {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Spinner {
    fn start() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { task: None };
        }
        let task = tokio::spawn(async {
            let started = Instant::now();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut i = 0;
            loop {
                eprint!(
                    "\r{} running… {:.1}s (Ctrl-C to cancel)",
                    frames[i % frames.len()],
                    started.elapsed().as_secs_f64()
                );
                let _ = std::io::stderr().flush();
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { task: Some(task) }
    }

    fn stop(self) {
        if let Some(task) = self.task {
            task.abort();
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}
