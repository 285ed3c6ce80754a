//! SQL-friendly table names from whatever a source calls things (file names,
//! operation ids, URL paths), so every connector names tables the same way.

/// Lower case, each run of non-alphanumerics as one `_`, no leading or trailing
/// `_`, and a `t` in front of a name that would start with a digit (or be empty).
pub fn sql_name(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches('_');
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        format!("t{out}")
    } else {
        out.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::sql_name;

    #[test]
    fn names() {
        assert_eq!(sql_name("Stop-Search"), "stop_search");
        assert_eq!(sql_name("2026_reads"), "t2026_reads");
        assert_eq!(sql_name("__a--b__"), "a_b");
        assert_eq!(sql_name(""), "t");
    }
}
