//! What an `append` or `window` refresh fetches and how it joins the copy.
//!
//! The copy remembers the newest `key` value it holds (its high water).
//! The next refresh asks the source only for rows at or past it — `key >=
//! high water`, pushed to the source as its own range filter where it takes
//! one — so the newest records are fetched again rather than missed when
//! two share a key value across a refresh. Those re-fetched rows are
//! matched, whole row by whole row, against the copy's rows at the high
//! water and dropped, so none is counted twice. A `window` refresh also
//! asks only for rows within the window and drops copy rows that have
//! fallen out of it.
//!
//! A `full` refresh has no key: it fetches and keeps the whole table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::cmp::{eq, gt_eq};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::min_max::MaxAccumulator;
use datafusion::logical_expr::Accumulator;
use datafusion::prelude::{Expr, ident, lit};

use crate::config::{AccelerateConfig, RefreshMode};

/// How the source's columns differ from those the copy was made with, or
/// `None` if they are the same (names and types, in any order).
pub(super) fn schema_change(copy: &Schema, source: &Schema) -> Option<String> {
    let mut changes = Vec::new();
    for field in source.fields() {
        match copy.field_with_name(field.name()) {
            Err(_) => changes.push(format!(
                "column '{}' ({}) was added",
                field.name(),
                field.data_type()
            )),
            Ok(old) if old.data_type() != field.data_type() => changes.push(format!(
                "column '{}' is now {} (was {})",
                field.name(),
                field.data_type(),
                old.data_type()
            )),
            Ok(_) => {}
        }
    }
    for field in copy.fields() {
        if source.field_with_name(field.name()).is_err() {
            changes.push(format!("column '{}' is gone", field.name()));
        }
    }
    if changes.is_empty() {
        None
    } else {
        Some(format!(
            "the source's columns changed since the copy was made: {}",
            changes.join("; ")
        ))
    }
}

/// One refresh's part of the table.
pub(super) struct Increment {
    /// The key column's name and index (`append` and `window`).
    key: Option<(String, usize)>,
    /// Fetch rows with `key >= from` and add them to the copy; without it,
    /// the fetch replaces the copy.
    from: Option<ScalarValue>,
    /// Fetch and keep only rows with `key >= lower` (`window`).
    lower: Option<ScalarValue>,
}

impl Increment {
    /// The part of the table a refresh starting `now` fetches, for a copy
    /// whose newest key is `high_water` (`None`: no copy to add to).
    ///
    /// # Errors
    /// The key column is missing, or of a type the mode cannot go by.
    pub(super) fn new(
        config: &AccelerateConfig,
        schema: &SchemaRef,
        high_water: Option<ScalarValue>,
        now: SystemTime,
    ) -> Result<Self, String> {
        let (RefreshMode::Append | RefreshMode::Window) = config.mode else {
            return Ok(Self {
                key: None,
                from: None,
                lower: None,
            });
        };
        let index = key_index(config, schema)?;
        let name = schema.field(index).name().clone();
        let data_type = schema.field(index).data_type();
        if data_type.is_nested() || matches!(data_type, DataType::Null) {
            return Err(format!(
                "the key column '{name}' is {data_type}, which has no order to refresh by"
            ));
        }
        let lower = match config.window {
            None => None,
            Some(window) => {
                if !matches!(
                    data_type,
                    DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
                ) {
                    return Err(format!(
                        "mode = \"window\" needs a date or timestamp key, and '{name}' is {data_type}"
                    ));
                }
                let since = now.checked_sub(window).unwrap_or(UNIX_EPOCH);
                let millis = crate::catalog::unix_millis(since);
                let start = ScalarValue::TimestampMillisecond(Some(millis), Some("UTC".into()))
                    .cast_to(data_type)
                    .map_err(|e| format!("the window's start as {data_type}: {e}"))?;
                Some(start)
            }
        };
        Ok(Self {
            key: Some((name, index)),
            from: high_water,
            lower,
        })
    }

    /// The filter the fetch applies (and the source takes, where it can):
    /// `key >=` the later of the copy's high water and the window's start.
    pub(super) fn filter(&self) -> Option<Expr> {
        let (name, _) = self.key.as_ref()?;
        let bound = match (&self.from, &self.lower) {
            // The window's start only where it is surely past the copy's
            // newest: fetching from the high water is never short.
            (Some(from), Some(lower)) => {
                if from.partial_cmp(lower).is_some_and(|o| o.is_lt()) {
                    lower
                } else {
                    from
                }
            }
            (Some(bound), None) | (None, Some(bound)) => bound,
            (None, None) => return None,
        };
        Some(ident(name).gt_eq(lit(bound.clone())))
    }

    /// The new copy: `fetched` added to `kept` (the current copy's rows)
    /// where this refresh adds, less the rows fetched again at the high
    /// water and, for a window, less rows that have left it.
    ///
    /// # Errors
    /// Rows that cannot be compared or filtered (an Arrow error).
    pub(super) fn merge(
        &self,
        schema: &SchemaRef,
        kept: &[RecordBatch],
        fetched: Vec<RecordBatch>,
    ) -> Result<Vec<RecordBatch>, String> {
        let Some((_, index)) = &self.key else {
            return Ok(fetched);
        };
        let mut batches = Vec::with_capacity(kept.len() + fetched.len());
        match &self.from {
            None => batches.extend(fetched),
            Some(from) => {
                let mut again = RefetchedRows::new(schema, kept, *index, from)?;
                batches.extend(kept.iter().cloned());
                for batch in fetched {
                    batches.push(again.drop_from(&batch)?);
                }
            }
        }
        if let Some(lower) = &self.lower {
            let lower = lower.to_scalar().map_err(|e| e.to_string())?;
            batches = batches
                .iter()
                .map(|batch| {
                    let inside = gt_eq(batch.column(*index), &lower).map_err(|e| e.to_string())?;
                    filter_record_batch(batch, &inside).map_err(|e| e.to_string())
                })
                .collect::<Result<_, String>>()?;
        }
        batches.retain(|b| b.num_rows() > 0);
        Ok(batches)
    }
}

fn key_index(config: &AccelerateConfig, schema: &SchemaRef) -> Result<usize, String> {
    let name = config.key.as_deref().unwrap_or_default();
    schema.index_of(name).map_err(|_| {
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        format!(
            "the key column '{name}' is not a column of the table (its columns: {})",
            columns.join(", ")
        )
    })
}

/// The newest `key` value in `batches` (`append` and `window`), or `None`
/// when there is none (no key, no rows, or only nulls).
///
/// # Errors
/// The key column is missing.
pub(super) fn high_water(
    config: &AccelerateConfig,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Option<ScalarValue>, String> {
    if config.mode == RefreshMode::Full {
        return Ok(None);
    }
    let index = key_index(config, schema)?;
    let mut max =
        MaxAccumulator::try_new(schema.field(index).data_type()).map_err(|e| e.to_string())?;
    for batch in batches {
        max.update_batch(&[Arc::clone(batch.column(index))])
            .map_err(|e| e.to_string())?;
    }
    let value = max.evaluate().map_err(|e| e.to_string())?;
    Ok((!value.is_null()).then_some(value))
}

/// The copy's rows whose key is the high water, counted whole row by whole
/// row: a fetch that starts at the high water returns them again.
struct RefetchedRows {
    converter: RowConverter,
    index: usize,
    at: arrow::array::Scalar<arrow::array::ArrayRef>,
    counts: HashMap<Vec<u8>, usize>,
}

impl RefetchedRows {
    fn new(
        schema: &SchemaRef,
        kept: &[RecordBatch],
        index: usize,
        from: &ScalarValue,
    ) -> Result<Self, String> {
        let converter = RowConverter::new(
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )
        .map_err(|e| format!("rows of this table cannot be compared: {e}"))?;
        let at = from.to_scalar().map_err(|e| e.to_string())?;
        let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
        for batch in kept {
            let mask = eq(batch.column(index), &at).map_err(|e| e.to_string())?;
            let boundary = filter_record_batch(batch, &mask).map_err(|e| e.to_string())?;
            if boundary.num_rows() == 0 {
                continue;
            }
            let rows = converter
                .convert_columns(boundary.columns())
                .map_err(|e| e.to_string())?;
            for row in rows.iter() {
                *counts.entry(row.as_ref().to_vec()).or_default() += 1;
            }
        }
        Ok(Self {
            converter,
            index,
            at,
            counts,
        })
    }

    /// `batch` less the rows the copy already holds (each copy row matched
    /// once).
    fn drop_from(&mut self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        let counts = &mut self.counts;
        if counts.is_empty() {
            return Ok(batch.clone());
        }
        let at = eq(batch.column(self.index), &self.at).map_err(|e| e.to_string())?;
        let rows = self
            .converter
            .convert_columns(batch.columns())
            .map_err(|e| e.to_string())?;
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|i| {
                let seen = at.is_valid(i)
                    && at.value(i)
                    && match counts.get_mut(rows.row(i).as_ref()) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            true
                        }
                        _ => false,
                    };
                Some(!seen)
            })
            .collect();
        filter_record_batch(batch, &keep).map_err(|e| e.to_string())
    }
}
