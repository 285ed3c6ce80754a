//! Runs each `.slt` file in `tests/slt/` against an engine over the small demo force.

#![allow(clippy::expect_used, clippy::panic, reason = "tests")]

use std::path::{Path, PathBuf};

use bluelamp_engine::Identity;
use bluelamp_tests::fixtures::{engine, write_demo};
use bluelamp_tests::slt::SltSession;

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("slt")
}

async fn run(file: &str) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = write_demo(tmp.path());
    let engine = engine(&config).await;
    let mut runner = sqllogictest::Runner::new(move || {
        let session = engine.session(Identity::new("slt", "test"));
        async move { Ok::<_, bluelamp_tests::slt::SltError>(SltSession::new(session)) }
    });
    if let Err(e) = runner.run_file_async(slt_dir().join(file)).await {
        panic!("{file}:\n{}", e.display(true));
    }
}

macro_rules! slt_files {
    ($($name:ident => $file:literal),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                run($file).await;
            }
        )*

        /// Every .slt file is listed above, so none is silently left out.
        #[test]
        fn every_slt_file_runs() {
            let listed = [$($file),*];
            let mut found: Vec<String> = std::fs::read_dir(slt_dir())
                .expect("slt dir")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".slt"))
                .collect();
            found.sort();
            let mut listed: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
            listed.sort();
            assert_eq!(found, listed, "add new .slt files to tests/tests/slt.rs");
        }
    };
}

slt_files! {
    catalog => "catalog.slt",
    demo_force => "demo_force.slt",
    errors => "errors.slt",
    session => "session.slt",
}
