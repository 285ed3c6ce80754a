//! Who is calling, as Flight SQL says it. The users themselves — password
//! checks, bearer tokens, who may act for whom — are the engine's
//! ([`bluelamp_engine::users`], shared by every front end); this module reads
//! a call's credentials from its `authorization` header (HTTP basic
//! credentials, or the bearer token the handshake issued) and the user an
//! account acts for from [`ON_BEHALF_OF`], and answers in gRPC codes.

use std::time::Duration;

use base64::Engine as _;
use bluelamp_engine::users::{AuthError, Users};
use bluelamp_engine::{Identity, UserConfig};
use tonic::Status;
use tonic::metadata::MetadataMap;

pub use bluelamp_engine::users::{UserError, hash_password};

/// The header in which an account with `act_for` names the user a call
/// runs as.
pub const ON_BEHALF_OF: &str = "x-bluelamp-on-behalf-of";

fn status(error: AuthError) -> Status {
    match error {
        AuthError::Unauthenticated(m) => Status::unauthenticated(m),
        AuthError::PermissionDenied(m) => Status::permission_denied(m),
    }
}

/// The configured users, as Flight SQL calls reach them.
#[derive(Clone)]
pub struct Authenticator {
    users: Users,
}

impl Authenticator {
    /// An authenticator for the configured users.
    ///
    /// # Errors
    /// A password hash that is not a valid PHC string.
    pub fn new(users: &[UserConfig], token_ttl: Duration) -> Result<Self, UserError> {
        Ok(Self {
            users: Users::new(users, token_ttl)?,
        })
    }

    /// Whether any user can connect.
    pub fn has_users(&self) -> bool {
        self.users.has_users()
    }

    /// A new bearer token for a verified user.
    pub fn issue_token(&self, identity: &Identity) -> String {
        self.users.issue_token(identity)
    }

    /// How long issued tokens last.
    pub fn token_ttl(&self) -> Duration {
        self.users.token_ttl()
    }

    /// The identity a call runs as: its caller ([`Self::caller`]), or the
    /// user the caller names in [`ON_BEHALF_OF`] where its `act_for` allows.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` as for [`Self::caller`]; `PERMISSION_DENIED` for a
    /// caller that may not act for the user named, or a name that is not a
    /// configured user.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<Identity, Status> {
        let caller = self.caller(metadata).await?;
        let Some(named) = metadata.get(ON_BEHALF_OF) else {
            return Ok(caller);
        };
        let named = named
            .to_str()
            .map_err(|_| {
                Status::invalid_argument(format!("the {ON_BEHALF_OF} header is not text"))
            })?
            .trim();
        self.users.act_for(&caller, named).map_err(|e| {
            Status::permission_denied(format!("{ON_BEHALF_OF}: {}", status(e).message()))
        })
    }

    /// Who sent a call, from its `authorization` header: `Bearer <token>`
    /// from the handshake, or `Basic <base64 user:password>`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` with what to send, for a missing, malformed, wrong
    /// or expired credential.
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
            return self.users.check_token(token).map_err(status);
        }
        if let Some(encoded) = strip_scheme(header, "Basic") {
            let (user, password) = decode_basic(encoded)?;
            return self.users.verify(&user, &password).await.map_err(status);
        }
        Err(Status::unauthenticated(
            "unsupported authorization scheme: use Basic or Bearer",
        ))
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
    async fn credentials_from_headers_in_grpc_codes() {
        let auth = Authenticator::new(&users(), Duration::from_millis(300)).unwrap();
        let who = auth.authenticate(&basic("analyst", "demo")).await.unwrap();
        assert_eq!(who.user, "analyst");
        let e = auth
            .authenticate(&basic("analyst", "wrong"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert_eq!(e.message(), "wrong user name or password");
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

    #[tokio::test]
    async fn acting_for_another_user_by_header() {
        let auth = Authenticator::new(&users(), Duration::from_secs(60)).unwrap();
        let mut headers = basic("regional", "other");
        headers.insert(ON_BEHALF_OF, MetadataValue::from_static("analyst"));
        let who = auth.authenticate(&headers).await.unwrap();
        assert_eq!(who.user, "analyst");
        assert_eq!(who.authenticated_by, "password via regional");
        // The caller itself, for the handshake's token.
        assert_eq!(auth.caller(&headers).await.unwrap().user, "regional");
        let mut headers = basic("analyst", "demo");
        headers.insert(ON_BEHALF_OF, MetadataValue::from_static("regional"));
        let e = auth.authenticate(&headers).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(
            e.message().contains("may not act for others"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn basic_credentials_with_or_without_padding() {
        let want = ("bench".to_string(), "bench".to_string());
        assert_eq!(decode_basic("YmVuY2g6YmVuY2g=").unwrap(), want);
        assert_eq!(decode_basic("YmVuY2g6YmVuY2g").unwrap(), want);
        assert!(decode_basic("not base64!").is_err());
    }
}
