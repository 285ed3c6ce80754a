//! `DoGet` answered straight onto HTTP/2, so results reach the socket
//! without tonic's codec copying every message (see [`crate::wire`]).
//!
//! [`FlightEndpoint`] sits where tonic's generated `FlightServiceServer`
//! would: it answers plain gRPC `DoGet` calls itself and hands every other
//! call (and any `DoGet` it does not handle, such as a compressed request)
//! to the generated server. Authentication, tickets and errors are the
//! service's own ([`BluelampFlightSql::answer`]); only the framing is here.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow_flight::Ticket;
use arrow_flight::flight_service_server::FlightServiceServer;
use bytes::{Buf, Bytes};
use futures::{Stream, StreamExt, stream};
use http_body::Frame;
use http_body_util::{BodyExt, Limited, StreamBody};
use prost::Message;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderMap, HeaderValue};
use tonic::codegen::{BoxFuture, Service};
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::{Request, Status};

use crate::service::{Answer, BluelampFlightSql};
use crate::wire::{WireEncoder, grpc_message};

const DO_GET: &str = "/arrow.flight.protocol.FlightService/DoGet";

/// Largest `DoGet` request (a ticket) read.
const MAX_TICKET: usize = 1024 * 1024;

/// The Flight service as tonic serves it, with `DoGet` streamed directly.
#[derive(Clone)]
pub struct FlightEndpoint {
    service: Arc<BluelampFlightSql>,
    generated: FlightServiceServer<BluelampFlightSql>,
    max_message: usize,
}

impl FlightEndpoint {
    /// Serves `service`; `generated` answers every call but plain `DoGet`,
    /// whose messages stay under `max_message` bytes.
    pub fn new(
        service: Arc<BluelampFlightSql>,
        generated: FlightServiceServer<BluelampFlightSql>,
        max_message: usize,
    ) -> Self {
        Self {
            service,
            generated,
            max_message,
        }
    }
}

impl NamedService for FlightEndpoint {
    const NAME: &'static str = <FlightServiceServer<BluelampFlightSql> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for FlightEndpoint {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != DO_GET || !plain_grpc(request.headers()) {
            return self.generated.call(request);
        }
        let service = Arc::clone(&self.service);
        let max_message = self.max_message;
        Box::pin(async move {
            Ok(do_get(service, request, max_message)
                .await
                .unwrap_or_else(Status::into_http))
        })
    }
}

/// gRPC over HTTP/2 with uncompressed messages: what this module speaks.
fn plain_grpc(headers: &HeaderMap) -> bool {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let identity = headers
        .get("grpc-encoding")
        .is_none_or(|v| v.as_bytes() == b"identity");
    identity && (content_type == "application/grpc" || content_type == "application/grpc+proto")
}

async fn do_get(
    service: Arc<BluelampFlightSql>,
    request: http::Request<Body>,
    max_message: usize,
) -> Result<http::Response<Body>, Status> {
    let (parts, body) = request.into_parts();
    let ticket = read_ticket(body).await?;
    let request = Request::from_parts(
        MetadataMap::from_headers(parts.headers),
        parts.extensions,
        ticket,
    );
    let chunks = match service.answer(request).await? {
        Answer::Batches(schema, batches) => {
            let encoder = WireEncoder::new(&schema, max_message)
                .map_err(|e| Status::internal(format!("cannot encode the result: {e}")))?;
            encode_batches(encoder, batches).boxed()
        }
        Answer::Flight(messages) => messages
            .map(|message| {
                message.and_then(|data| {
                    let body = vec![data.data_body.clone()];
                    grpc_message(&data, body).map_err(|e| Status::internal(e.to_string()))
                })
            })
            .boxed(),
    };
    let mut response = http::Response::new(Body::new(StreamBody::new(frames(chunks))));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    Ok(response)
}

/// The one `Ticket` message of a `DoGet` request.
async fn read_ticket(body: Body) -> Result<Ticket, Status> {
    let mut bytes = Limited::new(body, MAX_TICKET)
        .collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("cannot read the DoGet request: {e}")))?
        .to_bytes();
    if bytes.len() < 5 {
        return Err(Status::invalid_argument("the DoGet request has no ticket"));
    }
    let compressed = bytes.get_u8();
    let length = bytes.get_u32() as usize;
    if compressed != 0 {
        return Err(Status::unimplemented(
            "compressed requests are not supported",
        ));
    }
    if length != bytes.len() {
        return Err(Status::invalid_argument(
            "a DoGet request carries exactly one ticket",
        ));
    }
    Ticket::decode(bytes).map_err(|e| Status::invalid_argument(format!("malformed ticket: {e}")))
}

/// The messages for a statement's batches, then the closing ones.
fn encode_batches(
    encoder: WireEncoder,
    batches: crate::service::Batches,
) -> impl Stream<Item = Result<Vec<Bytes>, Status>> + Send {
    stream::unfold(
        (Some(encoder), batches),
        |(encoder, mut batches)| async move {
            let mut encoder = encoder?;
            match batches.next().await {
                Some(Ok(batch)) => {
                    let chunks = encoder
                        .encode(&batch)
                        .map_err(|e| Status::internal(format!("cannot encode the result: {e}")));
                    Some((chunks, (Some(encoder), batches)))
                }
                Some(Err(status)) => Some((Err(status), (None, batches))),
                None => {
                    let chunks = encoder
                        .finish()
                        .map_err(|e| Status::internal(format!("cannot encode the result: {e}")));
                    Some((chunks, (None, batches)))
                }
            }
        },
    )
}

/// HTTP/2 body frames: each message's chunks as data, then trailers with
/// the call's status (OK, or the first error, after which nothing more is
/// sent).
fn frames(
    messages: impl Stream<Item = Result<Vec<Bytes>, Status>> + Send + 'static,
) -> impl Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static {
    messages
        .flat_map(|message| match message {
            Ok(chunks) => stream::iter(chunks.into_iter().map(Frame::data).collect::<Vec<_>>()),
            Err(status) => stream::iter(vec![Frame::trailers(trailers(&status))]),
        })
        .chain(stream::once(async {
            Frame::trailers(trailers(&Status::ok("")))
        }))
        .scan(false, |ended, frame| {
            // Only the first trailers are sent.
            if *ended {
                return futures::future::ready(None);
            }
            *ended = frame.is_trailers();
            futures::future::ready(Some(Ok(frame)))
        })
}

fn trailers(status: &Status) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        headers.insert("grpc-status", HeaderValue::from_static("13"));
    }
    headers
}
