//! Create operations as `INSERT` targets. A `POST` on a list table's own path
//! makes that table insertable (`INSERT INTO rms.crimes ...` posts to
//! `/crimes`); any other `POST` with a JSON body becomes an insert-only table
//! named after its operation (`cad.record_crime_reference`, whose path
//! parameter `urn` is a column). The request schema is compiled into
//! [`Rule`]s so every row is checked — required fields, types, formats,
//! enums, lengths, patterns — before anything is sent.
//!
//! The deposit itself, rows turned into requests and sent one at a time
//! with their outcomes journaled, is the sink ([`sink`]).

pub mod sink;

use regex::Regex;
use serde_json::{Map, Value};

use super::spec::Document;

/// How values of one body field are checked.
#[derive(Debug, Clone)]
pub enum Rule {
    /// A string, perhaps with a format, enum, lengths or pattern.
    Text {
        /// `date-time`, `date`, ...
        format: Option<String>,
        /// Allowed values.
        values: Option<Vec<String>>,
        /// Shortest length, in characters.
        min: Option<usize>,
        /// Longest length, in characters.
        max: Option<usize>,
        /// A regular expression the value must match, and its source text.
        pattern: Option<(String, Regex)>,
    },
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// An object with its own fields.
    Object(Vec<BodyField>),
    /// A list of values.
    Array(Box<Rule>),
    /// Anything (unspecified or not checkable here).
    Any,
}

/// One property of a request body.
#[derive(Debug, Clone)]
pub struct BodyField {
    /// The property name (and the SQL column name).
    pub name: String,
    /// How its value is checked.
    pub rule: Rule,
    /// Whether the body must have it.
    pub required: bool,
    /// Whether it may be null.
    pub nullable: bool,
}

/// A documented create operation.
#[derive(Debug, Clone)]
pub struct WriteSpec {
    /// The path template, e.g. `/incidents/{urn}/crime-reference`.
    pub path: String,
    /// Path parameters, supplied per row from columns of the same name.
    pub path_params: Vec<String>,
    /// The body's properties.
    pub fields: Vec<BodyField>,
    /// The header that carries an idempotency key, where the interface
    /// documents one; only then are writes retried after an unclear failure.
    pub idempotency_header: Option<String>,
    /// The response field holding what the supplier assigned (e.g.
    /// `crime_reference`): the first response property not in the request.
    pub identifier: Option<String>,
}

impl WriteSpec {
    /// `POST /path`, for messages.
    pub fn endpoint(&self) -> String {
        format!("POST {}", self.path)
    }

    /// Checks one row (the body, as sent). Returns `field: reason` for each
    /// problem.
    pub fn check(&self, body: &Map<String, Value>) -> Vec<String> {
        check_fields(&self.fields, body)
    }
}

/// Checks an object against compiled fields (see [`compile_fields`]):
/// `field: reason` for each problem. Properties the fields do not name are
/// not problems.
pub fn check_fields(fields: &[BodyField], object: &Map<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    check_object(fields, object, "", &mut problems);
    problems
}

fn check_object(
    fields: &[BodyField],
    object: &Map<String, Value>,
    at: &str,
    out: &mut Vec<String>,
) {
    for field in fields {
        let path = format!("{at}{}", field.name);
        match object.get(&field.name) {
            None if field.required => out.push(format!("{path}: is required")),
            None => {}
            Some(Value::Null) if field.nullable => {}
            Some(Value::Null) if field.required => {
                out.push(format!("{path}: is required and may not be null"))
            }
            Some(Value::Null) => out.push(format!("{path}: may not be null")),
            Some(value) => check_value(&field.rule, value, &path, out),
        }
    }
}

fn check_value(rule: &Rule, value: &Value, path: &str, out: &mut Vec<String>) {
    match (rule, value) {
        (Rule::Any, _) => {}
        (
            Rule::Text {
                format,
                values,
                min,
                max,
                pattern,
            },
            Value::String(s),
        ) => {
            let chars = s.chars().count();
            if let Some(values) = values
                && !values.iter().any(|v| v == s)
            {
                out.push(format!("{path}: '{s}' is not one of {}", values.join(", ")));
            }
            if let Some(min) = min
                && chars < *min
            {
                out.push(format!("{path}: shorter than {min} characters"));
            }
            if let Some(max) = max
                && chars > *max
            {
                out.push(format!("{path}: longer than {max} characters"));
            }
            if let Some((source, regex)) = pattern
                && !regex.is_match(s)
            {
                out.push(format!("{path}: '{s}' does not match the pattern {source}"));
            }
            match format.as_deref() {
                Some("date-time") if chrono::DateTime::parse_from_rfc3339(s).is_err() => {
                    out.push(format!("{path}: '{s}' is not an RFC 3339 date-time"));
                }
                Some("date") if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_err() => {
                    out.push(format!("{path}: '{s}' is not a date (YYYY-MM-DD)"));
                }
                _ => {}
            }
        }
        (Rule::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => {}
        (Rule::Number, Value::Number(_)) | (Rule::Boolean, Value::Bool(_)) => {}
        (Rule::Object(fields), Value::Object(object)) => {
            check_object(fields, object, &format!("{path}."), out);
        }
        (Rule::Array(item), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                check_value(item, v, &format!("{path}[{i}]"), out);
            }
        }
        (rule, value) => out.push(format!(
            "{path}: expected {}, got {}",
            expected(rule),
            describe(value)
        )),
    }
}

fn expected(rule: &Rule) -> &'static str {
    match rule {
        Rule::Text { .. } => "a string",
        Rule::Integer => "a whole number",
        Rule::Number => "a number",
        Rule::Boolean => "true or false",
        Rule::Object(_) => "an object",
        Rule::Array(_) => "a list",
        Rule::Any => "anything",
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string '{s}'"),
        Value::Number(n) => format!("the number {n}"),
        Value::Bool(b) => format!("{b}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
        Value::Null => "null".into(),
    }
}

/// Compiles an object schema's properties into fields. `warnings` collects
/// what cannot be checked (then accepted as is).
pub fn compile_fields(
    doc: &Document,
    schema: &Value,
    at: &str,
    warnings: &mut Vec<String>,
    depth: usize,
) -> Vec<BodyField> {
    let Ok((schema, _)) = doc.resolve(schema) else {
        warnings.push(format!(
            "{at}: request schema has a broken $ref; its fields are not checked"
        ));
        return Vec::new();
    };
    let mut parts = vec![schema];
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        parts.extend(
            all.iter()
                .filter_map(|p| doc.resolve(p).ok().map(|(p, _)| p)),
        );
    }
    let mut fields: Vec<BodyField> = Vec::new();
    let mut required: Vec<String> = Vec::new();
    for part in parts {
        if let Some(names) = part.get("required").and_then(Value::as_array) {
            required.extend(names.iter().filter_map(Value::as_str).map(str::to_string));
        }
        let Some(properties) = part.get("properties").and_then(Value::as_object) else {
            continue;
        };
        for (name, property) in properties {
            let (rule, nullable) =
                compile_rule(doc, property, &format!("{at}.{name}"), warnings, depth + 1);
            fields.retain(|f| &f.name != name);
            fields.push(BodyField {
                name: name.clone(),
                rule,
                required: false,
                nullable,
            });
        }
    }
    for field in &mut fields {
        field.required = required.contains(&field.name);
    }
    fields
}

fn compile_rule(
    doc: &Document,
    schema: &Value,
    at: &str,
    warnings: &mut Vec<String>,
    depth: usize,
) -> (Rule, bool) {
    let Ok((schema, _)) = doc.resolve(schema) else {
        warnings.push(format!("{at}: broken $ref; not checked"));
        return (Rule::Any, true);
    };
    if depth > 8 {
        return (Rule::Any, true);
    }
    let mut nullable = schema
        .get("nullable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.contains(&"null") {
        nullable = true;
    }
    let real: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
    let kind = match real.as_slice() {
        [one] => *one,
        [] if schema.get("properties").is_some() || schema.get("allOf").is_some() => "object",
        _ => return (Rule::Any, true),
    };
    let rule = match kind {
        "string" => {
            let values = schema.get("enum").and_then(Value::as_array).map(|vs| {
                if vs.iter().any(Value::is_null) {
                    nullable = true;
                }
                vs.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            });
            let pattern = schema
                .get("pattern")
                .and_then(Value::as_str)
                .and_then(|p| match Regex::new(p) {
                    Ok(r) => Some((p.to_string(), r)),
                    Err(e) => {
                        warnings.push(format!("{at}: pattern {p} is not a usable regular expression ({e}); not checked"));
                        None
                    }
                });
            let length = |key: &str| schema.get(key).and_then(Value::as_u64).map(|n| n as usize);
            Rule::Text {
                format: schema
                    .get("format")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                values,
                min: length("minLength"),
                max: length("maxLength"),
                pattern,
            }
        }
        "integer" => Rule::Integer,
        "number" => Rule::Number,
        "boolean" => Rule::Boolean,
        "array" => {
            let items = schema.get("items").cloned().unwrap_or(Value::Null);
            if items.is_null() {
                Rule::Array(Box::new(Rule::Any))
            } else {
                Rule::Array(Box::new(
                    compile_rule(doc, &items, &format!("{at}[]"), warnings, depth + 1).0,
                ))
            }
        }
        "object" => Rule::Object(compile_fields(doc, schema, at, warnings, depth + 1)),
        _ => Rule::Any,
    };
    (rule, nullable)
}

/// The write spec of one `POST` operation, if it takes a JSON object body.
pub fn write_spec(
    doc: &Document,
    path: &str,
    path_item: &Value,
    operation: &Value,
    warnings: &mut Vec<String>,
) -> Option<WriteSpec> {
    let at = format!("POST {path}");
    let body = operation.get("requestBody")?;
    let Ok((body, _)) = doc.resolve(body) else {
        warnings.push(format!(
            "{at}: request body has a broken $ref; not insertable"
        ));
        return None;
    };
    let schema = body
        .get("content")?
        .as_object()?
        .iter()
        .find(|(media, _)| media.contains("json"))
        .and_then(|(_, c)| c.get("schema"))?
        .clone();
    let fields = compile_fields(doc, &schema, &at, warnings, 0);
    if fields.is_empty() {
        warnings.push(format!(
            "{at}: the request body has no documented properties; not insertable"
        ));
        return None;
    }
    let mut path_params = Vec::new();
    let mut idempotency_header = None;
    let parameters = path_item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            operation
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    for parameter in parameters {
        let Ok((parameter, _)) = doc.resolve(parameter) else {
            continue;
        };
        let name = parameter
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match parameter.get("in").and_then(Value::as_str) {
            Some("path") if !path_params.iter().any(|p| p == name) => {
                path_params.push(name.to_string())
            }
            Some("header") if name.eq_ignore_ascii_case("idempotency-key") => {
                idempotency_header = Some(name.to_string());
            }
            _ => {}
        }
    }
    if idempotency_header.is_none()
        && operation.get("x-idempotency").and_then(Value::as_str) == Some("header")
    {
        idempotency_header = Some("Idempotency-Key".to_string());
    }
    let identifier = ["201", "200"]
        .iter()
        .find_map(|code| operation.get("responses")?.get(*code))
        .and_then(|r| doc.resolve(r).ok().map(|(r, _)| r.clone()))
        .and_then(|r| {
            let content = r
                .get("content")?
                .as_object()?
                .values()
                .next()?
                .get("schema")?
                .clone();
            let (schema, _) = doc.resolve(&content).ok()?;
            let properties = schema.get("properties")?.as_object()?;
            properties
                .keys()
                .find(|k| !fields.iter().any(|f| &f.name == *k) && !path_params.contains(k))
                .cloned()
        });
    Some(WriteSpec {
        path: path.to_string(),
        path_params,
        fields,
        idempotency_header,
        identifier,
    })
}
