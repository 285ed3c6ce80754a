//! Bound parameters: a `Bind` message's values, in text or binary format,
//! as DataFusion scalars. The type comes from the statement where planning
//! inferred one (`WHERE id = $1`), else from the type the client declared
//! in `Parse`; the engine then casts each value to its placeholder's type.

use std::sync::Arc;

use arrow::datatypes::DataType;
use bytes::Bytes;
use datafusion::common::ScalarValue;

use crate::errors::code;
use crate::types::{PG_EPOCH_DAYS, PG_EPOCH_MICROS, arrow_type, oid, pg_type};
use crate::wire::PgError;

/// Parameter `index` (0-based) of a `Bind`, as a scalar.
///
/// # Errors
/// A value that does not read as its type (`22P02`), or a binary value of
/// a type Bluelamp does not read (`0A000`).
pub(crate) fn decode(
    index: usize,
    value: Option<&Bytes>,
    binary: bool,
    declared: u32,
    inferred: Option<&DataType>,
) -> Result<ScalarValue, PgError> {
    let Some(value) = value else {
        return Ok(ScalarValue::Null);
    };
    let name = format!("${}", index + 1);
    let invalid =
        |why: String| PgError::error(code::INVALID_TEXT, format!("parameter {name}: {why}"));
    let target = inferred.cloned().or_else(|| arrow_type(declared));
    if !binary {
        let text = std::str::from_utf8(value)
            .map_err(|_| invalid("the value is not UTF-8 text".into()))?;
        return from_text(text, target.as_ref()).map_err(invalid);
    }
    // Binary values are laid out by the client's declared type, or by the
    // inferred type's PostgreSQL type when it declared none.
    let wire_oid = if declared != 0 {
        declared
    } else {
        target.as_ref().map_or(oid::TEXT, |t| pg_type(t).oid)
    };
    from_binary(value, wire_oid).map_err(invalid)
}

fn from_text(text: &str, target: Option<&DataType>) -> Result<ScalarValue, String> {
    match target {
        None | Some(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => {
            Ok(ScalarValue::Utf8(Some(text.to_string())))
        }
        Some(DataType::Boolean) => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "y" | "on" | "1" => Ok(ScalarValue::Boolean(Some(true))),
            "f" | "false" | "no" | "n" | "off" | "0" => Ok(ScalarValue::Boolean(Some(false))),
            other => Err(format!("'{other}' is not a boolean")),
        },
        Some(DataType::Binary | DataType::LargeBinary | DataType::BinaryView) => {
            bytea_from_text(text).map(|b| ScalarValue::Binary(Some(b)))
        }
        Some(target @ DataType::Timestamp(..)) => {
            ScalarValue::Utf8(Some(with_full_offset(text.trim())))
                .cast_to(target)
                .map_err(|e| format!("'{text}' is not a {target}: {}", e.message()))
        }
        Some(target) => ScalarValue::Utf8(Some(text.trim().to_string()))
            .cast_to(target)
            .map_err(|e| format!("'{text}' is not a {target}: {}", e.message())),
    }
}

/// PostgreSQL writes a whole-hour offset as `+00`; Arrow's parser wants `+00:00`.
fn with_full_offset(text: &str) -> String {
    let bytes = text.as_bytes();
    let n = bytes.len();
    if n > 19
        && (bytes[n - 3] == b'+' || bytes[n - 3] == b'-')
        && bytes[n - 2..].iter().all(u8::is_ascii_digit)
    {
        format!("{text}:00")
    } else {
        text.to_string()
    }
}

fn bytea_from_text(text: &str) -> Result<Vec<u8>, String> {
    let Some(hex) = text.strip_prefix("\\x") else {
        return Ok(text.as_bytes().to_vec());
    };
    if hex.len() % 2 != 0 {
        return Err("a bytea in hex has an even number of digits".into());
    }
    // By bytes, not by string slices: a client's non-ASCII character must
    // be an error, not a cut through a character.
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|digits| u8::from_str_radix(digits, 16).ok())
                .ok_or_else(|| format!("'{}' is not hexadecimal", String::from_utf8_lossy(pair)))
        })
        .collect()
}

fn fixed<const N: usize>(value: &[u8], what: &str) -> Result<[u8; N], String> {
    value
        .try_into()
        .map_err(|_| format!("a binary {what} is {N} bytes, not {}", value.len()))
}

fn from_binary(value: &[u8], wire_oid: u32) -> Result<ScalarValue, String> {
    Ok(match wire_oid {
        oid::BOOL => ScalarValue::Boolean(Some(fixed::<1>(value, "bool")?[0] != 0)),
        oid::INT2 => ScalarValue::Int16(Some(i16::from_be_bytes(fixed(value, "int2")?))),
        oid::INT4 => ScalarValue::Int32(Some(i32::from_be_bytes(fixed(value, "int4")?))),
        oid::INT8 => ScalarValue::Int64(Some(i64::from_be_bytes(fixed(value, "int8")?))),
        oid::OID => ScalarValue::Int64(Some(i64::from(u32::from_be_bytes(fixed(value, "oid")?)))),
        oid::FLOAT4 => ScalarValue::Float32(Some(f32::from_be_bytes(fixed(value, "float4")?))),
        oid::FLOAT8 => ScalarValue::Float64(Some(f64::from_be_bytes(fixed(value, "float8")?))),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::UNKNOWN | oid::JSON => {
            ScalarValue::Utf8(Some(
                String::from_utf8(value.to_vec())
                    .map_err(|_| "the text is not UTF-8".to_string())?,
            ))
        }
        oid::JSONB => {
            // jsonb's binary form is a version byte, then the JSON text.
            let text = value.strip_prefix(&[1]).ok_or("unknown jsonb version")?;
            ScalarValue::Utf8(Some(
                String::from_utf8(text.to_vec())
                    .map_err(|_| "the JSON is not UTF-8".to_string())?,
            ))
        }
        oid::BYTEA => ScalarValue::Binary(Some(value.to_vec())),
        oid::DATE => ScalarValue::Date32(Some(
            i32::from_be_bytes(fixed(value, "date")?).saturating_add(PG_EPOCH_DAYS),
        )),
        oid::TIME => {
            ScalarValue::Time64Microsecond(Some(i64::from_be_bytes(fixed(value, "time")?)))
        }
        oid::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            Some(i64::from_be_bytes(fixed(value, "timestamp")?).saturating_add(PG_EPOCH_MICROS)),
            None,
        ),
        oid::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            Some(i64::from_be_bytes(fixed(value, "timestamptz")?).saturating_add(PG_EPOCH_MICROS)),
            Some(Arc::from("UTC")),
        ),
        oid::UUID => {
            let bytes: [u8; 16] = fixed(value, "uuid")?;
            ScalarValue::Utf8(Some(uuid::Uuid::from_bytes(bytes).to_string()))
        }
        oid::NUMERIC => ScalarValue::Utf8(Some(numeric_text(value)?)),
        other => {
            return Err(format!(
                "binary values of type OID {other} are not read: send it in text format"
            ));
        }
    })
}

/// PostgreSQL's binary `numeric` as decimal text.
fn numeric_text(value: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<i16, String> {
        value
            .get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a binary numeric is cut short".to_string())
    };
    let ndigits = usize::try_from(word(0)?).map_err(|_| "negative digit count".to_string())?;
    let weight = i32::from(word(1)?);
    let sign = word(2)? as u16;
    let scale = usize::try_from(word(3)?).map_err(|_| "negative scale".to_string())?;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        0x0000 | 0x4000 => {}
        other => return Err(format!("a binary numeric has an unknown sign {other:#06x}")),
    }
    let digits: Vec<i16> = (0..ndigits)
        .map(|i| {
            word(4 + i).and_then(|digit| {
                if (0..10_000).contains(&digit) {
                    Ok(digit)
                } else {
                    Err(format!(
                        "a binary numeric has a digit group {digit}, outside 0-9999"
                    ))
                }
            })
        })
        .collect::<Result<_, _>>()?;
    let mut whole = String::new();
    let mut fraction = String::new();
    // Group g has weight (weight - g): groups at weight >= 0 are whole.
    let lowest = weight.min(-1).min(weight - ndigits as i32 + 1);
    for w in (lowest..=weight.max(0)).rev() {
        let index = weight - w;
        let group = if index >= 0 && (index as usize) < digits.len() {
            digits[index as usize]
        } else {
            0
        };
        if w >= 0 {
            whole.push_str(&format!("{group:04}"));
        } else {
            fraction.push_str(&format!("{group:04}"));
        }
    }
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    fraction.truncate(scale);
    while fraction.len() < scale {
        fraction.push('0');
    }
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if scale > 0 {
        format!("{sign}{whole}.{fraction}")
    } else {
        format!("{sign}{whole}")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn numeric_round_trips_through_binary() {
        for text in [
            "0",
            "12345.678",
            "-0.0001",
            "10000",
            "0.00001",
            "-98765432109876.5",
        ] {
            let mut out = BytesMut::new();
            crate::types::write_numeric_binary(text, &mut out);
            assert_eq!(numeric_text(&out).unwrap(), text, "{text}");
        }
    }

    #[test]
    fn text_parameters_take_their_types() {
        let v = decode(
            0,
            Some(&Bytes::from_static(b"42")),
            false,
            0,
            Some(&DataType::Int64),
        );
        assert_eq!(v.unwrap(), ScalarValue::Int64(Some(42)));
        let v = decode(
            0,
            Some(&Bytes::from_static(b"x")),
            false,
            0,
            Some(&DataType::Int64),
        );
        assert_eq!(v.unwrap_err().code, "22P02");
        let v = decode(
            0,
            Some(&Bytes::from_static(b"\\x0aff")),
            false,
            oid::BYTEA,
            None,
        );
        assert_eq!(v.unwrap(), ScalarValue::Binary(Some(vec![10, 255])));
        // A character that is not an ASCII digit, even one of several
        // bytes, is an error for the client (it used to cut a string
        // inside a character, and panic).
        let v = decode(
            0,
            Some(&Bytes::from("\\x0é0".as_bytes())),
            false,
            oid::BYTEA,
            None,
        );
        assert_eq!(v.unwrap_err().code, "22P02");
        let v = decode(0, Some(&Bytes::from_static(b"t")), false, oid::BOOL, None);
        assert_eq!(v.unwrap(), ScalarValue::Boolean(Some(true)));
        assert_eq!(
            with_full_offset("2024-01-02 03:04:05+00"),
            "2024-01-02 03:04:05+00:00"
        );
    }

    #[test]
    fn binary_parameters_by_declared_type() {
        let v = decode(
            0,
            Some(&Bytes::from_static(&[0, 0, 0, 7])),
            true,
            oid::INT4,
            None,
        );
        assert_eq!(v.unwrap(), ScalarValue::Int32(Some(7)));
        let v = decode(
            0,
            Some(&Bytes::from_static(&[0, 0, 0, 0])),
            true,
            oid::DATE,
            None,
        );
        assert_eq!(v.unwrap(), ScalarValue::Date32(Some(PG_EPOCH_DAYS)));
        let v = decode(0, Some(&Bytes::from_static(&[1, 2])), true, oid::INT4, None);
        assert!(v.is_err());
    }
}
