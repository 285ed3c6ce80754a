//! The OpenAPI connector against a small server of the test's own, for the
//! styles the demo force does not use: page numbers, a next link in the body,
//! and bearer, basic and query-parameter credentials.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bluelamp_engine::Identity;
use bluelamp_tests::fixtures::engine_from_text;
use bluelamp_tests::slt::rows;
use futures::TryStreamExt;
use serde_json::{Value, json};

const RECORDS: usize = 25;

const DOCUMENT: &str = r##"{
  "openapi": "3.0.3",
  "info": {"title": "styles", "version": "1"},
  "paths": {
    "/pages": {"get": {"operationId": "listPages",
      "parameters": [
        {"name": "page", "in": "query", "schema": {"type": "integer"}},
        {"name": "per_page", "in": "query", "schema": {"type": "integer", "maximum": 10}}],
      "responses": {"200": {"description": "ok", "content": {"application/json": {"schema":
        {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}}}}}}},
    "/linked": {"get": {"operationId": "listLinked",
      "responses": {"200": {"description": "ok", "content": {"application/json": {"schema":
        {"type": "object", "properties": {
          "results": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
          "next": {"type": "string", "format": "uri", "nullable": true}}}}}}}}}
  },
  "components": {"schemas": {"Item": {"type": "object", "required": ["id"],
    "properties": {"id": {"type": "integer"}, "label": {"type": "string"}}}}}
}"##;

#[derive(Clone)]
struct Auth {
    kind: &'static str,
}

fn allowed(auth: &Auth, headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match auth.kind {
        "bearer" => header == "Bearer t0ken",
        // "user:pa55" in base64
        "basic" => header == "Basic dXNlcjpwYTU1",
        "query" => query.get("key").map(String::as_str) == Some("k3y"),
        _ => false,
    }
}

fn item(n: usize) -> Value {
    json!({"id": n, "label": format!("item {n}")})
}

async fn pages(
    State(auth): State<Auth>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !allowed(&auth, &headers, &q) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let size: usize = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(10)
        .min(10);
    let items: Vec<Value> = (1..=RECORDS)
        .skip((page - 1) * size)
        .take(size)
        .map(item)
        .collect();
    axum::Json(Value::Array(items)).into_response()
}

async fn linked(
    State(auth): State<Auth>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !allowed(&auth, &headers, &q) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let from: usize = q.get("from").and_then(|p| p.parse().ok()).unwrap_or(1);
    let items: Vec<Value> = (from..=RECORDS).take(7).map(item).collect();
    let next = (from + 7 <= RECORDS).then(|| format!("/linked?from={}", from + 7));
    axum::Json(json!({"results": items, "next": next})).into_response()
}

async fn serve(kind: &'static str) -> String {
    let app = Router::new()
        .route(
            "/openapi.json",
            get(|| async { ([("content-type", "application/json")], DOCUMENT) }),
        )
        .route("/pages", get(pages))
        .route("/linked", get(linked))
        .with_state(Auth { kind });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

async fn ids(auth: &str, url: &str, table: &str) -> Result<Vec<String>, String> {
    let config = format!(
        "[[source]]\nname = \"s\"\nkind = \"openapi\"\nspec = \"{url}/openapi.json\"\nauth = {auth}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&config, dir.path()).await?;
    let session = engine.session(Identity::new("test", "test"));
    let output = session
        .sql(&format!("SELECT id FROM s.{table} ORDER BY id"))
        .await
        .map_err(|e| e.message)?;
    let batches: Vec<_> = output
        .stream
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows(&batches)
        .unwrap()
        .into_iter()
        .map(|r| r[0].clone())
        .collect())
}

fn all() -> Vec<String> {
    (1..=RECORDS).map(|n| n.to_string()).collect()
}

#[tokio::test]
async fn page_numbers_and_next_links_with_each_credential() {
    for (kind, auth) in [
        ("bearer", r#"{ type = "bearer", token = "t0ken" }"#),
        (
            "basic",
            r#"{ type = "basic", username = "user", password = "pa55" }"#,
        ),
        (
            "query",
            r#"{ type = "api_key", name = "key", value = "k3y", in = "query" }"#,
        ),
    ] {
        let url = serve(kind).await;
        assert_eq!(
            ids(auth, &url, "pages").await.unwrap(),
            all(),
            "{kind}: page numbers"
        );
        assert_eq!(
            ids(auth, &url, "linked").await.unwrap(),
            all(),
            "{kind}: next links"
        );
    }
}

#[tokio::test]
async fn wrong_credentials_are_refused_without_echoing_them() {
    let url = serve("bearer").await;
    let err = ids(
        r#"{ type = "bearer", token = "N0t-The-T0ken" }"#,
        &url,
        "pages",
    )
    .await
    .unwrap_err();
    assert!(err.contains("GET /pages: HTTP 401"), "{err}");
    assert!(!err.contains("N0t-The-T0ken"), "{err}");
}
