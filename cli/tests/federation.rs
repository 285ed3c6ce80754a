//! Force-to-force federation across processes: two `bluelamp serve`
//! processes, each a force's C&C incidents (one over TLS), and a regional
//! unit's `bluelamp sql` joining them through two `flightsql` sources. When one force's
//! server goes away, the regional query fails naming it; it never answers
//! from the other force alone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `bluelamp serve` child, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test certificate authority's certificate, and a server certificate
/// for `localhost` it signed with its key (PEM).
fn certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    (ca.pem(), server.pem(), server_key.serialize_pem())
}

/// A force's folder: `incidents` rows of `cad/incidents.csv` (station
/// `i % 5`, grade A/B/C in turn), a config serving them to the user
/// `regional` (over TLS with `tls`: the CA's certificate is written to
/// `DIR/NAME-ca.pem`), and the server started on a free port.
fn force(dir: &Path, name: &str, incidents: usize, tls: bool) -> Server {
    let folder = dir.join(name);
    std::fs::create_dir_all(folder.join("cad")).unwrap();
    let mut csv = String::from("urn,grade,station\n");
    for i in 0..incidents {
        csv.push_str(&format!(
            "{name}-{i},{},S{}\n",
            ["A", "B", "C"][i % 3],
            i % 5
        ));
    }
    std::fs::write(folder.join("cad/incidents.csv"), csv).unwrap();
    let hash = bluelamp_flight_server::hash_password("regional-pass").unwrap();
    let server = if tls {
        let (ca, cert, key) = certificates();
        std::fs::write(dir.join(format!("{name}-ca.pem")), ca).unwrap();
        std::fs::write(folder.join("server.pem"), cert).unwrap();
        std::fs::write(folder.join("server.key"), key).unwrap();
        "[server]\ntls_cert = \"server.pem\"\ntls_key = \"server.key\"\n\n"
    } else {
        ""
    };
    std::fs::write(
        folder.join("bluelamp.toml"),
        format!(
            "{server}[audit]\npath = \"audit.jsonl\"\n\n[[source]]\nname = \"cad\"\nkind = \"files\"\nlocation = \"cad\"\n\n[[user]]\nname = \"regional\"\npassword_hash = \"{hash}\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bluelamp"))
        .args([
            "serve",
            "--config",
            "bluelamp.toml",
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(&folder)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    let url = ready
        .strip_prefix("Flight SQL listening on ")
        .unwrap_or_else(|| panic!("{ready}"))
        .to_string();
    Server { child, url }
}

fn regional_query(dir: &Path, sql: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bluelamp"))
        .args([
            "sql",
            "--config",
            "regional.toml",
            "--format",
            "csv",
            "-c",
            sql,
        ])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("BLUELAMP_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn a_regional_unit_joins_two_forces_and_fails_whole_when_one_goes() {
    let dir = tempfile::tempdir().unwrap();
    // Force A answers over TLS, checked against its own CA.
    let force_a = force(dir.path(), "xa", 600, true);
    let mut force_b = force(dir.path(), "xb", 400, false);
    assert!(force_a.url.starts_with("grpc+tls://"), "{}", force_a.url);
    let source = |name: &str, url: &str, tls: &str| {
        format!(
            "[[source]]\nname = \"{name}\"\nkind = \"flightsql\"\nurl = \"{url}\"\nuser = \"regional\"\npassword = \"regional-pass\"\nschemas = [\"cad\"]\n{tls}\n"
        )
    };
    std::fs::write(
        dir.path().join("regional.toml"),
        format!(
            "{}{}",
            source(
                "force_a",
                &force_a.url,
                "tls_ca = \"xa-ca.pem\"\ntls_domain = \"localhost\"\n"
            ),
            source("force_b", &force_b.url, "")
        ),
    )
    .unwrap();
    let sql = "SELECT a.station, count(*) AS pairs FROM force_a.incidents a JOIN force_b.incidents b ON a.station = b.station WHERE a.grade = 'A' AND b.grade = 'A' GROUP BY a.station ORDER BY a.station";
    let out = regional_query(dir.path(), sql);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Expected: per station, force A's grade-A incidents × force B's.
    let count =
        |n: usize, station: usize| (0..n).filter(|i| i % 3 == 0 && i % 5 == station).count();
    let mut expected = String::from("station,pairs\n");
    for station in 0..5 {
        expected.push_str(&format!(
            "S{station},{}\n",
            count(600, station) * count(400, station)
        ));
    }
    assert_eq!(stdout, expected);
    // Force B's server goes away: the join fails, naming it.
    force_b.child.kill().unwrap();
    force_b.child.wait().unwrap();
    let out = regional_query(dir.path(), sql);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("S0,"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("force_b"), "{stderr}");
}
