//! A cluster from three commands, as separate processes: `bluelamp
//! scheduler`, two `bluelamp executor --config` over the demo force's live
//! configuration, and `bluelamp sql` whose configuration names the
//! scheduler. Every answer (the cookbook's among them) equals the same
//! query's in one process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bluelamp ARGS` and returns it with its first line of output.
fn start(args: &[&str], dir: &Path) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bluelamp"))
        .args(args)
        .current_dir(dir)
        .env("BLUELAMP_DEMO_DIR", dir.join("demo"))
        .env_remove("RUST_LOG")
        .env_remove("BLUELAMP_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.starts_with("ready "), "{args:?}: {ready}");
    // Keep reading so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Process(child), ready)
}

fn field(line: &str, name: &str) -> String {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
        .to_string()
}

/// Runs `sql` (which may start with a comment, as the cookbook's do) from
/// a file, with `config`.
fn query(config: &Path, sql: &str) -> Output {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), sql).unwrap();
    Command::new(env!("CARGO_BIN_EXE_bluelamp"))
        .args(["sql", "--config"])
        .arg(config)
        .args(["--format", "csv", "-f"])
        .arg(file.path())
        .env_remove("RUST_LOG")
        .env_remove("BLUELAMP_CONFIG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The live configuration with `[engine] cluster` naming `scheduler` (and
/// its cluster service), beside it (its paths are relative to its folder).
fn cluster_config(live: &Path, scheduler: &str, service: &str) -> PathBuf {
    let original = std::fs::read_to_string(live).unwrap();
    let line = format!("cluster = \"{scheduler}\"\ncluster_service = \"{service}\"");
    let config = if original.contains("[engine]\n") {
        original.replacen("[engine]\n", &format!("[engine]\n{line}\n"), 1)
    } else {
        format!("[engine]\n{line}\n\n{original}")
    };
    let path = live.with_file_name("cluster.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The live demo at `scale`, a scheduler, two executors over the demo's
/// configuration, and that configuration naming the scheduler: the
/// processes (killed when dropped), the executors apart, and the two
/// configuration files (one process, the cluster).
struct Running {
    _demo: Process,
    _scheduler: Process,
    executors: Vec<Process>,
    live: PathBuf,
    cluster: PathBuf,
}

fn start_cluster(dir: &Path, scale: &str) -> Running {
    let (demo, demo_ready) = start(&["demo", "--scale", scale, "--listen", "127.0.0.1:0"], dir);
    let live = PathBuf::from(field(&demo_ready, "config"));
    let (scheduler_process, scheduler_ready) =
        start(&["scheduler", "--listen", "127.0.0.1:0"], dir);
    let scheduler = field(&scheduler_ready, "scheduler");
    assert!(scheduler.starts_with("df://127.0.0.1:"), "{scheduler}");
    let service = field(&scheduler_ready, "service");
    assert!(service.starts_with("http://127.0.0.1:"), "{service}");
    let live_text = live.to_str().unwrap();
    let executors = (0..2)
        .map(|i| {
            let work = dir.join(format!("executor-{i}"));
            let (process, ready) = start(
                &[
                    "executor",
                    "--config",
                    live_text,
                    "--scheduler",
                    &scheduler,
                    "--service",
                    &service,
                    "--tasks",
                    "1",
                    "--work-dir",
                    work.to_str().unwrap(),
                ],
                dir,
            );
            assert!(ready.contains("flight=127.0.0.1:"), "{ready}");
            process
        })
        .collect();
    let cluster = cluster_config(&live, &scheduler, &service);
    Running {
        _demo: demo,
        _scheduler: scheduler_process,
        executors,
        live,
        cluster,
    }
}

/// Runs `sql` on the cluster until it answers: executors register with the
/// scheduler just after they say ready.
fn first_answer(cluster: &Path, sql: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = query(cluster, sql);
        if out.status.success() || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn three_commands_make_a_cluster_that_answers_as_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_cluster(dir.path(), "0.02");
    let (live, cluster) = (&running.live, &running.cluster);
    let mut queries: Vec<String> = [
        // C&C over OpenAPI (an API key), a pushed filter.
        "SELECT grade, count(*) AS n FROM cad.incidents WHERE grade IN ('E', 'S') GROUP BY grade ORDER BY grade",
        // Three request series (a path per incident), three partitions: a
        // task each, on either executor.
        "SELECT incident_urn, count(*) AS n FROM cad.incident_assignments \
         WHERE incident_urn IN ('CAD-20261007-00005', 'CAD-20261007-00007', 'CAD-20261007-00014') \
         GROUP BY 1 ORDER BY 1",
        // RMS over OpenAPI (OAuth2) joined to C&C: a shuffle between stages.
        "SELECT i.grade, count(*) AS n FROM cad.incidents i JOIN rms.crimes c ON c.incident_urn = i.urn GROUP BY 1 ORDER BY 1",
        // ANPR Parquet files, read by the executors from their own stores.
        "SELECT camera_id, count(*) AS n, min(seen_at) AS first FROM anpr.reads GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
        // A global count over a join of two REST sources: one row, the
        // exact count (Ballista once answered a row per partition).
        "SELECT count(*) AS n FROM cad.incidents i JOIN rms.crimes c ON c.incident_urn = i.urn \
         WHERE i.opened_at >= TIMESTAMP '2026-10-07T00:00:00Z'",
        // A half-open range of times (C&C's opened_from and opened_to):
        // windows of it, a task each.
        "SELECT grade, count(*) AS n, max(opened_at) AS last FROM cad.incidents \
         WHERE opened_at >= '2026-10-03T00:00:00Z' AND opened_at < '2026-10-21T06:00:00Z' \
         GROUP BY 1 ORDER BY 1",
        // RMS crimes, paged by offset with a total (read in stripes of
        // pages where the list is longer than a page).
        "SELECT count(*) AS n, count(DISTINCT crime_reference) AS distinct_refs FROM rms.crimes",
        // The custody SQLite database: its sub-plan crosses as SQL, run by
        // an executor over its own connection.
        "SELECT disposal, count(*) AS n FROM custody.custody_records GROUP BY 1 ORDER BY 2 DESC, 1",
    ]
    .map(String::from)
    .to_vec();
    // And every cookbook query.
    let cookbook = Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cookbook)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    queries.extend(files.iter().map(|f| std::fs::read_to_string(f).unwrap()));
    let first = first_answer(cluster, &queries[0]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    for sql in &queries {
        let on_cluster = query(cluster, sql);
        let alone = query(live, sql);
        assert!(
            on_cluster.status.success(),
            "{sql}: {}",
            text(&on_cluster.stderr)
        );
        assert!(alone.status.success(), "{sql}: {}", text(&alone.stderr));
        assert_eq!(text(&on_cluster.stdout), text(&alone.stdout), "{sql}");
        assert!(
            text(&on_cluster.stdout).lines().count() > 1,
            "{sql}: no rows"
        );
    }
    // Values made on the executors from the rows they read are held to
    // the same [engine] max_value_size as in one process: refused, not made.
    let huge = "SELECT sum(length(repeat(camera_id, 30000000))) FROM anpr.reads";
    for config in [cluster, live] {
        let out = query(config, huge);
        assert!(!out.status.success(), "{}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains("repeat() would make a value of")
                && text(&out.stderr).contains("[engine] max_value_size"),
            "{}",
            text(&out.stderr)
        );
    }
    drop(running);
}

#[test]
fn an_executor_killed_mid_query_fails_the_query_or_it_answers_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start_cluster(dir.path(), "0.05");
    let (live, cluster) = (running.live.clone(), running.cluster.clone());
    // Pairs of reads at one camera: seconds of work, spread over both
    // executors by a shuffle.
    let sql = "SELECT count(*) AS pairs FROM anpr.reads a JOIN anpr.reads b \
               ON a.camera_id = b.camera_id WHERE a.plate < b.plate";
    let expected = query(&live, sql);
    assert!(expected.status.success(), "{}", text(&expected.stderr));
    // Wait for both executors to register.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !query(
        &cluster,
        "SELECT count(*) FROM anpr.reads WHERE plate <> ''",
    )
    .status
    .success()
    {
        assert!(Instant::now() < deadline, "the cluster never answered");
        std::thread::sleep(Duration::from_millis(500));
    }
    let in_flight = Command::new(env!("CARGO_BIN_EXE_bluelamp"))
        .args(["sql", "--config"])
        .arg(&cluster)
        .args(["--format", "csv", "-c", sql])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // Stopped as an operator or an orchestrator stops it (SIGTERM): it
    // tells the scheduler it is going, which then rolls finished stages
    // back; that rollback once answered 47,081,385 pairs for 20,838,447.
    let mut killed = running.executors.remove(0);
    let terminated = Command::new("kill")
        .args(["-TERM", &killed.0.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let _ = killed.0.wait();
    // It ends, one way or the other, well within the time a user waits.
    let mut in_flight = in_flight;
    let deadline = Instant::now() + Duration::from_secs(120);
    while in_flight.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = in_flight.kill();
            panic!("the query hung after an executor was lost");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = in_flight.wait_with_output().unwrap();
    if out.status.success() {
        // Finished before the executor went, or recovered: exactly right.
        assert_eq!(text(&out.stdout), text(&expected.stdout));
    } else {
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("the cluster")
                && (stderr.contains("could not") || stderr.contains("was lost")),
            "{stderr}"
        );
        assert!(
            text(&out.stdout).is_empty(),
            "no partial answer: {}",
            text(&out.stdout)
        );
    }
}
