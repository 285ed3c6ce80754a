//! Property tests of the JSON Schema → Arrow mapping: for generated schemas
//! (every type and format the mapper knows, nesting, `$ref`, `allOf`, `oneOf`,
//! OpenAPI 3.0 and 3.1 nullability) and generated instances of them, the
//! mapped types are the documented ones and every instance decodes, value for
//! value, through the same preparation and decoding the scan uses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, ListArray,
    StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::schema::{Mapper, decode};
use super::spec::Document;

#[derive(Debug, Clone)]
enum Node {
    Text,
    DateTime,
    Date,
    Enum,
    Int32,
    Int64,
    Number,
    Boolean,
    /// `oneOf` two types: JSON text.
    Either,
    /// A free-form object: JSON text.
    Free,
    Object(Vec<Prop>),
    Array(Box<Node>),
}

#[derive(Debug, Clone)]
struct Prop {
    node: Node,
    required: bool,
    nullable: bool,
    /// Declared in `components` and referenced (objects only).
    by_ref: bool,
}

const ENUM: [&str; 3] = ["open", "closed", "under investigation"];

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        Just(Node::Text),
        Just(Node::DateTime),
        Just(Node::Date),
        Just(Node::Enum),
        Just(Node::Int32),
        Just(Node::Int64),
        Just(Node::Number),
        Just(Node::Boolean),
        Just(Node::Either),
        Just(Node::Free),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(prop(inner.clone()), 1..5).prop_map(Node::Object),
            inner.prop_map(|n| Node::Array(Box::new(n))),
        ]
    })
}

fn prop(node: impl Strategy<Value = Node>) -> impl Strategy<Value = Prop> {
    (node, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(node, required, nullable, by_ref)| Prop {
            node,
            required,
            nullable,
            by_ref,
        },
    )
}

/// Renders schemas into an OpenAPI document's `components`.
struct Render {
    v31: bool,
    components: Map<String, Value>,
}

impl Render {
    fn with_null(&self, mut schema: Value, type_name: &str, nullable: bool) -> Value {
        if nullable {
            if self.v31 {
                schema["type"] = json!([type_name, "null"]);
            } else {
                schema["nullable"] = json!(true);
            }
        }
        schema
    }

    fn schema(&mut self, node: &Node, nullable: bool, by_ref: bool) -> Value {
        match node {
            Node::Text => self.with_null(json!({"type": "string"}), "string", nullable),
            Node::DateTime => self.with_null(
                json!({"type": "string", "format": "date-time"}),
                "string",
                nullable,
            ),
            Node::Date => self.with_null(
                json!({"type": "string", "format": "date"}),
                "string",
                nullable,
            ),
            Node::Enum => {
                let mut values: Vec<Value> = ENUM.iter().map(|v| json!(v)).collect();
                if nullable {
                    values.push(Value::Null);
                }
                self.with_null(
                    json!({"type": "string", "enum": values}),
                    "string",
                    nullable,
                )
            }
            Node::Int32 => self.with_null(
                json!({"type": "integer", "format": "int32"}),
                "integer",
                nullable,
            ),
            Node::Int64 => self.with_null(json!({"type": "integer"}), "integer", nullable),
            Node::Number => self.with_null(
                json!({"type": "number", "format": "double"}),
                "number",
                nullable,
            ),
            Node::Boolean => self.with_null(json!({"type": "boolean"}), "boolean", nullable),
            Node::Either => json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
            Node::Free => self.with_null(json!({"type": "object"}), "object", nullable),
            Node::Array(item) => {
                let items = self.schema(item, false, false);
                self.with_null(json!({"type": "array", "items": items}), "array", nullable)
            }
            Node::Object(props) => {
                let body = self.object(props);
                if by_ref {
                    let name = format!("S{}", self.components.len());
                    self.components.insert(name.clone(), body);
                    let reference = json!({"$ref": format!("#/components/schemas/{name}")});
                    match (nullable, self.v31) {
                        (false, _) => reference,
                        (true, true) => json!({"oneOf": [reference, {"type": "null"}]}),
                        (true, false) => json!({"allOf": [reference], "nullable": true}),
                    }
                } else {
                    self.with_null(body, "object", nullable)
                }
            }
        }
    }

    fn object(&mut self, props: &[Prop]) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for (i, p) in props.iter().enumerate() {
            let name = format!("f{i}");
            properties.insert(name.clone(), self.schema(&p.node, p.nullable, p.by_ref));
            if p.required {
                required.push(json!(name));
            }
        }
        json!({"type": "object", "properties": properties, "required": required})
    }
}

/// The Arrow type the mapper documents for a node.
fn arrow_type(node: &Node) -> DataType {
    match node {
        Node::Text | Node::Enum | Node::Either | Node::Free => DataType::Utf8,
        Node::DateTime => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Node::Date => DataType::Date32,
        Node::Int32 => DataType::Int32,
        Node::Int64 => DataType::Int64,
        Node::Number => DataType::Float64,
        Node::Boolean => DataType::Boolean,
        Node::Array(item) => DataType::List(Arc::new(Field::new("item", arrow_type(item), true))),
        Node::Object(props) => DataType::Struct(
            props
                .iter()
                .enumerate()
                .map(|(i, p)| Field::new(format!("f{i}"), arrow_type(&p.node), field_nullable(p)))
                .collect(),
        ),
    }
}

fn field_nullable(p: &Prop) -> bool {
    !p.required || p.nullable || matches!(p.node, Node::Either)
}

/// Instances of a node (never null; nullability is decided by the parent).
fn value(node: &Node) -> BoxedStrategy<Value> {
    match node {
        Node::Text => "[a-zA-Z0-9 \"\\\\é,{}]{0,8}".prop_map(Value::from).boxed(),
        Node::DateTime => (
            0i64..4_102_444_800,
            0u32..1_000_000,
            prop_oneof![Just("Z"), Just("+01:00"), Just("-05:30")],
        )
            .prop_map(|(secs, micros, zone)| {
                let t = DateTime::from_timestamp(secs, micros * 1000).unwrap();
                // Written as local time in `zone`: shift so the instant is `t`.
                let shifted = match zone {
                    "+01:00" => t + chrono::Duration::hours(1),
                    "-05:30" => t - chrono::Duration::minutes(330),
                    _ => t,
                };
                json!(format!(
                    "{}{zone}",
                    shifted.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f")
                ))
            })
            .boxed(),
        Node::Date => (-20_000i32..40_000)
            .prop_map(|days| {
                let d = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
                    + chrono::Duration::days(i64::from(days));
                json!(d.format("%Y-%m-%d").to_string())
            })
            .boxed(),
        Node::Enum => prop::sample::select(ENUM.to_vec())
            .prop_map(Value::from)
            .boxed(),
        Node::Int32 => any::<i32>().prop_map(Value::from).boxed(),
        Node::Int64 => any::<i64>().prop_map(Value::from).boxed(),
        Node::Number => prop_oneof![
            (-1e12f64..1e12).prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
        ]
        .boxed(),
        Node::Boolean => any::<bool>().prop_map(Value::from).boxed(),
        Node::Either => prop_oneof![
            "[a-z]{0,5}".prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
        ]
        .boxed(),
        Node::Free => prop::collection::btree_map("[a-z]{1,3}", any::<i32>(), 0..3)
            .prop_map(|m| json!(m))
            .boxed(),
        Node::Array(item) => prop::collection::vec(value(item), 0..4)
            .prop_map(Value::Array)
            .boxed(),
        Node::Object(props) => {
            let members: Vec<BoxedStrategy<Option<Value>>> = props
                .iter()
                .map(|p| {
                    let present = value(&p.node).prop_map(Some);
                    match (p.required, p.nullable) {
                        (true, false) => present.boxed(),
                        (true, true) => prop_oneof![present, Just(Some(Value::Null))].boxed(),
                        (false, false) => prop_oneof![present, Just(None)].boxed(),
                        (false, true) => {
                            prop_oneof![present, Just(None), Just(Some(Value::Null))].boxed()
                        }
                    }
                })
                .collect();
            members
                .prop_map(|values| {
                    let mut object = Map::new();
                    for (i, v) in values.into_iter().enumerate() {
                        if let Some(v) = v {
                            object.insert(format!("f{i}"), v);
                        }
                    }
                    Value::Object(object)
                })
                .boxed()
        }
    }
}

/// Checks one decoded value against the instance it came from.
fn check(array: &dyn Array, row: usize, node: &Node, expected: Option<&Value>, at: &str) {
    let expected = expected.filter(|v| !v.is_null());
    let Some(expected) = expected else {
        assert!(array.is_null(row), "{at}: expected null");
        return;
    };
    assert!(!array.is_null(row), "{at}: unexpected null for {expected}");
    match node {
        Node::Text | Node::Enum => {
            let got = array
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(row);
            assert_eq!(Some(got), expected.as_str(), "{at}");
        }
        Node::Either | Node::Free => {
            let got = array
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(row);
            match expected {
                Value::String(s) => assert_eq!(got, s, "{at}"),
                other => assert_eq!(&serde_json::from_str::<Value>(got).unwrap(), other, "{at}"),
            }
        }
        Node::DateTime => {
            let got = array
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .value(row);
            let want = DateTime::parse_from_rfc3339(expected.as_str().unwrap())
                .unwrap()
                .timestamp_micros();
            assert_eq!(got, want, "{at}: {expected}");
        }
        Node::Date => {
            let got = array
                .as_any()
                .downcast_ref::<Date32Array>()
                .unwrap()
                .value(row);
            let want = NaiveDate::parse_from_str(expected.as_str().unwrap(), "%Y-%m-%d").unwrap()
                - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
            assert_eq!(i64::from(got), want.num_days(), "{at}");
        }
        Node::Int32 => {
            let got = array
                .as_any()
                .downcast_ref::<Int32Array>()
                .unwrap()
                .value(row);
            assert_eq!(Some(i64::from(got)), expected.as_i64(), "{at}");
        }
        Node::Int64 => {
            let got = array
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(row);
            assert_eq!(Some(got), expected.as_i64(), "{at}");
        }
        Node::Number => {
            let got = array
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .value(row);
            assert_eq!(Some(got), expected.as_f64(), "{at}");
        }
        Node::Boolean => {
            let got = array
                .as_any()
                .downcast_ref::<BooleanArray>()
                .unwrap()
                .value(row);
            assert_eq!(Some(got), expected.as_bool(), "{at}");
        }
        Node::Array(item) => {
            let list = array.as_any().downcast_ref::<ListArray>().unwrap();
            let items = list.value(row);
            let want = expected.as_array().unwrap();
            assert_eq!(items.len(), want.len(), "{at}: list length");
            for (i, w) in want.iter().enumerate() {
                check(items.as_ref(), i, item, Some(w), &format!("{at}[{i}]"));
            }
        }
        Node::Object(props) => {
            let object = array.as_struct();
            check_object(object, row, props, expected, at);
        }
    }
}

fn check_object(object: &StructArray, row: usize, props: &[Prop], expected: &Value, at: &str) {
    for (i, p) in props.iter().enumerate() {
        let name = format!("f{i}");
        check(
            object.column(i).as_ref(),
            row,
            &p.node,
            expected.get(&name),
            &format!("{at}.{name}"),
        );
    }
}

fn root_and_records() -> impl Strategy<Value = (Vec<Prop>, bool, bool, Vec<Value>)> {
    (
        prop::collection::vec(prop(node()), 1..6),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(props, v31, split)| {
            let records = prop::collection::vec(value(&Node::Object(props.clone())), 1..6);
            (Just(props), Just(v31), Just(split), records)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_schemas_map_and_decode_faithfully((props, v31, split, records) in root_and_records()) {
        let mut render = Render { v31, components: Map::new() };
        let root = if split && props.len() > 1 {
            // The record schema as `allOf` a referenced base and the rest.
            let (base, rest) = props.split_at(props.len() / 2);
            let base_schema = render.object(base);
            let mut rest_schema = render.object(rest);
            // `rest` numbers its properties from 0; renumber after `base`.
            let renumber = |schema: &mut Value, offset: usize| {
                let properties = schema["properties"].as_object().unwrap().clone();
                let mut renamed = Map::new();
                for (name, s) in properties {
                    let i: usize = name[1..].parse().unwrap();
                    renamed.insert(format!("f{}", i + offset), s);
                }
                schema["properties"] = Value::Object(renamed);
                let required: Vec<Value> = schema["required"].as_array().unwrap().iter()
                    .map(|n| json!(format!("f{}", n.as_str().unwrap()[1..].parse::<usize>().unwrap() + offset)))
                    .collect();
                schema["required"] = json!(required);
            };
            renumber(&mut rest_schema, base.len());
            render.components.insert("Base".into(), base_schema);
            json!({"allOf": [{"$ref": "#/components/schemas/Base"}, rest_schema]})
        } else {
            render.object(&props)
        };
        let document = json!({
            "openapi": if v31 { "3.1.0" } else { "3.0.3" },
            "components": {"schemas": render.components},
        });
        let doc = Document::parse(&document.to_string()).unwrap();
        let mut mapper = Mapper::new(&doc);
        let columns = mapper.object_fields(&root, "T");
        prop_assert!(mapper.warnings.is_empty(), "{:?}", mapper.warnings);
        prop_assert_eq!(columns.len(), props.len());
        for (i, ((field, _), p)) in columns.iter().zip(&props).enumerate() {
            prop_assert_eq!(field.name(), &format!("f{i}"));
            prop_assert_eq!(field.data_type(), &arrow_type(&p.node), "f{}", i);
            prop_assert_eq!(field.is_nullable(), field_nullable(p), "f{} of {:?}", i, p);
        }

        let schema = Arc::new(Schema::new(columns.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>()));
        let mut prepared = records.clone();
        for record in &mut prepared {
            let object = record.as_object_mut().unwrap();
            for (field, shape) in &columns {
                if let Some(v) = object.get_mut(field.name()) {
                    shape.prepare(v);
                }
            }
            // An undocumented field is ignored.
            object.insert("undocumented".into(), json!({"x": [1, 2]}));
        }
        let batch = decode(&schema, &prepared).map_err(|e| TestCaseError::fail(format!("{e}\n{document}\n{records:?}")))?;
        prop_assert_eq!(batch.num_rows(), records.len());
        let whole = StructArray::from(batch);
        for (row, record) in records.iter().enumerate() {
            check_object(&whole, row, &props, record, &format!("row {row}"));
        }
    }
}
