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

/// An identifier as SQL must spell it: as is when it is lower case and
/// plain, in double quotes otherwise (`caseURN` → `"caseURN"`), so a hint
/// that names a column runs as written.
pub fn quote_ident(name: &str) -> String {
    if bluelamp_engine::config::is_plain_identifier(name) {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::{quote_ident, sql_name};

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("urn"), "urn");
        assert_eq!(quote_ident("caseURN"), "\"caseURN\"");
        assert_eq!(quote_ident("a b"), "\"a b\"");
    }

    #[test]
    fn names() {
        assert_eq!(sql_name("Stop-Search"), "stop_search");
        assert_eq!(sql_name("2026_reads"), "t2026_reads");
        assert_eq!(sql_name("__a--b__"), "a_b");
        assert_eq!(sql_name(""), "t");
    }
}
