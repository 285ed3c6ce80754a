//! The demo force's HTTP systems, exercised over real HTTP on loopback ports.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bluelamp_simulators::force::Force;
use bluelamp_simulators::generate;
use bluelamp_simulators::http::{RunningSystem, SystemKind, SystemOptions, start};
use serde_json::{Value, json};

const SCALE: f64 = 0.02;

fn force() -> Arc<Force> {
    Arc::new(generate(5, SCALE, |_| {}))
}

async fn run(kind: SystemKind, force: &Arc<Force>, options: SystemOptions) -> RunningSystem {
    start(
        kind,
        Arc::clone(force),
        options,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn rms_token(url: &str) -> String {
    let response = client()
        .post(format!("{url}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "bluelamp-demo"),
            ("client_secret", "demo-rms-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn cad_walk(url: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client()
            .get(format!("{url}/incidents?limit={limit}{query}"))
            .header("X-API-Key", "demo-cad-key");
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let page: Value = request.send().await.unwrap().json().await.unwrap();
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return out,
        }
    }
}

async fn rms_walk(url: &str, token: &str, path: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let page: Value = client()
            .get(format!("{url}{path}?offset={offset}&limit={limit}{query}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let results = page["results"].as_array().unwrap();
        out.extend(results.iter().cloned());
        offset += results.len();
        if results.is_empty() || offset >= page["total"].as_u64().unwrap() as usize {
            return out;
        }
    }
}

fn keys(records: &[Value], field: &str) -> Vec<String> {
    records
        .iter()
        .map(|r| r[field].as_str().unwrap().to_string())
        .collect()
}

fn assert_exactly_once(got: Vec<String>, expected: impl IntoIterator<Item = String>) {
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "a record was served twice");
    let expected: HashSet<String> = expected.into_iter().collect();
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), expected);
}

#[tokio::test]
async fn every_pagination_style_reaches_every_record_once() {
    let force = force();
    let cad = run(SystemKind::Cad, &force, SystemOptions::default()).await;
    let rms = run(SystemKind::Rms, &force, SystemOptions::default()).await;
    let stops = run(SystemKind::Stops, &force, SystemOptions::default()).await;

    let incidents = cad_walk(&cad.url, "", 37).await;
    assert_exactly_once(
        keys(&incidents, "urn"),
        force.incidents.iter().map(|i| i.urn.clone()),
    );

    let token = rms_token(&rms.url).await;
    let crimes = rms_walk(&rms.url, &token, "/crimes", "", 41).await;
    assert_exactly_once(
        keys(&crimes, "crime_reference"),
        force.crimes.iter().map(|c| c.crime_reference.clone()),
    );
    let people = rms_walk(&rms.url, &token, "/people", "", 333).await;
    assert_exactly_once(
        keys(&people, "person_id"),
        force.people.iter().map(|p| p.person_id.clone()),
    );
    let links = rms_walk(&rms.url, &token, "/crime-people", "", 50).await;
    assert_eq!(links.len(), force.crime_people.len());

    // Stops: follow rel="next" in the Link header until there is none.
    let mut next = Some(format!("{}/api/stops-street", stops.url));
    let mut seen = Vec::new();
    while let Some(url) = next.take() {
        let response = client().get(&url).send().await.unwrap();
        let link = response
            .headers()
            .get("link")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let page: Vec<Value> = response.json().await.unwrap();
        seen.extend(page.iter().map(|s| {
            s["datetime"].as_str().unwrap().to_string()
                + s["location"]["street"]["id"].to_string().as_str()
        }));
        next = link
            .split(',')
            .find(|part| part.contains("rel=\"next\""))
            .and_then(|part| part.split(['<', '>']).nth(1))
            .map(str::to_string);
    }
    assert_eq!(seen.len(), force.stops.len());
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), force.stops.len());
}

#[tokio::test]
async fn filters_match_the_documented_parameters() {
    let force = force();
    let cad = run(SystemKind::Cad, &force, SystemOptions::default()).await;
    let rms = run(SystemKind::Rms, &force, SystemOptions::default()).await;
    let immediate = cad_walk(&cad.url, "&grade=I&status=closed", 500).await;
    assert_eq!(
        immediate.len(),
        force
            .incidents
            .iter()
            .filter(|i| i.grade == "I" && i.status == "closed")
            .count()
    );
    let day = cad_walk(
        &cad.url,
        "&opened_from=2026-10-03T00:00:00Z&opened_to=2026-10-04T00:00:00Z",
        500,
    )
    .await;
    let expected = force
        .incidents
        .iter()
        .filter(|i| i.opened_at.format("%Y-%m-%d").to_string() == "2026-10-03")
        .count();
    assert_eq!(day.len(), expected);
    let urns: Vec<&str> = force
        .incidents
        .iter()
        .take(3)
        .map(|i| i.urn.as_str())
        .collect();
    let chosen = cad_walk(&cad.url, &format!("&urn={}", urns.join(",")), 500).await;
    assert_eq!(keys(&chosen, "urn"), urns);

    let token = rms_token(&rms.url).await;
    let crime_urns: Vec<&str> = force
        .crimes
        .iter()
        .take(4)
        .map(|c| c.incident_urn.as_str())
        .collect();
    let crimes = rms_walk(
        &rms.url,
        &token,
        "/crimes",
        &format!("&incident_urn={}", crime_urns.join(",")),
        100,
    )
    .await;
    assert_eq!(crimes.len(), 4);

    // A typo in a filter is an error, never "everything".
    let response = client()
        .get(format!("{}/incidents?grdae=I", cad.url))
        .header("X-API-Key", "demo-cad-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = client()
        .get(format!("{}/incidents?cursor=c1.zz.1", cad.url))
        .header("X-API-Key", "demo-cad-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn auth_rejects_wrong_keys_and_expired_tokens() {
    let force = force();
    let options = SystemOptions {
        rms_token_ttl: Duration::from_millis(300),
        ..SystemOptions::default()
    };
    let cad = run(SystemKind::Cad, &force, options.clone()).await;
    let rms = run(SystemKind::Rms, &force, options).await;
    for key in [None, Some("wrong")] {
        let mut request = client().get(format!("{}/incidents", cad.url));
        if let Some(k) = key {
            request = request.header("X-API-Key", k);
        }
        assert_eq!(request.send().await.unwrap().status(), 401);
    }
    let bad = client()
        .post(format!("{}/oauth/token", rms.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "bluelamp-demo"),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    // Basic auth for the client credentials also works (RFC 6749).
    let basic = client()
        .post(format!("{}/oauth/token", rms.url))
        .basic_auth("bluelamp-demo", Some("demo-rms-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    let token = rms_token(&rms.url).await;
    let ok = client()
        .get(format!("{}/crimes?limit=1", rms.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let expired = client()
        .get(format!("{}/crimes?limit=1", rms.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 401);
    assert_eq!(
        expired.json::<Value>().await.unwrap()["error"],
        "access token expired"
    );
    let none = client()
        .get(format!("{}/crimes", rms.url))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
}

fn new_crime(urn: &str) -> Value {
    json!({
        "incident_urn": urn,
        "offence_code": "028/01",
        "offence": "Burglary - residential",
        "recorded_at": "2026-10-30T09:00:00Z",
        "status": "under investigation"
    })
}

#[tokio::test]
async fn deposits_create_validate_and_are_idempotent() {
    let force = force();
    let rms = run(SystemKind::Rms, &force, SystemOptions::default()).await;
    let token = rms_token(&rms.url).await;
    let post = |body: Value, key: Option<&str>| {
        let mut request = client()
            .post(format!("{}/crimes", rms.url))
            .bearer_auth(&token)
            .json(&body);
        if let Some(k) = key {
            request = request.header("Idempotency-Key", k);
        }
        request.send()
    };
    let urn = force.incidents[0].urn.clone();
    let created = post(new_crime(&urn), Some("k-1")).await.unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let crn = created["crime_reference"].as_str().unwrap().to_string();
    assert_eq!(crn, format!("CRN/26/{:06}", force.crimes.len() + 1));

    let replay = post(new_crime(&urn), Some("k-1")).await.unwrap();
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(
        replay.json::<Value>().await.unwrap()["crime_reference"],
        crn.as_str()
    );
    let conflict = post(new_crime(&force.incidents[1].urn), Some("k-1"))
        .await
        .unwrap();
    assert_eq!(conflict.status(), 422);

    let found = rms_walk(
        &rms.url,
        &token,
        "/crimes",
        &format!("&incident_urn={urn}"),
        100,
    )
    .await;
    assert_eq!(
        found
            .iter()
            .filter(|c| c["crime_reference"] == crn.as_str())
            .count(),
        1
    );
    let all = rms_walk(&rms.url, &token, "/crimes", "", 1000).await;
    assert_eq!(
        all.len(),
        force.crimes.len() + 1,
        "the replay created nothing"
    );

    let mut invalid = new_crime("not-a-urn");
    invalid["status"] = json!("closed");
    invalid["colour"] = json!("blue");
    invalid.as_object_mut().unwrap().remove("offence");
    let rejected = post(invalid, None).await.unwrap();
    assert_eq!(rejected.status(), 400);
    let body: Value = rejected.json().await.unwrap();
    let fields: HashSet<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        HashSet::from(["colour", "incident_urn", "offence", "status"])
    );
    let all_after = rms_walk(&rms.url, &token, "/crimes", "", 1000).await;
    assert_eq!(
        all_after.len(),
        all.len(),
        "an invalid deposit stores nothing"
    );
}

#[tokio::test]
async fn cad_records_crime_references() {
    let force = force();
    let cad = run(SystemKind::Cad, &force, SystemOptions::default()).await;
    let waiting = force
        .incidents
        .iter()
        .find(|i| {
            i.status == "closed"
                && i.opening_code.starts_with("Crime")
                && i.crime_reference.is_none()
        })
        .unwrap();
    let post = |crn: &str| {
        client()
            .post(format!(
                "{}/incidents/{}/crime-reference",
                cad.url, waiting.urn
            ))
            .header("X-API-Key", "demo-cad-key")
            .json(&json!({"crime_reference": crn}))
            .send()
    };
    assert_eq!(post("CRN/26/999001").await.unwrap().status(), 200);
    assert_eq!(
        post("CRN/26/999001").await.unwrap().status(),
        200,
        "repeating is harmless"
    );
    assert_eq!(post("CRN/26/999002").await.unwrap().status(), 409);
    assert_eq!(post("nonsense").await.unwrap().status(), 400);
    let got = cad_walk(&cad.url, &format!("&urn={}", waiting.urn), 10).await;
    assert_eq!(got[0]["crime_reference"], "CRN/26/999001");
    let log: Value = client()
        .get(format!("{}/incidents/{}/log", cad.url, waiting.urn))
        .header("X-API-Key", "demo-cad-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(log["data"].as_array().unwrap().len() >= 2);
}

#[tokio::test]
async fn rms_rate_limit_answers_429_with_retry_after() {
    let force = force();
    let options = SystemOptions {
        rms_rate_limit: 5,
        ..SystemOptions::default()
    };
    let rms = run(SystemKind::Rms, &force, options).await;
    let token = rms_token(&rms.url).await;
    let mut limited = 0;
    for _ in 0..12 {
        let response = client()
            .get(format!("{}/people?limit=1", rms.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            assert_eq!(response.headers().get("retry-after").unwrap(), "1");
            limited += 1;
        }
    }
    assert!(limited >= 6, "{limited}");
}

async fn cad_pages(url: &str, n: usize) -> Vec<Result<(u16, Result<Value, String>), String>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let result = client()
            .get(format!("{url}/incidents?limit=20"))
            .header("X-API-Key", "demo-cad-key")
            .send()
            .await;
        out.push(match result {
            Err(e) => Err(e.to_string()),
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Err(e) => Err(format!("body: {e}")),
                    Ok(bytes) => Ok((
                        status,
                        serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string()),
                    )),
                }
            }
        });
    }
    out
}

#[tokio::test]
async fn every_fault_fires_when_enabled_and_never_when_disabled() {
    let force = force();
    let clean = run(SystemKind::Cad, &force, SystemOptions::default()).await;
    for page in cad_pages(&clean.url, 60).await {
        let (status, body) = page.unwrap();
        assert_eq!(status, 200);
        let body = body.unwrap();
        let first = &body["data"][0];
        assert!(first.get("x_undocumented").is_none());
        assert!(first.get("vehicle_registration").is_some());
    }

    let with = |faults: &str| SystemOptions {
        faults: faults.parse().unwrap(),
        ..SystemOptions::default()
    };
    let errors = run(SystemKind::Cad, &force, with("errors=0.3,seed=3")).await;
    let statuses: Vec<u16> = cad_pages(&errors.url, 40)
        .await
        .into_iter()
        .map(|p| p.unwrap().0)
        .collect();
    assert!(
        statuses.contains(&500) && statuses.contains(&503),
        "{statuses:?}"
    );

    let bursts = run(SystemKind::Cad, &force, with("burst429=3")).await;
    let statuses: Vec<u16> = cad_pages(&bursts.url, 10)
        .await
        .into_iter()
        .map(|p| p.unwrap().0)
        .collect();
    assert_eq!(
        statuses,
        vec![200, 200, 200, 200, 200, 429, 429, 429, 200, 200]
    );

    let resets = run(SystemKind::Cad, &force, with("reset=1")).await;
    for page in cad_pages(&resets.url, 3).await {
        assert!(
            page.is_err(),
            "a reset connection must not deliver a whole body: {page:?}"
        );
    }

    let malformed = run(SystemKind::Cad, &force, with("malformed=1")).await;
    for page in cad_pages(&malformed.url, 3).await {
        let (status, body) = page.unwrap();
        assert_eq!(status, 200);
        assert!(body.is_err(), "the page must not parse");
    }

    let slow = run(SystemKind::Cad, &force, with("latency=150ms")).await;
    let started = Instant::now();
    cad_pages(&slow.url, 2).await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    let drift = run(
        SystemKind::Cad,
        &force,
        with("drift=extra+missing+wrongtype"),
    )
    .await;
    let page = cad_pages(&drift.url, 1).await.remove(0).unwrap().1.unwrap();
    let records = page["data"].as_array().unwrap();
    assert!(records.iter().all(|r| r.get("x_undocumented").is_some()));
    assert!(
        records
            .iter()
            .all(|r| r.get("vehicle_registration").is_none())
    );
    assert_eq!(records[7]["grade"], 42);
    assert!(records[6]["grade"].is_string());

    // Faults never touch the document or the accounting endpoint.
    let doc = client().get(errors.openapi_url()).send().await.unwrap();
    assert_eq!(doc.status(), 200);
}

#[tokio::test]
async fn stats_count_requests_and_records() {
    let force = force();
    let cad = run(SystemKind::Cad, &force, SystemOptions::default()).await;
    cad_walk(&cad.url, "", 100).await;
    let stats: Value = client()
        .get(format!("{}/_stats", cad.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pages = force.incidents.len().div_ceil(100) as u64;
    assert_eq!(stats["requests"], pages);
    assert_eq!(stats["records"], force.incidents.len() as u64);
    assert_eq!(
        stats["endpoints"]["GET /incidents"]["records"],
        force.incidents.len() as u64
    );
    assert_eq!(cad.stats.records(), force.incidents.len() as u64);
    let reset = client()
        .delete(format!("{}/_stats", cad.url))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(cad.stats.requests(), 0);
}

#[tokio::test]
async fn same_seed_serves_identical_bytes() {
    let a = run(SystemKind::Stops, &force(), SystemOptions::default()).await;
    let b = run(SystemKind::Stops, &force(), SystemOptions::default()).await;
    let body = |url: String| async move {
        client()
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    };
    let first = body(format!("{}/api/stops-street?page=1", a.url)).await;
    assert_eq!(
        first,
        body(format!("{}/api/stops-street?page=1", b.url)).await
    );
    let other = run(
        SystemKind::Stops,
        &Arc::new(generate(6, SCALE, |_| {})),
        SystemOptions::default(),
    )
    .await;
    assert_ne!(
        first,
        body(format!("{}/api/stops-street?page=1", other.url)).await
    );
}

#[tokio::test]
async fn documents_are_served_and_parse() {
    let force = force();
    for kind in SystemKind::ALL {
        let system = run(kind, &force, SystemOptions::default()).await;
        let response = client().get(system.openapi_url()).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        if kind == SystemKind::Rms {
            assert!(text.starts_with("openapi: 3.0"));
        } else {
            let doc: Value = serde_json::from_str(&text).unwrap();
            assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        }
        system.shutdown().await;
    }
}
