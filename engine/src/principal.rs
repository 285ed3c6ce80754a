//! Principals: who is asking, with the attributes policy decisions use.
//!
//! An [`Identity`](crate::Identity) says how a caller proved who they are; a
//! [`Principal`] adds what the configuration says about that user (`[[user]]`
//! `roles`, `force`, `clearance`, `teams` and free-form attributes). The engine
//! builds the principal once per session and puts it in DataFusion's
//! `SessionConfig` as an extension, so table providers, optimizer rules and
//! metadata listings can all see who is asking without a parallel channel.
//! Nothing a user can run (`SET`, DDL) changes it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::prelude::SessionConfig;
use serde::Deserialize;

/// Government Security Classifications, lowest first; a principal's
/// clearance is the highest marking they may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Clearance {
    /// OFFICIAL: routine police business.
    Official,
    /// OFFICIAL-SENSITIVE: OFFICIAL with a need-to-know handling caveat.
    OfficialSensitive,
    /// SECRET.
    Secret,
}

impl Clearance {
    /// The marking as written (`OFFICIAL-SENSITIVE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Clearance::Official => "OFFICIAL",
            Clearance::OfficialSensitive => "OFFICIAL-SENSITIVE",
            Clearance::Secret => "SECRET",
        }
    }
}

impl fmt::Display for Clearance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Clearance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .to_ascii_uppercase()
            .replace(['_', ' '], "-")
            .as_str()
        {
            "OFFICIAL" => Ok(Clearance::Official),
            "OFFICIAL-SENSITIVE" => Ok(Clearance::OfficialSensitive),
            "SECRET" => Ok(Clearance::Secret),
            _ => Err(format!(
                "unknown classification '{s}': use OFFICIAL, OFFICIAL-SENSITIVE or SECRET"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Clearance {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Who a session runs as: the authenticated user and what the configuration
/// says about them. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user name.
    pub user: String,
    /// How the user was authenticated (`local`, `password`, `token`, ...).
    pub authenticated_by: String,
    /// Roles from `[[user]] roles`.
    pub roles: Vec<String>,
    /// The force code from `[[user]] force`.
    pub force: Option<String>,
    /// The highest marking the user may read; `None` where none is configured.
    pub clearance: Option<Clearance>,
    /// Teams from `[[user]] teams`.
    pub teams: Vec<String>,
    /// Free-form key/values from `[user.attributes]`.
    pub attributes: BTreeMap<String, String>,
}

impl Principal {
    /// A principal with no attributes.
    pub fn bare(user: impl Into<String>, authenticated_by: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            authenticated_by: authenticated_by.into(),
            roles: Vec::new(),
            force: None,
            clearance: None,
            teams: Vec::new(),
            attributes: BTreeMap::new(),
        }
    }

    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The principal a session's configuration carries.
    ///
    /// Every session the engine makes has one; a configuration built some
    /// other way has none, which callers treat as "no one", never as "anyone".
    pub fn of(config: &SessionConfig) -> Option<Arc<Principal>> {
        config.get_extension::<Principal>()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn clearances_parse_and_order() {
        assert_eq!(
            "official-sensitive".parse::<Clearance>().unwrap(),
            Clearance::OfficialSensitive
        );
        assert!(Clearance::Official < Clearance::OfficialSensitive);
        assert!(Clearance::OfficialSensitive < Clearance::Secret);
        let e = "TOP SECRET".parse::<Clearance>().unwrap_err();
        assert!(e.contains("OFFICIAL, OFFICIAL-SENSITIVE or SECRET"), "{e}");
    }
}
