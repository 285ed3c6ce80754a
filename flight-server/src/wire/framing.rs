//! Arrow IPC stream output cut into its messages ([`messages`]) and each
//! framed as a gRPC `FlightData` message ([`grpc_message`]): only the
//! framing and the small header are written out, the body's buffers are
//! passed on as they are.

use std::collections::VecDeque;

use arrow_flight::FlightData;
use bytes::{BufMut, Bytes, BytesMut};
use datafusion::arrow::buffer::Buffer;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::root_as_message;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// Body pieces smaller than this are copied into the framing around them
/// (padding, validity bitmaps of short batches) rather than sent as HTTP/2
/// data of their own.
const COALESCE_BELOW: usize = 16 * 1024;

/// Protobuf field number of `FlightData.data_body`.
const DATA_BODY_FIELD: u32 = 1000;

/// Turns Arrow IPC stream output (continuation marker, header length,
/// flatbuffer header, body; repeated) into gRPC `FlightData` messages. The
/// end-of-stream marker is not a Flight message and is dropped.
pub(super) fn messages(buffers: Vec<Buffer>) -> Result<Vec<Bytes>, ArrowError> {
    let mut input: VecDeque<Bytes> = buffers
        .into_iter()
        .filter(|b| !b.is_empty())
        .map(|b| Bytes::from_owner(Owned(b)))
        .collect();
    let mut out = Vec::new();
    while !input.is_empty() {
        let prefix = contiguous(take(&mut input, 8)?);
        let (marker, length) = prefix.split_at(4);
        if marker != [0xff; 4] {
            return Err(ArrowError::IpcError(
                "IPC message without continuation marker".into(),
            ));
        }
        let length = i32::from_le_bytes([length[0], length[1], length[2], length[3]]);
        let length = usize::try_from(length)
            .map_err(|_| ArrowError::IpcError(format!("negative IPC header length {length}")))?;
        if length == 0 {
            continue;
        }
        let header = contiguous(take(&mut input, length)?);
        let body_length = root_as_message(&header)
            .map_err(|e| ArrowError::IpcError(format!("unreadable IPC header: {e}")))?
            .bodyLength();
        let body_length = usize::try_from(body_length)
            .map_err(|_| ArrowError::IpcError(format!("negative IPC body length {body_length}")))?;
        let body = take(&mut input, body_length)?;
        let data = FlightData {
            data_header: header,
            ..FlightData::default()
        };
        out.extend(grpc_message(&data, body)?);
    }
    Ok(out)
}

/// An Arrow buffer lent to `Bytes` without copying.
struct Owned(Buffer);

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// The next `n` bytes of `input`, as the pieces they lie in.
fn take(input: &mut VecDeque<Bytes>, mut n: usize) -> Result<Vec<Bytes>, ArrowError> {
    let mut taken = Vec::new();
    while n > 0 {
        let Some(mut chunk) = input.pop_front() else {
            return Err(ArrowError::IpcError("truncated IPC message".into()));
        };
        if chunk.len() > n {
            input.push_front(chunk.split_off(n));
        }
        n -= chunk.len();
        taken.push(chunk);
    }
    Ok(taken)
}

fn contiguous(mut pieces: Vec<Bytes>) -> Bytes {
    if pieces.len() == 1 {
        return pieces.pop().unwrap_or_default();
    }
    let mut joined = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
    for piece in pieces {
        joined.put(piece);
    }
    joined.freeze()
}

/// One gRPC message carrying `data` with `body` as its `data_body` (any
/// `data_body` already in `data` is replaced): the framing and every field
/// but the body are written to a small buffer, and the body's pieces follow
/// as they are, small ones folded into the framing.
///
/// # Errors
/// If the message is larger than gRPC's 4 GiB frame limit.
pub fn grpc_message(data: &FlightData, body: Vec<Bytes>) -> Result<Vec<Bytes>, ArrowError> {
    let fields = FlightData {
        data_body: Bytes::new(),
        ..data.clone()
    };
    let body_length: usize = body.iter().map(Bytes::len).sum();
    let mut length = fields.encoded_len();
    if body_length > 0 {
        length += prost::encoding::key_len(DATA_BODY_FIELD)
            + encoded_len_varint(body_length as u64)
            + body_length;
    }
    let length = u32::try_from(length).map_err(|_| {
        ArrowError::IpcError(format!("a {length}-byte Flight message is too large"))
    })?;
    let mut head = BytesMut::with_capacity(5 + fields.encoded_len() + 8 + COALESCE_BELOW);
    head.put_u8(0);
    head.put_u32(length);
    fields
        .encode(&mut head)
        .map_err(|e| ArrowError::IpcError(e.to_string()))?;
    if body_length > 0 {
        encode_key(DATA_BODY_FIELD, WireType::LengthDelimited, &mut head);
        encode_varint(body_length as u64, &mut head);
    }
    let mut out = Vec::new();
    for piece in body {
        if piece.len() < COALESCE_BELOW {
            head.put(piece);
        } else {
            if !head.is_empty() {
                out.push(head.split().freeze());
            }
            out.push(piece);
        }
    }
    if !head.is_empty() {
        out.push(head.freeze());
    }
    Ok(out)
}
