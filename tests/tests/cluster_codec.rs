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

use bluelamp_cluster::BluelampCodec;
use bluelamp_engine::{Engine, Identity, PlanRunner};
use bluelamp_tests::fixtures::LiveDemo;
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
    async fn run(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let front = BluelampCodec::planning();
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
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a plan carries the secret {secret}"
            );
        }
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
        // OpenAPI with OAuth2 client credentials (RMS), joined to C&C.
        "SELECT i.grade, count(*) AS n FROM cad.incidents i \
         JOIN rms.crimes c ON c.incident_urn = i.urn GROUP BY 1 ORDER BY 1",
        // Parquet files.
        "SELECT camera_id, count(*) AS n FROM anpr.reads GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
        // A projection, an order and a limit.
        "SELECT i.urn, i.grade FROM cad.incidents i ORDER BY i.urn LIMIT 7",
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
    // A SQL database's federated plan does not cross yet: refused, naming
    // the node, before anything runs.
    let session = cluster.engine.session(Identity::local());
    let error = match session
        .sql("SELECT count(*) FROM custody.custody_records")
        .await
    {
        Ok(output) => output
            .stream
            .try_collect::<Vec<_>>()
            .await
            .err()
            .unwrap()
            .to_string(),
        Err(e) => e.message,
    };
    assert!(
        error.contains("cannot run on the cluster") && error.contains("SchemaCastScanExec"),
        "{error}"
    );
    assert!(!error.contains("custody.sqlite"), "{error}");
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
