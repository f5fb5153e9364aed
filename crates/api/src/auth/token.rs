//! Bearer tokens: the claims notesaga reads and writes, the key that checks them, and
//! minting (for `notesaga token`, `notesaga dev` and tests).
//!
//! The algorithm is pinned by the key type, never taken from the token: an HS256 secret
//! accepts only HS256, an RS256 public key only RS256, a JWKS key the algorithm of its
//! key type (`alg: none` does not even parse). Roles are read from a configurable claim
//! path ([`ClaimPath`]).

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::jwks::Jwks;

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
    /// The HTTP client that fetches the JWKS could not be built.
    #[error("cannot build the JWKS client: {0}")]
    JwksClient(#[source] reqwest::Error),
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
    /// Whether the roles claim holds [`ADMIN_ROLE`].
    pub(crate) admin: bool,
}

/// Why a token was refused: the RFC 6750 `error_description` the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal(pub(crate) &'static str);

/// A public key or secret and the one algorithm it verifies.
pub(crate) struct VerifyKey {
    pub(crate) key: DecodingKey,
    pub(crate) algorithm: Algorithm,
}

/// Where the keys come from.
#[derive(Clone)]
enum Keys {
    /// One configured key (HS256 secret or PEM public key).
    Static(Arc<VerifyKey>),
    /// An identity provider's JWKS URL, looked up by the token's `kid`.
    Jwks(Arc<Jwks>),
}

/// The claim that carries roles: a path of object keys, `roles` by default,
/// `realm_access.roles` for Keycloak, `cognito:groups` for Cognito.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimPath(Vec<String>);

impl Default for ClaimPath {
    fn default() -> Self {
        Self::parse("roles")
    }
}

impl ClaimPath {
    /// Dots separate the path's keys (`realm_access.roles`).
    pub(crate) fn parse(path: &str) -> Self {
        Self(path.split('.').map(str::to_owned).collect())
    }

    /// The roles at the path: an array of strings, or one string of space-separated
    /// roles (as `scope` is); anything else holds none.
    fn roles<'a>(&self, claims: &'a Value) -> Vec<&'a str> {
        let found = self
            .0
            .iter()
            .try_fold(claims, |value, key| value.get(key.as_str()));
        match found {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(text)) => text.split_whitespace().collect(),
            _ => Vec::new(),
        }
    }
}

/// What every token must satisfy beyond its signature.
#[derive(Debug, Clone, Default)]
struct Rules {
    issuer: Option<String>,
    audience: Option<String>,
    roles_claim: ClaimPath,
}

impl Rules {
    /// The library's checks for a key of `algorithm`: the algorithm comes from the key,
    /// so a token whose header names another one is refused.
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // Without a configured audience a token's `aud` is not ours to judge.
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
            validation.validate_aud = true;
            validation.required_spec_claims.insert("aud".into());
        }
        validation
    }
}

/// Checks tokens: a key (or a key set), and the rules.
#[derive(Clone)]
pub(crate) struct Verifier {
    keys: Keys,
    rules: Rules,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        let keys = match &self.keys {
            Keys::Static(key) => format!("{:?}", key.algorithm),
            Keys::Jwks(jwks) => format!("JWKS {}", jwks.url()),
        };
        f.debug_struct("Verifier")
            .field("keys", &keys)
            .field("rules", &self.rules)
            .finish()
    }
}

impl Verifier {
    pub(crate) fn hs256(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthError::ShortSecret(secret.len()));
        }
        Ok(Self::fixed(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    pub(crate) fn rs256(public_key_pem: &[u8]) -> Result<Self, AuthError> {
        let key = DecodingKey::from_rsa_pem(public_key_pem).map_err(AuthError::BadPublicKey)?;
        Ok(Self::fixed(key, Algorithm::RS256))
    }

    /// Keys from an identity provider's JWKS document (RS256 and ES256 keys).
    pub(crate) fn jwks(jwks: Jwks) -> Self {
        Self {
            keys: Keys::Jwks(Arc::new(jwks)),
            rules: Rules::default(),
        }
    }

    fn fixed(key: DecodingKey, algorithm: Algorithm) -> Self {
        Self {
            keys: Keys::Static(Arc::new(VerifyKey { key, algorithm })),
            rules: Rules::default(),
        }
    }

    /// Also requires `iss` to be `issuer`.
    pub(crate) fn issuer(mut self, issuer: &str) -> Self {
        self.rules.issuer = Some(issuer.to_owned());
        self
    }

    /// Also requires `aud` to name `audience`.
    pub(crate) fn audience(mut self, audience: &str) -> Self {
        self.rules.audience = Some(audience.to_owned());
        self
    }

    /// Reads roles from `path` instead of `roles`.
    pub(crate) fn roles_claim(mut self, path: &str) -> Self {
        self.rules.roles_claim = ClaimPath::parse(path);
        self
    }

    pub(crate) async fn verify(&self, token: &str) -> Result<Principal, Refusal> {
        let key = match &self.keys {
            Keys::Static(key) => Arc::clone(key),
            Keys::Jwks(jwks) => jwks.key_for(token).await?,
        };
        let data =
            jsonwebtoken::decode::<Value>(token, &key.key, &self.rules.validation(key.algorithm))
                .map_err(|err| refusal(err.kind()))?;
        let subject = data
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if subject.trim().is_empty() {
            return Err(Refusal("the token's sub is empty"));
        }
        Ok(Principal {
            admin: self
                .rules
                .roles_claim
                .roles(&data.claims)
                .contains(&ADMIN_ROLE),
            subject: subject.to_owned(),
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
        block_on(verifier.verify(&claims.mint_hs256(SECRET).expect("mint")))
    }

    /// Static keys never await anything: a current-thread runtime runs them.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(future)
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
    fn roles_come_from_the_configured_claim_path() {
        let claims = serde_json::json!({
            "roles": ["admin"],
            "realm_access": {"roles": ["user", "admin"]},
            "cognito:groups": ["admin"],
            "scope": "read admin",
            "resource": {"roles": "admin"},
            "odd": {"roles": [1, {"admin": true}]},
        });
        for (path, admin) in [
            ("roles", true),
            ("realm_access.roles", true),
            ("cognito:groups", true),
            ("scope", true),
            ("resource.roles", true),
            ("odd.roles", false),
            ("realm_access.missing", false),
            ("realm_access", false),
        ] {
            let roles = ClaimPath::parse(path).roles(&claims);
            assert_eq!(roles.contains(&ADMIN_ROLE), admin, "{path}: {roles:?}");
        }
        let verifier = Verifier::hs256(SECRET)
            .expect("secret")
            .roles_claim("realm_access.roles");
        let nested = serde_json::json!({
            "sub": "kim", "exp": unix_now() + 60, "realm_access": {"roles": ["admin"]}
        });
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &nested,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("mint");
        let principal = block_on(verifier.verify(&token)).expect("accepted");
        assert!(principal.admin);
        // A top-level `roles` no longer counts once the path says otherwise.
        let top = Claims::new("kim", Duration::from_secs(60)).admin();
        assert!(!verify(&verifier, &top).expect("accepted").admin);
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
        assert!(block_on(verifier.verify(&none)).is_err());
        assert!(block_on(verifier.verify("not.a.token")).is_err());
        assert!(block_on(verifier.verify("")).is_err());
    }
}
