//! Tokens of an identity provider checked against its JWKS URL, served here by a local
//! axum server on 127.0.0.1 whose key set the tests change: RS256 and ES256 accepted, a
//! rotated key picked up without a restart, an unknown `kid` refused, the HS256
//! confusion refused, an admin from a nested roles claim admitted to `/v1/admin/`, and
//! refetches bounded.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::Result;
use axum::{body::Body, extract::State, http::Request, http::StatusCode, routing::get, Json};
use jsonwebtoken::{jwk::Jwk, Algorithm, EncodingKey, Header};
use notesaga_api::AuthConfig;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::api;

const RSA1_PRIVATE: &str = include_str!("../fixtures/test-only-rsa-private.pem");
const RSA2_PRIVATE: &str = include_str!("../fixtures/test-only-rsa2-private.pem");
const RSA2_PUBLIC: &str = include_str!("../fixtures/test-only-rsa2-public.pem");
const EC_PRIVATE: &str = include_str!("../fixtures/test-only-ec-private.pem");

/// A signing key of the fake identity provider.
struct SigningKey {
    kid: &'static str,
    algorithm: Algorithm,
    key: EncodingKey,
}

impl SigningKey {
    fn rsa(kid: &'static str, pem: &str) -> Self {
        Self {
            kid,
            algorithm: Algorithm::RS256,
            key: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("an RSA key"),
        }
    }

    fn ec(kid: &'static str, pem: &str) -> Self {
        Self {
            kid,
            algorithm: Algorithm::ES256,
            key: EncodingKey::from_ec_pem(pem.as_bytes()).expect("an EC key"),
        }
    }

    /// The public half as the provider publishes it. The algorithm is left out, as
    /// Keycloak and Cognito often do: the API must take it from the key type.
    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.algorithm).expect("a JWK");
        jwk.common.key_id = Some(self.kid.to_owned());
        jwk.common.key_algorithm = None;
        serde_json::to_value(jwk).expect("JSON")
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key).expect("signed")
    }
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn claims(sub: &str, roles: &[&str]) -> Value {
    json!({
        "sub": sub,
        "exp": unix_time() + 3600,
        "iat": unix_time(),
        "realm_access": { "roles": roles },
    })
}

/// The fake provider: its JWK set (replaceable) and how often it was fetched.
#[derive(Clone, Default)]
struct Provider {
    set: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl Provider {
    fn publish(&self, keys: &[&SigningKey]) {
        *self.set.lock().expect("lock") = keys.iter().map(|key| key.jwk()).collect();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Serves `/certs` on a loopback port until `stop`; returns its URL.
    async fn serve(&self, stop: CancellationToken) -> Result<String> {
        async fn certs(State(provider): State<Provider>) -> Json<Value> {
            provider.fetches.fetch_add(1, Ordering::SeqCst);
            Json(json!({ "keys": *provider.set.lock().expect("lock") }))
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/certs", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/certs", get(certs))
            .with_state(self.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        Ok(url)
    }
}

#[tokio::test]
async fn jwks_keys_are_used_rotated_and_pinned_to_their_algorithm() -> Result<()> {
    let rsa1 = SigningKey::rsa("rsa-1", RSA1_PRIVATE);
    let rsa2 = SigningKey::rsa("rsa-2", RSA2_PRIVATE);
    let ec = SigningKey::ec("ec-1", EC_PRIVATE);
    let provider = Provider::default();
    provider.publish(&[&rsa1, &ec]);
    let stop = CancellationToken::new();
    let url = provider.serve(stop.clone()).await?;
    // No refresh bound here: the rotation below must be seen by the next token.
    let api =
        api(AuthConfig::jwks(&url, Duration::ZERO)?.roles_claim("realm_access.roles")).await?;

    for (what, key) in [("RS256", &rsa1), ("ES256", &ec)] {
        let answer = api
            .get("/v1/notes", Some(&key.sign(&claims("ann", &[]))))
            .await?;
        assert_eq!(answer.status, StatusCode::OK, "{what}");
    }

    // Not published yet: refused; published (the old key retired): accepted, same API.
    let rotated = rsa2.sign(&claims("ann", &[]));
    api.get("/v1/notes", Some(&rotated))
        .await?
        .assert_unauthorized(Some("invalid_token"), "a key not published yet");
    provider.publish(&[&rsa2, &ec]);
    let answer = api.get("/v1/notes", Some(&rotated)).await?;
    assert_eq!(answer.status, StatusCode::OK, "the rotated key");
    api.get("/v1/notes", Some(&rsa1.sign(&claims("ann", &[]))))
        .await?
        .assert_unauthorized(Some("invalid_token"), "the retired key");

    // An unknown kid, a token without one, and the HS256 confusion: HMAC signed with
    // the public key's bytes (PEM and JWK JSON), naming a published RSA key.
    let unknown = SigningKey {
        kid: "nobody",
        ..SigningKey::rsa("x", RSA2_PRIVATE)
    };
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims("ann", &[]),
        &EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes())?,
    )?;
    let hmac = |secret: &[u8]| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-2".into());
        jsonwebtoken::encode(
            &header,
            &claims("ann", &["admin"]),
            &EncodingKey::from_secret(secret),
        )
    };
    let jwk_bytes = serde_json::to_vec(&rsa2.jwk())?;
    for (what, token) in [
        ("unknown kid", unknown.sign(&claims("ann", &[]))),
        ("no kid", no_kid),
        ("HS256 with the public PEM", hmac(RSA2_PUBLIC.as_bytes())?),
        ("HS256 with the JWK", hmac(&jwk_bytes)?),
    ] {
        api.get("/v1/notes", Some(&token))
            .await?
            .assert_unauthorized(Some("invalid_token"), what);
    }

    // The admin role from Keycloak's nested claim reaches /v1/admin/; without it, 403.
    let saga = Uuid::new_v4();
    let retry = |token: String| {
        Request::post(format!("/v1/admin/sagas/{saga}/retry"))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
    };
    let admitted = api
        .send(retry(ec.sign(&claims("kim", &["admin"])))?)
        .await?;
    admitted.assert_problem(StatusCode::NOT_FOUND, "saga-not-found", "an admin");
    let user = api.send(retry(ec.sign(&claims("kim", &["user"])))?).await?;
    user.assert_problem(StatusCode::FORBIDDEN, "forbidden", "a user");
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn unknown_kids_refetch_the_set_at_most_once_per_interval() -> Result<()> {
    let rsa1 = SigningKey::rsa("rsa-1", RSA1_PRIVATE);
    let provider = Provider::default();
    provider.publish(&[&rsa1]);
    let stop = CancellationToken::new();
    let url = provider.serve(stop.clone()).await?;
    let api = api(AuthConfig::jwks(&url, Duration::from_secs(3600))?).await?;

    let good = rsa1.sign(&claims("ann", &[]));
    assert_eq!(
        api.get("/v1/notes", Some(&good)).await?.status,
        StatusCode::OK
    );
    assert_eq!(provider.fetches(), 1, "the first token fetched the set");
    let forged = SigningKey {
        kid: "made-up",
        ..SigningKey::rsa("x", RSA2_PRIVATE)
    };
    for _ in 0..20 {
        let token = forged.sign(&claims("ann", &[]));
        assert_eq!(
            api.get("/v1/notes", Some(&token)).await?.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        provider.fetches(),
        1,
        "unknown kids within the interval do not refetch"
    );
    assert_eq!(
        api.get("/v1/notes", Some(&good)).await?.status,
        StatusCode::OK
    );
    stop.cancel();
    Ok(())
}
