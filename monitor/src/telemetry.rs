//! Exports the engine's statement and source-request spans (the `tracing`
//! target [`bluelamp_engine::ops::trace::TARGET`]) as OpenTelemetry traces
//! over OTLP/gRPC, where `[telemetry] otlp_endpoint` names a collector.
//!
//! [`Telemetry::start`] builds the exporter (inside the tokio runtime, whose
//! reactor its gRPC channel uses); [`Telemetry::layer`] is the
//! `tracing-subscriber` layer that feeds it, filtered to the engine's trace
//! target, so no other span or event leaves the process. Spans are sent in
//! batches once a second; [`Telemetry::shutdown`] sends what is left.
//!
//! A collector that is down or slow costs the engine nothing but lost spans:
//! batches wait in a bounded queue on their own thread, and what does not
//! fit is dropped (and counted by the SDK), never blocking a statement.

use std::time::Duration;

use bluelamp_engine::config::TelemetrySettings;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterFn, filter_fn};
use tracing_subscriber::registry::LookupSpan;

/// How often batches of finished spans are sent.
const SEND_EVERY: Duration = Duration::from_secs(1);
/// How long one export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why traces cannot be exported.
#[derive(Debug, thiserror::Error)]
#[error("[telemetry] otlp_endpoint = \"{endpoint}\": cannot set up the OTLP exporter: {reason}")]
pub struct TelemetryError {
    endpoint: String,
    reason: String,
}

/// The trace exporter of one process.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl Telemetry {
    /// The exporter `settings` ask for, or `None` where they name no
    /// endpoint (traces are off). Call it within the tokio runtime.
    ///
    /// # Errors
    /// [`TelemetryError`] if the exporter cannot be built from the endpoint.
    pub fn start(settings: &TelemetrySettings) -> Result<Option<Self>, TelemetryError> {
        let Some(endpoint) = &settings.otlp_endpoint else {
            return Ok(None);
        };
        let failed = |reason: String| TelemetryError {
            endpoint: endpoint.clone(),
            reason,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(SEND_EVERY)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        Ok(Some(Self {
            provider,
            endpoint: endpoint.clone(),
        }))
    }

    /// Where the spans go.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The layer that turns the engine's trace spans into OpenTelemetry
    /// spans for this exporter, and ignores every other span and event.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + use<S>
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("bluelamp"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            // Nothing here reads OpenTelemetry's own current context, and
            // the time each span spends busy and idle is not kept: both would
            // cost work on every poll of a scan.
            .with_context_activation(false)
            .with_tracked_inactivity(false)
            .with_filter(only_traces())
    }

    /// Sends the finished spans now (for tests, and before a process ends).
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!("traces could not all be sent to {}: {e}", self.endpoint);
        }
    }

    /// Sends what is left and stops the exporter.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("traces could not all be sent to {}: {e}", self.endpoint);
        }
    }
}

/// The engine's trace spans and nothing else, decided once per call site.
fn only_traces() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(|metadata| metadata.target() == bluelamp_engine::ops::trace::TARGET)
        // The spans are at INFO: the layer needs nothing more verbose, so
        // debug and trace events elsewhere stay filtered out cheaply.
        .with_max_level_hint(tracing::level_filters::LevelFilter::INFO)
}
