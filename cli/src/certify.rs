//! `bluelamp certify`: the interoperability tiers as checks with evidence
//! (see the `bluelamp-certify` crate). Reports go to standard output as
//! Markdown, or as JSON with `--json`; the exit code is 1 when a criterion
//! fails.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use tokio::runtime::Runtime;

/// `bluelamp certify ...`.
#[derive(Subcommand)]
pub enum CertifyCommand {
    /// Tier 1: check a supplier's declaration of intent (TOML) and print its
    /// register entry; each mistake names the file, line and field.
    Intent {
        /// The declaration.
        file: PathBuf,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Tier 2: check a supplier's published interface. With --spec, the
    /// criteria that need only the document.
    Published {
        /// The OpenAPI document (JSON or YAML, 3.0 or 3.1; may refer to
        /// sibling files): the criteria that need only the document.
        #[arg(long, required_unless_present = "source", conflicts_with = "source")]
        spec: Option<PathBuf>,
        /// A configured `openapi` source: its document and its live system.
        #[arg(long)]
        source: Option<String>,
        /// With --source, read as this `[[user]]` (default: `[local] user`);
        /// policies apply, so use one who may read every table unfiltered.
        #[arg(long = "as", value_name = "USER", requires = "source")]
        as_user: Option<String>,
        /// With --source, also deposit records (a valid one, one missing a
        /// required field, an idempotent replay) and read them back: for a
        /// test or sandbox system only. Without it the deposit round trip is
        /// not run, and tier 2 is not reached.
        #[arg(long, requires = "source")]
        allow_writes: bool,
        #[command(flatten)]
        config: crate::ConfigFile,
        /// Sign the report with this Ed25519 key (made by `certify keygen`).
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Tier 3: run an interworking scenario (a TOML file naming two or more
    /// sources from different suppliers, a SQL workflow and SQL assertions)
    /// against the configured systems; the report has every statement's
    /// rows and every deposit's outcome. The workflow deposits for real:
    /// run it against test systems.
    Interworking {
        /// The scenario file; e.g. queries/workflows/crime_references.toml.
        scenario: PathBuf,
        /// Run as this `[[user]]` (default: `[local] user`); policies apply.
        #[arg(long = "as", value_name = "USER")]
        as_user: Option<String>,
        #[command(flatten)]
        config: crate::ConfigFile,
        /// Sign the report with this Ed25519 key (made by `certify keygen`).
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Make an Ed25519 key for signing reports: the secret goes to FILE
    /// (readable by its owner only), the public key to standard output.
    Keygen {
        /// Where to write the secret key.
        #[arg(long = "out", value_name = "FILE")]
        out: PathBuf,
    },
    /// Check a signed JSON report: its signature, and, given the document,
    /// that the document has not changed since it was certified.
    Verify {
        /// The report (JSON).
        report: PathBuf,
        /// The interface document as it is now.
        #[arg(long)]
        document: Option<PathBuf>,
        /// The public key (hex) the report must be signed with.
        #[arg(long)]
        public_key: Option<String>,
    },
}

/// Where reports go.
#[derive(Args)]
pub struct OutputArgs {
    /// Print JSON (for registers) instead of Markdown.
    #[arg(long)]
    json: bool,
    /// Also write the report to this file (JSON if it ends in .json,
    /// Markdown otherwise).
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

impl OutputArgs {
    fn emit(&self, markdown: &str, json: &str) -> anyhow::Result<()> {
        println!("{}", if self.json { json } else { markdown });
        if let Some(path) = &self.output {
            let text = if path.extension().is_some_and(|e| e == "json") {
                json
            } else {
                markdown
            };
            std::fs::write(path, text)
                .with_context(|| format!("cannot write the report to {}", path.display()))?;
        }
        Ok(())
    }
}

/// Runs one `certify` command.
///
/// # Errors
/// A file that cannot be read or written.
pub fn run(rt: &Runtime, command: CertifyCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertifyCommand::Intent { file, output } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let today = chrono::Utc::now().date_naive();
            match bluelamp_certify::intent::check(&text, &file.display().to_string(), today) {
                Ok(entry) => {
                    output.emit(&entry.to_markdown(), &serde_json::to_string_pretty(&entry)?)?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!("error: {e}");
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        CertifyCommand::Published {
            spec,
            source,
            as_user,
            allow_writes,
            config,
            sign,
            output,
        } => {
            // A bad key is found before the checks run, not after.
            if let Some(key) = &sign {
                bluelamp_certify::signing::load_key(key).map_err(anyhow::Error::msg)?;
            }
            let report = match (spec, source) {
                (Some(spec), _) => rt
                    .block_on(bluelamp_certify::published::check_document(&spec))
                    .map_err(anyhow::Error::msg)?,
                (None, Some(source)) => {
                    let config = bluelamp_engine::Config::load(&config.path)?;
                    rt.block_on(bluelamp_certify::live::check_source(
                        config,
                        &source,
                        as_user.as_deref(),
                        allow_writes,
                    ))
                    .map_err(anyhow::Error::msg)?
                }
                (None, None) => anyhow::bail!("give --spec FILE or --source NAME"),
            };
            finish_report(report, sign.as_deref(), &output)
        }
        CertifyCommand::Interworking {
            scenario,
            as_user,
            config,
            sign,
            output,
        } => {
            // The key and the scenario are checked before anything is sent.
            if let Some(key) = &sign {
                bluelamp_certify::signing::load_key(key).map_err(anyhow::Error::msg)?;
            }
            let scenario = match bluelamp_certify::interworking::load(&scenario) {
                Ok(s) => s,
                Err(errors) => {
                    for e in &errors {
                        eprintln!("error: {e}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            };
            let config = bluelamp_engine::Config::load(&config.path)?;
            let report = rt
                .block_on(bluelamp_certify::interworking::run(
                    &scenario,
                    config,
                    as_user.as_deref(),
                ))
                .map_err(anyhow::Error::msg)?;
            finish_report(report, sign.as_deref(), &output)
        }
        CertifyCommand::Keygen { out } => {
            let (secret, public) =
                bluelamp_certify::signing::keygen().map_err(anyhow::Error::msg)?;
            write_secret(&out, &secret)?;
            println!("{public}");
            Ok(ExitCode::SUCCESS)
        }
        CertifyCommand::Verify {
            report,
            document,
            public_key,
        } => {
            let text = std::fs::read_to_string(&report)
                .with_context(|| format!("cannot read {}", report.display()))?;
            let document = document
                .map(|d| std::fs::read(&d).with_context(|| format!("cannot read {}", d.display())))
                .transpose()?;
            match bluelamp_certify::signing::verify(
                &text,
                document.as_deref(),
                public_key.as_deref(),
            ) {
                Ok(v) => {
                    let tier = v
                        .tier_reached
                        .map_or("no tier".to_string(), |t| format!("tier {t}"));
                    let document = match v.document_matches {
                        Some(true) => "; the document is unchanged",
                        _ => "",
                    };
                    if v.signer_checked {
                        println!(
                            "{}: signature good, by the given key {}, {tier}{document}",
                            report.display(),
                            v.public_key
                        );
                        Ok(ExitCode::SUCCESS)
                    } else {
                        // Anyone can sign an edited report with a key of
                        // their own: only a known signer makes it evidence.
                        println!(
                            "{}: signature good, but by key {} which was not checked: give --public-key with the certifier's key; {tier}{document}",
                            report.display(),
                            v.public_key
                        );
                        Ok(ExitCode::FAILURE)
                    }
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", report.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// Signs `report` with the key in `sign`, if any, and writes it out; the
/// exit code is 1 when a criterion failed.
fn finish_report(
    mut report: bluelamp_certify::Report,
    sign: Option<&std::path::Path>,
    output: &OutputArgs,
) -> anyhow::Result<ExitCode> {
    if let Some(path) = sign {
        let key = bluelamp_certify::signing::load_key(path).map_err(anyhow::Error::msg)?;
        bluelamp_certify::signing::sign(&mut report, &key).map_err(anyhow::Error::msg)?;
    }
    output.emit(&report.to_markdown(), &report.to_json()?)?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes a secret key readable by its owner only, never over an existing file.
fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    file.write_all(secret.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
