//! Who is calling. Users come from `[[user]]` with Argon2 password hashes. A
//! client authenticates with HTTP basic credentials, either once in the
//! Handshake (which answers with a bearer token that expires) or on any call in
//! the `authorization` header. Argon2 is deliberately slow, so verification
//! runs off the async runtime and a successful check is remembered briefly
//! (keyed by a salted digest, never the password itself).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use bluelamp_engine::{Identity, UserConfig};
use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::metadata::MetadataMap;

/// The header in which an account with `act_for` names the user a call
/// runs as.
pub const ON_BEHALF_OF: &str = "x-bluelamp-on-behalf-of";

/// How long a verified basic credential is trusted without re-hashing.
const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Bound on remembered tokens and credentials; the oldest are dropped first.
const MAX_ENTRIES: usize = 10_000;

/// A user list that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("user[{user}].password_hash: {message}")]
pub struct UserError {
    /// The user whose entry is wrong.
    pub user: String,
    /// What is wrong.
    pub message: String,
}

/// Makes an Argon2id hash (PHC string) of a password, for `[[user]]`.
///
/// # Errors
/// Only if the system's random source fails.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Random bytes from the OS, through `uuid`'s v4 generator (which uses it).
fn getrandom(out: &mut [u8]) {
    for chunk in out.chunks_mut(16) {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks credentials and issues and checks bearer tokens.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    users: HashMap<String, String>,
    /// Each account's `act_for`: whom it may name in [`ON_BEHALF_OF`].
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

impl Authenticator {
    /// An authenticator for the configured users.
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
        getrandom(&mut salt);
        let decoy = hash_password(&random_token()).map_err(|message| UserError {
            user: String::new(),
            message,
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                users: map,
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

    /// Verifies a user name and password.
    ///
    /// # Errors
    /// `UNAUTHENTICATED`, the same for an unknown user and a wrong password.
    pub async fn verify(&self, user: &str, password: &str) -> Result<Identity, Status> {
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
            return Err(Status::unauthenticated("wrong user name or password"));
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

    /// The caller of a request, from its `authorization` header: `Bearer
    /// <token>` from the handshake, or `Basic <base64 user:password>`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` with what to send, for a missing, malformed, wrong or
    /// expired credential.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<Identity, Status> {
        let caller = self.caller(metadata).await?;
        self.acting(caller, metadata)
    }

    /// The identity a call runs as: the caller, or the user it names in
    /// [`ON_BEHALF_OF`] where its `act_for` allows.
    ///
    /// # Errors
    /// `PERMISSION_DENIED` for a caller that may not act for the user named,
    /// or a name that is not a configured user.
    fn acting(&self, caller: Identity, metadata: &MetadataMap) -> Result<Identity, Status> {
        let Some(named) = metadata.get(ON_BEHALF_OF) else {
            return Ok(caller);
        };
        let named = named
            .to_str()
            .map_err(|_| {
                Status::invalid_argument(format!("the {ON_BEHALF_OF} header is not text"))
            })?
            .trim();
        let allowed = self
            .inner
            .act_for
            .get(&caller.user)
            .is_some_and(|names| names.iter().any(|n| n == "*" || n == named));
        if !allowed {
            return Err(Status::permission_denied(format!(
                "user '{}' may not act for others: the {ON_BEHALF_OF} header needs `act_for` on its [[user]] entry naming '{named}' (or \"*\")",
                caller.user
            )));
        }
        if !self.inner.names.contains(named) {
            return Err(Status::permission_denied(format!(
                "'{named}', named in the {ON_BEHALF_OF} header, is not a user here"
            )));
        }
        Ok(Identity::new(
            named,
            format!("{} via {}", caller.authenticated_by, caller.user),
        ))
    }

    /// Who sent a call, from its credentials.
    ///
    /// # Errors
    /// As [`Self::authenticate`].
    pub async fn caller(&self, metadata: &MetadataMap) -> Result<Identity, Status> {
        let header = metadata
            .get("authorization")
            .ok_or_else(|| {
                Status::unauthenticated(
                    "no credentials: send user name and password (basic auth), or the bearer token from the handshake",
                )
            })?
            .to_str()
            .map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
        if let Some(token) = strip_scheme(header, "Bearer") {
            return self.check_token(token);
        }
        if let Some(encoded) = strip_scheme(header, "Basic") {
            let (user, password) = decode_basic(encoded)?;
            return self.verify(&user, &password).await;
        }
        Err(Status::unauthenticated(
            "unsupported authorization scheme: use Basic or Bearer",
        ))
    }

    fn check_token(&self, token: &str) -> Result<Identity, Status> {
        let now = Instant::now();
        let tokens = self
            .inner
            .tokens
            .lock()
            .map_err(|_| Status::internal("token store unavailable"))?;
        match tokens.get(token) {
            Some((user, until)) if *until > now => Ok(Identity::new(user.clone(), "token")),
            Some(_) => Err(Status::unauthenticated(
                "the bearer token has expired: authenticate again",
            )),
            None => Err(Status::unauthenticated(
                "unknown bearer token: authenticate again",
            )),
        }
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

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// `user:password` from a basic credential.
///
/// # Errors
/// `UNAUTHENTICATED` if it is not base64 of `user:password`.
pub fn decode_basic(encoded: &str) -> Result<(String, String), Status> {
    // Clients differ on padding (the Go Flight SQL client sends none).
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = lenient
        .decode(encoded.trim())
        .map_err(|_| Status::unauthenticated("basic credentials are not valid base64"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Status::unauthenticated("basic credentials are not UTF-8"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| Status::unauthenticated("basic credentials must be user:password"))?;
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use tonic::metadata::MetadataValue;

    fn basic(user: &str, password: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        let value = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        map.insert("authorization", MetadataValue::try_from(value).unwrap());
        map
    }

    fn users() -> Vec<UserConfig> {
        vec![UserConfig {
            name: "analyst".into(),
            password_hash: Some(hash_password("demo").unwrap()),
            ..UserConfig::default()
        }]
    }

    #[tokio::test]
    async fn passwords_tokens_and_their_failures() {
        let auth = Authenticator::new(&users(), Duration::from_millis(300)).unwrap();
        let who = auth.authenticate(&basic("analyst", "demo")).await.unwrap();
        assert_eq!(who.user, "analyst");
        // Remembered: a second check does not re-hash, and still answers right.
        assert!(auth.authenticate(&basic("analyst", "demo")).await.is_ok());
        for (user, password) in [("analyst", "wrong"), ("nobody", "demo")] {
            let e = auth.authenticate(&basic(user, password)).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
            assert_eq!(e.message(), "wrong user name or password");
        }
        let token = auth.issue_token(&who);
        let mut bearer = MetadataMap::new();
        bearer.insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
        );
        assert_eq!(auth.authenticate(&bearer).await.unwrap().user, "analyst");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let e = auth.authenticate(&bearer).await.unwrap_err();
        assert!(e.message().contains("expired"), "{}", e.message());
        let e = auth.authenticate(&MetadataMap::new()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn basic_credentials_with_or_without_padding() {
        let want = ("bench".to_string(), "bench".to_string());
        assert_eq!(decode_basic("YmVuY2g6YmVuY2g=").unwrap(), want);
        assert_eq!(decode_basic("YmVuY2g6YmVuY2g").unwrap(), want);
        assert!(decode_basic("not base64!").is_err());
    }

    #[test]
    fn bad_hashes_are_named() {
        let e = Authenticator::new(
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
