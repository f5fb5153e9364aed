//! Authentication and authorisation, enforced by one middleware ([`authenticate`]) in
//! front of every route:
//!
//! - `/healthz`, `/readyz`, `/metrics` and `/openapi.json` are public;
//! - a `GET` of a note's audio with a `sig` in its query is judged by the signature alone
//!   (`signed_url`), so an `<audio>` element can play it without a header;
//! - everything else needs `Authorization: Bearer <JWT>` (`token`; checked with an HS256
//!   secret, a PEM public key, or an identity provider's JWKS URL: `jwks`), else 401
//!   with `WWW-Authenticate` (RFC 6750);
//! - everything under `/v1/admin/` also needs the `admin` role, else 403. It is decided
//!   here by path, so an admin route added anywhere is covered without saying so.
//!
//! The verified principal goes into the request's extensions, where the
//! [`crate::caller::Caller`] extractor picks it up.

mod jwks;
mod signed_url;
mod token;

use std::time::Duration;

use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

pub use token::{AuthError, Claims, ADMIN_ROLE, MIN_SECRET_BYTES};

pub(crate) use signed_url::UrlSigner;
pub(crate) use token::Principal;

use crate::{problem::Problem, AppState};
use signed_url::UrlRefusal;
use token::{unix_now, Refusal, Verifier};

/// Paths served without a token.
pub const PUBLIC_PATHS: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/openapi.json"];

/// The prefix of the operator endpoints that need the admin role.
pub const ADMIN_PREFIX: &str = "/v1/admin/";

/// How long a signed audio URL is valid unless configured otherwise.
pub const DEFAULT_AUDIO_URL_TTL: Duration = Duration::from_secs(15 * 60);

/// How the API authenticates callers.
///
/// [`AuthConfig::default`] has no key: it fails closed, every protected route answers
/// 401. The `notesaga api` command refuses to start that way; tests and embedders
/// configure a key with [`AuthConfig::hs256`] or [`AuthConfig::rs256`].
#[derive(Debug, Clone)]
pub struct AuthConfig {
    verifier: Option<Verifier>,
    urls: UrlSigner,
    /// How long the `audio_url` of a note stays valid.
    pub audio_url_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            verifier: None,
            urls: UrlSigner::random(),
            audio_url_ttl: DEFAULT_AUDIO_URL_TTL,
        }
    }
}

impl AuthConfig {
    /// HS256 tokens signed with `secret` (at least [`MIN_SECRET_BYTES`]); audio URLs are
    /// signed with a key derived from it, so every instance sharing the secret accepts
    /// every other's URLs.
    pub fn hs256(secret: &[u8]) -> Result<Self, AuthError> {
        Ok(Self {
            verifier: Some(Verifier::hs256(secret)?),
            urls: UrlSigner::derived_from(secret),
            audio_url_ttl: DEFAULT_AUDIO_URL_TTL,
        })
    }

    /// RS256 tokens checked with an RSA public key in PEM. The API holds no secret then,
    /// so audio URLs are signed with a random key of this process unless
    /// [`AuthConfig::url_signing_key`] sets a shared one.
    pub fn rs256(public_key_pem: &[u8]) -> Result<Self, AuthError> {
        Ok(Self {
            verifier: Some(Verifier::rs256(public_key_pem)?),
            urls: UrlSigner::random(),
            audio_url_ttl: DEFAULT_AUDIO_URL_TTL,
        })
    }

    /// RS256 and ES256 tokens checked with the keys an identity provider publishes at
    /// `jwks_url` (its JWKS document), looked up by `kid`, cached, and refetched when a
    /// token names an unknown `kid`, at most once per `min_refresh`. Audio URLs as for
    /// [`AuthConfig::rs256`].
    pub fn jwks(jwks_url: &str, min_refresh: Duration) -> Result<Self, AuthError> {
        let jwks = jwks::Jwks::new(jwks_url, min_refresh).map_err(AuthError::JwksClient)?;
        Ok(Self {
            verifier: Some(Verifier::jwks(jwks)),
            urls: UrlSigner::random(),
            audio_url_ttl: DEFAULT_AUDIO_URL_TTL,
        })
    }

    /// Reads roles from the claim at `path` (keys separated by dots, e.g.
    /// `realm_access.roles` for Keycloak, `cognito:groups` for Cognito) instead of the
    /// top-level `roles`.
    pub fn roles_claim(mut self, path: &str) -> Self {
        self.verifier = self.verifier.map(|v| v.roles_claim(path));
        self
    }

    /// Tokens must carry `iss` = `issuer`.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.verifier = self.verifier.map(|v| v.issuer(issuer));
        self
    }

    /// Tokens must carry `aud` naming `audience`.
    pub fn audience(mut self, audience: &str) -> Self {
        self.verifier = self.verifier.map(|v| v.audience(audience));
        self
    }

    /// Signs audio URLs with `key` (shared by every instance behind one address).
    pub fn url_signing_key(mut self, key: &[u8]) -> Self {
        self.urls = UrlSigner::new(key);
        self
    }

    /// Whether a key to check tokens is configured.
    pub fn is_configured(&self) -> bool {
        self.verifier.is_some()
    }

    /// `path` signed for [`AuthConfig::audio_url_ttl`] from now.
    pub(crate) fn signed_url(&self, path: &str) -> String {
        self.signed_url_until(
            path,
            unix_now().saturating_add(self.audio_url_ttl.as_secs()),
        )
    }

    /// `path` signed until `expires` (Unix seconds), as a note's `audio_url` is; for
    /// tests and tools that need a given expiry.
    pub fn signed_url_until(&self, path: &str, expires: u64) -> String {
        self.urls.sign(path, expires)
    }
}

/// What the request carried that let it through without a bearer token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignedUrl;

/// The middleware in front of every route (see the module docs).
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if PUBLIC_PATHS.contains(&path) {
        return next.run(request).await;
    }
    let auth = &state.config.auth;
    let query = request.uri().query().unwrap_or_default();
    if is_audio_read(request.method(), path) && signed_url::is_signed(query) {
        return match auth.urls.check(path, query, unix_now()) {
            Ok(()) => {
                request.extensions_mut().insert(SignedUrl);
                next.run(request).await
            }
            Err(refusal) => bad_url(refusal).into_response(),
        };
    }
    let principal = match bearer(&request) {
        None => return unauthorized(None),
        Some(token) => match &auth.verifier {
            Some(verifier) => verifier.verify(token).await,
            None => Err(Refusal("this API has no key to check tokens with")),
        },
    };
    let principal = match principal {
        Ok(principal) => principal,
        Err(refusal) => return unauthorized(Some(refusal)),
    };
    if is_admin_path(path) && !principal.admin {
        return forbidden(&principal);
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

fn is_admin_path(path: &str) -> bool {
    path.starts_with(ADMIN_PREFIX) || path == ADMIN_PREFIX.trim_end_matches('/')
}

/// `GET`/`HEAD /v1/notes/{id}/audio`: the only route a signed URL opens.
fn is_audio_read(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && path
            .strip_prefix("/v1/notes/")
            .and_then(|rest| rest.strip_suffix("/audio"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive).
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

const REALM: &str = "Bearer realm=\"notesaga\"";

/// 401: without a token the challenge names no error (RFC 6750 §3.1); with a bad one,
/// `invalid_token` and why.
fn unauthorized(refusal: Option<Refusal>) -> Response {
    let (challenge, detail) = match refusal {
        None => (
            REALM.to_owned(),
            "send Authorization: Bearer <token> (`notesaga token` mints one)".to_owned(),
        ),
        Some(Refusal(why)) => (
            format!("{REALM}, error=\"invalid_token\", error_description=\"{why}\""),
            format!("the bearer token was refused: {why}"),
        ),
    };
    let problem =
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized").detail(detail);
    let challenge =
        HeaderValue::from_str(&challenge).expect("the challenge is ASCII without controls");
    ([(header::WWW_AUTHENTICATE, challenge)], problem).into_response()
}

fn forbidden(principal: &Principal) -> Response {
    tracing::info!(subject = %principal.subject, "admin endpoint refused: no admin role");
    let problem = Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(format!(
        "{ADMIN_PREFIX}* needs the {ADMIN_ROLE:?} role in the token's roles claim"
    ));
    let challenge = HeaderValue::from_static(
        "Bearer realm=\"notesaga\", error=\"insufficient_scope\", error_description=\"the admin role is required\"",
    );
    ([(header::WWW_AUTHENTICATE, challenge)], problem).into_response()
}

/// 403: a signed URL is a capability, not a credential to retry, so a bad one is
/// forbidden rather than a challenge to authenticate.
fn bad_url(refusal: UrlRefusal) -> Problem {
    let (slug, title, detail) = match refusal {
        UrlRefusal::Expired => (
            "url-expired",
            "Signed URL expired",
            "this audio URL has expired; GET the note again for a fresh audio_url",
        ),
        UrlRefusal::BadSignature | UrlRefusal::Malformed => (
            "bad-signature",
            "Bad URL signature",
            "this audio URL's signature does not verify; use the audio_url of GET /v1/notes/{id} as it is",
        ),
    };
    Problem::new(StatusCode::FORBIDDEN, slug, title).detail(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let id = "3e1c1b56-3f0c-4a5e-9c1a-2f1f7f0e2a10";
        for (method, path, audio) in [
            (Method::GET, format!("/v1/notes/{id}/audio"), true),
            (Method::HEAD, format!("/v1/notes/{id}/audio"), true),
            (Method::DELETE, format!("/v1/notes/{id}/audio"), false),
            (Method::GET, format!("/v1/notes/{id}"), false),
            (Method::GET, "/v1/notes//audio".to_owned(), false),
            (Method::GET, format!("/v1/notes/{id}/x/audio"), false),
        ] {
            assert_eq!(is_audio_read(&method, &path), audio, "{method} {path}");
        }
        for (path, admin) in [
            ("/v1/admin/jobs/1", true),
            ("/v1/admin", true),
            ("/v1/admin/", true),
            ("/v1/administrator", false),
            ("/v1/notes", false),
        ] {
            assert_eq!(is_admin_path(path), admin, "{path}");
        }
    }
}
