//! Traces for the people who run Bluelamp (`[telemetry]`): where OpenTelemetry
//! spans go (an OTLP/gRPC collector such as the OpenTelemetry Collector,
//! Jaeger or Tempo) and the service name they carry. Off unless
//! `otlp_endpoint` is set; the endpoint is checked when the file is loaded.

use super::{ConfigError, Origin, find_key};
use serde::Deserialize;

/// The optional `[telemetry]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// An OTLP/gRPC collector, e.g. `"http://127.0.0.1:4317"`: one span per
    /// statement, with a child span per source request, is sent there.
    /// Traces carry ids, users, clients and sources, never SQL text or
    /// values (those stay in the audit trail).
    pub otlp_endpoint: Option<String>,
    /// `service.name` on every span.
    pub service_name: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "bluelamp".to_string(),
        }
    }
}

/// Refuses an endpoint that is not an `http://` or `https://` URL with a
/// host, and an empty service name.
pub(super) fn check(origin: &Origin, settings: &TelemetrySettings) -> Result<(), ConfigError> {
    let table = origin.text.find("[telemetry]").unwrap_or(0);
    let at = |key: &str| find_key(&origin.text, &(table..origin.text.len()), key);
    if let Some(endpoint) = &settings.otlp_endpoint {
        let usable = url::Url::parse(endpoint)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some());
        if usable.is_none() {
            return Err(ConfigError::invalid(
                origin,
                at("otlp_endpoint"),
                "telemetry.otlp_endpoint".into(),
                format!(
                    "'{endpoint}' is not an OTLP/gRPC collector's address: give one such as \
                     \"http://127.0.0.1:4317\""
                ),
            ));
        }
    }
    if settings.service_name.trim().is_empty() {
        return Err(ConfigError::invalid(
            origin,
            at("service_name"),
            "telemetry.service_name".into(),
            "the service name must not be empty".into(),
        ));
    }
    Ok(())
}
