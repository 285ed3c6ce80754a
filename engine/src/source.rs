//! The contract between the engine and connectors: [`SourceFactory`] turns one
//! `[[source]]` table into a DataFusion [`SchemaProvider`], and [`SourceError`] is how
//! a connector says what went wrong on which source.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::error::DataFusionError;

use crate::config::{ConfigError, SourceConfig};

/// A connected source: its tables as a DataFusion schema, plus non-fatal warnings
/// (for example parts of an interface document the connector could not map).
pub struct ConnectedSource {
    /// The tables.
    pub schema: Arc<dyn SchemaProvider>,
    /// Things the administrator should know that did not stop the source.
    pub warnings: Vec<String>,
    /// Tables that can only be inserted into (a supplier's create operation
    /// without a list to read), counted apart by `bluelamp check`.
    pub insert_only: usize,
}

impl ConnectedSource {
    /// A source with no warnings.
    pub fn new(schema: Arc<dyn SchemaProvider>) -> Self {
        Self {
            schema,
            warnings: Vec::new(),
            insert_only: 0,
        }
    }
}

/// A rate budget several processes share: a cluster's executors each take
/// a slot here before every request to a source with a `rate_limit`, so the
/// source sees the one budget its configuration names however many
/// executors scan it (see `bluelamp-cluster`'s pacer).
#[async_trait]
pub trait SharedPacer: Send + Sync + fmt::Debug {
    /// Reserves `source`'s next slot, one every `interval` across every
    /// process; returns how long to wait before sending.
    ///
    /// # Errors
    /// The keeper of the budget cannot be reached: the request must not be
    /// sent, since nothing else keeps the source within its limit.
    async fn reserve(
        &self,
        source: &str,
        interval: std::time::Duration,
    ) -> Result<std::time::Duration, String>;
}

/// Builds the tables of one kind of source (`kind = "..."` in the config).
///
/// Implementations live in the `connectors` crate; the engine never depends on a
/// particular kind.
#[async_trait]
pub trait SourceFactory: Send + Sync + fmt::Debug {
    /// The `kind` this factory handles, e.g. `"postgres"`.
    fn kind(&self) -> &'static str;

    /// Checks the kind-specific options without any I/O, so that a typo is reported
    /// when the config is loaded rather than when a source is first used.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, line and key.
    fn validate(&self, source: &SourceConfig) -> Result<(), ConfigError>;

    /// Connects to the source and lists its tables.
    ///
    /// # Errors
    /// [`SourceError`] if the source cannot be reached or refuses the credentials.
    async fn connect(&self, source: &SourceConfig) -> Result<ConnectedSource, SourceError>;

    /// Checks that the source answers now, for a readiness probe
    /// (`/readyz`). The default connects as at start-up and drops the
    /// result; a connector whose connection may not touch the system
    /// itself (a document read from a file) checks the system too.
    ///
    /// # Errors
    /// [`SourceError`] saying why the source cannot be reached.
    async fn check(&self, source: &SourceConfig) -> Result<(), SourceError> {
        self.connect(source).await.map(drop)
    }
}

/// The factories a binary links in, by kind.
#[derive(Debug, Default, Clone)]
pub struct FactoryRegistry {
    factories: BTreeMap<&'static str, Arc<dyn SourceFactory>>,
}

impl FactoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a factory, replacing any other for the same kind.
    pub fn with(mut self, factory: Arc<dyn SourceFactory>) -> Self {
        self.factories.insert(factory.kind(), factory);
        self
    }

    /// The factory for `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn SourceFactory>> {
        self.factories.get(kind)
    }

    /// Every kind known, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }
}

/// What went wrong with a source. Its message always names the source, and never a
/// credential.
#[derive(Debug, Clone, thiserror::Error)]
#[error("source '{source_name}' ({kind}): {message}")]
pub struct SourceError {
    /// The `name` of the source.
    pub source_name: String,
    /// The source's kind.
    pub kind: String,
    /// What failed and what to do.
    pub message: String,
    /// Whether the source as a whole is unreachable (as opposed to one request
    /// being wrong), so front ends can answer "unavailable".
    pub unavailable: bool,
}

impl SourceError {
    /// An error that does not make the whole source unavailable.
    pub fn new(source: &SourceConfig, message: impl Into<String>) -> Self {
        Self {
            source_name: source.name.clone(),
            kind: source.kind.clone(),
            message: source.redact(&message.into()),
            unavailable: false,
        }
    }

    /// The source cannot be reached or refused the connection.
    pub fn unavailable(source: &SourceConfig, message: impl Into<String>) -> Self {
        Self {
            unavailable: true,
            ..Self::new(source, message)
        }
    }

    /// Wraps the error for DataFusion, so a query that meets it fails with it.
    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

/// Flattens an error and its causes into one line, for messages that should say
/// everything in a single sentence.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut current = error.source();
    while let Some(cause) = current {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = cause.source();
    }
    parts.join(": ")
}
