//! Results on the wire without copying them.
//!
//! A `DoGet` answer is a gRPC stream of `FlightData` messages, each an Arrow
//! IPC message: a small flatbuffer header and a body holding the columns'
//! buffers. Encoded the usual way (arrow-flight's encoder, then tonic's
//! protobuf codec), every column is copied twice before the socket: into
//! one contiguous IPC body, then into the codec's output buffer — on a
//! two-core server those copies were a fifth of the time spent streaming.
//!
//! Here the body is never assembled: [`WireEncoder`] takes the IPC
//! messages as lists of the batch's own buffers (Arrow's `StreamEncoder`),
//! and [`grpc_message`] writes only the gRPC and protobuf framing around
//! them, so the buffers go to HTTP/2 as they are.
//!
//! What clients receive is what arrow-flight's encoder sends: the schema
//! first, dictionaries replaced by their values (as
//! [`arrow_flight::encode::DictionaryHandling::Hydrate`]), and batches split
//! so no message exceeds a size limit. String views, and dictionaries of
//! strings (a table declared with dictionary columns, a Parquet file that
//! stores them so), are written out as plain strings by [`to_wire`]'s own
//! loops rather than by Arrow's value-at-a-time cast.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow_flight::FlightData;
use bytes::{BufMut, Bytes, BytesMut};
use datafusion::arrow::array::builder::make_view;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, DictionaryArray, RecordBatch, StringArray,
    downcast_dictionary_array,
};
use datafusion::arrow::buffer::{Buffer, NullBuffer};
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{ArrowDictionaryKeyType, ArrowNativeType};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::root_as_message;
use datafusion::arrow::ipc::writer::StreamEncoder;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// Body pieces smaller than this are copied into the framing around them
/// (padding, validity bitmaps of short batches) rather than sent as HTTP/2
/// data of their own.
const COALESCE_BELOW: usize = 16 * 1024;

/// Protobuf field number of `FlightData.data_body`.
const DATA_BODY_FIELD: u32 = 1000;

/// Encodes a result's batches as gRPC `FlightData` messages whose bodies
/// borrow the batches' buffers.
pub struct WireEncoder {
    schema: SchemaRef,
    encoder: StreamEncoder,
    max_message: usize,
}

impl WireEncoder {
    /// An encoder for results of `schema`; batches whose buffers exceed
    /// `max_message` bytes are sent in several messages.
    ///
    /// # Errors
    /// If Arrow IPC cannot carry the schema.
    pub fn new(schema: &Schema, max_message: usize) -> Result<Self, ArrowError> {
        let schema = Arc::new(wire_schema(schema));
        let encoder = StreamEncoder::try_new(&schema)?;
        Ok(Self {
            schema,
            encoder,
            max_message: max_message.max(1),
        })
    }

    /// The gRPC messages for `batch` (preceded, the first time, by the
    /// schema's), as chunks to send in order.
    ///
    /// # Errors
    /// If the batch does not match the schema or cannot be encoded.
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<Bytes>, ArrowError> {
        let batch = to_wire(batch, &self.schema, Strings::Bytes)?;
        let mut chunks = Vec::new();
        for piece in split(&batch, self.max_message)? {
            chunks.extend(messages(self.encoder.encode(&piece)?)?);
        }
        Ok(chunks)
    }

    /// The closing messages: the schema's, when no batch was encoded, so an
    /// empty result still tells the client its columns.
    ///
    /// # Errors
    /// If the schema cannot be encoded.
    pub fn finish(self) -> Result<Vec<Bytes>, ArrowError> {
        messages(self.encoder.finish()?)
    }
}

/// How [`to_wire`] hands over the strings it writes out plain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strings {
    /// As `Utf8` arrays, which Arrow checks for UTF-8 once more: for a batch
    /// whose schema is taken from the batch itself (arrow-flight's encoder).
    Utf8,
    /// As `Binary` arrays of the same offsets and bytes, for [`WireEncoder`],
    /// whose schema message has already said `Utf8`. An IPC body lays the two
    /// out alike, and the text was checked when its views or dictionary were
    /// built and is copied whole, value by value, so checking it again (a
    /// pass over every offset) would find nothing.
    Bytes,
}

/// `batch` in the layout of `schema`, its [`wire_schema`]: dictionaries
/// replaced by their values, string and binary views by plain arrays. With
/// [`Strings::Bytes`] the strings written out are `Binary` columns in the
/// returned batch's own schema (a body for a stream that announced
/// `schema`).
///
/// # Errors
/// If a column cannot take the wire type.
pub(crate) fn to_wire(
    batch: &RecordBatch,
    schema: &SchemaRef,
    strings: Strings,
) -> Result<RecordBatch, ArrowError> {
    if batch.schema_ref().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let text = |offsets, values, nulls| -> Result<ArrayRef, ArrowError> {
        Ok(match strings {
            Strings::Utf8 => Arc::new(StringArray::try_new(offsets, values, nulls)?),
            Strings::Bytes => Arc::new(BinaryArray::try_new(offsets, values, nulls)?),
        })
    };
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(
            |(column, field)| match (column.data_type(), field.data_type()) {
                (from, to) if from == to => Ok(Arc::clone(column)),
                (DataType::Utf8View, DataType::Utf8) => {
                    let views = column.as_string_view();
                    let (offsets, values) =
                        flatten(views.views().iter().copied(), views.data_buffers())?;
                    text(offsets, values, views.nulls().cloned())
                }
                (DataType::BinaryView, DataType::Binary) => {
                    let views = column.as_binary_view();
                    let (offsets, values) =
                        flatten(views.views().iter().copied(), views.data_buffers())?;
                    let plain = BinaryArray::try_new(offsets, values, views.nulls().cloned())?;
                    Ok(Arc::new(plain) as ArrayRef)
                }
                (DataType::Dictionary(_, values), to @ (DataType::Utf8 | DataType::Binary))
                    if values.as_ref() == to =>
                {
                    let (offsets, data, nulls) = downcast_dictionary_array!(
                        column => hydrate(column)?,
                        other => return Err(ArrowError::CastError(format!("{other} is not a dictionary"))),
                    );
                    if to == &DataType::Utf8 {
                        text(offsets, data, nulls)
                    } else {
                        Ok(Arc::new(BinaryArray::try_new(offsets, data, nulls)?) as ArrayRef)
                    }
                }
                (_, to) => cast(column, to),
            },
        )
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    let schema = match strings {
        Strings::Utf8 => Arc::clone(schema),
        Strings::Bytes => Arc::new(body_schema(schema, &columns)),
    };
    RecordBatch::try_new(schema, columns)
}

/// `schema` with each `Utf8` field whose column is `Binary` (strings that
/// [`to_wire`] wrote out as [`Strings::Bytes`]) typed `Binary`; every other
/// field as it is, for [`RecordBatch::try_new`] to check.
fn body_schema(schema: &Schema, columns: &[ArrayRef]) -> Schema {
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .zip(columns)
        .map(|(field, column)| {
            if field.data_type() == &DataType::Utf8 && column.data_type() == &DataType::Binary {
                Arc::new(Field::clone(field).with_data_type(DataType::Binary))
            } else {
                Arc::clone(field)
            }
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// A dictionary of plain strings or bytes with each row's value written out
/// (Arrow's cast takes the values one `memcpy` call at a time): the
/// dictionary's values become views into its own buffer, looked up per key
/// and laid end to end by [`flatten`]. Nulls are the dictionary's logical
/// ones (a null key or a key naming a null value).
///
/// # Errors
/// If the dictionary's values are not plain strings or bytes.
#[allow(clippy::type_complexity, reason = "the three parts of a plain array")]
fn hydrate<K: ArrowDictionaryKeyType>(
    dictionary: &DictionaryArray<K>,
) -> Result<(OffsetBuffer<i32>, Buffer, Option<NullBuffer>), ArrowError> {
    let values = dictionary.values();
    let (offsets, data) = match values.data_type() {
        DataType::Utf8 => {
            let v = values.as_string::<i32>();
            (v.offsets(), v.values())
        }
        DataType::Binary => {
            let v = values.as_binary::<i32>();
            (v.offsets(), v.values())
        }
        other => {
            return Err(ArrowError::CastError(format!(
                "a dictionary of {other} is not sent as plain values"
            )));
        }
    };
    let table: Vec<u128> = offsets
        .windows(2)
        .map(|w| {
            let (start, end) = (w[0].as_usize(), w[1].as_usize());
            make_view(&data[start..end], 0, start as u32)
        })
        .collect();
    // Keys of non-null rows were checked against the dictionary when the
    // array was built; a null row's key may be anything, and reads as empty.
    let views = dictionary
        .keys()
        .values()
        .iter()
        .map(|key| table.get(key.as_usize()).copied().unwrap_or(0));
    let (offsets, data) = flatten(views, std::slice::from_ref(data))?;
    Ok((offsets, data, dictionary.logical_nulls()))
}

/// The values of a string or binary view array laid end to end, with their
/// offsets — Arrow's cast does the same value by value, which took an eighth
/// of the server's time streaming a short-string column.
///
/// Offsets come first, from the views' lengths alone. Values up to 12 bytes
/// live in the view itself and are copied as a fixed 12-byte block (the
/// next value overwrites the excess), which the compiler turns into two
/// moves instead of a `memcpy` call per value.
fn flatten<I>(views: I, buffers: &[Buffer]) -> Result<(OffsetBuffer<i32>, Buffer), ArrowError>
where
    I: ExactSizeIterator<Item = u128> + Clone,
{
    let mut offsets: Vec<i32> = Vec::with_capacity(views.len() + 1);
    offsets.push(0);
    let mut total: i64 = 0;
    offsets.extend(views.clone().map(|view| {
        total += i64::from(view as u32);
        // Truncation caught below: `total` never decreases, so it is
        // checked once at the end.
        total as i32
    }));
    let total = usize::try_from(total)
        .ok()
        .filter(|t| i32::try_from(*t).is_ok())
        .ok_or_else(|| {
            ArrowError::ComputeError(format!("{total} bytes of strings in one batch"))
        })?;
    // Twelve bytes of slack for the last inline value's block copy.
    let mut values = vec![0u8; total + 12];
    let mut at = 0usize;
    for view in views {
        let len = view as u32 as usize;
        if len <= 12 {
            values[at..at + 12].copy_from_slice(&view.to_le_bytes()[4..16]);
        } else {
            // Longer values: length, prefix, buffer index, offset (u32 each).
            let buffer = (view >> 64) as u32 as usize;
            let offset = (view >> 96) as u32 as usize;
            let value = buffers
                .get(buffer)
                .and_then(|b| b.get(offset..offset + len))
                .ok_or_else(|| {
                    ArrowError::ComputeError("a string view points outside its buffers".into())
                })?;
            values[at..at + len].copy_from_slice(value);
        }
        at += len;
    }
    values.truncate(total);
    Ok((
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(values),
    ))
}

/// `schema` as sent: dictionary-encoded columns (at any depth) as their values.
pub(crate) fn wire_schema(schema: &Schema) -> Schema {
    let fields: Vec<FieldRef> = schema.fields().iter().map(wire_field).collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

fn wire_field(field: &FieldRef) -> FieldRef {
    let data_type = wire_type(field.data_type());
    if &data_type == field.data_type() {
        Arc::clone(field)
    } else {
        Arc::new(Field::clone(field).with_data_type(data_type))
    }
}

fn wire_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Dictionary(_, values) => wire_type(values),
        // DataFusion reads strings as views; BI drivers built on older Arrow
        // releases (Arrow Java's JDBC driver, the Flight SQL ODBC driver)
        // cannot read views, and for short strings — codes, grades, names —
        // a view's 16 bytes per value are several times the plain layout.
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(wire_field(f)),
        DataType::LargeList(f) => DataType::LargeList(wire_field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(wire_field(f), *n),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(wire_field).collect::<Vec<_>>().into())
        }
        DataType::Map(f, sorted) => DataType::Map(wire_field(f), *sorted),
        other => other.clone(),
    }
}

/// `batch` in row ranges whose buffers each stay under `max` bytes (one
/// range when it already does; never less than one row per range).
fn split(batch: &RecordBatch, max: usize) -> Result<Vec<RecordBatch>, ArrowError> {
    let size: usize = batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size())
        .sum::<Result<usize, _>>()?;
    let rows = batch.num_rows();
    if size <= max || rows <= 1 {
        return Ok(vec![batch.clone()]);
    }
    let pieces = size.div_ceil(max).min(rows);
    let per_piece = rows.div_ceil(pieces);
    Ok((0..rows)
        .step_by(per_piece)
        .map(|start| batch.slice(start, per_piece.min(rows - start)))
        .collect())
}

/// Turns Arrow IPC stream output (continuation marker, header length,
/// flatbuffer header, body; repeated) into gRPC `FlightData` messages. The
/// end-of-stream marker is not a Flight message and is dropped.
fn messages(buffers: Vec<Buffer>) -> Result<Vec<Bytes>, ArrowError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::decode::FlightRecordBatchStream;
    use datafusion::arrow::array::{BinaryViewArray, Int64Array, StringViewArray, UInt16Array};
    use datafusion::arrow::datatypes::{Int8Type, UInt16Type};
    use futures::{StreamExt, TryStreamExt, stream};

    /// Reads gRPC-framed messages back as `FlightData`, as a client would.
    fn unframe(chunks: &[Bytes]) -> Vec<FlightData> {
        let mut wire = BytesMut::new();
        for chunk in chunks {
            wire.put_slice(chunk);
        }
        let mut wire = wire.freeze();
        let mut out = Vec::new();
        while !wire.is_empty() {
            assert_eq!(wire[0], 0, "uncompressed");
            let length = u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize;
            let message = wire.slice(5..5 + length);
            out.push(FlightData::decode(message).expect("a FlightData message"));
            wire = wire.slice(5 + length..);
        }
        out
    }

    async fn decode(chunks: &[Bytes]) -> Vec<RecordBatch> {
        let data = stream::iter(unframe(chunks).into_iter().map(Ok));
        FlightRecordBatchStream::new_from_flight_data(data)
            .try_collect()
            .await
            .expect("batches a client can read")
    }

    fn sample(rows: i64) -> RecordBatch {
        let ids = Int64Array::from_iter_values(0..rows);
        let names =
            StringArray::from_iter((0..rows).map(|i| (i % 3 != 0).then(|| format!("name-{i}"))));
        let grades: DictionaryArray<Int8Type> = (0..rows)
            .map(|i| ["I", "S", "E"][(i % 3) as usize])
            .collect();
        RecordBatch::try_from_iter(vec![
            ("id", Arc::new(ids) as ArrayRef),
            ("name", Arc::new(names) as ArrayRef),
            ("grade", Arc::new(grades) as ArrayRef),
        ])
        .expect("batch")
    }

    #[tokio::test]
    async fn a_client_reads_back_what_was_encoded_with_dictionaries_as_values() {
        let batch = sample(1000);
        let mut encoder = WireEncoder::new(&batch.schema(), 1 << 20).expect("encoder");
        assert_eq!(encoder.schema.field(2).data_type(), &DataType::Utf8);
        let mut chunks = encoder.encode(&batch).expect("encode");
        chunks.extend(encoder.encode(&batch.slice(10, 5)).expect("encode"));
        chunks.extend(encoder.finish().expect("finish"));
        let read = decode(&chunks).await;
        assert_eq!(read.len(), 2);
        let expected = cast(batch.column(2), &DataType::Utf8).expect("cast");
        assert_eq!(read[0].column(0).as_ref(), batch.column(0).as_ref());
        assert_eq!(read[0].column(1).as_ref(), batch.column(1).as_ref());
        assert_eq!(read[0].column(2).as_ref(), expected.as_ref());
        assert_eq!(
            read[1].column(1).as_ref(),
            batch.column(1).slice(10, 5).as_ref()
        );
    }

    #[tokio::test]
    async fn short_strings_alone_are_sent_plain() {
        // No value over 12 bytes: every value lives in its view.
        let values: Vec<Option<String>> = (0..1000)
            .map(|i: usize| (i % 7 != 3).then(|| "ISERé012345".chars().take(i % 12).collect()))
            .collect();
        let strings = StringViewArray::from_iter(values.iter().map(Option::as_deref));
        let batch =
            RecordBatch::try_from_iter(vec![("s", Arc::new(strings) as ArrayRef)]).expect("batch");
        let mut encoder = WireEncoder::new(&batch.schema(), 1 << 20).expect("encoder");
        let mut chunks = encoder.encode(&batch.slice(3, 990)).expect("encode");
        chunks.extend(encoder.finish().expect("finish"));
        let read = decode(&chunks).await;
        let expected = cast(&batch.column(0).slice(3, 990), &DataType::Utf8).expect("cast");
        assert_eq!(read[0].column(0).as_ref(), expected.as_ref());
    }

    #[tokio::test]
    async fn thousands_of_short_then_long_strings_are_sent_plain() {
        // Thousands of values: short ones first, then longer ones, nulls
        // throughout.
        let long = "a value longer than twelve bytes, repeated: ";
        let values: Vec<Option<String>> = (0..6161)
            .map(|i| {
                let text = if i < 2053 {
                    "E".repeat(i % 4)
                } else {
                    long.repeat(1 + i % 3)
                };
                (i % 11 != 4).then_some(text)
            })
            .collect();
        let strings = StringViewArray::from_iter(values.iter().map(Option::as_deref));
        let batch =
            RecordBatch::try_from_iter(vec![("s", Arc::new(strings) as ArrayRef)]).expect("batch");
        let rows = batch.num_rows() - 1;
        let mut encoder = WireEncoder::new(&batch.schema(), 1 << 24).expect("encoder");
        let mut chunks = encoder.encode(&batch.slice(1, rows)).expect("encode");
        chunks.extend(encoder.finish().expect("finish"));
        let read = decode(&chunks).await;
        let expected = cast(&batch.column(0).slice(1, rows), &DataType::Utf8).expect("cast");
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].column(0).as_ref(), expected.as_ref());
    }

    #[tokio::test]
    async fn string_and_binary_views_are_sent_plain() {
        let long = "a value longer than twelve bytes";
        // Inline values of every length up to the 12-byte limit, then past it.
        let strings = StringViewArray::from_iter([
            Some("E"),
            None,
            Some(long),
            Some(""),
            Some("twelve bytes"),
            Some("thirteen byte"),
            Some("é"),
            Some(long),
        ]);
        let binary = BinaryViewArray::from_iter([
            Some(b"x".as_slice()),
            Some(long.as_bytes()),
            None,
            Some(b"".as_slice()),
            Some(b"0123456789abcdef".as_slice()),
            Some(b"0123456789ab".as_slice()),
            Some(b"y".as_slice()),
            Some(b"".as_slice()),
        ]);
        sent_plain_as_arrow_casts(Arc::new(strings), Arc::new(binary)).await;
    }

    /// Sends rows 1..8 of a string column `s` and a binary column `b` (sliced,
    /// so the first row sent is not the arrays' first), checks they are
    /// announced as plain strings and bytes and read back as Arrow's cast
    /// gives them; returns the columns read.
    async fn sent_plain_as_arrow_casts(strings: ArrayRef, binary: ArrayRef) -> Vec<ArrayRef> {
        let batch = RecordBatch::try_from_iter(vec![("s", strings), ("b", binary)]).expect("batch");
        let mut encoder = WireEncoder::new(&batch.schema(), 1 << 20).expect("encoder");
        assert_eq!(encoder.schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(encoder.schema.field(1).data_type(), &DataType::Binary);
        let mut chunks = encoder.encode(&batch.slice(1, 7)).expect("encode");
        chunks.extend(encoder.finish().expect("finish"));
        let read = decode(&chunks).await;
        assert_eq!(read.len(), 1);
        for (i, to) in [(0, DataType::Utf8), (1, DataType::Binary)] {
            let expected = cast(&batch.column(i).slice(1, 7), &to).expect("cast");
            assert_eq!(read[0].column(i).as_ref(), expected.as_ref());
        }
        read[0].columns().to_vec()
    }

    #[tokio::test]
    async fn dictionaries_of_strings_and_bytes_are_sent_as_their_values() {
        let long = "a value longer than twelve bytes";
        // Values sliced, so their offsets do not start at zero; one value null.
        let words = StringArray::from(vec![Some("unused"), Some("E"), Some(long), None, Some("")]);
        let bytes = BinaryArray::from(vec![
            Some(b"unused".as_slice()),
            Some(b"x".as_slice()),
            Some(long.as_bytes()),
            None,
            Some(b"0123456789ab".as_slice()),
        ]);
        // Row 2's key is null and points nowhere; row 4 names the null value.
        let keys = UInt16Array::new(
            ScalarBuffer::from(vec![0, 1, 60_000, 1, 2, 3, 0, 1]),
            Some(NullBuffer::from(vec![
                true, true, false, true, true, true, true, true,
            ])),
        );
        let strings =
            DictionaryArray::<UInt16Type>::try_new(keys.clone(), Arc::new(words.slice(1, 4)))
                .expect("string dictionary");
        let binary = DictionaryArray::<UInt16Type>::try_new(keys, Arc::new(bytes.slice(1, 4)))
            .expect("binary dictionary");
        for column in sent_plain_as_arrow_casts(Arc::new(strings), Arc::new(binary)).await {
            assert_eq!(column.null_count(), 2, "the null key and the null value");
        }
    }

    #[tokio::test]
    async fn large_batches_are_split_under_the_message_limit() {
        let batch = sample(100_000);
        let mut encoder = WireEncoder::new(&batch.schema(), 256 * 1024).expect("encoder");
        let mut chunks = encoder.encode(&batch).expect("encode");
        chunks.extend(encoder.finish().expect("finish"));
        let messages = unframe(&chunks);
        assert!(messages.len() > 4, "{} messages", messages.len());
        for message in &messages {
            assert!(message.data_body.len() <= 256 * 1024 + 4096);
        }
        let read = decode(&chunks).await;
        let rows: usize = read.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 100_000);
        let ids: Vec<i64> = read
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("ids")
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids, (0..100_000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn an_empty_result_still_sends_its_schema() {
        let schema = Schema::new(vec![Field::new("n", DataType::Int32, true)]);
        let encoder = WireEncoder::new(&schema, 1 << 20).expect("encoder");
        let chunks = encoder.finish().expect("finish");
        let messages = unframe(&chunks);
        assert_eq!(messages.len(), 1);
        let data = stream::iter(messages.into_iter().map(Ok));
        let mut decoded = FlightRecordBatchStream::new_from_flight_data(data);
        assert!(decoded.next().await.is_none());
        assert_eq!(
            decoded.schema().map(|s| s.field(0).name().clone()),
            Some("n".to_string())
        );
    }

    #[test]
    fn strings_are_checked_text_or_the_same_bytes_unchecked() {
        // A view column and a dictionary column, both text: as checked
        // `Utf8` for arrow-flight's encoder, or as `Binary` with the very same
        // offsets and bytes for a body under an announced `Utf8` schema.
        let batch = sample(300);
        let views = cast(batch.column(1), &DataType::Utf8View).expect("views");
        let batch = RecordBatch::try_from_iter(vec![
            ("name", views),
            ("grade", Arc::clone(batch.column(2))),
            ("id", Arc::clone(batch.column(0))),
        ])
        .expect("batch");
        let schema = Arc::new(wire_schema(&batch.schema()));
        let text = to_wire(&batch, &schema, Strings::Utf8).expect("text");
        let bytes = to_wire(&batch, &schema, Strings::Bytes).expect("bytes");
        assert_eq!(text.schema(), schema);
        for (i, column) in text.columns().iter().enumerate() {
            let original = batch.column(i);
            let expected = cast(original, schema.field(i).data_type()).expect("cast");
            assert_eq!(column.as_ref(), expected.as_ref());
            let body = bytes.column(i);
            let want = match column.data_type() {
                DataType::Utf8 => DataType::Binary,
                other => other.clone(),
            };
            assert_eq!(body.data_type(), &want);
            assert_eq!(body.to_data().buffers(), column.to_data().buffers());
            assert_eq!(body.logical_nulls(), column.logical_nulls());
        }
    }

    #[test]
    fn framing_matches_protobuf_encoding() {
        let data = FlightData {
            data_header: Bytes::from_static(b"header"),
            app_metadata: Bytes::from_static(b"meta"),
            data_body: Bytes::from(vec![7u8; 40_000]),
            ..FlightData::default()
        };
        let body = vec![
            data.data_body.slice(..10),
            data.data_body.slice(10..30_000),
            data.data_body.slice(30_000..),
        ];
        let chunks = grpc_message(&data, body).expect("message");
        let mut wire = BytesMut::new();
        for chunk in &chunks {
            wire.put_slice(chunk);
        }
        let expected = data.encode_to_vec();
        assert_eq!(&wire[5..], expected.as_slice());
        assert_eq!(
            u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize,
            expected.len()
        );
    }
}
