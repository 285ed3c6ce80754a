//! Mistakes in the files a certifier writes (declarations of intent,
//! interworking scenarios), each located by file, line and field, so the
//! message says exactly where to look.

/// A mistake in a file, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct FileError {
    /// The file, as given.
    pub file: String,
    /// Its line, from 1.
    pub line: usize,
    /// The field (`target_date`, `entity[2].name`, `assert[1].sql`, ...).
    pub field: String,
    /// What is wrong and how to put it right.
    pub message: String,
}

/// The line (from 1) of a byte offset in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// Reads TOML `text` from `file` into `T`; a mistake is located, the field
/// named where TOML's message names one (`what` otherwise).
///
/// # Errors
/// The one mistake TOML reports.
pub(crate) fn from_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
    what: &str,
) -> Result<T, FileError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        let message = e.message().trim().to_string();
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .unwrap_or(what)
            .to_string();
        FileError {
            file: file.to_string(),
            line,
            field,
            message,
        }
    })
}
