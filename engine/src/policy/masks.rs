//! Column masks as expressions, and the two functions they need.
//!
//! A mask is an expression over the real column that the plan computes
//! before anything of the user's query sees the column ([`mask_expr`]).
//! `hash` and `keep_last` are functions of our own; they are never
//! registered in a session, so a user cannot call them by name (nor use the
//! hash as an oracle beyond what comparing masked values already allows),
//! and databases are never sent them: sub-plans that call them run in
//! DataFusion over the database's rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, cast as cast_expr, lit,
};
use sha2::{Digest, Sha256};

use super::rules::MaskKind;

/// What `redact` shows in place of text.
pub const REDACTED: &str = "[REDACTED]";

/// HMAC-SHA-256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Applies `f` to each value of the single argument, as text.
fn map_text(args: ScalarFunctionArgs, f: impl Fn(&str) -> String) -> DFResult<ColumnarValue> {
    let [value] = args.args.as_slice() else {
        return Err(DataFusionError::Internal(
            "a mask takes one argument".into(),
        ));
    };
    let scalar = matches!(value, ColumnarValue::Scalar(_));
    let array = value.to_array(args.number_rows)?;
    let text = cast(&array, &DataType::Utf8)?;
    let text = text
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("text cast did not give text".into()))?;
    let mut out = StringBuilder::with_capacity(text.len(), text.len() * 16);
    for value in text.iter() {
        match value {
            Some(v) => out.append_value(f(v)),
            None => out.append_null(),
        }
    }
    let out: ArrayRef = Arc::new(out.finish());
    if scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
    } else {
        Ok(ColumnarValue::Array(out))
    }
}

/// `hash`: the first 16 bytes of HMAC-SHA-256 of the value's text, in hex.
#[derive(PartialEq, Eq, Hash)]
struct HashMask {
    key: Vec<u8>,
    signature: Signature,
}

// By hand: the key is a secret, and plans (and DataFusion's errors) print
// their functions with `{:?}`.
impl std::fmt::Debug for HashMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashMask").finish_non_exhaustive()
    }
}

impl ScalarUDFImpl for HashMask {
    fn name(&self) -> &str {
        "bluelamp_mask_hash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        map_text(args, |v| {
            hmac_sha256(&self.key, v.as_bytes())[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
    }
}

/// `keep_last`: every character but the last N becomes `*`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct KeepLastMask {
    keep: usize,
    signature: Signature,
}

impl ScalarUDFImpl for KeepLastMask {
    fn name(&self) -> &str {
        "bluelamp_mask_keep_last"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        map_text(args, |v| {
            let count = v.chars().count();
            let hidden = count.saturating_sub(self.keep);
            "*".repeat(hidden) + &v.chars().skip(hidden).collect::<String>()
        })
    }
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_temporal(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
    )
}

/// The type a masked column of `data_type` has, for kinds that do not need
/// planning (`sql` masks take their expression's type).
pub fn masked_type(kind: &MaskKind, data_type: &DataType) -> Option<DataType> {
    match kind {
        MaskKind::Null | MaskKind::Redact | MaskKind::Year => Some(data_type.clone()),
        MaskKind::Hash | MaskKind::KeepLast(_) => Some(DataType::Utf8),
        MaskKind::Sql(_) => None,
    }
}

/// A mask function as another process needs it (a cluster's executors):
/// `Some(bytes)` for Bluelamp's masks, `None` for any other function. A
/// `hash` mask's key is never among the bytes: each process takes it from
/// its own `[policy] mask_key` ([`decode_mask`]).
pub fn encode_mask(udf: &ScalarUDF) -> Option<Vec<u8>> {
    let inner = udf.inner().as_ref();
    if inner.is::<HashMask>() {
        return Some(Vec::new());
    }
    inner
        .downcast_ref::<KeepLastMask>()
        .map(|mask| mask.keep.to_string().into_bytes())
}

/// The mask function `name` written by [`encode_mask`], with this process's
/// own mask key.
///
/// # Errors
/// `name` is not one of Bluelamp's masks, its bytes are not what
/// [`encode_mask`] writes, or a `hash` mask arrives where this process has
/// no `[policy] mask_key`.
pub fn decode_mask(name: &str, bytes: &[u8], key: Option<&[u8]>) -> Result<ScalarUDF, String> {
    let signature = Signature::any(1, Volatility::Immutable);
    match name {
        "bluelamp_mask_hash" => {
            let key = key.ok_or_else(|| {
                "a plan uses a `hash` mask, but this process has no `[policy] mask_key`: \
                 every process of a cluster needs the same policy settings"
                    .to_string()
            })?;
            Ok(ScalarUDF::new_from_impl(HashMask {
                key: key.to_vec(),
                signature,
            }))
        }
        "bluelamp_mask_keep_last" => {
            let keep = std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse::<usize>().ok())
                .ok_or_else(|| "a `keep_last` mask arrived without its count".to_string())?;
            Ok(ScalarUDF::new_from_impl(KeepLastMask { keep, signature }))
        }
        other => Err(format!("{other} is not one of Bluelamp's masks")),
    }
}

/// The expression showing `column` (of `data_type`) masked by `kind`.
/// `sql` masks are planned against `schema`, the table's full schema.
///
/// # Errors
/// A mask that does not fit the column's type (`year` on text), a `hash`
/// mask without a key, or an `sql` mask that does not plan.
pub fn mask_expr(
    kind: &MaskKind,
    column: Expr,
    data_type: &DataType,
    schema: &DFSchema,
    key: Option<&[u8]>,
    principal: &crate::Principal,
) -> Result<Expr, String> {
    let null = || {
        ScalarValue::try_from(data_type)
            .map(|v| Expr::Literal(v, None))
            .map_err(|e| format!("cannot make a NULL of type {data_type}: {e}"))
    };
    match kind {
        MaskKind::Null => null(),
        MaskKind::Redact if is_text(data_type) => Ok(cast_expr(lit(REDACTED), data_type.clone())),
        MaskKind::Redact => null(),
        MaskKind::Hash => {
            let key = key.ok_or_else(|| {
                "a `hash` mask needs `[policy] mask_key` (a secret, e.g. \"${BLUELAMP_MASK_KEY}\")"
                    .to_string()
            })?;
            let udf = ScalarUDF::new_from_impl(HashMask {
                key: key.to_vec(),
                signature: Signature::any(1, Volatility::Immutable),
            });
            Ok(udf.call(vec![column]))
        }
        MaskKind::KeepLast(keep) => {
            let udf = ScalarUDF::new_from_impl(KeepLastMask {
                keep: *keep,
                signature: Signature::any(1, Volatility::Immutable),
            });
            Ok(udf.call(vec![column]))
        }
        MaskKind::Year if is_temporal(data_type) => Ok(cast_expr(
            datafusion::functions::expr_fn::date_trunc(lit("year"), column),
            data_type.clone(),
        )),
        MaskKind::Year => Err(format!(
            "a `year` mask needs a date or timestamp column, not {data_type}"
        )),
        MaskKind::Sql(sql) => {
            let parsed = super::rules::parse_sql_expr(sql)?;
            let text = super::principal_sql::substitute(&parsed, principal)?.to_string();
            let expr = super::plan_expr(&text, schema)?;
            expr.get_type(schema)
                .map_err(|e| format!("`{sql}` does not type-check: {e}"))?;
            Ok(expr)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn masks_cross_processes_without_their_key() {
        let key: &[u8] = b"the key";
        let hash = ScalarUDF::new_from_impl(HashMask {
            key: key.to_vec(),
            signature: Signature::any(1, Volatility::Immutable),
        });
        let bytes = encode_mask(&hash).unwrap();
        assert!(bytes.is_empty(), "the key stays home");
        let decoded = decode_mask(hash.name(), &bytes, Some(key)).unwrap();
        assert_eq!(decoded, hash);
        assert!(decode_mask(hash.name(), &bytes, None).is_err());
        let keep = ScalarUDF::new_from_impl(KeepLastMask {
            keep: 4,
            signature: Signature::any(1, Volatility::Immutable),
        });
        let bytes = encode_mask(&keep).unwrap();
        assert_eq!(decode_mask(keep.name(), &bytes, None).unwrap(), keep);
        assert!(decode_mask("bluelamp_mask_keep_last", b"x", None).is_err());
        assert!(encode_mask(&datafusion::functions::string::upper()).is_none());
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
