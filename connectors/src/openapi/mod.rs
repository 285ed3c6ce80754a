//! `kind = "openapi"`: a supplier's documented REST interface becomes SQL tables.
//!
//! At connect time the OpenAPI document (3.0 or 3.1, JSON or YAML, file or URL)
//! is read and every GET operation that returns a list becomes a table
//! ([`discovery`]); its JSON Schema becomes the Arrow schema ([`schema`]). A scan
//! turns SQL filters on documented query and path parameters into requests
//! ([`pushdown`], [`provider`]), walks the pages in whatever style the interface
//! uses, and streams them as Arrow batches ([`exec`]) through a client with
//! authentication, rate limiting, timeouts and retries ([`client`]).
//!
//! `POST` operations make tables insertable ([`write`]): `INSERT` validates
//! every row against the request schema first, then sends each row once, with
//! an idempotency key where the interface supports one, and records every
//! row's outcome in `bluelamp.deposits` ([`sink`]).
//!
//! Anything in the document that cannot be mapped is a warning in
//! `bluelamp check`, never a failed source.

pub mod client;
pub mod config;
pub mod discovery;
pub mod exec;
pub mod provider;
pub mod pushdown;
pub mod requests;
pub mod schema;
#[cfg(test)]
mod schema_props;
pub mod spec;
mod walk;
pub mod write;

use std::sync::Arc;

use async_trait::async_trait;
use bluelamp_engine::{ConfigError, ConnectedSource, SourceConfig, SourceError, SourceFactory};
use reqwest::Url;

pub use config::{AuthConfig, OpenApiConfig};
pub use provider::{OpenApiSchemaProvider, OpenApiTableProvider};

use client::{ApiClient, Client};
use spec::Document;

/// The slowest `rate_limit`: one request an hour.
const MIN_RATE_LIMIT: f64 = 1.0 / 3600.0;
/// The fastest `rate_limit`: one request a microsecond, the finest interval
/// a cluster's shared budget keeps.
const MAX_RATE_LIMIT: f64 = 1_000_000.0;

/// The factory for `kind = "openapi"`.
#[derive(Debug, Default)]
pub struct OpenApiSourceFactory;

#[async_trait]
impl SourceFactory for OpenApiSourceFactory {
    fn kind(&self) -> &'static str {
        "openapi"
    }

    fn validate(&self, source: &SourceConfig) -> Result<(), ConfigError> {
        let config: OpenApiConfig = source.options()?;
        if config.concurrency == 0 {
            return Err(source.error("concurrency", "concurrency must be at least 1"));
        }
        if config
            .rate_limit
            .is_some_and(|r| !(MIN_RATE_LIMIT..=MAX_RATE_LIMIT).contains(&r))
        {
            return Err(source.error(
                "rate_limit",
                format!(
                    "rate_limit must be a number of requests per second from {MIN_RATE_LIMIT:.6} \
                     (one an hour) to {MAX_RATE_LIMIT} (one a microsecond)"
                ),
            ));
        }
        if config.page_size == Some(0) {
            return Err(source.error("page_size", "page_size must be at least 1"));
        }
        if let Some(text) = &config.on_behalf_of {
            config::OnBehalfOf::parse(text).map_err(|m| source.error("on_behalf_of", m))?;
        }
        for (name, value) in &config.headers {
            config::ExtraHeader::parse(name, value)
                .map_err(|m| source.error(&format!("headers.{name}"), m))?;
        }
        if let Some(base) = &config.base_url {
            Url::parse(base)
                .map_err(|e| source.error("base_url", format!("not a valid URL: {e}")))?;
        }
        if config.spec.contains("://") {
            Url::parse(&config.spec)
                .map_err(|e| source.error("spec", format!("not a valid URL: {e}")))?;
        }
        Ok(())
    }

    /// The document is read as at start-up, and the system at its base
    /// URL must answer (any HTTP status: it is reachable), since a document
    /// read from a file says nothing of the system.
    async fn check(&self, source: &SourceConfig) -> Result<(), SourceError> {
        let opened = open(source).await?;
        match opened.client.http().get(opened.base.clone()).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(SourceError::unavailable(
                source,
                format!(
                    "{} does not answer: {}",
                    opened.base,
                    bluelamp_engine::source::error_chain(&e)
                ),
            )),
        }
    }

    async fn connect(&self, source: &SourceConfig) -> Result<ConnectedSource, SourceError> {
        let Opened {
            config,
            doc,
            warnings: mut file_warnings,
            base,
            client,
        } = open(source).await?;
        let (tables, warnings) = discovery::discover(&doc, &config.tables);
        file_warnings.extend(warnings);
        file_warnings.extend(missing_headers(&doc, &config));
        let warnings = file_warnings;
        let insert_only = tables.iter().filter(|t| !t.readable).count();
        let providers = tables
            .into_iter()
            .map(|spec| {
                OpenApiTableProvider::new(
                    source.name.clone(),
                    spec,
                    Arc::clone(&client),
                    base.clone(),
                    config.page_size,
                )
            })
            .collect();
        Ok(ConnectedSource {
            schema: Arc::new(OpenApiSchemaProvider::new(providers)),
            warnings,
            insert_only,
        })
    }
}

/// A source's document (bundled, with the warnings reading it gave), its
/// base URL and its configured client: what every table of the source
/// shares, and what `bluelamp certify` probes the live system with.
pub struct Opened {
    /// The source's options.
    pub config: OpenApiConfig,
    /// The document, with every file it refers to.
    pub doc: Document,
    /// What reading the document found wrong but could work around.
    pub warnings: Vec<String>,
    /// Where the document's operations are, relative to which paths resolve.
    pub base: Url,
    /// The client, with the source's credentials, limits and headers.
    pub client: Client,
}

/// Reads source `source`'s document and makes its client.
///
/// # Errors
/// A configuration that cannot be used, or a document that cannot be read.
pub async fn open(source: &SourceConfig) -> Result<Opened, SourceError> {
    let config: OpenApiConfig = source
        .options()
        .map_err(|e| SourceError::new(source, e.to_string()))?;
    // The document is fetched with the source's credentials, except OAuth2,
    // whose token endpoint the document itself may name.
    let extra_headers = config
        .headers
        .iter()
        .map(|(name, value)| config::ExtraHeader::parse(name, value))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| SourceError::new(source, m))?;
    let document_auth = match &config.auth {
        AuthConfig::Oauth2 { .. } => AuthConfig::None,
        other => other.clone(),
    };
    let client = ApiClient::new(
        document_auth,
        None,
        config.timeout,
        config.concurrency,
        config.rate_limit,
        config.retries,
    )
    .map_err(|e| SourceError::new(source, e))?
    .with_headers(extra_headers.clone())
    .with_metrics(source.metrics());
    let (text, fetched_from) = load_document(source, &config, &client).await?;
    let doc = Document::parse(&text)
        .map_err(|e| SourceError::new(source, format!("{}: {e}", config.spec)))?;
    let root = match &fetched_from {
        Some(url) => spec::Location::Url(url.clone()),
        None => spec::Location::File(source.resolve_path(&config.spec)),
    };
    // The source's credentials go only to the document's own origin; a
    // file elsewhere is fetched without them.
    let origin = fetched_from.as_ref().map(Url::origin);
    let (doc, file_warnings) = spec::bundle(doc, root, |location| {
        let client = &client;
        let origin = origin.clone();
        async move {
            match location {
                spec::Location::File(path) => tokio::fs::read_to_string(&path)
                    .await
                    .map_err(|e| e.to_string()),
                spec::Location::Url(url) if Some(url.origin()) == origin => {
                    let fetched = client
                        .get(&url, &format!("GET {}", url.path()), None)
                        .await
                        .map_err(|e| e.message)?;
                    String::from_utf8(fetched.body.to_vec())
                        .map_err(|_| "not UTF-8 text".to_string())
                }
                spec::Location::Url(url) => {
                    let response = client
                        .http()
                        .get(url.clone())
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if !response.status().is_success() {
                        return Err(format!("HTTP {}", response.status().as_u16()));
                    }
                    response.text().await.map_err(|e| e.to_string())
                }
            }
        }
    })
    .await;
    let base =
        base_url(&config, &doc, fetched_from.as_ref()).map_err(|e| SourceError::new(source, e))?;
    let token_url = match &config.auth {
        AuthConfig::Oauth2 { token_url, .. } => {
            let raw = token_url
                .clone()
                .or_else(|| doc.oauth2_token_url().map(str::to_string));
            match raw {
                Some(u) => Some(base.join(&u).map_err(|e| {
                    SourceError::new(source, format!("bad OAuth2 token URL {u}: {e}"))
                })?),
                None => {
                    return Err(SourceError::new(
                        source,
                        "auth is oauth2 but neither auth.token_url nor the document names a token URL",
                    ));
                }
            }
        }
        _ => None,
    };
    let client = Arc::new(
        ApiClient::new(
            config.auth.clone(),
            token_url,
            config.timeout,
            config.concurrency,
            config.rate_limit,
            config.retries,
        )
        .map_err(|e| SourceError::new(source, e))?
        .with_headers(extra_headers)
        .with_metrics(source.metrics())
        .with_on_behalf_of(
            config
                .on_behalf_of
                .as_deref()
                .map(config::OnBehalfOf::parse)
                .transpose()
                .map_err(|m| SourceError::new(source, m))?,
        )
        .with_shared_pacer(&source.name, source.shared_pacer()),
    );
    Ok(Opened {
        config,
        doc,
        warnings: file_warnings,
        base,
        client,
    })
}

/// A warning for each header the document requires that the source does
/// not send: not configured in `headers`, and not the credential,
/// `on_behalf_of` or idempotency header the connector adds itself. One line
/// per header, naming the operations that need it.
fn missing_headers(doc: &Document, config: &OpenApiConfig) -> Vec<String> {
    let mut sent: Vec<String> = config
        .headers
        .keys()
        .map(|k| k.to_ascii_lowercase())
        .collect();
    sent.push("authorization".into());
    if let AuthConfig::ApiKey { name, .. } = &config.auth {
        sent.push(name.to_ascii_lowercase());
    }
    if let Some(header) = config
        .on_behalf_of
        .as_deref()
        .and_then(|t| config::OnBehalfOf::parse(t).ok())
    {
        sent.push(header.header.as_str().to_string());
    }
    let mut needed: std::collections::BTreeMap<String, (String, Vec<String>)> = Default::default();
    for (operation, header) in discovery::required_headers(doc) {
        let lower = header.to_ascii_lowercase();
        if sent.contains(&lower) || lower.contains("idempotency") {
            continue;
        }
        needed
            .entry(lower)
            .or_insert_with(|| (header, Vec::new()))
            .1
            .push(operation);
    }
    needed
        .into_values()
        .map(|(header, operations)| {
            let which = match operations.as_slice() {
                [one] => one.clone(),
                [first, rest @ ..] => format!("{first} and {} other operations", rest.len()),
                [] => String::new(),
            };
            format!(
                "{which}: the document requires header '{header}', which this source does not send; add headers = {{ \"{header}\" = \"...\" }} to its [[source]] (\"{{uuid}}\" makes a new id for each request)"
            )
        })
        .collect()
}

/// Reads the document from a file or URL; returns its text and, for a URL, where
/// it came from (the default base for relative server URLs).
async fn load_document(
    source: &SourceConfig,
    config: &OpenApiConfig,
    client: &ApiClient,
) -> Result<(String, Option<Url>), SourceError> {
    if config.spec.starts_with("http://") || config.spec.starts_with("https://") {
        let url =
            Url::parse(&config.spec).map_err(|e| SourceError::new(source, format!("spec: {e}")))?;
        let fetched = client
            .get(&url, &format!("GET {}", url.path()), None)
            .await
            .map_err(|e| SourceError {
                unavailable: e.unavailable,
                ..SourceError::new(
                    source,
                    format!("cannot fetch the OpenAPI document: {}", e.message),
                )
            })?;
        let text = String::from_utf8(fetched.body.to_vec())
            .map_err(|_| SourceError::new(source, "the OpenAPI document is not UTF-8 text"))?;
        Ok((text, Some(url)))
    } else {
        let path = source.resolve_path(&config.spec);
        let text = tokio::fs::read_to_string(&path).await.map_err(|e| {
            SourceError::unavailable(
                source,
                format!("cannot read the OpenAPI document {}: {e}", path.display()),
            )
        })?;
        Ok((text, None))
    }
}

fn base_url(
    config: &OpenApiConfig,
    doc: &Document,
    fetched_from: Option<&Url>,
) -> Result<Url, String> {
    if let Some(base) = &config.base_url {
        return Url::parse(base).map_err(|e| format!("base_url: {e}"));
    }
    let server = doc.server_url().unwrap_or("/");
    match (Url::parse(server), fetched_from) {
        (Ok(url), _) => Ok(url),
        (Err(_), Some(origin)) => origin
            .join(server)
            .map_err(|e| format!("server URL {server}: {e}")),
        (Err(_), None) => Err(format!(
            "the document's server URL '{server}' is relative and the document was read from a file: set base_url"
        )),
    }
}

/// An error naming the source, as every part of this connector reports it.
pub(crate) fn source_error(
    source: &str,
    message: String,
    unavailable: bool,
) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(bluelamp_engine::SourceError {
        source_name: source.to_string(),
        kind: "openapi".into(),
        message,
        unavailable,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::PathBuf;

    use super::*;

    fn validated(options: &str) -> Result<(), ConfigError> {
        let text = format!(
            "[[source]]\nname = \"rms\"\nkind = \"openapi\"\nspec = \"rms.yaml\"\n{options}\n"
        );
        let config =
            bluelamp_engine::Config::parse(&text, "t.toml", PathBuf::from("/tmp")).unwrap();
        OpenApiSourceFactory.validate(&config.sources[0])
    }

    #[test]
    fn rate_limits_a_cluster_can_share_are_accepted_and_others_named() {
        for ok in [
            "",
            "rate_limit = 20",
            "rate_limit = 0.0003",
            "rate_limit = 1000000",
        ] {
            assert!(validated(ok).is_ok(), "{ok}");
        }
        for bad in [
            "rate_limit = 0",
            "rate_limit = -1",
            "rate_limit = 0.0001",
            "rate_limit = 2000000",
            "rate_limit = inf",
            "rate_limit = nan",
        ] {
            let error = validated(bad).unwrap_err().to_string();
            assert!(
                error.contains("source[rms].rate_limit") && error.contains("one an hour"),
                "{bad}: {error}"
            );
        }
    }
}
