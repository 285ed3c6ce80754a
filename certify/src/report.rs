//! A certification report: one line per criterion (pass, fail or not
//! applicable) with its evidence, as Markdown for people and JSON for
//! registers.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How one criterion came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Met, with the evidence that shows it.
    Pass,
    /// Not met; the evidence names what failed.
    Fail,
    /// Not checked in this run, and why (say, no live system was given).
    NotApplicable,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::NotApplicable => "n/a",
        }
    }
}

/// One criterion and what showed whether it was met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    /// A stable identifier, e.g. `document.valid`.
    pub id: String,
    /// What is checked, in a sentence.
    pub title: String,
    /// How it came out.
    pub outcome: Outcome,
    /// What was looked at and found: operations, requests, records.
    pub evidence: Vec<String>,
}

impl Criterion {
    /// A criterion with its outcome and evidence.
    pub fn new(id: &str, title: &str, outcome: Outcome, evidence: Vec<String>) -> Self {
        Self {
            id: id.to_string(),
            title: title.to_string(),
            outcome,
            evidence,
        }
    }
}

/// The interface document a report is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// Where it was read from (a file path or URL), as given.
    pub location: String,
    /// SHA-256 of its bytes, in hex, so a register can tell when it changes.
    pub sha256: String,
    /// Its `info.title` and `info.version`, where it gives them.
    pub title: Option<String>,
    /// The interface's own version (`info.version`).
    pub version: Option<String>,
}

impl Subject {
    /// The document read from `location`, before its title is known.
    pub fn of(location: &str, bytes: &[u8]) -> Self {
        Self {
            location: location.to_string(),
            sha256: sha256_hex(bytes),
            title: None,
            version: None,
        }
    }

    /// Takes the title and version from the document's `info`.
    pub fn describe(&mut self, document: &serde_json::Value) {
        let text = |pointer: &str| {
            document
                .pointer(pointer)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        self.title = text("/info/title");
        self.version = text("/info/version");
    }
}

/// A certification report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// `published` (tier 2), ...
    pub check: String,
    /// The Bluelamp version that made it.
    pub bluelamp_version: String,
    /// When it was made (RFC 3339, UTC).
    pub date: String,
    /// What was checked: the interface document (published), or the
    /// scenario (interworking).
    pub subject: Subject,
    /// The other files the result rests on, each with its hash: for an
    /// interworking report, the workflow's SQL and every source's interface
    /// document.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<Subject>,
    /// Every criterion, in order.
    pub criteria: Vec<Criterion>,
    /// The tier the subject reached in this run (`2` for published), if any.
    pub tier_reached: Option<u8>,
    /// One sentence on what the run shows.
    pub summary: String,
    /// The signature, for a report made with `--sign`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signing::Signature>,
}

impl Report {
    /// Whether no criterion failed.
    pub fn passed(&self) -> bool {
        self.criteria.iter().all(|c| c.outcome != Outcome::Fail)
    }

    /// The report as JSON, for registers.
    ///
    /// # Errors
    /// Never in practice (every field serialises); the error is serde's.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// The report as Markdown, for people.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("# Bluelamp certification: {}\n\n", self.check));
        let title = match (&self.subject.title, &self.subject.version) {
            (Some(t), Some(v)) => format!("{t} {v}"),
            (Some(t), None) => t.clone(),
            _ => self.subject.location.clone(),
        };
        let (what, file) = if self.check == "interworking" {
            ("Scenario", "Scenario file")
        } else {
            ("Interface", "Document")
        };
        out.push_str(&format!("- {what}: {title}\n"));
        out.push_str(&format!("- {file}: `{}`\n", self.subject.location));
        out.push_str(&format!("- {file} SHA-256: `{}`\n", self.subject.sha256));
        for d in &self.documents {
            let title = d
                .title
                .as_ref()
                .map(|t| {
                    format!(
                        "{t}{} ",
                        d.version
                            .as_ref()
                            .map(|v| format!(" {v}"))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "- Also {title}`{}`, SHA-256 `{}`\n",
                d.location, d.sha256
            ));
        }
        out.push_str(&format!(
            "- Checked by Bluelamp {} on {}\n",
            self.bluelamp_version, self.date
        ));
        let tier = match self.tier_reached {
            Some(t) => format!("tier {t}"),
            None => "none in this run".to_string(),
        };
        if let Some(signature) = &self.signature {
            out.push_str(&format!(
                "- Signed ({}) by key `{}`\n",
                signature.algorithm, signature.public_key
            ));
        }
        out.push_str(&format!("- Tier reached: {tier}\n\n{}\n\n", self.summary));
        out.push_str("| criterion | outcome |\n|---|---|\n");
        for c in &self.criteria {
            out.push_str(&format!(
                "| {} ({}) | {} |\n",
                c.title,
                c.id,
                c.outcome.word()
            ));
        }
        for c in &self.criteria {
            out.push_str(&format!(
                "\n## {} {}: {}\n\n",
                c.outcome.word(),
                c.id,
                c.title
            ));
            for e in &c.evidence {
                out.push_str(&format!("- {e}\n"));
            }
        }
        out
    }
}

/// The report over `criteria` for a `check` of `tier`: the tier is reached
/// only when every criterion is met, none failing and none left unchecked.
pub fn finish(check: &str, tier: u8, subject: Subject, criteria: Vec<Criterion>) -> Report {
    let failed: Vec<&str> = criteria
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .map(|c| c.id.as_str())
        .collect();
    let unchecked = criteria
        .iter()
        .filter(|c| c.outcome == Outcome::NotApplicable)
        .count();
    let (tier_reached, summary) = match (failed.is_empty(), unchecked) {
        (true, 0) => (
            Some(tier),
            format!("Every criterion of tier {tier} ({check}) is met."),
        ),
        (true, n) => (
            None,
            format!(
                "No criterion fails, but {n} could not be checked in this run, so tier {tier} is not reached."
            ),
        ),
        (false, _) => (
            None,
            format!(
                "{} criteri{} not met: {}.",
                failed.len(),
                if failed.len() == 1 { "on is" } else { "a are" },
                failed.join(", ")
            ),
        ),
    };
    Report {
        check: check.into(),
        bluelamp_version: env!("CARGO_PKG_VERSION").to_string(),
        date: now(),
        subject,
        documents: Vec::new(),
        criteria,
        tier_reached,
        summary,
        signature: None,
    }
}

/// SHA-256 of bytes, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Now, as the reports write it.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
