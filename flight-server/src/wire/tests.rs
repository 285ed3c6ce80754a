//! Tests of the wire encoding: batches encoded by [`WireEncoder`] are read
//! back as a client would, and the framing is checked against protobuf's.

use super::*;
use arrow_flight::FlightData;
use arrow_flight::decode::FlightRecordBatchStream;
use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{ArrayRef, BinaryArray, DictionaryArray, StringArray};
use datafusion::arrow::array::{BinaryViewArray, Int64Array, StringViewArray, UInt16Array};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::arrow::datatypes::{Int8Type, UInt16Type};
use futures::{StreamExt, TryStreamExt, stream};
use prost::Message;

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
    let strings = DictionaryArray::<UInt16Type>::try_new(keys.clone(), Arc::new(words.slice(1, 4)))
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
