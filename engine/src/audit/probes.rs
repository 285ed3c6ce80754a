//! Requests sent to a source outside SQL — `bluelamp certify`'s probes of a
//! supplier's live interface (error answers, rate limits, raw pages, test
//! deposits) — go through the session like a statement does: the user must
//! be allowed to see everything the probes could reveal, and each probe is
//! recorded in the audit trail before it is sent.
//!
//! A probe reads raw answers, beneath the policy's row filters, masks and
//! hidden columns, so [`Session::authorise_probes`] grants it only to a user
//! who reads every table of the source in full (and deposits into every
//! writable one, for probes that write). Anyone else is refused, and the
//! refusal is recorded.

use crate::audit::AuditRecord;
use crate::error::{ErrorKind, QueryError};
use crate::session::Session;
use crate::{Engine, SourceState};

/// Leave to probe one source, from [`Session::authorise_probes`]; each probe
/// is recorded with [`ProbeGrant::record`] before it is sent.
#[derive(Debug, Clone)]
pub struct ProbeGrant {
    engine: Engine,
    /// The session's principal, client and purpose, for each record.
    template: AuditRecord,
    source: String,
    writes: bool,
}

impl ProbeGrant {
    /// The source the probes may reach.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the probes may deposit records.
    pub fn writes(&self) -> bool {
        self.writes
    }

    /// Records, durably, that `requests` requests described by `what` (for
    /// example `GET /incidents without credentials`) are about to be sent.
    ///
    /// # Errors
    /// [`ErrorKind::PermissionDenied`] for a write while the grant is
    /// read-only; [`ErrorKind::Unavailable`] if the record cannot be
    /// written — then the probe must not be sent.
    pub async fn record(&self, what: &str, requests: u64, write: bool) -> Result<(), QueryError> {
        if write && !self.writes {
            return Err(QueryError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "{what}: probing source '{}' was allowed for reading only",
                    self.source
                ),
            ));
        }
        tracing::info!(
            target: "bluelamp::audit",
            user = %self.template.user,
            source = %self.source,
            requests,
            "probe: {what}"
        );
        let Some(log) = self.engine.audit_log() else {
            return Ok(());
        };
        let mut record = self.template.clone();
        record.time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        record.statement = what.to_string();
        record.rows = Some(requests);
        log.append(record).await.map_err(|e| {
            QueryError::new(
                ErrorKind::Unavailable,
                format!("{e}; the probe '{what}' was not sent"),
            )
        })?;
        Ok(())
    }
}

impl Session {
    /// Leave to send source `source` requests of one's own, outside SQL
    /// (with `writes`, requests that deposit records too).
    ///
    /// Under a read policy the session's user must read every table of the
    /// source with no row filter, mask or hidden column, and — with `writes`
    /// — deposit into every one of them (the probe picks its target from
    /// the interface document, not from the policy); a stated
    /// purpose is needed where a grant or `[audit] require_purpose` asks
    /// for one. The leave is recorded (`probe` event) whether granted or
    /// refused.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] for an unknown source;
    /// [`ErrorKind::Unavailable`] for a source that is down (its tables,
    /// and so what the user may see, are unknown) or an audit trail that
    /// cannot be written; [`ErrorKind::PermissionDenied`] naming every
    /// table the user may not see in full.
    pub async fn authorise_probes(
        &self,
        source: &str,
        writes: bool,
    ) -> Result<ProbeGrant, QueryError> {
        let what = format!(
            "probe source '{source}' outside SQL{}",
            if writes { ", depositing records" } else { "" }
        );
        let mut template = self.audit_record("probe", &what);
        template.sources = vec![source.to_string()];
        template.recipient = Some(self.identity.user.clone());
        match self.probe_refusal(source, writes).await {
            Ok(tables) => {
                template.tables = tables;
                let grant = ProbeGrant {
                    engine: self.engine.clone(),
                    template,
                    source: source.to_string(),
                    writes,
                };
                grant.record(&what, 0, false).await?;
                Ok(grant)
            }
            Err(error) => {
                if let Some(log) = self.engine.audit_log() {
                    template.outcome = "refused".into();
                    template.error = Some(error.message.clone());
                    log.append(template).await.map_err(|e| {
                        QueryError::new(
                            ErrorKind::Unavailable,
                            format!("{}; and {e}", error.message),
                        )
                    })?;
                }
                Err(error)
            }
        }
    }

    /// The source's tables (`source.table`) if the user may probe it, else
    /// why not.
    async fn probe_refusal(&self, source: &str, writes: bool) -> Result<Vec<String>, QueryError> {
        let Some(schema) = self
            .engine
            .inner
            .sources
            .iter()
            .find(|s| s.name() == source)
        else {
            return Err(QueryError::new(
                ErrorKind::NotFound,
                format!("there is no source named '{source}' to probe"),
            ));
        };
        let status = schema.status();
        if status.state != SourceState::Up {
            return Err(QueryError::new(
                ErrorKind::Unavailable,
                format!(
                    "source '{source}' is {}, so what user '{}' may see of it cannot be checked and it is not probed{}",
                    status.state.as_str(),
                    self.identity.user,
                    status
                        .last_error
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
            ));
        }
        let names = datafusion::catalog::SchemaProvider::table_names(schema.as_ref());
        let qualified = names.iter().map(|t| format!("{source}.{t}")).collect();
        let config = self.engine.config();
        let mut purpose_for: Vec<String> = Vec::new();
        if config.audit.require_purpose.iter().any(|s| s == source) {
            purpose_for.push(format!("source {source}"));
        }
        if self.engine.inner.policy_active {
            let policy = &config.policy.read;
            let mut short: Vec<String> = Vec::new();
            for name in &names {
                let table = datafusion::catalog::SchemaProvider::table(schema.as_ref(), name)
                    .await
                    .map_err(QueryError::from)?;
                let columns: Vec<String> = table
                    .map(|t| {
                        t.schema()
                            .fields()
                            .iter()
                            .map(|f| f.name().clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let access = policy.access(&self.principal, source, name, &columns);
                let mut lacks: Vec<String> = Vec::new();
                if !access.read {
                    lacks.push("no read grant".into());
                } else if !access.hidden.is_empty() {
                    let hidden: Vec<&str> = access.hidden.iter().map(String::as_str).collect();
                    lacks.push(format!("hidden columns {}", hidden.join(", ")));
                }
                if !access.masks.is_empty() {
                    let masked: Vec<&str> = access.masks.iter().map(|(c, _)| c.as_str()).collect();
                    lacks.push(format!("masked columns {}", masked.join(", ")));
                }
                if !access.filters.is_empty() {
                    let filters: Vec<&str> =
                        access.filters.iter().map(|f| f.name.as_str()).collect();
                    lacks.push(format!("row filters {}", filters.join(", ")));
                }
                if writes && !access.write {
                    lacks.push("no write grant".into());
                }
                if access.require_purpose {
                    purpose_for.push(format!("{source}.{name}"));
                }
                if !lacks.is_empty() {
                    short.push(format!("{source}.{name} ({})", lacks.join("; ")));
                }
            }
            if !short.is_empty() {
                return Err(QueryError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "probing source '{source}' reads its raw answers, beneath the policy, so user '{}' must see every table of it in full{}; they do not: {}",
                        self.identity.user,
                        if writes {
                            " and deposit into every one"
                        } else {
                            ""
                        },
                        short.join(", ")
                    ),
                ));
            }
        }
        if !purpose_for.is_empty() && self.purpose().is_none() {
            let what: Vec<&str> = purpose_for.iter().map(String::as_str).collect();
            return Err(super::statements::purpose_needed(&what));
        }
        Ok(qualified)
    }
}
