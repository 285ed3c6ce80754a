//! The cluster service: a small HTTP service `bluelamp scheduler` runs
//! beside Ballista's scheduler ([`start_service`]), for what Ballista does
//! not keep.
//!
//! - **One rate budget per source.** A source's `rate_limit` is the
//!   supplier's budget, not each process's: two executors scanning the
//!   same interface must not send twice as many requests. The service
//!   keeps, per source name, the next free slot, and every executor asks
//!   for one before each request ([`ServiceClient`] is the engine's
//!   [`SharedPacer`]): `POST /v1/reserve {"source", "interval_us"}` answers
//!   how long to wait. The slots are spaced exactly as one process spaces
//!   its own, whichever executor takes them.
//! - **What each budget was spent on.** `GET /v1/budgets` answers the
//!   slots given per source since the service started.
//! - **Executor losses.** `GET /v1/losses` answers how many executors the
//!   scheduler has removed ([`crate::losses`]), so a front end can refuse a
//!   job that lived through one.
//!
//! The service holds no credentials and no data: source names, times and a
//! count. If it cannot be reached, a request is not sent and the scan fails
//! naming the source, rather than risk the supplier's limit.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use bluelamp_engine::SharedPacer;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use url::Url;

use crate::ClusterError;
use crate::losses::Losses;

/// The longest interval between two requests a source may ask for (one
/// request an hour); anything longer is a mistake in the caller.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Sources the service tracks at most: a cluster has a handful.
const MAX_SOURCES: usize = 10_000;
/// The longest source name accepted.
const MAX_NAME: usize = 256;

/// A request for `source`'s next slot.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Reserve {
    source: String,
    /// The source's interval between requests, in microseconds.
    interval_us: u64,
}

/// The answer: wait this long, then send.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Reserved {
    wait_us: u64,
}

/// Each source's next free slot, and the slots given so far.
#[derive(Debug, Default)]
struct Budgets {
    next: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Budgets {
    async fn reserve(&self, request: Reserve) -> Result<Duration, String> {
        if request.source.is_empty() || request.source.len() > MAX_NAME {
            return Err("a source name of 1 to 256 bytes is needed".into());
        }
        let interval = Duration::from_micros(request.interval_us);
        if interval.is_zero() || interval > MAX_INTERVAL {
            return Err(format!(
                "source '{}': an interval between requests of {interval:?} is out of range",
                request.source
            ));
        }
        let mut next = self.next.lock().await;
        let now = Instant::now();
        if next.len() >= MAX_SOURCES && !next.contains_key(&request.source) {
            // Slots in the past carry no budget: forget them first.
            next.retain(|_, (slot, _)| *slot > now);
            if next.len() >= MAX_SOURCES {
                return Err("too many sources share this pacer".into());
            }
        }
        let (slot, given) = next.entry(request.source).or_insert((now, 0));
        let at = (*slot).max(now);
        *slot = at + interval;
        *given += 1;
        Ok(at - now)
    }

    async fn given(&self) -> BTreeMap<String, u64> {
        let next = self.next.lock().await;
        next.iter()
            .map(|(source, (_, given))| (source.clone(), *given))
            .collect()
    }
}

/// What the service keeps.
#[derive(Debug, Default)]
struct Kept {
    budgets: Budgets,
    losses: Losses,
}

/// How many executors the scheduler has removed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LossCount {
    lost: u64,
}

/// Slots given per source since the service started.
async fn budgets(State(kept): State<Arc<Kept>>) -> Json<BTreeMap<String, u64>> {
    Json(kept.budgets.given().await)
}

async fn losses(State(kept): State<Arc<Kept>>) -> Json<LossCount> {
    Json(LossCount {
        lost: kept.losses.count(),
    })
}

async fn reserve(
    State(kept): State<Arc<Kept>>,
    Json(request): Json<Reserve>,
) -> Result<Json<Reserved>, (StatusCode, String)> {
    let wait = kept
        .budgets
        .reserve(request)
        .await
        .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    Ok(Json(Reserved {
        wait_us: u64::try_from(wait.as_micros()).unwrap_or(u64::MAX),
    }))
}

/// The running cluster service.
pub struct ClusterService {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl ClusterService {
    /// Serves until the process ends, or the service fails.
    ///
    /// # Errors
    /// The service stopped with an error.
    pub async fn wait(mut self) -> Result<(), ClusterError> {
        match (&mut self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ClusterError(format!("the cluster service stopped: {e}"))),
            Err(e) => Err(ClusterError(format!("the cluster service stopped: {e}"))),
        }
    }
}

impl Drop for ClusterService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the cluster service on `bind` (port 0 picks a free one),
/// serving `losses` (the scheduler's count of removed executors).
///
/// # Errors
/// The address cannot be bound.
pub async fn start_service(
    bind: SocketAddr,
    losses: Losses,
) -> Result<ClusterService, ClusterError> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| ClusterError(format!("the cluster service cannot listen on {bind}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ClusterError(format!("the cluster service's address: {e}")))?;
    let app = axum::Router::new()
        .route("/v1/reserve", post(reserve))
        .route("/v1/losses", get(self::losses))
        .route("/v1/budgets", get(budgets))
        .with_state(Arc::new(Kept {
            budgets: Budgets::default(),
            losses,
        }));
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(ClusterService { addr, task })
}

/// A client of the cluster service: the engine's [`SharedPacer`], and the
/// count of lost executors.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    base: Url,
    http: reqwest::Client,
}

impl ServiceClient {
    /// A client of the service at `base` (`http://host:port`).
    ///
    /// # Errors
    /// `base` is not an `http` URL.
    pub fn new(base: &str) -> Result<Self, ClusterError> {
        let bad = |why: String| {
            ClusterError(format!(
                "the cluster service's address '{base}' is not an http://HOST:PORT URL: {why}"
            ))
        };
        let url = Url::parse(base).map_err(|e| bad(e.to_string()))?;
        if url.scheme() != "http" || url.host_str().is_none() {
            return Err(bad("it needs the http scheme and a host".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClusterError(format!("the cluster service's HTTP client: {e}")))?;
        Ok(Self { base: url, http })
    }

    fn endpoint(&self, path: &str) -> Result<Url, String> {
        self.base
            .join(path)
            .map_err(|e| format!("the cluster service at {}: {e}", self.base))
    }

    /// How many executors the scheduler has removed since it started.
    ///
    /// # Errors
    /// The service cannot be reached or answers nonsense.
    pub async fn losses(&self) -> Result<u64, String> {
        let count: LossCount = self.get("/v1/losses", "a count").await?;
        Ok(count.lost)
    }

    /// `path`'s JSON answer (`what` names it in errors).
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<T, String> {
        let endpoint = self.endpoint(path)?;
        let response = self
            .http
            .get(endpoint.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("the cluster service at {endpoint} did not answer: {e}"))?;
        response.json().await.map_err(|e| {
            format!("the cluster service at {endpoint} answered what is not {what}: {e}")
        })
    }

    /// The slots given so far, per source: what each source's budget has
    /// been spent on across the cluster.
    ///
    /// # Errors
    /// The service cannot be reached or answers nonsense.
    pub async fn budgets(&self) -> Result<BTreeMap<String, u64>, String> {
        self.get("/v1/budgets", "a list of budgets").await
    }

    /// The service's address for the scheduler at `scheduler`
    /// (`df://HOST:PORT`): the same host, the next port.
    ///
    /// # Errors
    /// `scheduler` is not a scheduler address.
    pub fn beside(scheduler: &str) -> Result<String, ClusterError> {
        let (host, port) = crate::ClusterRunner::host_and_port(scheduler)?;
        let port = port.checked_add(1).ok_or_else(|| {
            ClusterError(format!(
                "the scheduler at {scheduler} has no next port for its cluster service; set \
                 [engine] cluster_service"
            ))
        })?;
        Ok(format!("http://{host}:{port}"))
    }
}

#[async_trait]
impl SharedPacer for ServiceClient {
    async fn reserve(&self, source: &str, interval: Duration) -> Result<Duration, String> {
        let endpoint = self.endpoint("/v1/reserve")?;
        let request = Reserve {
            source: source.to_string(),
            interval_us: u64::try_from(interval.as_micros()).unwrap_or(u64::MAX),
        };
        let response = self
            .http
            .post(endpoint.clone())
            .json(&request)
            .send()
            .await
            .map_err(|e| format!("the cluster service at {endpoint} did not answer: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!(
                "the cluster service at {endpoint} refused ({status}): {}",
                body.chars().take(200).collect::<String>()
            ));
        }
        let reserved: Reserved = response.json().await.map_err(|e| {
            format!("the cluster service at {endpoint} answered what is not a slot: {e}")
        })?;
        Ok(Duration::from_micros(reserved.wait_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(source: &str, interval: Duration) -> Reserve {
        Reserve {
            source: source.into(),
            interval_us: u64::try_from(interval.as_micros()).unwrap_or(u64::MAX),
        }
    }

    #[tokio::test]
    async fn slots_are_spaced_per_source_whoever_asks() {
        let budgets = Budgets::default();
        let step = Duration::from_millis(100);
        let mut waits = Vec::new();
        for _ in 0..5 {
            waits.push(budgets.reserve(request("rms", step)).await.unwrap());
        }
        // The first goes now; each next one a step after the last.
        assert!(waits[0] < Duration::from_millis(5), "{waits:?}");
        for pair in waits.windows(2) {
            let gap = pair[1].saturating_sub(pair[0]);
            assert!(gap > Duration::from_millis(95) && gap <= step, "{waits:?}");
        }
        // Another source has a budget of its own.
        let other = budgets.reserve(request("cad", step)).await.unwrap();
        assert!(other < Duration::from_millis(5), "{other:?}");
    }

    #[tokio::test]
    async fn nonsense_is_refused() {
        let budgets = Budgets::default();
        for bad in [
            request("", Duration::from_millis(1)),
            request("rms", Duration::ZERO),
            request("rms", Duration::from_secs(7200)),
            request(&"x".repeat(300), Duration::from_millis(1)),
        ] {
            assert!(budgets.reserve(bad).await.is_err());
        }
        assert!(ServiceClient::new("ftp://host:1").is_err());
        assert!(ServiceClient::new("not a url").is_err());
        assert_eq!(
            ServiceClient::beside("df://10.0.0.5:50050").unwrap(),
            "http://10.0.0.5:50051"
        );
    }

    /// Two clients (two executors) over the real HTTP service share one
    /// budget: twelve requests at 20 per second span at least 0.55 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_executors_share_one_budget_over_http() {
        let losses = Losses::default();
        let service = start_service("127.0.0.1:0".parse().unwrap(), losses.clone())
            .await
            .unwrap();
        let base = format!("http://{}", service.addr);
        let clients = [
            ServiceClient::new(&base).unwrap(),
            ServiceClient::new(&base).unwrap(),
        ];
        let interval = Duration::from_millis(50);
        let mut waits = Vec::new();
        for i in 0..12 {
            waits.push(clients[i % 2].reserve("anpr", interval).await.unwrap());
        }
        let last = waits.iter().max().copied().unwrap();
        assert!(last >= Duration::from_millis(500), "{waits:?}");
        let refused = clients[0]
            .reserve("anpr", Duration::ZERO)
            .await
            .unwrap_err();
        assert!(refused.contains("refused"), "{refused}");
        // The count of lost executors, as the scheduler records them.
        assert_eq!(clients[1].losses().await.unwrap(), 0);
        losses.record();
        assert_eq!(clients[0].losses().await.unwrap(), 1);
    }
}
