//! Bearer tokens: the claims notesaga reads and writes, the key that checks them, and
//! minting (for `notesaga token`, `notesaga dev` and tests).
//!
//! The algorithm is pinned by the key type, never taken from the token: an HS256 secret
//! accepts only HS256, an RS256 public key only RS256 (`alg: none` does not even parse).

use std::{
    collections::HashSet,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The role that grants `/v1/admin/*`.
pub const ADMIN_ROLE: &str = "admin";

/// The shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least as long as
/// the hash output (32 bytes for SHA-256).
pub const MIN_SECRET_BYTES: usize = 32;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

/// A key or token that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The HS256 secret is too short to be safe.
    #[error("the JWT secret has {0} bytes; it needs at least {MIN_SECRET_BYTES}")]
    ShortSecret(usize),
    /// The RS256 public key is not an RSA public key in PEM.
    #[error("the JWT public key is not an RSA public key in PEM: {0}")]
    BadPublicKey(#[source] jsonwebtoken::errors::Error),
    /// A token could not be signed.
    #[error("cannot sign the token: {0}")]
    Mint(#[source] jsonwebtoken::errors::Error),
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The claims of a token notesaga mints. Verification reads only `sub` and `roles`
/// beyond what the JWT library checks (`exp`, `nbf`, `iss`, `aud`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user: owns the notes it creates.
    pub sub: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// Roles; [`ADMIN_ROLE`] grants `/v1/admin/*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Issuer, when the API checks one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, when the API checks one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

impl Claims {
    /// A token for `sub`, valid from now for `ttl`.
    pub fn new(sub: &str, ttl: Duration) -> Self {
        let now = unix_now();
        Self {
            sub: sub.to_owned(),
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
            roles: Vec::new(),
            iss: None,
            aud: None,
        }
    }

    /// With the admin role.
    pub fn admin(mut self) -> Self {
        self.roles.push(ADMIN_ROLE.to_owned());
        self
    }

    /// With `iss` and `aud` (each when given).
    pub fn for_api(mut self, issuer: Option<&str>, audience: Option<&str>) -> Self {
        self.iss = issuer.map(str::to_owned);
        self.aud = audience.map(str::to_owned);
        self
    }

    /// Signs these claims with an HS256 `secret`.
    pub fn mint_hs256(&self, secret: &[u8]) -> Result<String, AuthError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthError::ShortSecret(secret.len()));
        }
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            self,
            &EncodingKey::from_secret(secret),
        )
        .map_err(AuthError::Mint)
    }
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    /// `sub`.
    pub(crate) subject: String,
    /// Whether `roles` holds [`ADMIN_ROLE`].
    pub(crate) admin: bool,
}

/// What verification reads out of a token.
#[derive(Debug, Deserialize)]
struct Verified {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Why a token was refused: the RFC 6750 `error_description` the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal(pub(crate) &'static str);

/// Checks tokens with one key and one algorithm.
#[derive(Clone)]
pub(crate) struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .field("iss", &self.validation.iss)
            .field("aud", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub(crate) fn hs256(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthError::ShortSecret(secret.len()));
        }
        Ok(Self::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    pub(crate) fn rs256(public_key_pem: &[u8]) -> Result<Self, AuthError> {
        let key = DecodingKey::from_rsa_pem(public_key_pem).map_err(AuthError::BadPublicKey)?;
        Ok(Self::new(key, Algorithm::RS256))
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // Without a configured audience a token's `aud` is not ours to judge.
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
        Self { key, validation }
    }

    /// Also requires `iss` to be `issuer`.
    pub(crate) fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation.required_spec_claims.insert("iss".into());
        self
    }

    /// Also requires `aud` to name `audience`.
    pub(crate) fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self.validation.required_spec_claims.insert("aud".into());
        self
    }

    pub(crate) fn verify(&self, token: &str) -> Result<Principal, Refusal> {
        let data = jsonwebtoken::decode::<Verified>(token, &self.key, &self.validation)
            .map_err(|err| refusal(err.kind()))?;
        if data.claims.sub.trim().is_empty() {
            return Err(Refusal("the token's sub is empty"));
        }
        Ok(Principal {
            admin: data.claims.roles.iter().any(|role| role == ADMIN_ROLE),
            subject: data.claims.sub,
        })
    }
}

/// A description for the client that says what to fix without echoing the token.
fn refusal(kind: &ErrorKind) -> Refusal {
    Refusal(match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token's algorithm is not the one this API accepts"
        }
        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted",
        ErrorKind::InvalidAudience => "the token's audience (aud) is not this API",
        ErrorKind::MissingRequiredClaim(_) => {
            "the token lacks a required claim (sub, exp, iss or aud)"
        }
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => "the token's claims are malformed",
        _ => "the token is malformed",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verify(verifier: &Verifier, claims: &Claims) -> Result<Principal, Refusal> {
        verifier.verify(&claims.mint_hs256(SECRET).expect("mint"))
    }

    #[test]
    fn hs256_tokens_are_checked() {
        let verifier = Verifier::hs256(SECRET).expect("a long secret");
        let hour = Duration::from_secs(3600);
        let mut expired = Claims::new("ann", hour);
        expired.exp = unix_now() - 2 * LEEWAY_SECS;
        // (case, claims, the (sub, admin) let through or the refusal's description)
        type Case<'a> = (&'a str, Claims, Result<(&'a str, bool), &'a str>);
        let cases: Vec<Case<'_>> = vec![
            ("user", Claims::new("ann", hour), Ok(("ann", false))),
            ("admin", Claims::new("bob", hour).admin(), Ok(("bob", true))),
            ("expired", expired, Err("the token has expired")),
            (
                "empty sub",
                Claims::new(" ", hour),
                Err("the token's sub is empty"),
            ),
            // No audience configured: a token's aud is not checked.
            (
                "foreign aud",
                Claims::new("ann", hour).for_api(None, Some("elsewhere")),
                Ok(("ann", false)),
            ),
        ];
        for (name, claims, want) in cases {
            let got = verify(&verifier, &claims);
            let got = got
                .as_ref()
                .map(|p| (p.subject.as_str(), p.admin))
                .map_err(|r| r.0);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let verifier = Verifier::hs256(SECRET)
            .expect("a long secret")
            .issuer("idp")
            .audience("notesaga");
        let hour = Duration::from_secs(3600);
        let cases = [
            (Some("idp"), Some("notesaga"), None),
            (
                Some("idp"),
                Some("other"),
                Some("the token's audience (aud) is not this API"),
            ),
            (
                Some("other"),
                Some("notesaga"),
                Some("the token's issuer (iss) is not accepted"),
            ),
            (
                Some("idp"),
                None,
                Some("the token lacks a required claim (sub, exp, iss or aud)"),
            ),
        ];
        for (iss, aud, want) in cases {
            let claims = Claims::new("ann", hour).for_api(iss, aud);
            assert_eq!(
                verify(&verifier, &claims).err().map(|r| r.0),
                want,
                "{iss:?} {aud:?}"
            );
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            Verifier::hs256(b"short"),
            Err(AuthError::ShortSecret(5))
        ));
        assert!(matches!(
            Claims::new("a", Duration::from_secs(1)).mint_hs256(b"short"),
            Err(AuthError::ShortSecret(5))
        ));
    }

    #[test]
    fn alg_none_and_garbage_are_refused() {
        let verifier = Verifier::hs256(SECRET).expect("a long secret");
        let b64 = |s: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
        };
        let claims = format!(r#"{{"sub":"ann","exp":{}}}"#, unix_now() + 3600);
        let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims));
        assert!(verifier.verify(&none).is_err());
        assert!(verifier.verify("not.a.token").is_err());
        assert!(verifier.verify("").is_err());
    }
}
