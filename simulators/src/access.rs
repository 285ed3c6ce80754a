//! The demo force's users and access policy, as `bluelamp.toml` text.
//!
//! | user | how | sees |
//! |---|---|---|
//! | `officer` | the local prompt (`[local] user`) | everything; may deposit, and `COPY ... TO` the export folder |
//! | `analyst` | password `demo` | no `restricted` crimes; people's names and birth years masked; no incident logs or vehicle registrations |
//! | `supervisor` | password `demo` | restricted crimes too (team `major-crime`); people unmasked, with a stated purpose |
//!
//! Markings: every system OFFICIAL-SENSITIVE but stop and search (public,
//! OFFICIAL); people and custody records add the caveat PERSONAL; the
//! incident log is SECRET, beyond the analyst's clearance.
//!
//! `bluelamp demo` and the tests use this one text, so what the README shows
//! is what the tests check.

/// The local principal at the demo's prompt.
pub const LOCAL_USER: &str = "officer";
/// The password of `analyst` and `supervisor`.
pub const PASSWORD: &str = "demo";

/// Users and policies for the demo force. `password_hash` is the Argon2 hash
/// of [`PASSWORD`] and `scram_sha256`, where given, its SCRAM-SHA-256
/// verifier (for the PostgreSQL protocol); `export_folder` is where the
/// officer may `COPY ... TO`.
/// An `[audit]` section must be added (policies require one).
pub fn demo_access(password_hash: &str, scram_sha256: Option<&str>, export_folder: &str) -> String {
    let folder = toml_string(export_folder);
    let scram = scram_sha256
        .map(|v| format!("scram_sha256 = {}\n", toml_string(v)))
        .unwrap_or_default();
    format!(
        r#"
[local]
user = "{LOCAL_USER}"

[[user]]
name = "{LOCAL_USER}"
roles = ["officer", "exporter"]
force = "XY"
clearance = "SECRET"

[[user]]
name = "analyst"
password_hash = "{password_hash}"
{scram}roles = ["analyst"]
force = "XY"
clearance = "OFFICIAL-SENSITIVE"
teams = ["performance"]

[[user]]
name = "supervisor"
password_hash = "{password_hash}"
{scram}roles = ["supervisor"]
force = "XY"
clearance = "SECRET"
teams = ["major-crime"]

[policy]
# Demo only: a real deployment takes this from a secret, e.g. "${{BLUELAMP_MASK_KEY}}".
mask_key = "demo force mask key, not a secret"

[[policy.files]]
roles = ["exporter"]
copy_to = [{folder}]

[[policy.grant]]
name = "officers read and deposit everywhere"
roles = ["officer"]
tables = ["cad.*", "rms.*", "stops.*", "custody.*", "anpr.*"]
write = true

[[policy.grant]]
name = "analysts read the systems but not incident logs or vehicles"
roles = ["analyst"]
tables = ["cad.incidents", "cad.incident_assignments", "rms.crimes", "rms.crime_people", "stops.*", "custody.*", "anpr.*"]
hide = ["cad.incidents.vehicle_registration"]

[[policy.grant]]
name = "supervisors read the systems"
roles = ["supervisor"]
tables = ["cad.*", "rms.crimes", "rms.crime_people", "stops.*", "custody.*", "anpr.*"]

[[policy.grant]]
name = "analysts read people, masked"
roles = ["analyst"]
tables = ["rms.people"]

[[policy.grant]]
name = "supervisors read people for a stated purpose"
roles = ["supervisor"]
tables = ["rms.people"]
require_purpose = true

[[policy.marking]]
tables = ["cad.*", "rms.*", "custody.*", "anpr.*"]
classification = "OFFICIAL-SENSITIVE"

[[policy.marking]]
tables = ["rms.people", "custody.custody_records"]
classification = "OFFICIAL-SENSITIVE"
caveats = ["PERSONAL"]

[[policy.marking]]
tables = ["cad.incident_log"]
classification = "SECRET"

[[policy.row_filter]]
name = "restricted crimes for major-crime only"
roles = ["analyst", "supervisor"]
table = "rms.crimes"
filter = "NOT restricted OR 'major-crime' = ANY(principal_teams())"

[[policy.mask]]
name = "analysts see no names"
roles = ["analyst"]
columns = ["rms.people.forename"]
mask = "redact"

[[policy.mask]]
name = "analysts see surnames as keyed hashes"
roles = ["analyst"]
columns = ["rms.people.surname"]
mask = "hash"

[[policy.mask]]
name = "analysts see birth decades"
roles = ["analyst"]
columns = ["rms.people.birth_year"]
mask = "sql"
expr = "birth_year - birth_year % 10"
"#
    )
}

fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
