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

/// Encoded batches a result may run ahead of the socket, per stream.
const READ_AHEAD: usize = 2;

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
            read_ahead(encode_batches(encoder, batches), READ_AHEAD).boxed()
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

/// `messages` produced on a task of their own, up to `depth` ahead of the
/// client. HTTP/2 asks a response body for its next message only once the
/// previous one has nearly left, so a result pulled straight from the body
/// decodes and encodes its next batch while the socket sits idle; here the
/// next batches are ready when the socket is. Dropping the stream (the
/// client went away) stops the task and with it the query; a task that dies
/// ends the stream with an error, never a short answer that looks complete.
fn read_ahead<T: Send + 'static>(
    messages: impl Stream<Item = Result<T, Status>> + Send + 'static,
    depth: usize,
) -> impl Stream<Item = Result<T, Status>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(depth.max(1));
    // A set of one: dropping it (with the stream) aborts the task.
    let mut producer = tokio::task::JoinSet::new();
    producer.spawn(async move {
        let mut messages = std::pin::pin!(messages);
        while let Some(message) = messages.next().await {
            if tx.send(message).await.is_err() {
                break;
            }
        }
    });
    stream::unfold((rx, producer), |(mut rx, mut producer)| async move {
        if let Some(message) = rx.recv().await {
            return Some((message, (rx, producer)));
        }
        // The channel closed: the task has ended; did it finish?
        match producer.join_next().await? {
            Ok(()) => None,
            Err(e) => {
                tracing::error!("a result stream's task failed: {e}");
                let status = Status::internal("the result stream failed on the server");
                Some((Err(status), (rx, producer)))
            }
        }
    })
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use futures::{StreamExt, stream};
    use tonic::{Code, Status};

    use super::read_ahead;

    #[tokio::test]
    async fn read_ahead_passes_every_message_in_order() {
        let messages = stream::iter((0..100).map(Ok::<_, Status>));
        let got: Vec<i32> = read_ahead(messages, 2).map(|m| m.unwrap()).collect().await;
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn read_ahead_passes_errors_through() {
        let messages = stream::iter([Ok(1), Err(Status::not_found("no table x")), Ok(2)]);
        let got: Vec<Result<i32, Status>> = read_ahead(messages, 1).collect().await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].as_ref().unwrap_err().message(), "no table x");
    }

    #[tokio::test]
    async fn a_producer_that_dies_ends_the_stream_with_an_error() {
        let messages = stream::iter(0..3).map(|i| {
            assert!(i < 2, "the producer broke");
            Ok::<_, Status>(i)
        });
        let got: Vec<Result<i32, Status>> = read_ahead(messages, 1).collect().await;
        let oks: Vec<i32> = got
            .iter()
            .filter_map(|m| m.as_ref().ok().copied())
            .collect();
        assert_eq!(oks, vec![0, 1]);
        let last = got.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.code(), Code::Internal);
        assert!(!last.message().contains("producer broke"), "{last:?}");
    }

    /// Set when the producer's stream is dropped.
    struct Dropped(Arc<AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn dropping_the_stream_stops_the_producer_and_bounds_read_ahead() {
        let dropped = Arc::new(AtomicBool::new(false));
        let produced = Arc::new(AtomicUsize::new(0));
        let guard = Dropped(Arc::clone(&dropped));
        let count = Arc::clone(&produced);
        let messages = stream::iter(0..).map(move |i| {
            let _ = &guard;
            count.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Status>(i)
        });
        let mut stream = Box::pin(read_ahead(messages, 2));
        assert_eq!(stream.next().await.unwrap().unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        // One taken, two waiting in the channel, one held by the blocked send.
        assert!(produced.load(Ordering::SeqCst) <= 4, "{produced:?}");
        drop(stream);
        for _ in 0..100 {
            if dropped.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the producer kept running after its consumer went away");
    }
}
