//! SCRAM-SHA-256 (RFC 5802, RFC 7677), the password exchange of the
//! PostgreSQL wire protocol, as a server runs it.
//!
//! SCRAM never sends the password, and the server keeps only a *verifier*
//! (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, PostgreSQL's
//! own format, so a verifier from `pg_authid` works here too). An Argon2
//! hash cannot take part: SCRAM needs keys derived by PBKDF2 from the
//! password, so a user who connects over the PostgreSQL protocol has a
//! `scram_sha256` verifier beside (or instead of) `password_hash`
//! (`bluelamp hash-password --scram` prints one).
//!
//! [`ScramServer`] holds one exchange: the client's first message, the
//! server's answer, and the check of the client's proof, which also yields
//! the server's signature the client checks in turn. It knows no protocol
//! framing; the PostgreSQL front end carries its messages.

use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, hmac, pbkdf2};

/// The mechanism's name, as clients ask for it.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// PBKDF2 rounds for verifiers this module makes (PostgreSQL's default).
pub const ITERATIONS: u32 = 4096;

/// A stored SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn key32(text: &str) -> Option<[u8; 32]> {
    STANDARD.decode(text).ok()?.try_into().ok()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(hmac::sign(&key, data).as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// The password as SCRAM hashes it: SASLprep-normalised where that is
/// defined, else its bytes as given (PostgreSQL does the same).
fn normalise(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(prepared) => prepared.as_bytes().to_vec(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

impl ScramVerifier {
    /// Reads a verifier in PostgreSQL's format.
    ///
    /// # Errors
    /// A sentence saying what is malformed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected = "expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>; make one with `bluelamp hash-password --scram`";
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or_else(|| expected.to_string())?;
        let (params, keys) = rest.split_once('$').ok_or_else(|| expected.to_string())?;
        let (iterations, salt) = params.split_once(':').ok_or_else(|| expected.to_string())?;
        let (stored, server) = keys.split_once(':').ok_or_else(|| expected.to_string())?;
        let iterations: u32 = iterations.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!("the iteration count '{iterations}' is not a positive number")
        })?;
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| "the salt is not base64".to_string())?;
        let stored_key =
            key32(stored).ok_or_else(|| "StoredKey is not 32 bytes of base64".to_string())?;
        let server_key =
            key32(server).ok_or_else(|| "ServerKey is not 32 bytes of base64".to_string())?;
        Ok(Self {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// The verifier of `password` with `salt`.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let rounds = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            salt,
            &normalise(password),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        Self {
            iterations: rounds.get(),
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// A new verifier of `password` with a random salt.
    pub fn new(password: &str) -> Self {
        let mut salt = [0u8; 16];
        crate::users::random_bytes(&mut salt);
        Self::derive(password, &salt, ITERATIONS)
    }

    /// A verifier for a user who does not exist, the same for the same name
    /// on this server, so an exchange for an unknown name looks like one
    /// for a known name until the proof fails.
    pub(crate) fn decoy(user: &str, secret: &[u8]) -> Self {
        let salt = hmac_sha256(secret, user.as_bytes());
        Self {
            iterations: ITERATIONS,
            salt: salt[..16].to_vec(),
            stored_key: hmac_sha256(secret, &salt),
            server_key: hmac_sha256(&salt, secret),
        }
    }
}

impl std::fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The client's message does not follow the mechanism.
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    /// The client's proof is wrong: a wrong password (or user).
    #[error("wrong user name or password")]
    WrongProof,
}

/// One SCRAM-SHA-256 exchange, server side.
pub struct ScramServer {
    verifier: ScramVerifier,
    state: State,
}

enum State {
    Start,
    /// After the server's first message.
    Challenged {
        client_first_bare: String,
        server_first: String,
        gs2_header: String,
        nonce: String,
    },
    Done,
}

fn attribute(part: &str, name: char) -> Result<&str, ScramError> {
    part.strip_prefix(name)
        .and_then(|r| r.strip_prefix('='))
        .ok_or_else(|| ScramError::Malformed(format!("expected '{name}=' in '{part}'")))
}

impl ScramServer {
    /// An exchange checking against `verifier`.
    pub fn new(verifier: ScramVerifier) -> Self {
        Self {
            verifier,
            state: State::Start,
        }
    }

    /// Reads the client's first message (`n,,n=user,r=nonce`) and returns
    /// the server's first message (`r=...,s=salt,i=iterations`). The user
    /// name inside it is ignored, as PostgreSQL does: the connection's
    /// start-up names the user.
    ///
    /// # Errors
    /// [`ScramError::Malformed`] for a message that does not parse, or one
    /// asking for channel binding (not offered).
    pub fn client_first(&mut self, message: &[u8]) -> Result<String, ScramError> {
        let message = std::str::from_utf8(message)
            .map_err(|_| ScramError::Malformed("the first message is not UTF-8".into()))?;
        let mut parts = message.splitn(3, ',');
        let flag = parts.next().unwrap_or_default();
        let authzid = parts.next().unwrap_or_default();
        let bare = parts
            .next()
            .ok_or_else(|| ScramError::Malformed("the first message is incomplete".into()))?;
        match flag {
            "n" | "y" => {}
            _ if flag.starts_with("p=") => {
                return Err(ScramError::Malformed(
                    "channel binding was not offered: use SCRAM-SHA-256".into(),
                ));
            }
            _ => {
                return Err(ScramError::Malformed(format!(
                    "unknown channel-binding flag '{flag}'"
                )));
            }
        }
        if !authzid.is_empty() {
            return Err(ScramError::Malformed(
                "an authorisation identity is not supported".into(),
            ));
        }
        let client_nonce = bare
            .split(',')
            .find_map(|p| p.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ScramError::Malformed("the first message has no nonce".into()))?;
        let mut ours = [0u8; 18];
        crate::users::random_bytes(&mut ours);
        let nonce = format!("{client_nonce}{}", STANDARD.encode(ours));
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        self.state = State::Challenged {
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            gs2_header: format!("{flag},{authzid},"),
            nonce,
        };
        Ok(server_first)
    }

    /// Checks the client's final message (`c=...,r=...,p=proof`) and
    /// returns the server's final message (`v=signature`).
    ///
    /// # Errors
    /// [`ScramError::WrongProof`] for a wrong password;
    /// [`ScramError::Malformed`] for a message out of order or malformed.
    pub fn client_final(&mut self, message: &[u8]) -> Result<String, ScramError> {
        let State::Challenged {
            client_first_bare,
            server_first,
            gs2_header,
            nonce,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::Malformed("message out of order".into()));
        };
        let message = std::str::from_utf8(message)
            .map_err(|_| ScramError::Malformed("the final message is not UTF-8".into()))?;
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or_else(|| ScramError::Malformed("the final message has no proof".into()))?;
        let mut parts = without_proof.split(',');
        let binding = attribute(parts.next().unwrap_or_default(), 'c')?;
        let their_nonce = attribute(parts.next().unwrap_or_default(), 'r')?;
        if STANDARD.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
            return Err(ScramError::Malformed(
                "the channel binding does not match the first message".into(),
            ));
        }
        if their_nonce != nonce {
            return Err(ScramError::Malformed("the nonce does not match".into()));
        }
        let proof: [u8; 32] = STANDARD
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| ScramError::Malformed("the proof is not 32 bytes of base64".into()))?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (i, byte) in client_key.iter_mut().enumerate() {
            *byte = proof[i] ^ client_signature[i];
        }
        let computed = sha256(&client_key);
        // Compare without an early exit on the first differing byte.
        let differ = computed
            .iter()
            .zip(self.verifier.stored_key.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differ != 0 {
            return Err(ScramError::WrongProof);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    /// A client side of the exchange, written from the RFC, to drive the server.
    fn client_proof(password: &str, server_first: &str, client_first_bare: &str) -> String {
        let fields: Vec<&str> = server_first.split(',').collect();
        let nonce = fields[0].strip_prefix("r=").unwrap();
        let salt = STANDARD
            .decode(fields[1].strip_prefix("s=").unwrap())
            .unwrap();
        let iterations: u32 = fields[2].strip_prefix("i=").unwrap().parse().unwrap();
        let verifier = ScramVerifier::derive(password, &salt, iterations);
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations).unwrap(),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        assert_eq!(sha256(&client_key), verifier.stored_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac_sha256(&verifier.stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", STANDARD.encode(proof))
    }

    #[test]
    fn rfc7677_example_verifier() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = ScramVerifier::derive("pencil", &salt, 4096);
        let mut server = ScramServer::new(verifier);
        let first = server
            .client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
            .unwrap();
        assert!(first.starts_with("r=rOprNGfwEbeRWgbNEkqO"), "{first}");
        assert!(
            first.ends_with(",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
            "{first}"
        );
        let last = client_proof("pencil", &first, "n=user,r=rOprNGfwEbeRWgbNEkqO");
        assert!(
            server
                .client_final(last.as_bytes())
                .unwrap()
                .starts_with("v=")
        );
    }

    #[test]
    fn verifiers_round_trip_and_wrong_passwords_fail() {
        let verifier = ScramVerifier::new("demo");
        let text = verifier.to_string();
        assert_eq!(ScramVerifier::parse(&text).unwrap(), verifier);
        let mut server = ScramServer::new(verifier);
        let first = server.client_first(b"n,,n=,r=abc").unwrap();
        let last = client_proof("wrong", &first, "n=,r=abc");
        assert_eq!(
            server.client_final(last.as_bytes()).unwrap_err(),
            ScramError::WrongProof
        );
        assert!(ScramVerifier::parse("md5abc").is_err());
        assert!(ScramVerifier::parse("SCRAM-SHA-256$0:c2FsdA==$a:b").is_err());
    }

    #[test]
    fn channel_binding_and_replayed_nonces_are_refused() {
        let mut server = ScramServer::new(ScramVerifier::new("demo"));
        assert!(
            server
                .client_first(b"p=tls-server-end-point,,n=,r=x")
                .is_err()
        );
        let mut server = ScramServer::new(ScramVerifier::new("demo"));
        server.client_first(b"n,,n=,r=abc").unwrap();
        let e = server
            .client_final(b"c=biws,r=abcWRONG,p=AAAA")
            .unwrap_err();
        assert!(matches!(e, ScramError::Malformed(_)), "{e}");
    }
}
