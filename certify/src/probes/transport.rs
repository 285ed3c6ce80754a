//! `security.transport`: TLS 1.2 or later where the URL is https (plain
//! http only on a loopback test system); a credential sent in the query
//! string is refused; no error answer the other probes met echoes a
//! credential.

use bluelamp_connectors::openapi::discovery::TableSpec;
use reqwest::Method;
use serde_json::Value;

use super::Probes;
use crate::report::{Criterion, Outcome};

impl Probes {
    /// `security.transport`, after the other probes (whose error answers it
    /// checks for echoed credentials).
    pub(crate) async fn transport(&mut self, tables: &[&TableSpec]) -> Criterion {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        let base = self.opened.base.clone();
        let loopback = match base.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match base.scheme() {
            "https" => {
                let client = reqwest::Client::builder()
                    .min_tls_version(reqwest::tls::Version::TLS_1_2)
                    .timeout(std::time::Duration::from_secs(30))
                    .build();
                let recorded = self
                    .recorded(&format!("GET {base}: TLS version"), 1, false)
                    .await;
                match client.map_err(|e| e.to_string()).and_then(|c| recorded.map(|()| c)) {
                    Ok(client) => match client.get(base.clone()).send().await {
                        Ok(_) => ok.push(format!(
                            "{base}: TLS 1.2 or later (the check offers nothing older)"
                        )),
                        Err(e) => bad.push(format!(
                            "{base}: no TLS 1.2 or later connection: {}",
                            bluelamp_engine::source::error_chain(&e)
                        )),
                    },
                    Err(e) => bad.push(format!("cannot probe TLS: {e}")),
                }
            }
            _ if loopback => ok.push(format!(
                "{base}: plain http on this machine (a test system); TLS is checked where the URL is https"
            )),
            scheme => bad.push(format!(
                "{base}: {scheme} across the network, so credentials and police data travel unencrypted"
            )),
        }
        // A credential in the query string must be refused.
        let credential = self.query_credential().await;
        let has_credential = credential.is_some();
        if let Some((param, value)) = credential
            && let Some(table) = tables.first()
        {
            match self.url(&table.path, &[(param.as_str(), value.as_str())]) {
                Ok(url) => match self.send(Method::GET, &url, None, &[], false).await {
                    Ok(a) if a.status < 300 => bad.push(format!(
                        "{}: a credential in the query string ({param}=...) was accepted ({})",
                        table.endpoint(),
                        a.status
                    )),
                    Ok(a) => ok.push(format!(
                        "{}: a credential in the query string ({param}=...) was refused ({})",
                        table.endpoint(),
                        a.status
                    )),
                    Err(e) => bad.push(e),
                },
                Err(e) => bad.push(e),
            }
        } else if !has_credential {
            ok.push("the source sends no credential, so none can be misplaced".into());
        }
        if self
            .opened
            .doc
            .root
            .pointer("/components/securitySchemes")
            .and_then(Value::as_object)
            .is_some_and(|s| {
                s.values()
                    .any(|v| v.get("in").and_then(Value::as_str) == Some("query"))
            })
        {
            bad.push("the document asks for an API key in the query string, where logs and proxies keep it".into());
        }
        // No error answer echoes a credential.
        let mut secrets: Vec<String> = self.opened.client.secrets().to_vec();
        if let Ok(token) = self.opened.client.access_token().await {
            secrets.push(token);
        }
        secrets.retain(|s| s.len() >= 4);
        let echoed: Vec<&String> = self
            .errors_seen
            .iter()
            .filter(|(_, body)| secrets.iter().any(|s| body.contains(s.as_str())))
            .map(|(what, _)| what)
            .collect();
        match echoed.first() {
            Some(what) => bad.push(format!("{what}: the error answer echoes a credential")),
            None => ok.push(format!(
                "{} error answers seen, none echoes a credential",
                self.errors_seen.len()
            )),
        }
        let (outcome, evidence) = if bad.is_empty() {
            (Outcome::Pass, ok)
        } else {
            (Outcome::Fail, bad)
        };
        Criterion::new(
            "security.transport",
            "TLS 1.2+ where the URL is https; no credentials in query strings; no secrets echoed",
            outcome,
            evidence,
        )
    }

    /// The source's credential as a query parameter would carry it.
    async fn query_credential(&self) -> Option<(String, String)> {
        use bluelamp_connectors::openapi::AuthConfig;
        match &self.opened.config.auth {
            AuthConfig::None | AuthConfig::Basic { .. } => None,
            AuthConfig::ApiKey { name, value, .. } => {
                Some((name.clone(), value.expose().to_string()))
            }
            AuthConfig::Bearer { token } => {
                Some(("access_token".into(), token.expose().to_string()))
            }
            AuthConfig::Oauth2 { .. } => self
                .opened
                .client
                .access_token()
                .await
                .ok()
                .map(|t| ("access_token".into(), t)),
        }
    }
}
