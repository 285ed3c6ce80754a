//! Read policy against the live demo force: grants, row filters and masks as
//! the demo ships them (`bluelamp_simulators::access`), checked against the
//! generated data, and each bypass attempt as its own test — through the
//! engine's `Session` (as the REPL and scripts use it) and, for the metadata
//! calls and prepared statements, through a real Flight SQL client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeSet;

use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables};
use bluelamp_engine::policy::masks::hmac_sha256;
use bluelamp_engine::{ErrorKind, Identity, QueryError, Session};
use bluelamp_flight_server::{RunningServer, hash_password, serve};
use bluelamp_simulators::Force;
use bluelamp_simulators::access::demo_access;
use bluelamp_tests::fixtures::LiveDemo;
use bluelamp_tests::flight_client::{fetch, strings};
use bluelamp_tests::slt::rows;
use futures::TryStreamExt;
use tonic::transport::Channel;

/// The demo's mask key (see `bluelamp_simulators::access`).
const MASK_KEY: &[u8] = b"demo force mask key, not a secret";

/// Extra principals for what the demo's own do not cover: a clerk who may
/// only read stop and search, and a custody sergeant whose rows depend on an
/// attribute (for pushdown).
const EXTRA: &str = r#"
[[user]]
name = "clerk"
roles = ["clerk"]

[[user]]
name = "sergeant"
roles = ["sergeant"]
clearance = "OFFICIAL-SENSITIVE"
[user.attributes]
station = "Northgate Custody"

[[policy.grant]]
name = "clerks read stop and search"
roles = ["clerk"]
tables = ["stops.*"]

[[policy.grant]]
name = "sergeants read their station's custody"
roles = ["sergeant"]
tables = ["custody.*"]

[[policy.row_filter]]
name = "own station"
roles = ["sergeant"]
table = "custody.custody_records"
filter = "station = principal('station')"
"#;

struct Demo {
    live: LiveDemo,
    dir: tempfile::TempDir,
}

async fn demo() -> Demo {
    demo_with("").await
}

/// The demo with more `[audit]` settings.
async fn demo_with(audit_settings: &str) -> Demo {
    let audit = tempfile::tempdir().unwrap();
    let hash = hash_password("demo").unwrap();
    let extra = format!(
        "{}\n{EXTRA}\n[audit]\npath = \"{}\"\n{audit_settings}\n",
        demo_access(
            &hash,
            None,
            &audit.path().join("exports").display().to_string()
        ),
        audit.path().join("audit.jsonl").display()
    );
    Demo {
        live: LiveDemo::start(0.02, &extra).await,
        dir: audit,
    }
}

impl Demo {
    fn session(&self, user: &str) -> Session {
        self.live.engine.session(Identity::new(user, "password"))
    }

    fn force(&self) -> &Force {
        &self.live.force
    }
}

async fn try_rows(session: &Session, sql: &str) -> Result<Vec<Vec<String>>, QueryError> {
    let output = session.sql(sql).await?;
    let batches: Vec<RecordBatch> = output
        .stream
        .try_collect()
        .await
        .map_err(QueryError::from)?;
    Ok(rows(&batches).unwrap())
}

async fn select(session: &Session, sql: &str) -> Vec<Vec<String>> {
    try_rows(session, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn column(session: &Session, sql: &str) -> Vec<String> {
    select(session, sql)
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

async fn refused(session: &Session, sql: &str) -> QueryError {
    match try_rows(session, sql).await {
        Ok(rows) => panic!("{sql} should fail, returned {rows:?}"),
        Err(e) => e,
    }
}

fn restricted(force: &Force) -> BTreeSet<String> {
    force
        .crimes
        .iter()
        .filter(|c| c.restricted)
        .map(|c| c.crime_reference.clone())
        .collect()
}

fn unrestricted(force: &Force) -> BTreeSet<String> {
    force
        .crimes
        .iter()
        .filter(|c| !c.restricted)
        .map(|c| c.crime_reference.clone())
        .collect()
}

fn hashed(value: &str) -> String {
    hmac_sha256(MASK_KEY, value.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// No value of a restricted crime appears anywhere in `text`.
fn mentions_restricted(force: &Force, text: &str) -> Option<String> {
    restricted(force).into_iter().find(|r| text.contains(r))
}

// ---------------------------------------------------------------------------
// The matrix: principals × queries, values checked against the generated force.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_principal_sees_exactly_the_crimes_policy_allows() {
    let demo = demo().await;
    let force = demo.force();
    assert!(
        !restricted(force).is_empty(),
        "the fixture needs restricted crimes"
    );
    let all: BTreeSet<String> = force
        .crimes
        .iter()
        .map(|c| c.crime_reference.clone())
        .collect();
    let sql = "SELECT crime_reference FROM rms.crimes";
    for (user, want) in [
        ("officer", all.clone()),
        ("analyst", unrestricted(force)),
        ("supervisor", all),
    ] {
        let got: BTreeSet<String> = column(&demo.session(user), sql).await.into_iter().collect();
        assert_eq!(got, want, "{user}");
    }
    let clerk = refused(&demo.session("clerk"), sql).await;
    assert_eq!(clerk.kind, ErrorKind::NotFound, "{clerk}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_principal_sees_people_masked_or_not_as_policy_says() {
    let demo = demo().await;
    let force = demo.force();
    let sql = "SELECT person_id, forename, surname, birth_year FROM rms.people ORDER BY person_id";
    let mut people: Vec<_> = force.people.iter().collect();
    people.sort_by(|a, b| a.person_id.cmp(&b.person_id));
    let real: Vec<Vec<String>> = people
        .iter()
        .map(|p| {
            vec![
                p.person_id.clone(),
                p.forename.to_string(),
                p.surname.to_string(),
                p.birth_year.to_string(),
            ]
        })
        .collect();
    let masked: Vec<Vec<String>> = people
        .iter()
        .map(|p| {
            vec![
                p.person_id.clone(),
                "[REDACTED]".to_string(),
                hashed(p.surname),
                (p.birth_year - p.birth_year % 10).to_string(),
            ]
        })
        .collect();
    assert_eq!(select(&demo.session("officer"), sql).await, real);
    assert_eq!(select(&demo.session("analyst"), sql).await, masked);
    let supervisor = demo.session("supervisor");
    let e = refused(&supervisor, sql).await;
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
    assert!(e.message.contains("SET bluelamp.purpose"), "{e}");
    select(&supervisor, "SET bluelamp.purpose = 'case review 42'").await;
    assert_eq!(select(&supervisor, sql).await, real);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_columns_and_tables_are_absent_for_the_analyst() {
    let demo = demo().await;
    let analyst = demo.session("analyst");
    let columns: Vec<String> = analyst
        .describe("cad.incidents")
        .await
        .unwrap()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert!(
        !columns.contains(&"vehicle_registration".to_string()),
        "{columns:?}"
    );
    assert!(columns.contains(&"urn".to_string()));
    let tables = analyst.table_names().await;
    assert!(
        !tables.iter().any(|(_, t)| t == "incident_log"),
        "{tables:?}"
    );
    assert!(tables.iter().any(|(s, t)| s == "cad" && t == "incidents"));
    // SELECT * shows what is visible, no more.
    let star = analyst
        .sql("SELECT * FROM cad.incidents LIMIT 1")
        .await
        .unwrap();
    assert!(star.schema.field_with_name("vehicle_registration").is_err());
    // The supervisor sees both.
    let supervisor = demo.session("supervisor");
    assert!(
        supervisor
            .describe("cad.incidents")
            .await
            .unwrap()
            .field_with_name("vehicle_registration")
            .is_ok()
    );
}

// ---------------------------------------------------------------------------
// Bypass attempts: each must see only what a direct query sees.

async fn analyst_crime_refs(demo: &Demo, sql: &str) -> BTreeSet<String> {
    column(&demo.session("analyst"), sql)
        .await
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_count_star_counts_only_visible_rows() {
    let demo = demo().await;
    let n = column(&demo.session("analyst"), "SELECT count(*) FROM rms.crimes").await;
    assert_eq!(n, vec![unrestricted(demo.force()).len().to_string()]);
    let n = column(
        &demo.session("analyst"),
        "SELECT count(*) FROM rms.crimes WHERE restricted",
    )
    .await;
    assert_eq!(n, vec!["0".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_self_join() {
    let demo = demo().await;
    let got = analyst_crime_refs(
        &demo,
        "SELECT b.crime_reference FROM rms.crimes a JOIN rms.crimes b ON a.crime_reference = b.crime_reference",
    )
    .await;
    assert_eq!(got, unrestricted(demo.force()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_join_from_another_source() {
    let demo = demo().await;
    let got = analyst_crime_refs(
        &demo,
        "SELECT c.crime_reference FROM cad.incidents i JOIN rms.crimes c ON c.incident_urn = i.urn",
    )
    .await;
    assert!(got.is_subset(&unrestricted(demo.force())));
    assert!(got.is_disjoint(&restricted(demo.force())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_scalar_subquery() {
    let demo = demo().await;
    let n = column(
        &demo.session("analyst"),
        "SELECT (SELECT count(*) FROM rms.crimes WHERE restricted) AS n",
    )
    .await;
    assert_eq!(n, vec!["0".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_exists_subquery() {
    let demo = demo().await;
    let probe = restricted(demo.force()).into_iter().next().unwrap();
    let n = column(
        &demo.session("analyst"),
        &format!(
            "SELECT count(*) FROM cad.incidents WHERE EXISTS (SELECT 1 FROM rms.crimes WHERE crime_reference = '{probe}')"
        ),
    )
    .await;
    assert_eq!(n, vec!["0".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_in_subquery() {
    let demo = demo().await;
    let got = analyst_crime_refs(
        &demo,
        "SELECT crime_reference FROM rms.crime_people WHERE crime_reference IN (SELECT crime_reference FROM rms.crimes WHERE restricted)",
    )
    .await;
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_cte() {
    let demo = demo().await;
    let got = analyst_crime_refs(
        &demo,
        "WITH c AS (SELECT * FROM rms.crimes) SELECT crime_reference FROM c",
    )
    .await;
    assert_eq!(got, unrestricted(demo.force()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_union_intersect_except() {
    let demo = demo().await;
    let visible = unrestricted(demo.force());
    for sql in [
        "SELECT crime_reference FROM rms.crimes UNION SELECT crime_reference FROM rms.crimes",
        "SELECT crime_reference FROM rms.crimes UNION ALL SELECT crime_reference FROM rms.crimes WHERE restricted",
        "SELECT crime_reference FROM rms.crimes INTERSECT SELECT crime_reference FROM rms.crimes",
    ] {
        assert_eq!(analyst_crime_refs(&demo, sql).await, visible, "{sql}");
    }
    let all_minus_visible = analyst_crime_refs(
        &demo,
        "SELECT crime_reference FROM rms.crime_people EXCEPT SELECT crime_reference FROM rms.crimes",
    )
    .await;
    // Links to restricted crimes remain in crime_people (no filter there),
    // but no crime row of a restricted crime is ever produced.
    let produced = analyst_crime_refs(
        &demo,
        "SELECT crime_reference FROM rms.crimes EXCEPT SELECT 'x'",
    )
    .await;
    assert!(produced.is_disjoint(&restricted(demo.force())));
    assert!(all_minus_visible.is_disjoint(&visible));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_user_created_view() {
    let demo = demo().await;
    let analyst = demo.session("analyst");
    select(&analyst, "CREATE VIEW mine AS SELECT * FROM rms.crimes").await;
    let got: BTreeSet<String> = column(&analyst, "SELECT crime_reference FROM mine")
        .await
        .into_iter()
        .collect();
    assert_eq!(got, unrestricted(demo.force()));
    select(
        &analyst,
        "CREATE VIEW people_view AS SELECT forename FROM rms.people",
    )
    .await;
    let names = column(&analyst, "SELECT DISTINCT forename FROM people_view").await;
    assert_eq!(names, vec!["[REDACTED]".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_create_table_as() {
    let demo = demo().await;
    let analyst = demo.session("analyst");
    select(&analyst, "CREATE TABLE copy AS SELECT * FROM rms.crimes").await;
    let got: BTreeSet<String> = column(&analyst, "SELECT crime_reference FROM copy")
        .await
        .into_iter()
        .collect();
    assert_eq!(got, unrestricted(demo.force()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_information_schema() {
    let demo = demo().await;
    let analyst = demo.session("analyst");
    let tables = column(
        &analyst,
        "SELECT table_schema || '.' || table_name FROM information_schema.tables",
    )
    .await;
    assert!(
        !tables.contains(&"cad.incident_log".to_string()),
        "{tables:?}"
    );
    assert!(tables.contains(&"rms.crimes".to_string()));
    let columns = column(
        &analyst,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'cad' AND table_name = 'incidents'",
    )
    .await;
    assert!(
        !columns.contains(&"vehicle_registration".to_string()),
        "{columns:?}"
    );
    let clerk = demo.session("clerk");
    let schemas = column(
        &clerk,
        "SELECT schema_name FROM information_schema.schemata",
    )
    .await;
    assert!(schemas.contains(&"stops".to_string()));
    for hidden in ["rms", "cad", "custody", "anpr"] {
        assert!(!schemas.contains(&hidden.to_string()), "{schemas:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_explain_names_no_hidden_column_or_row() {
    let demo = demo().await;
    let analyst = demo.session("analyst");
    let probe = restricted(demo.force()).into_iter().next().unwrap();
    let plan = select(
        &analyst,
        "EXPLAIN SELECT * FROM cad.incidents i JOIN rms.crimes c ON c.incident_urn = i.urn",
    )
    .await
    .concat()
    .join("\n");
    assert!(!plan.contains("vehicle_registration"), "{plan}");
    assert!(!plan.contains(&probe), "{plan}");
    let e = refused(
        &analyst,
        "EXPLAIN SELECT vehicle_registration FROM cad.incidents",
    )
    .await;
    assert!(
        !e.message.contains("vehicle_registration'")
            || e.message.contains("not found")
            || e.message.contains("No field"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_explain_analyze_shows_no_hidden_values() {
    let demo = demo().await;
    let analyst = demo.session("analyst");
    let plan = select(
        &analyst,
        "EXPLAIN ANALYZE SELECT p.forename, c.crime_reference FROM rms.people p JOIN rms.crime_people cp ON cp.person_id = p.person_id JOIN rms.crimes c ON c.crime_reference = cp.crime_reference",
    )
    .await
    .concat()
    .join("\n");
    if let Some(r) = mentions_restricted(demo.force(), &plan) {
        panic!("EXPLAIN ANALYZE names restricted crime {r}: {plan}");
    }
    for person in demo.force().people.iter().take(50) {
        assert!(!plan.contains(&format!("'{}'", person.surname)), "{plan}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_error_messages_do_not_echo_hidden_rows() {
    let demo = demo().await;
    let analyst = demo.session("analyst");
    // Casting a text column fails on the first value it meets; it must only
    // meet rows the analyst may see.
    let e = refused(
        &analyst,
        "SELECT count(*) FROM rms.crimes WHERE CAST(crime_reference AS INT) > 0",
    )
    .await;
    if let Some(r) = mentions_restricted(demo.force(), &e.message) {
        panic!("the error names restricted crime {r}: {e}");
    }
    // A predicate that fails only on a restricted row must not fail at all.
    let probe = restricted(demo.force()).into_iter().next().unwrap();
    let n = column(
        &analyst,
        &format!(
            "SELECT count(*) FROM rms.crimes WHERE 1 / (CASE WHEN crime_reference = '{probe}' THEN 0 ELSE 1 END) = 1"
        ),
    )
    .await;
    assert_eq!(n, vec![unrestricted(demo.force()).len().to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_error_on_a_masked_column_shows_the_mask() {
    let demo = demo().await;
    let e = refused(
        &demo.session("analyst"),
        "SELECT CAST(forename AS INT) FROM rms.people",
    )
    .await;
    for person in &demo.force().people {
        assert!(
            !e.message.contains(&format!("'{}'", person.forename)),
            "{e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_min_max_on_masked_columns() {
    let demo = demo().await;
    let got = select(
        &demo.session("analyst"),
        "SELECT min(forename), max(forename), min(surname), max(birth_year) FROM rms.people",
    )
    .await;
    let force = demo.force();
    let hashes: Vec<String> = force.people.iter().map(|p| hashed(p.surname)).collect();
    assert_eq!(got[0][0], "[REDACTED]");
    assert_eq!(got[0][1], "[REDACTED]");
    assert_eq!(&got[0][2], hashes.iter().min().unwrap());
    assert!(got[0][3].ends_with('0'), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_order_by_masked_column() {
    let demo = demo().await;
    let got = column(
        &demo.session("analyst"),
        "SELECT person_id FROM rms.people ORDER BY surname, person_id",
    )
    .await;
    let mut want: Vec<(String, String)> = demo
        .force()
        .people
        .iter()
        .map(|p| (hashed(p.surname), p.person_id.clone()))
        .collect();
    want.sort();
    assert_eq!(got, want.into_iter().map(|(_, id)| id).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_predicates_probing_a_masked_column() {
    let demo = demo().await;
    let analyst = demo.session("analyst");
    let person = &demo.force().people[0];
    for sql in [
        format!(
            "SELECT count(*) FROM rms.people WHERE surname = '{}'",
            person.surname
        ),
        format!(
            "SELECT count(*) FROM rms.people WHERE forename LIKE '{}%'",
            &person.forename[..1]
        ),
        format!(
            "SELECT count(*) FROM rms.people WHERE birth_year = {}",
            person.birth_year + 1 - (person.birth_year % 10 == 9) as i32 * 2
        ),
    ] {
        let n = column(&analyst, &sql).await;
        if sql.contains("birth_year") && person.birth_year % 10 == 0 {
            continue;
        }
        assert_eq!(n, vec!["0".to_string()], "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_set_cannot_change_principal_or_purpose_rules() {
    let demo = demo().await;
    let analyst = demo.session("analyst");
    for sql in [
        "SET bluelamp.user = 'officer'",
        "SET bluelamp.principal = 'officer'",
        "SET datafusion.catalog.default_catalog = 'x'",
    ] {
        refused(&analyst, sql).await;
    }
    // Stating a purpose does not lift a row filter.
    select(&analyst, "SET bluelamp.purpose = 'I really need to'").await;
    let got = analyst_crime_refs(&demo, "SELECT crime_reference FROM rms.crimes").await;
    assert_eq!(got, unrestricted(demo.force()));
    // Clearing the purpose brings the supervisor's requirement back.
    let supervisor = demo.session("supervisor");
    select(&supervisor, "SET bluelamp.purpose = 'review'").await;
    select(&supervisor, "SELECT count(*) FROM rms.people").await;
    select(&supervisor, "SET bluelamp.purpose = ''").await;
    let e = refused(&supervisor, "SELECT count(*) FROM rms.people").await;
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_three_part_names() {
    let demo = demo().await;
    let got = analyst_crime_refs(&demo, "SELECT crime_reference FROM bluelamp.rms.crimes").await;
    assert_eq!(got, unrestricted(demo.force()));
    let e = refused(
        &demo.session("analyst"),
        "SELECT * FROM bluelamp.cad.incident_log",
    )
    .await;
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_hidden_and_missing_tables_fail_alike() {
    let demo = demo().await;
    let analyst = demo.session("analyst");
    let hidden = refused(&analyst, "SELECT * FROM cad.incident_log").await;
    let missing = refused(&analyst, "SELECT * FROM cad.no_such_table").await;
    assert_eq!(hidden.kind, missing.kind);
    assert_eq!(
        hidden.message.replace("incident_log", "X"),
        missing.message.replace("no_such_table", "X")
    );
    assert!(!missing.message.contains("incident_log"), "{missing}");
    let column = refused(&analyst, "SELECT vehicle_registration FROM cad.incidents").await;
    assert_eq!(column.kind, ErrorKind::NotFound, "{column}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_bluelamp_sources_lists_only_granted_sources() {
    let demo = demo().await;
    let names = column(&demo.session("clerk"), "SELECT name FROM bluelamp.sources").await;
    assert_eq!(names, vec!["stops".to_string()]);
    let counts = select(
        &demo.session("analyst"),
        "SELECT tables FROM bluelamp.sources WHERE name = 'cad'",
    )
    .await;
    assert_eq!(counts, vec![vec!["2".to_string()]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_copy_to_needs_a_grant_and_writes_masked_rows() {
    let demo = demo().await;
    let folder = demo.dir.path().join("exports");
    std::fs::create_dir_all(&folder).unwrap();
    let target = folder.join("people.csv");
    let sql = format!(
        "COPY (SELECT forename FROM rms.people) TO '{}' STORED AS CSV",
        target.display()
    );
    let e = refused(&demo.session("analyst"), &sql).await;
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
    assert!(!target.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_insert_select_from_a_forbidden_table() {
    let demo = demo().await;
    let clerk = demo.session("clerk");
    let e = refused(&clerk, "CREATE TABLE mine AS SELECT * FROM rms.crimes").await;
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    select(&clerk, "CREATE TABLE mine (crime_reference TEXT)").await;
    let e = refused(
        &clerk,
        "INSERT INTO mine SELECT crime_reference FROM rms.crimes",
    )
    .await;
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_need_a_write_grant_before_anything_is_validated() {
    let demo = demo().await;
    let rms = demo
        .live
        .systems
        .iter()
        .find(|s| s.kind.name() == "rms")
        .unwrap();
    let before = rms.stats.requests();
    // Not even a valid row: refusal must come before validation.
    let e = refused(
        &demo.session("analyst"),
        "INSERT INTO rms.crimes (incident_urn) VALUES ('nonsense')",
    )
    .await;
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
    assert!(e.message.contains("write = true"), "{e}");
    assert_eq!(before, rms.stats.requests(), "nothing reached the RMS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_filters_are_pushed_down_to_the_source() {
    let demo = demo().await;
    let sergeant = demo.session("sergeant");
    let plan = select(
        &sergeant,
        "EXPLAIN SELECT custody_id FROM custody.custody_records",
    )
    .await
    .concat()
    .join("\n");
    assert!(
        plan.contains("Northgate"),
        "the filter reaches the remote SQL: {plan}"
    );
    let got: BTreeSet<String> = column(&sergeant, "SELECT custody_id FROM custody.custody_records")
        .await
        .into_iter()
        .collect();
    let want: BTreeSet<String> = demo
        .force()
        .custody
        .iter()
        .filter(|c| c.station == "Northgate Custody")
        .map(|c| c.custody_id.clone())
        .collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------
// Flight SQL: metadata calls and prepared statements.

async fn flight(demo: &Demo) -> RunningServer {
    serve(
        demo.live.engine.clone(),
        Some("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap()
}

async fn login(server: &RunningServer, user: &str) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    client.handshake(user, "demo").await.unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_flight_metadata_calls() {
    let demo = demo().await;
    let server = flight(&demo).await;
    let mut analyst = login(&server, "analyst").await;
    let info = analyst
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let batches = fetch(&mut analyst, info).await.unwrap();
    let tables = strings(&batches, "table_name");
    assert!(!tables.contains(&"incident_log".to_string()), "{tables:?}");
    assert!(tables.contains(&"incidents".to_string()));
    // The schemas sent with the tables omit hidden columns.
    let schemas = format!("{batches:?}");
    assert!(!schemas.contains("vehicle_registration"));
    let info = analyst
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let schemas = strings(&fetch(&mut analyst, info).await.unwrap(), "db_schema_name");
    assert!(schemas.contains(&"rms".to_string()));
    let mut supervisor = login(&server, "analyst").await; // a second connection
    let info = supervisor
        .get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some("cad".into()),
            table: "incident_log".into(),
        })
        .await;
    let outcome = match info {
        Err(e) => Err(e.to_string()),
        Ok(info) => fetch(&mut supervisor, info)
            .await
            .map_err(|e| e.to_string()),
    };
    let e = outcome.expect_err("keys of a hidden table");
    assert!(e.contains("not found"), "{e}");
    assert!(
        !e.contains("incident_log;") && !e.contains("incident_log,"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_prepared_statement_with_parameters() {
    let demo = demo().await;
    let server = flight(&demo).await;
    let mut analyst = login(&server, "analyst").await;
    let probe = restricted(demo.force()).into_iter().next().unwrap();
    let mut prepared = analyst
        .prepare(
            "SELECT crime_reference FROM rms.crimes WHERE crime_reference = $1".into(),
            None,
        )
        .await
        .unwrap();
    let parameters = RecordBatch::try_from_iter(vec![(
        "$1",
        std::sync::Arc::new(arrow::array::StringArray::from(vec![probe.clone()])) as _,
    )])
    .unwrap();
    prepared.set_parameters(parameters).unwrap();
    let info = prepared.execute().await.unwrap();
    let batches = fetch(&mut analyst, info).await.unwrap();
    assert!(
        strings(&batches, "crime_reference").is_empty(),
        "{probe} leaked"
    );
}

// ---------------------------------------------------------------------------
// The audit trail names the policies applied.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_names_the_policies_applied() {
    let demo = demo().await;
    select(&demo.session("analyst"), "SELECT forename FROM rms.people").await;
    let path = demo.dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    let record = text
        .lines()
        .find(|l| l.contains("SELECT forename FROM rms.people") && l.contains("\"statement\""))
        .unwrap();
    assert!(record.contains("analysts read people, masked"), "{record}");
    assert!(record.contains("analysts see no names"), "{record}");
    assert!(record.contains("rms.people.forename"), "{record}");
    assert!(
        !record.contains("rms.people.surname"),
        "only the columns the query read: {record}"
    );
}

// ---------------------------------------------------------------------------
// Bad policies: each a clear `file:line` error at start, never an open door.

/// Starts an engine over two small CSV sources with `policy` added.
async fn start_with_policy(policy: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rms")).unwrap();
    std::fs::write(
        dir.path().join("rms/crimes.csv"),
        "crime_reference,restricted,recorded_on\nCRN/1,false,2024-01-02\n",
    )
    .unwrap();
    let text = format!(
        r#"[[user]]
name = "ann"
roles = ["analyst"]

[audit]
path = "audit.jsonl"

[[source]]
name = "rms"
kind = "files"
location = "rms"

{policy}"#
    );
    bluelamp_tests::fixtures::engine_from_text(&text, dir.path())
        .await
        .map(|_| ())
}

#[tokio::test]
async fn bad_policies_are_located_errors_at_start() {
    for (policy, line, says) in [
        (
            "[[policy.grant]]\nroles = [\"analsyt\"]\ntables = [\"rms.*\"]\n",
            13,
            "policy.grant[0].roles: no [[user]] has the role 'analsyt'",
        ),
        (
            "[[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"rms.crimez\"]\n",
            13,
            "policy.grant[0].tables[0]: source 'rms' has no table 'crimez'",
        ),
        (
            "[[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"rsm.*\"]\n",
            13,
            "policy.grant[0].tables[0]: there is no source named 'rsm'",
        ),
        (
            "[[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"rms.*\"]\nhide = [\"rms.crimes.nope\"]\n",
            13,
            "policy.grant[0].hide[0]: table 'rms.crimes' has no column 'nope'",
        ),
        (
            "[[policy.row_filter]]\ntable = \"rms.crimes\"\nfilter = \"NOT restricted AND\"\n",
            13,
            "policy.row_filter[0].filter: 'NOT restricted AND' is not a SQL expression",
        ),
        (
            "[[policy.row_filter]]\ntable = \"rms.crimes\"\nfilter = \"no_such_column = 1\"\n",
            13,
            "policy.row_filter[0].filter:",
        ),
        (
            "[[policy.row_filter]]\ntable = \"rms.crimes\"\nfilter = \"crime_reference\"\n",
            13,
            "is a Utf8, not a condition",
        ),
        (
            "[[policy.row_filter]]\ntable = \"rms.crimes\"\nfilter = \"CAST(crime_reference AS INT) > 0\"\n",
            13,
            "could fail on some row",
        ),
        (
            "[[policy.row_filter]]\ntable = \"rms.crimes\"\nfilter = \"cardinality(principal_teams()) > 0\"\n",
            13,
            "principal_teams() can only be used as",
        ),
        (
            "[[policy.mask]]\ncolumns = [\"rms.crimes.nope\"]\nmask = \"null\"\n",
            13,
            "policy.mask[0].columns[0]: table 'rms.crimes' has no column 'nope'",
        ),
        (
            "[[policy.mask]]\ncolumns = [\"rms.crimes.crime_reference\"]\nmask = \"year\"\n",
            13,
            "a `year` mask needs a date or timestamp column",
        ),
        (
            "[[policy.mask]]\ncolumns = [\"rms.crimes.crime_reference\"]\nmask = \"hash\"\n",
            13,
            "needs `[policy] mask_key`",
        ),
        (
            "[[policy.marking]]\ntables = [\"rms.crimez\"]\nclassification = \"SECRET\"\n",
            13,
            "policy.marking[0].tables[0]: source 'rms' has no table 'crimez'",
        ),
        (
            "[[policy.marking]]\ncolumns = [\"rms.crimes.nope\"]\nclassification = \"SECRET\"\n",
            13,
            "policy.marking[0].columns[0]: table 'rms.crimes' has no column 'nope'",
        ),
        (
            "[[policy.marking]]\ntables = [\"rms.*\"]\nclassification = \"TOP SECRET\"\n",
            15,
            "OFFICIAL, OFFICIAL-SENSITIVE or SECRET",
        ),
        (
            "[[policy.mask]]\ncolumns = [\"rms.crimes.crime_reference\"]\nmask = \"scramble\"\n",
            13,
            "unknown mask 'scramble'",
        ),
        (
            "[[policy.mask]]\ncolumns = [\"rms.crimes.crime_reference\"]\nmask = \"sql\"\nexpr = \"upper(nope)\"\n",
            13,
            "policy.mask[0].",
        ),
        (
            "[[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"rms.*\"]\nhide = [\"rms.crimes.restricted\"]\n\n[[policy.row_filter]]\nroles = [\"analyst\"]\ntable = \"rms.crimes\"\nfilter = \"NOT restricted\"\n",
            18,
            "it uses column 'restricted', which grant[0] hides",
        ),
    ] {
        let e = start_with_policy(policy).await.expect_err(policy);
        assert!(
            e.starts_with(&format!("test.toml:{line}: ")),
            "{policy}\n=> {e}"
        );
        assert!(e.contains(says), "{policy}\n=> {e}");
    }
    // A filter over a column marked above the clearance of a user it
    // applies to would name that column in their EXPLAIN.
    let e = start_with_policy(
        "[[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"rms.*\"]\n\n[[policy.marking]]\ncolumns = [\"rms.crimes.restricted\"]\nclassification = \"SECRET\"\n\n[[policy.row_filter]]\nroles = [\"analyst\"]\ntable = \"rms.crimes\"\nfilter = \"NOT restricted\"\n",
    )
    .await
    .unwrap_err();
    assert!(e.contains("policy.row_filter[0].filter: it uses column 'restricted', which is marked SECRET, above the clearance of user 'ann'"), "{e}");
    // So would an `sql` mask over another hidden column.
    let e = start_with_policy(
        "[[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"rms.*\"]\nhide = [\"rms.crimes.restricted\"]\n\n[[policy.mask]]\nroles = [\"analyst\"]\ncolumns = [\"rms.crimes.crime_reference\"]\nmask = \"sql\"\nexpr = \"CASE WHEN restricted THEN 'x' ELSE crime_reference END\"\n",
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("policy.mask[0].expr: it uses column 'restricted', which grant[0] hides"),
        "{e}"
    );
    // And a good one starts.
    start_with_policy(
        "[policy]\nmask_key = \"0123456789abcdef\"\n\n[[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"rms.*\"]\n\n[[policy.mask]]\nroles = [\"analyst\"]\ncolumns = [\"rms.crimes.crime_reference\"]\nmask = \"hash\"\n",
    )
    .await
    .unwrap();
}

// ---------------------------------------------------------------------------
// Security markings.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_carry_the_highest_marking_of_what_they_read() {
    let demo = demo().await;
    let officer = demo.session("officer");
    for (sql, want) in [
        ("SELECT count(*) FROM stops.stops_street", "OFFICIAL"),
        ("SELECT count(*) FROM rms.crimes", "OFFICIAL-SENSITIVE"),
        (
            "SELECT c.crime_reference, p.surname FROM rms.crimes c JOIN rms.crime_people cp ON cp.crime_reference = c.crime_reference JOIN rms.people p ON p.person_id = cp.person_id",
            "OFFICIAL-SENSITIVE [PERSONAL]",
        ),
        (
            "SELECT count(*) FROM cad.incident_log WHERE incident_urn = 'x'",
            "SECRET",
        ),
        ("SELECT 1", "OFFICIAL"),
    ] {
        let statement = officer.parse(sql).unwrap().remove(0);
        let planned = officer.plan(&statement).await.unwrap();
        assert_eq!(planned.marking(), Some(want), "{sql}");
        let output = officer.execute(planned).await.unwrap();
        assert_eq!(
            output
                .schema
                .metadata()
                .get("bluelamp.marking")
                .map(String::as_str),
            Some(want),
            "{sql}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearance_hides_what_is_marked_above_it() {
    let demo = demo().await;
    // The analyst (OFFICIAL-SENSITIVE) would see the incident log through a
    // grant; its SECRET marking keeps it out of reach all the same.
    let analyst = demo.session("analyst");
    let e = refused(&analyst, "SELECT count(*) FROM cad.incident_log").await;
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    let supervisor = demo.session("supervisor");
    let urn = &demo.force().incidents[0].urn;
    select(
        &supervisor,
        &format!("SELECT count(*) FROM cad.incident_log WHERE incident_urn = '{urn}'"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marking_travels_over_flight_sql_and_into_the_audit_trail() {
    let demo = demo().await;
    let server = flight(&demo).await;
    let mut analyst = login(&server, "analyst").await;
    let info = analyst
        .execute("SELECT forename FROM rms.people LIMIT 1".into(), None)
        .await
        .unwrap();
    let schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(
        schema
            .metadata()
            .get("bluelamp.marking")
            .map(String::as_str),
        Some("OFFICIAL-SENSITIVE [PERSONAL]")
    );
    fetch(&mut analyst, info).await.unwrap();
    let text = std::fs::read_to_string(demo.dir.path().join("audit.jsonl")).unwrap();
    let record = text
        .lines()
        .find(|l| {
            l.contains("SELECT forename FROM rms.people LIMIT 1") && l.contains("\"statement\"")
        })
        .unwrap();
    assert!(
        record.contains("\"marking\":\"OFFICIAL-SENSITIVE [PERSONAL]\""),
        "{record}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_writes_the_marking_into_parquet_and_refuses_csv() {
    let demo = demo().await;
    let officer = demo.session("officer");
    let folder = demo.dir.path().join("exports");
    std::fs::create_dir_all(&folder).unwrap();
    let parquet = folder.join("crimes.parquet");
    select(
        &officer,
        &format!(
            "COPY (SELECT crime_reference FROM rms.crimes) TO '{}' STORED AS PARQUET",
            parquet.display()
        ),
    )
    .await;
    let file = std::fs::File::open(&parquet).unwrap();
    let reader = datafusion::parquet::file::reader::SerializedFileReader::new(file).unwrap();
    use datafusion::parquet::file::reader::FileReader;
    let metadata = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let marking = metadata
        .iter()
        .find(|kv| kv.key == "bluelamp.marking")
        .and_then(|kv| kv.value.clone());
    assert_eq!(marking.as_deref(), Some("OFFICIAL-SENSITIVE"));
    let csv = folder.join("crimes.csv");
    let e = refused(
        &officer,
        &format!(
            "COPY (SELECT crime_reference FROM rms.crimes) TO '{}' STORED AS CSV",
            csv.display()
        ),
    )
    .await;
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
    assert!(e.message.contains("marked OFFICIAL-SENSITIVE"), "{e}");
    assert!(!csv.exists());
    // Public data (OFFICIAL) may still go to CSV.
    select(
        &officer,
        &format!(
            "COPY (SELECT age_range FROM stops.stops_street) TO '{}' STORED AS CSV",
            folder.join("stops.csv").display()
        ),
    )
    .await;
}

// ---------------------------------------------------------------------------
// Onward identity: suppliers learn who each request is for.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_suppliers_name_the_end_user() {
    let demo = demo().await;
    let rms = demo
        .live
        .systems
        .iter()
        .find(|s| s.kind.name() == "rms")
        .unwrap();
    let cad = demo
        .live
        .systems
        .iter()
        .find(|s| s.kind.name() == "cad")
        .unwrap();
    select(&demo.session("analyst"), "SELECT count(*) FROM rms.crimes").await;
    select(
        &demo.session("supervisor"),
        "SELECT count(*) FROM rms.crimes c JOIN cad.incidents i ON i.urn = c.incident_urn",
    )
    .await;
    let by_user = rms.stats.on_behalf_of();
    assert!(
        by_user.get("analyst").copied().unwrap_or(0) > 0,
        "{by_user:?}"
    );
    assert!(
        by_user.get("supervisor").copied().unwrap_or(0) > 0,
        "{by_user:?}"
    );
    assert!(
        !by_user.contains_key("-"),
        "every data request names its user: {by_user:?}"
    );
    let by_user = cad.stats.on_behalf_of();
    assert_eq!(
        by_user.keys().collect::<Vec<_>>(),
        ["supervisor"],
        "{by_user:?}"
    );
    // Deposits too: a dry run sends nothing, so deposit for real as officer.
    let officer = demo.session("officer");
    let before = rms
        .stats
        .on_behalf_of()
        .get("officer")
        .copied()
        .unwrap_or(0);
    let urn = &demo.force().incidents[0].urn;
    select(
        &officer,
        &format!(
            "INSERT INTO rms.crimes (incident_urn, offence_code, offence, recorded_at, status) VALUES ('{urn}', '049/00', 'Other theft', TIMESTAMP '2026-11-02 10:00:00', 'under investigation')"
        ),
    )
    .await;
    let after = rms
        .stats
        .on_behalf_of()
        .get("officer")
        .copied()
        .unwrap_or(0);
    assert!(after > before, "the POST named its user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purpose_can_be_required_by_marking() {
    let demo = demo_with("require_purpose = [\"PERSONAL\", \"SECRET\"]").await;
    let officer = demo.session("officer");
    // Neither PERSONAL nor SECRET: no purpose needed.
    select(&officer, "SELECT count(*) FROM rms.crimes").await;
    for sql in [
        "SELECT count(*) FROM rms.people",
        "SELECT count(*) FROM custody.custody_records",
        "SELECT count(*) FROM cad.incident_log WHERE incident_urn = 'x'",
    ] {
        let e = refused(&officer, sql).await;
        assert_eq!(e.kind, ErrorKind::PermissionDenied, "{sql}: {e}");
        assert!(e.message.contains("needs a stated purpose"), "{sql}: {e}");
        assert!(e.message.contains("data marked"), "{sql}: {e}");
    }
    select(&officer, "SET bluelamp.purpose = 'custody review'").await;
    select(&officer, "SELECT count(*) FROM rms.people").await;
}

#[tokio::test]
async fn a_required_purpose_must_name_a_source_classification_or_caveat() {
    let dir = tempfile::tempdir().unwrap();
    let e = bluelamp_tests::fixtures::engine_from_text(
        "[audit]\npath = \"audit.jsonl\"\nrequire_purpose = [\"PERSONEL\"]\n\n[[policy.marking]]\ntables = [\"rms.*\"]\nclassification = \"OFFICIAL\"\ncaveats = [\"PERSONAL\"]\n\n[[source]]\nname = \"rms\"\nkind = \"files\"\nlocation = \".\"\n",
        dir.path(),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(
        e.contains("audit.require_purpose: 'PERSONEL' is not a source, a classification"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// Found in review: computations moved below the row filter, settings that
// switch the guard off, fallible operators, overwrites, SQL PREPARE.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_select_list_computation_never_meets_hidden_rows() {
    let demo = demo().await;
    let analyst = demo.session("analyst");
    // The physical optimizer would move this projection under the row
    // filter (it keeps the filter's column), casting restricted crimes'
    // references and failing with one of them in the message. Over the
    // rows the analyst may see, nothing is cast and nothing fails.
    let sql = "SELECT restricted, CAST(CASE WHEN restricted THEN crime_reference || incident_urn ELSE '1' END AS INT) FROM rms.crimes";
    let got = match try_rows(&analyst, sql).await {
        Ok(rows) => rows,
        Err(e) => panic!(
            "{sql}: {e} (restricted crime named: {:?})",
            mentions_restricted(demo.force(), &e.message)
        ),
    };
    assert_eq!(got.len(), unrestricted(demo.force()).len());
    assert!(got.iter().all(|r| r == &["false", "1"]), "{got:?}");
    // Nothing restricted is cast, so nothing fails: the visible rows' CASE
    // gives '1'.
    let got = select(
        &analyst,
        "SELECT DISTINCT CAST(CASE WHEN restricted THEN crime_reference ELSE '1' END AS INT) FROM rms.crimes",
    )
    .await;
    assert_eq!(got, vec![vec!["1".to_string()]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_optimizer_settings_are_fixed_under_policy() {
    let demo = demo().await;
    let analyst = demo.session("analyst");
    for sql in [
        "SET datafusion.optimizer.max_passes = 0",
        "SET datafusion.optimizer.filter_null_join_keys = true",
        "SET datafusion.execution.parquet.pushdown_filters = true",
        "RESET datafusion.optimizer.max_passes",
    ] {
        let e = refused(&analyst, sql).await;
        assert_eq!(e.kind, ErrorKind::PermissionDenied, "{sql}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_regular_expressions_built_from_hidden_values() {
    let demo = demo().await;
    let analyst = demo.session("analyst");
    let visible: Vec<String> = unrestricted(demo.force()).into_iter().take(3).collect();
    let list = visible
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(", ");
    for sql in [
        "SELECT count(*) FROM rms.crimes WHERE 'x' ~ ('(' || crime_reference)".to_string(),
        format!(
            "SELECT count(*) FROM rms.crimes WHERE crime_reference IN ({list}) OR 'x' ~ ('(' || crime_reference)"
        ),
        "SELECT count(*) FROM rms.crimes WHERE 'x' SIMILAR TO ('(' || crime_reference)".to_string(),
    ] {
        if let Err(e) = try_rows(&analyst, &sql).await
            && let Some(r) = mentions_restricted(demo.force(), &e.message)
        {
            panic!("{sql}: the error names restricted crime {r}: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_may_only_append() {
    let demo = demo().await;
    let officer = demo.session("officer");
    let before = column(&officer, "SELECT count(*) FROM custody.custody_records").await;
    for sql in [
        "INSERT OVERWRITE custody.custody_records SELECT * FROM custody.custody_records LIMIT 0",
        "DELETE FROM custody.custody_records",
        "UPDATE custody.custody_records SET station = 'x'",
    ] {
        let e = refused(&officer, sql).await;
        assert_eq!(e.kind, ErrorKind::PermissionDenied, "{sql}: {e}");
    }
    let after = column(&officer, "SELECT count(*) FROM custody.custody_records").await;
    assert_eq!(before, after, "nothing was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepare_and_execute_are_refused_under_policy() {
    let demo = demo().await;
    let supervisor = demo.session("supervisor");
    select(&supervisor, "SET bluelamp.purpose = 'x'").await;
    let e = refused(&supervisor, "PREPARE p AS SELECT * FROM rms.people").await;
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
    let e = refused(&supervisor, "EXECUTE p").await;
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_in_the_session_keep_their_sources_marking_and_purpose() {
    let demo = demo().await;
    let officer = demo.session("officer");
    select(
        &officer,
        "CREATE TABLE mine AS SELECT custody_id, person_id FROM custody.custody_records",
    )
    .await;
    select(&officer, "CREATE VIEW again AS SELECT * FROM mine").await;
    for sql in ["SELECT count(*) FROM mine", "SELECT count(*) FROM again"] {
        let statement = officer.parse(sql).unwrap().remove(0);
        let planned = officer.plan(&statement).await.unwrap();
        assert_eq!(
            planned.marking(),
            Some("OFFICIAL-SENSITIVE [PERSONAL]"),
            "{sql}"
        );
    }
    let folder = demo.dir.path().join("exports");
    std::fs::create_dir_all(&folder).unwrap();
    let e = refused(
        &officer,
        &format!(
            "COPY mine TO '{}' STORED AS CSV",
            folder.join("x.csv").display()
        ),
    )
    .await;
    assert!(
        e.message.contains("marked OFFICIAL-SENSITIVE [PERSONAL]"),
        "{e}"
    );
    // A copy of what needed a purpose needs one to be read.
    let supervisor = demo.session("supervisor");
    select(&supervisor, "SET bluelamp.purpose = 'review'").await;
    select(
        &supervisor,
        "CREATE TABLE names AS SELECT surname FROM rms.people",
    )
    .await;
    select(
        &supervisor,
        "CREATE VIEW names_view AS SELECT * FROM rms.people",
    )
    .await;
    select(&supervisor, "SET bluelamp.purpose = ''").await;
    for sql in ["SELECT * FROM names", "SELECT * FROM names_view"] {
        let e = refused(&supervisor, sql).await;
        assert_eq!(e.kind, ErrorKind::PermissionDenied, "{sql}: {e}");
        assert!(e.message.contains("needs a stated purpose"), "{sql}: {e}");
    }
    // And the audit trail names the source behind the copy.
    select(&officer, "SELECT count(*) FROM mine").await;
    let text = std::fs::read_to_string(demo.dir.path().join("audit.jsonl")).unwrap();
    let record = text
        .lines()
        .rfind(|l| l.contains("SELECT count(*) FROM mine") && l.contains("\"statement\""))
        .unwrap();
    assert!(record.contains("custody.custody_records"), "{record}");
}

#[tokio::test]
async fn policies_can_live_in_a_file_the_config_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rms")).unwrap();
    std::fs::write(
        dir.path().join("rms/crimes.csv"),
        "crime_reference,restricted\nCRN/1,false\nCRN/2,true\n",
    )
    .unwrap();
    let config = "[[user]]\nname = \"ann\"\nroles = [\"analyst\"]\n\n[audit]\npath = \"audit.jsonl\"\n\n[policy]\nfile = \"policies.toml\"\n\n[[source]]\nname = \"rms\"\nkind = \"files\"\nlocation = \"rms\"\n";
    std::fs::write(
        dir.path().join("policies.toml"),
        "# the force's policies\n[[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"rms.*\"]\n\n[[policy.row_filter]]\nroles = [\"analyst\"]\ntable = \"rms.crimes\"\nfilter = \"NOT restricted\"\n",
    )
    .unwrap();
    let engine = bluelamp_tests::fixtures::engine_from_text(config, dir.path())
        .await
        .unwrap();
    let ann = engine.session(Identity::new("ann", "local"));
    assert_eq!(
        column(&ann, "SELECT crime_reference FROM rms.crimes").await,
        vec!["CRN/1".to_string()]
    );
    // An error in the file names the file and its line.
    std::fs::write(
        dir.path().join("policies.toml"),
        "[[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"rms.nope\"]\n",
    )
    .unwrap();
    let e = bluelamp_tests::fixtures::engine_from_text(config, dir.path())
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        e.contains("policies.toml:1: policy.grant[0].tables[0]: source 'rms' has no table 'nope'"),
        "{e}"
    );
    // A missing file is an error at start, never an open door.
    std::fs::remove_file(dir.path().join("policies.toml")).unwrap();
    let e = bluelamp_tests::fixtures::engine_from_text(config, dir.path())
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        e.contains("test.toml:9: policy.file: cannot read the policy file"),
        "{e}"
    );
}
