//! What crosses to a cluster: the demo force's plans (OpenAPI scans with an
//! API key and OAuth2 client credentials, Parquet files) encoded with
//! Bluelamp's codec carry no secret; the scheduler's view of them (no
//! configuration) re-encodes to the same bytes; an executor's view (its own
//! configuration) answers exactly what the plan answers in one process.
//!
//! The engine's plan runner hook stands in for Ballista here, so every
//! statement of a real session goes through encode → scheduler → executor;
//! `cli/tests/cluster.rs` runs the real scheduler and executors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::{Arc, Mutex};

use bluelamp_cluster::{BluelampCodec, Losses, ServiceClient, start_service};
use bluelamp_connectors::sql::portable::{RemoteSql, SqlQueryExec};
use bluelamp_engine::{Config, Engine, Identity, PlanRunner};
use bluelamp_tests::fixtures::{LiveDemo, RemoteBluelamp, engine_from_text, write_incidents};
use bluelamp_tests::services::{
    MariaDatabase, PgDatabase, mariadb_host, mariadb_port, pg_host, pg_port, service_missing,
};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::TryStreamExt;
use prost::Message;

/// Secrets of the demo's systems and policy that must never be in a
/// plan's bytes.
const SECRETS: &[&str] = &["demo-rms-secret", "demo-cad-key", "demo force mask key"];

/// The PostgreSQL source's password (the server trusts local connections,
/// so any password is accepted), which must never cross.
const PG_SECRET: &str = "pg-cluster-secret";

/// Encodes each plan as the front end does, decodes it as the scheduler
/// and as an executor, and runs the executor's copy.
#[derive(Debug)]
struct WireRunner {
    executor: Engine,
    /// Every plan's bytes, for the test to inspect.
    sent: Mutex<Vec<Vec<u8>>>,
}

fn encode(plan: Arc<dyn ExecutionPlan>, codec: &BluelampCodec) -> Vec<u8> {
    PhysicalPlanNode::try_from_physical_plan(plan, codec)
        .unwrap()
        .encode_to_vec()
}

fn decode(bytes: &[u8], codec: &BluelampCodec, task: &TaskContext) -> Arc<dyn ExecutionPlan> {
    PhysicalPlanNode::decode(bytes)
        .unwrap()
        .try_into_physical_plan(task, codec)
        .unwrap()
}

#[async_trait::async_trait]
impl PlanRunner for WireRunner {
    fn accepts(&self, plan: &Arc<dyn ExecutionPlan>) -> bool {
        bluelamp_cluster::runs_on_cluster(plan)
    }

    fn needs_local_plan(&self, plan: &Arc<dyn ExecutionPlan>) -> bool {
        bluelamp_cluster::has_lookup(plan)
    }

    async fn run(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let front = BluelampCodec::planning();
        let plan = bluelamp_cluster::sliced(plan, 3).await?;
        let bytes = match PhysicalPlanNode::try_from_physical_plan(plan, &front) {
            Ok(node) => node.encode_to_vec(),
            Err(e) => return Err(front.refusal().unwrap_or(e)),
        };
        // The scheduler: no configuration, the same bytes on.
        let scheduler = BluelampCodec::planning();
        let split = decode(&bytes, &scheduler, &task);
        assert_eq!(encode(split, &scheduler), bytes, "the scheduler re-encodes");
        self.sent.lock().unwrap().push(bytes.clone());
        // An executor: its own sources and credentials.
        let executor = BluelampCodec::executing(self.executor.clone());
        let plan = tokio::task::block_in_place(|| decode(&bytes, &executor, &task));
        execute_stream(plan, task)
    }
}

/// Sends every plan of `engine`'s sessions through the wire, with `engine`
/// itself as the executor.
fn on_the_wire(engine: &Engine) -> Arc<WireRunner> {
    let runner = Arc::new(WireRunner {
        executor: engine.clone(),
        sent: Mutex::default(),
    });
    engine
        .set_plan_runner(Arc::clone(&runner) as Arc<dyn PlanRunner>)
        .unwrap();
    runner
}

/// Asserts no plan in `sent` carries a secret.
fn assert_no_secrets(sent: &[Vec<u8>]) {
    for bytes in sent {
        for secret in SECRETS {
            assert!(
                !contains(bytes, secret.as_bytes()),
                "a plan carries the secret {secret}"
            );
        }
    }
}

/// The error `sql` meets, at planning or while its rows stream.
async fn error_of(engine: &Engine, sql: &str) -> String {
    match engine.session(Identity::local()).sql(sql).await {
        Ok(output) => output
            .stream
            .try_collect::<Vec<_>>()
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} answered"))
            .to_string(),
        Err(e) => e.message,
    }
}

async fn answer(engine: &Engine, sql: &str) -> String {
    answer_as(engine, Identity::local(), sql).await
}

async fn answer_as(engine: &Engine, identity: Identity, sql: &str) -> String {
    let session = engine.session(identity);
    let output = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", e.message));
    let batches: Vec<_> = output.stream.try_collect().await.unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_cross_without_secrets_and_answer_the_same() {
    let single = LiveDemo::start(0.02, "").await;
    let cluster = LiveDemo::start(0.02, "").await;
    let runner = on_the_wire(&cluster.engine);
    for sql in [
        // OpenAPI with an API key (C&C), a filter pushed as a parameter.
        "SELECT grade, count(*) AS n FROM cad.incidents WHERE grade = 'E' GROUP BY grade",
        // One request series (a path) per incident: a partition each.
        "SELECT incident_urn, count(*) AS n FROM cad.incident_assignments \
         WHERE incident_urn IN ('CAD-20261007-00005', 'CAD-20261007-00007', 'CAD-20261007-00014') \
         GROUP BY 1 ORDER BY 1",
        // OpenAPI with OAuth2 client credentials (RMS), joined to C&C.
        "SELECT i.grade, count(*) AS n FROM cad.incidents i \
         JOIN rms.crimes c ON c.incident_urn = i.urn GROUP BY 1 ORDER BY 1",
        // Parquet files.
        "SELECT camera_id, count(*) AS n FROM anpr.reads GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
        // A projection, an order and a limit.
        "SELECT i.urn, i.grade FROM cad.incidents i ORDER BY i.urn LIMIT 7",
        // A half-open range of times, pushed as C&C's opened_from and
        // opened_to: three windows of six days, a task each.
        "SELECT grade, count(*) AS n, min(opened_at) AS first, max(opened_at) AS last \
         FROM cad.incidents WHERE opened_at >= '2026-10-02T00:00:00Z' \
         AND opened_at < '2026-10-20T00:00:00Z' GROUP BY 1 ORDER BY 1",
        // The same windows under a sort alone: every window's rows reach it.
        "SELECT urn, opened_at FROM cad.incidents WHERE opened_at >= '2026-10-02T00:00:00Z' \
         AND opened_at < '2026-10-20T00:00:00Z' ORDER BY opened_at DESC, urn",
    ] {
        assert_eq!(
            answer(&cluster.engine, sql).await,
            answer(&single.engine, sql).await,
            "{sql}"
        );
    }
    let sent = runner.sent.lock().unwrap().clone();
    assert!(sent.len() >= 4, "every query crossed: {}", sent.len());
    assert_no_secrets(&sent);
    // The scan of three incidents' paths is three partitions, which cross
    // as three single-partition slices (a task each).
    let plan = answer(
        &cluster.engine,
        "EXPLAIN SELECT * FROM cad.incident_assignments \
         WHERE incident_urn IN ('CAD-20261007-00005', 'CAD-20261007-00007', 'CAD-20261007-00014')",
    )
    .await;
    assert!(plan.contains("partitions=3"), "{plan}");
    assert!(
        sent.iter().any(|bytes| contains(bytes, b"\"slice\":[2,3]")),
        "the slices crossed"
    );
    for bound in ["2026-10-08T00:00:00Z", "2026-10-14T00:00:00Z"] {
        assert!(
            sent.iter().any(|bytes| contains(bytes, bound.as_bytes())),
            "a window bound at {bound} crossed"
        );
    }
}

/// Every cookbook query (C&C and RMS over HTTP, the custody SQLite
/// database, ANPR Parquet) answers on the wire exactly as in one process;
/// the custody database's sub-plans cross as SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookbook_answers_the_same_on_the_wire() {
    let single = LiveDemo::start(0.02, "").await;
    let cluster = LiveDemo::start(0.02, "").await;
    let runner = on_the_wire(&cluster.engine);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "{files:?}");
    for file in &files {
        let sql = std::fs::read_to_string(file).unwrap();
        assert_eq!(
            answer(&cluster.engine, &sql).await,
            answer(&single.engine, &sql).await,
            "{}",
            file.display()
        );
    }
    // A database's own sub-plans, alone and joined with another source.
    for sql in [
        "SELECT count(*) FROM custody.custody_records",
        "SELECT disposal, count(*) AS n FROM custody.custody_records \
         WHERE disposal <> 'charged' GROUP BY 1 ORDER BY 2 DESC, 1",
    ] {
        assert_eq!(
            answer(&cluster.engine, sql).await,
            answer(&single.engine, sql).await,
            "{sql}"
        );
    }
    let sent = runner.sent.lock().unwrap().clone();
    assert_no_secrets(&sent);
    let sql_nodes = sent
        .iter()
        .filter(|bytes| contains(bytes, b"\"dialect\":\"sqlite\""))
        .count();
    assert!(
        sql_nodes >= 4,
        "custody's queries crossed as SQL: {sql_nodes}"
    );
    assert!(
        !sent.iter().any(|bytes| contains(bytes, b"custody.sqlite")),
        "no database file path crosses"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_masks_cross_with_each_process_own_key() {
    let hash = bluelamp_flight_server::hash_password("demo").unwrap();
    let exports = tempfile::tempdir().unwrap();
    let access = bluelamp_simulators::access::demo_access(
        &hash,
        None,
        &exports.path().display().to_string(),
    );
    let audit = |name: &str| {
        format!(
            "{access}\n[audit]\npath = \"{}\"\n",
            exports.path().join(name).display()
        )
    };
    let single = LiveDemo::start(0.02, &audit("single.jsonl")).await;
    let cluster = LiveDemo::start(0.02, &audit("cluster.jsonl")).await;
    let runner = on_the_wire(&cluster.engine);
    // The analyst's names are redacted, surnames keyed hashes, birth years
    // decades: the policy rewrite happens where the query is planned, the
    // masks run on the executor with its own key.
    let sql = "SELECT forename, surname, birth_year FROM rms.people ORDER BY 2, 3 LIMIT 12";
    let analyst = || Identity::new("analyst", "password");
    let masked = answer_as(&cluster.engine, analyst(), sql).await;
    assert_eq!(masked, answer_as(&single.engine, analyst(), sql).await);
    assert!(masked.contains("[REDACTED]"), "{masked}");
    let sent = runner.sent.lock().unwrap().clone();
    assert!(!sent.is_empty());
    assert_no_secrets(&sent);
}

/// PostgreSQL and MariaDB sub-plans (a pushed aggregate, a pushed join, a
/// join across the two) cross as each database's final SQL and answer as
/// in one process; the password never crosses; an executor refuses any
/// text that is not one query reading the source's own tables with the
/// functions Bluelamp sends the database, whatever the plan's bytes say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_sub_plans_cross_as_read_only_sql() {
    let pg = match PgDatabase::create().await {
        Ok(db) => db,
        Err(e) => return service_missing("PostgreSQL", &e),
    };
    let maria = match MariaDatabase::create().await {
        Ok(db) => db,
        Err(e) => return service_missing("MariaDB", &e),
    };
    pg.client
        .batch_execute(
            "CREATE TABLE officers (id int PRIMARY KEY, name text, station text);
             INSERT INTO officers SELECT g, 'officer ' || g, (ARRAY['A1', 'B2', 'C3', 'Z9'])[1 + g % 4]
               FROM generate_series(1, 400) g;
             CREATE TABLE shifts (officer int, hours numeric(5, 2), day date);
             INSERT INTO shifts SELECT 1 + g % 400, (g % 9) + 0.25, DATE '2026-01-01' + g % 30
               FROM generate_series(1, 3000) g;",
        )
        .await
        .unwrap();
    maria
        .execute(
            "CREATE TABLE stations (code varchar(8) PRIMARY KEY, region varchar(20));
             INSERT INTO stations VALUES ('A1', 'North'), ('B2', 'North'), ('C3', 'South');",
        )
        .await
        .unwrap();
    let config = format!(
        "[[source]]\nname = \"pg\"\nkind = \"postgres\"\nhost = \"{}\"\nport = {}\nuser = \"postgres\"\n\
         password = \"{PG_SECRET}\"\ndatabase = \"{}\"\nsslmode = \"disable\"\n\n\
         [[source]]\nname = \"maria\"\nkind = \"mysql\"\nhost = \"{}\"\nport = {}\nuser = \"root\"\n\
         database = \"{}\"\nsslmode = \"disabled\"\n",
        pg_host(),
        pg_port(),
        pg.name,
        mariadb_host(),
        mariadb_port(),
        maria.name
    );
    let dir = tempfile::tempdir().unwrap();
    let single = engine_from_text(&config, dir.path()).await.unwrap();
    let cluster = engine_from_text(&config, dir.path()).await.unwrap();
    let runner = on_the_wire(&cluster);
    for sql in [
        "SELECT station, count(*) AS n FROM pg.officers GROUP BY 1 ORDER BY 1",
        "SELECT o.name, sum(s.hours) AS hours FROM pg.officers o JOIN pg.shifts s ON s.officer = o.id \
         WHERE s.day >= DATE '2026-01-20' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
        "SELECT st.region, count(*) AS n FROM pg.officers o JOIN maria.stations st ON st.code = o.station \
         GROUP BY 1 ORDER BY 1",
        "SELECT code FROM maria.stations WHERE region = 'North' ORDER BY code",
    ] {
        let got = answer(&cluster, sql).await;
        assert_eq!(got, answer(&single, sql).await, "{sql}");
        assert!(got.lines().count() > 4, "{sql}: {got}");
    }
    // A long filter: the database's text nests each AND in brackets, deeper
    // than a parser's default limit, and still crosses.
    let long = (1..=80)
        .map(|i| format!("id <> {i}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let sql = format!("SELECT count(*) AS n FROM pg.officers WHERE {long}");
    assert_eq!(answer(&cluster, &sql).await, answer(&single, &sql).await);
    assert!(answer(&cluster, &sql).await.contains("320"));
    let sent = runner.sent.lock().unwrap().clone();
    for dialect in ["postgres", "mysql"] {
        let marker = format!("\"dialect\":\"{dialect}\"");
        assert!(
            sent.iter().any(|bytes| contains(bytes, marker.as_bytes())),
            "a {dialect} query crossed"
        );
    }
    assert!(
        !sent
            .iter()
            .any(|bytes| contains(bytes, PG_SECRET.as_bytes()))
    );

    // A plan whose bytes were tampered with: the executor refuses anything
    // but one query that reads the source's own tables with the functions
    // Bluelamp sends PostgreSQL, and the database is untouched.
    pg.client
        .batch_execute(
            "CREATE SCHEMA hidden; CREATE TABLE hidden.keys (k text); \
             INSERT INTO hidden.keys VALUES ('not for executors'); CREATE SEQUENCE ids;",
        )
        .await
        .unwrap();
    let table = cluster.live_table("pg", "officers").await.unwrap().unwrap();
    let mut tables = Vec::new();
    for name in cluster.table_names("pg") {
        tables.push(cluster.live_table("pg", &name).await.unwrap().unwrap());
    }
    let forged = |sql: &str| RemoteSql {
        source: "pg".into(),
        table: "officers".into(),
        dialect: "postgres".into(),
        sql: sql.into(),
    };
    for (sql, what) in [
        ("DELETE FROM officers", "not a query"),
        (
            "WITH gone AS (DELETE FROM officers RETURNING id) SELECT count(*) FROM gone",
            "WITH",
        ),
        ("SELECT * INTO copied FROM officers", "SELECT INTO"),
        (
            "SELECT id FROM officers; DROP TABLE officers",
            "more than one",
        ),
        ("SELECT * FROM \"hidden\".\"keys\"", "hidden"),
        ("SELECT * FROM pg_catalog.pg_roles", "pg_roles"),
        (
            "SELECT name FROM \"public\".\"officers\" WHERE station IN (SELECT k FROM hidden.keys)",
            "hidden",
        ),
        (
            "SELECT pg_sleep(30) FROM \"public\".\"officers\"",
            "pg_sleep",
        ),
        ("SELECT setval('ids', 42)", "setval"),
        (
            "SELECT * FROM pg_read_file('/etc/passwd')",
            "table function",
        ),
        ("SELECT lo_import('/etc/passwd')", "lo_import"),
    ] {
        let error = SqlQueryExec::for_table(&table, &tables, forged(sql), table.schema())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("source 'pg'") && error.contains(what),
            "{sql}: {error}"
        );
    }
    // The source's tables, by the name the plan's own text gives them, pass.
    let plain = "SELECT \"id\", lower(\"name\"), \"station\" FROM \"public\".\"officers\" \
                 WHERE \"id\" IN (SELECT \"officer\" FROM \"public\".\"shifts\")";
    assert!(SqlQueryExec::for_table(&table, &tables, forged(plain), table.schema()).is_ok());
    let sequence = pg
        .client
        .query_one("SELECT last_value FROM ids", &[])
        .await
        .unwrap();
    assert_eq!(sequence.get::<_, i64>(0), 1);
    let left = pg
        .client
        .query_one("SELECT count(*) FROM officers", &[])
        .await
        .unwrap();
    assert_eq!(left.get::<_, i64>(0), 400);
}

/// A Flight SQL source's sub-plans run as the session's user, which SQL
/// text does not carry: they are refused before anything runs, naming the
/// source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_sub_plans_are_refused_naming_the_source() {
    let dir = tempfile::tempdir().unwrap();
    write_incidents(dir.path());
    let remote = RemoteBluelamp::start(
        "[[source]]\nname = \"cad\"\nkind = \"files\"\nlocation = \"cad\"\n",
        "",
        dir.path(),
    )
    .await;
    let local = engine_from_text(&remote.source("force_b", ""), dir.path())
        .await
        .unwrap();
    let runner = on_the_wire(&local);
    let error = error_of(
        &local,
        "SELECT grade, count(*) FROM force_b.incidents GROUP BY grade",
    )
    .await;
    assert!(
        error.contains("'force_b'") && error.contains("Flight SQL"),
        "{error}"
    );
    // The reason alone, not DataFusion's dump of the plan around it.
    assert!(
        !error.contains("Exec") && error.lines().count() == 1,
        "{error}"
    );
    assert!(runner.sent.lock().unwrap().is_empty(), "nothing was sent");
}

/// An executor's OpenAPI requests take their slots from the cluster's one
/// budget for the source (the cluster service), not from their own; with
/// the service gone, no request is sent and the query fails, naming the
/// source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_requests_take_slots_from_the_cluster_budget() {
    use bluelamp_simulators::http::{SystemKind, SystemOptions, openapi_sources, start};
    let force = Arc::new(bluelamp_simulators::generate(1, 0.01, |_| {}));
    let mut systems = Vec::new();
    for kind in SystemKind::ALL {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        systems.push(
            start(kind, Arc::clone(&force), SystemOptions::default(), addr)
                .await
                .unwrap(),
        );
    }
    let text = openapi_sources(&systems, &SystemOptions::default());
    assert!(text.contains("name = \"cad\"\n"), "{text}");
    let text = text.replacen("name = \"cad\"\n", "name = \"cad\"\nrate_limit = 200\n", 1);
    let service = start_service("127.0.0.1:0".parse().unwrap(), Losses::default())
        .await
        .unwrap();
    let client = ServiceClient::new(&format!("http://{}", service.addr)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(&text, "cluster.toml", dir.path().to_path_buf())
        .unwrap()
        .for_executor()
        .with_shared_pacer(Arc::new(client.clone()));
    let engine = Engine::start(config, &bluelamp_connectors::registry())
        .await
        .unwrap();
    let sent = bluelamp_connectors::openapi::client::requests_sent();
    let answer = answer(&engine, "SELECT count(*) AS n FROM cad.incidents").await;
    let requests = bluelamp_connectors::openapi::client::requests_sent() - sent;
    assert!(
        answer.contains(&force.incidents.len().to_string()),
        "{answer}"
    );
    let budgets = client.budgets().await.unwrap();
    // Every request of the scan took a slot; RMS has no limit and took none.
    assert_eq!(budgets.get("cad").copied(), Some(requests), "{budgets:?}");
    assert!(!budgets.contains_key("rms"), "{budgets:?}");

    drop(service);
    let sent = bluelamp_connectors::openapi::client::requests_sent();
    let error = error_of(&engine, "SELECT count(*) FROM cad.incidents").await;
    assert!(
        error.contains("cad") && error.contains("rate budget"),
        "{error}"
    );
    assert_eq!(
        bluelamp_connectors::openapi::client::requests_sent(),
        sent,
        "no request went out without a slot"
    );
}

/// A list paged by offset whose first page gives a total crosses as
/// stripes of its pages, a task each, and answers as in one process; the
/// one extra request is the first page, asked for when the plan is split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_paged_scans_cross_in_stripes_of_pages() {
    const FOLDERS: usize = 23;
    let document = serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": "folders", "version": "1"},
        "paths": {"/folders": {"get": {
            "operationId": "listFolders",
            "parameters": [
                {"name": "offset", "in": "query", "schema": {"type": "integer"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 5}}
            ],
            "responses": {"200": {"description": "folders", "content": {"application/json": {
                "schema": {"type": "object", "properties": {
                    "total_count": {"type": "integer"},
                    "entries": {"type": "array", "items": {"$ref": "#/components/schemas/Folder"}}
                }}
            }}}}
        }}},
        "components": {"schemas": {"Folder": {"type": "object", "required": ["id", "n"],
            "properties": {"id": {"type": "string"}, "n": {"type": "integer"}}}}}
    });
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let pages = axum::routing::get(
        move |axum::extract::Query(q): axum::extract::Query<
            std::collections::HashMap<String, String>,
        >| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let number = |name: &str, default: usize| {
                    q.get(name).and_then(|v| v.parse().ok()).unwrap_or(default)
                };
                let entries: Vec<serde_json::Value> = (1..=FOLDERS)
                    .skip(number("offset", 0))
                    .take(number("limit", 5).min(5))
                    .map(|n| serde_json::json!({"id": format!("f{n:02}"), "n": n}))
                    .collect();
                axum::Json(serde_json::json!({"total_count": FOLDERS, "entries": entries}))
            }
        },
    );
    let url = bluelamp_tests::fixtures::serve_openapi(
        document,
        axum::Router::new().route("/folders", pages),
    )
    .await;
    let config =
        format!("[[source]]\nname = \"s\"\nkind = \"openapi\"\nspec = \"{url}/openapi.json\"\n");
    let dir = tempfile::tempdir().unwrap();
    let single = engine_from_text(&config, dir.path()).await.unwrap();
    let cluster = engine_from_text(&config, dir.path()).await.unwrap();
    let runner = on_the_wire(&cluster);
    let sql = "SELECT id, n FROM s.folders ORDER BY n";
    let before = requests.load(std::sync::atomic::Ordering::SeqCst);
    let one = answer(&single, sql).await;
    let alone = requests.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert_eq!(alone, 5, "one process reads the five pages");
    let spread = answer(&cluster, sql).await;
    assert_eq!(spread, one);
    assert!(spread.contains("f23") && spread.contains("f01"), "{spread}");
    let on_cluster = requests.load(std::sync::atomic::Ordering::SeqCst) - before - alone;
    assert_eq!(on_cluster, 6, "the five pages and the first, to split them");
    let sent = runner.sent.lock().unwrap().clone();
    for index in 0..3 {
        let stripe =
            format!("\"stripe\":{{\"index\":{index},\"count\":3,\"step\":5,\"total\":23}}");
        assert!(
            sent.iter().any(|bytes| contains(bytes, stripe.as_bytes())),
            "stripe {index} of 3 crossed"
        );
    }
    assert_eq!(
        answer(&cluster, "SELECT count(*) AS n, sum(n) AS s FROM s.folders").await,
        answer(&single, "SELECT count(*) AS n, sum(n) AS s FROM s.folders").await
    );
}
