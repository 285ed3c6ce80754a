//! `cad`: the command-and-control system. OpenAPI 3.1 at `/openapi.json`, an
//! `X-API-Key` header, and cursor pagination with the next cursor in the body:
//! `{"data": [...], "next_cursor": "..." | null}`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::faults::Faults;
use super::server::{
    Grow, Params, SystemOptions, SystemRouter, drift, error, records_response, reject_unknown,
};
use crate::force::{Assignment, Force, Incident, LogEntry};

const DOCUMENT: &str = include_str!("openapi/cad.json");
const PAGE_DEFAULT: u64 = 100;
const PAGE_MAX: u64 = 500;

struct CadState {
    api_key: String,
    /// Incidents in URN order of creation, as served; crime references recorded
    /// through the API update them in place, and a live demo adds new ones.
    incidents: RwLock<Incidents>,
    log: HashMap<String, Vec<Value>>,
    assignments: HashMap<String, Vec<Value>>,
    faults: Faults,
}

/// The incidents, with what lists and lookups go by.
struct Incidents {
    list: Vec<Value>,
    opened: Vec<DateTime<Utc>>,
    index: HashMap<String, usize>,
}

impl Incidents {
    fn push(&mut self, incident: Value, opened: DateTime<Utc>) {
        if let Some(urn) = incident.get("urn").and_then(Value::as_str) {
            self.index.insert(urn.to_string(), self.list.len());
        }
        self.list.push(incident);
        self.opened.push(opened);
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn incident_json(i: &Incident) -> Value {
    json!({
        "urn": i.urn,
        "call_at": ts(&i.call_at),
        "opened_at": ts(&i.opened_at),
        "closed_at": i.closed_at.as_ref().map(ts),
        "grade": i.grade,
        "status": i.status,
        "opening_code": i.opening_code,
        "closing_code": i.closing_code,
        "location": {"lat": i.lat, "lon": i.lon, "beat": i.beat},
        "crime_reference": i.crime_reference,
        "vehicle_registration": i.vehicle_registration,
    })
}

fn log_json(l: &LogEntry) -> Value {
    json!({"urn": l.urn, "seq": l.seq, "at": ts(&l.at), "author": l.author, "text": l.text})
}

fn assignment_json(a: &Assignment) -> Value {
    json!({
        "urn": a.urn,
        "callsign": a.callsign,
        "assigned_at": ts(&a.assigned_at),
        "at_scene_at": a.at_scene_at.as_ref().map(ts),
        "cleared_at": a.cleared_at.as_ref().map(ts),
    })
}

/// The C&C routes over `force`.
pub(crate) fn router(force: &Force, options: &SystemOptions) -> (SystemRouter, Option<Grow>) {
    let mut log: HashMap<String, Vec<Value>> = HashMap::new();
    for entry in &force.incident_log {
        log.entry(entry.urn.clone())
            .or_default()
            .push(log_json(entry));
    }
    let mut assignments: HashMap<String, Vec<Value>> = HashMap::new();
    for a in &force.assignments {
        assignments
            .entry(a.urn.clone())
            .or_default()
            .push(assignment_json(a));
    }
    let state = Arc::new(CadState {
        api_key: options.cad_api_key.clone(),
        incidents: RwLock::new(Incidents {
            list: force.incidents.iter().map(incident_json).collect(),
            opened: force.incidents.iter().map(|i| i.opened_at).collect(),
            index: force
                .incidents
                .iter()
                .enumerate()
                .map(|(n, i)| (i.urn.clone(), n))
                .collect(),
        }),
        log,
        assignments,
        faults: options.faults.clone(),
    });
    let grow: Grow = {
        let state = Arc::clone(&state);
        let seq = std::sync::atomic::AtomicUsize::new(0);
        Arc::new(move |now| {
            let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Ok(mut incidents) = state.incidents.write() else {
                return;
            };
            if let Some(incident) = new_incident(&incidents.list, n, now) {
                incidents.push(incident, now);
            }
        })
    };
    let router = Router::new()
        .route("/openapi.json", get(document))
        .route("/incidents", get(list_incidents))
        .route("/incidents/{urn}", get(get_incident))
        .route("/incidents/{urn}/log", get(incident_log))
        .route("/incidents/{urn}/assignments", get(incident_assignments))
        .route(
            "/incidents/{urn}/crime-reference",
            post(record_crime_reference),
        )
        .with_state(state);
    (router, Some(grow))
}

/// The `n`th incident a live demo adds, opened `now`: shaped like one of
/// the force's own (grade, codes, place), open, with a URN of the day.
fn new_incident(existing: &[Value], n: usize, now: DateTime<Utc>) -> Option<Value> {
    let mut incident = existing.get(n % existing.len().max(1))?.clone();
    let object = incident.as_object_mut()?;
    object.insert(
        "urn".into(),
        json!(format!("CAD-{}-L{:04}", now.format("%Y%m%d"), n % 10_000)),
    );
    object.insert("call_at".into(), json!(ts(&now)));
    object.insert("opened_at".into(), json!(ts(&now)));
    object.insert("closed_at".into(), Value::Null);
    object.insert("status".into(), json!("open"));
    object.insert("closing_code".into(), Value::Null);
    object.insert("crime_reference".into(), Value::Null);
    Some(incident)
}

async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}

/// The refusal to send, if the request lacks the right API key.
fn refuse(state: &CadState, headers: &HeaderMap) -> Option<Response> {
    match headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        Some(key) if key == state.api_key => None,
        Some(_) => Some(error(StatusCode::UNAUTHORIZED, "invalid API key")),
        None => Some(error(StatusCode::UNAUTHORIZED, "missing X-API-Key header")),
    }
}

const LIST_PARAMS: &[&str] = &[
    "urn",
    "grade",
    "status",
    "opened_from",
    "opened_to",
    "limit",
    "cursor",
];

async fn list_incidents(
    State(state): State<Arc<CadState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(denied) = refuse(&state, &headers) {
        return denied;
    }
    let params = Params::parse(query.as_deref());
    if let Some(bad) = reject_unknown(&params, LIST_PARAMS) {
        return bad;
    }
    match page(&state, &params) {
        Ok(response) => response,
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    }
}

fn page(state: &CadState, params: &Params) -> Result<Response, String> {
    let limit = params.number("limit", PAGE_DEFAULT, 1, PAGE_MAX)? as usize;
    let fingerprint = params.fingerprint(&["limit", "cursor"]);
    let start = match params.one("cursor") {
        None => 0,
        Some(cursor) => decode_cursor(cursor, fingerprint)?,
    };
    let urns: Option<HashSet<String>> = params.list("urn").map(|v| v.into_iter().collect());
    let grades = params.list("grade");
    if let Some(g) = &grades
        && let Some(bad) = g
            .iter()
            .find(|g| !["I", "S", "E", "R"].contains(&g.as_str()))
    {
        return Err(format!("grade '{bad}' is not one of I, S, E, R"));
    }
    let statuses = params.list("status");
    if let Some(s) = &statuses
        && let Some(bad) = s.iter().find(|s| !["open", "closed"].contains(&s.as_str()))
    {
        return Err(format!("status '{bad}' is not one of open, closed"));
    }
    let from = params.time("opened_from")?;
    let to = params.time("opened_to")?;
    let incidents = state
        .incidents
        .read()
        .map_err(|_| "internal state poisoned".to_string())?;
    let candidates: Box<dyn Iterator<Item = usize>> = match &urns {
        Some(set) => {
            let mut positions: Vec<usize> = set
                .iter()
                .filter_map(|u| incidents.index.get(u).copied())
                .collect();
            positions.sort_unstable();
            Box::new(positions.into_iter())
        }
        None => Box::new(0..incidents.list.len()),
    };
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let mut matched = candidates.filter(|&n| {
        let v = &incidents.list[n];
        grades
            .as_ref()
            .is_none_or(|g| text(v, "grade").is_some_and(|x| g.contains(&x)))
            && statuses
                .as_ref()
                .is_none_or(|s| text(v, "status").is_some_and(|x| s.contains(&x)))
            && from.is_none_or(|f| incidents.opened[n] >= f)
            && to.is_none_or(|t| incidents.opened[n] < t)
    });
    let mut data: Vec<Value> = Vec::with_capacity(limit);
    let mut skipped = 0;
    let mut first_index = 0;
    let mut more = false;
    for n in matched.by_ref() {
        if skipped < start {
            skipped += 1;
            continue;
        }
        if data.len() == limit {
            more = true;
            break;
        }
        if data.is_empty() {
            first_index = n;
        }
        data.push(incidents.list[n].clone());
    }
    drop(incidents);
    drift(
        &state.faults,
        &mut data,
        first_index,
        "vehicle_registration",
        ("grade", json!(42)),
    );
    let next = more.then(|| encode_cursor(start + data.len(), fingerprint));
    let count = data.len();
    Ok(records_response(
        json!({"data": data, "next_cursor": next}),
        count,
    ))
}

fn encode_cursor(offset: usize, fingerprint: u64) -> String {
    format!("c1.{:x}.{:x}", offset as u64 ^ 0x5bd1_e995, fingerprint)
}

fn decode_cursor(cursor: &str, fingerprint: u64) -> Result<usize, String> {
    let bad = || "cursor is not valid for this query; start again without a cursor".to_string();
    let mut parts = cursor.split('.');
    let (Some("c1"), Some(offset), Some(print), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let offset = u64::from_str_radix(offset, 16).map_err(|_| bad())? ^ 0x5bd1_e995;
    let print = u64::from_str_radix(print, 16).map_err(|_| bad())?;
    if print != fingerprint {
        return Err(bad());
    }
    usize::try_from(offset).map_err(|_| bad())
}

async fn get_incident(
    State(state): State<Arc<CadState>>,
    headers: HeaderMap,
    Path(urn): Path<String>,
) -> Response {
    if let Some(denied) = refuse(&state, &headers) {
        return denied;
    }
    let incidents = match state.incidents.read() {
        Ok(i) => i,
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal state poisoned"),
    };
    let Some(&n) = incidents.index.get(&urn) else {
        return error(StatusCode::NOT_FOUND, &format!("no incident {urn}"));
    };
    records_response(incidents.list[n].clone(), 1)
}

fn lookup(
    state: &CadState,
    headers: &HeaderMap,
    urn: &str,
    table: &HashMap<String, Vec<Value>>,
) -> Response {
    if let Some(denied) = refuse(state, headers) {
        return denied;
    }
    let known = state
        .incidents
        .read()
        .is_ok_and(|incidents| incidents.index.contains_key(urn));
    if !known {
        return error(StatusCode::NOT_FOUND, &format!("no incident {urn}"));
    }
    let data = table.get(urn).cloned().unwrap_or_default();
    let count = data.len();
    records_response(json!({"data": data}), count)
}

async fn incident_log(
    State(state): State<Arc<CadState>>,
    headers: HeaderMap,
    Path(urn): Path<String>,
) -> Response {
    lookup(&state, &headers, &urn, &state.log)
}

async fn incident_assignments(
    State(state): State<Arc<CadState>>,
    headers: HeaderMap,
    Path(urn): Path<String>,
) -> Response {
    lookup(&state, &headers, &urn, &state.assignments)
}

async fn record_crime_reference(
    State(state): State<Arc<CadState>>,
    headers: HeaderMap,
    Path(urn): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(denied) = refuse(&state, &headers) {
        return denied;
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "body must be JSON: {\"crime_reference\": \"CRN/26/000123\"}",
        );
    };
    let Some(crn) = payload.get("crime_reference").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "crime_reference (string) is required",
        );
    };
    if !valid_crn(crn) {
        return error(
            StatusCode::BAD_REQUEST,
            "crime_reference must look like CRN/26/000123",
        );
    }
    let Ok(mut incidents) = state.incidents.write() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal state poisoned");
    };
    let Some(&n) = incidents.index.get(&urn) else {
        return error(StatusCode::NOT_FOUND, &format!("no incident {urn}"));
    };
    let incident = &mut incidents.list[n];
    match incident.get("crime_reference").and_then(Value::as_str) {
        Some(existing) if existing != crn => {
            return error(
                StatusCode::CONFLICT,
                &format!("incident {urn} already has crime reference {existing}"),
            );
        }
        _ => {}
    }
    if let Some(object) = incident.as_object_mut() {
        object.insert("crime_reference".into(), json!(crn));
    }
    records_response(json!({"urn": urn, "crime_reference": crn}), 1)
}

/// `CRN/YY/NNNNNN`.
pub(crate) fn valid_crn(text: &str) -> bool {
    let parts: Vec<&str> = text.split('/').collect();
    parts.len() == 3
        && parts[0] == "CRN"
        && parts[1].len() == 2
        && parts[1].chars().all(|c| c.is_ascii_digit())
        && parts[2].len() == 6
        && parts[2].chars().all(|c| c.is_ascii_digit())
}
