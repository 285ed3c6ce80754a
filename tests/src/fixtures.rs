//! Engines over generated data, for tests.

use std::path::{Path, PathBuf};

use bluelamp_engine::{Config, Engine};

/// Seed and scale of the small demo force the SQL logic tests read; results in
/// `.slt` files depend on them.
pub const SLT_SEED: u64 = 1;
/// See [`SLT_SEED`].
pub const SLT_SCALE: f64 = 0.01;

/// Writes the small demo force into `dir` and returns its config path.
///
/// # Panics
/// If the files cannot be written (a broken test machine).
pub fn write_demo(dir: &Path) -> PathBuf {
    let force = bluelamp_simulators::generate(SLT_SEED, SLT_SCALE, |_| {});
    #[allow(clippy::expect_used, reason = "test fixture")]
    let files =
        bluelamp_simulators::write_force(&force, &dir.join("force")).expect("write demo force");
    files.config
}

/// An engine over a config file.
///
/// # Panics
/// If the config is invalid (a broken fixture).
pub async fn engine(config: &Path) -> Engine {
    #[allow(clippy::expect_used, reason = "test fixture")]
    let config = Config::load(config).expect("fixture config loads");
    #[allow(clippy::expect_used, reason = "test fixture")]
    Engine::start(config, &bluelamp_connectors::registry())
        .await
        .expect("engine starts")
}

/// An engine over config text (relative paths resolve against `base`).
///
/// # Errors
/// The config error, as text.
pub async fn engine_from_text(text: &str, base: &Path) -> Result<Engine, String> {
    let config = Config::parse(text, "test.toml", base.to_path_buf()).map_err(|e| e.to_string())?;
    Engine::start(config, &bluelamp_connectors::registry())
        .await
        .map_err(|e| e.to_string())
}
