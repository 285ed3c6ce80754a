//! Finding things in the configuration text, so that every error can name a
//! line: the extent of one `[[source]]` table, the 1-based line of a byte
//! offset, and the line where a key is assigned.

use std::ops::Range;

/// TOML spans an `[[source]]` entry by its header only; its body runs until the
/// next header that is not one of its own sub-tables (`[source.tables.x]`).
pub(super) fn source_body(text: &str, header: Range<usize>) -> Range<usize> {
    let mut offset = header.end;
    for line in text
        .get(header.end..)
        .unwrap_or_default()
        .split_inclusive('\n')
    {
        let trimmed = line.trim_start();
        let own = trimmed.starts_with("[source.") || trimmed.starts_with("[[source.");
        if trimmed.starts_with('[') && !own && offset > header.end {
            break;
        }
        offset += line.len();
    }
    header.start..offset
}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Finds the line where `key` is assigned inside a source's span, so errors from a
/// connector's typed config still point at the right line.
pub(super) fn find_key(text: &str, span: &Range<usize>, key: &str) -> Option<usize> {
    if key.is_empty() || span.end > text.len() || span.is_empty() {
        return None;
    }
    let body = text.get(span.clone())?;
    let mut offset = span.start;
    for line in body.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let candidate = trimmed
            .strip_prefix(key)
            .or_else(|| trimmed.strip_prefix(&format!("\"{key}\"")));
        if let Some(after) = candidate {
            let after = after.trim_start();
            if after.starts_with('=') || after.starts_with('.') {
                return Some(offset);
            }
        }
        // A nested table header such as `[source.tables.x]` also counts.
        if trimmed.starts_with('[') && trimmed.contains(&format!(".{key}")) {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}
