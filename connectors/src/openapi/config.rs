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
