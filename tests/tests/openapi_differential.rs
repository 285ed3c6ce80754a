//! A differential fuzz test of the OpenAPI connector: generated documents and
//! generated data behind a fixture server of the test's own.
//!
//! For each seed a small generator picks a pagination style (none, offset and
//! limit with or without a `total`, page numbers, a cursor in the body or in a
//! response header, `has_more` with `starting_after`, a next link in the body,
//! a `Link` header), the server's page size, how many records it holds,
//! whether the list sits under a path parameter named like a field of the
//! records, and how the record schema is written (`$ref`, `allOf`, inline).
//! The server implements exactly that protocol and the documented filters
//! (`kind` equality, `at_from` as "at or after"), and serves no more records
//! a page than its own page size, whatever the client asks for.
//!
//! SQL answers are compared with the same questions answered directly from
//! the data in Rust (the oracle). Any mismatch is a failure, printed with the
//! seed that reproduces it: `BLUELAMP_FUZZ_SEED=<seed>` runs that case alone,
//! `BLUELAMP_FUZZ_CASES=<n>` sets how many seeds run (default 24).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err,
    reason = "tests; a fixture handler's early answer is a whole Response"
)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bluelamp_engine::{Engine, Identity, QueryError};
use bluelamp_tests::fixtures::engine_from_text;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------

/// A small deterministic generator, so a failing case can be repeated.
struct Lcg(u64);

impl Lcg {
    fn new(seed: u64) -> Self {
        let mut rng = Lcg(seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0x2545_F491_4F6C_DD1D));
        rng.next(2);
        rng.next(2);
        rng
    }

    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % below.max(1)
    }

    /// True one time in `n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.next(n) == 0
    }
}

/// How the server pages its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Everything in one answer.
    Plain,
    /// `offset` and `limit`, and a `total` in the body.
    OffsetTotal,
    /// `offset` and `limit`, no total: only an empty page ends the list.
    Offset,
    /// `page` (from 1) and `per_page`, an array body: an empty page ends it.
    Page,
    /// `next_cursor` in the body, passed back as `cursor`.
    CursorBody,
    /// `X-Next-Cursor` response header, passed back as `cursor`.
    CursorHeader,
    /// `has_more` in the body, the last record's id passed as `starting_after`.
    AfterLast,
    /// `next` in the body: the URL of the next page.
    NextLink,
    /// An RFC 8288 `Link` header with `rel="next"`.
    LinkHeader,
}

const STYLES: [Style; 9] = [
    Style::Plain,
    Style::OffsetTotal,
    Style::Offset,
    Style::Page,
    Style::CursorBody,
    Style::CursorHeader,
    Style::AfterLast,
    Style::NextLink,
    Style::LinkHeader,
];

/// How the last page says there is no next one (cursor or link in the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Null,
    Empty,
    Absent,
}

/// How next-page URLs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkForm {
    /// `http://host/things?page=2`
    Absolute,
    /// `/things?page=2`
    FromRoot,
    /// `?page=2`
    QueryOnly,
}

const KINDS: [&str; 3] = ["a", "b", "c"];
const TAGS: [&str; 3] = ["red", "green", "blue"];
const GROUPS: [&str; 3] = ["g1", "g2", "g3"];
/// 2026-10-01T00:00:00Z.
const START: i64 = 1_790_812_800;
const WEEK: usize = 7 * 86_400;

#[derive(Debug, Clone)]
enum Score {
    Absent,
    Null,
    Value(f64),
}

#[derive(Debug, Clone)]
struct Owner {
    name: String,
    level: Option<i64>,
}

/// One served record.
#[derive(Debug, Clone)]
struct Thing {
    id: String,
    n: i64,
    score: Score,
    kind: &'static str,
    /// Seconds since the epoch.
    at: i64,
    tags: Vec<&'static str>,
    owner: Option<Owner>,
    /// Whether the record carries a field the document does not mention.
    extra: bool,
}

impl Thing {
    fn json(&self) -> Value {
        let mut o = Map::new();
        o.insert("id".into(), json!(self.id));
        o.insert("n".into(), json!(self.n));
        match self.score {
            Score::Absent => {}
            Score::Null => {
                o.insert("score".into(), Value::Null);
            }
            Score::Value(v) => {
                o.insert("score".into(), json!(v));
            }
        }
        o.insert("kind".into(), json!(self.kind));
        o.insert("at".into(), json!(rfc3339(self.at)));
        o.insert("tags".into(), json!(self.tags));
        match &self.owner {
            None => {
                o.insert("owner".into(), Value::Null);
            }
            Some(owner) => {
                let mut m = Map::new();
                m.insert("name".into(), json!(owner.name));
                if let Some(level) = owner.level {
                    m.insert("level".into(), json!(level));
                }
                o.insert("owner".into(), Value::Object(m));
            }
        }
        if self.extra {
            o.insert("note".into(), json!("not in the document"));
        }
        Value::Object(o)
    }
}

fn rfc3339(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One generated case: a document, its data and its server's behaviour.
#[derive(Debug)]
struct Case {
    seed: u64,
    style: Style,
    /// Most records the server puts on a page, whatever is asked for.
    page: usize,
    /// Whether the list is `/groups/{id}/things` (else `/things`).
    nested: bool,
    /// The records by group; one group named "" when not nested.
    groups: Vec<(String, Vec<Thing>)>,
    /// Whether a style that may answer a bare array wraps it in `{"data": ...}`.
    wrapped: bool,
    /// Whether a cursor style documents a `limit` parameter.
    limit_documented: bool,
    /// The `maximum` documented on the page-size parameter.
    limit_max: Option<usize>,
    end: End,
    link_form: LinkForm,
    /// `page_size` in the source's config.
    client_page_size: Option<u64>,
    /// 0: inline, 1: `$ref`, 2: `allOf` of a `$ref` base and the rest.
    item_form: usize,
    /// 0: inline, 1: `$ref`, 2: `allOf` of inline parts, 3: `allOf` of `$ref`s.
    owner_form: usize,
}

impl Case {
    fn describe(&self) -> String {
        let counts: Vec<String> = self
            .groups
            .iter()
            .map(|(g, t)| {
                if g.is_empty() {
                    t.len().to_string()
                } else {
                    format!("{g}: {}", t.len())
                }
            })
            .collect();
        format!(
            "seed {} (rerun with BLUELAMP_FUZZ_SEED={}): {:?}, server page {}, records [{}], nested {}, wrapped {}, limit documented {}, maximum {:?}, end {:?}, links {:?}, client page_size {:?}, item form {}, owner form {}",
            self.seed,
            self.seed,
            self.style,
            self.page,
            counts.join(", "),
            self.nested,
            self.wrapped,
            self.limit_documented,
            self.limit_max,
            self.end,
            self.link_form,
            self.client_page_size,
            self.item_form,
            self.owner_form,
        )
    }

    /// The records a request under `group` reads, or `None` for no such list.
    fn things_under(&self, group: Option<&str>) -> Option<&[Thing]> {
        match (self.nested, group) {
            (true, Some(g)) => self
                .groups
                .iter()
                .find(|(name, _)| name.as_str() == g)
                .map(|(_, t)| t.as_slice()),
            (false, None) => self.groups.first().map(|(_, t)| t.as_slice()),
            _ => None,
        }
    }

    /// The query parameters the document names.
    fn allowed_params(&self) -> Vec<&'static str> {
        let mut allowed = vec!["kind", "at_from"];
        match self.style {
            Style::Plain => {}
            Style::OffsetTotal | Style::Offset => allowed.extend(["offset", "limit"]),
            Style::Page => allowed.extend(["page", "per_page"]),
            Style::CursorBody | Style::CursorHeader => {
                allowed.push("cursor");
                if self.limit_documented {
                    allowed.push("limit");
                }
            }
            Style::AfterLast => allowed.extend(["starting_after", "limit"]),
            // The links the server writes carry `page`.
            Style::NextLink | Style::LinkHeader => allowed.push("page"),
        }
        allowed
    }
}

/// A record count for a list: sometimes none, sometimes an exact multiple of
/// the server's page size, otherwise anything up to 40.
fn record_count(rng: &mut Lcg, page: usize) -> usize {
    match rng.next(6) {
        0 => 0,
        1 => page * (1 + rng.next(40 / page)),
        2 => page,
        3 => (page * (1 + rng.next(40 / page))).saturating_sub(1),
        _ => rng.next(41),
    }
}

fn things(rng: &mut Lcg, count: usize, hourly: bool) -> Vec<Thing> {
    // Ids t1..tN in a random served order.
    let mut numbers: Vec<usize> = (1..=count).collect();
    for i in (1..numbers.len()).rev() {
        let j = rng.next(i + 1);
        numbers.swap(i, j);
    }
    let mut out = Vec::with_capacity(count);
    for k in numbers {
        let n = rng.next(2001) as i64 - 1000;
        let score = match rng.next(4) {
            0 => Score::Absent,
            1 => Score::Null,
            _ => Score::Value(rng.next(400) as f64 / 4.0),
        };
        let kind = KINDS[rng.next(KINDS.len())];
        let at = START
            + if hourly {
                rng.next(7 * 24) as i64 * 3600
            } else {
                rng.next(WEEK) as i64
            };
        let mut tags = Vec::new();
        for tag in TAGS {
            if rng.one_in(2) {
                tags.push(tag);
            }
        }
        let owner = if rng.one_in(6) {
            None
        } else {
            let name = format!("owner {}", rng.next(5));
            let level = if rng.one_in(5) {
                None
            } else {
                Some(rng.next(4) as i64)
            };
            Some(Owner { name, level })
        };
        let extra = rng.one_in(4);
        out.push(Thing {
            id: format!("t{k}"),
            n,
            score,
            kind,
            at,
            tags,
            owner,
            extra,
        });
    }
    out
}

fn generate(seed: u64) -> Case {
    let mut rng = Lcg::new(seed);
    // Every style in every run of nine seeds or more.
    let style = STYLES[(seed % STYLES.len() as u64) as usize];
    let page = 1 + rng.next(7);
    let nested = rng.one_in(2);
    let hourly = rng.one_in(2);
    let groups: Vec<(String, Vec<Thing>)> = if nested {
        GROUPS
            .iter()
            .map(|g| {
                let count = record_count(&mut rng, page);
                ((*g).to_string(), things(&mut rng, count, hourly))
            })
            .collect()
    } else {
        let count = record_count(&mut rng, page);
        vec![(String::new(), things(&mut rng, count, hourly))]
    };
    let wrapped = rng.one_in(2);
    let limit_documented = !rng.one_in(3);
    let limit_max = match rng.next(4) {
        0 => Some(page),
        1 => Some(page + 1 + rng.next(5)),
        2 => Some(100),
        _ => None,
    };
    let end = [End::Null, End::Empty, End::Absent][rng.next(3)];
    let link_form = [LinkForm::Absolute, LinkForm::FromRoot, LinkForm::QueryOnly][rng.next(3)];
    let client_page_size = if rng.one_in(3) {
        Some(1 + rng.next(10) as u64)
    } else {
        None
    };
    let item_form = rng.next(3);
    let owner_form = rng.next(4);
    Case {
        seed,
        style,
        page,
        nested,
        groups,
        wrapped,
        limit_documented,
        limit_max,
        end,
        link_form,
        client_page_size,
        item_form,
        owner_form,
    }
}

// ---------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------

/// A `$ref` to a component schema.
fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A query parameter.
fn query_param(name: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "schema": schema})
}

fn owner_name_part() -> Value {
    json!({"type": "object", "properties": {"name": {"type": "string"}}})
}

fn owner_level_part() -> Value {
    json!({"type": "object", "properties": {"level": {"type": "integer"}}})
}

fn owner_inline() -> Value {
    json!({"type": "object", "properties": {
        "name": {"type": "string"},
        "level": {"type": "integer"}}})
}

fn owner_schema(form: usize) -> Value {
    match form {
        0 => owner_inline(),
        1 => schema_ref("Owner"),
        2 => json!({"allOf": [owner_name_part(), owner_level_part()]}),
        _ => json!({"allOf": [schema_ref("OwnerName"), schema_ref("OwnerLevel")]}),
    }
}

/// The record's own properties: `id` and `n` (the required base), the rest.
fn thing_properties(owner_form: usize) -> (Map<String, Value>, Map<String, Value>) {
    let base = json!({
        "id": {"type": "string"},
        "n": {"type": "integer"}
    });
    let rest = json!({
        "score": {"type": "number", "nullable": true},
        "kind": {"type": "string", "enum": KINDS},
        "at": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "owner": owner_schema(owner_form)
    });
    (
        base.as_object().unwrap().clone(),
        rest.as_object().unwrap().clone(),
    )
}

fn thing_inline(owner_form: usize) -> Value {
    let (base, rest) = thing_properties(owner_form);
    let mut all = base;
    all.extend(rest);
    json!({"type": "object", "required": ["id", "n"], "properties": all})
}

fn item_schema(case: &Case) -> Value {
    match case.item_form {
        0 => thing_inline(case.owner_form),
        1 => schema_ref("Thing"),
        _ => {
            let (_, rest) = thing_properties(case.owner_form);
            json!({"allOf": [
                schema_ref("ThingBase"),
                {"type": "object", "properties": rest}]})
        }
    }
}

fn components(case: &Case) -> Value {
    let (base, _) = thing_properties(case.owner_form);
    json!({
        "Thing": thing_inline(case.owner_form),
        "ThingBase": {"type": "object", "required": ["id", "n"], "properties": base},
        "Owner": owner_inline(),
        "OwnerName": owner_name_part(),
        "OwnerLevel": owner_level_part()
    })
}

/// An object body: the records under `data`, plus these paging properties.
fn wrapper(list: &Value, extra: Value) -> Value {
    let mut properties = Map::new();
    properties.insert("data".into(), list.clone());
    if let Some(extra) = extra.as_object() {
        for (k, v) in extra {
            properties.insert(k.clone(), v.clone());
        }
    }
    json!({"type": "object", "properties": properties})
}

fn openapi_document(case: &Case) -> Value {
    let path = if case.nested {
        "/groups/{id}/things"
    } else {
        "/things"
    };
    let mut params = Vec::new();
    if case.nested {
        params.push(json!({"name": "id", "in": "path", "required": true,
            "schema": {"type": "string"}}));
    }
    params.push(json!({"name": "kind", "in": "query",
        "description": "Only things of this kind",
        "schema": {"type": "string", "enum": KINDS}}));
    params.push(json!({"name": "at_from", "in": "query",
        "description": "Only things at or after this time",
        "schema": {"type": "string", "format": "date-time"}}));
    let size_schema = match case.limit_max {
        Some(max) => json!({"type": "integer", "minimum": 1, "maximum": max}),
        None => json!({"type": "integer", "minimum": 1}),
    };
    match case.style {
        Style::Plain | Style::NextLink | Style::LinkHeader => {}
        Style::OffsetTotal | Style::Offset => {
            params.push(query_param("offset", json!({"type": "integer"})));
            params.push(query_param("limit", size_schema));
        }
        Style::Page => {
            params.push(query_param("page", json!({"type": "integer"})));
            params.push(query_param("per_page", size_schema));
        }
        Style::CursorBody | Style::CursorHeader => {
            params.push(query_param("cursor", json!({"type": "string"})));
            if case.limit_documented {
                params.push(query_param("limit", size_schema));
            }
        }
        Style::AfterLast => {
            params.push(query_param("starting_after", json!({"type": "string"})));
            params.push(query_param("limit", size_schema));
        }
    }
    let list = json!({"type": "array", "items": item_schema(case)});
    let body = match case.style {
        Style::Plain if case.wrapped => wrapper(&list, json!({"count": {"type": "integer"}})),
        Style::Offset if case.wrapped => wrapper(&list, json!({})),
        Style::Plain | Style::Offset | Style::Page | Style::CursorHeader | Style::LinkHeader => {
            list
        }
        Style::OffsetTotal => wrapper(&list, json!({"total": {"type": "integer"}})),
        Style::CursorBody => wrapper(
            &list,
            json!({"next_cursor": {"type": "string", "nullable": true}}),
        ),
        Style::AfterLast => wrapper(&list, json!({"has_more": {"type": "boolean"}})),
        Style::NextLink => wrapper(
            &list,
            json!({"next": {"type": "string", "format": "uri", "nullable": true,
                "description": "The URL of the next page"}}),
        ),
    };
    let mut ok = json!({"description": "ok", "content": {"application/json": {"schema": body}}});
    match case.style {
        Style::CursorHeader => {
            ok["headers"] = json!({"X-Next-Cursor": {
                "description": "The cursor of the next page; absent on the last",
                "schema": {"type": "string"}}});
        }
        Style::LinkHeader => {
            ok["headers"] = json!({"Link": {
                "description": "RFC 8288 links; rel=\"next\" is the next page",
                "schema": {"type": "string"}}});
        }
        _ => {}
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "differential", "version": "1"},
        "paths": {path: {"get": {
            "operationId": "listThings",
            "parameters": params,
            "responses": {"200": ok}
        }}},
        "components": {"schemas": components(case)}
    })
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, message.into()).into_response()
}

fn json_response(body: Value) -> Response {
    axum::Json(body).into_response()
}

fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<usize>, Response> {
    match q.get(name) {
        None => Ok(None),
        Some(text) => text
            .parse::<usize>()
            .map(Some)
            .map_err(|_| bad_request(format!("{name} is not a count: '{text}'"))),
    }
}

/// Sets the body's next-page property, or ends the list as the case does.
fn put_next(body: &mut Value, field: &str, next: Option<String>, end: End) {
    match (next, end) {
        (Some(next), _) => body[field] = json!(next),
        (None, End::Null) => body[field] = Value::Null,
        (None, End::Empty) => body[field] = json!(""),
        (None, End::Absent) => {}
    }
}

/// The URL of page `page` of the same list with the same filters.
fn next_page_url(
    case: &Case,
    group: Option<&str>,
    q: &HashMap<String, String>,
    page: usize,
    headers: &HeaderMap,
) -> String {
    let path = match group {
        Some(g) => format!("/groups/{g}/things"),
        None => "/things".to_string(),
    };
    let mut pairs: Vec<(&String, &String)> =
        q.iter().filter(|(k, _)| k.as_str() != "page").collect();
    pairs.sort();
    let mut encoded = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        encoded.append_pair(k, v);
    }
    encoded.append_pair("page", &page.to_string());
    let query = encoded.finish();
    match case.link_form {
        LinkForm::Absolute => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            format!("http://{host}{path}?{query}")
        }
        LinkForm::FromRoot => format!("{path}?{query}"),
        LinkForm::QueryOnly => format!("?{query}"),
    }
}

fn cursor_text(position: usize) -> String {
    format!("cur-{position}")
}

fn parse_cursor(text: &str) -> Result<usize, Response> {
    text.strip_prefix("cur-")
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| bad_request(format!("unknown cursor '{text}'")))
}

/// One page of the list, exactly as the case's protocol says.
fn respond(
    case: &Case,
    group: Option<&str>,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, Response> {
    let things = case
        .things_under(group)
        .ok_or_else(|| StatusCode::NOT_FOUND.into_response())?;
    let allowed = case.allowed_params();
    if let Some(unknown) = q.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad_request(format!(
            "the document names no parameter '{unknown}'"
        )));
    }
    let kind = q.get("kind");
    let from = match q.get("at_from") {
        None => None,
        Some(text) => match DateTime::parse_from_rfc3339(text) {
            Ok(t) => Some(t.timestamp_micros()),
            Err(_) => {
                return Err(bad_request(format!(
                    "at_from is not an RFC 3339 date-time: '{text}'"
                )));
            }
        },
    };
    // As documented: `kind` is an equality, `at_from` keeps at >= at_from.
    let matching: Vec<&Thing> = things
        .iter()
        .filter(|t| kind.is_none_or(|k| t.kind == k.as_str()))
        .filter(|t| from.is_none_or(|f| t.at * 1_000_000 >= f))
        .collect();
    let total = matching.len();
    let slice = |start: usize, size: usize| -> Vec<Value> {
        matching
            .iter()
            .skip(start)
            .take(size)
            .map(|t| t.json())
            .collect()
    };
    // The server never serves more than its page size, whatever is asked.
    let size = |name: &str| -> Result<usize, Response> {
        Ok(number(q, name)?.unwrap_or(case.page).clamp(1, case.page))
    };
    let response = match case.style {
        Style::Plain => {
            let data = slice(0, usize::MAX);
            if case.wrapped {
                json_response(json!({"data": data, "count": total}))
            } else {
                json_response(Value::Array(data))
            }
        }
        Style::OffsetTotal | Style::Offset => {
            let offset = number(q, "offset")?.unwrap_or(0);
            let limit = size("limit")?;
            let data = slice(offset, limit);
            if case.style == Style::OffsetTotal {
                json_response(json!({"data": data, "total": total}))
            } else if case.wrapped {
                json_response(json!({"data": data}))
            } else {
                json_response(Value::Array(data))
            }
        }
        Style::Page => {
            let page = number(q, "page")?.unwrap_or(1);
            if page == 0 {
                return Err(bad_request("pages count from 1"));
            }
            let per_page = size("per_page")?;
            json_response(Value::Array(slice((page - 1) * per_page, per_page)))
        }
        Style::CursorBody | Style::CursorHeader => {
            let start = match q.get("cursor") {
                None => 0,
                Some(c) => parse_cursor(c)?,
            };
            let limit = size("limit")?;
            let data = slice(start, limit);
            let next = (start + limit < total).then(|| cursor_text(start + limit));
            if case.style == Style::CursorBody {
                let mut body = json!({"data": data});
                put_next(&mut body, "next_cursor", next, case.end);
                json_response(body)
            } else {
                let mut response = json_response(Value::Array(data));
                if let Some(next) = next {
                    response
                        .headers_mut()
                        .insert("x-next-cursor", HeaderValue::from_str(&next).unwrap());
                }
                response
            }
        }
        Style::AfterLast => {
            let start = match q.get("starting_after") {
                None => 0,
                Some(id) => match matching.iter().position(|t| t.id == *id) {
                    Some(i) => i + 1,
                    None => {
                        return Err(bad_request(format!("no record '{id}' to start after")));
                    }
                },
            };
            let limit = size("limit")?;
            let data = slice(start, limit);
            json_response(json!({"data": data, "has_more": start + limit < total}))
        }
        Style::NextLink | Style::LinkHeader => {
            let page = number(q, "page")?.unwrap_or(1);
            if page == 0 {
                return Err(bad_request("pages count from 1"));
            }
            let start = (page - 1) * case.page;
            let data = slice(start, case.page);
            let more = start + case.page < total;
            let next = more.then(|| next_page_url(case, group, q, page + 1, headers));
            if case.style == Style::NextLink {
                let mut body = json!({"data": data});
                put_next(&mut body, "next", next, case.end);
                json_response(body)
            } else {
                let mut response = json_response(Value::Array(data));
                if let Some(next) = next {
                    let first = next_page_url(case, group, q, 1, headers);
                    let value = format!("<{first}>; rel=\"first\", <{next}>; rel=\"next\"");
                    response
                        .headers_mut()
                        .insert(header::LINK, HeaderValue::from_str(&value).unwrap());
                }
                response
            }
        }
    };
    Ok(response)
}

async fn plain_things(
    State(case): State<Arc<Case>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match respond(&case, None, &q, &headers) {
        Ok(r) | Err(r) => r,
    }
}

async fn group_things(
    State(case): State<Arc<Case>>,
    Path(group): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match respond(&case, Some(&group), &q, &headers) {
        Ok(r) | Err(r) => r,
    }
}

fn routes(case: &Arc<Case>) -> Router {
    if case.nested {
        Router::new()
            .route("/groups/{id}/things", get(group_things))
            .with_state(Arc::clone(case))
    } else {
        Router::new()
            .route("/things", get(plain_things))
            .with_state(Arc::clone(case))
    }
}

/// Serves `routes` plus `document` at `/openapi.json` on a free loopback
/// port; returns the server's base URL.
async fn serve(document: Value, routes: Router) -> String {
    bluelamp_tests::fixtures::serve_openapi(document, routes).await
}

// ---------------------------------------------------------------------------
// Questions and the oracle
// ---------------------------------------------------------------------------

async fn query(engine: &Engine, sql: &str) -> Result<Vec<Vec<String>>, QueryError> {
    let session = engine.session(Identity::new("test", "test"));
    bluelamp_tests::slt::try_session_rows(&session, sql).await
}

/// A one-value answer.
fn single(value: impl ToString) -> Vec<Vec<String>> {
    vec![vec![value.to_string()]]
}

/// A one-column answer.
fn column<T: ToString>(values: impl IntoIterator<Item = T>) -> Vec<Vec<String>> {
    values.into_iter().map(|v| vec![v.to_string()]).collect()
}

fn sorted_ids(things: &[&Thing]) -> Vec<String> {
    let mut ids: Vec<String> = things.iter().map(|t| t.id.clone()).collect();
    ids.sort();
    ids
}

/// Asks one case's questions, collecting every mismatch.
struct Asker<'a> {
    engine: &'a Engine,
    case: &'a Case,
    warnings: String,
    failures: &'a mut Vec<String>,
}

impl Asker<'_> {
    fn fail(&mut self, sql: &str, what: String) {
        self.failures.push(format!(
            "{}\n  warnings: [{}]\n  sql: {sql}\n  {what}",
            self.case.describe(),
            self.warnings
        ));
    }

    async fn expect(&mut self, sql: String, want: Vec<Vec<String>>) {
        match query(self.engine, &sql).await {
            Ok(got) if got == want => {}
            Ok(got) => self.fail(&sql, format!("expected {want:?}\n  got      {got:?}")),
            Err(e) => self.fail(&sql, format!("expected {want:?}\n  error    {e}")),
        }
    }

    async fn expect_error(&mut self, sql: String, needle: &str) {
        match query(self.engine, &sql).await {
            Ok(got) => self.fail(
                &sql,
                format!("expected an error containing {needle:?}, got {got:?}"),
            ),
            Err(e) if e.message.contains(needle) => {}
            Err(e) => self.fail(
                &sql,
                format!("expected an error containing {needle:?}, got: {e}"),
            ),
        }
    }
}

/// How many of `things` pass `f`.
fn count_where(things: &[&Thing], f: impl Fn(&Thing) -> bool) -> usize {
    things.iter().filter(|t| f(t)).count()
}

/// ` WHERE a AND b ...`, or nothing.
fn where_clause(scope: Option<&str>, conditions: &[String]) -> String {
    let parts: Vec<&str> = scope
        .into_iter()
        .chain(conditions.iter().map(String::as_str))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", parts.join(" AND "))
    }
}

async fn ask_everything(ask: &mut Asker<'_>) {
    let case = ask.case;
    let mut rng = Lcg::new(case.seed ^ 0x005E_ED0F_0A11);
    // The list the questions read: one group's, under a path parameter.
    let (scope_sql, scope): (Option<String>, Vec<&Thing>) = if case.nested {
        let (g, things) = &case.groups[rng.next(case.groups.len())];
        (Some(format!("group_id = '{g}'")), things.iter().collect())
    } else {
        (None, case.groups[0].1.iter().collect())
    };
    let scope_sql = scope_sql.as_deref();
    let w = |conditions: &[String]| where_clause(scope_sql, conditions);

    // 1. count, 2. ids, 3. sum.
    ask.expect(
        format!("SELECT count(*) FROM s.things{}", w(&[])),
        single(scope.len()),
    )
    .await;
    ask.expect(
        format!("SELECT id FROM s.things{} ORDER BY id", w(&[])),
        column(sorted_ids(&scope)),
    )
    .await;
    let sum = if scope.is_empty() {
        "NULL".to_string()
    } else {
        scope.iter().map(|t| t.n).sum::<i64>().to_string()
    };
    ask.expect(
        format!("SELECT sum(n) FROM s.things{}", w(&[])),
        single(sum),
    )
    .await;

    // 4. An equality pushed as `kind=`, and an IN list of two.
    let kind = KINDS[rng.next(KINDS.len())];
    let of_kind: Vec<&Thing> = scope.iter().copied().filter(|t| t.kind == kind).collect();
    let kind_sql = format!("\"kind\" = '{kind}'");
    ask.expect(
        format!(
            "SELECT count(*) FROM s.things{}",
            w(std::slice::from_ref(&kind_sql))
        ),
        single(of_kind.len()),
    )
    .await;
    ask.expect(
        format!(
            "SELECT id FROM s.things{} ORDER BY id",
            w(std::slice::from_ref(&kind_sql))
        ),
        column(sorted_ids(&of_kind)),
    )
    .await;
    let first = rng.next(KINDS.len());
    let second = (first + 1 + rng.next(KINDS.len() - 1)) % KINDS.len();
    let (k1, k2) = (KINDS[first], KINDS[second]);
    let either: Vec<&Thing> = scope
        .iter()
        .copied()
        .filter(|t| t.kind == k1 || t.kind == k2)
        .collect();
    ask.expect(
        format!(
            "SELECT id FROM s.things{} ORDER BY id",
            w(&[format!("\"kind\" IN ('{k1}', '{k2}')")])
        ),
        column(sorted_ids(&either)),
    )
    .await;

    // 5.–6. Time bounds: `>=` is pushed as at_from exactly, `>` as a superset.
    let ts = if scope.is_empty() {
        START + 3 * 86_400 + 43_200
    } else {
        scope[rng.next(scope.len())].at
    };
    let other = START + rng.next(WEEK) as i64;
    let (lo, hi) = (ts.min(other), ts.max(other));
    let ts_text = rfc3339(ts);
    ask.expect(
        format!(
            "SELECT count(*) FROM s.things{}",
            w(&[format!("\"at\" >= '{ts_text}'")])
        ),
        single(count_where(&scope, |t| t.at >= ts)),
    )
    .await;
    ask.expect(
        format!(
            "SELECT count(*) FROM s.things{}",
            w(&[format!("\"at\" > '{ts_text}'")])
        ),
        single(count_where(&scope, |t| t.at > ts)),
    )
    .await;
    ask.expect(
        format!(
            "SELECT count(*) FROM s.things{}",
            w(&[format!("\"at\" < '{ts_text}'")])
        ),
        single(count_where(&scope, |t| t.at < ts)),
    )
    .await;
    ask.expect(
        format!(
            "SELECT count(*) FROM s.things{}",
            w(&[
                format!("\"at\" >= '{}'", rfc3339(lo)),
                format!("\"at\" < '{}'", rfc3339(hi))
            ])
        ),
        single(count_where(&scope, |t| t.at >= lo && t.at < hi)),
    )
    .await;
    let both: Vec<&Thing> = of_kind.iter().copied().filter(|t| t.at >= ts).collect();
    ask.expect(
        format!(
            "SELECT id FROM s.things{} ORDER BY id",
            w(&[kind_sql.clone(), format!("\"at\" >= '{ts_text}'")])
        ),
        column(sorted_ids(&both)),
    )
    .await;

    // 7. A nested field; a nullable number; a list.
    ask.expect(
        format!(
            "SELECT count(*) FROM s.things{}",
            w(&["owner['level'] >= 2".to_string()])
        ),
        single(count_where(&scope, |t| {
            t.owner
                .as_ref()
                .and_then(|o| o.level)
                .is_some_and(|l| l >= 2)
        })),
    )
    .await;
    ask.expect(
        format!(
            "SELECT count(*) FROM s.things{}",
            w(&["score IS NULL".to_string()])
        ),
        single(count_where(&scope, |t| !matches!(t.score, Score::Value(_)))),
    )
    .await;
    ask.expect(
        format!(
            "SELECT count(*) FROM s.things{}",
            w(&["array_has(tags, 'red')".to_string()])
        ),
        single(count_where(&scope, |t| t.tags.contains(&"red"))),
    )
    .await;

    // Counts by kind.
    let by_kind: Vec<Vec<String>> = KINDS
        .iter()
        .filter_map(|k| {
            let n = scope.iter().filter(|t| t.kind == *k).count();
            (n > 0).then(|| vec![(*k).to_string(), n.to_string()])
        })
        .collect();
    ask.expect(
        format!(
            "SELECT \"kind\", count(*) FROM s.things{} GROUP BY \"kind\" ORDER BY \"kind\"",
            w(&[])
        ),
        by_kind,
    )
    .await;

    // 9. The first ids, and a LIMIT the scan may stop early for.
    let first_three: Vec<String> = sorted_ids(&scope).into_iter().take(3).collect();
    ask.expect(
        format!("SELECT id FROM s.things{} ORDER BY id LIMIT 3", w(&[])),
        column(first_three),
    )
    .await;
    ask.expect(
        format!(
            "SELECT count(*) FROM (SELECT id FROM s.things{} LIMIT 5) AS l",
            w(&[])
        ),
        single(scope.len().min(5)),
    )
    .await;

    // A record's own id.
    if case.nested {
        // 8. The path column, not the records' id, names the group.
        let count_of = |g: &str| {
            case.groups
                .iter()
                .find(|(name, _)| name.as_str() == g)
                .map_or(0, |(_, t)| t.len())
        };
        ask.expect(
            "SELECT count(*) FROM s.things WHERE group_id IN ('g1', 'g3')".to_string(),
            single(count_of("g1") + count_of("g3")),
        )
        .await;
        let per_group: Vec<Vec<String>> = case
            .groups
            .iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|(g, t)| vec![g.clone(), t.len().to_string()])
            .collect();
        ask.expect(
            "SELECT group_id, count(*) FROM s.things WHERE group_id IN ('g1', 'g2', 'g3') GROUP BY group_id ORDER BY group_id".to_string(),
            per_group,
        )
        .await;
        let t1_rows: Vec<Vec<String>> = case
            .groups
            .iter()
            .filter(|(g, _)| g.as_str() == "g1" || g.as_str() == "g2")
            .filter(|(_, t)| t.iter().any(|t| t.id == "t1"))
            .map(|(g, _)| vec![g.clone(), "t1".to_string()])
            .collect();
        ask.expect(
            "SELECT group_id, id FROM s.things WHERE group_id IN ('g1', 'g2') AND id = 't1' ORDER BY group_id".to_string(),
            t1_rows,
        )
        .await;
        ask.expect_error(
            "SELECT count(*) FROM s.things WHERE id = 't1'".to_string(),
            "needs a value for 'group_id'",
        )
        .await;
    } else {
        ask.expect(
            "SELECT count(*) FROM s.things WHERE id = 't1'".to_string(),
            single(usize::from(scope.iter().any(|t| t.id == "t1"))),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

/// An engine with one OpenAPI source `s` over the fixture at `url`.
async fn engine(url: &str, page_size: Option<u64>) -> Result<(Engine, tempfile::TempDir), String> {
    let mut config =
        format!("[[source]]\nname = \"s\"\nkind = \"openapi\"\nspec = \"{url}/openapi.json\"\n");
    if let Some(size) = page_size {
        config.push_str(&format!("page_size = {size}\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&config, dir.path()).await?;
    Ok((engine, dir))
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("BLUELAMP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        return vec![seed];
    }
    let cases = std::env::var("BLUELAMP_FUZZ_CASES")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(24);
    (0..cases).collect()
}

#[tokio::test]
async fn sql_answers_match_the_served_data() {
    let mut failures: Vec<String> = Vec::new();
    let seeds = seeds();
    for &seed in &seeds {
        let case = Arc::new(generate(seed));
        let url = serve(openapi_document(&case), routes(&case)).await;
        let (engine, _dir) = match engine(&url, case.client_page_size).await {
            Ok(engine) => engine,
            Err(e) => {
                failures.push(format!(
                    "{}\n  the engine did not start: {e}",
                    case.describe()
                ));
                continue;
            }
        };
        let warnings = engine
            .sources()
            .into_iter()
            .find(|s| s.name == "s")
            .map(|s| s.warnings.join("; "))
            .unwrap_or_default();
        let mut ask = Asker {
            engine: &engine,
            case: &case,
            warnings,
            failures: &mut failures,
        };
        ask_everything(&mut ask).await;
    }
    assert!(
        failures.is_empty(),
        "{} mismatches over {} cases:\n\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n\n")
    );
}
