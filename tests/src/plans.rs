//! Reading `EXPLAIN ANALYZE` output: how many rows an operator produced.

/// Rows produced by the first operator in `plan` (the text of an `EXPLAIN
/// ANALYZE`) whose line contains `operator`; `None` when there is no such
/// line or it has no row count. Counts are printed as `812`, `1.00 K` or
/// `6.00 M` (three digits, so large counts are rounded).
pub fn output_rows(plan: &str, operator: &str) -> Option<usize> {
    let line = plan.lines().find(|l| l.contains(operator))?;
    let start = line.find("output_rows=")? + "output_rows=".len();
    let count = line[start..].split([',', ']']).next()?.trim();
    let (number, scale) = match count.split_once(' ') {
        Some((n, "K")) => (n, 1e3),
        Some((n, "M")) => (n, 1e6),
        Some(_) => return None,
        None => (count, 1.0),
    };
    let value: f64 = number.parse().ok()?;
    Some((value * scale).round() as usize)
}

#[cfg(test)]
mod tests {
    use super::output_rows;

    #[test]
    fn reads_plain_and_scaled_counts() {
        let plan = "AggregateExec: mode=Final, metrics=[output_rows=2, elapsed_compute=1ms]\n  \
                    FilterExec: x, metrics=[output_rows=1.45 K, elapsed_compute=1ms]\n    \
                    DataSourceExec: metrics=[output_rows=6.00 M]";
        assert_eq!(output_rows(plan, "AggregateExec"), Some(2));
        assert_eq!(output_rows(plan, "FilterExec"), Some(1450));
        assert_eq!(output_rows(plan, "DataSourceExec"), Some(6_000_000));
        assert_eq!(output_rows(plan, "HashJoinExec"), None);
        assert_eq!(
            output_rows("FilterExec: metrics=[output_rows=3 G]", "FilterExec"),
            None
        );
    }
}
