//! Decoding PostgreSQL's binary `COPY` format into Arrow batches
//! ([`Decoder`]), for the types [`decodes`] accepts.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder, TimestampMillisecondBuilder, TimestampNanosecondBuilder,
    TimestampSecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result as DFResult};
use tokio_postgres::types::Type;

/// Rows per batch.
const BATCH_ROWS: usize = 8192;

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

pub(super) fn fail(message: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("PostgreSQL query failed: {message}"))
}

/// Whether values of PostgreSQL type `pg` are decoded into `arrow`.
pub(super) fn decodes(pg: &Type, arrow: &DataType) -> bool {
    match arrow {
        DataType::Int16 => *pg == Type::INT2,
        DataType::Int32 => *pg == Type::INT4,
        DataType::Int64 => *pg == Type::INT8,
        DataType::Float32 => *pg == Type::FLOAT4,
        DataType::Float64 => *pg == Type::FLOAT8,
        DataType::Decimal128(_, _) => *pg == Type::NUMERIC,
        DataType::Utf8 => [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(pg),
        DataType::Boolean => *pg == Type::BOOL,
        DataType::Date32 => *pg == Type::DATE,
        DataType::Timestamp(_, None) => *pg == Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => *pg == Type::TIMESTAMPTZ,
        _ => false,
    }
}

/// Turns the bytes of a binary `COPY` into batches, whatever the chunking.
pub struct Decoder {
    schema: SchemaRef,
    builders: Vec<Box<dyn ArrayBuilder>>,
    buffer: BytesMut,
    header_read: bool,
    ended: bool,
    rows: usize,
}

/// The binary COPY signature.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl Decoder {
    pub fn new(schema: SchemaRef) -> Self {
        let builders = schema
            .fields()
            .iter()
            .map(|f| builder(f.data_type()))
            .collect();
        Self {
            schema,
            builders,
            buffer: BytesMut::new(),
            header_read: false,
            ended: false,
            rows: 0,
        }
    }

    /// Takes the next chunk; returns the batches it completed.
    ///
    /// # Errors
    /// When the data is not a binary COPY of the expected columns.
    pub fn push(&mut self, chunk: Bytes) -> DFResult<Vec<RecordBatch>> {
        self.buffer.extend_from_slice(&chunk);
        let mut batches = Vec::new();
        if !self.header_read {
            // Signature, flags (4), header extension length (4), extension.
            if self.buffer.len() < SIGNATURE.len() + 8 {
                return Ok(batches);
            }
            if &self.buffer[..SIGNATURE.len()] != SIGNATURE {
                return Err(fail("the COPY output has no binary signature"));
            }
            let extension = u32::from_be_bytes(
                self.buffer[SIGNATURE.len() + 4..SIGNATURE.len() + 8]
                    .try_into()
                    .map_err(fail)?,
            ) as usize;
            let header = SIGNATURE.len() + 8 + extension;
            if self.buffer.len() < header {
                return Ok(batches);
            }
            self.buffer.advance(header);
            self.header_read = true;
        }
        while let Some(length) = self.tuple_length()? {
            let tuple = self.buffer.split_to(length).freeze();
            if self.ended {
                continue;
            }
            if tuple.len() == 2 {
                // The trailer: a field count of -1.
                self.ended = true;
                continue;
            }
            self.append(tuple)?;
            if self.rows == BATCH_ROWS {
                batches.push(self.flush()?);
            }
        }
        Ok(batches)
    }

    /// The last, partial batch, if any rows remain.
    ///
    /// # Errors
    /// When the data stopped mid-row or before the trailer.
    pub fn finish(mut self) -> DFResult<Option<RecordBatch>> {
        if !self.ended || !self.buffer.is_empty() {
            return Err(fail("the COPY output ended early"));
        }
        if self.rows == 0 {
            return Ok(None);
        }
        self.flush().map(Some)
    }

    /// The byte length of the next complete tuple in the buffer, if any.
    fn tuple_length(&self) -> DFResult<Option<usize>> {
        let data = &self.buffer[..];
        if data.len() < 2 {
            return Ok(None);
        }
        let fields = i16::from_be_bytes([data[0], data[1]]);
        if fields == -1 {
            return Ok(Some(2));
        }
        if fields as usize != self.builders.len() {
            return Err(fail(format!(
                "the COPY output has {fields} columns where {} were expected",
                self.builders.len()
            )));
        }
        let mut at = 2;
        for _ in 0..fields {
            let Some(len) = data.get(at..at + 4) else {
                return Ok(None);
            };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            if len < -1 {
                return Err(fail(format!("the COPY output has a field of length {len}")));
            }
            at += 4 + usize::try_from(len).unwrap_or(0);
            if at > data.len() {
                return Ok(None);
            }
        }
        Ok(Some(at))
    }

    fn append(&mut self, mut tuple: Bytes) -> DFResult<()> {
        tuple.advance(2);
        for (index, builder) in self.builders.iter_mut().enumerate() {
            let len = tuple.get_i32();
            let value = (len >= 0).then(|| tuple.split_to(len as usize));
            let field = self.schema.field(index);
            append(builder.as_mut(), field.data_type(), value.as_deref())
                .map_err(|e| fail(format!("column '{}': {e}", field.name())))?;
        }
        self.rows += 1;
        Ok(())
    }

    fn flush(&mut self) -> DFResult<RecordBatch> {
        self.rows = 0;
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

fn builder(data_type: &DataType) -> Box<dyn ArrayBuilder> {
    let t = data_type.clone();
    match data_type {
        DataType::Int16 => Box::new(Int16Builder::new()),
        DataType::Int32 => Box::new(Int32Builder::new()),
        DataType::Int64 => Box::new(Int64Builder::new()),
        DataType::Float32 => Box::new(Float32Builder::new()),
        DataType::Float64 => Box::new(Float64Builder::new()),
        DataType::Boolean => Box::new(BooleanBuilder::new()),
        DataType::Date32 => Box::new(Date32Builder::new()),
        DataType::Timestamp(TimeUnit::Second, _) => {
            Box::new(TimestampSecondBuilder::new().with_data_type(t))
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            Box::new(TimestampMillisecondBuilder::new().with_data_type(t))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Box::new(TimestampMicrosecondBuilder::new().with_data_type(t))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            Box::new(TimestampNanosecondBuilder::new().with_data_type(t))
        }
        DataType::Decimal128(_, _) => Box::new(Decimal128Builder::new().with_data_type(t)),
        _ => Box::new(StringBuilder::new()),
    }
}

macro_rules! push {
    ($builder:expr, $ty:ty, $value:expr) => {{
        let b = $builder
            .as_any_mut()
            .downcast_mut::<$ty>()
            .ok_or("internal: builder type")?;
        match $value {
            Some(v) => b.append_value(v),
            None => b.append_null(),
        }
    }};
}

/// A fixed-width big-endian value (`None` for NULL), read with `from_be`.
fn be<const N: usize, T>(
    value: Option<&[u8]>,
    from_be: fn([u8; N]) -> T,
) -> Result<Option<T>, String> {
    value
        .map(|v| {
            <[u8; N]>::try_from(v)
                .map(from_be)
                .map_err(|_| format!("{} bytes where {N} were expected", v.len()))
        })
        .transpose()
}

fn append(
    builder: &mut dyn ArrayBuilder,
    data_type: &DataType,
    value: Option<&[u8]>,
) -> Result<(), String> {
    match data_type {
        DataType::Int16 => push!(builder, Int16Builder, be(value, i16::from_be_bytes)?),
        DataType::Int32 => push!(builder, Int32Builder, be(value, i32::from_be_bytes)?),
        DataType::Int64 => push!(builder, Int64Builder, be(value, i64::from_be_bytes)?),
        DataType::Float32 => push!(builder, Float32Builder, be(value, f32::from_be_bytes)?),
        DataType::Float64 => push!(builder, Float64Builder, be(value, f64::from_be_bytes)?),
        DataType::Boolean => push!(builder, BooleanBuilder, be(value, |[b]: [u8; 1]| b != 0)?),
        DataType::Date32 => {
            let days = be(value, i32::from_be_bytes)?;
            let days = days
                .map(|d| d.checked_add(PG_EPOCH_DAYS).ok_or("date out of range"))
                .transpose()?;
            push!(builder, Date32Builder, days)
        }
        DataType::Timestamp(unit, _) => {
            let micros = be(value, i64::from_be_bytes)?;
            let micros = micros
                .map(|m| {
                    m.checked_add(PG_EPOCH_MICROS)
                        .ok_or("timestamp out of range (infinity?)")
                })
                .transpose()?;
            match unit {
                TimeUnit::Second => push!(
                    builder,
                    TimestampSecondBuilder,
                    micros.map(|m| m.div_euclid(1_000_000))
                ),
                TimeUnit::Millisecond => push!(
                    builder,
                    TimestampMillisecondBuilder,
                    micros.map(|m| m.div_euclid(1_000))
                ),
                TimeUnit::Microsecond => push!(builder, TimestampMicrosecondBuilder, micros),
                TimeUnit::Nanosecond => {
                    let nanos = micros
                        .map(|m| m.checked_mul(1_000).ok_or("timestamp out of range"))
                        .transpose()?;
                    push!(builder, TimestampNanosecondBuilder, nanos)
                }
            }
        }
        DataType::Decimal128(_, scale) => {
            let mantissa = value.map(|v| numeric(v, *scale)).transpose()?;
            push!(builder, Decimal128Builder, mantissa)
        }
        _ => {
            let text = value
                .map(|v| std::str::from_utf8(v).map_err(|e| e.to_string()))
                .transpose()?;
            push!(builder, StringBuilder, text)
        }
    }
    Ok(())
}

/// A binary `numeric` as an integer at `scale` decimal places (rounded half
/// away from zero where the value has more places).
fn numeric(value: &[u8], scale: i8) -> Result<i128, String> {
    let header = value.get(..8).ok_or("short numeric")?;
    let ndigits = u16::from_be_bytes([header[0], header[1]]) as usize;
    let weight = i16::from_be_bytes([header[2], header[3]]);
    let sign = u16::from_be_bytes([header[4], header[5]]);
    let digits = value.get(8..8 + 2 * ndigits).ok_or("short numeric")?;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN has no decimal value".into()),
        _ => return Err("infinity has no decimal value".into()),
    }
    let overflow = || "numeric value too large for its decimal type".to_string();
    let mut acc: i128 = 0;
    for pair in digits.chunks_exact(2) {
        let digit = i128::from(u16::from_be_bytes([pair[0], pair[1]]));
        acc = acc
            .checked_mul(10_000)
            .and_then(|a| a.checked_add(digit))
            .ok_or_else(overflow)?;
    }
    // value = acc × 10000^(weight − ndigits + 1); mantissa = value × 10^scale.
    let exponent = 4 * (i32::from(weight) - ndigits as i32 + 1) + i32::from(scale);
    let mantissa = if acc == 0 {
        0
    } else if exponent >= 0 {
        10_i128
            .checked_pow(exponent as u32)
            .and_then(|p| acc.checked_mul(p))
            .ok_or_else(overflow)?
    } else {
        match 10_i128.checked_pow((-exponent) as u32) {
            Some(p) => {
                let (q, r) = (acc / p, acc % p);
                if r * 2 >= p { q + 1 } else { q }
            }
            None => 0,
        }
    };
    Ok(if sign == 0x4000 { -mantissa } else { mantissa })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::display::array_value_to_string;

    /// `numeric` as PostgreSQL sends it: base-10000 digits.
    fn pg_numeric(negative: bool, weight: i16, digits: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&(if negative { 0x4000_u16 } else { 0 }).to_be_bytes());
        out.extend_from_slice(&0_u16.to_be_bytes());
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_become_decimal_mantissas() {
        // 12345678.90 = 1234|5678.9000
        assert_eq!(
            numeric(&pg_numeric(false, 1, &[1234, 5678, 9000]), 2),
            Ok(1_234_567_890)
        );
        // -0.05 = 0.0500 (weight −1)
        assert_eq!(numeric(&pg_numeric(true, -1, &[500]), 2), Ok(-5));
        // 20000 = 2|0000 with trailing zero digits dropped
        assert_eq!(numeric(&pg_numeric(false, 1, &[2]), 3), Ok(20_000_000));
        assert_eq!(numeric(&pg_numeric(false, 0, &[]), 2), Ok(0));
        // More places than the column keeps: rounded half away from zero.
        assert_eq!(numeric(&pg_numeric(false, -1, &[125]), 2), Ok(1)); // 0.0125
        assert_eq!(numeric(&pg_numeric(true, -1, &[150]), 2), Ok(-2)); // -0.015
        let mut nan = pg_numeric(false, 0, &[]);
        nan[4..6].copy_from_slice(&0xC000_u16.to_be_bytes());
        assert!(numeric(&nan, 2).is_err());
        assert!(numeric(&pg_numeric(false, 12, &[9999; 13]), 2).is_err());
        assert!(numeric(&[0, 1], 2).is_err());
    }

    fn field(value: Option<&[u8]>) -> Vec<u8> {
        match value {
            None => (-1_i32).to_be_bytes().to_vec(),
            Some(v) => [&(v.len() as i32).to_be_bytes()[..], v].concat(),
        }
    }

    /// A binary COPY of three rows: (int8, text, date, numeric(10,2), timestamptz).
    fn copy_bytes() -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0_u32.to_be_bytes()); // flags
        out.extend_from_slice(&4_u32.to_be_bytes()); // extension length
        out.extend_from_slice(b"xxxx");
        let rows: Vec<[Option<Vec<u8>>; 5]> = vec![
            [
                Some(7_i64.to_be_bytes().to_vec()),
                Some("Zoë".as_bytes().to_vec()),
                Some(9_770_i32.to_be_bytes().to_vec()), // 2026-10-01
                Some(pg_numeric(true, 0, &[12, 3400])),
                Some((-1_000_000_i64).to_be_bytes().to_vec()), // 1999-12-31T23:59:59Z
            ],
            [None, None, None, None, None],
            [
                Some((-1_i64).to_be_bytes().to_vec()),
                Some(Vec::new()),
                Some((-10_957_i32).to_be_bytes().to_vec()),
                Some(pg_numeric(false, 0, &[5])),
                Some(0_i64.to_be_bytes().to_vec()),
            ],
        ];
        for row in rows {
            out.extend_from_slice(&5_i16.to_be_bytes());
            for value in &row {
                out.extend(field(value.as_deref()));
            }
        }
        out.extend_from_slice(&(-1_i16).to_be_bytes());
        out
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("day", DataType::Date32, true),
            Field::new("amount", DataType::Decimal128(10, 2), true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
                true,
            ),
        ]))
    }

    fn text(batches: &[RecordBatch]) -> Vec<Vec<String>> {
        batches
            .iter()
            .flat_map(|b| {
                (0..b.num_rows()).map(move |r| {
                    b.columns()
                        .iter()
                        .map(|c| {
                            if c.is_null(r) {
                                "NULL".to_string()
                            } else {
                                array_value_to_string(c, r).unwrap()
                            }
                        })
                        .collect()
                })
            })
            .collect()
    }

    #[test]
    fn a_binary_copy_decodes_however_it_is_chunked() {
        let bytes = copy_bytes();
        let expected = vec![
            vec!["7", "Zoë", "2026-10-01", "-12.34", "1999-12-31T23:59:59Z"],
            vec!["NULL"; 5],
            vec!["-1", "", "1970-01-01", "5.00", "2000-01-01T00:00:00Z"],
        ];
        for chunk in [1, 2, 3, 7, 64, bytes.len()] {
            let mut decoder = Decoder::new(schema());
            let mut batches = Vec::new();
            for piece in bytes.chunks(chunk) {
                batches.extend(decoder.push(Bytes::copy_from_slice(piece)).unwrap());
            }
            batches.extend(decoder.finish().unwrap());
            assert_eq!(text(&batches), expected, "chunks of {chunk}");
            assert_eq!(batches[0].schema(), schema());
        }
    }

    #[test]
    fn garbled_or_truncated_copies_are_errors() {
        let bytes = copy_bytes();
        let mut decoder = Decoder::new(schema());
        decoder
            .push(Bytes::copy_from_slice(&bytes[..bytes.len() - 5]))
            .unwrap();
        assert!(decoder.finish().is_err(), "stopped mid-row");
        let mut garbled = bytes.clone();
        garbled[0] = b'X';
        assert!(Decoder::new(schema()).push(Bytes::from(garbled)).is_err());
        let mut negative = bytes.clone();
        let first_field = SIGNATURE.len() + 12 + 2;
        negative[first_field..first_field + 4].copy_from_slice(&(-7_i32).to_be_bytes());
        assert!(Decoder::new(schema()).push(Bytes::from(negative)).is_err());
        let narrow = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        assert!(
            Decoder::new(narrow).push(Bytes::from(bytes)).is_err(),
            "column count"
        );
    }

    #[test]
    fn only_known_type_pairs_take_the_copy_path() {
        assert!(decodes(&Type::INT4, &DataType::Int32));
        assert!(decodes(&Type::BPCHAR, &DataType::Utf8));
        assert!(decodes(&Type::NUMERIC, &DataType::Decimal128(15, 2)));
        assert!(!decodes(&Type::INT4, &DataType::Int64));
        assert!(!decodes(&Type::UUID, &DataType::Utf8));
        assert!(!decodes(&Type::JSONB, &DataType::Utf8));
        assert!(!decodes(
            &Type::TIMESTAMPTZ,
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        ));
    }
}
