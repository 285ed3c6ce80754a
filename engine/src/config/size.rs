//! Sizes in the configuration, written as `"512MiB"`, `"8GiB"`, `"2GB"` or
//! a bare number of bytes; [`deserialize_size`] is the serde adapter.

use serde::{Deserialize, Deserializer};

/// Parses a size: a number with an optional unit, `B`, `KB`/`MB`/`GB`/`TB`
/// (powers of 1000) or `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024), in any case.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((t, ""), |i| (&t[..i], t[i..].trim()));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (try \"512MiB\" or \"8GiB\")"))?;
    let factor: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{text}' (use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)"
            ));
        }
    };
    let bytes = value * factor;
    if !(1.0..=1e18).contains(&bytes) {
        return Err(format!("'{text}' is not a usable size"));
    }
    Ok(bytes as u64)
}

/// Serde adapter for optional sizes given as strings (`"8GiB"`) or bytes.
///
/// # Errors
/// A serde error if the value is neither.
pub fn deserialize_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Bytes(0)) => Err(serde::de::Error::custom("a size of 0 bytes is not usable")),
        Some(Raw::Bytes(b)) => Ok(Some(b)),
        Some(Raw::Text(t)) => parse_size(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Serde adapter for a size that must be given when the key is present.
///
/// # Errors
/// A serde error if the value is not a usable size.
pub fn deserialize_required_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    deserialize_size(d)?.ok_or_else(|| serde::de::Error::custom("give a size such as \"64MiB\""))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn sizes_parse_in_both_kinds_of_unit() {
        assert_eq!(parse_size("8GiB").unwrap(), 8 * 1024 * 1024 * 1024);
        assert_eq!(parse_size("512 MiB").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_size("2gb").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "GiB", "8 GB of RAM", "-1GiB", "0", "1e30"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
