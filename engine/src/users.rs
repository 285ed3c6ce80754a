//! Who may connect: the `[[user]]` entries with Argon2 password hashes, for
//! every front end (Flight SQL today; the PostgreSQL wire protocol next).
//! [`Users`] verifies a user name and password, issues bearer tokens that
//! expire and checks them, and decides whether an account may act for
//! another user (`act_for`). It knows no protocol: each front end reads
//! credentials its own way and maps [`AuthError`] to its own codes.
//!
//! Argon2 is deliberately slow, so verification runs off the async runtime,
//! and a successful check is remembered briefly (keyed by a salted digest,
//! never the password itself). An unknown user name costs as much as a
//! wrong password.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::scram::{ScramServer, ScramVerifier};
use crate::{Identity, UserConfig};

/// How long a verified password is trusted without re-hashing.
const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Bound on remembered tokens and credentials; the oldest are dropped first.
const MAX_ENTRIES: usize = 10_000;

/// Why a caller was not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No, wrong or expired credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known, but not allowed this (acting for another user).
    #[error("{0}")]
    PermissionDenied(String),
}

/// A user list that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("user[{user}].{field}: {message}")]
pub struct UserError {
    /// The user whose entry is wrong.
    pub user: String,
    /// The field that is wrong (`password_hash`, `scram_sha256`).
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Makes an Argon2id hash (PHC string) of a password, for `[[user]]`.
///
/// # Errors
/// Only if the system's random source fails.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    random_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Random bytes from the OS, through `uuid`'s v4 generator (which uses it).
pub(crate) fn random_bytes(out: &mut [u8]) {
    for chunk in out.chunks_mut(16) {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks credentials, issues and checks bearer tokens, and decides who may
/// act for whom.
#[derive(Clone)]
pub struct Users {
    inner: Arc<Inner>,
}

struct Inner {
    users: HashMap<String, String>,
    /// SCRAM-SHA-256 verifiers, for the PostgreSQL wire protocol.
    scram: HashMap<String, ScramVerifier>,
    /// Each account's `act_for`: whom it may act for.
    act_for: HashMap<String, Vec<String>>,
    /// Every configured user name (with or without a password).
    names: std::collections::HashSet<String>,
    token_ttl: Duration,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    verified: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    salt: [u8; 32],
    /// Verified against when the user is unknown, so a wrong user name takes
    /// as long as a wrong password.
    decoy: String,
}

impl Users {
    /// The configured users.
    ///
    /// # Errors
    /// A password hash that is not a valid PHC string.
    pub fn new(users: &[UserConfig], token_ttl: Duration) -> Result<Self, UserError> {
        let mut map = HashMap::new();
        // A user without a password is for local use only (`[local] user`).
        for user in users {
            let Some(password_hash) = &user.password_hash else {
                continue;
            };
            let invalid = |why: String| UserError {
                user: user.name.clone(),
                field: "password_hash",
                message: format!(
                    "not a valid Argon2 hash ({why}); make one with `bluelamp hash-password`"
                ),
            };
            let parsed = PasswordHash::new(password_hash).map_err(|e| invalid(e.to_string()))?;
            if !parsed.algorithm.as_str().starts_with("argon2") {
                return Err(invalid(format!("algorithm {}", parsed.algorithm)));
            }
            if parsed.hash.is_none() || parsed.salt.is_none() {
                return Err(invalid("no salt or hash".into()));
            }
            map.insert(user.name.clone(), password_hash.clone());
        }
        let mut salt = [0u8; 32];
        random_bytes(&mut salt);
        let mut scram = HashMap::new();
        for user in users {
            if let Some(text) = &user.scram_sha256 {
                let verifier = ScramVerifier::parse(text).map_err(|message| UserError {
                    user: user.name.clone(),
                    field: "scram_sha256",
                    message,
                })?;
                scram.insert(user.name.clone(), verifier);
            }
        }
        let decoy = hash_password(&random_token()).map_err(|message| UserError {
            user: String::new(),
            field: "password_hash",
            message,
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                users: map,
                scram,
                act_for: users
                    .iter()
                    .filter(|u| !u.act_for.is_empty())
                    .map(|u| (u.name.clone(), u.act_for.clone()))
                    .collect(),
                names: users.iter().map(|u| u.name.clone()).collect(),
                token_ttl,
                tokens: Mutex::new(HashMap::new()),
                verified: Mutex::new(HashMap::new()),
                salt,
                decoy,
            }),
        })
    }

    /// Whether any user is configured.
    pub fn has_users(&self) -> bool {
        !self.inner.users.is_empty()
    }

    /// Whether any user has a SCRAM-SHA-256 verifier, so can connect over
    /// the PostgreSQL wire protocol.
    pub fn has_scram_users(&self) -> bool {
        !self.inner.scram.is_empty()
    }

    /// A SCRAM-SHA-256 exchange for `user`, and whether it can succeed: for
    /// a user without a verifier (unknown, or with only an Argon2 hash) the
    /// exchange runs against a decoy, the same for the same name, so a
    /// client cannot tell which names exist; its proof then always fails.
    pub fn scram_exchange(&self, user: &str) -> (ScramServer, bool) {
        match self.inner.scram.get(user) {
            Some(verifier) => (ScramServer::new(verifier.clone()), true),
            None => (
                ScramServer::new(ScramVerifier::decoy(user, &self.inner.salt)),
                false,
            ),
        }
    }

    /// Why `user` cannot use SCRAM, for the server's log (never sent to a
    /// client, which learns only that the password was wrong).
    pub fn scram_unavailable(&self, user: &str) -> Option<String> {
        if self.inner.scram.contains_key(user) {
            None
        } else if self.inner.names.contains(user) {
            Some(format!(
                "user '{user}' has no scram_sha256 verifier: add one (`bluelamp hash-password --scram`) to connect over the PostgreSQL protocol"
            ))
        } else {
            Some(format!("no user is named '{user}'"))
        }
    }

    /// Verifies a user name and password.
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`], the same for an unknown user and a
    /// wrong password.
    pub async fn verify(&self, user: &str, password: &str) -> Result<Identity, AuthError> {
        let digest = self.digest(user, password);
        let now = Instant::now();
        if let Ok(verified) = self.inner.verified.lock()
            && let Some((name, until)) = verified.get(&digest)
            && *until > now
            && name == user
        {
            return Ok(Identity::new(user, "password"));
        }
        let hash = self.inner.users.get(user).cloned();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.inner.decoy.clone());
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if !(ok && known) {
            tracing::warn!(target: "bluelamp::audit", user = %user, "authentication failed");
            return Err(AuthError::Unauthenticated(
                "wrong user name or password".into(),
            ));
        }
        if let Ok(mut verified) = self.inner.verified.lock() {
            verified.retain(|_, (_, until)| *until > now);
            if verified.len() < MAX_ENTRIES {
                verified.insert(digest, (user.to_string(), now + VERIFIED_FOR));
            }
        }
        Ok(Identity::new(user, "password"))
    }

    /// A new bearer token for a verified user.
    pub fn issue_token(&self, identity: &Identity) -> String {
        let token = random_token();
        let now = Instant::now();
        if let Ok(mut tokens) = self.inner.tokens.lock() {
            tokens.retain(|_, (_, until)| *until > now);
            if tokens.len() >= MAX_ENTRIES
                && let Some(oldest) = tokens
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(k, _)| k.clone())
            {
                tokens.remove(&oldest);
            }
            tokens.insert(
                token.clone(),
                (identity.user.clone(), now + self.inner.token_ttl),
            );
        }
        token
    }

    /// How long issued tokens last.
    pub fn token_ttl(&self) -> Duration {
        self.inner.token_ttl
    }

    /// Who a bearer token from [`Self::issue_token`] belongs to.
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`] for an unknown or expired token.
    pub fn check_token(&self, token: &str) -> Result<Identity, AuthError> {
        let now = Instant::now();
        let tokens = self
            .inner
            .tokens
            .lock()
            .map_err(|_| AuthError::Unauthenticated("the token store is unavailable".into()))?;
        match tokens.get(token) {
            Some((user, until)) if *until > now => Ok(Identity::new(user.clone(), "token")),
            Some(_) => Err(AuthError::Unauthenticated(
                "the bearer token has expired: authenticate again".into(),
            )),
            None => Err(AuthError::Unauthenticated(
                "unknown bearer token: authenticate again".into(),
            )),
        }
    }

    /// `caller` acting for the user `named`: that user, recording through
    /// whom they came (`auth = "password via ACCOUNT"`).
    ///
    /// # Errors
    /// [`AuthError::PermissionDenied`] for a caller whose `act_for` does not
    /// name the user (or `*`), or a name that is not a configured user.
    pub fn act_for(&self, caller: &Identity, named: &str) -> Result<Identity, AuthError> {
        let allowed = self
            .inner
            .act_for
            .get(&caller.user)
            .is_some_and(|names| names.iter().any(|n| n == "*" || n == named));
        if !allowed {
            return Err(AuthError::PermissionDenied(format!(
                "user '{}' may not act for others: its [[user]] entry needs `act_for` naming '{named}' (or \"*\")",
                caller.user
            )));
        }
        if !self.inner.names.contains(named) {
            return Err(AuthError::PermissionDenied(format!(
                "'{named}' is not a user here, so no one may act for them"
            )));
        }
        Ok(Identity::new(
            named,
            format!("{} via {}", caller.authenticated_by, caller.user),
        ))
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.inner.salt);
        hasher.update(user.as_bytes());
        hasher.update([0]);
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn users() -> Vec<UserConfig> {
        vec![
            UserConfig {
                name: "analyst".into(),
                password_hash: Some(hash_password("demo").unwrap()),
                ..UserConfig::default()
            },
            UserConfig {
                name: "regional".into(),
                password_hash: Some(hash_password("other").unwrap()),
                act_for: vec!["analyst".into()],
                ..UserConfig::default()
            },
        ]
    }

    #[tokio::test]
    async fn passwords_tokens_and_their_failures() {
        let users = Users::new(&users(), Duration::from_millis(300)).unwrap();
        let who = users.verify("analyst", "demo").await.unwrap();
        assert_eq!(who.user, "analyst");
        assert_eq!(who.authenticated_by, "password");
        // Remembered: a second check does not re-hash, and still answers right.
        assert!(users.verify("analyst", "demo").await.is_ok());
        for (user, password) in [("analyst", "wrong"), ("nobody", "demo")] {
            let e = users.verify(user, password).await.unwrap_err();
            assert_eq!(
                e,
                AuthError::Unauthenticated("wrong user name or password".into())
            );
        }
        let token = users.issue_token(&who);
        assert_eq!(users.check_token(&token).unwrap().user, "analyst");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let e = users.check_token(&token).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        assert!(users.check_token("made-up").is_err());
    }

    #[tokio::test]
    async fn acting_for_another_user() {
        let users = Users::new(&users(), Duration::from_secs(60)).unwrap();
        let regional = users.verify("regional", "other").await.unwrap();
        let analyst = users.act_for(&regional, "analyst").unwrap();
        assert_eq!(analyst.user, "analyst");
        assert_eq!(analyst.authenticated_by, "password via regional");
        // Only whom act_for names, and only users that exist.
        let plain = users.verify("analyst", "demo").await.unwrap();
        assert!(matches!(
            users.act_for(&plain, "regional"),
            Err(AuthError::PermissionDenied(_))
        ));
        assert!(matches!(
            users.act_for(&regional, "regional"),
            Err(AuthError::PermissionDenied(_))
        ));
    }

    #[test]
    fn bad_hashes_are_named() {
        let e = Users::new(
            &[UserConfig {
                name: "x".into(),
                password_hash: Some("$argon2id$nonsense".into()),
                ..UserConfig::default()
            }],
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(e.to_string().starts_with("user[x].password_hash"), "{e}");
    }
}
