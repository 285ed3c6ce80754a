//! Signed reports: `--sign KEY` signs a report's JSON with an Ed25519 key
//! (`ed25519-dalek`), and [`verify`] checks the signature, and that the
//! interface document still has the hash the report was made for, so a
//! register can tell when a supplier's interface changed after
//! certification.
//!
//! What is signed is the report's JSON without its `signature`, exactly as
//! Bluelamp writes it; a report with any field changed, added or removed no
//! longer verifies.

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::report::{Report, sha256_hex};

/// A report's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Always `ed25519`.
    pub algorithm: String,
    /// The signer's public key, hex.
    pub public_key: String,
    /// The signature, hex.
    pub value: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str, what: &str) -> Result<[u8; N], String> {
    let text = text.trim();
    if text.len() != N * 2 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{what} is not {N} bytes of hex"));
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16)
            .map_err(|_| format!("{what} is not hex"))?;
    }
    Ok(out)
}

/// A new key: the secret (hex, to keep in a file only its owner reads) and
/// the public key (hex, to give to registers).
///
/// # Errors
/// The operating system has no randomness to give.
pub fn keygen() -> Result<(String, String), String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
    let key = SigningKey::from_bytes(&secret);
    Ok((hex(&secret), hex(key.verifying_key().as_bytes())))
}

/// Reads a secret key file written by [`keygen`] (64 hex characters).
///
/// # Errors
/// A file that cannot be read or does not hold a key; the message names it.
pub fn load_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the key {}: {e}", path.display()))?;
    let secret = unhex::<32>(&text, &format!("the key {}", path.display()))?;
    Ok(SigningKey::from_bytes(&secret))
}

/// The bytes a signature covers: the report's JSON without its signature.
fn message(report: &Report) -> Result<Vec<u8>, String> {
    let mut unsigned = report.clone();
    unsigned.signature = None;
    serde_json::to_vec(&unsigned).map_err(|e| format!("cannot encode the report: {e}"))
}

/// Signs `report` with `key`.
///
/// # Errors
/// The report cannot be encoded (never in practice).
pub fn sign(report: &mut Report, key: &SigningKey) -> Result<(), String> {
    let signature = key.sign(&message(report)?);
    report.signature = Some(Signature {
        algorithm: "ed25519".into(),
        public_key: hex(key.verifying_key().as_bytes()),
        value: hex(&signature.to_bytes()),
    });
    Ok(())
}

/// What a verified report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signer's public key, hex.
    pub public_key: String,
    /// The tier the report records.
    pub tier_reached: Option<u8>,
    /// Whether the given document still has the report's hash (`None` when
    /// no document was given).
    pub document_matches: Option<bool>,
    /// Whether the signer was checked against a given key; without one,
    /// anyone could have re-signed an edited report with a key of their own.
    pub signer_checked: bool,
}

/// Checks a report's signature; with `document`, that the document still
/// has the hash the report was made for; with `public_key`, that this key
/// signed it.
///
/// # Errors
/// A sentence saying what does not hold: not a report, unsigned, signed by
/// another key, altered, or about another version of the document.
pub fn verify(
    report_json: &str,
    document: Option<&[u8]>,
    public_key: Option<&str>,
) -> Result<Verified, String> {
    let report: Report = serde_json::from_str(report_json)
        .map_err(|e| format!("not a Bluelamp certification report: {e}"))?;
    let Some(signature) = &report.signature else {
        return Err("the report is not signed".into());
    };
    if signature.algorithm != "ed25519" {
        return Err(format!(
            "unknown signature algorithm '{}'",
            signature.algorithm
        ));
    }
    if let Some(expected) = public_key
        && !expected.trim().eq_ignore_ascii_case(&signature.public_key)
    {
        return Err(format!(
            "the report is signed by key {}, not by {}",
            signature.public_key,
            expected.trim()
        ));
    }
    let key = VerifyingKey::from_bytes(&unhex::<32>(&signature.public_key, "the public key")?)
        .map_err(|e| format!("the public key is not an Ed25519 key: {e}"))?;
    let value =
        ed25519_dalek::Signature::from_bytes(&unhex::<64>(&signature.value, "the signature")?);
    key.verify_strict(&message(&report)?, &value).map_err(|_| {
        "the signature does not match: the report was altered after it was signed".to_string()
    })?;
    // The document may be the subject or any file the report rests on
    // (an interworking report's workflow or interface documents).
    let document_matches = document.map(|bytes| {
        let hash = sha256_hex(bytes);
        std::iter::once(&report.subject)
            .chain(&report.documents)
            .any(|d| d.sha256 == hash)
    });
    if document_matches == Some(false) {
        let certified: Vec<String> = std::iter::once(&report.subject)
            .chain(&report.documents)
            .map(|d| format!("{} ({})", d.sha256, d.location))
            .collect();
        return Err(format!(
            "the document has changed since it was certified: its SHA-256 is {}, the report's {}",
            sha256_hex(document.unwrap_or_default()),
            certified.join(", ")
        ));
    }
    Ok(Verified {
        public_key: signature.public_key.clone(),
        tier_reached: report.tier_reached,
        document_matches,
        signer_checked: public_key.is_some(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::report::{Criterion, Outcome, Subject};

    fn report(document: &[u8]) -> Report {
        Report {
            check: "published".into(),
            bluelamp_version: "0.1.0".into(),
            date: "2026-12-03T10:00:00Z".into(),
            subject: Subject {
                location: "rms.yaml".into(),
                sha256: sha256_hex(document),
                title: Some("RMS".into()),
                version: Some("5.1.0".into()),
            },
            documents: Vec::new(),
            criteria: vec![Criterion::new(
                "document.valid",
                "valid",
                Outcome::Pass,
                vec![],
            )],
            tier_reached: None,
            summary: "ok".into(),
            signature: None,
        }
    }

    #[test]
    fn signed_reports_verify_and_any_change_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = keygen().unwrap();
        std::fs::write(dir.path().join("key"), &secret).unwrap();
        let key = load_key(&dir.path().join("key")).unwrap();
        let document = b"openapi: 3.0.3";
        let mut r = report(document);
        sign(&mut r, &key).unwrap();
        let json = r.to_json().unwrap();
        let ok = verify(&json, Some(document), Some(&public)).unwrap();
        assert_eq!(ok.public_key, public);
        assert_eq!(ok.document_matches, Some(true));
        // An edited outcome, an added field, another document, another key.
        let edited = json.replacen("\"pass\"", "\"fail\"", 1);
        assert!(verify(&edited, None, None).unwrap_err().contains("altered"));
        let added = json.replacen("{", "{\"extra\": 1,", 1);
        assert!(
            verify(&added, None, None)
                .unwrap_err()
                .starts_with("not a Bluelamp certification report")
        );
        let changed = verify(&json, Some(b"openapi: 3.1.0"), None).unwrap_err();
        assert!(
            changed.starts_with("the document has changed since it was certified"),
            "{changed}"
        );
        let (_, other) = keygen().unwrap();
        assert!(
            verify(&json, None, Some(&other))
                .unwrap_err()
                .contains("not by")
        );
        let unsigned = report(document).to_json().unwrap();
        assert_eq!(
            verify(&unsigned, None, None).unwrap_err(),
            "the report is not signed"
        );
        std::fs::write(dir.path().join("bad"), "xyz").unwrap();
        assert!(
            load_key(&dir.path().join("bad"))
                .unwrap_err()
                .contains("is not 32 bytes of hex")
        );
    }
}
