//! JSON Schema (as OpenAPI 3.0 and 3.1 use it) → Arrow.
//!
//! | JSON Schema | Arrow |
//! |---|---|
//! | `string`, `format: date-time` | `Timestamp(Microsecond, "UTC")` |
//! | `string`, `format: date` | `Date32` |
//! | `string` (any other format), `enum` | `Utf8` |
//! | `integer` `int32` / other | `Int32` / `Int64` |
//! | `number` | `Float64` |
//! | `boolean` | `Boolean` |
//! | `object` with `properties`, `allOf` | `Struct` |
//! | `array` | `List` |
//! | `oneOf`/`anyOf` of several types, free-form objects, recursive `$ref`s | `Utf8` holding JSON text |
//!
//! Nullability: a property is nullable unless it is `required` and not marked
//! `nullable: true` (3.0) or typed `[..., "null"]` (3.1). Anything that cannot be
//! mapped becomes JSON text with a warning naming its location, never an error.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::json::ReaderBuilder;
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::spec::Document;

/// How values of a column must be prepared before Arrow decoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Decoded as is.
    Plain,
    /// Re-serialized to JSON text (strings are kept as they are).
    JsonText,
    /// An object whose fields have their own shapes.
    Struct(Vec<(String, Shape)>),
    /// An array whose items have this shape.
    List(Box<Shape>),
}

impl Shape {
    /// Whether decoding needs no preparation at all.
    pub fn is_plain(&self) -> bool {
        match self {
            Shape::Plain => true,
            Shape::JsonText => false,
            Shape::Struct(fields) => fields.iter().all(|(_, s)| s.is_plain()),
            Shape::List(item) => item.is_plain(),
        }
    }

    /// Prepares one value in place.
    pub fn prepare(&self, value: &mut Value) {
        match (self, value) {
            (Shape::Plain, _) | (_, Value::Null) => {}
            (Shape::JsonText, v) if !v.is_string() => {
                *v = Value::String(v.to_string());
            }
            (Shape::JsonText, _) => {}
            (Shape::Struct(fields), Value::Object(object)) => {
                for (name, shape) in fields {
                    if let Some(child) = object.get_mut(name) {
                        shape.prepare(child);
                    }
                }
            }
            (Shape::List(item), Value::Array(items)) => {
                for child in items {
                    item.prepare(child);
                }
            }
            // A value of the wrong kind is left alone: decoding then reports it.
            _ => {}
        }
    }
}

/// Decodes JSON records (already [prepared](Shape::prepare)) into one batch.
/// Undocumented fields are ignored; a missing field is null; a value of the
/// wrong type, or null where the schema forbids it, is an error.
///
/// # Errors
/// The first value that does not fit `schema`, as arrow-json reports it.
pub fn decode(schema: &SchemaRef, records: &[Value]) -> Result<RecordBatch, ArrowError> {
    let mut decoder = ReaderBuilder::new(Arc::clone(schema))
        .with_strict_mode(false)
        .with_batch_size(records.len().max(1))
        .build_decoder()?;
    decoder.serialize(records)?;
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema))))
}

/// Whether a schema is a `oneOf`/`anyOf` whose alternatives are all objects
/// (so a record of it is one of them); `null` alternatives are allowed.
fn union_of_objects<'v>(doc: &'v Document, schema: &'v Value) -> Option<Vec<&'v Value>> {
    let options = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)?;
    let mut objects = Vec::new();
    for option in options {
        let (option, _) = doc.resolve(option).ok()?;
        if option.get("type").and_then(Value::as_str) == Some("null") {
            continue;
        }
        let is_object = option.get("type").and_then(Value::as_str) == Some("object")
            || option.get("properties").is_some()
            || option.get("allOf").is_some();
        if !is_object {
            return None;
        }
        objects.push(option);
    }
    (!objects.is_empty()).then_some(objects)
}

/// Adds the properties of `schema` (its `$ref` followed, `allOf` parts and
/// object alternatives merged at every depth) to `properties`; `required`
/// gets its required names only where `binding` (outside any alternative).
#[allow(clippy::too_many_arguments, reason = "one recursive walk")]
pub(crate) fn merge_object(
    doc: &Document,
    schema: &Value,
    at: &str,
    depth: usize,
    binding: bool,
    properties: &mut Vec<(String, Value)>,
    required: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    if depth > MAX_DEPTH * 2 {
        return;
    }
    let schema = match doc.resolve(schema) {
        Ok((s, _)) => s,
        Err(e) => {
            warnings.push(format!("{at}: {e}"));
            return;
        }
    };
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        merge_object(
            doc,
            part,
            &format!("{at}.allOf"),
            depth + 1,
            binding,
            properties,
            required,
            warnings,
        );
    }
    if let Some(alternatives) = union_of_objects(doc, schema) {
        for alternative in alternatives {
            merge_object(
                doc,
                alternative,
                at,
                depth + 1,
                false,
                properties,
                required,
                warnings,
            );
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, value) in props {
            match properties.iter_mut().find(|(n, _)| n == name) {
                // The same field in two alternatives keeps its first schema.
                Some(existing) if binding => existing.1 = value.clone(),
                Some(_) => {}
                None => properties.push((name.clone(), value.clone())),
            }
        }
    }
    if binding && let Some(names) = schema.get("required").and_then(Value::as_array) {
        required.extend(names.iter().filter_map(Value::as_str).map(str::to_string));
    }
}

/// Maps schemas, collecting warnings for what it could not map exactly.
pub struct Mapper<'a> {
    doc: &'a Document,
    /// Where each warning arose, and why.
    pub warnings: Vec<String>,
    stack: Vec<String>,
}

const MAX_DEPTH: usize = 8;

impl<'a> Mapper<'a> {
    /// A mapper over one document.
    pub fn new(doc: &'a Document) -> Self {
        Self {
            doc,
            warnings: Vec::new(),
            stack: Vec::new(),
        }
    }

    /// The properties of an object schema as Arrow fields, with their shapes.
    /// `at` names the location for warnings.
    pub fn object_fields(&mut self, schema: &Value, at: &str) -> Vec<(Field, Shape)> {
        let (properties, required) = self.collect_object(schema, at);
        properties
            .into_iter()
            .map(|(name, property)| {
                let required = required.contains(&name);
                self.field(&name, &property, required, &format!("{at}.{name}"), 1)
            })
            .collect()
    }

    /// Merges `allOf` parts (at every depth) and resolves `$ref`s: the
    /// object's properties in document order and its required names. The
    /// alternatives of a `oneOf`/`anyOf` of objects are merged too, as
    /// optional fields: a record is one of them, so each field may be absent.
    fn collect_object(&mut self, schema: &Value, at: &str) -> (Vec<(String, Value)>, Vec<String>) {
        let mut properties: Vec<(String, Value)> = Vec::new();
        let mut required: Vec<String> = Vec::new();
        merge_object(
            self.doc,
            schema,
            at,
            0,
            true,
            &mut properties,
            &mut required,
            &mut self.warnings,
        );
        (properties, required)
    }

    fn field(
        &mut self,
        name: &str,
        schema: &Value,
        required: bool,
        at: &str,
        depth: usize,
    ) -> (Field, Shape) {
        let (data_type, nullable, shape) = self.map(schema, at, depth);
        (Field::new(name, data_type, nullable || !required), shape)
    }

    /// The Arrow type, whether the schema itself admits null, and the shape.
    fn map(&mut self, schema: &Value, at: &str, depth: usize) -> (DataType, bool, Shape) {
        let reference = schema
            .get("$ref")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(r) = &reference
            && self.stack.contains(r)
        {
            self.warnings
                .push(format!("{at}: recursive $ref {r} is read as JSON text"));
            return (DataType::Utf8, true, Shape::JsonText);
        }
        let resolved = match self.doc.resolve(schema) {
            Ok((s, _)) => s.clone(),
            Err(e) => {
                self.warnings.push(format!("{at}: {e}; read as JSON text"));
                return (DataType::Utf8, true, Shape::JsonText);
            }
        };
        if let Some(r) = &reference {
            self.stack.push(r.clone());
        }
        let result = self.map_resolved(&resolved, at, depth);
        if reference.is_some() {
            self.stack.pop();
        }
        result
    }

    fn map_resolved(&mut self, schema: &Value, at: &str, depth: usize) -> (DataType, bool, Shape) {
        let mut nullable = schema
            .get("nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        // oneOf / anyOf: one real alternative plus null is just a nullable type;
        // alternatives that are all `const`s of the schema's own type (an
        // integer enum written as `type: integer` + `oneOf` of `const`) are
        // that type; alternatives that are all objects are a struct of their
        // fields.
        for key in ["oneOf", "anyOf"] {
            if let Some(options) = schema.get(key).and_then(Value::as_array) {
                let real: Vec<&Value> = options
                    .iter()
                    .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                    .collect();
                if real.len() == 1 && options.len() == 2 {
                    let (t, _, shape) = self.map(real[0], at, depth);
                    return (t, true, shape);
                }
                let all_constants = !real.is_empty()
                    && real.iter().all(|o| {
                        let own = o.get("type");
                        (o.get("const").is_some() || o.get("enum").is_some())
                            && (own.is_none() || own == schema.get("type"))
                    });
                if all_constants && schema.get("type").is_some() {
                    let mut plain = schema.clone();
                    if let Some(object) = plain.as_object_mut() {
                        object.remove(key);
                    }
                    let (t, null, shape) = self.map_resolved(&plain, at, depth);
                    return (t, null || nullable, shape);
                }
                if union_of_objects(self.doc, schema).is_some() {
                    break;
                }
                return (DataType::Utf8, true, Shape::JsonText);
            }
        }
        let types: Vec<String> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        if types.iter().any(|t| t == "null") {
            nullable = true;
        }
        let non_null: Vec<&String> = types.iter().filter(|t| *t != "null").collect();
        let kind = match non_null.as_slice() {
            [one] => one.as_str(),
            [] if schema.get("properties").is_some()
                || schema.get("allOf").is_some()
                || union_of_objects(self.doc, schema).is_some() =>
            {
                "object"
            }
            [] => {
                return (DataType::Utf8, true, Shape::JsonText);
            }
            _ => {
                self.warnings.push(format!(
                    "{at}: several types {non_null:?} are read as JSON text"
                ));
                return (DataType::Utf8, true, Shape::JsonText);
            }
        };
        let format = schema
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match kind {
            "string" => match format {
                "date-time" => (
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    nullable,
                    Shape::Plain,
                ),
                "date" => (DataType::Date32, nullable, Shape::Plain),
                _ => (DataType::Utf8, nullable, Shape::Plain),
            },
            "integer" => match format {
                "int32" => (DataType::Int32, nullable, Shape::Plain),
                _ => (DataType::Int64, nullable, Shape::Plain),
            },
            "number" => (DataType::Float64, nullable, Shape::Plain),
            "boolean" => (DataType::Boolean, nullable, Shape::Plain),
            "array" => {
                if depth >= MAX_DEPTH {
                    self.warnings.push(format!(
                        "{at}: nested deeper than {MAX_DEPTH} levels; read as JSON text"
                    ));
                    return (DataType::Utf8, true, Shape::JsonText);
                }
                let items = schema.get("items").cloned().unwrap_or(Value::Null);
                let (item_type, _, item_shape) = if items.is_null() {
                    (DataType::Utf8, true, Shape::JsonText)
                } else {
                    self.map(&items, &format!("{at}[]"), depth + 1)
                };
                (
                    DataType::List(Arc::new(Field::new("item", item_type, true))),
                    nullable,
                    Shape::List(Box::new(item_shape)),
                )
            }
            "object" => {
                if depth >= MAX_DEPTH {
                    self.warnings.push(format!(
                        "{at}: nested deeper than {MAX_DEPTH} levels; read as JSON text"
                    ));
                    return (DataType::Utf8, true, Shape::JsonText);
                }
                let (properties, required) = self.collect_object(schema, at);
                if properties.is_empty() {
                    return (DataType::Utf8, nullable, Shape::JsonText);
                }
                let mut fields = Vec::new();
                let mut shapes = Vec::new();
                for (name, property) in properties {
                    let req = required.contains(&name);
                    let (field, shape) =
                        self.field(&name, &property, req, &format!("{at}.{name}"), depth + 1);
                    shapes.push((name, shape));
                    fields.push(field);
                }
                (
                    DataType::Struct(Fields::from(fields)),
                    nullable,
                    Shape::Struct(shapes),
                )
            }
            other => {
                self.warnings
                    .push(format!("{at}: unknown type '{other}' is read as JSON text"));
                (DataType::Utf8, true, Shape::JsonText)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(schemas: Value) -> Document {
        let text = json!({"openapi": "3.1.0", "components": {"schemas": schemas}}).to_string();
        Document::parse(&text).unwrap()
    }

    fn types(fields: &[(Field, Shape)]) -> Vec<(String, String, bool)> {
        fields
            .iter()
            .map(|(f, _)| (f.name().clone(), f.data_type().to_string(), f.is_nullable()))
            .collect()
    }

    #[test]
    fn maps_formats_nullability_refs_and_nesting() {
        let d = doc(json!({
            "Loc": {"type": "object", "required": ["lat"], "properties": {"lat": {"type": "number"}, "beat": {"type": "string"}}},
            "Base": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer", "format": "int32"}}},
            "Thing": {"allOf": [{"$ref": "#/components/schemas/Base"}, {"type": "object", "required": ["at"], "properties": {
                "at": {"type": "string", "format": "date-time"},
                "day": {"type": ["string", "null"], "format": "date"},
                "n": {"type": "integer"},
                "ok": {"type": "boolean", "nullable": true},
                "grade": {"type": "string", "enum": ["I", "S"]},
                "loc": {"$ref": "#/components/schemas/Loc"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                "maybe": {"oneOf": [{"type": "string"}, {"type": "null"}]},
                "free": {"type": "object"}
            }}]}
        }));
        let mut mapper = Mapper::new(&d);
        let fields = mapper.object_fields(&json!({"$ref": "#/components/schemas/Thing"}), "Thing");
        let got = types(&fields);
        assert_eq!(got[0], ("id".into(), "Int32".into(), false));
        assert_eq!(
            got[1],
            ("at".into(), "Timestamp(µs, \"UTC\")".into(), false)
        );
        assert_eq!(got[2], ("day".into(), "Date32".into(), true));
        assert_eq!(got[3], ("n".into(), "Int64".into(), true));
        assert_eq!(got[4], ("ok".into(), "Boolean".into(), true));
        assert_eq!(got[5], ("grade".into(), "Utf8".into(), true));
        assert!(got[6].1.starts_with("Struct("), "{}", got[6].1);
        assert!(got[7].1.starts_with("List("), "{}", got[7].1);
        assert_eq!(got[8].1, "Utf8");
        assert_eq!(fields[8].1, Shape::JsonText);
        assert_eq!(got[9], ("maybe".into(), "Utf8".into(), true));
        assert_eq!(fields[9].1, Shape::Plain);
        assert_eq!(fields[10].1, Shape::JsonText);
        assert!(mapper.warnings.is_empty(), "{:?}", mapper.warnings);
    }

    #[test]
    fn cycles_and_broken_refs_are_warnings() {
        let d = doc(json!({
            "Node": {"type": "object", "properties": {"name": {"type": "string"}, "child": {"$ref": "#/components/schemas/Node"}}}
        }));
        let mut mapper = Mapper::new(&d);
        let fields = mapper.object_fields(
            &json!({"type": "object", "properties": {"root": {"$ref": "#/components/schemas/Node"}, "gone": {"$ref": "#/components/schemas/Missing"}}}),
            "T",
        );
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].1, Shape::JsonText);
        assert!(
            mapper.warnings.iter().any(|w| w.contains("recursive $ref")),
            "{:?}",
            mapper.warnings
        );
        assert!(
            mapper.warnings.iter().any(|w| w.starts_with("T.gone")),
            "{:?}",
            mapper.warnings
        );
    }

    #[test]
    fn json_text_preparation() {
        let shape = Shape::Struct(vec![
            ("a".into(), Shape::JsonText),
            ("b".into(), Shape::List(Box::new(Shape::JsonText))),
        ]);
        let mut value = json!({"a": {"x": 1}, "b": [1, "two", null]});
        shape.prepare(&mut value);
        assert_eq!(value, json!({"a": "{\"x\":1}", "b": ["1", "two", null]}));
    }
}
