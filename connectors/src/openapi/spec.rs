//! Loading an OpenAPI document (3.0 or 3.1, JSON or YAML, from a file or a URL)
//! and following its `$ref`s, into sibling files too.
//!
//! The document is kept as a `serde_json::Value` rather than a typed model:
//! real-world documents are messy (vendor extensions, 3.0/3.1 differences,
//! partial schemas), and discovery must degrade to warnings instead of failing
//! to parse the whole document.
//!
//! A document split over several files (`$ref: ./schemas/person.yaml#/Person`,
//! `get: {$ref: paths/x.yaml}`) is [bundled](bundle) into one: every file it
//! reaches is read once (so references may cycle across files), relative to
//! the file that names it, and kept under [`FILES_KEY`]; references are
//! rewritten to point there, so the rest of the connector sees one document.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde_json::Value;

/// Where the files of a bundled document are kept, by number.
pub const FILES_KEY: &str = "x-bluelamp-files";

/// Most files one document may reach, so a broken one cannot read forever.
const MAX_FILES: usize = 2_000;

/// Where a document, or a file of one, came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Location {
    /// A file on disk.
    File(PathBuf),
    /// An http(s) URL.
    Url(Url),
}

impl Location {
    /// The location `reference` (a relative or absolute file path or URL)
    /// names, seen from this one. A document read from a URL may only refer
    /// to other URLs, never to files on this machine.
    fn join(&self, reference: &str) -> Result<Location, String> {
        match self {
            Location::Url(base) => base
                .join(reference)
                .map_err(|e| format!("bad reference {reference}: {e}"))
                .and_then(|url| match url.scheme() {
                    "http" | "https" => Ok(Location::Url(url)),
                    other => Err(format!(
                        "{reference}: a document read over HTTP cannot refer to a {other}: location"
                    )),
                }),
            Location::File(path) => {
                if reference.starts_with("http://") || reference.starts_with("https://") {
                    return Url::parse(reference)
                        .map(Location::Url)
                        .map_err(|e| format!("bad reference {reference}: {e}"));
                }
                let relative = reference.strip_prefix("file://").unwrap_or(reference);
                let dir = path.parent().unwrap_or(Path::new(""));
                Ok(Location::File(normalise(&dir.join(relative))))
            }
        }
    }

    /// How messages name it: a file relative to the root document's folder,
    /// or the URL.
    fn name(&self, root: &Location) -> String {
        match (self, root) {
            (Location::File(path), Location::File(root)) => {
                let dir = root.parent().unwrap_or(Path::new(""));
                path.strip_prefix(dir).unwrap_or(path).display().to_string()
            }
            (Location::File(path), _) => path.display().to_string(),
            (Location::Url(url), _) => url.to_string(),
        }
    }
}

/// `a/b/../c` → `a/c`, without touching the disk.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// One operation of a document.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Its path template.
    pub path: String,
    /// Its method, lower case.
    pub method: &'static str,
    /// The path item it belongs to (for path-level parameters).
    pub item: Value,
    /// The operation.
    pub operation: Value,
}

impl Operation {
    /// `GET /path`, for messages.
    pub fn name(&self) -> String {
        format!("{} {}", self.method.to_ascii_uppercase(), self.path)
    }
}

/// A parsed OpenAPI document.
#[derive(Debug, Clone)]
pub struct Document {
    /// The whole document.
    pub root: Value,
    /// `3.0` or `3.1` (major.minor).
    pub version: String,
    /// For a bundled document: each file's name, by its number under
    /// [`FILES_KEY`], so messages name the file a reference points into.
    pub files: BTreeMap<String, String>,
}

impl Document {
    /// Parses JSON or YAML text.
    ///
    /// # Errors
    /// Text that is neither, or that is not an OpenAPI 3.x document.
    pub fn parse(text: &str) -> Result<Self, String> {
        let root = parse_value(text)?;
        let version = root
            .get("openapi")
            .and_then(Value::as_str)
            .ok_or("not an OpenAPI 3 document: no `openapi` version field (Swagger 2.0 is not supported)")?
            .to_string();
        if !version.starts_with("3.") {
            return Err(format!(
                "OpenAPI version {version} is not supported (use 3.0 or 3.1)"
            ));
        }
        let major_minor = version.split('.').take(2).collect::<Vec<_>>().join(".");
        Ok(Self {
            root,
            version: major_minor,
            files: BTreeMap::new(),
        })
    }

    /// Follows `$ref` chains (local `#/...` references; a bundled document's
    /// references into its files are local too). Returns the value and the
    /// last reference followed, or an error naming a broken or cyclic one.
    pub fn resolve<'a>(&'a self, value: &'a Value) -> Result<(&'a Value, Option<String>), String> {
        let mut current = value;
        let mut last = None;
        let mut seen = Vec::new();
        while let Some(reference) = current.get("$ref").and_then(Value::as_str) {
            if seen.iter().any(|s| s == reference) {
                return Err(format!("$ref cycle at {}", self.describe(reference)));
            }
            seen.push(reference.to_string());
            current = self.pointer(reference)?;
            last = Some(reference.to_string());
        }
        Ok((current, last))
    }

    /// The value a local reference points at.
    pub fn pointer(&self, reference: &str) -> Result<&Value, String> {
        let Some(pointer) = reference.strip_prefix('#') else {
            return Err(format!(
                "$ref {reference} points into a file that was not read"
            ));
        };
        self.root
            .pointer(pointer)
            .ok_or_else(|| format!("$ref {} points at nothing", self.describe(reference)))
    }

    /// A reference as its author wrote it: `file.yaml#/Person` rather than
    /// the bundle's internal `#/x-bluelamp-files/3/Person`.
    pub fn describe(&self, reference: &str) -> String {
        let prefix = format!("#/{FILES_KEY}/");
        let Some(rest) = reference.strip_prefix(&prefix) else {
            return reference.to_string();
        };
        let (number, inner) = rest.split_once('/').unwrap_or((rest, ""));
        match self.files.get(number) {
            Some(file) if inner.is_empty() => file.clone(),
            Some(file) => format!("{file}#/{inner}"),
            None => reference.to_string(),
        }
    }

    /// Every operation with one of `methods` (lower case): its path, method,
    /// path item and operation, `$ref`s followed; unreadable ones are left out.
    pub fn operations(&self, methods: &[&'static str]) -> Vec<Operation> {
        let mut out = Vec::new();
        let Some(paths) = self.root.get("paths").and_then(Value::as_object) else {
            return out;
        };
        for (path, item) in paths {
            let Ok((item, _)) = self.resolve(item) else {
                continue;
            };
            for method in methods {
                let Some(operation) = item
                    .get(*method)
                    .and_then(|op| self.resolve(op).ok().map(|(op, _)| op.clone()))
                else {
                    continue;
                };
                out.push(Operation {
                    path: path.clone(),
                    method,
                    item: item.clone(),
                    operation,
                });
            }
        }
        out
    }

    /// The first server URL, if the document gives one.
    pub fn server_url(&self) -> Option<&str> {
        self.root
            .get("servers")
            .and_then(Value::as_array)
            .and_then(|s| s.first())
            .and_then(|s| s.get("url"))
            .and_then(Value::as_str)
    }

    /// The OAuth2 client-credentials token URL of the first such security scheme.
    pub fn oauth2_token_url(&self) -> Option<&str> {
        self.root
            .pointer("/components/securitySchemes")
            .and_then(Value::as_object)?
            .values()
            .find_map(|scheme| {
                scheme
                    .pointer("/flows/clientCredentials/tokenUrl")
                    .and_then(Value::as_str)
            })
    }
}

/// Text as JSON or YAML, whichever it is.
fn parse_value(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') || text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML or JSON: {e}"))
    }
}

/// Bundles the files `doc` (read from `root`) refers to into it; `read`
/// reads one file or URL. Returns the document and a warning for each file
/// that could not be read or parsed (references into it then point at
/// nothing, which discovery reports where they are used).
pub async fn bundle<F, Fut>(mut doc: Document, root: Location, read: F) -> (Document, Vec<String>)
where
    F: Fn(Location) -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let root = match root {
        Location::File(path) => Location::File(normalise(&path)),
        url => url,
    };
    let mut warnings = Vec::new();
    let mut locations: Vec<Location> = vec![root.clone()];
    let mut values: Vec<Value> = vec![std::mem::take(&mut doc.root)];
    let mut next = 0;
    while next < values.len() {
        let mut value = std::mem::take(&mut values[next]);
        let here = locations[next].clone();
        // The files this one names, read before its references are rewritten.
        let mut wanted = Vec::new();
        collect_refs(&value, &mut wanted);
        for reference in wanted {
            let Some(file) = reference.split('#').next().filter(|f| !f.is_empty()) else {
                continue;
            };
            let target = match here.join(file) {
                Ok(target) => target,
                Err(e) => {
                    warnings.push(format!("{}: {e}", here.name(&root)));
                    continue;
                }
            };
            if locations.contains(&target) {
                continue;
            }
            if locations.len() >= MAX_FILES {
                warnings.push(format!(
                    "the document reaches more than {MAX_FILES} files; the rest were not read"
                ));
                break;
            }
            let parsed = match read(target.clone()).await {
                Ok(text) => parse_value(&text).or_else(|e| {
                    // A description kept in a Markdown or text file.
                    let structured = matches!(
                        Path::new(file).extension().and_then(|x| x.to_str()),
                        Some("json" | "yaml" | "yml")
                    );
                    if structured {
                        Err(e)
                    } else {
                        Ok(Value::String(text))
                    }
                }),
                Err(e) => Err(e),
            };
            match parsed {
                Ok(parsed) => {
                    locations.push(target);
                    values.push(parsed);
                }
                Err(e) => {
                    warnings.push(format!(
                        "external file {} (referred to from {}) cannot be used: {e}",
                        target.name(&root),
                        here.name(&root)
                    ));
                    // Remembered, so it is reported once; references into it
                    // point at nothing.
                    locations.push(target);
                    values.push(Value::Null);
                }
            }
        }
        rewrite_refs(&mut value, &|reference: &str| {
            let (file, fragment) = reference.split_once('#').unwrap_or((reference, ""));
            let number = if file.is_empty() {
                next
            } else {
                let target = here.join(file).ok()?;
                locations.iter().position(|l| *l == target)?
            };
            if number == 0 {
                return Some(format!("#{fragment}"));
            }
            let fragment = fragment.trim_end_matches('/');
            Some(format!("#/{FILES_KEY}/{number}{fragment}"))
        });
        values[next] = value;
        next += 1;
    }
    let mut values = values.into_iter();
    doc.root = values.next().unwrap_or(Value::Null);
    if locations.len() > 1 {
        let files: serde_json::Map<String, Value> = values
            .enumerate()
            .map(|(i, v)| ((i + 1).to_string(), v))
            .collect();
        doc.files = locations
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, l)| (i.to_string(), l.name(&root)))
            .collect();
        if let Some(object) = doc.root.as_object_mut() {
            object.insert(FILES_KEY.to_string(), Value::Object(files));
        }
    }
    (doc, warnings)
}

/// Every `$ref` string in a value.
fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Rewrites every `$ref` string `map` has an answer for.
fn rewrite_refs(value: &mut Value, map: &dyn Fn(&str) -> Option<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                match (key.as_str(), &mut *child) {
                    ("$ref", Value::String(r)) => {
                        if let Some(new) = map(r) {
                            *r = new;
                        }
                    }
                    _ => rewrite_refs(child, map),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, map)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_and_yaml() {
        let json = Document::parse(r#"{"openapi": "3.1.0", "paths": {}}"#).unwrap();
        assert_eq!(json.version, "3.1");
        let yaml = Document::parse("openapi: 3.0.3\npaths: {}\n").unwrap();
        assert_eq!(yaml.version, "3.0");
        assert!(
            Document::parse("swagger: '2.0'")
                .unwrap_err()
                .contains("Swagger 2.0")
        );
        assert!(Document::parse("{ nope").is_err());
    }

    #[test]
    fn resolves_refs_and_detects_cycles() {
        let doc = Document::parse(
            r##"{"openapi": "3.1.0", "components": {"schemas": {
                "A": {"$ref": "#/components/schemas/B"},
                "B": {"type": "string"},
                "C": {"$ref": "#/components/schemas/D"},
                "D": {"$ref": "#/components/schemas/C"}}}}"##,
        )
        .unwrap();
        let a = serde_json::json!({"$ref": "#/components/schemas/A"});
        let (value, last) = doc.resolve(&a).unwrap();
        assert_eq!(value["type"], "string");
        assert_eq!(last.as_deref(), Some("#/components/schemas/B"));
        let c = serde_json::json!({"$ref": "#/components/schemas/C"});
        assert!(doc.resolve(&c).unwrap_err().contains("cycle"));
        let missing = serde_json::json!({"$ref": "#/components/schemas/Z"});
        assert!(
            doc.resolve(&missing)
                .unwrap_err()
                .contains("points at nothing")
        );
    }

    async fn read(location: Location) -> Result<String, String> {
        match location {
            Location::File(path) => std::fs::read_to_string(path).map_err(|e| e.to_string()),
            Location::Url(url) => Err(format!("no network in this test: {url}")),
        }
    }

    #[tokio::test]
    async fn bundles_files_relative_to_each_other_with_cycles() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("api/openapi.yaml");
        std::fs::create_dir_all(dir.path().join("api/schemas")).unwrap();
        std::fs::create_dir_all(dir.path().join("api/paths")).unwrap();
        std::fs::write(
            &root,
            "openapi: 3.1.0\npaths:\n  /people:\n    $ref: paths/people.yaml\ncomponents:\n  schemas:\n    Id: {type: string}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("api/paths/people.yaml"),
            "get:\n  responses:\n    '200':\n      content:\n        application/json:\n          schema: {type: array, items: {$ref: '../schemas/person.json#/Person'}}\n",
        )
        .unwrap();
        // Person refers back to the root and to itself across files.
        std::fs::write(
            dir.path().join("api/schemas/person.json"),
            r##"{"Person": {"type": "object", "properties": {
                "id": {"$ref": "../openapi.yaml#/components/schemas/Id"},
                "friend": {"$ref": "#/Person"},
                "address": {"$ref": "./address.yaml"},
                "lost": {"$ref": "./missing.yaml#/Nope"},
                "broken": {"$ref": "./address.yaml#/properties/nope"}}}}"##,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("api/schemas/address.yaml"),
            "type: object\nproperties:\n  street: {type: string}\n  owner: {$ref: 'person.json#/Person'}\n",
        )
        .unwrap();
        let text = std::fs::read_to_string(&root).unwrap();
        let doc = Document::parse(&text).unwrap();
        let (doc, warnings) = bundle(doc, Location::File(root.clone()), read).await;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with(
                "external file schemas/missing.yaml (referred to from schemas/person.json) cannot be used:"
            ),
            "{warnings:?}"
        );
        let item = doc.resolve(&doc.root["paths"]["/people"]).unwrap().0["get"]["responses"]["200"]
            ["content"]["application/json"]["schema"]["items"]
            .clone();
        let (person, last) = doc.resolve(&item).unwrap();
        assert_eq!(
            doc.describe(last.as_deref().unwrap()),
            "schemas/person.json#/Person"
        );
        let id = doc.resolve(&person["properties"]["id"]).unwrap().0;
        assert_eq!(id["type"], "string");
        let friend = doc.resolve(&person["properties"]["friend"]).unwrap().0;
        assert_eq!(friend, person);
        let address = doc.resolve(&person["properties"]["address"]).unwrap().0;
        assert_eq!(address["properties"]["street"]["type"], "string");
        let owner = doc.resolve(&address["properties"]["owner"]).unwrap().0;
        assert_eq!(owner, person);
        // A file that is missing, and a reference to nothing in a file that is there.
        let lost = doc.resolve(&person["properties"]["lost"]).unwrap_err();
        assert_eq!(lost, "$ref schemas/missing.yaml#/Nope points at nothing");
        let broken = doc.resolve(&person["properties"]["broken"]).unwrap_err();
        assert_eq!(
            broken,
            "$ref schemas/address.yaml#/properties/nope points at nothing"
        );
    }

    #[tokio::test]
    async fn a_document_from_a_url_cannot_refer_to_local_files() {
        let doc = Document::parse(
            r#"{"openapi": "3.0.3", "paths": {"/x": {"$ref": "file:///etc/passwd"}}}"#,
        )
        .unwrap();
        let root = Location::Url(Url::parse("http://supplier.example/api/openapi.json").unwrap());
        let (_, warnings) = bundle(doc, root, read).await;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("cannot refer to a file: location"),
            "{warnings:?}"
        );
    }
}
