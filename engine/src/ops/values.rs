//! Functions that make values far larger than their arguments
//! (`repeat('a', 1000000000)`, `array_repeat(1, 100000000)`, `range(1e10)`)
//! allocate outside DataFusion's memory pool, so neither the memory limit
//! nor a timeout can stop them once started: the allocation itself is the
//! harm. Each such function is wrapped here: before it runs, the size of
//! what it would make is worked out from its arguments, and it is refused
//! if one value would exceed `[engine] max_value_size`, or if the whole
//! batch cannot be reserved from the engine's memory pool
//! (`[engine] memory_limit`).
//!
//! The estimate errs high (a padded character counts four bytes), never
//! low: a refusal names the function, the size and the setting.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array};
use arrow::datatypes::{DataType, FieldRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};

use super::ByAddress;

/// How a function's output grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text `n` times.
    Repeat,
    /// `lpad`/`rpad(text, n[, fill])`: `n` characters.
    Pad,
    /// `array_repeat(value, n)`: `n` copies of the value.
    ArrayRepeat,
    /// `range`/`generate_series(start, stop[, step])`: one element per step.
    Series,
    /// `array_resize(list, n[, value])`: `n` elements.
    Resize,
    /// `replace(text, from, to)`: every `from` becomes `to`.
    Replace,
    /// `regexp_replace(text, pattern, replacement[, flags])`.
    RegexpReplace,
}

/// The functions wrapped, by the name DataFusion registers them under.
const GUARDED: &[(&str, Growth)] = &[
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("array_repeat", Growth::ArrayRepeat),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
    ("array_resize", Growth::Resize),
    ("replace", Growth::Replace),
    ("regexp_replace", Growth::RegexpReplace),
];

/// The guarded versions of DataFusion's amplifying functions, for a
/// session to register over the originals: `lookup` finds each original by
/// name (a function the session does not have is skipped).
pub fn guarded_functions(
    lookup: impl Fn(&str) -> Option<Arc<ScalarUDF>>,
    max_value: u64,
    pool: Arc<dyn MemoryPool>,
) -> Vec<ScalarUDF> {
    GUARDED
        .iter()
        .filter_map(|(name, growth)| {
            let inner = lookup(name)?;
            Some(ScalarUDF::new_from_impl(Guarded {
                inner,
                growth: *growth,
                max_value,
                pool: ByAddress(Arc::clone(&pool)),
            }))
        })
        .collect()
}

/// A function run only when what it would make fits.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Guarded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    max_value: u64,
    pool: ByAddress<dyn MemoryPool>,
}

impl Guarded {
    /// Refuses the call if one value or the whole batch would be too large;
    /// otherwise reserves the batch's size for the length of the call.
    fn check(
        &self,
        args: &ScalarFunctionArgs,
    ) -> DFResult<Option<datafusion::execution::memory_pool::MemoryReservation>> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let sizes = estimate(self.growth, &args.args, rows)?;
        let name = self.inner.name();
        let largest = sizes.iter().copied().max().unwrap_or(0);
        if largest > self.max_value {
            return Err(DataFusionError::Execution(format!(
                "{name}() would make a value of {} (more than the {} one value may hold: \
                 [engine] max_value_size), so the statement was stopped",
                human(largest),
                human(self.max_value)
            )));
        }
        let total: u64 = sizes.iter().fold(0u64, |sum, s| sum.saturating_add(*s));
        // Small results are not worth a trip to the pool.
        if total < 1024 * 1024 {
            return Ok(None);
        }
        let reservation = MemoryConsumer::new(format!("{name}()")).register(&self.pool.0);
        reservation.try_grow(usize::try_from(total).unwrap_or(usize::MAX))?;
        Ok(Some(reservation))
    }
}

/// Bytes as a person reads them.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Each row's output size in bytes, from the arguments.
fn estimate(growth: Growth, args: &[ColumnarValue], rows: usize) -> DFResult<Vec<u64>> {
    let arg = |i: usize| args.get(i);
    let zeros = || vec![0u64; rows];
    Ok(match growth {
        Growth::Repeat => {
            let (Some(text), Some(n)) = (arg(0), arg(1)) else {
                return Ok(zeros());
            };
            let (len, n) = (lengths(text, rows)?, integers(n, rows)?);
            len.iter()
                .zip(&n)
                .map(|(l, n)| l.saturating_mul(*n))
                .collect()
        }
        Growth::Pad => {
            let Some(n) = arg(1) else {
                return Ok(zeros());
            };
            let fill = match arg(2) {
                Some(fill) => lengths(fill, rows)?,
                None => vec![1; rows],
            };
            integers(n, rows)?
                .iter()
                .zip(&fill)
                // A character of the fill is at most four bytes.
                .map(|(n, f)| n.saturating_mul(4).max(n.saturating_mul(*f)))
                .collect()
        }
        Growth::ArrayRepeat => {
            let (Some(value), Some(n)) = (arg(0), arg(1)) else {
                return Ok(zeros());
            };
            let size = element_sizes(value, rows)?;
            integers(n, rows)?
                .iter()
                .zip(&size)
                .map(|(n, s)| n.saturating_mul(*s))
                .collect()
        }
        Growth::Series => series_sizes(args, rows)?,
        Growth::Resize => {
            let Some(n) = arg(1) else {
                return Ok(zeros());
            };
            let size = match arg(2) {
                Some(value) => element_sizes(value, rows)?,
                None => vec![8; rows],
            };
            integers(n, rows)?
                .iter()
                .zip(&size)
                .map(|(n, s)| n.saturating_mul((*s).max(8)))
                .collect()
        }
        Growth::Replace => {
            let (Some(text), Some(from), Some(to)) = (arg(0), arg(1), arg(2)) else {
                return Ok(zeros());
            };
            let (text, from, to) = (
                lengths(text, rows)?,
                lengths(from, rows)?,
                lengths(to, rows)?,
            );
            (0..rows)
                .map(|i| {
                    let matches = text[i] / from[i].max(1);
                    text[i].saturating_add(matches.saturating_mul(to[i]))
                })
                .collect()
        }
        Growth::RegexpReplace => {
            let (Some(text), Some(replacement)) = (arg(0), arg(2)) else {
                return Ok(zeros());
            };
            let (text, replacement) = (lengths(text, rows)?, lengths(replacement, rows)?);
            // A pattern may match at every position, the empty one included.
            (0..rows)
                .map(|i| {
                    text[i].saturating_add(text[i].saturating_add(1).saturating_mul(replacement[i]))
                })
                .collect()
        }
    })
}

/// `value` as an array of `rows` rows (a scalar repeated).
fn rows_of(value: &ColumnarValue, rows: usize) -> DFResult<ArrayRef> {
    match value {
        ColumnarValue::Array(array) => Ok(Arc::clone(array)),
        ColumnarValue::Scalar(scalar) => scalar.to_array_of_size(rows),
    }
}

/// Each row's byte length (text, binary) or element count (lists); zero
/// for nulls and for other types.
fn lengths(value: &ColumnarValue, rows: usize) -> DFResult<Vec<u64>> {
    let array = rows_of(value, rows)?;
    let measurable = matches!(
        array.data_type(),
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    );
    if !measurable {
        return Ok(vec![0; rows]);
    }
    let lengths = arrow::compute::kernels::length::length(&array)?;
    integers(&ColumnarValue::Array(lengths), rows)
}

/// Each row's value as a non-negative integer (nulls and negatives: 0).
fn integers(value: &ColumnarValue, rows: usize) -> DFResult<Vec<u64>> {
    Ok(int64_rows(&rows_of(value, rows)?, rows)?
        .into_iter()
        .map(|v| u64::try_from(v).unwrap_or(0))
        .collect())
}

/// Each of `rows` rows of `array`, cast to a 64-bit integer (nulls and
/// missing rows: 0).
fn int64_rows(array: &ArrayRef, rows: usize) -> DFResult<Vec<i128>> {
    let ints = arrow::compute::cast(array, &DataType::Int64)?;
    let Some(ints) = ints.as_any().downcast_ref::<Int64Array>() else {
        return Ok(vec![0; rows]);
    };
    Ok((0..rows)
        .map(|i| {
            if i < ints.len() && !ints.is_null(i) {
                i128::from(ints.value(i))
            } else {
                0
            }
        })
        .collect())
}

/// Each row's size in bytes as an element of a list: text by length,
/// anything else by its share of the array's memory (at least 8 bytes).
fn element_sizes(value: &ColumnarValue, rows: usize) -> DFResult<Vec<u64>> {
    if let ColumnarValue::Scalar(scalar) = value {
        let size = scalar_size(scalar);
        return Ok(vec![size; rows]);
    }
    let array = rows_of(value, rows)?;
    if matches!(
        array.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return Ok(lengths(value, rows)?
            .into_iter()
            .map(|l| l.max(8))
            .collect());
    }
    let share = (array.get_array_memory_size() / array.len().max(1)) as u64;
    Ok(vec![share.max(8); rows])
}

fn scalar_size(scalar: &ScalarValue) -> u64 {
    (scalar.size() as u64).max(8)
}

/// `range`/`generate_series`: elements between start and stop, eight bytes each.
fn series_sizes(args: &[ColumnarValue], rows: usize) -> DFResult<Vec<u64>> {
    let Some(first) = args.first() else {
        return Ok(vec![0; rows]);
    };
    let temporal = matches!(
        first.data_type(),
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
    );
    if temporal {
        return temporal_series(args, rows);
    }
    let signed = |v: &ColumnarValue| int64_rows(&rows_of(v, rows)?, rows);
    let (start, stop, step) = match args.len() {
        1 => (vec![0; rows], signed(&args[0])?, vec![1; rows]),
        2 => (signed(&args[0])?, signed(&args[1])?, vec![1; rows]),
        _ => (signed(&args[0])?, signed(&args[1])?, signed(&args[2])?),
    };
    Ok((0..rows)
        .map(|i| {
            let steps = (stop[i] - start[i]).unsigned_abs() / step[i].unsigned_abs().max(1);
            u64::try_from(steps.saturating_add(1).saturating_mul(8)).unwrap_or(u64::MAX)
        })
        .collect())
}

/// Date and timestamp series: the span in nanoseconds over the step's.
fn temporal_series(args: &[ColumnarValue], rows: usize) -> DFResult<Vec<u64>> {
    let (Some(start), Some(stop), Some(step)) = (args.first(), args.get(1), args.get(2)) else {
        return Ok(vec![0; rows]);
    };
    let nanos = |v: &ColumnarValue| -> DFResult<Vec<i128>> {
        let as_ts = arrow::compute::cast(
            &rows_of(v, rows)?,
            &DataType::Timestamp(TimeUnit::Nanosecond, None),
        )?;
        int64_rows(&as_ts, rows)
    };
    let (start, stop) = (nanos(start)?, nanos(stop)?);
    let step = rows_of(step, rows)?;
    let steps: Vec<i128> = (0..rows)
        .map(|i| match ScalarValue::try_from_array(&step, i) {
            Ok(ScalarValue::IntervalMonthDayNano(Some(v))) => {
                i128::from(v.months) * 30 * 86_400_000_000_000
                    + i128::from(v.days) * 86_400_000_000_000
                    + i128::from(v.nanoseconds)
            }
            Ok(ScalarValue::IntervalDayTime(Some(v))) => {
                i128::from(v.days) * 86_400_000_000_000 + i128::from(v.milliseconds) * 1_000_000
            }
            Ok(ScalarValue::IntervalYearMonth(Some(months))) => {
                i128::from(months) * 30 * 86_400_000_000_000
            }
            _ => 1,
        })
        .collect();
    Ok((0..rows)
        .map(|i| {
            let count = (stop[i] - start[i]).unsigned_abs() / steps[i].unsigned_abs().max(1);
            u64::try_from(count.saturating_add(1).saturating_mul(8)).unwrap_or(u64::MAX)
        })
        .collect())
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn schema_name(&self, args: &[Expr]) -> DFResult<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DFResult<DataType> {
        self.inner.inner().return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DFResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    #[allow(deprecated, reason = "delegated as DataFusion's own wrappers do")]
    fn is_nullable(&self, args: &[Expr], schema: &dyn datafusion::common::ExprSchema) -> bool {
        self.inner.inner().is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let reservation = self.check(&args)?;
        let result = self.inner.invoke_with_args(args);
        drop(reservation);
        result
    }

    fn with_updated_config(
        &self,
        _config: &datafusion::common::config::ConfigOptions,
    ) -> Option<ScalarUDF> {
        // The original's updated copy would replace this guard.
        None
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DFResult<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn evaluate_bounds(
        &self,
        input: &[&datafusion::logical_expr::interval_arithmetic::Interval],
    ) -> DFResult<datafusion::logical_expr::interval_arithmetic::Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &datafusion::logical_expr::interval_arithmetic::Interval,
        inputs: &[&datafusion::logical_expr::interval_arithmetic::Interval],
    ) -> DFResult<Option<Vec<datafusion::logical_expr::interval_arithmetic::Interval>>> {
        self.inner.propagate_constraints(interval, inputs)
    }

    fn output_ordering(
        &self,
        inputs: &[datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> DFResult<datafusion::logical_expr::sort_properties::SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(
        &self,
        inputs: &[datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> DFResult<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DFResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    fn scalar(v: ScalarValue) -> ColumnarValue {
        ColumnarValue::Scalar(v)
    }

    #[test]
    fn estimates_follow_the_arguments() {
        let repeat = estimate(
            Growth::Repeat,
            &[
                scalar(ScalarValue::Utf8(Some("ab".into()))),
                scalar(ScalarValue::Int64(Some(1_000_000_000))),
            ],
            1,
        )
        .unwrap();
        assert_eq!(repeat, vec![2_000_000_000]);
        let series = estimate(
            Growth::Series,
            &[
                scalar(ScalarValue::Int64(Some(1))),
                scalar(ScalarValue::Int64(Some(100_000_000))),
            ],
            1,
        )
        .unwrap();
        assert_eq!(series, vec![800_000_000]);
        let column = ColumnarValue::Array(Arc::new(arrow::array::StringArray::from(vec![
            Some("abc"),
            None,
        ])));
        let replaced = estimate(
            Growth::Replace,
            &[
                column,
                scalar(ScalarValue::Utf8(Some("b".into()))),
                scalar(ScalarValue::Utf8(Some("xyz".into()))),
            ],
            2,
        )
        .unwrap();
        assert_eq!(replaced, vec![3 + 3 * 3, 0]);
        assert_eq!(human(64 * 1024 * 1024), "64.0 MiB");
    }
}
