//! The analyst cookbook (`queries/*.sql`) against the live demo force: each
//! query runs through the real HTTP systems, the SQLite custody database and
//! the ANPR Parquet files, and its result is compared with the same question
//! answered directly from the generated force in Rust.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bluelamp_engine::Identity;
use bluelamp_simulators::force::Force;
use bluelamp_tests::fixtures::LiveDemo;
use bluelamp_tests::slt::rows;
use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use futures::TryStreamExt;

type Rows = Vec<Vec<String>>;
/// Answers one cookbook question from the force itself.
type Answer = fn(&Force) -> Rows;

fn queries_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries")
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A float as Arrow prints it.
fn float(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

fn seconds(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (a - b).num_seconds() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn on_day(f: &Force) -> impl Iterator<Item = &bluelamp_simulators::force::Incident> {
    let (from, to) = (day(2026, 10, 7), day(2026, 10, 8));
    f.incidents
        .iter()
        .filter(move |i| i.opened_at >= from && i.opened_at < to)
}

fn incidents_with_crimes(f: &Force) -> Rows {
    let mut out = Vec::new();
    for i in on_day(f) {
        for c in f.crimes.iter().filter(|c| c.incident_urn == i.urn) {
            out.push(vec![
                i.urn.clone(),
                i.grade.into(),
                i.opening_code.into(),
                c.crime_reference.clone(),
                c.offence.into(),
                c.status.into(),
            ]);
        }
    }
    out.sort();
    out
}

fn response_times_by_grade(f: &Force) -> Rows {
    let targets = [
        ("I", "Immediate", 15.0),
        ("S", "Significant (priority)", 60.0),
        ("E", "Extended (scheduled)", 2880.0),
    ];
    let mut out = Vec::new();
    for (grade, name, target) in targets {
        let minutes: Vec<f64> = on_day(f)
            .filter(|i| i.grade == grade)
            .filter_map(|i| {
                let first = f
                    .assignments
                    .iter()
                    .filter(|a| a.urn == i.urn)
                    .filter_map(|a| a.at_scene_at)
                    .min()?;
                Some(seconds(first, i.opened_at) / 60.0)
            })
            .collect();
        if minutes.is_empty() {
            continue;
        }
        let n = minutes.len();
        let within = minutes.iter().filter(|m| **m <= target).count();
        let slowest = minutes.iter().copied().fold(f64::MIN, f64::max);
        out.push(vec![
            grade.into(),
            name.into(),
            format!("{target}"),
            n.to_string(),
            n.to_string(),
            within.to_string(),
            float(round(100.0 * within as f64 / n as f64, 1)),
            float(round(median(minutes), 1)),
            float(round(slowest, 1)),
        ]);
    }
    out
}

fn repeat_victims(f: &Force) -> Rows {
    let crimes: HashMap<&str, _> = f
        .crimes
        .iter()
        .map(|c| (c.crime_reference.as_str(), c))
        .collect();
    let mut by_person: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
    for cp in f.crime_people.iter().filter(|cp| cp.role == "victim") {
        let c = crimes[cp.crime_reference.as_str()];
        if !c.restricted {
            by_person
                .entry(cp.person_id.as_str())
                .or_default()
                .push(c.recorded_at);
        }
    }
    let mut out: Vec<(usize, &str, Vec<String>)> = Vec::new();
    for (id, times) in by_person.into_iter().filter(|(_, t)| t.len() >= 3) {
        let p = f.people.iter().find(|p| p.person_id == id).unwrap();
        out.push((
            times.len(),
            id,
            vec![
                id.into(),
                p.forename.into(),
                p.surname.into(),
                times.len().to_string(),
                ts(*times.iter().min().unwrap()),
                ts(*times.iter().max().unwrap()),
            ],
        ));
    }
    out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    out.into_iter().map(|r| r.2).collect()
}

fn suspects_in_custody(f: &Force) -> Rows {
    let (from, to) = (day(2026, 10, 1), day(2026, 10, 8));
    let mut out = Vec::new();
    for k in &f.custody {
        for c in f
            .crimes
            .iter()
            .filter(|c| c.crime_reference == k.crime_reference)
            .filter(|c| c.recorded_at >= from && c.recorded_at < to)
        {
            for cp in f.crime_people.iter().filter(|cp| {
                cp.crime_reference == k.crime_reference
                    && cp.person_id == k.person_id
                    && matches!(cp.role, "suspect" | "offender")
            }) {
                let p = f
                    .people
                    .iter()
                    .find(|p| p.person_id == k.person_id)
                    .unwrap();
                out.push(vec![
                    k.custody_id.clone(),
                    k.station.into(),
                    k.arrived_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    k.disposal.into(),
                    c.crime_reference.clone(),
                    c.offence.into(),
                    cp.role.into(),
                    p.person_id.clone(),
                    p.forename.into(),
                    p.surname.into(),
                ]);
            }
        }
    }
    out.sort_by(|a, b| (&a[2], &a[0]).cmp(&(&b[2], &b[0])));
    out
}

fn anpr_near_incidents(f: &Force) -> Rows {
    let mut out = Vec::new();
    let window = Duration::minutes(30);
    let days = day(2026, 10, 6)..day(2026, 10, 9);
    for i in on_day(f) {
        let Some(plate) = &i.vehicle_registration else {
            continue;
        };
        for a in f.anpr.iter().filter(|a| {
            *a.plate == **plate
                && days.contains(&a.seen_at)
                && a.seen_at >= i.call_at - window
                && a.seen_at <= i.call_at + window
        }) {
            let km = 111.32
                * ((a.lat - i.lat).powf(2.0)
                    + ((a.lon - i.lon) * i.lat.to_radians().cos()).powf(2.0))
                .sqrt();
            out.push(vec![
                i.urn.clone(),
                plate.clone(),
                ts(i.call_at),
                a.camera_id.to_string(),
                ts(a.seen_at),
                float(round(seconds(a.seen_at, i.call_at) / 60.0, 1)),
                float(round(km, 2)),
            ]);
        }
    }
    out.sort_by(|a, b| (&a[0], &a[4], &a[3]).cmp(&(&b[0], &b[4], &b[3])));
    out
}

fn stop_search_outcomes_by_area(f: &Force) -> Rows {
    let mut by_beat: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for s in &f.stops {
        let e = by_beat.entry(s.beat.as_str()).or_default();
        e.0 += 1;
        e.1 += usize::from(s.outcome == "Arrest");
        e.2 += usize::from(s.outcome != "A no further action disposal");
    }
    let mut out: Vec<_> = by_beat.into_iter().collect();
    out.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    out.into_iter()
        .map(|(beat, (n, arrests, found))| {
            vec![
                beat.into(),
                n.to_string(),
                arrests.to_string(),
                found.to_string(),
                float(round(100.0 * arrests as f64 / n as f64, 1)),
            ]
        })
        .collect()
}

fn crimes_without_outcome(f: &Force) -> Rows {
    let cutoff = day(2026, 11, 1) - Duration::days(14);
    let mut groups: BTreeMap<(&str, &str), Vec<DateTime<Utc>>> = BTreeMap::new();
    for c in f.crimes.iter().filter(|c| {
        c.status == "under investigation" && c.outcome_code.is_none() && c.recorded_at < cutoff
    }) {
        groups
            .entry((c.offence_code, c.offence))
            .or_default()
            .push(c.recorded_at);
    }
    let mut out: Vec<_> = groups.into_iter().collect();
    out.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    out.into_iter()
        .map(|((code, offence), times)| {
            vec![
                code.into(),
                offence.into(),
                times.len().to_string(),
                ts(*times.iter().min().unwrap()),
            ]
        })
        .collect()
}

fn closed_crimes_missing_crn(f: &Force) -> Rows {
    let mut out: Vec<_> = f
        .incidents
        .iter()
        .filter(|i| {
            i.status == "closed"
                && i.opening_code.starts_with("Crime")
                && i.crime_reference.is_none()
        })
        .flat_map(|i| {
            let crimes: Vec<_> = f
                .crimes
                .iter()
                .filter(|c| c.incident_urn == i.urn)
                .map(|c| c.crime_reference.clone())
                .collect();
            let crimes = if crimes.is_empty() {
                vec!["NULL".to_string()]
            } else {
                crimes
            };
            crimes.into_iter().map(|c| {
                (
                    i.closed_at.unwrap(),
                    vec![
                        i.urn.clone(),
                        i.grade.into(),
                        i.opening_code.into(),
                        ts(i.closed_at.unwrap()),
                        c,
                    ],
                )
            })
        })
        .collect();
    out.sort_by(|a, b| (a.0, &a.1[0]).cmp(&(b.0, &b.1[0])));
    out.into_iter().map(|r| r.1).collect()
}

fn custody_outcomes(f: &Force) -> Rows {
    let mut groups: BTreeMap<&str, (usize, usize, usize, Vec<f64>)> = BTreeMap::new();
    for k in &f.custody {
        let c = f
            .crimes
            .iter()
            .find(|c| c.crime_reference == k.crime_reference)
            .unwrap();
        let e = groups.entry(k.disposal).or_default();
        e.0 += 1;
        e.1 += usize::from(c.status == "finalised");
        e.2 += usize::from(c.status == "under investigation");
        if let Some(released) = k.released_at {
            e.3.push(seconds(released, k.arrived_at));
        }
    }
    let mut out: Vec<_> = groups.into_iter().collect();
    out.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    out.into_iter()
        .map(|(disposal, (n, finalised, open, hours))| {
            let avg = if hours.is_empty() {
                "NULL".to_string()
            } else {
                let mean = hours.iter().sum::<f64>() / hours.len() as f64;
                float(round(mean / 3600.0, 1))
            };
            vec![
                disposal.into(),
                n.to_string(),
                finalised.to_string(),
                open.to_string(),
                avg,
            ]
        })
        .collect()
}

/// Each cookbook file and the answer computed from the force itself.
const EXPECTED: &[(&str, Answer)] = &[
    ("01_incidents_with_crimes.sql", incidents_with_crimes),
    ("02_response_times_by_grade.sql", response_times_by_grade),
    ("03_repeat_victims.sql", repeat_victims),
    ("04_suspects_in_custody.sql", suspects_in_custody),
    ("05_anpr_near_incidents.sql", anpr_near_incidents),
    (
        "06_stop_search_outcomes_by_area.sql",
        stop_search_outcomes_by_area,
    ),
    ("07_crimes_without_outcome.sql", crimes_without_outcome),
    (
        "08_closed_crimes_missing_crn.sql",
        closed_crimes_missing_crn,
    ),
    ("09_custody_outcomes.sql", custody_outcomes),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cookbook_query_answers_correctly_against_the_live_demo() {
    let mut files: Vec<String> = std::fs::read_dir(queries_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    files.sort();
    let covered: Vec<String> = EXPECTED.iter().map(|(f, _)| (*f).to_string()).collect();
    assert_eq!(
        files, covered,
        "every cookbook file needs an expected answer"
    );
    assert!(files.len() >= 8);

    let demo = LiveDemo::start(0.05, "").await;
    let session = demo.engine.session(Identity::new("analyst", "test"));
    let mut failures = Vec::new();
    for (file, expected) in EXPECTED {
        let sql = std::fs::read_to_string(queries_dir().join(file)).unwrap();
        let result = match session.sql(&sql).await {
            Ok(output) => output
                .stream
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let got = match result {
            Ok(batches) => rows(&batches).unwrap(),
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        let want = expected(&demo.force);
        eprintln!("{file}: {} rows", got.len());
        assert!(
            !want.is_empty(),
            "{file}: the demo force gives no rows to check"
        );
        if got != want {
            failures.push(format!(
                "{file}: got {} rows, want {}\n  first got:  {:?}\n  first want: {:?}\n  first difference: {:?}",
                got.len(),
                want.len(),
                got.first(),
                want.first(),
                got.iter().zip(&want).find(|(g, w)| g != w)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
