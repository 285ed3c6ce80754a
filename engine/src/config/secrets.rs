//! Secrets in the configuration. Any string value may be `${ENV_VAR}`, embed
//! one (`postgres://u:${PGPASS}@h/db`), or be `${file:/run/secrets/x}` to read
//! a file; `$${` writes a literal `${`. Every substituted value is recorded so
//! that `redact` can strip it from error messages, and [`Secret`] wraps a
//! value so that `Debug` and `Display` never show it.

use std::fmt;

use serde::Deserialize;

/// A secret string from the config (password, token). Its `Debug` and `Display`
/// never show the value; call [`Secret::expose`] at the one place it is sent.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces `${VAR}` and `${file:PATH}` in every string of the table, recording the
/// substituted values so they can be redacted later. Returns the key path on error.
pub(super) fn interpolate_table(
    table: &mut toml::Table,
    secrets: &mut Vec<String>,
) -> Result<(), (String, String)> {
    for (key, value) in table.iter_mut() {
        interpolate_value(value, secrets).map_err(|(sub, m)| {
            let path = if sub.is_empty() {
                key.clone()
            } else if sub.starts_with('[') {
                format!("{key}{sub}")
            } else {
                format!("{key}.{sub}")
            };
            (path, m)
        })?;
    }
    Ok(())
}

fn interpolate_value(
    value: &mut toml::Value,
    secrets: &mut Vec<String>,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) => {
            *s = interpolate(s, secrets).map_err(|m| (String::new(), m))?;
            Ok(())
        }
        toml::Value::Table(t) => interpolate_table(t, secrets),
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, secrets).map_err(|(sub, m)| {
                    let sub = if sub.is_empty() || sub.starts_with('[') {
                        sub
                    } else {
                        format!(".{sub}")
                    };
                    (format!("[{i}]{sub}"), m)
                })?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Expands `${NAME}`, `${file:PATH}` and the escape `$${` in one string.
pub fn interpolate(input: &str, secrets: &mut Vec<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
            continue;
        }
        let Some(body) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err("unterminated `${` (write `$${` for a literal `${`)".into());
        };
        let reference = &body[..end];
        let value = if let Some(path) = reference.strip_prefix("file:") {
            std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read secret file {path}: {e}"))?
        } else {
            let valid = !reference.is_empty()
                && reference
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{{reference}}}` is not a valid reference: use ${{ENV_VAR}} or ${{file:PATH}}"
                ));
            }
            std::env::var(reference).map_err(|_| {
                format!("environment variable {reference} is not set (it is referenced as ${{{reference}}})")
            })?
        };
        if !value.is_empty() {
            secrets.push(value.clone());
        }
        out.push_str(&value);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `message` with every non-empty secret in `secrets` replaced by `***`:
/// the one redaction every connector and front end uses.
pub fn redact(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_string();
    for secret in secrets {
        if !secret.is_empty() {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use std::path::PathBuf;

    use super::{Secret, interpolate};
    use crate::config::{Config, ConfigError};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "bluelamp.toml", PathBuf::from("/etc/bluelamp"))
    }

    #[test]
    fn missing_env_var_is_an_error() {
        let err = parse(
            "[[source]]\nname = \"rms\"\nkind = \"postgres\"\npassword = \"${BLUELAMP_TEST_NOT_SET_ANYWHERE}\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("BLUELAMP_TEST_NOT_SET_ANYWHERE is not set"),
            "{err}"
        );
        assert!(err.contains("source[rms].password"), "{err}");
        assert!(err.starts_with("bluelamp.toml:4:"), "{err}");
    }

    #[test]
    fn literal_dollar_brace_escape() {
        let mut secrets = Vec::new();
        assert_eq!(interpolate("a$${b}c$d", &mut secrets).unwrap(), "a${b}c$d");
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }
}
