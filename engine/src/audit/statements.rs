//! The session's side of the audit trail: a record for each statement before
//! it runs, purposes required by configuration, and metadata listings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::AuditRecord;
use super::trail::{Completion, DepositCounts};
use crate::deposits::{BluelampOptions, DepositJournal};
use crate::error::{ErrorKind, QueryError};
use crate::session::{Planned, Session};

/// The refusal of a statement that reads `what` (tables, sources or
/// markings) without a stated purpose, saying how to give one.
pub(crate) fn purpose_needed(what: &[&str]) -> QueryError {
    QueryError::new(
        ErrorKind::PermissionDenied,
        format!(
            "reading {} needs a stated purpose, recorded in the audit trail: run `SET bluelamp.purpose = 'why you need it'` first (over Flight SQL, as its own statement on the same connection)",
            what.join(", ")
        ),
    )
}

impl Session {
    /// The purpose stated with `SET bluelamp.purpose = '...'`, if any.
    pub fn purpose(&self) -> Option<String> {
        let state = self.ctx.state();
        state
            .config()
            .options()
            .extensions
            .get::<BluelampOptions>()
            .map(|o| o.purpose.trim().to_string())
            .filter(|p| !p.is_empty())
    }

    /// A record of this session's principal, client and purpose, stamped now.
    pub(crate) fn audit_record(&self, event: &str, statement: &str) -> AuditRecord {
        AuditRecord {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event: event.to_string(),
            user: self.identity.user.clone(),
            auth: self.identity.authenticated_by.clone(),
            client: self.client.clone(),
            purpose: self.purpose(),
            statement: statement.to_string(),
            outcome: "ok".into(),
            trace_id: crate::ops::trace::current_trace_id(),
            ..AuditRecord::default()
        }
    }

    /// Checks a statement's stated purpose and makes its `statement` record
    /// durable before anything runs; returns what will write its
    /// `completed` record.
    ///
    /// # Errors
    /// [`ErrorKind::PermissionDenied`] if a purpose is required and none was
    /// stated; [`ErrorKind::Unavailable`] if the record cannot be written.
    pub(crate) async fn audit_statement(
        &self,
        planned: &Planned,
        started: Instant,
    ) -> Result<Option<Arc<Completion>>, QueryError> {
        let settings = &self.engine.config().audit;
        let Some(log) = self.engine.audit_log() else {
            return Ok(None);
        };
        let (sources, tables, columns) = planned.touched.as_ref().clone();
        let mut record = self.audit_record("statement", &planned.sql);
        record.sources = sources;
        record.tables = tables;
        record.columns = columns;
        record.policies = planned.policies.as_ref().clone();
        record.marking = planned.marking.as_deref().map(str::to_string);
        record.recipient = Some(self.identity.user.clone());
        let needs_purpose: Vec<String> = settings
            .require_purpose
            .iter()
            .filter(|entry| {
                record.sources.contains(entry)
                    || planned.marking_value.as_ref().is_some_and(|marking| {
                        match entry.parse::<crate::principal::Clearance>() {
                            Ok(level) => marking.classification >= level,
                            Err(_) => marking
                                .caveats
                                .iter()
                                .any(|c| c.eq_ignore_ascii_case(entry)),
                        }
                    })
            })
            .map(|entry| {
                if record.sources.contains(entry) {
                    entry.clone()
                } else {
                    format!("data marked {entry}")
                }
            })
            .collect();
        if record.purpose.is_none() && !needs_purpose.is_empty() {
            let names: Vec<&str> = needs_purpose.iter().map(String::as_str).collect();
            let error = purpose_needed(&names);
            record.outcome = "refused".into();
            record.error = Some(error.message.clone());
            log.append(record).await.map_err(|e| {
                QueryError::new(
                    ErrorKind::Unavailable,
                    format!("{}; and {e}", error.message),
                )
            })?;
            return Err(error);
        }
        let seq = log.append(record.clone()).await.map_err(|e| {
            QueryError::new(
                ErrorKind::Unavailable,
                format!("{e}; the statement was refused and nothing was run"),
            )
        })?;
        let mut completed = record;
        completed.event = "completed".into();
        completed.statement_seq = Some(seq);
        completed.statement = String::new();
        completed.columns = Vec::new();
        let deposits = self
            .ctx
            .state()
            .config()
            .get_extension::<DepositJournal>()
            .map(|journal| {
                let since = journal.last_statement();
                Box::new(move || {
                    let mut counts = BTreeMap::new();
                    for outcome in journal.outcomes() {
                        if outcome.statement > since {
                            *counts.entry(outcome.outcome).or_insert(0u64) += 1;
                        }
                    }
                    counts
                }) as DepositCounts
            });
        Ok(Some(Completion::new(
            log.clone(),
            completed,
            started,
            deposits,
        )))
    }

    /// Records a metadata call that lists what the user can see.
    pub(crate) fn audit_metadata(&self, call: &str, rows: usize) {
        if let Some(log) = self.engine.audit_log() {
            let mut record = self.audit_record("metadata", call);
            record.rows = Some(rows as u64);
            record.recipient = Some(self.identity.user.clone());
            log.append_detached(record);
        }
    }
}
