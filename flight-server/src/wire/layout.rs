//! The layout results are sent in: dictionaries replaced by their values,
//! string and binary views by plain arrays ([`wire_schema`] for the schema,
//! [`to_wire`] for each batch), with the plain strings written out by this
//! module's own loops ([`flatten`], [`hydrate`]) rather than by Arrow's
//! value-at-a-time cast.

use std::sync::Arc;

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
    ///
    /// [`WireEncoder`]: super::WireEncoder
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
