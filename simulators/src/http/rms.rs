//! `rms`: the records-management system. OpenAPI 3.0 YAML at `/openapi.yaml`,
//! OAuth2 client-credentials tokens that expire, offset/limit pagination with a
//! total (`{"total": N, "offset": o, "limit": l, "results": [...]}`), a request
//! rate limit answered with 429 and `Retry-After`, and `POST /crimes`, which
//! validates the body against the documented schema and honours
//! `Idempotency-Key`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::faults::Faults;
use super::server::{
    Grow, Params, SystemOptions, SystemRouter, drift, error, records_response, reject_unknown,
    too_many_requests,
};
use crate::force::{Crime, CrimePerson, Force, Person};

const DOCUMENT: &str = include_str!("openapi/rms.yaml");
const PAGE_DEFAULT: u64 = 100;
const PAGE_MAX: u64 = 1000;
/// Home Office outcome codes accepted on deposit.
const OUTCOME_CODES: &[&str] = &[
    "1", "1A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22",
];
const STATUSES: &[&str] = &["under investigation", "finalised"];

struct RmsState {
    client_id: String,
    client_secret: String,
    token_ttl: Duration,
    rate_limit: u32,
    faults: Faults,
    tokens: Mutex<HashMap<String, Instant>>,
    token_seq: Mutex<u64>,
    window: Mutex<(Instant, u32)>,
    crimes: RwLock<Vec<Value>>,
    people: Vec<Value>,
    links: Vec<Value>,
    next_crime: Mutex<u32>,
    /// Idempotency-Key → (request body, status, response body).
    idempotency: Mutex<HashMap<String, (Value, u16, Value)>>,
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A crime as the RMS API (and its export) presents it.
pub(crate) fn crime_json(c: &Crime) -> Value {
    json!({
        "crime_reference": c.crime_reference,
        "incident_urn": c.incident_urn,
        "offence_code": c.offence_code,
        "offence": c.offence,
        "recorded_at": ts(&c.recorded_at),
        "status": c.status,
        "outcome_code": c.outcome_code,
        "restricted": c.restricted,
    })
}

/// A person as the RMS API presents them.
pub(crate) fn person_json(p: &Person) -> Value {
    json!({"person_id": p.person_id, "forename": p.forename, "surname": p.surname, "birth_year": p.birth_year})
}

/// A crime–person link as the RMS API presents it.
pub(crate) fn link_json(l: &CrimePerson) -> Value {
    json!({"crime_reference": l.crime_reference, "person_id": l.person_id, "role": l.role})
}

/// The RMS routes over `force`.
pub(crate) fn router(force: &Force, options: &SystemOptions) -> (SystemRouter, Option<Grow>) {
    let next_crime = force
        .crimes
        .iter()
        .filter_map(|c| c.crime_reference.rsplit('/').next()?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let state = Arc::new(RmsState {
        client_id: options.rms_client_id.clone(),
        client_secret: options.rms_client_secret.clone(),
        token_ttl: options.rms_token_ttl,
        rate_limit: options.rms_rate_limit,
        faults: options.faults.clone(),
        tokens: Mutex::new(HashMap::new()),
        token_seq: Mutex::new(0),
        window: Mutex::new((Instant::now(), 0)),
        crimes: RwLock::new(force.crimes.iter().map(crime_json).collect()),
        people: force.people.iter().map(person_json).collect(),
        links: force.crime_people.iter().map(link_json).collect(),
        next_crime: Mutex::new(next_crime),
        idempotency: Mutex::new(HashMap::new()),
    });
    let grow: Grow = {
        let state = Arc::clone(&state);
        let seq = std::sync::atomic::AtomicUsize::new(0);
        Arc::new(move |now| {
            let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Ok(mut next) = state.next_crime.lock() else {
                return;
            };
            let Ok(mut crimes) = state.crimes.write() else {
                return;
            };
            let Some(mut crime) = crimes.get(n % crimes.len().max(1)).cloned() else {
                return;
            };
            if let Some(object) = crime.as_object_mut() {
                object.insert(
                    "crime_reference".into(),
                    json!(format!("CRN/26/{:06}", *next)),
                );
                object.insert("recorded_at".into(), json!(ts(&now)));
                object.insert("status".into(), json!("under investigation"));
                object.insert("outcome_code".into(), Value::Null);
            }
            *next += 1;
            crimes.push(crime);
        })
    };
    let router = Router::new()
        .route("/openapi.yaml", {
            let no_post = options.faults.no_post;
            get(move || document(no_post))
        })
        .route("/oauth/token", post(token))
        .route("/crimes", get(list_crimes).post(create_crime))
        .route("/people", get(list_people))
        .route("/crime-people", get(list_links))
        .with_state(state);
    (router, Some(grow))
}

/// The document; with `no_post` (`break=no-post`) without its one create
/// operation: the system still takes deposits, but nobody reading the
/// document can know.
async fn document(no_post: bool) -> Response {
    let text = if no_post {
        // `POST /crimes` is the document's only `post:`, at path-item depth.
        DOCUMENT.replacen("\n    post:\n", "\n    x-withdrawn-post:\n", 1)
    } else {
        DOCUMENT.to_string()
    };
    ([(header::CONTENT_TYPE, "application/yaml")], text).into_response()
}

/// `POST /oauth/token` with `grant_type=client_credentials` and the client's
/// credentials in the form body or a Basic `Authorization` header (RFC 6749 §4.4).
async fn token(
    State(state): State<Arc<RmsState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let (id, secret) = match basic_credentials(&headers) {
        Some(pair) => pair,
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if id != state.client_id || secret != state.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let token = {
        let Ok(mut seq) = state.token_seq.lock() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal state poisoned");
        };
        *seq += 1;
        format!(
            "rms-{:016x}",
            crate::rng::Rng::new(*seq ^ 0xA5A5).next_u64()
        )
    };
    if let Ok(mut tokens) = state.tokens.lock() {
        tokens.insert(token.clone(), Instant::now() + state.token_ttl);
    }
    axum::Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": state.token_ttl.as_secs(),
    }))
    .into_response()
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(json!({"error": code}))).into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// Checks the bearer token and the rate limit; the refusal to send, if any.
fn refuse(state: &RmsState, headers: &HeaderMap) -> Option<Response> {
    admit(state, headers).err()
}

#[allow(
    clippy::result_large_err,
    reason = "the error is the HTTP answer itself, built once per refused request"
)]
fn admit(state: &RmsState, headers: &HeaderMap) -> Result<(), Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = bearer else {
        return Err(unauthorized(
            "missing bearer token; get one from POST /oauth/token",
        ));
    };
    let expiry = state.tokens.lock().ok().and_then(|t| t.get(token).copied());
    match expiry {
        None => return Err(unauthorized("unknown access token")),
        Some(at) if at <= Instant::now() => return Err(unauthorized("access token expired")),
        Some(_) => {}
    }
    if let Ok(mut window) = state.window.lock() {
        if window.0.elapsed() >= Duration::from_secs(1) {
            *window = (Instant::now(), 0);
        }
        window.1 += 1;
        if window.1 > state.rate_limit {
            return Err(too_many_requests(&state.faults));
        }
    }
    Ok(())
}

fn unauthorized(message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn offset_page(
    records: &[Value],
    params: &Params,
    keep: impl Fn(&Value) -> bool,
    faults: &Faults,
    optional: &str,
    wrong: (&str, Value),
) -> Result<Response, String> {
    let offset = params.number("offset", 0, 0, u64::MAX)? as usize;
    let limit = params.number("limit", PAGE_DEFAULT, 1, PAGE_MAX)? as usize;
    let mut matching: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| faults.ignore_filters || keep(r))
        .map(|(n, _)| n)
        .collect();
    // A walk without filters in pages of `limit` never sees the record that
    // would open its second page (the total agrees, so nothing looks amiss).
    if faults.skip_record && matching.len() == records.len() && matching.len() > limit {
        matching.remove(limit);
    }
    // The second page answered with the first again.
    let offset = if faults.repeat_page && offset == limit {
        0
    } else {
        offset
    };
    let total = matching.len();
    let mut page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|&n| records[n].clone())
        .collect();
    let first = matching.get(offset).copied().unwrap_or(0);
    drift(faults, &mut page, first, optional, wrong);
    let count = page.len();
    Ok(records_response(
        json!({"total": total, "offset": offset, "limit": limit, "results": page}),
        count,
    ))
}

fn field<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    record.get(key).and_then(Value::as_str)
}

fn in_list(list: &Option<HashSet<String>>, value: Option<&str>) -> bool {
    list.as_ref()
        .is_none_or(|set| value.is_some_and(|v| set.contains(v)))
}

const CRIME_PARAMS: &[&str] = &[
    "crime_reference",
    "incident_urn",
    "recorded_from",
    "recorded_to",
    "offence_code",
    "status",
    "offset",
    "limit",
];

async fn list_crimes(
    State(state): State<Arc<RmsState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(denied) = refuse(&state, &headers) {
        return denied;
    }
    let params = Params::parse(query.as_deref());
    if let Some(bad) = reject_unknown(&params, CRIME_PARAMS) {
        return bad;
    }
    let result = (|| {
        let crns: Option<HashSet<String>> = params
            .list("crime_reference")
            .map(|v| v.into_iter().collect());
        let urns: Option<HashSet<String>> =
            params.list("incident_urn").map(|v| v.into_iter().collect());
        let offences: Option<HashSet<String>> =
            params.list("offence_code").map(|v| v.into_iter().collect());
        let statuses: Option<HashSet<String>> =
            params.list("status").map(|v| v.into_iter().collect());
        let from = params.time("recorded_from")?;
        let to = params.time("recorded_to")?;
        let crimes = state
            .crimes
            .read()
            .map_err(|_| "internal state poisoned".to_string())?;
        let any = crns.is_some()
            || urns.is_some()
            || offences.is_some()
            || statuses.is_some()
            || from.is_some()
            || to.is_some();
        offset_page(
            &crimes,
            &params,
            |c| {
                if !any {
                    return true;
                }
                let in_range = || {
                    // Parsed only when a range is asked for: most lists are not.
                    let recorded = field(c, "recorded_at")
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&Utc));
                    from.is_none_or(|f| recorded.is_some_and(|r| r >= f))
                        && to.is_none_or(|t| recorded.is_some_and(|r| r < t))
                };
                in_list(&crns, field(c, "crime_reference"))
                    && in_list(&urns, field(c, "incident_urn"))
                    && in_list(&offences, field(c, "offence_code"))
                    && in_list(&statuses, field(c, "status"))
                    && ((from.is_none() && to.is_none()) || in_range())
            },
            &state.faults,
            "outcome_code",
            ("recorded_at", json!(20261001)),
        )
    })();
    result.unwrap_or_else(|message| error(StatusCode::BAD_REQUEST, &message))
}

async fn list_people(
    State(state): State<Arc<RmsState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(denied) = refuse(&state, &headers) {
        return denied;
    }
    let params = Params::parse(query.as_deref());
    if let Some(bad) = reject_unknown(&params, &["person_id", "offset", "limit"]) {
        return bad;
    }
    let ids: Option<HashSet<String>> = params.list("person_id").map(|v| v.into_iter().collect());
    offset_page(
        &state.people,
        &params,
        |p| ids.is_none() || in_list(&ids, field(p, "person_id")),
        &state.faults,
        "birth_year",
        ("birth_year", json!("nineteen-eighty")),
    )
    .unwrap_or_else(|message| error(StatusCode::BAD_REQUEST, &message))
}

async fn list_links(
    State(state): State<Arc<RmsState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(denied) = refuse(&state, &headers) {
        return denied;
    }
    let params = Params::parse(query.as_deref());
    if let Some(bad) = reject_unknown(
        &params,
        &["crime_reference", "person_id", "role", "offset", "limit"],
    ) {
        return bad;
    }
    let crns: Option<HashSet<String>> = params
        .list("crime_reference")
        .map(|v| v.into_iter().collect());
    let ids: Option<HashSet<String>> = params.list("person_id").map(|v| v.into_iter().collect());
    let roles: Option<HashSet<String>> = params.list("role").map(|v| v.into_iter().collect());
    offset_page(
        &state.links,
        &params,
        |l| {
            let any = crns.is_some() || ids.is_some() || roles.is_some();
            !any || (in_list(&crns, field(l, "crime_reference"))
                && in_list(&ids, field(l, "person_id"))
                && in_list(&roles, field(l, "role")))
        },
        &state.faults,
        // Every field of a link is required, so there is no optional one to drop.
        "",
        ("role", json!(3)),
    )
    .unwrap_or_else(|message| error(StatusCode::BAD_REQUEST, &message))
}

/// Field-level reasons a deposit is invalid, per the documented `NewCrime` schema.
pub(crate) fn validate_new_crime(body: &Value) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let Some(object) = body.as_object() else {
        return vec![("(body)".into(), "must be a JSON object".into())];
    };
    let known = [
        "incident_urn",
        "offence_code",
        "offence",
        "recorded_at",
        "status",
        "outcome_code",
        "restricted",
    ];
    for key in object.keys() {
        if !known.contains(&key.as_str()) {
            problems.push((key.clone(), "is not a field of NewCrime".into()));
        }
    }
    let text = |key: &str| object.get(key).and_then(Value::as_str);
    let mut required = |key: &str, check: &dyn Fn(&str) -> Option<String>| match object.get(key) {
        None | Some(Value::Null) => problems.push((key.into(), "is required".into())),
        Some(Value::String(s)) => {
            if let Some(reason) = check(s) {
                problems.push((key.into(), reason));
            }
        }
        Some(_) => problems.push((key.into(), "must be a string".into())),
    };
    required("incident_urn", &|s| {
        (!(s.starts_with("CAD-") && s.len() == 18))
            .then(|| "must look like CAD-20261001-00042".into())
    });
    required("offence_code", &|s| {
        let ok = s.len() == 6
            && s.as_bytes()[3] == b'/'
            && s.chars()
                .enumerate()
                .all(|(i, c)| i == 3 || c.is_ascii_digit());
        (!ok).then(|| "must be a Home Office classification such as 028/01".into())
    });
    required("offence", &|s| {
        if s.is_empty() || s.chars().count() > 200 {
            Some("must be 1 to 200 characters".into())
        } else {
            None
        }
    });
    required("recorded_at", &|s| {
        DateTime::parse_from_rfc3339(s)
            .is_err()
            .then(|| "must be an RFC 3339 date-time".into())
    });
    required("status", &|s| {
        (!STATUSES.contains(&s)).then(|| format!("must be one of: {}", STATUSES.join(", ")))
    });
    match object.get("outcome_code") {
        None | Some(Value::Null) => {}
        Some(Value::String(code)) if OUTCOME_CODES.contains(&code.as_str()) => {}
        Some(_) => problems.push((
            "outcome_code".into(),
            "must be a Home Office outcome code (1-22)".into(),
        )),
    }
    if text("status") == Some("finalised")
        && matches!(object.get("outcome_code"), None | Some(Value::Null))
    {
        problems.push((
            "outcome_code".into(),
            "is required when status is finalised".into(),
        ));
    }
    match object.get("restricted") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(_) => problems.push(("restricted".into(), "must be a boolean".into())),
    }
    problems
}

async fn create_crime(
    State(state): State<Arc<RmsState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(denied) = refuse(&state, &headers) {
        return denied;
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "body is not valid JSON");
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(key) = &key {
        if key.is_empty() || key.len() > 255 {
            return error(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key must be 1 to 255 characters",
            );
        }
        let seen = state
            .idempotency
            .lock()
            .ok()
            .and_then(|m| m.get(key).cloned());
        if let Some((earlier, status, response)) = seen {
            if earlier != payload {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Idempotency-Key was already used with a different body",
                );
            }
            let mut replay = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                axum::Json(response),
            )
                .into_response();
            replay
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return replay;
        }
    }
    if state.faults.deposit_500 {
        // Not a status the document lists for this operation.
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    }
    let problems = validate_new_crime(&payload);
    if !problems.is_empty() {
        let fields: Vec<Value> = problems
            .iter()
            .map(|(f, r)| json!({"field": f, "reason": r}))
            .collect();
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "validation failed", "fields": fields})),
        )
            .into_response();
    }
    let crime_reference = {
        let Ok(mut next) = state.next_crime.lock() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal state poisoned");
        };
        let crn = format!("CRN/26/{:06}", *next);
        *next += 1;
        crn
    };
    let mut record = payload.clone();
    if let Some(object) = record.as_object_mut() {
        object.insert("crime_reference".into(), json!(crime_reference));
        object.entry("restricted").or_insert(json!(false));
        object.entry("outcome_code").or_insert(Value::Null);
    }
    // Under `drop-deposits` the crime is acknowledged and never stored.
    if !state.faults.drop_deposits {
        let Ok(mut crimes) = state.crimes.write() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal state poisoned");
        };
        crimes.push(record.clone());
    }
    if let (Some(key), Ok(mut map)) = (key, state.idempotency.lock()) {
        map.insert(key, (payload, 201, record.clone()));
    }
    let mut response = (StatusCode::CREATED, axum::Json(record)).into_response();
    response
        .extensions_mut()
        .insert(super::server::RecordCount(1));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Value {
        json!({
            "incident_urn": "CAD-20261001-00042",
            "offence_code": "028/01",
            "offence": "Burglary - residential",
            "recorded_at": "2026-10-01T12:00:00Z",
            "status": "under investigation"
        })
    }

    #[test]
    fn a_valid_deposit_has_no_problems() {
        assert!(validate_new_crime(&valid()).is_empty());
    }

    #[test]
    fn each_rule_names_its_field() {
        let mut body = valid();
        body["offence_code"] = json!("28/1");
        body["status"] = json!("closed");
        body["restricted"] = json!("yes");
        body.as_object_mut().map(|o| o.remove("incident_urn"));
        let fields: Vec<String> = validate_new_crime(&body)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            fields,
            vec!["incident_urn", "offence_code", "status", "restricted"]
        );
    }
}
