//! The OpenAPI connector against small fixture servers of the test's own, each
//! serving a document shape found in real suppliers' documents: a path
//! parameter named like a field of the records, a single object read by key,
//! pagination signs the document gives no way to follow, `has_more` with
//! `starting_after`, a `next_page` token, a cursor in a response header, a
//! range parameter named like a column, an `allOf` paging wrapper and `oneOf`
//! list items.
//!
//! Every test compares the SQL answer with the answer computed directly from
//! the data the fixture served (the oracle), so a wrong behaviour (a path
//! parameter confused with a record field, an object turned into a list, a
//! first page taken for the whole answer, a bound pushed as an equality) gives
//! a different answer, not merely a different plan.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bluelamp_engine::{Engine, ErrorKind, Identity, QueryError};
use bluelamp_tests::fixtures::engine_from_text;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// An OpenAPI 3.0 document with these paths and component schemas.
fn document(paths: Value, schemas: Value) -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "shapes", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas}
    })
}

/// A `responses` object with a JSON `200` of this schema.
fn ok(schema: Value) -> Value {
    json!({"200": {"description": "ok", "content": {"application/json": {"schema": schema}}}})
}

/// A query parameter.
fn query_param(name: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "schema": schema})
}

/// A required text path parameter.
fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

/// A `$ref` to a component schema.
fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Serves `routes` plus `document` at `/openapi.json` on a free loopback
/// port; returns the server's base URL.
async fn serve(document: Value, routes: Router) -> String {
    bluelamp_tests::fixtures::serve_openapi(document, routes).await
}

/// An engine with one OpenAPI source `s` over the fixture at `url`.
async fn engine(url: &str) -> (Engine, tempfile::TempDir) {
    let config =
        format!("[[source]]\nname = \"s\"\nkind = \"openapi\"\nspec = \"{url}/openapi.json\"\n");
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&config, dir.path()).await.unwrap();
    (engine, dir)
}

async fn query(engine: &Engine, sql: &str) -> Result<Vec<Vec<String>>, QueryError> {
    let session = engine.session(Identity::new("test", "test"));
    bluelamp_tests::slt::try_session_rows(&session, sql).await
}

/// The rows of a query that must succeed.
async fn answer(engine: &Engine, sql: &str) -> Vec<Vec<String>> {
    query(engine, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The single value of a query that must succeed.
async fn one(engine: &Engine, sql: &str) -> String {
    let got = answer(engine, sql).await;
    assert_eq!(got.len(), 1, "{sql}: {got:?}");
    got[0][0].clone()
}

/// The error of a query that must fail.
async fn failure(engine: &Engine, sql: &str) -> QueryError {
    match query(engine, sql).await {
        Ok(got) => panic!("{sql}: expected an error, got {got:?}"),
        Err(e) => e,
    }
}

/// A table's column names, in order.
async fn columns(engine: &Engine, table: &str) -> Vec<String> {
    answer(
        engine,
        &format!(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 's' AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    )
    .await
    .into_iter()
    .map(|r| r[0].clone())
    .collect()
}

fn param<T: std::str::FromStr>(q: &HashMap<String, String>, name: &str) -> Option<T> {
    q.get(name).and_then(|v| v.parse().ok())
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message.to_string()).into_response()
}

// ---------------------------------------------------------------------------
// 1. A path parameter named like a field of the records
// ---------------------------------------------------------------------------

const ARTISTS: [&str; 3] = ["a1", "a2", "a3"];

/// An artist's top tracks: (track id, name). No track id is an artist id.
fn top_tracks(artist: &str) -> Vec<(String, String)> {
    (1..=4)
        .map(|n| (format!("trk-{artist}-{n}"), format!("Song {n} by {artist}")))
        .collect()
}

async fn artist_top_tracks(Path(artist): Path<String>) -> Response {
    if !ARTISTS.contains(&artist.as_str()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let tracks: Vec<Value> = top_tracks(&artist)
        .into_iter()
        .map(|(id, name)| json!({"id": id, "name": name}))
        .collect();
    axum::Json(json!({"tracks": tracks})).into_response()
}

#[tokio::test]
async fn a_path_parameter_named_like_a_record_field_gets_its_own_column() {
    let doc = document(
        json!({
            "/artists/{id}/top-tracks": {"get": {
                "operationId": "getArtistTopTracks",
                "parameters": [path_param("id")],
                "responses": ok(json!({"type": "object", "properties": {
                    "tracks": {"type": "array", "items": schema_ref("Track")}}}))
            }}
        }),
        json!({
            "Track": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"}}}
        }),
    );
    let routes = Router::new().route("/artists/{id}/top-tracks", get(artist_top_tracks));
    let url = serve(doc, routes).await;
    let (engine, _dir) = engine(&url).await;

    // The path's {id} is the column artist_id; the records keep their own id.
    assert_eq!(
        columns(&engine, "artist_top_tracks").await,
        ["id", "name", "artist_id"]
    );

    let got = answer(
        &engine,
        "SELECT id, name FROM s.artist_top_tracks WHERE artist_id = 'a1' ORDER BY id",
    )
    .await;
    let mut want: Vec<Vec<String>> = top_tracks("a1")
        .into_iter()
        .map(|(id, name)| vec![id, name])
        .collect();
    want.sort();
    assert_eq!(got, want);

    // A value for the records' own id is not a value for the path.
    let e = failure(
        &engine,
        "SELECT count(*) FROM s.artist_top_tracks WHERE id = 'a1'",
    )
    .await;
    assert!(e.message.contains("needs a value for 'artist_id'"), "{e}");

    // Each row carries the artist it was read under.
    let got = answer(
        &engine,
        "SELECT artist_id, id FROM s.artist_top_tracks WHERE artist_id IN ('a1', 'a2') ORDER BY artist_id, id",
    )
    .await;
    let mut want: Vec<Vec<String>> = ["a1", "a2"]
        .iter()
        .flat_map(|artist| {
            top_tracks(artist)
                .into_iter()
                .map(move |(id, _)| vec![(*artist).to_string(), id])
        })
        .collect();
    want.sort();
    assert_eq!(got.len(), 8, "{got:?}");
    assert_eq!(got, want);

    // The path column and the records' id together name one track.
    let (id, name) = top_tracks("a1")[2].clone();
    let got = answer(
        &engine,
        &format!("SELECT * FROM s.artist_top_tracks WHERE artist_id = 'a1' AND id = '{id}'"),
    )
    .await;
    assert_eq!(got, vec![vec![id, name, "a1".to_string()]]);
}

// ---------------------------------------------------------------------------
// 2. A single object read by key is a lookup table
// ---------------------------------------------------------------------------

/// The served playlists; `None` for a key that does not exist.
fn playlist(id: &str) -> Option<Value> {
    let tracks = match id {
        "p1" => 2,
        "p2" => 3,
        "p3" => 1,
        _ => return None,
    };
    let tracks: Vec<Value> = (1..=tracks)
        .map(|t| json!({"title": format!("{id} track {t}")}))
        .collect();
    Some(json!({"id": id, "name": format!("Playlist {id}"), "tracks": tracks}))
}

async fn get_playlist(Path(id): Path<String>) -> Response {
    match playlist(&id) {
        Some(p) => axum::Json(p).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no such playlist"})),
        )
            .into_response(),
    }
}

async fn get_album(Path(id): Path<String>) -> Response {
    if id == "al1" {
        axum::Json(json!({"id": "al1", "name": "First album"})).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no such album"})),
        )
            .into_response()
    }
}

#[tokio::test]
async fn a_single_object_by_key_is_a_lookup_table_not_a_list_of_its_array() {
    let mut playlist_responses = ok(schema_ref("Playlist"));
    playlist_responses["404"] = json!({"description": "no such playlist"});
    let doc = document(
        json!({
            "/playlists/{playlist_id}": {"get": {
                "operationId": "getPlaylist",
                "parameters": [path_param("playlist_id")],
                "responses": playlist_responses
            }},
            "/albums/{id}": {"get": {
                "operationId": "getAlbum",
                "parameters": [path_param("id")],
                "responses": ok(schema_ref("Album"))
            }}
        }),
        json!({
            "Playlist": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "tracks": {"type": "array", "items": {"type": "object", "properties": {
                    "title": {"type": "string"}}}}}},
            "Album": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"}}}
        }),
    );
    let routes = Router::new()
        .route("/playlists/{playlist_id}", get(get_playlist))
        .route("/albums/{id}", get(get_album));
    let url = serve(doc, routes).await;
    let (engine, _dir) = engine(&url).await;

    assert_eq!(
        columns(&engine, "playlist").await,
        ["id", "name", "tracks", "playlist_id"]
    );

    // A key the server answers 404 for is no row, because 404 is documented.
    let got = answer(
        &engine,
        "SELECT id, name FROM s.playlist WHERE playlist_id IN ('p1', 'p2', 'nope') ORDER BY id",
    )
    .await;
    let want: Vec<Vec<String>> = ["p1", "p2"]
        .iter()
        .map(|id| {
            let p = playlist(id).unwrap();
            vec![
                p["id"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            ]
        })
        .collect();
    assert_eq!(got, want);

    // One row per key, whose tracks are a list: not one row per track.
    assert_eq!(
        one(
            &engine,
            "SELECT count(*) FROM s.playlist WHERE playlist_id = 'p2'"
        )
        .await,
        "1"
    );
    let served_tracks = playlist("p2").unwrap()["tracks"].as_array().unwrap().len();
    assert_eq!(
        one(
            &engine,
            "SELECT array_length(tracks) FROM s.playlist WHERE playlist_id = 'p2'"
        )
        .await,
        served_tracks.to_string()
    );
    assert_eq!(
        answer(
            &engine,
            "SELECT playlist_id, id FROM s.playlist WHERE playlist_id = 'p3'"
        )
        .await,
        [["p3", "p3"]]
    );

    // Without a documented 404, a missing key is an error, not an empty answer.
    // The album's own id clashes with the path's {id}, so the path is album_id.
    assert_eq!(
        one(&engine, "SELECT name FROM s.album WHERE album_id = 'al1'").await,
        "First album"
    );
    let e = failure(&engine, "SELECT name FROM s.album WHERE album_id = 'gone'").await;
    assert!(e.message.contains("HTTP 404"), "{e}");
}

// ---------------------------------------------------------------------------
// 3. Pagination that cannot be followed is refused
// ---------------------------------------------------------------------------

const ITEMS: usize = 25;
const LOGS: usize = 15;
const LOGS_PER_PAGE: usize = 5;

fn record(n: usize) -> Value {
    json!({"id": n, "label": format!("record {n}")})
}

async fn list_events() -> Response {
    let data: Vec<Value> = (1..=10).map(record).collect();
    axum::Json(json!({"data": data, "has_more": true})).into_response()
}

/// The first 10 of 25 items, and the total: there is no way to ask for more.
async fn list_items() -> Response {
    let data: Vec<Value> = (1..=ITEMS).take(10).map(record).collect();
    axum::Json(json!({"data": data, "total": ITEMS})).into_response()
}

/// Pages of 5 logs, each linking to the next with a relative URL.
async fn list_logs(Query(q): Query<HashMap<String, String>>) -> Response {
    let page = param::<usize>(&q, "page").unwrap_or(1);
    if page == 0 {
        return bad_request("pages count from 1");
    }
    let results: Vec<Value> = (1..=LOGS)
        .skip((page - 1) * LOGS_PER_PAGE)
        .take(LOGS_PER_PAGE)
        .map(record)
        .collect();
    let next = (page * LOGS_PER_PAGE < LOGS).then(|| format!("/logs?page={}", page + 1));
    axum::Json(json!({"results": results, "next": next})).into_response()
}

#[tokio::test]
async fn pagination_that_cannot_be_followed_is_refused_not_cut_short() {
    let doc = document(
        json!({
            "/events": {"get": {
                "operationId": "listEvents",
                "responses": ok(json!({"type": "object", "properties": {
                    "data": {"type": "array", "items": schema_ref("Record")},
                    "has_more": {"type": "boolean"}}}))
            }},
            "/items": {"get": {
                "operationId": "listItems",
                "responses": ok(json!({"type": "object", "properties": {
                    "data": {"type": "array", "items": schema_ref("Record")},
                    "total": {"type": "integer"}}}))
            }},
            "/logs": {"get": {
                "operationId": "listLogs",
                "responses": ok(json!({"type": "object", "properties": {
                    "results": {"type": "array", "items": schema_ref("Record")},
                    "next": {"type": "string", "nullable": true}}}))
            }}
        }),
        json!({
            "Record": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "integer"},
                "label": {"type": "string"}}}
        }),
    );
    let routes = Router::new()
        .route("/events", get(list_events))
        .route("/items", get(list_items))
        .route("/logs", get(list_logs));
    let url = serve(doc, routes).await;
    let (engine, _dir) = engine(&url).await;

    // `has_more` with no parameter to ask for more: not a table, and said so.
    let status = engine
        .sources()
        .into_iter()
        .find(|s| s.name == "s")
        .unwrap();
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.contains("GET /events") && w.contains("has_more")),
        "{:?}",
        status.warnings
    );
    assert_eq!(status.tables, 2, "items and logs");
    let e = failure(&engine, "SELECT count(*) FROM s.events").await;
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(e.message.contains("not found"), "{e}");

    // A total larger than the page, with no way to ask for the rest: the
    // query fails rather than count the first page.
    let e = failure(&engine, "SELECT count(*) FROM s.items").await;
    assert!(e.message.contains("shows there is more"), "{e}");
    assert!(e.message.contains("items"), "{e}");

    // A `next` without a format is followed as a (relative) link.
    assert_eq!(
        one(&engine, "SELECT count(*) FROM s.logs").await,
        LOGS.to_string()
    );
    let ids: Vec<String> = answer(&engine, "SELECT id FROM s.logs ORDER BY id")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let want: Vec<String> = (1..=LOGS).map(|n| n.to_string()).collect();
    assert_eq!(ids, want);
}

// ---------------------------------------------------------------------------
// 4. has_more and starting_after
// ---------------------------------------------------------------------------

const CHARGES: usize = 37;

/// The served charges, sorted by id: (id, amount).
fn charges() -> Vec<(String, i64)> {
    (1..=CHARGES)
        .map(|n| (format!("ch_{n:03}"), (n as i64 * 137) % 1000 + 1))
        .collect()
}

async fn list_charges(
    State(seen): State<Arc<AtomicUsize>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    seen.fetch_add(1, Ordering::SeqCst);
    let limit = param::<usize>(&q, "limit").unwrap_or(10).clamp(1, 10);
    let after = q.get("starting_after");
    let rest: Vec<(String, i64)> = charges()
        .into_iter()
        .filter(|(id, _)| after.is_none_or(|a| id > a))
        .collect();
    let data: Vec<Value> = rest
        .iter()
        .take(limit)
        .map(|(id, amount)| json!({"id": id, "amount": amount}))
        .collect();
    axum::Json(json!({"data": data, "has_more": rest.len() > limit})).into_response()
}

#[tokio::test]
async fn has_more_with_starting_after_reads_every_page() {
    let doc = document(
        json!({
            "/charges": {"get": {
                "operationId": "listCharges",
                "parameters": [
                    query_param("limit", json!({"type": "integer", "maximum": 10})),
                    query_param("starting_after", json!({"type": "string"}))],
                "responses": ok(json!({"type": "object", "properties": {
                    "data": {"type": "array", "items": schema_ref("Charge")},
                    "has_more": {"type": "boolean"}}}))
            }}
        }),
        json!({
            "Charge": {"type": "object", "required": ["id", "amount"], "properties": {
                "id": {"type": "string"},
                "amount": {"type": "integer"}}}
        }),
    );
    let seen = Arc::new(AtomicUsize::new(0));
    let routes = Router::new()
        .route("/charges", get(list_charges))
        .with_state(Arc::clone(&seen));
    let url = serve(doc, routes).await;
    let (engine, _dir) = engine(&url).await;

    assert_eq!(
        one(&engine, "SELECT count(*) FROM s.charges").await,
        CHARGES.to_string()
    );
    // At most 10 a page: 37 charges take at least 4 requests.
    assert!(
        seen.load(Ordering::SeqCst) >= CHARGES.div_ceil(10),
        "{} requests",
        seen.load(Ordering::SeqCst)
    );
    let sum: i64 = charges().iter().map(|(_, amount)| amount).sum();
    assert_eq!(
        one(&engine, "SELECT sum(amount) FROM s.charges").await,
        sum.to_string()
    );
    let ids: Vec<String> = answer(&engine, "SELECT id FROM s.charges ORDER BY id")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let want: Vec<String> = charges().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, want);
}

// ---------------------------------------------------------------------------
// 5. A next_page token that is not a URL
// ---------------------------------------------------------------------------

/// The page a token such as `tok-3` in parameter `param` asks for (1 without
/// one); an unknown token is refused, so a token misused as a URL shows.
#[allow(
    clippy::result_large_err,
    reason = "the refusal is the handler's answer"
)]
fn page_of(q: &HashMap<String, String>, param: &str, prefix: &str) -> Result<usize, Response> {
    match q.get(param) {
        None => Ok(1),
        Some(token) => match token
            .strip_prefix(prefix)
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) if n >= 1 => Ok(n),
            _ => Err(bad_request(&format!("unknown {param}"))),
        },
    }
}

const TICKETS: usize = 23;
const TICKETS_PER_PAGE: usize = 10;

async fn list_tickets(
    State(seen): State<Arc<AtomicUsize>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    seen.fetch_add(1, Ordering::SeqCst);
    let page = match page_of(&q, "page_token", "tok-") {
        Ok(page) => page,
        Err(refused) => return refused,
    };
    let tickets: Vec<Value> = (1..=TICKETS)
        .skip((page - 1) * TICKETS_PER_PAGE)
        .take(TICKETS_PER_PAGE)
        .map(|n| json!({"id": n, "subject": format!("ticket {n}")}))
        .collect();
    let next = (page * TICKETS_PER_PAGE < TICKETS).then(|| format!("tok-{}", page + 1));
    axum::Json(json!({"tickets": tickets, "next_page": next})).into_response()
}

#[tokio::test]
async fn a_next_page_token_is_passed_back_not_followed_as_a_link() {
    let doc = document(
        json!({
            "/tickets": {"get": {
                "operationId": "listTickets",
                "parameters": [
                    query_param("page_token", json!({"type": "string"})),
                    query_param("per_page", json!({"type": "integer"}))],
                "responses": ok(json!({"type": "object", "properties": {
                    "tickets": {"type": "array", "items": schema_ref("Ticket")},
                    "next_page": {"type": "string", "nullable": true}}}))
            }}
        }),
        json!({
            "Ticket": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "integer"},
                "subject": {"type": "string"}}}
        }),
    );
    let seen = Arc::new(AtomicUsize::new(0));
    let routes = Router::new()
        .route("/tickets", get(list_tickets))
        .with_state(Arc::clone(&seen));
    let url = serve(doc, routes).await;
    let (engine, _dir) = engine(&url).await;

    assert_eq!(
        one(&engine, "SELECT count(*) FROM s.tickets").await,
        TICKETS.to_string()
    );
    assert!(seen.load(Ordering::SeqCst) >= TICKETS.div_ceil(TICKETS_PER_PAGE));
    let ids: Vec<String> = answer(&engine, "SELECT id FROM s.tickets ORDER BY id")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let want: Vec<String> = (1..=TICKETS).map(|n| n.to_string()).collect();
    assert_eq!(ids, want);
}

// ---------------------------------------------------------------------------
// 6. A cursor in a response header
// ---------------------------------------------------------------------------

const READINGS: usize = 21;
const READINGS_PER_PAGE: usize = 8;

fn reading(n: usize) -> (String, String) {
    (n.to_string(), format!("r{n}"))
}

/// Pages of 8 readings; the next page's cursor is in `X-Next-Cursor`, absent
/// on the last page.
async fn list_readings(Query(q): Query<HashMap<String, String>>) -> Response {
    let page = match page_of(&q, "cursor", "cur-") {
        Ok(page) => page,
        Err(refused) => return refused,
    };
    let body: Vec<Value> = (1..=READINGS)
        .skip((page - 1) * READINGS_PER_PAGE)
        .take(READINGS_PER_PAGE)
        .map(|n| json!({"id": n, "value": format!("r{n}")}))
        .collect();
    let mut response = axum::Json(Value::Array(body)).into_response();
    if page * READINGS_PER_PAGE < READINGS {
        response.headers_mut().insert(
            "x-next-cursor",
            HeaderValue::from_str(&format!("cur-{}", page + 1)).unwrap(),
        );
    }
    response
}

#[tokio::test]
async fn a_cursor_in_a_response_header_reads_every_page() {
    let doc = document(
        json!({
            "/readings": {"get": {
                "operationId": "listReadings",
                "parameters": [query_param("cursor", json!({"type": "string"}))],
                "responses": {"200": {
                    "description": "ok",
                    "headers": {"X-Next-Cursor": {
                        "description": "The cursor of the next page; absent on the last",
                        "schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": {
                        "type": "array", "items": schema_ref("Reading")}}}}}
            }}
        }),
        json!({
            "Reading": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "integer"},
                "value": {"type": "string"}}}
        }),
    );
    let routes = Router::new().route("/readings", get(list_readings));
    let url = serve(doc, routes).await;
    let (engine, _dir) = engine(&url).await;

    let got = answer(&engine, "SELECT id, value FROM s.readings ORDER BY id").await;
    let want: Vec<Vec<String>> = (1..=READINGS)
        .map(|n| {
            let (id, value) = reading(n);
            vec![id, value]
        })
        .collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------
// 7. A range parameter named like a column
// ---------------------------------------------------------------------------

const SESSIONS: i64 = 20;

/// The served sessions, in start order: (id, start time).
fn sessions() -> Vec<(String, String)> {
    let first: DateTime<Utc> = DateTime::parse_from_rfc3339("2024-05-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    (0..SESSIONS)
        .map(|n| {
            let start = first + chrono::Duration::minutes(37 * n);
            (
                format!("s{n:02}"),
                start.to_rfc3339_opts(SecondsFormat::Secs, true),
            )
        })
        .collect()
}

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// As documented: `start_time` keeps only sessions that start strictly after it.
async fn list_sessions(Query(q): Query<HashMap<String, String>>) -> Response {
    let after = match q.get("start_time") {
        None => None,
        Some(text) => match DateTime::parse_from_rfc3339(text) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => return bad_request("start_time is not an RFC 3339 date-time"),
        },
    };
    let body: Vec<Value> = sessions()
        .into_iter()
        .filter(|(_, start)| after.is_none_or(|a| instant(start) > a))
        .map(|(id, start)| json!({"id": id, "start_time": start}))
        .collect();
    axum::Json(Value::Array(body)).into_response()
}

#[tokio::test]
async fn a_range_parameter_named_like_a_column_is_not_an_equality() {
    let doc = document(
        json!({
            "/sessions": {"get": {
                "operationId": "listSessions",
                "parameters": [{
                    "name": "start_time", "in": "query",
                    "description": "Only sessions that start after this time",
                    "schema": {"type": "string", "format": "date-time"}}],
                "responses": ok(json!({"type": "array", "items": schema_ref("Session")}))
            }}
        }),
        json!({
            "Session": {"type": "object", "required": ["id", "start_time"], "properties": {
                "id": {"type": "string"},
                "start_time": {"type": "string", "format": "date-time"}}}
        }),
    );
    let routes = Router::new().route("/sessions", get(list_sessions));
    let url = serve(doc, routes).await;
    let (engine, _dir) = engine(&url).await;

    let all = sessions();
    let t = all[7].1.clone();
    let at = instant(&t);

    // Pushed as `start_time=t`, the server would answer the sessions after t.
    assert_eq!(
        one(
            &engine,
            &format!("SELECT count(*) FROM s.sessions WHERE start_time = '{t}'")
        )
        .await,
        "1"
    );
    let after = all.iter().filter(|(_, s)| instant(s) > at).count();
    assert_eq!(
        one(
            &engine,
            &format!("SELECT count(*) FROM s.sessions WHERE start_time > '{t}'")
        )
        .await,
        after.to_string()
    );
    let from = all.iter().filter(|(_, s)| instant(s) >= at).count();
    assert_eq!(
        one(
            &engine,
            &format!("SELECT count(*) FROM s.sessions WHERE start_time >= '{t}'")
        )
        .await,
        from.to_string()
    );
    let ids: Vec<String> = answer(
        &engine,
        &format!("SELECT id FROM s.sessions WHERE start_time > '{t}' ORDER BY id"),
    )
    .await
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    let want: Vec<String> = all
        .iter()
        .filter(|(_, s)| instant(s) > at)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(ids, want);
}

// ---------------------------------------------------------------------------
// 8. An allOf paging wrapper
// ---------------------------------------------------------------------------

const FOLDERS: usize = 12;
const FOLDERS_PER_PAGE: usize = 5;

fn folder_name(n: usize) -> String {
    format!("folder {n:02}")
}

async fn list_folders(Query(q): Query<HashMap<String, String>>) -> Response {
    let offset = param::<usize>(&q, "offset").unwrap_or(0);
    let limit = param::<usize>(&q, "limit")
        .unwrap_or(FOLDERS_PER_PAGE)
        .clamp(1, FOLDERS_PER_PAGE);
    let entries: Vec<Value> = (1..=FOLDERS)
        .skip(offset)
        .take(limit)
        .map(|n| json!({"id": format!("f{n}"), "name": folder_name(n)}))
        .collect();
    axum::Json(json!({
        "total_count": FOLDERS,
        "offset": offset,
        "limit": limit,
        "entries": entries
    }))
    .into_response()
}

#[tokio::test]
async fn an_all_of_paging_wrapper_pages_by_offset() {
    let doc = document(
        json!({
            "/folders": {"get": {
                "operationId": "listFolders",
                "parameters": [
                    query_param("offset", json!({"type": "integer"})),
                    query_param("limit", json!({"type": "integer", "maximum": 5}))],
                "responses": ok(json!({"allOf": [
                    schema_ref("Paging"),
                    {"type": "object", "properties": {
                        "entries": {"type": "array", "items": schema_ref("Folder")}}}]}))
            }}
        }),
        json!({
            "Paging": {"type": "object", "properties": {
                "total_count": {"type": "integer"},
                "offset": {"type": "integer"},
                "limit": {"type": "integer"}}},
            "Folder": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"}}}
        }),
    );
    let routes = Router::new().route("/folders", get(list_folders));
    let url = serve(doc, routes).await;
    let (engine, _dir) = engine(&url).await;

    assert_eq!(
        one(&engine, "SELECT count(*) FROM s.folders").await,
        FOLDERS.to_string()
    );
    let names: Vec<String> = answer(&engine, "SELECT name FROM s.folders ORDER BY name")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let want: Vec<String> = (1..=FOLDERS).map(folder_name).collect();
    assert_eq!(names, want);
}

// ---------------------------------------------------------------------------
// 9. oneOf list items
// ---------------------------------------------------------------------------

/// The served channels: text channels have a topic, voice channels a bitrate.
fn channels() -> Vec<Value> {
    vec![
        json!({"id": "c1", "type": "text", "topic": "general chat"}),
        json!({"id": "c2", "type": "voice", "bitrate": 64000}),
        json!({"id": "c3", "type": "text", "topic": "announcements"}),
        json!({"id": "c4", "type": "voice", "bitrate": 96000}),
        json!({"id": "c5", "type": "text", "topic": "random"}),
    ]
}

async fn list_channels() -> Response {
    axum::Json(Value::Array(channels())).into_response()
}

#[tokio::test]
async fn one_of_list_items_make_a_table_of_their_fields() {
    let doc = document(
        json!({
            "/channels": {"get": {
                "operationId": "listChannels",
                "responses": ok(json!({"type": "array", "items": {"oneOf": [
                    schema_ref("TextChannel"),
                    schema_ref("VoiceChannel")]}}))
            }}
        }),
        json!({
            "TextChannel": {"type": "object", "required": ["id", "type"], "properties": {
                "id": {"type": "string"},
                "type": {"type": "string", "enum": ["text"]},
                "topic": {"type": "string"}}},
            "VoiceChannel": {"type": "object", "required": ["id", "type"], "properties": {
                "id": {"type": "string"},
                "type": {"type": "string", "enum": ["voice"]},
                "bitrate": {"type": "integer"}}}
        }),
    );
    let routes = Router::new().route("/channels", get(list_channels));
    let url = serve(doc, routes).await;
    let (engine, _dir) = engine(&url).await;

    let served = channels();
    assert_eq!(
        one(&engine, "SELECT count(*) FROM s.channels").await,
        served.len().to_string()
    );
    let ids: Vec<String> = answer(&engine, "SELECT id FROM s.channels ORDER BY id")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let mut want: Vec<String> = served
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(ids, want);

    // A field of one alternative is a column too.
    let text = served.iter().find(|c| c["id"] == "c3").unwrap();
    assert_eq!(
        one(&engine, "SELECT topic FROM s.channels WHERE id = 'c3'").await,
        text["topic"].as_str().unwrap()
    );
}

/// Headers the document requires: sent when configured (`{uuid}` new for
/// each request), and a warning naming them when not.
#[tokio::test]
async fn required_headers_are_sent_when_configured_and_named_when_not() {
    let header = |name: &str| json!({"name": name, "in": "header", "required": true, "schema": {"type": "string"}});
    let doc = document(
        json!({"/notes": {"get": {"operationId": "listNotes",
            "parameters": [header("X-Request-ID"), header("X-Client")],
            "responses": ok(json!({"type": "array", "items": schema_ref("Note")}))}}}),
        json!({"Note": {"type": "object", "properties": {"id": {"type": "integer"}}}}),
    );
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let notes = get(
        |State(seen): State<Arc<std::sync::Mutex<Vec<String>>>>, headers: axum::http::HeaderMap| async move {
            let id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
            let client = headers.get("x-client").and_then(|v| v.to_str().ok());
            match (id, client) {
                (Some(id), Some("bluelamp-test")) => {
                    seen.lock().unwrap().push(id.to_string());
                    axum::Json(json!([{"id": 1}, {"id": 2}])).into_response()
                }
                _ => StatusCode::BAD_REQUEST.into_response(),
            }
        },
    );
    let url = serve(
        doc,
        Router::new()
            .route("/notes", notes)
            .with_state(Arc::clone(&seen)),
    )
    .await;

    // Not configured: a warning names the header and how to send it.
    let (engine, _dir) = engine(&url).await;
    let status = engine
        .sources()
        .into_iter()
        .find(|s| s.name == "s")
        .unwrap();
    for name in ["X-Request-ID", "X-Client"] {
        assert!(
            status.warnings.iter().any(|w| w
                .starts_with("GET /notes: the document requires header")
                && w.contains(&format!("'{name}'"))),
            "{:?}",
            status.warnings
        );
    }

    // Configured: every request carries them, with a fresh id each time.
    let config = format!(
        "[[source]]\nname = \"s\"\nkind = \"openapi\"\nspec = \"{url}/openapi.json\"\nheaders = {{ \"X-Request-ID\" = \"{{uuid}}\", \"X-Client\" = \"bluelamp-test\" }}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&config, dir.path()).await.unwrap();
    let status = engine
        .sources()
        .into_iter()
        .find(|s| s.name == "s")
        .unwrap();
    assert!(
        !status
            .warnings
            .iter()
            .any(|w| w.contains("requires header")),
        "{:?}",
        status.warnings
    );
    assert_eq!(one(&engine, "SELECT count(*) FROM s.notes").await, "2");
    assert_eq!(one(&engine, "SELECT sum(id) FROM s.notes").await, "3");
    let ids = seen.lock().unwrap().clone();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(ids[0], ids[1]);
    assert!(ids.iter().all(|id| uuid_like(id)), "{ids:?}");

    // A bad header is a config error naming it.
    let bad = format!(
        "[[source]]\nname = \"s\"\nkind = \"openapi\"\nspec = \"{url}/openapi.json\"\nheaders = {{ \"X-Request-ID\" = \"{{nonce}}\" }}\n"
    );
    let err = engine_from_text(&bad, dir.path()).await.unwrap_err();
    assert!(
        err.contains("headers.X-Request-ID") || err.contains("unknown placeholder '{nonce}'"),
        "{err}"
    );
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36 && text.chars().filter(|c| *c == '-').count() == 4
}

/// A document split over several files, fetched over HTTP: paths, operations
/// and schemas in sibling files, referring back to the root and to each
/// other; a missing file is named apart from a reference to nothing.
#[tokio::test]
async fn a_multi_file_document_over_http_is_read_whole() {
    let root = "openapi: 3.1.0\ninfo: {title: split, version: '1'}\npaths:\n  /things:\n    $ref: paths/things.yaml\n  /lost:\n    get:\n      $ref: paths/missing.yaml\ncomponents:\n  schemas:\n    Code: {type: string}\n";
    let things = "get:\n  operationId: listThings\n  responses:\n    '200':\n      description: ok\n      content:\n        application/json:\n          schema:\n            type: array\n            items: {$ref: '../schemas/thing.yaml#/Thing'}\n";
    let thing = "Thing:\n  type: object\n  required: [id]\n  properties:\n    id: {type: integer}\n    code: {$ref: '../openapi.yaml#/components/schemas/Code'}\n    parent: {$ref: '#/Thing'}\n    part: {$ref: './part.json'}\n";
    let part = r##"{"type": "object", "properties": {"label": {"type": "string"}, "whole": {"$ref": "thing.yaml#/Thing"}}}"##;
    let text = |body: &'static str| get(move || async move { body });
    let data = get(|| async {
        axum::Json(json!([
            {"id": 1, "code": "A", "part": {"label": "x"}},
            {"id": 2, "code": "B", "parent": {"id": 1}},
            {"id": 3, "code": "A"}
        ]))
    });
    let app = Router::new()
        .route("/api/openapi.yaml", text(root))
        .route("/api/paths/things.yaml", text(things))
        .route("/api/schemas/thing.yaml", text(thing))
        .route("/api/schemas/part.json", text(part))
        .route("/api/things", data);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let config = format!(
        "[[source]]\nname = \"s\"\nkind = \"openapi\"\nspec = \"{url}/api/openapi.yaml\"\nbase_url = \"{url}/api\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&config, dir.path()).await.unwrap();
    let status = engine
        .sources()
        .into_iter()
        .find(|s| s.name == "s")
        .unwrap();
    assert!(
        status.warnings.iter().any(|w| w.starts_with(&format!(
            "external file {url}/api/paths/missing.yaml (referred to from {url}/api/openapi.yaml) cannot be used"
        ))),
        "{:?}",
        status.warnings
    );
    assert_eq!(status.tables, 1, "{:?}", status.warnings);
    assert_eq!(
        answer(
            &engine,
            "SELECT id, code, part['label'] FROM s.things ORDER BY id"
        )
        .await,
        [["1", "A", "x"], ["2", "B", "NULL"], ["3", "A", "NULL"]]
    );
    assert_eq!(
        one(
            &engine,
            "SELECT count(*) FROM s.things WHERE parent IS NOT NULL"
        )
        .await,
        "1"
    );
}

/// Two operations that make the same name: a warning names both, and each
/// can be renamed or left out by its operation.
#[tokio::test]
async fn tables_with_the_same_name_are_told_apart_by_their_operation() {
    let list = |op: &str| {
        json!({"get": {"operationId": op,
            "responses": ok(json!({"type": "array", "items": schema_ref("Track")}))}})
    };
    let doc = document(
        json!({
            "/tracks": list("getTracks"),
            "/me/tracks": list("listTracks"),
            "/cases/{caseURN}/notes": {"get": {"operationId": "listNotes",
                "parameters": [path_param("caseURN")],
                "responses": ok(json!({"type": "array", "items": schema_ref("Track")}))}}
        }),
        json!({"Track": {"type": "object", "properties": {"id": {"type": "string"}}}}),
    );
    let url = serve(doc, Router::new()).await;
    let (engine, _dir) = engine(&url).await;
    let status = engine
        .sources()
        .into_iter()
        .find(|s| s.name == "s")
        .unwrap();
    assert!(
        status.warnings.iter().any(|w| w
            .contains("GET /tracks and GET /me/tracks both make a table named 'tracks'")
            && w.contains("the second is 'tracks_2'")
            && w.contains("[source.tables.\"GET /me/tracks\"]")),
        "{:?}",
        status.warnings
    );
    // The hint for a missing key quotes a mixed-case column so it runs as written.
    let e = failure(&engine, "SELECT * FROM s.notes").await;
    assert!(
        e.message.contains("add WHERE \"caseURN\" = '...'"),
        "{}",
        e.message
    );

    let config = format!(
        "[[source]]\nname = \"s\"\nkind = \"openapi\"\nspec = \"{url}/openapi.json\"\n\
         [source.tables.\"GET /tracks\"]\nrename = \"all_tracks\"\n\
         [source.tables.\"GET /me/tracks\"]\nrename = \"my_tracks\"\n\
         [source.tables.notes]\nexclude = true\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&config, dir.path()).await.unwrap();
    let status = engine
        .sources()
        .into_iter()
        .find(|s| s.name == "s")
        .unwrap();
    assert!(
        !status.warnings.iter().any(|w| w.contains("both make")),
        "{:?}",
        status.warnings
    );
    let names = answer(
        &engine,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 's' ORDER BY table_name",
    )
    .await;
    assert_eq!(names, [["all_tracks"], ["my_tracks"]]);
}

/// A server that says how many records there are, then answers a later page
/// with fewer than the first: the offsets planned from the first page would
/// skip records, so the query fails rather than answer short.
#[tokio::test]
async fn a_short_page_under_a_known_total_fails_the_query() {
    // Offset 5 answers 2 records instead of 5: records 8 to 10 are never asked for.
    let (engine, _dir) = folders_with_a_page_of(2).await;
    let e = failure(&engine, "SELECT count(*) FROM s.folders").await;
    assert!(
        e.message.contains(&format!(
            "the answer says there are {FOLDERS} records but its pages held 9"
        )),
        "{}",
        e.message
    );
    assert_eq!(e.kind, ErrorKind::Unavailable);
    // A LIMIT that the pages read satisfy is answered.
    assert_eq!(
        one(
            &engine,
            "SELECT count(*) FROM (SELECT * FROM s.folders LIMIT 5)"
        )
        .await,
        "5"
    );
}

/// The folders list, with `short` records on the page at offset 5 (5 on
/// every other), as a server that says how many records there are.
async fn folders_with_a_page_of(short: usize) -> (Engine, tempfile::TempDir) {
    let doc = document(
        json!({"/folders": {"get": {"operationId": "listFolders",
            "parameters": [
                query_param("offset", json!({"type": "integer"})),
                query_param("limit", json!({"type": "integer", "maximum": 5}))],
            "responses": ok(json!({"type": "object", "properties": {
                "total_count": {"type": "integer"},
                "entries": {"type": "array", "items": schema_ref("Folder")}}}))}}}),
        json!({"Folder": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}}),
    );
    let pages = get(move |Query(q): Query<HashMap<String, String>>| async move {
        let offset = param::<usize>(&q, "offset").unwrap_or(0);
        let limit = param::<usize>(&q, "limit").unwrap_or(5).min(5);
        let take = if offset == 5 { short } else { limit };
        let entries: Vec<Value> = (1..=FOLDERS)
            .skip(offset)
            .take(take)
            .map(|n| json!({"id": format!("f{n}")}))
            .collect();
        axum::Json(json!({"total_count": FOLDERS, "entries": entries})).into_response()
    });
    let url = serve(doc, Router::new().route("/folders", pages)).await;
    engine(&url).await
}

/// The folders scan split into `count` stripes of its pages, as a cluster
/// splits it, and each stripe's rows (or error).
async fn stripes_of_folders(engine: &Engine, count: usize) -> Vec<Result<Vec<String>, String>> {
    use bluelamp_connectors::openapi::OpenApiTableProvider;
    use bluelamp_connectors::openapi::exec::RemoteScan;
    use datafusion::execution::TaskContext;
    use datafusion::physical_plan::ExecutionPlan;
    use futures::TryStreamExt;

    let table = engine.live_table("s", "folders").await.unwrap().unwrap();
    let provider = table.downcast_ref::<OpenApiTableProvider>().unwrap();
    let scan = provider
        .rescan(&RemoteScan {
            source: "s".into(),
            table: "folders".into(),
            query: Vec::new(),
            path: Vec::new(),
            projection: None,
            limit: None,
            slice: None,
            stripe: None,
            identity: None,
        })
        .unwrap();
    let mut read = Vec::new();
    for stripe in scan.striped(count).await.unwrap() {
        assert_eq!(stripe.properties().partitioning.partition_count(), 1);
        let rows = match stripe.execute(0, Arc::new(TaskContext::default())) {
            Ok(stream) => stream.try_collect::<Vec<_>>().await,
            Err(e) => Err(e),
        };
        read.push(
            rows.map(|batches| {
                let mut ids = Vec::new();
                for batch in batches {
                    let column = batch.column_by_name("id").unwrap();
                    let strings =
                        arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8).unwrap();
                    let strings = strings
                        .as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .unwrap();
                    ids.extend(strings.iter().map(|s| s.unwrap().to_string()));
                }
                ids
            })
            .map_err(|e| e.to_string()),
        );
    }
    read
}

/// On a cluster, an offset-paged list whose first page gives a total is
/// read in stripes of pages side by side: together they are every record
/// once; a page that holds fewer records than due fails its stripe rather
/// than leave records no stripe asks for.
#[tokio::test]
async fn pages_read_in_stripes_are_every_record_once_or_an_error() {
    let (engine, _dir) = folders_with_a_page_of(5).await;
    // 12 folders, 5 a page: three pages, so three stripes even if more are asked.
    let stripes = stripes_of_folders(&engine, 8).await;
    assert_eq!(stripes.len(), 3);
    let mut ids: Vec<String> = stripes.into_iter().flat_map(Result::unwrap).collect();
    ids.sort_by_key(|id| id[1..].parse::<usize>().unwrap());
    let every: Vec<String> = (1..=FOLDERS).map(|n| format!("f{n}")).collect();
    assert_eq!(ids, every);
    // Two stripes: the first reads pages 1 and 3, the second page 2.
    let stripes = stripes_of_folders(&engine, 2).await;
    assert_eq!(stripes.len(), 2);
    assert_eq!(stripes[1].as_ref().unwrap().len(), 5);

    let (short, _dir) = folders_with_a_page_of(2).await;
    let stripes = stripes_of_folders(&short, 3).await;
    let error = stripes[1].as_ref().unwrap_err();
    assert!(
        error.contains("source 's'") && error.contains("held 2 where 5 were due"),
        "{error}"
    );
    // A server that ignores the page size would overlap the stripes.
    let (long, _dir) = folders_with_a_page_of(7).await;
    let stripes = stripes_of_folders(&long, 3).await;
    let error = stripes[1].as_ref().unwrap_err();
    assert!(error.contains("held 7 where 5 were due"), "{error}");
}
