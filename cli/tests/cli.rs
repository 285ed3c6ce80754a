//! The `bluelamp` binary as a user runs it: exit codes, what goes to stdout and
//! stderr, output formats, COPY, and config errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::process::{Command, Output};

fn bluelamp(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bluelamp"))
        .args(args)
        .current_dir(dir)
        .env("BLUELAMP_DEMO_DIR", dir.join("demo"))
        .env("BLUELAMP_HISTORY", dir.join("history"))
        .env_remove("RUST_LOG")
        .env_remove("BLUELAMP_CONFIG")
        .output()
        .expect("run bluelamp")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn demo(dir: &Path, sql: &str, format: &str) -> Output {
    bluelamp(
        dir,
        &["demo", "--scale", "0.01", "--format", format, "-c", sql],
    )
}

#[test]
fn demo_query_prints_only_data() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo(
        tmp.path(),
        "SELECT grade, count(*) AS n FROM cad.incidents GROUP BY grade ORDER BY grade",
        "csv",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "grade,n\nE,119\nI,101\nR,48\nS,232\n");
    // The second run uses the cached data: nothing is generated; stderr
    // carries only the result's security marking, stdout only data.
    let again = demo(tmp.path(), "SELECT count(*) AS n FROM rms.crimes", "ndjson");
    assert!(again.status.success());
    assert_eq!(text(&again.stdout), "{\"n\":152}\n");
    assert_eq!(text(&again.stderr), "marking: OFFICIAL-SENSITIVE\n");
}

/// `--prepare` writes the force's files and exits without starting the
/// systems; a second run finds them and generates nothing; the prompt then
/// uses the same files.
#[test]
fn demo_prepare_writes_the_data_and_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bluelamp(tmp.path(), &["demo", "--scale", "0.01", "--prepare"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let folder = tmp.path().join("demo").join("seed-1-scale-0.01");
    assert_eq!(text(&out.stdout).trim(), folder.display().to_string());
    assert!(text(&out.stderr).contains("generating the demo force"));
    assert!(!text(&out.stderr).contains("OpenAPI"), "no system started");
    assert!(folder.join("bluelamp.toml").is_file());
    assert!(folder.join("anpr").join("reads").is_dir());
    let again = bluelamp(tmp.path(), &["demo", "--scale", "0.01", "--prepare"]);
    assert!(again.status.success());
    assert!(
        text(&again.stderr).contains("is already in"),
        "{}",
        text(&again.stderr)
    );
    let query = demo(tmp.path(), "SELECT count(*) AS n FROM rms.crimes", "ndjson");
    assert_eq!(text(&query.stdout), "{\"n\":152}\n");
    assert!(!text(&query.stderr).contains("generating"));
}

#[test]
fn demo_accelerate_serves_copies_and_says_how_fresh() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("script.sql"),
        "REFRESH TABLE rms.crimes;\n\
         SELECT count(*) > 152 AS grown, count(*) = count(DISTINCT crime_reference) AS once FROM rms.crimes;\n\
         SELECT \"table\", mode, storage FROM bluelamp.accelerations ORDER BY source, \"table\";\n",
    )
    .unwrap();
    let out = bluelamp(
        tmp.path(),
        &[
            "demo",
            "--scale",
            "0.01",
            "--accelerate",
            "--live-rate",
            "20",
            "--format",
            "csv",
            "-f",
            "script.sql",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.starts_with("table,mode,fetched,rows,as_of\nrms.crimes,append,"),
        "{stdout}"
    );
    assert!(stdout.contains("grown,once\ntrue,true\n"), "{stdout}");
    assert!(
        stdout.ends_with(
            "table,mode,storage\nincidents,full,memory\ncrime_people,full,memory\n\
             crimes,append,memory\npeople,full,memory\nstops_street,full,memory\n"
        ),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("from local copies as of "),
        "{}",
        text(&out.stderr)
    );
    let bad = bluelamp(
        tmp.path(),
        &[
            "demo",
            "--scale",
            "0.01",
            "--live-rate=-1",
            "-c",
            "SELECT 1",
        ],
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("--live-rate"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn formats() {
    let tmp = tempfile::tempdir().unwrap();
    let sql = "SELECT urn, grade FROM cad.incidents ORDER BY urn LIMIT 2";
    let json = demo(tmp.path(), sql, "json");
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 2);
    assert!(parsed[0]["urn"].as_str().unwrap().starts_with("CAD-2026"));
    let table = demo(tmp.path(), sql, "table");
    let table = text(&table.stdout);
    // The table is headed by the result's security marking.
    assert!(
        table.starts_with("marking: OFFICIAL-SENSITIVE\n+"),
        "{table}"
    );
    assert!(table.contains("| urn "), "{table}");
}

#[test]
fn errors_are_one_line_and_fail_the_process() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo(
        tmp.path(),
        "SELECT 1; SELECT * FROM cad.nosuch; SELECT 2",
        "csv",
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert_eq!(
        last,
        "error: table 'cad.nosuch' not found: source 'cad' (openapi) has no table 'nosuch'; its tables are: incident, incident_assignments, incident_log, incidents, record_crime_reference"
    );
    assert!(
        !stderr.contains("backtrace") && !stderr.contains(".rs:"),
        "{stderr}"
    );
    // Statements before the error ran; those after it did not.
    assert_eq!(text(&out.stdout), "Int64(1)\n1\n");
}

#[test]
fn copy_to_parquet_and_read_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("exports")).unwrap();
    let out = demo(
        tmp.path(),
        "COPY (SELECT urn, grade FROM cad.incidents WHERE grade = 'I') TO 'exports/immediate.parquet'",
        "csv",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "count\n101\n");
    std::fs::write(
        tmp.path().join("bluelamp.toml"),
        "[[source]]\nname = \"out\"\nkind = \"files\"\nlocation = \"exports\"\n",
    )
    .unwrap();
    let back = bluelamp(
        tmp.path(),
        &[
            "sql",
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n, min(grade) AS g FROM out.immediate",
        ],
    );
    assert!(back.status.success(), "{}", text(&back.stderr));
    assert_eq!(text(&back.stdout), "n,g\n101,I\n");
}

#[test]
fn copy_outside_the_granted_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    // The demo's local user may write under the folder it was started from,
    // and nowhere else: not beside it, not through `..`.
    let outside = tmp.path().join("outside.csv");
    for target in [outside.display().to_string(), "../outside.csv".to_string()] {
        let out = bluelamp(
            &work,
            &[
                "demo",
                "--scale",
                "0.01",
                "--data-dir",
                &tmp.path().join("demo").display().to_string(),
                "-c",
                &format!("COPY (SELECT 1 AS x) TO '{target}'"),
            ],
        );
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(stderr.contains("is refused"), "{stderr}");
        assert!(stderr.contains("officer"), "{stderr}");
        assert!(!outside.exists());
    }
}

#[test]
fn running_as_a_configured_user() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bluelamp.toml"),
        "[local]\nuser = \"ann\"\n\n[[user]]\nname = \"ann\"\nroles = [\"exporter\"]\n\n[[user]]\nname = \"bob\"\n\n[[policy.files]]\nusers = [\"ann\"]\ncopy_to = [\"out\"]\n\n[audit]\npath = \"audit.jsonl\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(tmp.path().join("out")).unwrap();
    let copy = "COPY (SELECT 1 AS x) TO 'out/x.csv'";
    let ann = bluelamp(tmp.path(), &["sql", "-c", copy, "--format", "csv"]);
    assert!(ann.status.success(), "{}", text(&ann.stderr));
    let bob = bluelamp(tmp.path(), &["sql", "--as", "bob", "-c", copy]);
    assert!(!bob.status.success());
    assert!(
        text(&bob.stderr).contains("user 'bob' has no grant"),
        "{}",
        text(&bob.stderr)
    );
    let nobody = bluelamp(tmp.path(), &["sql", "--as", "nobody", "-c", "SELECT 1"]);
    assert!(!nobody.status.success());
    assert!(
        text(&nobody.stderr).contains("no [[user]] named 'nobody'"),
        "{}",
        text(&nobody.stderr)
    );
}

#[test]
fn the_demo_audits_and_audit_verify_catches_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo(tmp.path(), "SELECT count(*) AS n FROM cad.incidents", "csv");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let trail = tmp.path().join("demo/seed-1-scale-0.01/audit/audit.jsonl");
    let trail_arg = trail.display().to_string();
    let ok = bluelamp(tmp.path(), &["audit", "verify", &trail_arg]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("intact"), "{}", text(&ok.stdout));
    let found = bluelamp(
        tmp.path(),
        &[
            "audit",
            "search",
            &trail_arg,
            "--table",
            "cad.incidents",
            "--user",
            "officer",
        ],
    );
    assert!(
        text(&found.stdout).contains("\"event\":\"statement\""),
        "{}",
        text(&found.stdout)
    );
    let original = std::fs::read_to_string(&trail).unwrap();
    std::fs::write(&trail, original.replacen("officer", "someone", 1)).unwrap();
    let broken = bluelamp(tmp.path(), &["audit", "verify", &trail_arg]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        text(&broken.stdout).starts_with("BROKEN"),
        "{}",
        text(&broken.stdout)
    );
}

#[test]
fn script_file_and_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("q.sql"),
        "-- two statements\nSELECT 1 AS a;\nSELECT 'x;y' AS b;\n",
    )
    .unwrap();
    let out = bluelamp(tmp.path(), &["sql", "--format", "csv", "-f", "q.sql"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "a\n1\nb\nx;y\n");

    let mut child = Command::new(env!("CARGO_BIN_EXE_bluelamp"))
        .args(["sql", "--format", "csv"])
        .current_dir(tmp.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT 40 + 2 AS answer;")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "answer\n42\n");
}

#[test]
fn check_reports_every_source_and_fails_if_any_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("files")).unwrap();
    std::fs::write(tmp.path().join("files/a.csv"), "x,y\n1,2\n").unwrap();
    let config = tmp.path().join("bluelamp.toml");
    std::fs::write(
        &config,
        "[engine]\nconnect_timeout = \"2s\"\n\n[[source]]\nname = \"down\"\nkind = \"postgres\"\nport = 1\nuser = \"u\"\ndatabase = \"d\"\nsslmode = \"disable\"\n\n[[source]]\nname = \"local\"\nkind = \"files\"\nlocation = \"files\"\n\n[[source]]\nname = \"gone\"\nkind = \"sqlite\"\npath = \"missing.sqlite\"\n",
    )
    .unwrap();
    let out = bluelamp(tmp.path(), &["check", "--config", "bluelamp.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("down    postgres  FAILED  cannot connect"),
        "{stdout}"
    );
    assert_eq!(lines[1], "local   files     ok      1 table");
    assert!(
        lines[2].contains("FAILED") && lines[2].contains("missing.sqlite does not exist"),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("2 of 3 sources failed"));
}

#[test]
fn config_errors_name_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.toml"),
        "[[source]]\nname = \"rms\"\nkind = \"postgres\"\nuser = \"u\"\ndatabase = \"d\"\npasword = \"x\"\n",
    )
    .unwrap();
    let out = bluelamp(tmp.path(), &["check", "--config", "bad.toml"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: bad.toml:6: source[rms].pasword: unknown field `pasword`"),
        "{stderr}"
    );

    std::fs::write(
        tmp.path().join("kind.toml"),
        "[[source]]\nname = \"x\"\nkind = \"oracle\"\n",
    )
    .unwrap();
    let out = bluelamp(
        tmp.path(),
        &["sql", "--config", "kind.toml", "-c", "SELECT 1"],
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("kind.toml:3: source[x].kind: unknown kind 'oracle'; known kinds: files, flightsql, mysql, openapi, postgres, sqlite"), "{stderr}");

    let out = bluelamp(
        tmp.path(),
        &["sql", "--config", "nope.toml", "-c", "SELECT 1"],
    );
    assert!(text(&out.stderr).starts_with("error: cannot read config file nope.toml"));
}

#[test]
fn demo_listen_serves_the_systems_until_sigterm() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bluelamp"))
        .args(["demo", "--scale", "0.01", "--listen", "127.0.0.1:0"])
        .current_dir(tmp.path())
        .env("BLUELAMP_DEMO_DIR", tmp.path().join("demo"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.starts_with("ready "), "{ready}");
    let url = |name: &str| {
        ready
            .split_whitespace()
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_string()
    };
    // Each system accepts connections once `ready` is printed.
    for (name, path) in [
        ("cad", "/openapi.json"),
        ("rms", "/openapi.yaml"),
        ("stops", "/api/stops-street"),
    ] {
        let address = url(name).trim_start_matches("http://").to_string();
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        use std::io::{Read, Write};
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{name}: {response}");
    }
    // The Flight SQL endpoint accepts connections too, and says how to log in.
    let flight = url("flight");
    let flight = flight.trim_start_matches("grpc://");
    std::net::TcpStream::connect(flight).unwrap();
    assert!(ready.contains(" user=analyst password=demo"), "{ready}");
    // The running demo's configuration, for other commands in another terminal.
    let config = url("config");
    let out = bluelamp(
        tmp.path(),
        &[
            "certify",
            "published",
            "--config",
            &config,
            "--source",
            "rms",
            "--as",
            "officer",
            "--allow-writes",
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcome = |id: &str| {
        report["criteria"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["outcome"].as_str().unwrap().to_string())
            .unwrap()
    };
    for id in [
        "document.served",
        "live.schemas",
        "live.pagination",
        "live.filters",
        "live.errors",
        "deposit.round_trip",
        "security.transport",
    ] {
        assert_eq!(outcome(id), "pass", "{id}: {report}");
    }
    assert_eq!(report["tier_reached"], 2, "{report}");
    // Tier 3 on the running demo: the shipped C&C/RMS scenario.
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../queries/workflows/crime_references.toml")
        .display()
        .to_string();
    let out = bluelamp(
        tmp.path(),
        &[
            "certify",
            "interworking",
            &scenario,
            "--config",
            &config,
            "--as",
            "officer",
        ],
    );
    let markdown = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{markdown}",
        text(&out.stderr)
    );
    assert!(
        markdown.starts_with("# Bluelamp certification: interworking"),
        "{markdown}"
    );
    assert!(markdown.contains("- Tier reached: tier 3"), "{markdown}");
    let out = bluelamp(
        tmp.path(),
        &[
            "sql",
            "--config",
            &config,
            "--as",
            "officer",
            "-c",
            "SELECT count(*) > 0 FROM rms.crimes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("true"), "{}", text(&out.stdout));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn demo_help_lists_every_way_a_system_can_break_its_documentation() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bluelamp(tmp.path(), &["demo", "--help"]);
    let help = text(&out.stdout);
    for (name, _) in bluelamp_simulators::http::BREAKS {
        assert!(help.contains(&format!("rms:doc-{name} ")), "{name}: {help}");
    }
    let out = bluelamp(
        tmp.path(),
        &[
            "demo",
            "--scale",
            "0.01",
            "--faults",
            "rms:doc-sideways",
            "-c",
            "SELECT 1",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown break 'sideways'"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn certify_interworking_names_the_line_of_each_mistake() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("flow.sql"), "SELECT 1;").unwrap();
    std::fs::write(
        tmp.path().join("scenario.toml"),
        "name = \"x\"\nworkflow = \"flow.sql\"\n\n[[source]]\nname = \"cad\"\nsupplier = \"A\"\n\n[[source]]\nname = \"rms\"\nsupplier = \"B\"\n\n[[assert]]\ntitle = \"t\"\nsql = \"SELECT 1\"\nexpect = \"maybe\"\n",
    )
    .unwrap();
    let out = bluelamp(tmp.path(), &["certify", "interworking", "scenario.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: scenario.toml:2: workflow: flow.sql has no INSERT: a workflow deposits into one system what it retrieved from another\n\
         error: scenario.toml:15: assert[1].expect: 'maybe' is not an expectation: use \"no rows\", \"rows\" or \"true\""
    );
}

#[test]
fn simulate_rejects_unknown_systems_and_bad_faults() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bluelamp(tmp.path(), &["simulate", "dispatch"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("unknown system 'dispatch' (use cad, rms or stops)"));
    let out = bluelamp(tmp.path(), &["simulate", "cad", "--faults", "errors=7"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("errors: 7 must be between 0 and 1"),
        "{}",
        text(&out.stderr)
    );
}

/// A messy, large supplier document: cycles, broken references, missing
/// operationIds, vendor extensions, types the mapper cannot represent. The
/// source still comes up with every table it can map, and each problem is a
/// warning naming where in the document it is.
#[test]
fn check_warns_about_a_messy_openapi_document_but_keeps_its_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let mut paths = serde_json::Map::new();
    let list = |items: serde_json::Value| {
        serde_json::json!({"get": {
            "x-internal-team": "alpha",
            "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {
                "type": "object", "x-wrapper": true,
                "properties": {"items": {"type": "array", "items": items}}
            }}}}}
        }})
    };
    let mut things = list(serde_json::json!({"$ref": "#/components/schemas/Thing"}));
    things["get"]["operationId"] = "listThings".into();
    paths.insert("/things".into(), things);
    // No operationId: named after its path; `{id}` becomes a key column.
    paths.insert(
        "/sites/{id}/parts".into(),
        list(serde_json::json!({"type": "object", "properties": {"part": {"type": "string"}}})),
    );
    paths.insert(
        "/broken".into(),
        serde_json::json!({"get": {"operationId": "listBroken", "responses": {"200": {"description": "ok",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Nope"}}}}}}}),
    );
    paths.insert(
        "/shapeless".into(),
        list(serde_json::json!({"type": "object"})),
    );
    paths.insert(
        "/one".into(),
        serde_json::json!({"get": {"responses": {"200": {"description": "one object", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}}}),
    );
    paths.insert(
        "/upload".into(),
        serde_json::json!({"post": {"responses": {"204": {"description": "done"}}}}),
    );
    // A create operation without a list: an insert-only table, counted apart.
    paths.insert(
        "/notes".into(),
        serde_json::json!({"post": {"operationId": "addNote", "requestBody": {"content": {"application/json": {"schema":
            {"type": "object", "properties": {"text": {"type": "string"}}}}}},
            "responses": {"201": {"description": "made"}}}}),
    );
    // Size: a thousand more list operations.
    for n in 0..1000 {
        let mut op = list(serde_json::json!({"$ref": "#/components/schemas/Thing"}));
        op["get"]["operationId"] = format!("listBulk{n}").into();
        paths.insert(format!("/bulk/{n}"), op);
    }
    let document = serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": "Messy supplier", "version": "0.1", "x-logo": {"url": "x"}},
        "servers": [{"url": "http://127.0.0.1:9/api"}],
        "paths": paths,
        "components": {"schemas": {
            "Node": {"type": "object", "properties": {"name": {"type": "string"}, "child": {"$ref": "#/components/schemas/Node"}}},
            "Thing": {"type": "object", "required": ["id"], "x-entity": "thing", "properties": {
                "id": {"type": "integer"},
                "tree": {"$ref": "#/components/schemas/Node"},
                "lost": {"$ref": "#/components/schemas/Missing"},
                "either": {"type": ["string", "integer"]},
                "blob": {"type": "file"},
                "at": {"type": "string", "format": "date-time", "x-precision": "ms"}
            }}
        }}
    });
    std::fs::write(tmp.path().join("messy.json"), document.to_string()).unwrap();
    std::fs::write(
        tmp.path().join("bluelamp.toml"),
        "[[source]]\nname = \"messy\"\nkind = \"openapi\"\nspec = \"messy.json\"\n",
    )
    .unwrap();
    let out = bluelamp(tmp.path(), &["check", "--config", "bluelamp.toml"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    // listThings, sites_parts and 1000 bulk tables.
    assert_eq!(
        lines[0], "messy   openapi  ok      1002 tables, 1 insert-only table",
        "{stdout}"
    );
    // Each warning once (on stdout), and no colour codes into a pipe.
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("points at nothing"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    let warnings: Vec<&str> = lines[1..].iter().map(|l| l.trim_start()).collect();
    for expected in [
        "warning GET /broken: the response schema: $ref #/components/schemas/Nope points at nothing; skipped",
        "warning GET /shapeless: list items have no documented properties",
        "warning GET /things.tree.child: recursive $ref",
        "warning GET /things.lost: ",
        "warning GET /things.either: several types",
        "warning GET /things.blob: unknown type 'file'",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with(expected)),
            "missing {expected:?} in\n{stdout}"
        );
    }
    // The tables are queryable metadata even though the server is not there.
    let out = bluelamp(
        tmp.path(),
        &[
            "sql",
            "--config",
            "bluelamp.toml",
            "-c",
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'messy' AND table_name IN ('things', 'sites_parts') ORDER BY table_name, ordinal_position",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("id"), "{stdout}");
    assert!(stdout.contains("part"), "{stdout}");
}

/// `bluelamp certify intent` prints the register entry, or each mistake
/// with file:line; `certify published --spec` prints the report and fails
/// when a criterion fails.
#[test]
fn certify_intent_and_published_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let good = "supplier = \"Acme Policing Ltd\"\nproduct = \"Acme RMS\"\nversion = \"4.2\"\ncontact = \"interop@acme.example\"\ntarget_date = \"2099-03-31\"\ninterface = \"openapi\"\n\n[[entity]]\nname = \"crime\"\nretrieve = true\ndeposit = true\n";
    std::fs::write(tmp.path().join("intent.toml"), good).unwrap();
    let out = bluelamp(tmp.path(), &["certify", "intent", "intent.toml", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let entry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entry["tier"], 1);
    assert_eq!(entry["supplier"], "Acme Policing Ltd");
    assert_eq!(entry["entities"][0]["name"], "crime");
    std::fs::write(
        tmp.path().join("bad.toml"),
        good.replace("2099-03-31", "someday"),
    )
    .unwrap();
    let out = bluelamp(tmp.path(), &["certify", "intent", "bad.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: bad.toml:5: target_date: 'someday' is not a date: write it as YYYY-MM-DD"
    );

    let spec = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../simulators/src/http/openapi/rms.yaml")
        .display()
        .to_string();
    let out = bluelamp(
        tmp.path(),
        &["certify", "published", "--spec", &spec, "-o", "report.json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let markdown = text(&out.stdout);
    assert!(
        markdown.starts_with("# Bluelamp certification: published"),
        "{markdown}"
    );
    assert!(
        markdown.contains("- /crimes: retrieve GET /crimes; deposit POST /crimes"),
        "{markdown}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["check"], "published");
    // Signed: it verifies, and an edit or a changed document is caught.
    let out = bluelamp(tmp.path(), &["certify", "keygen", "--out", "key"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let public = text(&out.stdout).trim().to_string();
    assert_eq!(public.len(), 64);
    let out = bluelamp(
        tmp.path(),
        &[
            "certify",
            "published",
            "--spec",
            &spec,
            "--sign",
            "key",
            "-o",
            "signed.json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = bluelamp(
        tmp.path(),
        &[
            "certify",
            "verify",
            "signed.json",
            "--document",
            &spec,
            "--public-key",
            &public,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("signature good")
            && text(&out.stdout).contains("the document is unchanged"),
        "{}",
        text(&out.stdout)
    );
    let signed = std::fs::read_to_string(tmp.path().join("signed.json")).unwrap();
    std::fs::write(
        tmp.path().join("edited.json"),
        signed.replacen("\"not_applicable\"", "\"pass\"", 1),
    )
    .unwrap();
    // Without the certifier's key, a good signature is not enough.
    let out = bluelamp(tmp.path(), &["certify", "verify", "signed.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("which was not checked"),
        "{}",
        text(&out.stdout)
    );
    let out = bluelamp(tmp.path(), &["certify", "verify", "edited.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the report was altered"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(tmp.path().join("changed.yaml"), "openapi: 3.0.3\n").unwrap();
    let out = bluelamp(
        tmp.path(),
        &[
            "certify",
            "verify",
            "signed.json",
            "--document",
            "changed.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the document has changed since it was certified"),
        "{}",
        text(&out.stderr)
    );

    let courthouses = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/openapi_corpus/hmcts-courthouses/openapi-spec.yml")
        .display()
        .to_string();
    let out = bluelamp(
        tmp.path(),
        &["certify", "published", "--spec", &courthouses],
    );
    assert_eq!(out.status.code(), Some(1), "a read-only interface fails");
}

/// `[telemetry]` in the file a command loads turns traces on: the statement
/// a script runs reaches an OTLP receiver before the process exits, under
/// the configured service name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_sends_its_statement_trace_to_the_configured_collector() {
    let mut receiver = bluelamp_tests::otlp::OtlpReceiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bluelamp.toml"),
        format!(
            "[telemetry]\notlp_endpoint = \"{}\"\nservice_name = \"bluelamp-cli-test\"\n",
            receiver.endpoint()
        ),
    )
    .unwrap();
    let dir = tmp.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        bluelamp(
            &dir,
            &["sql", "--config", "bluelamp.toml", "-c", "SELECT 41 + 1"],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("42"), "{}", text(&out.stdout));
    // Sent before the process ended: nothing waits for a later batch.
    assert!(
        receiver
            .wait_for(std::time::Duration::from_secs(5), |spans| {
                spans.iter().any(|s| {
                    s.name == "statement"
                        && s.service == "bluelamp-cli-test"
                        && s.attribute("bluelamp.client") == "script"
                        && s.attribute("bluelamp.rows") == "1"
                })
            })
            .await,
        "no statement span; received {:?}",
        receiver.received
    );

    // An endpoint that is not a collector's URL is refused with the key.
    std::fs::write(
        tmp.path().join("bluelamp.toml"),
        "[telemetry]\notlp_endpoint = \"localhost:4317\"\n",
    )
    .unwrap();
    let dir = tmp.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        bluelamp(
            &dir,
            &["sql", "--config", "bluelamp.toml", "-c", "SELECT 1"],
        )
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("telemetry.otlp_endpoint") && stderr.contains("http://127.0.0.1:4317"),
        "{stderr}"
    );
}

/// The features each dependency is compiled with in one build, from `cargo
/// tree`: package (with version) to its features.
fn features_of(build: &[&str]) -> std::collections::BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args([
            "tree", "--locked", "--prefix", "none", "--format", "{p}|{f}",
        ])
        .args(build)
        .current_dir(&root)
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter_map(|line| {
            // A package shown again is marked `(*)`.
            let line = line.trim_end().trim_end_matches(" (*)");
            let (package, features) = line.split_once('|')?;
            // `name v1.2.3 (path)` and `name v1.2.3 (*)` are the same package.
            let package = package.split(" (").next()?.trim().to_string();
            let mut features: Vec<&str> = features.split(',').filter(|f| !f.is_empty()).collect();
            features.sort_unstable();
            Some((package, features.join(",")))
        })
        .collect()
}

/// `cargo build --release` (the command line), the benchmarks and the
/// whole workspace's tests compile every dependency they share with the
/// same features, so each reuses what another compiled (one DataFusion, not
/// three). A difference names the package and the features; turn them on in
/// `workspace-hack/Cargo.toml`.
#[test]
fn every_build_compiles_its_dependencies_with_the_same_features() {
    let binary = features_of(&["-p", "bluelamp", "--edges", "normal,build"]);
    assert!(
        binary.keys().any(|p| p.starts_with("datafusion v")),
        "{binary:?}"
    );
    for (name, build) in [
        (
            "the benchmarks",
            features_of(&["-p", "bluelamp-benches", "--edges", "normal,build,dev"]),
        ),
        (
            "the workspace's tests",
            features_of(&["--workspace", "--edges", "normal,build,dev"]),
        ),
    ] {
        let differ: Vec<String> = binary
            .iter()
            .filter_map(|(package, features)| {
                let other = build.get(package)?;
                (other != features)
                    .then(|| format!("{package}: [{features}] in the binary, [{other}] in {name}"))
            })
            .collect();
        assert!(differ.is_empty(), "{}", differ.join("\n"));
    }
}
