//! `bluelamp certify published --spec`: the document-only criteria of tier 2
//! on real suppliers' documents (the corpus in `tests/openapi_corpus`, origins
//! in its `SOURCES.md`) and on broken ones. None may crash the check, and its
//! findings must be what the documents say.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::{Path, PathBuf};

use bluelamp_certify::published::check_document;
use bluelamp_certify::report::sha256_hex;
use bluelamp_certify::{Criterion, Outcome, Report};

fn corpus(document: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("openapi_corpus")
        .join(document)
}

fn criterion<'a>(report: &'a Report, id: &str) -> &'a Criterion {
    report
        .criteria
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no criterion {id}"))
}

#[tokio::test]
async fn every_corpus_document_is_checked_without_a_crash() {
    let mut checked = 0;
    for entry in std::fs::read_dir(corpus("")).unwrap() {
        let folder = entry.unwrap().path();
        let Ok(expected) = std::fs::read_to_string(folder.join("expected.toml")) else {
            continue;
        };
        let root: toml::Value = toml::from_str(&expected).unwrap();
        let root = folder.join(root["root"].as_str().unwrap());
        let report = check_document(&root).await.unwrap();
        assert_eq!(
            criterion(&report, "document.valid").outcome,
            Outcome::Pass,
            "{}: {:?}",
            root.display(),
            criterion(&report, "document.valid")
        );
        // A document-only run never claims the tier.
        assert_eq!(report.tier_reached, None);
        checked += 1;
    }
    assert!(checked >= 10, "{checked}");
}

#[tokio::test]
async fn a_json_3_0_document_with_bi_directional_payments() {
    // GOV.UK Pay (Government Digital Service), JSON, OpenAPI 3.0.
    let path = corpus("govuk-pay/publicapi_spec.json");
    let report = check_document(&path).await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!(json["check"], "published");
    assert_eq!(json["bluelamp_version"], env!("CARGO_PKG_VERSION"));
    assert!(chrono::DateTime::parse_from_rfc3339(json["date"].as_str().unwrap()).is_ok());
    assert_eq!(
        json["subject"]["sha256"],
        sha256_hex(&std::fs::read(&path).unwrap())
    );
    assert_eq!(json["subject"]["location"], path.display().to_string());
    assert_eq!(json["subject"]["title"], "GOV.UK Pay API");
    assert_eq!(json["tier_reached"], serde_json::Value::Null);
    let ids: Vec<&str> = json["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "document.valid",
            "document.served",
            "document.response_schemas",
            "interface.bidirectional",
            "live.schemas",
            "live.pagination",
            "live.filters",
            "live.errors",
            "deposit.round_trip",
            "security.transport"
        ]
    );
    let outcomes: Vec<&str> = json["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "pass",
            "not_applicable",
            "pass",
            "pass",
            "not_applicable",
            "not_applicable",
            "not_applicable",
            "not_applicable",
            "not_applicable",
            "not_applicable"
        ]
    );
    let both = criterion(&report, "interface.bidirectional");
    assert!(
        both.evidence.iter().any(|e| e
            == "/v1/payments: retrieve GET /v1/payments, GET /v1/payments/{paymentId}; deposit POST /v1/payments"),
        "{:?}",
        both.evidence
    );
    assert!(report.passed());
    let markdown = report.to_markdown();
    assert!(markdown.contains(&format!("Document SHA-256: `{}`", report.subject.sha256)));
    assert!(markdown.contains("| Entities can be retrieved and deposited through documented operations (interface.bidirectional) | pass |"), "{markdown}");
}

#[tokio::test]
async fn a_yaml_read_only_interface_is_not_bi_directional() {
    // HMCTS Court Houses reference data: YAML, OpenAPI 3.0, GETs only.
    let report = check_document(&corpus("hmcts-courthouses/openapi-spec.yml"))
        .await
        .unwrap();
    let both = criterion(&report, "interface.bidirectional");
    assert_eq!(both.outcome, Outcome::Fail);
    assert_eq!(
        both.evidence[0],
        "2 entities: 0 bi-directional, 2 read-only, 0 write-only"
    );
    assert!(!report.passed());
    assert!(
        report.summary.contains("interface.bidirectional"),
        "{}",
        report.summary
    );
}

#[tokio::test]
async fn findings_on_3_1_and_multi_file_documents_are_what_they_say() {
    // Discord, JSON, OpenAPI 3.1.
    let discord = check_document(&corpus("discord/openapi.json"))
        .await
        .unwrap();
    let valid = criterion(&discord, "document.valid");
    assert_eq!(valid.evidence[0], "OpenAPI 3.1");
    assert!(
        criterion(&discord, "interface.bidirectional")
            .evidence
            .iter()
            .any(|e| e == "/channels/{channel_id}/invites: retrieve GET /channels/{channel_id}/invites; deposit POST /channels/{channel_id}/invites"),
        "{:?}",
        criterion(&discord, "interface.bidirectional").evidence
    );
    // Redocly's starter: YAML, 3.1, split over files.
    let redocly = check_document(&corpus("redocly-starter/openapi.yaml"))
        .await
        .unwrap();
    let valid = criterion(&redocly, "document.valid");
    assert!(
        valid
            .evidence
            .iter()
            .any(|e| e.ends_with("further files read through relative $refs")),
        "{valid:?}"
    );
    // Every file it refers to is in the report with its own hash, so a
    // change to any of them shows.
    assert!(redocly.documents.len() > 1, "{:?}", redocly.documents);
    for file in &redocly.documents {
        assert_eq!(
            file.sha256,
            sha256_hex(&std::fs::read(&file.location).unwrap()),
            "{}",
            file.location
        );
    }
    // Intercom: a GET whose 200 describes no body.
    let intercom = check_document(&corpus("intercom-2.11/api.intercom.io.yaml"))
        .await
        .unwrap();
    let schemas = criterion(&intercom, "document.response_schemas");
    assert_eq!(schemas.outcome, Outcome::Fail);
    assert_eq!(
        schemas.evidence,
        [
            "1 of 108 operations do not",
            "GET /download/content/data/{job_identifier}: 200 has no content"
        ]
    );
    // Twilio deposits form-encoded records: still a documented deposit.
    let twilio = check_document(&corpus("twilio-studio-v2/twilio_studio_v2.yaml"))
        .await
        .unwrap();
    assert!(
        criterion(&twilio, "interface.bidirectional")
            .evidence
            .iter()
            .any(|e| e.contains("deposit POST /v2/Flows (application/x-www-form-urlencoded)")),
        "{:?}",
        criterion(&twilio, "interface.bidirectional").evidence
    );
}

#[tokio::test]
async fn broken_documents_fail_the_first_criterion() {
    let dir = tempfile::tempdir().unwrap();
    let swagger = dir.path().join("swagger.yaml");
    std::fs::write(&swagger, "swagger: '2.0'\npaths: {}\n").unwrap();
    let report = check_document(&swagger).await.unwrap();
    let valid = criterion(&report, "document.valid");
    assert_eq!(valid.outcome, Outcome::Fail);
    assert!(
        valid.evidence[0].contains("Swagger 2.0 is not supported"),
        "{valid:?}"
    );
    assert_eq!(report.criteria.len(), 1);

    let split = dir.path().join("split.yaml");
    std::fs::write(
        &split,
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    $ref: paths/a.yaml\n",
    )
    .unwrap();
    let report = check_document(&split).await.unwrap();
    let valid = criterion(&report, "document.valid");
    assert_eq!(valid.outcome, Outcome::Fail);
    assert!(
        valid.evidence.iter().any(|e| e.starts_with(
            "external file paths/a.yaml (referred to from split.yaml) cannot be used"
        )),
        "{valid:?}"
    );

    let missing = check_document(&dir.path().join("nowhere.yaml")).await;
    assert!(missing.unwrap_err().starts_with("cannot read "));
}

/// The demo's systems `kinds` at `faults`, and a config naming each as a
/// source after its system, followed by `extra`.
async fn systems_with(
    kinds: &[bluelamp_simulators::http::SystemKind],
    faults: &str,
    extra: &str,
) -> (
    Vec<bluelamp_simulators::http::RunningSystem>,
    bluelamp_engine::Config,
) {
    use bluelamp_simulators::http::{SystemOptions, openapi_sources, start};
    let force = std::sync::Arc::new(bluelamp_simulators::generate(5, 0.02, |_| {}));
    let options = SystemOptions {
        faults: faults.parse().unwrap(),
        ..SystemOptions::default()
    };
    let mut running = Vec::new();
    for kind in kinds {
        running.push(
            start(
                *kind,
                std::sync::Arc::clone(&force),
                options.clone(),
                "127.0.0.1:0".parse().unwrap(),
            )
            .await
            .unwrap(),
        );
    }
    let text = openapi_sources(&running, &options) + extra;
    let config =
        bluelamp_engine::Config::parse(&text, "certify.toml", std::env::temp_dir()).unwrap();
    (running, config)
}

/// [`systems_with`] and nothing more in the config.
async fn systems(
    kinds: &[bluelamp_simulators::http::SystemKind],
    faults: &str,
) -> (
    Vec<bluelamp_simulators::http::RunningSystem>,
    bluelamp_engine::Config,
) {
    systems_with(kinds, faults, "").await
}

/// Tier 2 on the demo's RMS at `faults`, depositing (`--allow-writes`).
async fn live(faults: &str) -> Report {
    let (_systems, config) = systems(&[bluelamp_simulators::http::SystemKind::Rms], faults).await;
    bluelamp_certify::live::check_source(config, "rms", None, true)
        .await
        .unwrap()
}

const TIER_2: [&str; 10] = [
    "document.valid",
    "document.served",
    "document.response_schemas",
    "interface.bidirectional",
    "live.schemas",
    "live.pagination",
    "live.filters",
    "live.errors",
    "deposit.round_trip",
    "security.transport",
];

#[tokio::test]
async fn the_clean_demo_rms_reaches_tier_2() {
    let report = live("").await;
    let ids: Vec<&str> = report.criteria.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, TIER_2);
    for id in TIER_2 {
        assert_eq!(
            criterion(&report, id).outcome,
            Outcome::Pass,
            "{id}: {:?}",
            criterion(&report, id)
        );
    }
    assert_eq!(report.tier_reached, Some(2), "{}", report.summary);
    assert!(criterion(&report, "document.served").evidence[0].contains("without credentials: 200"));
    // Equality and range filters, each against the unfiltered walk.
    for asked in [
        "GET /crimes?status=",
        "GET /crimes?recorded_from=",
        "GET /crimes?recorded_to=",
    ] {
        assert!(
            criterion(&report, "live.filters")
                .evidence
                .iter()
                .any(|e| e.starts_with(asked)),
            "{asked}: {:?}",
            criterion(&report, "live.filters")
        );
    }
    // Every criterion that sent requests says how many.
    for id in [
        "live.schemas",
        "live.pagination",
        "live.filters",
        "live.errors",
    ] {
        let last = criterion(&report, id).evidence.last().unwrap().clone();
        assert!(last.ends_with(" requests"), "{id}: {last}");
    }
    let errors = &criterion(&report, "live.errors").evidence;
    for expected in [
        "GET /crimes without credentials: 401, as documented",
        "GET /crimes?offset=not-a-number: 400, as documented",
        "GET /crimes: 429 with Retry-After: 1 after ",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected}: {errors:?}"
        );
    }
    let deposit = &criterion(&report, "deposit.round_trip").evidence;
    for expected in [
        "POST /crimes of {",
        "GET /crimes?crime_reference=CRN/26/",
        "the same record without required 'incident_urn' was refused: 400, as documented",
        "the same record sent twice with Idempotency-Key: bluelamp-certify-",
    ] {
        assert!(
            deposit.iter().any(|e| e.contains(expected)),
            "{expected}: {deposit:?}"
        );
    }
    let transport = &criterion(&report, "security.transport").evidence;
    assert!(
        transport
            .iter()
            .any(|e| e.contains("a credential in the query string (access_token=...) was refused")),
        "{transport:?}"
    );
}

#[tokio::test]
async fn without_allow_writes_the_deposit_is_not_run_and_the_tier_not_reached() {
    let (_systems, config) = systems(&[bluelamp_simulators::http::SystemKind::Rms], "").await;
    let report = bluelamp_certify::live::check_source(config, "rms", None, false)
        .await
        .unwrap();
    let deposit = criterion(&report, "deposit.round_trip");
    assert_eq!(deposit.outcome, Outcome::NotApplicable);
    assert!(
        deposit.evidence[0].contains("--allow-writes"),
        "{deposit:?}"
    );
    assert_eq!(report.tier_reached, None);
    assert!(report.passed());
}

/// An audit trail in `dir`, user `certifier` running the checks, and
/// `policy` (which governs everyone else too).
fn governed(dir: &std::path::Path, policy: &str) -> String {
    format!(
        "[audit]\npath = \"{}\"\n\n[local]\nuser = \"certifier\"\n\n[[user]]\nname = \"certifier\"\nroles = [\"certifier\"]\n\n[[user]]\nname = \"analyst\"\nroles = [\"analyst\"]\n\n{policy}",
        dir.join("audit.jsonl").display()
    )
}

/// Every record of the audit trail in `dir`, after checking its chain.
fn trail(dir: &std::path::Path) -> Vec<bluelamp_engine::audit::AuditRecord> {
    let path = dir.join("audit.jsonl");
    let verified = bluelamp_engine::audit::verify(&path);
    assert!(verified.is_ok(), "{verified:?}");
    bluelamp_engine::audit::search(&path, &bluelamp_engine::audit::SearchFilter::default()).unwrap()
}

const FULL_ACCESS: &str = "[[policy.grant]]\nroles = [\"certifier\"]\ntables = [\"rms.*\"]\nwrite = true\n\n[[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"rms.*\"]\n";

#[tokio::test]
async fn every_probe_is_recorded_in_the_audit_trail_before_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (_systems, config) = systems_with(
        &[bluelamp_simulators::http::SystemKind::Rms],
        "",
        &governed(dir.path(), FULL_ACCESS),
    )
    .await;
    let report = bluelamp_certify::live::check_source(config, "rms", None, true)
        .await
        .unwrap();
    assert_eq!(report.tier_reached, Some(2), "{}", report.summary);
    let records = trail(dir.path());
    let probes: Vec<_> = records.iter().filter(|r| r.event == "probe").collect();
    // The leave comes first, for the certifier, over the source, with the
    // run's purpose.
    let leave = probes.first().unwrap();
    assert_eq!(
        leave.statement,
        "probe source 'rms' outside SQL, depositing records"
    );
    assert_eq!(leave.user, "certifier");
    assert_eq!(leave.outcome, "ok");
    assert_eq!(leave.sources, ["rms"]);
    assert!(
        leave.tables.contains(&"rms.crimes".to_string()),
        "{leave:?}"
    );
    assert!(
        leave
            .purpose
            .as_deref()
            .unwrap()
            .contains("tier 2 certification of source rms"),
        "{leave:?}"
    );
    // Each kind of probe is recorded.
    let said: Vec<&str> = probes.iter().map(|r| r.statement.as_str()).collect();
    for expected in [
        "certify: GET /crimes: first page, raw",
        "certify: GET /crimes without credentials",
        "certify: GET /crimes with a query string",
        "certify: GET /crimes: a burst looking for 429",
        "certify: POST /crimes",
        "certify: GET /crimes with a query string without credentials",
    ] {
        assert!(
            said.iter().any(|s| s.starts_with(expected)),
            "{expected}: {said:?}"
        );
    }
    // Each record says how many requests it covers: one, or a burst's 100.
    assert!(
        probes[1..].iter().all(|r| matches!(r.rows, Some(1 | 100))),
        "{probes:?}"
    );
    assert!(
        probes
            .iter()
            .any(|r| r.statement.contains("a burst") && r.rows == Some(100)),
        "{probes:?}"
    );
    // SQL reads of the run are statements, recorded as usual.
    assert!(
        records
            .iter()
            .any(|r| r.event == "statement" && r.user == "certifier")
    );
}

/// The refusal `policy` earns the certifier, checked to name `names` and to
/// be recorded, with no probe sent.
async fn probes_refused(policy: &str, allow_writes: bool, names: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (_systems, config) = systems_with(
        &[bluelamp_simulators::http::SystemKind::Rms],
        "",
        &governed(dir.path(), policy),
    )
    .await;
    let error = bluelamp_certify::live::check_source(config, "rms", None, allow_writes)
        .await
        .unwrap_err();
    assert!(
        error.starts_with("cannot certify source 'rms' as user 'certifier': probing source 'rms' reads its raw answers"),
        "{error}"
    );
    for name in names {
        assert!(error.contains(name), "{name}: {error}");
    }
    let records = trail(dir.path());
    let probes: Vec<_> = records.iter().filter(|r| r.event == "probe").collect();
    assert_eq!(probes.len(), 1, "{probes:?}");
    assert_eq!(probes[0].outcome, "refused");
    assert_eq!(
        probes[0].error.as_deref(),
        Some(&error["cannot certify source 'rms' as user 'certifier': ".len()..])
    );
    assert!(
        records.iter().all(|r| !r.statement.starts_with("SELECT")),
        "nothing was read: {records:?}"
    );
}

#[tokio::test]
async fn a_certifier_with_a_masked_column_may_not_probe() {
    probes_refused(
        &format!("{FULL_ACCESS}\n[[policy.mask]]\nroles = [\"certifier\"]\ncolumns = [\"rms.crimes.crime_reference\"]\nmask = \"null\"\n"),
        false,
        &["rms.crimes (masked columns crime_reference)"],
    )
    .await;
}

#[tokio::test]
async fn a_certifier_under_a_row_filter_may_not_probe() {
    probes_refused(
        &format!("{FULL_ACCESS}\n[[policy.row_filter]]\nname = \"open only\"\nroles = [\"certifier\"]\ntable = \"rms.crimes\"\nfilter = \"status = 'OPEN'\"\n"),
        false,
        &["rms.crimes (row filters open only)"],
    )
    .await;
}

#[tokio::test]
async fn a_certifier_who_cannot_read_every_table_may_not_probe() {
    probes_refused(
        "[[policy.grant]]\nroles = [\"certifier\"]\ntables = [\"rms.crimes\"]\n\n[[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"rms.*\"]\n",
        false,
        &["(no read grant)"],
    )
    .await;
}

#[tokio::test]
async fn a_certifier_with_a_hidden_column_may_not_probe() {
    probes_refused(
        "[[policy.grant]]\nroles = [\"certifier\"]\ntables = [\"rms.*\"]\nhide = [\"rms.crimes.crime_reference\"]\n",
        false,
        &["rms.crimes (hidden columns crime_reference)"],
    )
    .await;
}

#[tokio::test]
async fn a_read_only_certifier_may_probe_but_not_deposit() {
    let read_only = "[[policy.grant]]\nroles = [\"certifier\"]\ntables = [\"rms.*\"]\n\n[[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"rms.*\"]\nwrite = true\n";
    probes_refused(read_only, true, &["rms.crimes (no write grant)"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (_systems, config) = systems_with(
        &[bluelamp_simulators::http::SystemKind::Rms],
        "",
        &governed(dir.path(), read_only),
    )
    .await;
    let report = bluelamp_certify::live::check_source(config, "rms", None, false)
        .await
        .unwrap();
    assert_eq!(criterion(&report, "live.errors").outcome, Outcome::Pass);
    let records = trail(dir.path());
    assert!(
        records
            .iter()
            .filter(|r| r.event == "probe")
            .all(|r| !r.statement.contains("POST")),
        "{records:?}"
    );
}

/// Checks that `fault` fails exactly `broken`, with evidence containing
/// `evidence`.
async fn fails_exactly(fault: &str, broken: &str, evidence: &str) {
    let report = live(fault).await;
    let failed: Vec<&str> = report
        .criteria
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(failed, [broken], "{fault}: {:#?}", report.criteria);
    let c = criterion(&report, broken);
    assert!(
        c.evidence.iter().any(|e| e.contains(evidence)),
        "{fault}: {:?}",
        c.evidence
    );
    assert_eq!(report.tier_reached, None);
}

#[tokio::test]
async fn undocumented_fields_are_listed_without_failing() {
    let report = live("drift=extra").await;
    let schemas = criterion(&report, "live.schemas");
    assert_eq!(schemas.outcome, Outcome::Pass, "{schemas:?}");
    assert!(
        schemas
            .evidence
            .iter()
            .any(|e| e.starts_with("GET /crimes: fields the schema does not document: ")),
        "{schemas:?}"
    );
}

#[tokio::test]
async fn an_ignored_filter_fails_live_filters() {
    fails_exactly("rms:doc-ignore-filter", "live.filters", "GET /crimes?").await;
}

#[tokio::test]
async fn a_repeated_page_fails_live_pagination() {
    fails_exactly(
        "rms:doc-repeat-page",
        "live.pagination",
        "GET /crimes: a walk in pages of 25 returned the same record twice",
    )
    .await;
}

#[tokio::test]
async fn a_record_missing_from_the_walk_fails_live_pagination() {
    fails_exactly(
        "rms:doc-skip-record",
        "live.pagination",
        "GET /crimes: two walks differ",
    )
    .await;
}

#[tokio::test]
async fn a_field_of_the_wrong_type_fails_live_schemas() {
    fails_exactly(
        "rms:doc-wrong-type",
        "live.schemas",
        "does not match the documented schema",
    )
    .await;
}

#[tokio::test]
async fn a_document_without_post_fails_bidirectional() {
    fails_exactly(
        "rms:doc-no-post",
        "interface.bidirectional",
        "no entity can be both retrieved",
    )
    .await;
}

#[tokio::test]
async fn a_deposit_accepted_but_never_stored_fails_the_round_trip() {
    fails_exactly(
        "rms:doc-drop-deposits",
        "deposit.round_trip",
        "accepted the record (crime_reference CRN/26/",
    )
    .await;
}

#[tokio::test]
async fn an_undocumented_500_on_deposit_fails_the_round_trip() {
    fails_exactly(
        "rms:doc-deposit-500",
        "deposit.round_trip",
        "POST /crimes: a valid record was not accepted: 500, which the document does not list",
    )
    .await;
}

#[tokio::test]
async fn a_429_without_retry_after_fails_live_errors() {
    fails_exactly(
        "rms:doc-no-retry-after",
        "live.errors",
        "without the Retry-After header its document promises",
    )
    .await;
}

/// The shipped scenario, run on fresh demo C&C and RMS systems at `faults`.
async fn interworking(
    faults: &str,
) -> (
    Report,
    bluelamp_engine::Config,
    Vec<bluelamp_simulators::http::RunningSystem>,
) {
    use bluelamp_simulators::http::SystemKind;
    let (running, config) = systems(&[SystemKind::Cad, SystemKind::Rms], faults).await;
    let scenario = bluelamp_certify::interworking::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries/workflows/crime_references.toml"),
    )
    .unwrap();
    let report = bluelamp_certify::interworking::run(&scenario, config.clone(), None)
        .await
        .unwrap();
    (report, config, running)
}

#[tokio::test]
async fn the_crime_reference_scenario_reaches_tier_3_on_the_clean_demo() {
    let (report, config, running) = interworking("").await;
    for c in &report.criteria {
        assert_eq!(c.outcome, Outcome::Pass, "{c:?}");
    }
    assert_eq!(report.tier_reached, Some(3), "{}", report.summary);
    let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!(json["check"], "interworking");
    let scenario =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries/workflows/crime_references.toml");
    assert_eq!(
        json["subject"]["sha256"],
        sha256_hex(&std::fs::read(&scenario).unwrap())
    );
    // The workflow's SQL and both interface documents, each with its hash.
    let documents = json["documents"].as_array().unwrap();
    assert_eq!(documents.len(), 3, "{documents:?}");
    assert_eq!(
        documents[0]["sha256"],
        sha256_hex(&std::fs::read(scenario.with_file_name("record_missing_crimes.sql")).unwrap())
    );
    assert_eq!(documents[1]["location"], running[0].openapi_url());
    assert_eq!(documents[2]["location"], running[1].openapi_url());
    let workflow = criterion(&report, "interworking.workflow");
    assert!(
        workflow
            .evidence
            .iter()
            .any(|e| e.starts_with("deposits into rms.crimes: ") && e.ends_with(" stored")),
        "{workflow:?}"
    );
    assert!(
        workflow
            .evidence
            .iter()
            .any(|e| e.starts_with("identifiers assigned by rms.crimes: CRN/26/")),
        "{workflow:?}"
    );
    for id in [
        "assert.crn-in-cad",
        "assert.deposits-retrievable",
        "assert.cad-shows-rms-reference",
    ] {
        assert_eq!(criterion(&report, id).outcome, Outcome::Pass);
    }
    // Run again on the same systems: nothing is left to record, so the run
    // proves nothing and claims no tier.
    let scenario = bluelamp_certify::interworking::load(&scenario).unwrap();
    let again = bluelamp_certify::interworking::run(&scenario, config, None)
        .await
        .unwrap();
    assert_eq!(
        criterion(&again, "interworking.preconditions").outcome,
        Outcome::NotApplicable
    );
    assert_eq!(
        criterion(&again, "interworking.workflow").outcome,
        Outcome::NotApplicable
    );
    assert_eq!(again.tier_reached, None);
}

#[tokio::test]
async fn the_scenario_fails_when_rms_drops_deposits() {
    let (report, _, _running) = interworking("rms:doc-drop-deposits").await;
    let failed: Vec<&str> = report
        .criteria
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(
        failed,
        ["assert.crn-in-cad", "assert.deposits-retrievable"],
        "{:#?}",
        report.criteria
    );
    let missing = criterion(&report, "assert.deposits-retrievable");
    assert!(
        missing.evidence[0].contains("rows where none were expected: 1, CRN/26/"),
        "{missing:?}"
    );
    assert_eq!(report.tier_reached, None);
}

#[tokio::test]
async fn a_scenario_naming_a_source_the_config_lacks_is_refused() {
    use bluelamp_simulators::http::SystemKind;
    let (_running, config) = systems(&[SystemKind::Rms], "").await;
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries/workflows/crime_references.toml");
    let scenario = bluelamp_certify::interworking::load(&path).unwrap();
    let e = bluelamp_certify::interworking::run(&scenario, config, None)
        .await
        .unwrap_err();
    assert!(
        e.ends_with(
            "crime_references.toml:19: source 'cad' is not in the configuration (its sources: rms)"
        ),
        "{e}"
    );
}
