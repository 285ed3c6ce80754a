//! The access half of the configuration: `[[user]]` entries with their
//! attributes, `[local]` (who the REPL runs as), `[[policy.*]]` grants and
//! `[audit]`. Each is checked against the others when the file is loaded —
//! a grant to a role nobody has, a local user who does not exist, policies
//! without an audit trail — so a mistake is a `file:line` error at start,
//! never a door left silently open.

use std::fmt;
use std::sync::Arc;

use super::{ConfigError, Origin, find_key, interpolate};
use serde::Deserialize;

/// One `[[user]]`: a person or service account, with the attributes access
/// policy uses. A user without `password_hash` cannot connect over the
/// network; it can still be the local principal (`[local] user`).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The login name.
    pub name: String,
    /// An Argon2 hash in PHC form (`$argon2id$v=19$...`), as `bluelamp
    /// hash-password` prints it. May come from `${ENV}` or `${file:PATH}`.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// A SCRAM-SHA-256 verifier (`SCRAM-SHA-256$4096:...`, PostgreSQL's
    /// format, as `bluelamp hash-password --scram` prints it), for
    /// connecting over the PostgreSQL wire protocol, whose password
    /// exchange cannot use an Argon2 hash. May come from `${ENV}` or
    /// `${file:PATH}`.
    #[serde(default)]
    pub scram_sha256: Option<String>,
    /// Roles that policies grant to.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The user's force code (e.g. `XY`), for `principal('force')` in policies.
    #[serde(default)]
    pub force: Option<String>,
    /// The highest security classification the user may read.
    #[serde(default)]
    pub clearance: Option<crate::principal::Clearance>,
    /// Teams the user belongs to, for `principal_teams()` in policies.
    #[serde(default)]
    pub teams: Vec<String>,
    /// Free-form attributes, for `principal('key')` in policies.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The users this account may act for over Flight SQL, naming one in
    /// the `x-bluelamp-on-behalf-of` header (`*`: any `[[user]]`). For
    /// another force's Bluelamp federating this one: its queries then run
    /// as the user it names, under that user's policies, and the audit
    /// trail records both (`auth = "password via ACCOUNT"`).
    #[serde(default)]
    pub act_for: Vec<String>,
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Who the REPL and scripts run as, from the optional `[local]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSettings {
    /// A `[[user]]` name; `--as` overrides it. Without it, the operating
    /// system's user name, with no roles or attributes.
    pub user: Option<String>,
}

/// The `[policy]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    files: Vec<toml::Spanned<crate::policy::FileGrantConfig>>,
    #[serde(default)]
    grant: Vec<toml::Spanned<crate::policy::rules::GrantConfig>>,
    #[serde(default)]
    row_filter: Vec<toml::Spanned<crate::policy::rules::RowFilterConfig>>,
    #[serde(default)]
    mask: Vec<toml::Spanned<crate::policy::rules::MaskConfig>>,
    #[serde(default)]
    marking: Vec<toml::Spanned<crate::policy::rules::MarkingConfig>>,
    /// The key of `hash` masks; may come from `${ENV}` or `${file:PATH}`.
    #[serde(default)]
    mask_key: Option<String>,
    /// A file holding more `[[policy.*]]` entries (relative to this file).
    #[serde(default)]
    file: Option<String>,
}

/// A policy file named by `[policy] file`: the same `[[policy.*]]` entries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    policy: RawPolicy,
}

/// Resolves `[policy]` and the file it names (`[policy] file`), if any:
/// entries from both apply, each error naming its own file and line.
pub(super) fn resolve_policies(
    origin: &mut Origin,
    mut raw: RawPolicy,
    users: &[UserConfig],
    sources: &[&str],
) -> Result<crate::policy::Policy, ConfigError> {
    let included = raw.file.take();
    let mut policy = resolve_policy(origin, raw, users, sources)?;
    let Some(file) = included else {
        return Ok(policy);
    };
    let at = origin
        .text
        .find("[policy]")
        .map(|t| find_key(&origin.text, &(t..origin.text.len()), "file").unwrap_or(t));
    let path = origin.base_dir.join(&file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigError::invalid(
            origin,
            at,
            "policy.file".into(),
            format!("cannot read the policy file {}: {e}", path.display()),
        )
    })?;
    let mut inner = Origin {
        file: path.display().to_string(),
        text,
        base_dir: path
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| origin.base_dir.clone()),
        secrets: Vec::new(),
    };
    let parsed: PolicyFile = toml::from_str(&inner.text).map_err(|e| {
        ConfigError::invalid(
            &inner,
            e.span().map(|s| s.start),
            String::new(),
            e.message().trim().to_string(),
        )
    })?;
    if parsed.policy.file.is_some() {
        let at = inner.text.find("file");
        return Err(ConfigError::invalid(
            &inner,
            at,
            "policy.file".into(),
            "a policy file cannot name another; list every entry in this one".into(),
        ));
    }
    let more = resolve_policy(&mut inner, parsed.policy, users, sources)?;
    origin.secrets.append(&mut inner.secrets);
    if more.mask_key.is_some() {
        if policy.mask_key.is_some() {
            return Err(ConfigError::invalid(
                origin,
                at,
                "policy.mask_key".into(),
                format!(
                    "the mask key is set both here and in {}; set it in one place",
                    path.display()
                ),
            ));
        }
        policy.mask_key = more.mask_key;
    }
    policy.files.extend(more.files);
    let mut read = policy.read.as_ref().clone();
    read.grants.extend(more.read.grants.iter().cloned());
    read.row_filters
        .extend(more.read.row_filters.iter().cloned());
    read.masks.extend(more.read.masks.iter().cloned());
    read.markings.extend(more.read.markings.iter().cloned());
    policy.read = Arc::new(read);
    Ok(policy)
}

/// Checks the `[[user]]` entries and resolves their `${...}` password hashes.
pub(super) fn parse_users(
    origin: &mut Origin,
    raw: Vec<toml::Spanned<UserConfig>>,
) -> Result<Vec<UserConfig>, ConfigError> {
    let mut users: Vec<UserConfig> = Vec::with_capacity(raw.len());
    let mut starts = Vec::with_capacity(raw.len());
    for spanned in raw {
        let at = Some(spanned.span().start);
        let mut user = spanned.into_inner();
        let key = format!("user[{}]", user.name);
        if user.name.is_empty() || user.name.contains([':', ' ']) {
            return Err(ConfigError::invalid(
                origin,
                at,
                format!("{key}.name"),
                "a user name must be non-empty, without spaces or ':'".into(),
            ));
        }
        if users.iter().any(|u| u.name == user.name) {
            return Err(ConfigError::invalid(
                origin,
                at,
                format!("{key}.name"),
                format!("two users are named '{}'", user.name),
            ));
        }
        if let Some(hash) = &user.password_hash {
            let hash = interpolate(hash, &mut origin.secrets)
                .map_err(|m| ConfigError::invalid(origin, at, format!("{key}.password_hash"), m))?;
            if !hash.starts_with("$argon2") {
                return Err(ConfigError::invalid(
                    origin,
                    at,
                    format!("{key}.password_hash"),
                    "expected an Argon2 hash such as `$argon2id$v=19$...`; make one with `bluelamp hash-password`".into(),
                ));
            }
            user.password_hash = Some(hash);
        }
        if let Some(verifier) = &user.scram_sha256 {
            let verifier = interpolate(verifier, &mut origin.secrets)
                .map_err(|m| ConfigError::invalid(origin, at, format!("{key}.scram_sha256"), m))?;
            if let Err(why) = crate::scram::ScramVerifier::parse(&verifier) {
                return Err(ConfigError::invalid(
                    origin,
                    at,
                    format!("{key}.scram_sha256"),
                    why,
                ));
            }
            user.scram_sha256 = Some(verifier);
        }
        for (field, names) in [("roles", &user.roles), ("teams", &user.teams)] {
            if let Some(bad) = names
                .iter()
                .find(|n| n.trim().is_empty() || n.contains(','))
            {
                return Err(ConfigError::invalid(
                    origin,
                    at,
                    format!("{key}.{field}"),
                    format!("'{bad}' is not a usable name: names are non-empty, without commas"),
                ));
            }
        }
        users.push(user);
        starts.push(at);
    }
    for (user, at) in users.iter().zip(&starts) {
        if let Some(unknown) = user
            .act_for
            .iter()
            .find(|n| n.as_str() != "*" && !users.iter().any(|u| &u.name == *n))
        {
            return Err(ConfigError::invalid(
                origin,
                *at,
                format!("user[{}].act_for", user.name),
                format!(
                    "there is no [[user]] named '{unknown}' to act for (write \"*\" for any user)"
                ),
            ));
        }
    }
    Ok(users)
}

/// `[local] user` must name a `[[user]]`.
pub(super) fn check_local(
    origin: &Origin,
    local: &LocalSettings,
    users: &[UserConfig],
) -> Result<(), ConfigError> {
    if let Some(name) = &local.user
        && !users.iter().any(|u| &u.name == name)
    {
        let at = origin.text.find("[local]");
        return Err(ConfigError::invalid(
            origin,
            at.map(|t| find_key(&origin.text, &(t..origin.text.len()), "user").unwrap_or(t)),
            "local.user".into(),
            format!(
                "there is no [[user]] named '{name}'; add one (a password is not needed for the local user)"
            ),
        ));
    }
    Ok(())
}

/// Resolves `[policy]`, naming the entry and key of the first problem.
pub(super) fn resolve_policy(
    origin: &mut Origin,
    raw: RawPolicy,
    users: &[UserConfig],
    sources: &[&str],
) -> Result<crate::policy::Policy, ConfigError> {
    use crate::policy::rules::{Grant, Located, Mask, RowFilter};
    let mut policy = crate::policy::Policy::default();
    for (index, spanned) in raw.files.into_iter().enumerate() {
        let at = Some(spanned.span().start);
        let grant = spanned.into_inner();
        let key = format!("policy.files[{index}]");
        for role in &grant.roles {
            if !users.iter().any(|u| u.roles.contains(role)) {
                return Err(ConfigError::invalid(
                    origin,
                    at,
                    format!("{key}.roles"),
                    format!("no [[user]] has the role '{role}'; check its spelling"),
                ));
            }
        }
        for user in &grant.users {
            if !users.iter().any(|u| &u.name == user) {
                return Err(ConfigError::invalid(
                    origin,
                    at,
                    format!("{key}.users"),
                    format!("there is no [[user]] named '{user}'"),
                ));
            }
        }
        let grant = crate::policy::FileGrant::resolve(grant, &origin.base_dir)
            .map_err(|(sub, m)| ConfigError::invalid(origin, at, format!("{key}.{sub}"), m))?;
        policy.files.push(grant);
    }
    let located = |origin: &Origin, offset: usize, key: String| Located {
        file: origin.file.clone(),
        line: Some(super::line_of(&origin.text, offset)),
        key,
    };
    let unknown_source = |name: &str| {
        (!sources.contains(&name)).then(|| {
            format!(
                "there is no source named '{name}'; the sources are: {}",
                sources.join(", ")
            )
        })
    };
    let mut read = crate::policy::ReadPolicy::default();
    for (index, spanned) in raw.grant.into_iter().enumerate() {
        let at = located(
            origin,
            spanned.span().start,
            format!("policy.grant[{index}]"),
        );
        let grant = Grant::resolve(spanned.into_inner(), users, at.clone(), index)
            .map_err(|(field, m)| at.error(&field, m))?;
        for (i, table) in grant.tables.iter().enumerate() {
            if let Some(m) = unknown_source(&table.source) {
                return Err(at.error(&format!("tables[{i}]"), m));
            }
        }
        read.grants.push(grant);
    }
    for (index, spanned) in raw.row_filter.into_iter().enumerate() {
        let at = located(
            origin,
            spanned.span().start,
            format!("policy.row_filter[{index}]"),
        );
        let filter = RowFilter::resolve(spanned.into_inner(), users, at.clone(), index)
            .map_err(|(field, m)| at.error(&field, m))?;
        if let Some(m) = unknown_source(&filter.source) {
            return Err(at.error("table", m));
        }
        read.row_filters.push(filter);
    }
    for (index, spanned) in raw.mask.into_iter().enumerate() {
        let at = located(
            origin,
            spanned.span().start,
            format!("policy.mask[{index}]"),
        );
        let mask = Mask::resolve(spanned.into_inner(), users, at.clone(), index)
            .map_err(|(field, m)| at.error(&field, m))?;
        for (i, column) in mask.columns.iter().enumerate() {
            if let Some(m) = unknown_source(&column.source) {
                return Err(at.error(&format!("columns[{i}]"), m));
            }
        }
        read.masks.push(mask);
    }
    for (index, spanned) in raw.marking.into_iter().enumerate() {
        let at = located(
            origin,
            spanned.span().start,
            format!("policy.marking[{index}]"),
        );
        let marking = crate::policy::rules::MarkingRule::resolve(spanned.into_inner(), at.clone())
            .map_err(|(field, m)| at.error(&field, m))?;
        for (i, table) in marking.tables.iter().enumerate() {
            if let Some(m) = unknown_source(&table.source) {
                return Err(at.error(&format!("tables[{i}]"), m));
            }
        }
        for (i, column) in marking.columns.iter().enumerate() {
            if let Some(m) = unknown_source(&column.source) {
                return Err(at.error(&format!("columns[{i}]"), m));
            }
        }
        read.markings.push(marking);
    }
    if let Some(key) = raw.mask_key {
        let at = origin.text.find("mask_key");
        let key = interpolate(&key, &mut origin.secrets)
            .map_err(|m| ConfigError::invalid(origin, at, "policy.mask_key".into(), m))?;
        if key.len() < 16 {
            return Err(ConfigError::invalid(
                origin,
                at,
                "policy.mask_key".into(),
                "a mask key is a secret of at least 16 characters".into(),
            ));
        }
        policy.mask_key = Some(Arc::from(key.into_bytes()));
    }
    policy.read = Arc::new(read);
    Ok(policy)
}

/// Resolves `[audit]`: required once any policy exists, its path taken from
/// the config file's folder, and `require_purpose` naming real sources.
pub(super) fn resolve_audit(
    origin: &Origin,
    mut audit: crate::audit::AuditSettings,
    policy: &crate::policy::Policy,
    sources: &[&str],
) -> Result<crate::audit::AuditSettings, ConfigError> {
    let at = |key: &str| {
        let start = origin.text.find("[audit]");
        start.map(|t| find_key(&origin.text, &(t..origin.text.len()), key).unwrap_or(t))
    };
    if let Some(path) = &mut audit.path
        && path.is_relative()
    {
        *path = origin.base_dir.join(&*path);
    }
    let problem = if audit.path.is_none() && (!policy.files.is_empty() || policy.read.is_active()) {
        Some((
            origin.text.find("[[policy."),
            "path",
            "policies are configured, so an audit trail is required: add `[audit]` with `path = \"...\"`".to_string(),
        ))
    } else if audit.rotate_bytes == 0 {
        Some((
            at("rotate_bytes"),
            "rotate_bytes",
            "a file holds at least one record; use e.g. 67108864".to_string(),
        ))
    } else if !audit.require_purpose.is_empty() && audit.path.is_none() {
        Some((
            at("require_purpose"),
            "require_purpose",
            "a purpose is recorded in the audit trail: set `path` too".to_string(),
        ))
    } else {
        let caveats: Vec<&String> = policy
            .read
            .markings
            .iter()
            .flat_map(|m| m.caveats.iter())
            .collect();
        audit
            .require_purpose
            .iter()
            .find(|name| {
                !sources.contains(&name.as_str())
                    && name.parse::<crate::principal::Clearance>().is_err()
                    && !caveats.iter().any(|c| c.eq_ignore_ascii_case(name))
            })
            .map(|name| {
                (
                    at("require_purpose"),
                    "require_purpose",
                    format!(
                        "'{name}' is not a source, a classification (OFFICIAL, OFFICIAL-SENSITIVE, SECRET) or a caveat a [[policy.marking]] gives"
                    ),
                )
            })
    };
    match problem {
        Some((line, key, message)) => Err(ConfigError::invalid(
            origin,
            line,
            format!("audit.{key}"),
            message,
        )),
        None => Ok(audit),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use std::path::PathBuf;

    use crate::config::{Config, ConfigError};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "bluelamp.toml", PathBuf::from("/etc/bluelamp"))
    }

    #[test]
    fn users_carry_attributes_and_the_local_user_must_exist() {
        let config = parse(
            "[local]\nuser = \"ann\"\n\n[[user]]\nname = \"ann\"\nroles = [\"analyst\"]\nforce = \"XY\"\nclearance = \"official-sensitive\"\nteams = [\"cid\"]\n[user.attributes]\nstation = \"north\"\n",
        )
        .unwrap();
        let ann = &config.users[0];
        assert_eq!(ann.password_hash, None);
        assert_eq!(ann.clearance, Some(crate::Clearance::OfficialSensitive));
        assert_eq!(ann.attributes["station"], "north");
        let e = parse("[local]\nuser = \"bob\"\n").unwrap_err().to_string();
        assert!(e.starts_with("bluelamp.toml:2: local.user:"), "{e}");
        let e = parse("[[user]]\nname = \"ann\"\nclearance = \"TOP SECRET\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("OFFICIAL, OFFICIAL-SENSITIVE or SECRET"), "{e}");
    }

    #[test]
    fn bad_file_grants_are_located() {
        let users = "[[user]]\nname = \"ann\"\nroles = [\"analyst\"]\n\n";
        for (grant, key, says) in [
            (
                "roles = [\"analsyt\"]\ncopy_to = [\"x\"]\n",
                "policy.files[0].roles",
                "no [[user]] has the role 'analsyt'",
            ),
            (
                "users = [\"bob\"]\ncopy_to = [\"x\"]\n",
                "policy.files[0].users",
                "no [[user]] named 'bob'",
            ),
            (
                "copy_to = [\"x\"]\n",
                "policy.files[0].roles",
                "a grant for everyone",
            ),
            (
                "roles = [\"analyst\"]\n",
                "policy.files[0].copy_to",
                "allows nothing",
            ),
            (
                "roles = [\"analyst\"]\ncopy_to = [\"s3://\"]\n",
                "policy.files[0].copy_to[0]",
                "names no bucket",
            ),
            (
                "roles = [\"analyst\"]\nwrite = [\"x\"]\n",
                "",
                "unknown field `write`",
            ),
        ] {
            let e = parse(&format!("{users}[[policy.files]]\n{grant}"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("bluelamp.toml:5:")
                    || e.starts_with("bluelamp.toml:6:")
                    || e.starts_with("bluelamp.toml:7:"),
                "{e}"
            );
            assert!(e.contains(key), "{e}");
            assert!(e.contains(says), "{e}");
        }
    }
}
