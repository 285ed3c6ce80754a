//! Pacing and the retry policy: the slots of a source's rate limit (this
//! process's own, or a budget shared across a cluster), the
//! exponential backoff with jitter between attempts, and how long a
//! `Retry-After` answer may make a request wait.

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::ApiClient;

/// The longest wait a `Retry-After` may impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Extra attempts allowed for 429 answers beyond `retries`, since a rate limit
/// is a request to slow down rather than a failure.
pub(super) const EXTRA_429_ATTEMPTS: u32 = 10;

impl ApiClient {
    /// Waits for the next of the source's rate-limit slots: from the budget
    /// shared across a cluster where this process has one, else its own.
    ///
    /// # Errors
    /// The shared budget cannot be reached; the request must not be sent.
    pub(super) async fn wait_for_slot(&self) -> Result<(), String> {
        let Some(interval) = self.interval else {
            return Ok(());
        };
        let wait = if let Some((source, pacer)) = &self.shared_pacer {
            pacer.reserve(source, interval).await.map_err(|e| {
                format!(
                    "the rate budget this source shares across the cluster cannot be reached, \
                     so no request was sent: {e}"
                )
            })?
        } else {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

/// Exponential backoff from 100 ms, capped at 5 s, with up to 50% jitter.
pub(super) fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1 << attempt.min(6))
        .min(Duration::from_secs(5));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = base.mul_f64(f64::from(nanos % 1000) / 2000.0);
    base + jitter
}

pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}
