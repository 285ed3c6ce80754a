//! PostgreSQL's functions that clients call while introspecting
//! (`pg_table_is_visible`, `format_type`, `pg_get_userbyid`, `version()`,
//! `current_database()`, ...), added to each PostgreSQL session.
//!
//! Descriptions, defaults, constraints and index definitions Bluelamp does
//! not have are NULL; privilege checks are true, because the catalog a
//! session sees already holds only what its user may read.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::catalog::{OWNER, TYPES};

/// What a function computes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Body {
    /// The same value for every row.
    Const(ScalarValue),
    /// `format_type(oid, typmod)`: a type's SQL name.
    FormatType,
    /// `quote_ident(text)`.
    QuoteIdent,
    /// `pg_size_pretty(bigint)`.
    SizePretty,
    /// `to_regtype(text)`: a type's OID by name, or NULL.
    ToRegtype,
    /// `x::regclass`: an OID as it is, a relation's name as its OID.
    RegclassOid,
    /// `x::regproc`: an OID as it is, a function's name as its OID.
    RegprocOid,
    /// `current_setting(name)`: a session parameter's default.
    Setting,
    /// `array_lower(array, dimension)` (`upper: false`) or `array_upper`:
    /// 1 and the length of that dimension (Bluelamp's lists start at 1),
    /// NULL for an empty or NULL array or a dimension it does not have.
    ArrayBound { upper: bool },
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgFunction {
    name: String,
    signature: Signature,
    returns: DataType,
    body: Body,
}

impl ScalarUDFImpl for PgFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &self.body {
            Body::Const(value) => Ok(ColumnarValue::Scalar(value.clone())),
            Body::FormatType => {
                let arrays = ColumnarValue::values_to_arrays(&args.args)?;
                let oids = integers(arrays.first())?;
                let mods = integers(arrays.get(1))?;
                let mut out = StringBuilder::new();
                for row in 0..args.number_rows {
                    match oids.get(row).copied().flatten() {
                        Some(oid) => out.append_value(format_type(
                            oid,
                            mods.get(row).copied().flatten().unwrap_or(-1),
                        )),
                        None => out.append_null(),
                    }
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }
            Body::QuoteIdent => text_map(&args, quote_ident),
            Body::RegclassOid => name_oids(&args, relation_name_oid),
            Body::RegprocOid => name_oids(&args, function_name_oid),
            Body::Setting => text_map(&args, |name| {
                let name = name.to_ascii_lowercase();
                crate::statements::PARAMETERS
                    .iter()
                    .find(|(n, ..)| *n == name)
                    .map(|(_, value, _)| (*value).to_string())
                    .unwrap_or_default()
            }),
            Body::ToRegtype => {
                let arrays = ColumnarValue::values_to_arrays(&args.args)?;
                let Some(names) = arrays.first() else {
                    return Ok(ColumnarValue::Scalar(ScalarValue::UInt32(None)));
                };
                let names = arrow::compute::cast(names, &DataType::Utf8)?;
                let names = names.as_string::<i32>();
                let oids: arrow::array::UInt32Array = (0..names.len())
                    .map(|row| {
                        (!names.is_null(row))
                            .then(|| type_oid(names.value(row)))
                            .flatten()
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(oids)))
            }
            Body::ArrayBound { upper } => {
                let arrays = ColumnarValue::values_to_arrays(&args.args)?;
                let (Some(lists), dimensions) = (arrays.first(), integers(arrays.get(1))?) else {
                    return Ok(ColumnarValue::Scalar(ScalarValue::Int64(None)));
                };
                let bounds: arrow::array::Int64Array = (0..lists.len())
                    .map(|row| {
                        let dimension = dimensions.get(row).copied().flatten()?;
                        let length = dimension_length(lists, row, dimension)?;
                        Some(if *upper { length } else { 1 })
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(bounds)))
            }
            Body::SizePretty => {
                let arrays = ColumnarValue::values_to_arrays(&args.args)?;
                let sizes = integers(arrays.first())?;
                let mut out = StringBuilder::new();
                for row in 0..args.number_rows {
                    match sizes.get(row).copied().flatten() {
                        Some(size) => out.append_value(size_pretty(size)),
                        None => out.append_null(),
                    }
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }
        }
    }
}

/// The length of `dimension` (from 1) of the list at `row`: `[[1, 2, 3]]`
/// has 1 in dimension 1 and 3 in dimension 2. None where the list is NULL
/// or empty or has no such dimension.
fn dimension_length(list: &ArrayRef, row: usize, dimension: i64) -> Option<i64> {
    if row >= list.len() || list.is_null(row) || dimension < 1 {
        return None;
    }
    let elements = match list.data_type() {
        DataType::List(_) => list.as_list::<i32>().value(row),
        DataType::LargeList(_) => list.as_list::<i64>().value(row),
        DataType::FixedSizeList(..) => list.as_fixed_size_list().value(row),
        _ => return None,
    };
    if elements.is_empty() {
        return None;
    }
    if dimension == 1 {
        return i64::try_from(elements.len()).ok();
    }
    dimension_length(&elements, 0, dimension - 1)
}

/// An argument as 64-bit integers (OIDs and modifiers arrive as any
/// integer type, or as text).
fn integers(array: Option<&ArrayRef>) -> Result<Vec<Option<i64>>> {
    let Some(array) = array else {
        return Ok(Vec::new());
    };
    let array = arrow::compute::cast(array, &DataType::Int64)?;
    Ok(array.as_primitive::<Int64Type>().iter().collect())
}

fn text_map(args: &ScalarFunctionArgs, f: impl Fn(&str) -> String) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    let Some(array) = arrays.first() else {
        return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
    };
    let array = arrow::compute::cast(array, &DataType::Utf8)?;
    let text = array.as_string::<i32>();
    let mut out = StringBuilder::new();
    for row in 0..text.len() {
        if text.is_null(row) {
            out.append_null();
        } else {
            out.append_value(f(text.value(row)));
        }
    }
    Ok(ColumnarValue::Array(Arc::new(out.finish())))
}

/// OIDs as they are, names through `oid_of` (a cast to `regclass` or
/// `regproc`).
fn name_oids(args: &ScalarFunctionArgs, oid_of: fn(&str) -> u32) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    let Some(values) = arrays.first() else {
        return Ok(ColumnarValue::Scalar(ScalarValue::UInt64(None)));
    };
    if values.data_type().is_integer() {
        let oids = arrow::compute::cast(values, &DataType::UInt64)?;
        return Ok(ColumnarValue::Array(oids));
    }
    let names = arrow::compute::cast(values, &DataType::Utf8)?;
    let names = names.as_string::<i32>();
    let oids: arrow::array::UInt64Array = (0..names.len())
        .map(|row| (!names.is_null(row)).then(|| u64::from(oid_of(names.value(row)))))
        .collect();
    Ok(ColumnarValue::Array(Arc::new(oids)))
}

/// A function's OID from its name as `regproc` reads it (`array_in`,
/// `pg_catalog.array_in`; `regprocedure`'s `int4in(cstring)` too).
fn function_name_oid(name: &str) -> u32 {
    let name = name.split('(').next().unwrap_or_default().trim();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
    crate::catalog::proc_oid(name.trim_matches('"'))
}

/// A relation's OID from its name as `regclass` reads it: `pg_class`,
/// `cad.incidents`, `"cad"."incidents"` (a name without a schema is
/// `pg_catalog`'s when it starts with `pg_`, else `public`'s).
fn relation_name_oid(name: &str) -> u32 {
    let parts: Vec<String> = name
        .split('.')
        .map(|p| {
            let p = p.trim();
            match p.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => p.to_ascii_lowercase(),
            }
        })
        .collect();
    match parts.as_slice() {
        [schema, table] => crate::catalog::relation_oid(schema, table),
        [table] if table.starts_with("pg_") => {
            crate::catalog::relation_oid(crate::catalog::PG_CATALOG, table)
        }
        [table] => crate::catalog::relation_oid("public", table),
        _ => 0,
    }
}

/// A type's OID by its name (`int4`, `integer`, `pg_catalog.text`, ...).
fn type_oid(name: &str) -> Option<u32> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    TYPES
        .iter()
        .find(|(oid, typname, ..)| *typname == name || format_type(i64::from(*oid), -1) == name)
        .map(|(oid, ..)| *oid)
}

/// A type's SQL name, as PostgreSQL's `format_type` writes it.
pub fn format_type(oid: i64, modifier: i64) -> String {
    let name = TYPES
        .iter()
        .find(|(o, ..)| i64::from(*o) == oid)
        .map(|(_, name, ..)| *name);
    match name {
        Some("numeric") if modifier >= 4 => {
            let m = modifier - 4;
            format!("numeric({},{})", m >> 16, m & 0xffff)
        }
        Some("bool") => "boolean".into(),
        Some("int2") => "smallint".into(),
        Some("int4") => "integer".into(),
        Some("int8") => "bigint".into(),
        Some("float4") => "real".into(),
        Some("float8") => "double precision".into(),
        Some("varchar") => "character varying".into(),
        Some("bpchar") => "character".into(),
        Some("char") => "\"char\"".into(),
        Some("time") => "time without time zone".into(),
        Some("timestamp") => "timestamp without time zone".into(),
        Some("timestamptz") => "timestamp with time zone".into(),
        Some(name) => name.into(),
        None => "???".into(),
    }
}

fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn size_pretty(size: i64) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB"];
    let mut value = size;
    let mut unit = 0;
    while value.unsigned_abs() >= 10 * 1024 && unit + 1 < units.len() {
        value /= 1024;
        unit += 1;
    }
    format!("{value} {}", units[unit])
}

fn function(name: &str, signature: Signature, returns: DataType, body: Body) -> ScalarUDF {
    ScalarUDF::new_from_impl(PgFunction {
        name: name.to_string(),
        signature,
        returns,
        body,
    })
}

fn constant(name: &str, value: ScalarValue) -> ScalarUDF {
    let returns = value.data_type();
    function(
        name,
        if name_takes_no_arguments(name) {
            Signature::nullary(Volatility::Stable)
        } else {
            Signature::variadic_any(Volatility::Stable)
        },
        returns,
        Body::Const(value),
    )
}

fn name_takes_no_arguments(name: &str) -> bool {
    matches!(
        name,
        "version"
            | "current_database"
            | "current_catalog"
            | "current_schema"
            | "current_user"
            | "session_user"
            | "user"
            | "pg_backend_pid"
            | "pg_is_in_recovery"
            | "inet_server_port"
    )
}

/// The functions for a session of `user` on connection `pid`.
pub fn all(user: &str, pid: i32) -> Vec<ScalarUDF> {
    let text = |v: &str| ScalarValue::Utf8(Some(v.to_string()));
    let no_text = ScalarValue::Utf8(None);
    let yes = ScalarValue::Boolean(Some(true));
    let mut functions = vec![
        constant(
            "version",
            text(&format!(
                "PostgreSQL {} (Bluelamp {})",
                crate::statements::SERVER_VERSION,
                env!("CARGO_PKG_VERSION")
            )),
        ),
        constant("current_database", text(bluelamp_engine::session::CATALOG)),
        constant("current_catalog", text(bluelamp_engine::session::CATALOG)),
        constant(
            "current_schema",
            text(bluelamp_engine::session::SCRATCH_SCHEMA),
        ),
        constant("current_user", text(user)),
        constant("session_user", text(user)),
        constant("user", text(user)),
        constant("pg_backend_pid", ScalarValue::Int32(Some(pid))),
        constant("pg_is_in_recovery", ScalarValue::Boolean(Some(false))),
        constant(
            "pg_relation_is_publishable",
            ScalarValue::Boolean(Some(false)),
        ),
        constant("pg_get_userbyid", text(OWNER)),
        constant("pg_encoding_to_char", text("UTF8")),
        constant("pg_tablespace_location", text("")),
        constant("pg_relation_size", ScalarValue::Int64(Some(0))),
        constant("pg_total_relation_size", ScalarValue::Int64(Some(0))),
        constant("pg_table_size", ScalarValue::Int64(Some(0))),
        constant("pg_indexes_size", ScalarValue::Int64(Some(0))),
        constant("txid_current", ScalarValue::Int64(Some(1))),
        function(
            "current_schemas",
            Signature::variadic_any(Volatility::Stable),
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            Body::Const(ScalarValue::List(ScalarValue::new_list_nullable(
                &[
                    text("pg_catalog"),
                    text(bluelamp_engine::session::SCRATCH_SCHEMA),
                ],
                &DataType::Utf8,
            ))),
        ),
        function(
            "format_type",
            Signature::variadic_any(Volatility::Stable),
            DataType::Utf8,
            Body::FormatType,
        ),
        function(
            "regclass_oid",
            Signature::variadic_any(Volatility::Stable),
            DataType::UInt64,
            Body::RegclassOid,
        ),
        function(
            "current_setting",
            Signature::variadic_any(Volatility::Stable),
            DataType::Utf8,
            Body::Setting,
        ),
        function(
            "regproc_oid",
            Signature::any(1, Volatility::Stable),
            DataType::UInt64,
            Body::RegprocOid,
        ),
        function(
            "array_lower",
            Signature::any(2, Volatility::Immutable),
            DataType::Int64,
            Body::ArrayBound { upper: false },
        ),
        function(
            "array_upper",
            Signature::any(2, Volatility::Immutable),
            DataType::Int64,
            Body::ArrayBound { upper: true },
        ),
        function(
            "to_regtype",
            Signature::variadic_any(Volatility::Stable),
            DataType::UInt32,
            Body::ToRegtype,
        ),
        function(
            "quote_ident",
            Signature::variadic_any(Volatility::Immutable),
            DataType::Utf8,
            Body::QuoteIdent,
        ),
        function(
            "pg_size_pretty",
            Signature::variadic_any(Volatility::Immutable),
            DataType::Utf8,
            Body::SizePretty,
        ),
    ];
    for name in [
        "pg_table_is_visible",
        "pg_type_is_visible",
        "pg_function_is_visible",
        "has_table_privilege",
        "has_schema_privilege",
        "has_database_privilege",
        "has_column_privilege",
        "has_any_column_privilege",
        "pg_has_role",
    ] {
        functions.push(constant(name, yes.clone()));
    }
    for name in [
        "obj_description",
        "col_description",
        "shobj_description",
        "pg_get_expr",
        "pg_get_constraintdef",
        "pg_get_indexdef",
        "pg_get_viewdef",
        "pg_get_triggerdef",
        "pg_get_partkeydef",
        "pg_get_statisticsobjdef_columns",
        "pg_get_function_identity_arguments",
        "pg_get_function_arguments",
        "pg_get_function_result",
        "pg_get_serial_sequence",
    ] {
        functions.push(constant(name, no_text.clone()));
    }
    functions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_and_identifiers() {
        assert_eq!(format_type(1700, ((10 << 16) | 3) + 4), "numeric(10,3)");
        assert_eq!(format_type(1184, -1), "timestamp with time zone");
        assert_eq!(format_type(25, -1), "text");
        assert_eq!(quote_ident("incidents"), "incidents");
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(size_pretty(20_480), "20 kB");
        assert_eq!(type_oid("integer"), Some(23));
        assert_eq!(type_oid("pg_catalog.text"), Some(25));
        assert_eq!(type_oid("hstore"), None);
        assert_eq!(
            relation_name_oid("\"cad\".\"incidents\""),
            crate::catalog::relation_oid("cad", "incidents")
        );
        assert_eq!(
            relation_name_oid("pg_class"),
            crate::catalog::relation_oid("pg_catalog", "pg_class")
        );
    }
}
