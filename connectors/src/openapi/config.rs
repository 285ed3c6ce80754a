//! `kind = "openapi"` options.

use std::collections::BTreeMap;
use std::time::Duration;

use bluelamp_engine::Secret;
use bluelamp_engine::config::deserialize_duration;
use serde::Deserialize;

/// A supplier's documented REST interface.
///
/// ```toml
/// [[source]]
/// name = "cad"
/// kind = "openapi"
/// spec = "http://cad.force.local/openapi.json"   # or a file; JSON or YAML; OpenAPI 3.0 or 3.1
/// base_url = "http://cad.force.local"             # default: from the document, or where it was fetched
/// auth = { type = "api_key", name = "X-API-Key", value = "${CAD_KEY}" }
/// rate_limit = 20          # requests per second
/// concurrency = 4          # requests in flight
/// timeout = "30s"          # per request
/// retries = 3              # for GETs on 5xx, 429 and connection errors
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApiConfig {
    /// The OpenAPI document: a file (relative to the config) or an http(s) URL.
    pub spec: String,
    /// Overrides the server URL.
    pub base_url: Option<String>,
    /// How to authenticate.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Most requests per second (default: unlimited).
    pub rate_limit: Option<f64>,
    /// Most requests in flight at once (default 4).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per-request timeout (default 30s).
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// Retries for a GET that fails with a 5xx, a 429 or a connection error (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Records per page to ask for where the interface lets the client choose.
    pub page_size: Option<u64>,
    /// Per-table overrides, keyed by the discovered table name.
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
    /// A header naming the end user on every data request, e.g.
    /// `"X-On-Behalf-Of: {user}"` (`{user}`, `{force}` are the principal's).
    pub on_behalf_of: Option<String>,
    /// Other headers every request carries, such as those the document
    /// requires (`{ "X-Request-ID" = "{uuid}", "X-Client" = "${CLIENT}" }`):
    /// `${VAR}` is read from the environment when the config is loaded, and
    /// `{uuid}` is a new random UUID for each request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// One of a source's configured `headers`.
#[derive(Debug, Clone)]
pub struct ExtraHeader {
    /// The header.
    pub header: reqwest::header::HeaderName,
    /// The value, where `{uuid}` is filled in for each request.
    pub template: String,
}

impl ExtraHeader {
    /// Checks a configured header.
    ///
    /// # Errors
    /// A message for a bad header name, an unknown placeholder, or a value
    /// that cannot be sent.
    pub fn parse(name: &str, template: &str) -> Result<Self, String> {
        let header = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("'{}' is not a valid header name", name.trim()))?;
        check_placeholders(template, &["uuid"])?;
        let this = Self {
            header,
            template: template.to_string(),
        };
        this.value()?;
        Ok(this)
    }

    /// The value for one request.
    ///
    /// # Errors
    /// A message where the value cannot be sent as a header.
    pub fn value(&self) -> Result<reqwest::header::HeaderValue, String> {
        let text = self
            .template
            .replace("{uuid}", &uuid::Uuid::new_v4().to_string());
        reqwest::header::HeaderValue::from_str(&text).map_err(|_| {
            format!(
                "header {}: its value cannot be sent (only visible ASCII can be)",
                self.header
            )
        })
    }
}

/// Checks that every `{placeholder}` in `template` is one of `allowed`.
fn check_placeholders(template: &str, allowed: &[&str]) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("'{template}' has an unclosed '{{'"));
        };
        let placeholder = &rest[open + 1..open + close];
        if !allowed.contains(&placeholder) {
            let names: Vec<String> = allowed.iter().map(|a| format!("{{{a}}}")).collect();
            return Err(format!(
                "unknown placeholder '{{{placeholder}}}' in '{template}': use {}",
                names.join(" or ")
            ));
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}

/// An `on_behalf_of` header: its name and value template.
#[derive(Debug, Clone)]
pub struct OnBehalfOf {
    /// The header.
    pub header: reqwest::header::HeaderName,
    /// The value, with `{user}` and `{force}` to fill in.
    pub template: String,
}

impl OnBehalfOf {
    /// Parses `Header-Name: template`.
    ///
    /// # Errors
    /// A message for a missing colon, a bad header name, or an unknown
    /// placeholder.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((name, template)) = text.split_once(':') else {
            return Err(format!(
                "'{text}' is not a header: write `Header-Name: {{user}}`"
            ));
        };
        let header = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("'{}' is not a valid header name", name.trim()))?;
        let template = template.trim().to_string();
        check_placeholders(&template, &["user", "force"])?;
        if !template.contains('{') {
            return Err(format!(
                "'{template}' names no one: include {{user}} so each request carries its end user"
            ));
        }
        Ok(Self { header, template })
    }

    /// The header for `principal`.
    ///
    /// # Errors
    /// A message where the principal lacks what the template needs or the
    /// value cannot be sent as a header.
    pub fn for_principal(
        &self,
        principal: &bluelamp_engine::Principal,
    ) -> Result<(reqwest::header::HeaderName, reqwest::header::HeaderValue), String> {
        let mut value = self.template.replace("{user}", &principal.user);
        if value.contains("{force}") {
            let Some(force) = &principal.force else {
                return Err(format!(
                    "user '{}' has no force code, which the source's on_behalf_of header needs",
                    principal.user
                ));
            };
            value = value.replace("{force}", force);
        }
        let value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
            format!(
                "user '{}' cannot be named in a header (only visible ASCII can be)",
                principal.user
            )
        })?;
        Ok((self.header.clone(), value))
    }
}

fn default_concurrency() -> usize {
    4
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_retries() -> u32 {
    3
}

/// Authentication schemes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// No credentials.
    #[default]
    None,
    /// An API key in a header or query parameter.
    ApiKey {
        /// Header or parameter name.
        name: String,
        /// The key.
        value: Secret,
        /// `header` (default) or `query`.
        #[serde(default, rename = "in")]
        location: KeyLocation,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// OAuth2 client credentials; tokens are refreshed before they expire.
    Oauth2 {
        /// Token endpoint (default: from the document's security scheme).
        token_url: Option<String>,
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: Secret,
        /// Scopes to request.
        #[serde(default)]
        scopes: Vec<String>,
    },
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyLocation {
    /// A request header.
    #[default]
    Header,
    /// A query parameter.
    Query,
}

/// Overrides for one discovered table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Leave the table out.
    #[serde(default)]
    pub exclude: bool,
    /// Expose it under another name.
    pub rename: Option<String>,
    /// Pagination, where the document does not say.
    pub pagination: Option<PaginationConfig>,
    /// Column → query parameter for equality filters the document does not name.
    #[serde(default)]
    pub filters: BTreeMap<String, String>,
    /// Columns that identify a record.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// The create operation behind `INSERT`, where it is not a `POST` on the
    /// table's own path: `"POST /incidents/{urn}/notes"`.
    pub insert: Option<String>,
}

/// How a list endpoint pages, when it must be configured.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "style", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaginationConfig {
    /// One request returns everything.
    None,
    /// `offset` and `limit` parameters.
    Offset {
        /// Offset parameter name.
        #[serde(default = "offset_name")]
        offset_param: String,
        /// Limit parameter name.
        #[serde(default = "limit_name")]
        limit_param: String,
    },
    /// A page-number parameter, from 1.
    Page {
        /// Page parameter name.
        #[serde(default = "page_name")]
        page_param: String,
        /// Page-size parameter name, if any.
        size_param: Option<String>,
    },
    /// A cursor returned in the body and passed back as a parameter.
    Cursor {
        /// Query parameter that takes the cursor.
        param: String,
        /// Dotted path of the next cursor in the body.
        field: String,
    },
    /// The URL of the next page in the body.
    NextLink {
        /// Dotted path of the next URL in the body.
        field: String,
    },
    /// The next page in an RFC 8288 `Link` header.
    LinkHeader,
}

fn offset_name() -> String {
    "offset".into()
}
fn limit_name() -> String {
    "limit".into()
}
fn page_name() -> String {
    "page".into()
}

#[cfg(test)]
mod on_behalf_of_tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::OnBehalfOf;

    #[test]
    fn headers_name_the_principal_or_are_refused() {
        let header = OnBehalfOf::parse("X-On-Behalf-Of: {user}@{force}").unwrap();
        let mut ann = bluelamp_engine::Principal::bare("ann", "password");
        let e = header.for_principal(&ann).unwrap_err();
        assert!(e.contains("no force code"), "{e}");
        ann.force = Some("XY".into());
        let (name, value) = header.for_principal(&ann).unwrap();
        assert_eq!(name.as_str(), "x-on-behalf-of");
        assert_eq!(value.to_str().unwrap(), "ann@XY");
        for (text, says) in [
            ("X-On-Behalf-Of {user}", "is not a header"),
            ("Bad Header: {user}", "not a valid header name"),
            ("X-User: {name}", "unknown placeholder '{name}'"),
            ("X-User: service", "names no one"),
            ("X-User: {user", "unclosed"),
        ] {
            let e = OnBehalfOf::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
