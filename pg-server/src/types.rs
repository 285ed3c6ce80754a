//! Arrow types as PostgreSQL sees them: each Arrow type's PostgreSQL type
//! (OID, size, modifier), and its values in PostgreSQL's text and binary
//! formats, written straight into `DataRow` messages.
//!
//! | Arrow | PostgreSQL |
//! |---|---|
//! | Boolean | `bool` |
//! | Int8, Int16 | `int2` |
//! | Int32, UInt8, UInt16 | `int4` |
//! | Int64, UInt32 | `int8` |
//! | UInt64, Decimal128/256 | `numeric` (with precision and scale) |
//! | Float16, Float32 / Float64 | `float4` / `float8` |
//! | Utf8, LargeUtf8, Utf8View | `text` |
//! | Binary (all kinds) | `bytea` |
//! | Date32, Date64 | `date` |
//! | Time32, Time64 | `time` |
//! | Timestamp / with a zone | `timestamp` / `timestamptz` (sent in UTC, `+00`) |
//! | Interval, Duration | `interval` |
//! | List, Struct, Map, ... | `json` (the value as JSON text) |
//! | Null | `text` (always NULL) |
//!
//! PostgreSQL keeps microseconds: nanosecond times are sent floored to the
//! microsecond, in both formats alike. Dictionary columns are sent as their
//! values.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, StringViewArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Decimal256Type, DurationMicrosecondType,
    DurationMillisecondType, DurationNanosecondType, DurationSecondType, Field, Float16Type,
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, IntervalDayTimeType,
    IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType, Schema, SchemaRef,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use arrow_json_encoder::JsonColumn;
use bytes::{BufMut, BytesMut};

/// PostgreSQL type OIDs Bluelamp sends or reads.
pub mod oid {
    /// `bool`
    pub const BOOL: u32 = 16;
    /// `bytea`
    pub const BYTEA: u32 = 17;
    /// `"char"` (one byte)
    pub const CHAR: u32 = 18;
    /// `name`
    pub const NAME: u32 = 19;
    /// `int8`
    pub const INT8: u32 = 20;
    /// `int2`
    pub const INT2: u32 = 21;
    /// `int4`
    pub const INT4: u32 = 23;
    /// `text`
    pub const TEXT: u32 = 25;
    /// `oid`
    pub const OID: u32 = 26;
    /// `json`
    pub const JSON: u32 = 114;
    /// `float4`
    pub const FLOAT4: u32 = 700;
    /// `float8`
    pub const FLOAT8: u32 = 701;
    /// `unknown` (an untyped literal)
    pub const UNKNOWN: u32 = 705;
    /// `bpchar`
    pub const BPCHAR: u32 = 1042;
    /// `varchar`
    pub const VARCHAR: u32 = 1043;
    /// `date`
    pub const DATE: u32 = 1082;
    /// `time`
    pub const TIME: u32 = 1083;
    /// `timestamp`
    pub const TIMESTAMP: u32 = 1114;
    /// `timestamptz`
    pub const TIMESTAMPTZ: u32 = 1184;
    /// `interval`
    pub const INTERVAL: u32 = 1186;
    /// `numeric`
    pub const NUMERIC: u32 = 1700;
    /// `uuid`
    pub const UUID: u32 = 2950;
    /// `jsonb`
    pub const JSONB: u32 = 3802;
}

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
pub(crate) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
pub(crate) const PG_EPOCH_DAYS: i32 = 10_957;

/// A column's PostgreSQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgType {
    /// The type's OID.
    pub oid: u32,
    /// Its fixed size in bytes, or -1.
    pub size: i16,
    /// Its modifier (`numeric`'s precision and scale), or -1.
    pub modifier: i32,
}

impl PgType {
    const fn of(oid: u32, size: i16) -> Self {
        Self {
            oid,
            size,
            modifier: -1,
        }
    }
}

/// Field metadata naming the PostgreSQL type a column is sent as, where
/// its Arrow type alone does not say (`pg_catalog`'s `oid`, `name` and
/// `"char"` columns).
pub const PG_TYPE_KEY: &str = "bluelamp.pg_type";

/// The PostgreSQL type `field` is sent as: its [`PG_TYPE_KEY`] where set,
/// else its Arrow type's ([`pg_type`]).
pub fn pg_field_type(field: &Field) -> PgType {
    match field.metadata().get(PG_TYPE_KEY).map(String::as_str) {
        Some("oid") if field.data_type() == &DataType::UInt32 => PgType::of(oid::OID, 4),
        Some("name") if is_text(field.data_type()) => PgType::of(oid::NAME, 64),
        Some("char") if is_text(field.data_type()) => PgType::of(oid::CHAR, 1),
        _ => pg_type(field.data_type()),
    }
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// The PostgreSQL type a column of `data_type` is sent as.
pub fn pg_type(data_type: &DataType) -> PgType {
    match data_type {
        DataType::Boolean => PgType::of(oid::BOOL, 1),
        DataType::Int8 | DataType::Int16 => PgType::of(oid::INT2, 2),
        DataType::Int32 | DataType::UInt8 | DataType::UInt16 => PgType::of(oid::INT4, 4),
        DataType::Int64 | DataType::UInt32 => PgType::of(oid::INT8, 8),
        DataType::UInt64 => PgType::of(oid::NUMERIC, -1),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => PgType {
            oid: oid::NUMERIC,
            size: -1,
            // PostgreSQL's typmod for numeric(p, s); a negative scale has none.
            modifier: if *s >= 0 {
                ((i32::from(*p) << 16) | i32::from(*s)) + 4
            } else {
                -1
            },
        },
        DataType::Float16 | DataType::Float32 => PgType::of(oid::FLOAT4, 4),
        DataType::Float64 => PgType::of(oid::FLOAT8, 8),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            PgType::of(oid::TEXT, -1)
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => PgType::of(oid::BYTEA, -1),
        DataType::Date32 | DataType::Date64 => PgType::of(oid::DATE, 4),
        DataType::Time32(_) | DataType::Time64(_) => PgType::of(oid::TIME, 8),
        DataType::Timestamp(_, None) => PgType::of(oid::TIMESTAMP, 8),
        DataType::Timestamp(_, Some(_)) => PgType::of(oid::TIMESTAMPTZ, 8),
        DataType::Interval(_) | DataType::Duration(_) => PgType::of(oid::INTERVAL, 16),
        DataType::Dictionary(_, value) => pg_type(value),
        DataType::RunEndEncoded(_, value) => pg_type(value.data_type()),
        _ => PgType::of(oid::JSON, -1),
    }
}

/// The Arrow type a parameter declared as `oid` is read as, where the
/// statement itself does not say.
pub fn arrow_type(oid: u32) -> Option<DataType> {
    Some(match oid {
        oid::BOOL => DataType::Boolean,
        oid::INT2 => DataType::Int16,
        oid::INT4 => DataType::Int32,
        oid::INT8 | oid::OID => DataType::Int64,
        oid::FLOAT4 => DataType::Float32,
        oid::FLOAT8 => DataType::Float64,
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::JSON | oid::JSONB | oid::UUID => {
            DataType::Utf8
        }
        oid::BYTEA => DataType::Binary,
        oid::DATE => DataType::Date32,
        oid::TIME => DataType::Time64(TimeUnit::Microsecond),
        oid::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        oid::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
        oid::NUMERIC => DataType::Decimal128(38, 10),
        _ => return None,
    })
}

/// `schema` with dictionary and run-end-encoded columns as their values.
pub fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    if !schema
        .fields()
        .iter()
        .any(|f| needs_unpacking(f.data_type()))
    {
        return Arc::clone(schema);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(unpacked(f.data_type())))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn needs_unpacking(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Dictionary(..) | DataType::RunEndEncoded(..)
    )
}

fn unpacked(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Dictionary(_, value) => unpacked(value),
        DataType::RunEndEncoded(_, value) => unpacked(value.data_type()),
        other => other.clone(),
    }
}

/// `batch`'s columns with dictionaries and run-end encoding unpacked.
///
/// # Errors
/// A column arrow cannot unpack.
pub fn plain_columns(batch: &RecordBatch) -> Result<Vec<ArrayRef>, ArrowError> {
    batch
        .columns()
        .iter()
        .map(|column| {
            if needs_unpacking(column.data_type()) {
                arrow::compute::cast(column, &unpacked(column.data_type()))
            } else {
                Ok(Arc::clone(column))
            }
        })
        .collect()
}

/// How a column's values are written.
enum Kind<'a> {
    Bool(&'a BooleanArray),
    Int(IntColumn<'a>),
    /// `oid`: unsigned, four bytes in binary.
    Oid(&'a arrow::array::UInt32Array),
    Float4(FloatColumn<'a>),
    Float8(&'a arrow::array::Float64Array),
    /// Values written as decimal text (`numeric`).
    Numeric(NumericColumn<'a>),
    Utf8(&'a StringArray),
    LargeUtf8(&'a arrow::array::LargeStringArray),
    Utf8View(&'a StringViewArray),
    Bytes(&'a dyn Array),
    Date(&'a dyn Array),
    Time(&'a dyn Array),
    Timestamp {
        array: &'a dyn Array,
        zoned: bool,
    },
    Interval(&'a dyn Array),
    Json(JsonColumn<'a>),
    Null,
}

enum IntColumn<'a> {
    I8(&'a arrow::array::Int8Array),
    I16(&'a arrow::array::Int16Array),
    I32(&'a arrow::array::Int32Array),
    I64(&'a arrow::array::Int64Array),
    U8(&'a arrow::array::UInt8Array),
    U16(&'a arrow::array::UInt16Array),
    U32(&'a arrow::array::UInt32Array),
}

enum FloatColumn<'a> {
    F16(&'a arrow::array::Float16Array),
    F32(&'a arrow::array::Float32Array),
}

enum NumericColumn<'a> {
    U64(&'a arrow::array::UInt64Array),
    D128(&'a arrow::array::Decimal128Array, i8),
    D256(&'a arrow::array::Decimal256Array, i8),
}

/// One column of a batch, ready to write value by value.
struct ColumnWriter<'a> {
    array: &'a dyn Array,
    kind: Kind<'a>,
    binary: bool,
}

/// Writes a batch's rows as `DataRow` messages.
pub struct RowWriter<'a> {
    columns: Vec<ColumnWriter<'a>>,
    scratch: Vec<u8>,
}

impl<'a> RowWriter<'a> {
    /// A writer for `columns` (as [`plain_columns`] gives them) of
    /// `schema`, each in text or binary (`binary[i]`).
    ///
    /// # Errors
    /// A nested column the JSON encoder cannot write.
    pub fn new(
        schema: &Schema,
        columns: &'a [ArrayRef],
        binary: &[bool],
    ) -> Result<Self, ArrowError> {
        let columns = columns
            .iter()
            .enumerate()
            .map(|(i, array)| {
                let is_oid = schema
                    .fields()
                    .get(i)
                    .is_some_and(|f| pg_field_type(f).oid == oid::OID);
                let kind = match array.data_type() {
                    DataType::UInt32 if is_oid => Kind::Oid(array.as_primitive::<UInt32Type>()),
                    _ => kind(array)?,
                };
                Ok(ColumnWriter {
                    array: array.as_ref(),
                    kind,
                    binary: binary.get(i).copied().unwrap_or(false),
                })
            })
            .collect::<Result<Vec<_>, ArrowError>>()?;
        Ok(Self {
            columns,
            scratch: Vec::new(),
        })
    }

    /// Appends row `row` as one `DataRow` message to `out`.
    pub fn write_row(&mut self, row: usize, out: &mut BytesMut) {
        out.put_u8(b'D');
        let start = out.len();
        out.put_i32(0);
        out.put_i16(i16::try_from(self.columns.len()).unwrap_or(i16::MAX));
        for column in &mut self.columns {
            if column.array.is_null(row) || matches!(column.kind, Kind::Null) {
                out.put_i32(-1);
                continue;
            }
            let at = out.len();
            out.put_i32(0);
            column.write(row, out, &mut self.scratch);
            let len = out.len() - at - 4;
            out[at..at + 4].copy_from_slice(&(len as i32).to_be_bytes());
        }
        let len = out.len() - start;
        out[start..start + 4].copy_from_slice(&(len as i32).to_be_bytes());
    }
}

fn kind(array: &ArrayRef) -> Result<Kind<'_>, ArrowError> {
    let a = array.as_ref();
    Ok(match a.data_type() {
        DataType::Null => Kind::Null,
        DataType::Boolean => Kind::Bool(a.as_boolean()),
        DataType::Int8 => Kind::Int(IntColumn::I8(a.as_primitive::<Int8Type>())),
        DataType::Int16 => Kind::Int(IntColumn::I16(a.as_primitive::<Int16Type>())),
        DataType::Int32 => Kind::Int(IntColumn::I32(a.as_primitive::<Int32Type>())),
        DataType::Int64 => Kind::Int(IntColumn::I64(a.as_primitive::<Int64Type>())),
        DataType::UInt8 => Kind::Int(IntColumn::U8(a.as_primitive::<UInt8Type>())),
        DataType::UInt16 => Kind::Int(IntColumn::U16(a.as_primitive::<UInt16Type>())),
        DataType::UInt32 => Kind::Int(IntColumn::U32(a.as_primitive::<UInt32Type>())),
        DataType::UInt64 => Kind::Numeric(NumericColumn::U64(a.as_primitive::<UInt64Type>())),
        DataType::Decimal128(_, s) => {
            Kind::Numeric(NumericColumn::D128(a.as_primitive::<Decimal128Type>(), *s))
        }
        DataType::Decimal256(_, s) => {
            Kind::Numeric(NumericColumn::D256(a.as_primitive::<Decimal256Type>(), *s))
        }
        DataType::Float16 => Kind::Float4(FloatColumn::F16(a.as_primitive::<Float16Type>())),
        DataType::Float32 => Kind::Float4(FloatColumn::F32(a.as_primitive::<Float32Type>())),
        DataType::Float64 => Kind::Float8(a.as_primitive::<Float64Type>()),
        DataType::Utf8 => Kind::Utf8(a.as_string::<i32>()),
        DataType::LargeUtf8 => Kind::LargeUtf8(a.as_string::<i64>()),
        DataType::Utf8View => Kind::Utf8View(a.as_string_view()),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Kind::Bytes(a),
        DataType::Date32 | DataType::Date64 => Kind::Date(a),
        DataType::Time32(_) | DataType::Time64(_) => Kind::Time(a),
        DataType::Timestamp(_, zone) => Kind::Timestamp {
            array: a,
            zoned: zone.is_some(),
        },
        DataType::Interval(_) | DataType::Duration(_) => Kind::Interval(a),
        _ => Kind::Json(JsonColumn::new(array)?),
    })
}

impl ColumnWriter<'_> {
    fn write(&mut self, row: usize, out: &mut BytesMut, scratch: &mut Vec<u8>) {
        let binary = self.binary;
        match &mut self.kind {
            Kind::Null => {}
            Kind::Bool(a) => {
                let v = a.value(row);
                if binary {
                    out.put_u8(u8::from(v));
                } else {
                    out.put_u8(if v { b't' } else { b'f' });
                }
            }
            Kind::Int(column) => {
                let (value, width) = match column {
                    IntColumn::I8(a) => (i64::from(a.value(row)), 2),
                    IntColumn::I16(a) => (i64::from(a.value(row)), 2),
                    IntColumn::I32(a) => (i64::from(a.value(row)), 4),
                    IntColumn::I64(a) => (a.value(row), 8),
                    IntColumn::U8(a) => (i64::from(a.value(row)), 4),
                    IntColumn::U16(a) => (i64::from(a.value(row)), 4),
                    IntColumn::U32(a) => (i64::from(a.value(row)), 8),
                };
                if binary {
                    // Each value fits its width: the widths follow the Arrow type.
                    match width {
                        2 => out.put_i16(value as i16),
                        4 => out.put_i32(value as i32),
                        _ => out.put_i64(value),
                    }
                } else {
                    out.put_slice(itoa::Buffer::new().format(value).as_bytes());
                }
            }
            Kind::Oid(a) => {
                let value = a.value(row);
                if binary {
                    out.put_u32(value);
                } else {
                    out.put_slice(itoa::Buffer::new().format(value).as_bytes());
                }
            }
            Kind::Float4(column) => {
                let value = match column {
                    FloatColumn::F16(a) => a.value(row).to_f32(),
                    FloatColumn::F32(a) => a.value(row),
                };
                if binary {
                    out.put_f32(value);
                } else {
                    write_float(f64::from(value), Some(value), out);
                }
            }
            Kind::Float8(a) => {
                let value = a.value(row);
                if binary {
                    out.put_f64(value);
                } else {
                    write_float(value, None, out);
                }
            }
            Kind::Numeric(column) => {
                let text = match column {
                    NumericColumn::U64(a) => a.value(row).to_string(),
                    NumericColumn::D128(a, scale) => {
                        decimal_text(&a.value(row).to_string(), *scale)
                    }
                    NumericColumn::D256(a, scale) => {
                        decimal_text(&a.value(row).to_string(), *scale)
                    }
                };
                if binary {
                    write_numeric_binary(&text, out);
                } else {
                    out.put_slice(text.as_bytes());
                }
            }
            Kind::Utf8(a) => out.put_slice(a.value(row).as_bytes()),
            Kind::LargeUtf8(a) => out.put_slice(a.value(row).as_bytes()),
            Kind::Utf8View(a) => out.put_slice(a.value(row).as_bytes()),
            Kind::Bytes(a) => {
                let bytes = binary_value(*a, row);
                if binary {
                    out.put_slice(bytes);
                } else {
                    write_bytea_text(bytes, out);
                }
            }
            Kind::Date(a) => {
                let days = date_days(*a, row);
                if binary {
                    out.put_i32(days.saturating_sub(PG_EPOCH_DAYS));
                } else {
                    write_date_text(days, out);
                }
            }
            Kind::Time(a) => {
                let micros = time_micros(*a, row);
                if binary {
                    out.put_i64(micros);
                } else {
                    write_time_text(micros, out);
                }
            }
            Kind::Timestamp { array, zoned } => {
                let micros = timestamp_micros(*array, row);
                if binary {
                    out.put_i64(micros.saturating_sub(PG_EPOCH_MICROS));
                } else {
                    write_timestamp_text(micros, *zoned, out);
                }
            }
            Kind::Interval(a) => {
                let (months, days, micros) = interval_parts(*a, row);
                if binary {
                    out.put_i64(micros);
                    out.put_i32(days);
                    out.put_i32(months);
                } else {
                    write_interval_text(months, days, micros, out);
                }
            }
            Kind::Json(column) => {
                scratch.clear();
                column.encode(row, scratch);
                out.put_slice(scratch);
            }
        }
    }
}

/// A float as PostgreSQL writes it (`extra_float_digits` above 0, its
/// default since 12): the shortest digits that read back the same value,
/// in fixed notation for decimal exponents from -4 up to (but not
/// including) 15 for `float8` and 6 for `float4`, else as `1e+300` /
/// `1e-05`; and `Infinity`, `-Infinity`, `NaN`.
fn write_float(value: f64, single: Option<f32>, out: &mut BytesMut) {
    if value.is_nan() {
        out.put_slice(b"NaN");
        return;
    }
    if value.is_infinite() {
        out.put_slice(if value > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.5e-7`.
    let (scientific, fixed_below) = match single {
        Some(v) => (format!("{v:e}"), 6),
        None => (format!("{value:e}"), 15),
    };
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    out.put_slice(sign.as_bytes());
    if !(-4..fixed_below).contains(&exponent) {
        out.put_slice(mantissa.as_bytes());
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        let _ = std::fmt::Write::write_fmt(
            &mut Writer(out),
            format_args!("e{exp_sign}{:02}", exponent.unsigned_abs()),
        );
        return;
    }
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if exponent < 0 {
        out.put_slice(b"0.");
        out.put_slice("0".repeat((-exponent - 1) as usize).as_bytes());
        out.put_slice(digits.as_bytes());
    } else {
        let whole = exponent as usize + 1;
        if digits.len() <= whole {
            out.put_slice(digits.as_bytes());
            out.put_slice("0".repeat(whole - digits.len()).as_bytes());
        } else {
            out.put_slice(&digits.as_bytes()[..whole]);
            out.put_u8(b'.');
            out.put_slice(&digits.as_bytes()[whole..]);
        }
    }
}

/// An unscaled integer's digits (`-12345`) with `scale` as decimal text
/// (`-123.45`).
pub(crate) fn decimal_text(digits: &str, scale: i8) -> String {
    let (negative, digits) = match digits.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, digits),
    };
    let sign = if negative { "-" } else { "" };
    if scale <= 0 {
        let zeros = "0".repeat(usize::from(scale.unsigned_abs()));
        return if digits == "0" {
            "0".into()
        } else {
            format!("{sign}{digits}{zeros}")
        };
    }
    let scale = usize::from(scale.unsigned_abs());
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits.to_string()
    };
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// Decimal text (`-123.4500`) in PostgreSQL's binary `numeric` form:
/// base-10000 digits with a weight, a sign and the display scale.
pub(crate) fn write_numeric_binary(text: &str, out: &mut BytesMut) {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let whole = whole.trim_start_matches('0');
    let scale = fraction.len();
    // Whole digits padded on the left, fraction digits on the right, to
    // groups of four.
    let lead = (4 - whole.len() % 4) % 4;
    let trail = (4 - fraction.len() % 4) % 4;
    let whole_groups = whole.len().div_ceil(4);
    let all: Vec<u8> = std::iter::repeat_n(b'0', lead)
        .chain(whole.bytes())
        .chain(fraction.bytes())
        .chain(std::iter::repeat_n(b'0', trail))
        .collect();
    let mut groups: Vec<i16> = all
        .chunks(4)
        .map(|c| {
            c.iter()
                .fold(0i16, |acc, d| acc * 10 + i16::from(d.saturating_sub(b'0')))
        })
        .collect();
    let mut weight = whole_groups as i32 - 1;
    let leading_zeros = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading_zeros);
    weight -= leading_zeros as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(i16::try_from(groups.len()).unwrap_or(i16::MAX));
    out.put_i16(i16::try_from(weight).unwrap_or(0));
    out.put_u16(if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_i16(i16::try_from(scale).unwrap_or(i16::MAX));
    for group in groups {
        out.put_i16(group);
    }
}

fn binary_value(array: &dyn Array, row: usize) -> &[u8] {
    match array.data_type() {
        DataType::Binary => array.as_binary::<i32>().value(row),
        DataType::LargeBinary => array.as_binary::<i64>().value(row),
        DataType::BinaryView => array.as_binary_view().value(row),
        DataType::FixedSizeBinary(_) => array.as_fixed_size_binary().value(row),
        _ => &[],
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_bytea_text(bytes: &[u8], out: &mut BytesMut) {
    out.put_slice(b"\\x");
    for byte in bytes {
        out.put_u8(HEX[usize::from(byte >> 4)]);
        out.put_u8(HEX[usize::from(byte & 0xf)]);
    }
}

fn date_days(array: &dyn Array, row: usize) -> i32 {
    match array.data_type() {
        DataType::Date32 => array.as_primitive::<Date32Type>().value(row),
        DataType::Date64 => i32::try_from(
            array
                .as_primitive::<Date64Type>()
                .value(row)
                .div_euclid(86_400_000),
        )
        .unwrap_or(i32::MAX),
        _ => 0,
    }
}

fn time_micros(array: &dyn Array, row: usize) -> i64 {
    match array.data_type() {
        DataType::Time32(TimeUnit::Second) => {
            i64::from(array.as_primitive::<Time32SecondType>().value(row)) * 1_000_000
        }
        DataType::Time32(_) => {
            i64::from(array.as_primitive::<Time32MillisecondType>().value(row)) * 1_000
        }
        DataType::Time64(TimeUnit::Nanosecond) => array
            .as_primitive::<Time64NanosecondType>()
            .value(row)
            .div_euclid(1_000),
        DataType::Time64(_) => array.as_primitive::<Time64MicrosecondType>().value(row),
        _ => 0,
    }
}

fn timestamp_micros(array: &dyn Array, row: usize) -> i64 {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<TimestampSecondType>()
            .value(row)
            .saturating_mul(1_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .value(row)
            .saturating_mul(1_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            array.as_primitive::<TimestampMicrosecondType>().value(row)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array
            .as_primitive::<TimestampNanosecondType>()
            .value(row)
            .div_euclid(1_000),
        _ => 0,
    }
}

/// An interval or duration as PostgreSQL's (months, days, microseconds).
fn interval_parts(array: &dyn Array, row: usize) -> (i32, i32, i64) {
    match array.data_type() {
        DataType::Interval(IntervalUnit::YearMonth) => (
            array.as_primitive::<IntervalYearMonthType>().value(row),
            0,
            0,
        ),
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(row);
            (0, v.days, i64::from(v.milliseconds) * 1_000)
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            (v.months, v.days, v.nanoseconds.div_euclid(1_000))
        }
        DataType::Duration(TimeUnit::Second) => (
            0,
            0,
            array
                .as_primitive::<DurationSecondType>()
                .value(row)
                .saturating_mul(1_000_000),
        ),
        DataType::Duration(TimeUnit::Millisecond) => (
            0,
            0,
            array
                .as_primitive::<DurationMillisecondType>()
                .value(row)
                .saturating_mul(1_000),
        ),
        DataType::Duration(TimeUnit::Microsecond) => (
            0,
            0,
            array.as_primitive::<DurationMicrosecondType>().value(row),
        ),
        DataType::Duration(TimeUnit::Nanosecond) => (
            0,
            0,
            array
                .as_primitive::<DurationNanosecondType>()
                .value(row)
                .div_euclid(1_000),
        ),
        _ => (0, 0, 0),
    }
}

fn write_date_text(days: i32, out: &mut BytesMut) {
    use std::fmt::Write as _;
    match chrono::NaiveDate::from_num_days_from_ce_opt(days.saturating_add(719_163)) {
        Some(date) => {
            let _ = write!(Writer(out), "{}", date.format("%Y-%m-%d"));
        }
        None => out.put_slice(b"infinity"),
    }
}

/// `.ffffff` without trailing zeros, or nothing for a whole second.
fn write_fraction(micros: u32, out: &mut BytesMut) {
    if micros == 0 {
        return;
    }
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let used = 6 - digits.iter().rev().take_while(|d| **d == b'0').count();
    out.put_u8(b'.');
    out.put_slice(&digits[..used]);
}

fn write_time_text(micros: i64, out: &mut BytesMut) {
    use std::fmt::Write as _;
    let micros = micros.rem_euclid(86_400_000_000);
    let seconds = micros / 1_000_000;
    let _ = write!(
        Writer(out),
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    write_fraction((micros % 1_000_000) as u32, out);
}

fn write_timestamp_text(micros: i64, zoned: bool, out: &mut BytesMut) {
    use std::fmt::Write as _;
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(time) => {
            let _ = write!(Writer(out), "{}", time.format("%Y-%m-%d %H:%M:%S"));
            write_fraction((micros.rem_euclid(1_000_000)) as u32, out);
            if zoned {
                out.put_slice(b"+00");
            }
        }
        None => out.put_slice(if micros > 0 {
            b"infinity"
        } else {
            b"-infinity"
        }),
    }
}

/// PostgreSQL's `postgres` interval style: `1 year 2 mons 3 days 04:05:06.5`.
fn write_interval_text(months: i32, days: i32, micros: i64, out: &mut BytesMut) {
    use std::fmt::Write as _;
    let mut parts: Vec<String> = Vec::new();
    let (years, months) = (months / 12, months % 12);
    for (value, one, many) in [(years, "year", "years"), (months, "mon", "mons")] {
        if value != 0 {
            parts.push(format!("{value} {}", if value == 1 { one } else { many }));
        }
    }
    if days != 0 {
        parts.push(format!("{days} {}", if days == 1 { "day" } else { "days" }));
    }
    if micros != 0 || parts.is_empty() {
        // PostgreSQL marks a positive time with '+' only after a negative part.
        let negative_before = months < 0 || years < 0 || days < 0;
        let sign = if micros < 0 {
            "-"
        } else if negative_before {
            "+"
        } else {
            ""
        };
        let abs = micros.unsigned_abs();
        let seconds = abs / 1_000_000;
        let mut time = format!(
            "{sign}{:02}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        );
        let mut fraction = BytesMut::new();
        write_fraction((abs % 1_000_000) as u32, &mut fraction);
        time.push_str(&String::from_utf8_lossy(&fraction));
        parts.push(time);
    }
    let _ = write!(Writer(out), "{}", parts.join(" "));
}

/// `fmt::Write` into a `BytesMut`.
struct Writer<'a>(&'a mut BytesMut);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// Nested values as JSON text, through arrow-json's encoder.
mod arrow_json_encoder {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef};
    use arrow::datatypes::{Field, FieldRef};
    use arrow::error::ArrowError;
    use arrow::json::writer::{EncoderOptions, make_encoder};

    /// One nested column's values, encoded as JSON when the batch arrives
    /// (the encoder borrows its field, so it cannot outlive this call).
    pub(super) struct JsonColumn<'a> {
        text: Vec<u8>,
        /// Where each row's value ends in `text`.
        ends: Vec<usize>,
        _array: std::marker::PhantomData<&'a ()>,
    }

    impl JsonColumn<'_> {
        pub(super) fn new(array: &ArrayRef) -> Result<Self, ArrowError> {
            let field: FieldRef = Arc::new(Field::new("value", array.data_type().clone(), true));
            let options = EncoderOptions::default().with_explicit_nulls(true);
            let mut encoder = make_encoder(&field, array.as_ref() as &dyn Array, &options)?;
            let mut text = Vec::new();
            let mut ends = Vec::with_capacity(array.len());
            for row in 0..array.len() {
                if !array.is_null(row) {
                    encoder.encode(row, &mut text);
                }
                ends.push(text.len());
            }
            Ok(Self {
                text,
                ends,
                _array: std::marker::PhantomData,
            })
        }

        pub(super) fn encode(&mut self, row: usize, out: &mut Vec<u8>) {
            let start = if row == 0 { 0 } else { self.ends[row - 1] };
            out.extend_from_slice(&self.text[start..self.ends[row]]);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn numeric(text: &str) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_numeric_binary(text, &mut out);
        out.to_vec()
    }

    fn words(values: &[i16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    #[test]
    fn numeric_binary_follows_postgres() {
        // ndigits, weight, sign, dscale, digits
        assert_eq!(numeric("0"), words(&[0, 0, 0, 0]));
        assert_eq!(numeric("0.00"), words(&[0, 0, 0, 2]));
        assert_eq!(numeric("12345.678"), words(&[3, 1, 0, 3, 1, 2345, 6780]));
        assert_eq!(numeric("-0.0001"), words(&[1, -1, 0x4000, 4, 1]));
        assert_eq!(numeric("10000"), words(&[1, 1, 0, 0, 1]));
        assert_eq!(numeric("0.00001"), words(&[1, -2, 0, 5, 1000]));
    }

    #[test]
    fn decimal_text_places_the_point() {
        assert_eq!(decimal_text("-12345", 2), "-123.45");
        assert_eq!(decimal_text("5", 3), "0.005");
        assert_eq!(decimal_text("-5", 3), "-0.005");
        assert_eq!(decimal_text("12", -2), "1200");
        assert_eq!(decimal_text("0", 0), "0");
    }

    #[test]
    fn temporal_text_is_postgres_style() {
        let mut out = BytesMut::new();
        write_timestamp_text(1_700_000_000_123_400, true, &mut out);
        assert_eq!(&out[..], b"2023-11-14 22:13:20.1234+00");
        out.clear();
        write_timestamp_text(-1, false, &mut out);
        assert_eq!(&out[..], b"1969-12-31 23:59:59.999999");
        out.clear();
        write_date_text(0, &mut out);
        assert_eq!(&out[..], b"1970-01-01");
        out.clear();
        write_interval_text(14, 3, 4 * 3_600_000_000 + 500_000, &mut out);
        assert_eq!(&out[..], b"1 year 2 mons 3 days 04:00:00.5");
        out.clear();
        write_interval_text(0, -1, 7_200_000_000, &mut out);
        assert_eq!(&out[..], b"-1 days +02:00:00");
        out.clear();
        write_interval_text(0, 0, 0, &mut out);
        assert_eq!(&out[..], b"00:00:00");
        out.clear();
        for (value, want) in [
            (1.0, "1"),
            (-0.1, "-0.1"),
            (1e300, "1e+300"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123_456_789_012_345.0, "123456789012345"),
            (1e15, "1e+15"),
            (-1.5e20, "-1.5e+20"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            out.clear();
            write_float(value, None, &mut out);
            assert_eq!(String::from_utf8_lossy(&out), want, "{value}");
        }
        out.clear();
        write_float(1e6, Some(1e6), &mut out);
        assert_eq!(&out[..], b"1e+06");
    }
}
