//! One connection's byte stream: reading frontend messages (pgwire's codec)
//! and buffering backend messages until they are flushed, so a pipeline of
//! extended-protocol messages is answered in one write and a large result
//! is written as it is encoded, with the socket's back-pressure.

use bytes::BytesMut;
use pgwire::messages::response::{ErrorResponse, NoticeResponse};
use pgwire::messages::{DecodeContext, PgWireBackendMessage, PgWireFrontendMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Plain TCP or TLS, behind one type.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Written to the socket once this much is buffered, mid-result.
pub(crate) const FLUSH_AT: usize = 256 * 1024;

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// The socket failed or closed.
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    /// The client sent something that is not the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

/// A connection's messages in and out.
pub(crate) struct Wire {
    io: Box<dyn Io>,
    input: BytesMut,
    out: BytesMut,
    pub(crate) context: DecodeContext,
    /// Whether the stream is TLS.
    pub(crate) secure: bool,
    /// A message that could not be encoded: the connection ends at the
    /// next flush, after telling the client why.
    broken: Option<String>,
}

/// A PostgreSQL error or notice: severity, SQLSTATE and message.
#[derive(Debug, Clone)]
pub(crate) struct PgError {
    pub(crate) severity: &'static str,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl PgError {
    pub(crate) fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: "ERROR",
            code,
            message: message.into(),
        }
    }

    pub(crate) fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: "FATAL",
            code,
            message: message.into(),
        }
    }

    fn fields(&self) -> Vec<(u8, String)> {
        vec![
            (b'S', self.severity.to_string()),
            (b'V', self.severity.to_string()),
            (b'C', self.code.to_string()),
            (b'M', self.message.clone()),
        ]
    }
}

impl Wire {
    pub(crate) fn new(io: Box<dyn Io>, input: BytesMut, secure: bool) -> Self {
        let mut context = DecodeContext::default();
        context.awaiting_frontend_ssl = false;
        Self {
            io,
            input,
            out: BytesMut::with_capacity(64 * 1024),
            context,
            secure,
            broken: None,
        }
    }

    /// The next message, or `None` when the client closed the connection.
    pub(crate) async fn read(&mut self) -> Result<Option<PgWireFrontendMessage>, WireError> {
        loop {
            match PgWireFrontendMessage::decode(&mut self.input, &self.context) {
                Ok(Some(message)) => return Ok(Some(message)),
                Ok(None) => {}
                Err(e) => return Err(WireError::Protocol(e.to_string())),
            }
            // Buffered replies go out before waiting for more input.
            self.flush().await?;
            if self.io.read_buf(&mut self.input).await? == 0 {
                return if self.input.is_empty() {
                    Ok(None)
                } else {
                    Err(WireError::Protocol(
                        "the connection closed mid-message".into(),
                    ))
                };
            }
        }
    }

    /// Queues a message.
    pub(crate) fn push(&mut self, message: PgWireBackendMessage) {
        // pgwire refuses a message past its size limit after writing part
        // of it: cut that part away, so the stream stays whole, tell the
        // client, and end the connection at the next flush rather than
        // carry on with a message missing.
        let start = self.out.len();
        if let Err(e) = message.encode(&mut self.out) {
            self.out.truncate(start);
            let message = format!("a message could not be sent: {e}");
            tracing::error!("{message}");
            let error = PgError::fatal("54000", message.clone());
            let _ = PgWireBackendMessage::ErrorResponse(ErrorResponse::new(error.fields()))
                .encode(&mut self.out);
            self.broken.get_or_insert(message);
        }
    }

    /// Queues an error.
    pub(crate) fn push_error(&mut self, error: &PgError) {
        self.push(PgWireBackendMessage::ErrorResponse(ErrorResponse::new(
            error.fields(),
        )));
    }

    /// Queues a notice (a warning the client shows but that fails nothing).
    pub(crate) fn push_notice(&mut self, code: &'static str, message: &str) {
        let notice = PgError {
            severity: "WARNING",
            code,
            message: message.to_string(),
        };
        self.push(PgWireBackendMessage::NoticeResponse(NoticeResponse::new(
            notice.fields(),
        )));
    }

    /// The buffer rows are encoded into.
    pub(crate) fn out(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// Writes what is buffered when it has grown past [`FLUSH_AT`].
    pub(crate) async fn flush_if_full(&mut self) -> Result<(), WireError> {
        if self.out.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes everything buffered.
    pub(crate) async fn flush(&mut self) -> Result<(), WireError> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
            self.io.flush().await?;
        }
        match &self.broken {
            Some(why) => Err(WireError::Protocol(why.clone())),
            None => Ok(()),
        }
    }

    /// Sends a fatal error and closes the connection.
    pub(crate) async fn fail(mut self, error: &PgError) {
        self.push_error(error);
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
    }

    /// Closes the connection after sending what is buffered.
    pub(crate) async fn close(mut self) {
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
    }
}
