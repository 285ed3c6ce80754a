//! Tickets and prepared statements. A ticket is a random handle for a planned
//! statement, bound to the user who planned it and valid for a limited time;
//! it reveals nothing about the query. Prepared statements are handles too,
//! kept until closed or idle too long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bluelamp_engine::{Identity, Planned, Session};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// At most this many live tickets or prepared statements per user.
const MAX_PER_USER: usize = 1_000;

/// What a ticket runs when it is read.
pub enum Work {
    /// A planned statement and the session that planned it, started by `DoGet`.
    Planned(Box<(Session, Planned)>),
    /// One partition of a started query; it does no work until read.
    Stream(SchemaRef, SendableRecordBatchStream),
}

enum TicketState {
    /// Waiting for `DoGet`.
    Ready(Work),
    /// Being streamed; cancelling the token stops it.
    Running(CancellationToken),
    /// Cancelled before it was read.
    Cancelled,
}

struct Ticket {
    user: String,
    expires: Instant,
    state: TicketState,
}

/// What redeeming a ticket gives: the work and the token that cancels it.
pub struct Redeemed {
    /// What to run.
    pub work: Work,
    /// Cancelled by `CancelFlightInfo`.
    pub cancel: CancellationToken,
}

/// A prepared statement and the parameter rows bound to it.
#[derive(Clone)]
pub struct Prepared {
    /// The planned statement, with placeholders.
    pub planned: Planned,
    /// Parameter rows bound with `DoPut`; each row runs the statement once.
    pub parameters: Vec<Vec<ScalarValue>>,
}

struct PreparedEntry {
    user: String,
    last_used: Instant,
    prepared: Prepared,
}

/// Outcome of cancelling a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It was waiting or running and is now stopped.
    Cancelled,
    /// It had already finished or expired.
    NotCancellable,
}

/// The server's tickets and prepared statements.
pub struct Tickets {
    ttl: Duration,
    tickets: Mutex<HashMap<String, Ticket>>,
    prepared: Mutex<HashMap<String, PreparedEntry>>,
}

fn new_handle() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn poisoned() -> Status {
    Status::internal("ticket store unavailable")
}

impl Tickets {
    /// Tickets that expire `ttl` after they are issued; prepared statements
    /// after `ttl` unused.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            tickets: Mutex::new(HashMap::new()),
            prepared: Mutex::new(HashMap::new()),
        }
    }

    /// A ticket for `work`, redeemable by `identity` only.
    ///
    /// # Errors
    /// `RESOURCE_EXHAUSTED` if the user holds too many unredeemed tickets.
    pub fn issue(&self, identity: &Identity, work: Work) -> Result<String, Status> {
        let now = Instant::now();
        let mut tickets = self.tickets.lock().map_err(|_| poisoned())?;
        tickets.retain(|_, t| t.expires > now || matches!(t.state, TicketState::Running(_)));
        let held = tickets.values().filter(|t| t.user == identity.user).count();
        if held >= MAX_PER_USER {
            return Err(Status::resource_exhausted(format!(
                "{held} tickets are waiting to be read; read or cancel some first"
            )));
        }
        let handle = new_handle();
        tickets.insert(
            handle.clone(),
            Ticket {
                user: identity.user.clone(),
                expires: now + self.ttl,
                state: TicketState::Ready(work),
            },
        );
        Ok(handle)
    }

    /// Starts reading a ticket.
    ///
    /// # Errors
    /// `NOT_FOUND` for an unknown or expired ticket, `PERMISSION_DENIED` for
    /// another user's, `CANCELLED` for a cancelled one, `FAILED_PRECONDITION`
    /// for one already being read.
    pub fn redeem(&self, identity: &Identity, handle: &str) -> Result<Redeemed, Status> {
        let now = Instant::now();
        let mut tickets = self.tickets.lock().map_err(|_| poisoned())?;
        let Some(ticket) = tickets.get_mut(handle) else {
            return Err(Status::not_found(
                "unknown or expired ticket: run the query again",
            ));
        };
        if ticket.user != identity.user {
            return Err(Status::permission_denied(
                "this ticket belongs to another user",
            ));
        }
        match &ticket.state {
            TicketState::Cancelled => {
                tickets.remove(handle);
                return Err(Status::cancelled("the query was cancelled"));
            }
            TicketState::Running(_) => {
                return Err(Status::failed_precondition(
                    "this ticket is already being read",
                ));
            }
            TicketState::Ready(_) if ticket.expires <= now => {
                tickets.remove(handle);
                return Err(Status::not_found(
                    "unknown or expired ticket: run the query again",
                ));
            }
            TicketState::Ready(_) => {}
        }
        let cancel = CancellationToken::new();
        let state = std::mem::replace(&mut ticket.state, TicketState::Running(cancel.clone()));
        match state {
            TicketState::Ready(work) => Ok(Redeemed { work, cancel }),
            _ => Err(Status::internal("ticket state changed while redeeming")),
        }
    }

    /// Forgets a ticket whose stream has ended.
    pub fn finish(&self, handle: &str) {
        if let Ok(mut tickets) = self.tickets.lock() {
            tickets.remove(handle);
        }
    }

    /// Cancels a ticket: a waiting one will not run, a running one stops.
    ///
    /// # Errors
    /// `PERMISSION_DENIED` for another user's ticket.
    pub fn cancel(&self, identity: &Identity, handle: &str) -> Result<Cancelled, Status> {
        let mut tickets = self.tickets.lock().map_err(|_| poisoned())?;
        let Some(ticket) = tickets.get_mut(handle) else {
            return Ok(Cancelled::NotCancellable);
        };
        if ticket.user != identity.user {
            return Err(Status::permission_denied(
                "this ticket belongs to another user",
            ));
        }
        match &ticket.state {
            TicketState::Running(token) => {
                token.cancel();
                Ok(Cancelled::Cancelled)
            }
            TicketState::Ready(_) => {
                ticket.state = TicketState::Cancelled;
                Ok(Cancelled::Cancelled)
            }
            TicketState::Cancelled => Ok(Cancelled::NotCancellable),
        }
    }

    /// Keeps a prepared statement for `identity`; returns its handle.
    ///
    /// # Errors
    /// `RESOURCE_EXHAUSTED` if the user holds too many.
    pub fn prepare(&self, identity: &Identity, planned: Planned) -> Result<String, Status> {
        let now = Instant::now();
        let mut prepared = self.prepared.lock().map_err(|_| poisoned())?;
        prepared.retain(|_, p| now.duration_since(p.last_used) < self.ttl);
        if prepared
            .values()
            .filter(|p| p.user == identity.user)
            .count()
            >= MAX_PER_USER
        {
            return Err(Status::resource_exhausted(
                "too many open prepared statements: close some first",
            ));
        }
        let handle = new_handle();
        prepared.insert(
            handle.clone(),
            PreparedEntry {
                user: identity.user.clone(),
                last_used: now,
                prepared: Prepared {
                    planned,
                    parameters: Vec::new(),
                },
            },
        );
        Ok(handle)
    }

    /// A prepared statement, for its owner.
    ///
    /// # Errors
    /// `NOT_FOUND` for an unknown, closed or idle-expired handle,
    /// `PERMISSION_DENIED` for another user's.
    pub fn prepared(&self, identity: &Identity, handle: &[u8]) -> Result<Prepared, Status> {
        self.with_prepared(identity, handle, |p| p.clone())
    }

    /// Binds parameter rows to a prepared statement.
    ///
    /// # Errors
    /// As for [`Tickets::prepared`].
    pub fn bind(
        &self,
        identity: &Identity,
        handle: &[u8],
        parameters: Vec<Vec<ScalarValue>>,
    ) -> Result<(), Status> {
        self.with_prepared(identity, handle, |p| p.parameters = parameters)
    }

    /// Closes a prepared statement.
    ///
    /// # Errors
    /// As for [`Tickets::prepared`].
    pub fn close(&self, identity: &Identity, handle: &[u8]) -> Result<(), Status> {
        self.with_prepared(identity, handle, |_| ())?;
        let key = String::from_utf8_lossy(handle).into_owned();
        if let Ok(mut prepared) = self.prepared.lock() {
            prepared.remove(&key);
        }
        Ok(())
    }

    fn with_prepared<T>(
        &self,
        identity: &Identity,
        handle: &[u8],
        f: impl FnOnce(&mut Prepared) -> T,
    ) -> Result<T, Status> {
        let key = String::from_utf8_lossy(handle);
        let now = Instant::now();
        let mut prepared = self.prepared.lock().map_err(|_| poisoned())?;
        let entry = prepared
            .get_mut(key.as_ref())
            .filter(|p| now.duration_since(p.last_used) < self.ttl)
            .ok_or_else(|| {
                Status::not_found("unknown or closed prepared statement: prepare it again")
            })?;
        if entry.user != identity.user {
            return Err(Status::permission_denied(
                "this prepared statement belongs to another user",
            ));
        }
        entry.last_used = now;
        Ok(f(&mut entry.prepared))
    }
}
