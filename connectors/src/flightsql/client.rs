//! One Flight SQL server, as the connector talks to it: a tonic channel
//! (plain, TLS or mutual TLS), credentials (a handshake that trades a user
//! and password for a bearer token, renewed when it expires, or a token
//! given in the config), the end user's identity header where configured,
//! and the calls every other part makes (`GetSqlInfo`, `GetTables`, a
//! command's `FlightInfo`, a ticket's stream), with every failure turned
//! into an error naming the source. Reading results is in
//! [`super::results`], deposits in [`super::write`].

use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandGetSqlInfo, CommandGetTables, ProstMessageExt};
use arrow_flight::{FlightDescriptor, FlightInfo, HandshakeRequest, Ticket};
use base64::Engine as _;
use bluelamp_engine::{Principal, SourceConfig, SourceError};
use futures::{StreamExt, TryStreamExt, stream};
use prost::Message;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

use super::capabilities::Declared;
use super::config::{FlightSqlConfig, Transport};
use crate::openapi::config::OnBehalfOf;

/// HTTP/2 receive window, per stream and per connection.
const RECEIVE_WINDOW: u32 = 16 * 1024 * 1024;

/// How the connector proves who it is.
#[derive(Clone)]
enum Credentials {
    None,
    /// Traded for a bearer token in the handshake.
    Basic {
        user: String,
        password: String,
    },
    Bearer(String),
}

/// On whose behalf a call is made.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// The source's own account: the metadata calls at connect time.
    Account,
    /// A query's end user, whose name goes in the identity header where
    /// the source sends one (and who must then be known).
    User(Option<&'a Principal>),
}

/// One remote table, as `GetTables` lists it.
#[derive(Debug, Clone)]
pub struct RemoteTable {
    /// Its catalog, if the server has catalogs.
    pub catalog: Option<String>,
    /// Its schema, if the server has schemas.
    pub schema: Option<String>,
    /// Its name on the server.
    pub name: String,
    /// Its columns, as the server announced them.
    pub columns: SchemaRef,
}

/// A connection to one Flight SQL server. Cheap to clone (one shared HTTP/2
/// channel).
#[derive(Clone)]
pub struct Connection {
    pub(super) client: FlightServiceClient<Channel>,
    pub(super) source: SourceConfig,
    credentials: Credentials,
    /// The bearer token from the last handshake.
    token: Arc<RwLock<Option<String>>>,
    identity: Option<OnBehalfOf>,
    timeout: Duration,
    /// The URL, for messages.
    pub url: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url)
            .finish()
    }
}

/// A failed call as an error naming the source: a server that cannot be
/// reached, or a stream cut off, makes the source unavailable.
pub fn status_error(source: &SourceConfig, what: &str, status: &Status) -> SourceError {
    let message = status.message();
    let unreachable = matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
    ) || (status.code() == Code::Unknown
        && (message.contains("transport") || message.contains("connection")));
    let text = if message.is_empty() {
        format!("{what}: {}", status.code().description())
    } else {
        format!("{what}: {} ({})", message, status.code().description())
    };
    if unreachable {
        SourceError::unavailable(source, text)
    } else {
        SourceError::new(source, text)
    }
}

pub(super) fn flight_error(source: &SourceConfig, what: &str, error: FlightError) -> SourceError {
    match error {
        FlightError::Tonic(status) => status_error(source, what, &status),
        other => SourceError::new(source, format!("{what}: {other}")),
    }
}

/// Reads a PEM file named in the config, relative to the config's folder.
fn pem(source: &SourceConfig, key: &str, path: &str) -> Result<Vec<u8>, SourceError> {
    let path = source.resolve_path(path);
    std::fs::read(&path).map_err(|e| {
        SourceError::new(
            source,
            format!("{key}: cannot read {}: {e}", path.display()),
        )
    })
}

impl Connection {
    /// Connects to the server `config` names and, with a user and
    /// password, authenticates.
    ///
    /// # Errors
    /// [`SourceError`] (unavailable) when the server cannot be reached, the
    /// TLS files cannot be read or the credentials are refused.
    pub async fn open(
        source: &SourceConfig,
        config: &FlightSqlConfig,
    ) -> Result<Self, SourceError> {
        let url = config
            .endpoint_url()
            .map_err(|m| SourceError::new(source, m))?;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| SourceError::new(source, format!("'{}': {e}", config.url)))?
            .connect_timeout(config.timeout)
            .tcp_nodelay(true)
            // Results are large one-way streams: HTTP/2's default 64 KiB
            // windows would have this end acknowledge every few batches.
            .initial_stream_window_size(RECEIVE_WINDOW)
            .initial_connection_window_size(RECEIVE_WINDOW);
        if config.transport() == Ok(Transport::Tls) {
            let mut tls = ClientTlsConfig::new();
            tls = match &config.tls_ca {
                Some(ca) => tls.ca_certificate(Certificate::from_pem(pem(source, "tls_ca", ca)?)),
                None => tls.with_native_roots(),
            };
            if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
                tls = tls.identity(Identity::from_pem(
                    pem(source, "tls_cert", cert)?,
                    pem(source, "tls_key", key)?,
                ));
            }
            if let Some(domain) = &config.tls_domain {
                tls = tls.domain_name(domain.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| {
                SourceError::new(
                    source,
                    format!("TLS: {}", bluelamp_engine::source::error_chain(&e)),
                )
            })?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            SourceError::unavailable(
                source,
                format!(
                    "cannot connect to {}: {} (is the server running and reachable?)",
                    config.url,
                    bluelamp_engine::source::error_chain(&e)
                ),
            )
        })?;
        let credentials = match (&config.user, &config.password, &config.token) {
            (Some(user), Some(password), _) => Credentials::Basic {
                user: user.clone(),
                password: password.expose().to_string(),
            },
            (_, _, Some(token)) => Credentials::Bearer(token.expose().to_string()),
            _ => Credentials::None,
        };
        let connection = Self {
            client: FlightServiceClient::new(channel)
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            source: source.clone(),
            credentials,
            token: Arc::new(RwLock::new(None)),
            identity: config.identity_header(),
            timeout: config.timeout,
            url: config.url.clone(),
        };
        connection.handshake().await?;
        Ok(connection)
    }

    /// With a user and password, trades them for a bearer token.
    async fn handshake(&self) -> Result<(), SourceError> {
        let Credentials::Basic { user, password } = &self.credentials else {
            return Ok(());
        };
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut request = Request::new(stream::iter([HandshakeRequest::default()]));
        let value = AsciiMetadataValue::try_from(format!("Basic {basic}")).map_err(|_| {
            SourceError::new(
                &self.source,
                "the user and password cannot be sent in a header",
            )
        })?;
        request.metadata_mut().insert("authorization", value);
        request.set_timeout(self.timeout);
        let response = self.client.clone().handshake(request).await.map_err(|s| {
            let mut e = status_error(&self.source, "handshake", &s);
            if s.code() == Code::Unauthenticated {
                e.message = format!("{} (check user and password)", e.message);
                e.unavailable = true;
            }
            e
        })?;
        let token = response
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::to_string);
        // Drain the answer so the call completes.
        let _ = response.into_inner().try_collect::<Vec<_>>().await;
        if let Ok(mut slot) = self.token.write() {
            *slot = token;
        }
        Ok(())
    }

    /// `message` as a request carrying credentials, the identity of the
    /// caller's end user where the source sends one, and the call timeout.
    pub(super) fn request<T>(
        &self,
        message: T,
        caller: Caller<'_>,
    ) -> Result<Request<T>, SourceError> {
        let mut request = Request::new(message);
        let token = self.token.read().ok().and_then(|t| t.clone());
        let authorization = match (&self.credentials, token.as_ref()) {
            (Credentials::Bearer(token), _) | (Credentials::Basic { .. }, Some(token)) => {
                Some(format!("Bearer {token}"))
            }
            (Credentials::Basic { user, password }, None) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            (Credentials::None, _) => None,
        };
        if let Some(value) = authorization {
            let value = AsciiMetadataValue::try_from(value).map_err(|_| {
                SourceError::new(&self.source, "the credential cannot be sent in a header")
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        let principal = match caller {
            Caller::Account => None,
            Caller::User(principal) => principal,
        };
        if let (Some(header), Some(principal)) = (&self.identity, principal) {
            let (name, value) = header
                .for_principal(principal)
                .map_err(|m| SourceError::new(&self.source, m))?;
            let key = AsciiMetadataKey::from_bytes(name.as_str().as_bytes()).map_err(|_| {
                SourceError::new(&self.source, format!("'{name}' cannot be a gRPC header"))
            })?;
            let value = value
                .to_str()
                .ok()
                .and_then(|v| AsciiMetadataValue::try_from(v).ok())
                .ok_or_else(|| {
                    SourceError::new(
                        &self.source,
                        format!("user '{}' cannot be named in a gRPC header", principal.user),
                    )
                })?;
            request.metadata_mut().insert(key, value);
        } else if self.identity.is_some() && matches!(caller, Caller::User(None)) {
            return Err(SourceError::new(
                &self.source,
                "the source sends each request on behalf of its end user, but this request has none",
            ));
        }
        request.set_timeout(self.timeout);
        Ok(request)
    }

    /// Runs `call` with a fresh request; where a handshake token has
    /// expired, authenticates again and retries once.
    pub(super) async fn with_retry<T, R, F, Fut>(
        &self,
        what: &str,
        message: T,
        caller: Caller<'_>,
        call: F,
    ) -> Result<R, SourceError>
    where
        T: Clone,
        F: Fn(FlightServiceClient<Channel>, Request<T>) -> Fut,
        Fut: std::future::Future<Output = Result<R, Status>>,
    {
        let first = call(self.client.clone(), self.request(message.clone(), caller)?).await;
        match first {
            Err(status)
                if status.code() == Code::Unauthenticated
                    && matches!(self.credentials, Credentials::Basic { .. }) =>
            {
                self.handshake().await?;
                call(self.client.clone(), self.request(message, caller)?)
                    .await
                    .map_err(|s| status_error(&self.source, what, &s))
            }
            other => other.map_err(|s| status_error(&self.source, what, &s)),
        }
    }

    /// `GetFlightInfo` for a Flight SQL command.
    pub(super) async fn info<M: ProstMessageExt + Clone>(
        &self,
        what: &str,
        command: M,
        caller: Caller<'_>,
    ) -> Result<FlightInfo, SourceError> {
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        self.with_retry(what, descriptor, caller, |mut client, request| async move {
            client
                .get_flight_info(request)
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Every batch of a small result (metadata), collected.
    async fn collect(
        &self,
        what: &str,
        info: FlightInfo,
        caller: Caller<'_>,
    ) -> Result<Vec<RecordBatch>, SourceError> {
        let mut out = Vec::new();
        for endpoint in info.endpoint {
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let mut batches = self.read_ticket(what, ticket, caller).await?;
            while let Some(batch) = batches.next().await {
                out.push(batch.map_err(|e| flight_error(&self.source, what, e))?);
            }
        }
        Ok(out)
    }

    /// `DoGet` for one ticket, decoded.
    pub(super) async fn read_ticket(
        &self,
        what: &str,
        ticket: Ticket,
        caller: Caller<'_>,
    ) -> Result<FlightRecordBatchStream, SourceError> {
        // A result may stream for longer than one call's timeout.
        let mut request = self.request(ticket, caller)?;
        request.set_timeout(Duration::from_secs(24 * 60 * 60));
        let response = self
            .client
            .clone()
            .do_get(request)
            .await
            .map_err(|s| status_error(&self.source, what, &s))?;
        Ok(FlightRecordBatchStream::new_from_flight_data(
            response.into_inner().map_err(FlightError::from),
        ))
    }

    /// What the server declares it runs. A server without `GetSqlInfo`
    /// declares nothing.
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub async fn declared(&self) -> Result<Declared, SourceError> {
        let command = CommandGetSqlInfo { info: Vec::new() };
        match self.info("GetSqlInfo", command, Caller::Account).await {
            Ok(info) => {
                let batches = self.collect("GetSqlInfo", info, Caller::Account).await?;
                Ok(Declared::from_batches(&batches))
            }
            Err(e) if e.unavailable => Err(e),
            Err(e) => {
                tracing::warn!("{e}; only scans, filters, sorts and limits are sent to it");
                Ok(Declared::default())
            }
        }
    }

    /// The tables of `catalog` (all where `None`), with their columns.
    ///
    /// # Errors
    /// When the server cannot be reached, refuses the call, or announces a
    /// table schema that cannot be read.
    pub async fn tables(&self, catalog: Option<&str>) -> Result<Vec<RemoteTable>, SourceError> {
        let command = CommandGetTables {
            catalog: catalog.map(str::to_string),
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: Vec::new(),
            include_schema: true,
        };
        let info = self.info("GetTables", command, Caller::Account).await?;
        let batches = self.collect("GetTables", info, Caller::Account).await?;
        let mut tables = Vec::new();
        for batch in batches {
            let text = |name: &str| {
                batch.column_by_name(name).and_then(|c| {
                    c.as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .cloned()
                })
            };
            let (catalogs, schemas, names) = (
                text("catalog_name"),
                text("db_schema_name"),
                text("table_name"),
            );
            let Some(names) = names else {
                return Err(SourceError::new(
                    &self.source,
                    "GetTables answered without a table_name column",
                ));
            };
            let encoded = batch
                .column_by_name("table_schema")
                .and_then(|c| c.as_any().downcast_ref::<arrow::array::BinaryArray>().cloned())
                .ok_or_else(|| {
                    SourceError::new(
                        &self.source,
                        "GetTables answered without table schemas (include_schema), so the tables' columns are unknown",
                    )
                })?;
            for row in 0..batch.num_rows() {
                use arrow::array::Array;
                let name = names.value(row).to_string();
                let pick = |a: &Option<arrow::array::StringArray>| {
                    a.as_ref()
                        .filter(|a| a.is_valid(row))
                        .map(|a| a.value(row).to_string())
                };
                let columns = arrow::ipc::convert::try_schema_from_ipc_buffer(encoded.value(row))
                    .map_err(|e| {
                    SourceError::new(
                        &self.source,
                        format!(
                            "GetTables: the schema announced for table '{name}' cannot be read: {e}"
                        ),
                    )
                })?;
                tables.push(RemoteTable {
                    catalog: pick(&catalogs),
                    schema: pick(&schemas),
                    name,
                    columns: Arc::new(columns),
                });
            }
        }
        Ok(tables)
    }
}
