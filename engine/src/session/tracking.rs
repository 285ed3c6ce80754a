//! A [`Session`]'s statements in the engine's operations: each is entered
//! in `bluelamp.queries` as it starts and runs under the session's
//! statement timeout (`SET bluelamp.statement_timeout`, at most the
//! server's `[engine] statement_timeout`).

use std::sync::Arc;
use std::time::Duration;

use datafusion::logical_expr::{LogicalPlan, Statement as PlanStatement};

use super::Session;
use crate::deposits::BluelampOptions;
use crate::error::{ErrorKind, QueryError};
use crate::ops::QueryOrigin;
use crate::ops::tracked::{Tracker, describe};

/// The setting users change their statement timeout with.
const TIMEOUT_SETTING: &str = "bluelamp.statement_timeout";

impl Session {
    /// The front end this session serves (`repl`, `flight-sql`, ...).
    pub fn front_end(&self) -> &str {
        &self.front_end
    }

    /// How long each of this session's statements may run: its own
    /// `bluelamp.statement_timeout`, else the server's; `None` for no limit.
    pub fn statement_timeout(&self) -> Option<Duration> {
        let server = self.engine.config().engine.statement_limit();
        let state = self.ctx.state_ref();
        let state = state.read();
        let own = state
            .config()
            .options()
            .extensions
            .get::<BluelampOptions>()
            .map(|o| o.statement_timeout.trim().to_string())
            .filter(|t| !t.is_empty());
        match own.map(|t| timeout_setting(&t, server)) {
            Some(Ok(own)) => own,
            // Refused when set, so only an unreadable value lands here.
            Some(Err(_)) | None => server,
        }
    }

    /// Enters a statement in the registry, under this session's timeout,
    /// traced by `span`.
    pub(crate) fn track(&self, sql: &str, span: tracing::Span) -> Arc<Tracker> {
        let ops = &self.engine.inner.ops;
        let record = ops.queries.begin(QueryOrigin {
            user: self.identity.user.clone(),
            client: self.front_end.to_string(),
            address: self.client.clone(),
            purpose: self.purpose(),
            sql: sql.to_string(),
        });
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some(Arc::clone(&record));
        }
        Tracker::new(Arc::clone(ops), record, self.statement_timeout(), span)
    }

    /// The statement this session started last, while it runs: its entry
    /// in `bluelamp.queries`, for a front end's progress display.
    pub fn running_statement(&self) -> Option<Arc<crate::ops::QueryRecord>> {
        let latest = self.latest.lock().ok()?.clone()?;
        (latest.state() == crate::ops::QueryState::Running).then_some(latest)
    }

    /// Refuses a `SET bluelamp.statement_timeout` the server does not allow.
    pub(crate) fn check_limits(&self, plan: &LogicalPlan) -> Result<(), QueryError> {
        let LogicalPlan::Statement(PlanStatement::SetVariable(set)) = plan else {
            return Ok(());
        };
        if !set.variable.eq_ignore_ascii_case(TIMEOUT_SETTING) {
            return Ok(());
        }
        let server = self.engine.config().engine.statement_limit();
        timeout_setting(&set.value, server)
            .map(|_| ())
            .map_err(|m| {
                QueryError::new(
                    ErrorKind::InvalidQuery,
                    format!("SET {TIMEOUT_SETTING}: {m}"),
                )
            })
    }
}

/// A session's timeout setting read against the server's limit: a
/// duration up to the limit; `0` only where the server has none.
fn timeout_setting(value: &str, server: Option<Duration>) -> Result<Option<Duration>, String> {
    let text = value.trim().trim_matches('\'');
    let wanted = crate::config::parse_duration(text)?;
    match server {
        Some(limit) if wanted.is_zero() => Err(format!(
            "the server limits statements to {} ([engine] statement_timeout); set a shorter time, e.g. '30s'",
            describe(limit)
        )),
        Some(limit) if wanted > limit => Err(format!(
            "{} is longer than the server allows ({}, [engine] statement_timeout)",
            describe(wanted),
            describe(limit)
        )),
        _ if wanted.is_zero() => Ok(None),
        _ => Ok(Some(wanted)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn a_session_may_shorten_the_server_limit_but_not_lift_it() {
        let ten = Some(Duration::from_secs(600));
        assert_eq!(
            timeout_setting("30s", ten).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            timeout_setting("'2m'", ten).unwrap(),
            Some(Duration::from_secs(120))
        );
        assert!(
            timeout_setting("1h", ten)
                .unwrap_err()
                .contains("longer than the server allows (10m")
        );
        assert!(
            timeout_setting("0", ten)
                .unwrap_err()
                .contains("limits statements to 10m")
        );
        assert!(timeout_setting("soon", ten).is_err());
        assert_eq!(timeout_setting("0", None).unwrap(), None);
        assert_eq!(
            timeout_setting("3h", None).unwrap(),
            Some(Duration::from_secs(10_800))
        );
    }
}
