//! An OTLP/gRPC trace receiver on a free local port, standing in for an
//! OpenTelemetry Collector: it keeps every span it is sent, with its
//! resource's `service.name`, for a test to read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio::sync::mpsc;

/// One span as received, its attributes read into text.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The sender's `service.name`.
    pub service: String,
    /// The span's name.
    pub name: String,
    /// Hex trace id (32 digits).
    pub trace_id: String,
    /// Hex span id.
    pub span_id: String,
    /// Hex parent span id; empty for a root span.
    pub parent_span_id: String,
    /// Attributes, values as text.
    pub attributes: HashMap<String, String>,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    /// The status's description.
    pub status_message: String,
    /// When it started and ended, in nanoseconds since 1970.
    pub start_ns: u64,
    /// See `start_ns`.
    pub end_ns: u64,
}

impl ReceivedSpan {
    /// An attribute's value, or "" where it has none.
    pub fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// A running receiver.
pub struct OtlpReceiver {
    /// Where it listens (`http://{addr}` is the endpoint).
    pub addr: SocketAddr,
    spans: mpsc::UnboundedReceiver<ReceivedSpan>,
    /// Everything received so far.
    pub received: Vec<ReceivedSpan>,
    task: tokio::task::JoinHandle<()>,
}

struct Collector {
    spans: mpsc::UnboundedSender<ReceivedSpan>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| text(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let _ = self.spans.send(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: text(&span.attributes),
                        status_code: span.status.as_ref().map_or(0, |s| s.code),
                        status_message: span.status.map(|s| s.message).unwrap_or_default(),
                        start_ns: span.start_time_unix_nano,
                        end_ns: span.end_time_unix_nano,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl OtlpReceiver {
    /// Starts a receiver on a free local port.
    ///
    /// # Panics
    /// If no local port can be bound (a broken test machine).
    #[allow(clippy::expect_used, reason = "test fixture")]
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Collector { spans: tx }))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Self {
            addr,
            spans: rx,
            received: Vec::new(),
            task,
        }
    }

    /// The endpoint to configure: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (up to `limit`) until the spans received satisfy `done`;
    /// returns whether they did.
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> bool {
        let until = Instant::now() + limit;
        loop {
            while let Ok(span) = self.spans.try_recv() {
                self.received.push(span);
            }
            if done(&self.received) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
