//! `stops`: stop and search open data in the style of data.police.uk. No auth;
//! `GET /api/stops-street?page=N` answers a bare JSON array and advertises the
//! other pages in an RFC 8288 `Link` header (`rel="next"`, `"last"`, ...).

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::faults::Faults;
use super::server::{
    Params, SystemOptions, SystemRouter, drift, error, records_response, reject_unknown,
};
use crate::force::{Force, StopSearch};

const DOCUMENT: &str = include_str!("openapi/stops.json");
const PAGE_SIZE: usize = 100;

struct StopsState {
    base_url: String,
    records: Vec<Value>,
    months: Vec<String>,
    faults: Faults,
}

fn outcome_id(outcome: &str) -> &'static str {
    match outcome {
        "Arrest" => "bu-arrest",
        "Community resolution" => "bu-community-resolution",
        "Khat or Cannabis warning" => "bu-khat-or-cannabis-warning",
        "Summons / charged by post" => "bu-summons",
        _ => "bu-no-further-action",
    }
}

fn stop_json(s: &StopSearch) -> Value {
    json!({
        "age_range": s.age_range,
        "gender": s.gender,
        "self_defined_ethnicity": null,
        "officer_defined_ethnicity": null,
        "legislation": s.legislation,
        "object_of_search": s.object_of_search,
        "type": s.search_type,
        "involved_person": s.search_type != "Vehicle search",
        "datetime": s.datetime.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::Secs, false),
        "outcome": s.outcome,
        "outcome_object": {"id": outcome_id(s.outcome), "name": s.outcome},
        "outcome_linked_to_object_of_search": s.outcome != "A no further action disposal",
        "removal_of_more_than_outer_clothing": false,
        "operation": false,
        "operation_name": null,
        "location": {
            "latitude": format!("{:.6}", s.lat),
            "longitude": format!("{:.6}", s.lon),
            "street": {"id": s.id * 7 + 1000, "name": format!("On or near beat {}", s.beat)},
        },
    })
}

/// The stop-and-search routes; `base_url` is used to build `Link` headers.
pub(crate) fn router(force: &Force, options: &SystemOptions, base_url: &str) -> SystemRouter {
    let state = Arc::new(StopsState {
        base_url: base_url.to_string(),
        records: force.stops.iter().map(stop_json).collect(),
        months: force
            .stops
            .iter()
            .map(|s| s.datetime.format("%Y-%m").to_string())
            .collect(),
        faults: options.faults.clone(),
    });
    Router::new()
        .route("/openapi.json", get(document))
        .route("/api/stops-street", get(list))
        .with_state(state)
}

async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}

async fn list(State(state): State<Arc<StopsState>>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    if let Some(bad) = reject_unknown(&params, &["page", "date"]) {
        return bad;
    }
    let page = match params.number("page", 1, 1, 1_000_000) {
        Ok(p) => p as usize,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let month = params.one("date");
    if let Some(m) = month {
        let ok = m.len() == 7
            && m.as_bytes()[4] == b'-'
            && m.chars()
                .enumerate()
                .all(|(i, c)| i == 4 || c.is_ascii_digit());
        if !ok {
            return error(StatusCode::BAD_REQUEST, "date must be a month, YYYY-MM");
        }
    }
    let matching: Vec<usize> = (0..state.records.len())
        .filter(|&n| month.is_none_or(|m| state.months[n] == m))
        .collect();
    let pages = matching.len().div_ceil(PAGE_SIZE).max(1);
    let start = (page - 1) * PAGE_SIZE;
    let mut records: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(PAGE_SIZE)
        .map(|&n| state.records[n].clone())
        .collect();
    drift(
        &state.faults,
        &mut records,
        matching.get(start).copied().unwrap_or(0),
        "operation_name",
        ("involved_person", json!("yes")),
    );
    let link = |p: usize, rel: &str| {
        let date = month.map(|m| format!("&date={m}")).unwrap_or_default();
        format!(
            "<{}/api/stops-street?page={p}{date}>; rel=\"{rel}\"",
            state.base_url
        )
    };
    let mut links = vec![link(1, "first"), link(pages, "last")];
    if page < pages {
        links.push(link(page + 1, "next"));
    }
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    let count = records.len();
    let mut response = records_response(Value::Array(records), count);
    if let Ok(value) = HeaderValue::from_str(&links.join(", ")) {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}
