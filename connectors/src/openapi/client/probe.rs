//! Raw exchanges, for probing how a system behaves (`bluelamp certify`): one
//! request exactly as given, with or without credentials, and a short burst
//! outside the rate limit to see a documented 429.

use bytes::Bytes;
use reqwest::Url;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::{ApiClient, chain, count_request};

/// One raw exchange, for probing how a system behaves
/// ([`ApiClient::probe`]).
#[derive(Debug, Clone)]
pub struct Probed {
    /// The status answered.
    pub status: u16,
    /// The answer's headers.
    pub headers: HeaderMap,
    /// The answer's body.
    pub body: Bytes,
}

impl ApiClient {
    /// Sends one request exactly as given: no retry, no token refresh, no
    /// reading of the answer. With `credentials`, the source's
    /// authentication is added; without, none is (to see what the system
    /// does with a request that has none). The source's rate limit and
    /// concurrency cap still apply.
    ///
    /// # Errors
    /// A request that got no answer at all; the message names `endpoint`.
    pub async fn probe(
        &self,
        method: reqwest::Method,
        url: &Url,
        endpoint: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
        credentials: bool,
    ) -> Result<Probed, String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| "client closed".to_string())?;
        self.wait_for_slot().await?;
        let mut request = self.with_extra_headers(self.http.request(method, url.clone()))?;
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        self.send_once(request, endpoint, credentials).await
    }

    /// Sends `request` once (with the source's credentials if asked) and
    /// reads the whole answer, whatever its status.
    async fn send_once(
        &self,
        mut request: reqwest::RequestBuilder,
        endpoint: &str,
        credentials: bool,
    ) -> Result<Probed, String> {
        if credentials {
            request = self
                .authorise(request, false)
                .await
                .map_err(|e| e.message)?;
        }
        count_request();
        let response = request
            .send()
            .await
            .map_err(|e| self.redact(&format!("{endpoint}: {}", chain(&e))))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| {
            self.redact(&format!(
                "{endpoint}: the answer was cut off: {}",
                chain(&e)
            ))
        })?;
        Ok(Probed {
            status,
            headers,
            body,
        })
    }

    /// Sends `count` GETs of `url` at once, with credentials, outside the
    /// source's rate limit and concurrency cap: the short burst that checks
    /// a system answers its documented 429. Each answer, or why there was
    /// none.
    pub async fn burst(
        &self,
        url: &Url,
        endpoint: &str,
        count: usize,
    ) -> Vec<Result<Probed, String>> {
        let requests = (0..count).map(|_| async move {
            let request = self.with_extra_headers(self.http.get(url.clone()))?;
            self.send_once(request, endpoint, true).await
        });
        futures::future::join_all(requests).await
    }
}
