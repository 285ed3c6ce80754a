//! Loading an OpenAPI document (3.0 or 3.1, JSON or YAML, from a file or a URL)
//! and following its local `$ref`s.
//!
//! The document is kept as a `serde_json::Value` rather than a typed model:
//! real-world documents are messy (vendor extensions, 3.0/3.1 differences,
//! partial schemas), and discovery must degrade to warnings instead of failing
//! to parse the whole document.

use serde_json::Value;

/// A parsed OpenAPI document.
#[derive(Debug, Clone)]
pub struct Document {
    /// The whole document.
    pub root: Value,
    /// `3.0` or `3.1` (major.minor).
    pub version: String,
}

impl Document {
    /// Parses JSON or YAML text.
    ///
    /// # Errors
    /// Text that is neither, or that is not an OpenAPI 3.x document.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim_start();
        let root: Value = if trimmed.starts_with('{') {
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML or JSON: {e}"))?
        };
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
        })
    }

    /// Follows `$ref` chains (local `#/...` references only). Returns the value
    /// and the last reference followed, or an error naming a broken or cyclic one.
    pub fn resolve<'a>(&'a self, value: &'a Value) -> Result<(&'a Value, Option<String>), String> {
        let mut current = value;
        let mut last = None;
        let mut seen = Vec::new();
        while let Some(reference) = current.get("$ref").and_then(Value::as_str) {
            if seen.iter().any(|s| s == reference) {
                return Err(format!("$ref cycle at {reference}"));
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
            return Err(format!("external $ref {reference} is not supported"));
        };
        let unescaped: String = pointer.to_string();
        self.root
            .pointer(&unescaped)
            .ok_or_else(|| format!("$ref {reference} points at nothing"))
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
}
