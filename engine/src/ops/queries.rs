//! Running and recent statements: the registry behind `bluelamp.queries`
//! and `bluelamp.cancel_query('id')`.
//!
//! Every statement a [`Session`](crate::Session) executes is entered here
//! when it starts and moved to a bounded history when its last stream ends
//! or is dropped. A statement's per-source figures (requests, records and
//! bytes fetched) are read live from its physical plan's metrics, which
//! connectors label with their source's name, and frozen when it ends.
//!
//! Who sees what: a user sees their own statements; a user with the
//! operator role (`[engine] operator_role`) sees and may cancel everyone's.
//! The SQL text of another user's statement can name the person they are
//! looking for, so it is never shown more widely.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricValue;
use tokio_util::sync::CancellationToken;

/// How many finished statements `bluelamp.queries` keeps.
pub const HISTORY: usize = 500;

/// Where a statement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryState {
    /// Still running (or its client is still reading).
    Running,
    /// Every row was delivered.
    Finished,
    /// It failed with an error.
    Failed,
    /// `bluelamp.cancel_query` stopped it.
    Cancelled,
    /// It ran past its statement timeout.
    TimedOut,
    /// Its client stopped reading before the end.
    Abandoned,
}

impl QueryState {
    /// The word `bluelamp.queries` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed out",
            Self::Abandoned => "abandoned",
        }
    }
}

/// What one statement fetched from one source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Requests sent (retries included).
    pub requests: u64,
    /// Records received.
    pub records: u64,
    /// Bytes received.
    pub bytes: u64,
}

/// Who started a statement, from where, and what it is.
#[derive(Debug, Clone)]
pub struct QueryOrigin {
    /// The user it runs as.
    pub user: String,
    /// The front end: `repl`, `script`, `flight-sql`, `postgres`, ...
    pub client: String,
    /// The client's network address, where it has one.
    pub address: Option<String>,
    /// The purpose declared for the session (`SET bluelamp.purpose`).
    pub purpose: Option<String>,
    /// The statement's SQL text.
    pub sql: String,
}

/// One statement, running or recently ended.
#[derive(Debug)]
pub struct QueryRecord {
    /// Its id, unique in this process (`q1`, `q2`, ...).
    pub id: String,
    /// The number in its id: its key among the running statements.
    number: u64,
    /// Who, from where, and what.
    pub origin: QueryOrigin,
    /// When it started.
    pub started: SystemTime,
    clock: Instant,
    rows: AtomicU64,
    cancel: CancellationToken,
    end: Mutex<End>,
}

#[derive(Debug)]
struct End {
    state: QueryState,
    elapsed: Option<Duration>,
    error: Option<String>,
    /// Who cancelled it.
    cancelled_by: Option<String>,
    /// The running plan, read for live per-source figures.
    plan: Option<Arc<dyn ExecutionPlan>>,
    /// The figures frozen when it ended.
    fetched: BTreeMap<String, Fetched>,
}

impl QueryRecord {
    /// Where it stands now.
    pub fn state(&self) -> QueryState {
        self.end.lock().map_or(QueryState::Failed, |end| end.state)
    }

    /// Time since it started, or its whole run once ended.
    pub fn elapsed(&self) -> Duration {
        self.end
            .lock()
            .ok()
            .and_then(|end| end.elapsed)
            .unwrap_or_else(|| self.clock.elapsed())
    }

    /// Rows delivered to its client so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Counts rows delivered.
    pub(crate) fn add_rows(&self, rows: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
    }

    /// Why it failed, was cancelled or timed out.
    pub fn error(&self) -> Option<String> {
        self.end.lock().ok().and_then(|end| end.error.clone())
    }

    /// The signal its streams watch.
    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Who cancelled it, if someone did.
    pub(crate) fn cancelled_by(&self) -> Option<String> {
        self.end
            .lock()
            .ok()
            .and_then(|end| end.cancelled_by.clone())
    }

    /// Per source, what it has fetched so far.
    pub fn fetched(&self) -> BTreeMap<String, Fetched> {
        let Ok(end) = self.end.lock() else {
            return BTreeMap::new();
        };
        match &end.plan {
            Some(plan) => fetched_by(plan),
            None => end.fetched.clone(),
        }
    }

    /// Keeps the plan it runs, for live figures.
    pub(crate) fn attach(&self, plan: &Arc<dyn ExecutionPlan>) {
        if let Ok(mut end) = self.end.lock() {
            end.plan = Some(Arc::clone(plan));
        }
    }

    /// Records its end, once: the first end recorded wins.
    pub(crate) fn finish(&self, state: QueryState, error: Option<String>) -> bool {
        let Ok(mut end) = self.end.lock() else {
            return false;
        };
        if end.state != QueryState::Running {
            return false;
        }
        end.state = state;
        end.elapsed = Some(self.clock.elapsed());
        end.error = error;
        if let Some(plan) = end.plan.take() {
            end.fetched = fetched_by(&plan);
        }
        true
    }
}

/// Per source, the requests, records and bytes the plan's nodes counted,
/// from their metrics labelled `source`.
fn fetched_by(plan: &Arc<dyn ExecutionPlan>) -> BTreeMap<String, Fetched> {
    let mut out: BTreeMap<String, Fetched> = BTreeMap::new();
    let _ = datafusion::common::tree_node::TreeNode::apply(plan, |node| {
        if let Some(metrics) = node.metrics() {
            for metric in metrics.iter() {
                let Some(source) = metric
                    .labels()
                    .iter()
                    .find(|label| label.name() == "source")
                    .map(|label| label.value().to_string())
                else {
                    continue;
                };
                let MetricValue::Count { name, count } = metric.value() else {
                    continue;
                };
                let figures = out.entry(source).or_default();
                let value = count.value() as u64;
                match name.as_ref() {
                    "requests" => figures.requests += value,
                    "records" => figures.records += value,
                    "bytes" => figures.bytes += value,
                    _ => {}
                }
            }
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    out
}

/// Why a cancel was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelRefused {
    /// No running statement has that id (for this user).
    NotFound,
    /// It has already ended.
    Ended(QueryState),
}

/// Every running statement of this process and the recent ones.
#[derive(Debug, Default)]
pub struct QueryRegistry {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, Arc<QueryRecord>>>,
    recent: Mutex<VecDeque<Arc<QueryRecord>>>,
}

impl QueryRegistry {
    /// Enters a statement that is starting.
    pub fn begin(&self, origin: QueryOrigin) -> Arc<QueryRecord> {
        let number = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let record = Arc::new(QueryRecord {
            id: format!("q{number}"),
            number,
            origin,
            started: SystemTime::now(),
            clock: Instant::now(),
            rows: AtomicU64::new(0),
            cancel: CancellationToken::new(),
            end: Mutex::new(End {
                state: QueryState::Running,
                elapsed: None,
                error: None,
                cancelled_by: None,
                plan: None,
                fetched: BTreeMap::new(),
            }),
        });
        if let Ok(mut running) = self.running.lock() {
            running.insert(number, Arc::clone(&record));
        }
        record
    }

    /// Moves an ended statement to the history, dropping the oldest.
    pub(crate) fn retire(&self, record: &Arc<QueryRecord>) {
        let removed = self
            .running
            .lock()
            .ok()
            .and_then(|mut running| running.remove(&record.number));
        if removed.is_some()
            && let Ok(mut recent) = self.recent.lock()
        {
            recent.push_back(Arc::clone(record));
            while recent.len() > HISTORY {
                recent.pop_front();
            }
        }
    }

    /// Running statements first (oldest first), then the history (newest
    /// first), as far as `may_see` allows.
    pub fn list(&self, may_see: impl Fn(&QueryRecord) -> bool) -> Vec<Arc<QueryRecord>> {
        let mut out: Vec<Arc<QueryRecord>> = self
            .running
            .lock()
            .map(|running| running.values().cloned().collect())
            .unwrap_or_default();
        if let Ok(recent) = self.recent.lock() {
            out.extend(recent.iter().rev().cloned());
        }
        out.retain(|record| may_see(record));
        out
    }

    /// How many statements are running now.
    pub fn running(&self) -> usize {
        self.running.lock().map_or(0, |running| running.len())
    }

    /// Cancels running statement `id`, if `may_cancel` allows it, on behalf
    /// of `by`. The statement's streams end with a cancelled error.
    ///
    /// # Errors
    /// [`CancelRefused`] if there is no such statement the caller may cancel,
    /// or it has already ended.
    pub fn cancel(
        &self,
        id: &str,
        by: &str,
        may_cancel: impl Fn(&QueryRecord) -> bool,
    ) -> Result<Arc<QueryRecord>, CancelRefused> {
        let found = self
            .list(&may_cancel)
            .into_iter()
            .find(|record| record.id == id)
            .ok_or(CancelRefused::NotFound)?;
        let state = found.state();
        if state != QueryState::Running {
            return Err(CancelRefused::Ended(state));
        }
        if let Ok(mut end) = found.end.lock() {
            end.cancelled_by.get_or_insert_with(|| by.to_string());
        }
        found.cancel.cancel();
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    fn origin(user: &str) -> QueryOrigin {
        QueryOrigin {
            user: user.into(),
            client: "repl".into(),
            address: None,
            purpose: None,
            sql: "SELECT 1".into(),
        }
    }

    #[test]
    fn statements_move_to_a_bounded_history_and_only_running_ones_cancel() {
        let registry = QueryRegistry::default();
        let first = registry.begin(origin("ann"));
        let second = registry.begin(origin("bob"));
        assert_eq!(registry.running(), 2);
        assert_eq!(
            registry
                .cancel(&second.id, "ann", |r| r.origin.user == "ann")
                .err(),
            Some(CancelRefused::NotFound),
            "another user's statement is not found for a non-operator"
        );
        let cancelled = registry.cancel(&second.id, "bob", |_| true).unwrap();
        assert!(cancelled.cancel_token().is_cancelled());
        assert_eq!(cancelled.cancelled_by().as_deref(), Some("bob"));
        assert!(first.finish(QueryState::Finished, None));
        assert!(
            !first.finish(QueryState::Failed, None),
            "the first end wins"
        );
        registry.retire(&first);
        assert_eq!(
            registry.cancel(&first.id, "ann", |_| true).err(),
            Some(CancelRefused::Ended(QueryState::Finished))
        );
        for _ in 0..HISTORY + 10 {
            let record = registry.begin(origin("ann"));
            record.finish(QueryState::Finished, None);
            registry.retire(&record);
        }
        let all = registry.list(|_| true);
        assert_eq!(all.len(), HISTORY + 1, "one running, {HISTORY} kept");
        assert_eq!(all[0].id, second.id, "running statements come first");
    }
}
