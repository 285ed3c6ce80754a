//! Credentials on each request: an API key, a bearer token, basic auth, or an
//! OAuth2 client-credentials token fetched from the token endpoint, cached,
//! and refreshed shortly before it expires (or when the service refuses it).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ApiClient, FetchError, chain, count_request};
use crate::openapi::config::{AuthConfig, KeyLocation};

impl ApiClient {
    /// A bearer token, fetching or refreshing one shortly before it expires.
    pub(super) async fn oauth_token(&self, force: bool) -> Result<String, FetchError> {
        let AuthConfig::Oauth2 {
            client_id,
            client_secret,
            scopes,
            ..
        } = &self.auth
        else {
            return Err(FetchError {
                status: None,
                message: "not an OAuth2 source".into(),
                unavailable: false,
            });
        };
        let mut cached = self.token.lock().await;
        if !force
            && let Some((token, expires)) = cached.as_ref()
            && Instant::now() < *expires
        {
            return Ok(token.clone());
        }
        let Some(url) = &self.token_url else {
            return Err(FetchError {
        status: None,
                message: "OAuth2 needs a token URL: set auth.token_url or document a clientCredentials flow".into(),
                unavailable: false,
            });
        };
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", client_id.clone()),
            ("client_secret", client_secret.expose().to_string()),
        ];
        if !scopes.is_empty() {
            form.push(("scope", scopes.join(" ")));
        }
        let endpoint = format!("POST {}", url.path());
        count_request();
        let response = self
            .http
            .post(url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| FetchError {
                status: None,
                message: self.redact(&format!(
                    "{endpoint}: cannot get an OAuth2 token: {}",
                    chain(&e)
                )),
                unavailable: true,
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let reason = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            return Err(FetchError {
                status: None,
                message: format!(
                    "{endpoint}: the token endpoint refused the client credentials (HTTP {}: {reason})",
                    status.as_u16()
                ),
                unavailable: false,
            });
        }
        let Some(token) = body.get("access_token").and_then(Value::as_str) else {
            return Err(FetchError {
                status: None,
                message: format!("{endpoint}: the token response has no access_token"),
                unavailable: false,
            });
        };
        let lifetime = Duration::from_secs(
            body.get("expires_in")
                .and_then(Value::as_u64)
                .unwrap_or(3600),
        );
        // Refresh a little early, so a token never expires in flight.
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        *cached = Some((
            token.to_string(),
            Instant::now() + lifetime.saturating_sub(margin),
        ));
        Ok(token.to_string())
    }

    pub(super) async fn authorise(
        &self,
        request: reqwest::RequestBuilder,
        refresh: bool,
    ) -> Result<reqwest::RequestBuilder, FetchError> {
        Ok(match &self.auth {
            AuthConfig::None => request,
            AuthConfig::ApiKey {
                name,
                value,
                location: KeyLocation::Header,
            } => request.header(name.as_str(), value.expose()),
            AuthConfig::ApiKey {
                name,
                value,
                location: KeyLocation::Query,
            } => request.query(&[(name.as_str(), value.expose())]),
            AuthConfig::Bearer { token } => request.bearer_auth(token.expose()),
            AuthConfig::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
            AuthConfig::Oauth2 { .. } => request.bearer_auth(self.oauth_token(refresh).await?),
        })
    }

    /// A current OAuth2 access token, for a source that uses OAuth2.
    ///
    /// # Errors
    /// Not an OAuth2 source, or the token endpoint refuses.
    pub async fn access_token(&self) -> Result<String, String> {
        self.oauth_token(false).await.map_err(|e| e.message)
    }
}
