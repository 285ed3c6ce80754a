//! How things are named: a table, from its operation id or its path; the
//! column that carries a path parameter; and the parameters a path template
//! names.

use arrow::datatypes::Field;

use crate::openapi::schema::Shape;

/// The names in a path template, in order: `/a/{x}/b/{y}` → `x`, `y`.
pub(super) fn path_template_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// The column for path parameter `name`: its own name unless the records have
/// a field of that name; then the static segment before it, in the singular,
/// joined to it (`/artists/{id}/top-tracks` → `artist_id`).
pub(super) fn path_column(path: &str, name: &str, columns: &[(Field, Shape)]) -> String {
    let taken = |c: &str| columns.iter().any(|(f, _)| f.name() == c);
    let plain = crate::names::sql_name(name);
    let plain = if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        name.to_string()
    } else {
        plain
    };
    if !taken(&plain) {
        return plain;
    }
    let before = path
        .split('/')
        .take_while(|segment| *segment != format!("{{{name}}}"))
        .filter(|segment| !segment.is_empty() && !segment.starts_with('{'))
        .last()
        .map(|segment| singular(&crate::names::sql_name(segment)));
    // `/merchants/{merchantId}/stores` with records holding `merchantId`:
    // `merchant_merchantId` would read badly.
    let mut candidate = match before {
        Some(owner) if !plain.to_ascii_lowercase().starts_with(&owner) => {
            format!("{owner}_{plain}")
        }
        _ => format!("path_{plain}"),
    };
    while taken(&candidate) {
        candidate.push('_');
    }
    candidate
}

/// A plural English noun in the singular, for names only (`incidents` →
/// `incident`, `categories` → `category`, `addresses` → `address`).
fn singular(word: &str) -> String {
    if ["us", "ss", "is"].iter().any(|e| word.ends_with(e)) {
        return word.to_string();
    }
    if let Some(stem) = word.strip_suffix("ies") {
        return format!("{stem}y");
    }
    for ending in ["sses", "shes", "ches", "xes", "uses"] {
        if word.ends_with(ending) {
            return word[..word.len() - 2].to_string();
        }
    }
    match word.strip_suffix('s') {
        Some(stem) if !stem.ends_with('s') && !stem.is_empty() => stem.to_string(),
        _ => word.to_string(),
    }
}

/// `listIncidentLog` → `incident_log`: snake case, without a leading verb.
pub fn table_name_from_operation(operation_id: &str) -> String {
    let mut snake = String::new();
    for (i, c) in operation_id.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        });
    }
    let trimmed = [
        "list_", "get_", "search_", "find_", "fetch_", "query_", "read_",
    ]
    .iter()
    .find_map(|verb| snake.strip_prefix(verb))
    .filter(|rest| !rest.is_empty())
    .unwrap_or(&snake);
    // `getAnArtist` names an artist, not "an artist".
    let trimmed = ["a_", "an_", "the_"]
        .iter()
        .find_map(|article| trimmed.strip_prefix(article))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(trimmed);
    crate::names::sql_name(trimmed)
}

/// `/playlists/{id}` → `playlist`: a lookup table is named for one thing.
pub fn lookup_name_from_path(path: &str) -> String {
    let mut parts: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty() && !s.starts_with('{'))
        .map(crate::names::sql_name)
        .collect();
    if let Some(last) = parts.last_mut() {
        *last = singular(last);
    }
    crate::names::sql_name(&parts.join("_"))
}

/// `/incidents/{urn}/log` → `incidents_log`.
pub fn table_name_from_path(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && !s.starts_with('{'))
        .collect();
    crate::names::sql_name(&parts.join("_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(table_name_from_operation("listIncidentLog"), "incident_log");
        assert_eq!(table_name_from_operation("listCrimes"), "crimes");
        assert_eq!(table_name_from_operation("stopsStreet"), "stops_street");
        assert_eq!(table_name_from_operation("get"), "get");
        assert_eq!(table_name_from_operation("getAnArtist"), "artist");
        assert_eq!(table_name_from_operation("get-the-weather"), "weather");
        assert_eq!(lookup_name_from_path("/v1/playlists/{id}"), "v1_playlist");
        assert_eq!(singular("categories"), "category");
        assert_eq!(singular("addresses"), "address");
        assert_eq!(singular("status"), "status");
        assert_eq!(
            table_name_from_path("/api/v2/incidents/{urn}/log"),
            "api_v2_incidents_log"
        );
    }
}
