//! Authentication and authorisation through the router, without a socket or a broker:
//! bearer tokens (missing, forged, `alg: none`, expired, wrong issuer or audience → 401
//! with `WWW-Authenticate`), ownership (another user's note → 404), the admin role on
//! `/v1/admin/*` (403 without it), RS256, the public endpoints, and signed audio URLs
//! (no header needed; tampered or expired → 403; `Range` → 206).

mod conform;
mod jwks;
mod offline;

use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::{
    body::Body,
    http::{Request, StatusCode},
    Router,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use http_body_util::BodyExt as _;
use notesaga_api::{auth::Claims, router, ApiConfig, AuthConfig};
use notesaga_events::{
    narration::{NarrationCompleted, NarrationEvent},
    notes::{NoteCreated, NotePublished, NotesEvent},
    saga::{SagaEvent, SagaStarted},
};
use notesaga_log::FlowEvent;
use notesaga_narration::{BlobStore as _, Blobs};
use notesaga_projections::{notes, ReadStore};
use serde_json::Value;
use tower::ServiceExt as _;
use uuid::Uuid;

const SECRET: &[u8] = b"auth-test-secret-0123456789abcdef-xyz";
const HOUR: Duration = Duration::from_secs(3600);
const RSA_PRIVATE: &str = include_str!("fixtures/test-only-rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/test-only-rsa-public.pem");

/// The bytes of the stored narration: a WAV header's start and some samples.
const AUDIO: &[u8] = b"RIFF\x24\x00\x00\x00WAVEfmt 0123456789abcdef0123456789";

struct Api {
    _dir: tempfile::TempDir,
    store: ReadStore,
    audio: Blobs,
    router: Router,
    auth: AuthConfig,
}

/// A response, its body read.
struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Asserts a problem+json with `status` whose type ends in `slug`.
    fn assert_problem(&self, status: StatusCode, slug: &str, what: &str) {
        let body = self.json();
        assert_eq!(self.status, status, "{what}: {body}");
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{what}"
        );
        assert!(
            body["type"].as_str().unwrap_or_default().ends_with(slug),
            "{what}: {body}"
        );
    }

    /// Asserts the 401 of RFC 6750: a problem and a Bearer challenge.
    fn assert_unauthorized(&self, error: Option<&str>, what: &str) {
        self.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized", what);
        let challenge = self
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=\"notesaga\""),
            "{what}: {challenge}"
        );
        match error {
            Some(error) => assert!(
                challenge.contains(&format!("error=\"{error}\"")),
                "{what}: {challenge}"
            ),
            None => assert!(!challenge.contains("error="), "{what}: {challenge}"),
        }
    }
}

/// An API with `auth` whose broker and registry are a closed port.
async fn api(auth: AuthConfig) -> Result<Api> {
    api_with(auth, None, false).await
}

/// The same, with its audio in `audio` (default: files in a temporary directory) and
/// `audio_redirect` set.
async fn api_with(auth: AuthConfig, audio: Option<Blobs>, audio_redirect: bool) -> Result<Api> {
    let config = ApiConfig {
        readiness_timeout: Duration::from_millis(300),
        auth: auth.clone(),
        audio_redirect,
        ..ApiConfig::default()
    };
    let mut offline = offline::offline(config, None).await?;
    if let Some(audio) = audio {
        offline.state.audio = audio;
    }
    Ok(Api {
        _dir: offline.dir,
        store: offline.store,
        audio: offline.state.audio.clone(),
        router: router(offline.state),
        auth,
    })
}

fn hs256() -> AuthConfig {
    AuthConfig::hs256(SECRET).expect("a long secret")
}

fn token(sub: &str) -> String {
    Claims::new(sub, HOUR).mint_hs256(SECRET).expect("mint")
}

fn admin_token(sub: &str) -> String {
    Claims::new(sub, HOUR)
        .admin()
        .mint_hs256(SECRET)
        .expect("mint")
}

impl Api {
    async fn send(&self, request: Request<Body>) -> Result<Answer> {
        let (method, uri) = (request.method().clone(), request.uri().to_string());
        let response = self.router.clone().oneshot(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes().to_vec();
        conform::assert_conforms(
            method.as_str(),
            &uri,
            parts.status.as_u16(),
            &parts.headers,
            &body,
        );
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// `GET uri` with `Authorization: Bearer token` when given.
    async fn get(&self, uri: &str, token: Option<&str>) -> Result<Answer> {
        let mut request = Request::get(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(request.body(Body::empty())?).await
    }

    /// A published note of `owner` with a narration in the blob store.
    async fn narrated_note(&self, owner: &str) -> Result<Uuid> {
        let id = Uuid::new_v4();
        let key = format!("{id}/v1.wav");
        let staging = self.audio.staging_path(&key)?;
        std::fs::write(&staging, AUDIO)?;
        self.audio.commit(&staging, &key).await?;
        let at = 1_767_225_600_000;
        let records = [
            FlowEvent::Notes(NotesEvent::NoteCreated(NoteCreated {
                note_id: id,
                owner: owner.into(),
                version: 1,
                title: "Tides".into(),
                body: "The moon pulls the sea.".into(),
                occurred_at: at,
            })),
            FlowEvent::Narration(NarrationEvent::NarrationCompleted(NarrationCompleted {
                note_id: id,
                version: 1,
                audio_key: key,
                content_type: "audio/wav".into(),
                duration_ms: 1200,
                size_bytes: AUDIO.len() as i64,
                occurred_at: at,
            })),
            FlowEvent::Notes(NotesEvent::NotePublished(NotePublished {
                note_id: id,
                version: 1,
                occurred_at: at,
            })),
        ];
        let mut tx = self.store.pool().begin().await?;
        for (offset, record) in records.iter().enumerate() {
            notes::apply(&mut tx, record, Uuid::new_v4(), offset as i64).await?;
        }
        tx.commit().await?;
        Ok(id)
    }
}

#[tokio::test]
async fn public_endpoints_need_no_token() -> Result<()> {
    let api = api(hs256()).await?;
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let answer = api.get(path, None).await?;
        assert_ne!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_ne!(answer.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(api.get("/healthz", None).await?.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_challenge() -> Result<()> {
    let api = api(hs256()).await?;
    api.get("/v1/notes", None)
        .await?
        .assert_unauthorized(None, "no token");
    // Not only the routes that exist: nothing behind the door is mapped for strangers.
    api.get("/v1/nothing-here", None)
        .await?
        .assert_unauthorized(None, "unknown route");

    let forged = Claims::new("mallory", HOUR).mint_hs256(b"another-secret-0123456789abcdef-xyz")?;
    let mut expired = Claims::new("ann", HOUR);
    expired.exp = expired.iat - 3600;
    let expired = expired.mint_hs256(SECRET)?;
    let claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"sub":"ann","exp":{},"roles":["admin"]}}"#,
        Claims::new("ann", HOUR).exp
    ));
    let none = format!(
        "{}.{claims}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
    );
    // alg confusion: an HS512 token signed with the right secret is still not HS256.
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &Claims::new("ann", HOUR),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )?;
    for (what, token) in [
        ("bad signature", forged.as_str()),
        ("alg none", none.as_str()),
        ("expired", expired.as_str()),
        ("other algorithm", hs512.as_str()),
        ("garbage", "not-a-jwt"),
    ] {
        api.get("/v1/notes", Some(token))
            .await?
            .assert_unauthorized(Some("invalid_token"), what);
    }
    let basic = api
        .send(
            Request::get("/v1/notes")
                .header("authorization", "Basic YTpi")
                .body(Body::empty())?,
        )
        .await?;
    basic.assert_unauthorized(None, "another scheme");
    assert_eq!(
        api.get("/v1/notes", Some(&token("ann"))).await?.status,
        StatusCode::OK
    );
    Ok(())
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() -> Result<()> {
    let api = api(hs256().issuer("https://idp.example").audience("notesaga")).await?;
    let mint = |iss: Option<&str>, aud: Option<&str>| {
        Claims::new("ann", HOUR)
            .for_api(iss, aud)
            .mint_hs256(SECRET)
    };
    for (what, token) in [
        (
            "wrong audience",
            mint(Some("https://idp.example"), Some("other"))?,
        ),
        ("no audience", mint(Some("https://idp.example"), None)?),
        (
            "wrong issuer",
            mint(Some("https://evil.example"), Some("notesaga"))?,
        ),
        ("no issuer", mint(None, Some("notesaga"))?),
    ] {
        api.get("/v1/notes", Some(&token))
            .await?
            .assert_unauthorized(Some("invalid_token"), what);
    }
    let good = mint(Some("https://idp.example"), Some("notesaga"))?;
    assert_eq!(
        api.get("/v1/notes", Some(&good)).await?.status,
        StatusCode::OK
    );
    Ok(())
}

#[tokio::test]
async fn sub_owns_notes_and_others_are_404() -> Result<()> {
    let api = api(hs256()).await?;
    let id = api.narrated_note("ann").await?;
    let path = format!("/v1/notes/{id}");
    let mine = api.get(&path, Some(&token("ann"))).await?;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(mine.json()["owner"], "ann");
    api.get(&path, Some(&token("bob"))).await?.assert_problem(
        StatusCode::NOT_FOUND,
        "note-not-found",
        "another user's note",
    );
    // The admin role is not a master key for other users' notes.
    api.get(&path, Some(&admin_token("bob")))
        .await?
        .assert_problem(StatusCode::NOT_FOUND, "note-not-found", "an admin's token");
    let listed = api.get("/v1/notes", Some(&token("bob"))).await?.json();
    assert_eq!(listed["items"], serde_json::json!([]), "bob lists nothing");
    Ok(())
}

#[tokio::test]
async fn sagas_are_seen_by_their_notes_owner_and_by_admins() -> Result<()> {
    let api = api(hs256()).await?;
    let note_id = api.narrated_note("ann").await?;
    let saga_id = Uuid::new_v4();
    let started = FlowEvent::Saga(SagaEvent::SagaStarted(SagaStarted {
        saga_id,
        note_id,
        version: 1,
        text: "Tides".into(),
        kind: "publish".into(),
        retire_version: None,
        occurred_at: 1_767_225_600_000,
    }));
    let mut tx = api.store.pool().begin().await?;
    notes::apply(&mut tx, &started, Uuid::new_v4(), 10).await?;
    tx.commit().await?;

    let path = format!("/v1/sagas/{saga_id}");
    let listed = |answer: Answer| {
        answer.json()["sagas"].as_array().map(|sagas| {
            sagas
                .iter()
                .filter(|s| s["saga_id"] == saga_id.to_string())
                .count()
        })
    };
    assert_eq!(
        api.get(&path, Some(&token("ann"))).await?.status,
        StatusCode::OK
    );
    assert_eq!(
        listed(api.get("/v1/sagas", Some(&token("ann"))).await?),
        Some(1)
    );
    api.get(&path, Some(&token("bob"))).await?.assert_problem(
        StatusCode::NOT_FOUND,
        "saga-not-found",
        "another user's saga",
    );
    assert_eq!(
        listed(api.get("/v1/sagas", Some(&token("bob"))).await?),
        Some(0)
    );
    // Operators unstick everyone's sagas, so they see them all.
    assert_eq!(
        api.get(&path, Some(&admin_token("bob"))).await?.status,
        StatusCode::OK
    );
    assert_eq!(
        listed(api.get("/v1/sagas", Some(&admin_token("bob"))).await?),
        Some(1)
    );
    Ok(())
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_role() -> Result<()> {
    let api = api(hs256()).await?;
    let saga = Uuid::new_v4();
    let retry = |token: Option<String>| {
        let mut request = Request::post(format!("/v1/admin/sagas/{saga}/retry"));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(Body::empty())
    };
    api.send(retry(None)?)
        .await?
        .assert_unauthorized(None, "no token");
    let refused = api.send(retry(Some(token("ann")))?).await?;
    refused.assert_problem(StatusCode::FORBIDDEN, "forbidden", "a user's token");
    assert!(refused
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("insufficient_scope")));
    // Every route under the prefix, including ones this test does not know.
    for path in [
        "/v1/admin/jobs/1",
        "/v1/admin/projections/notes/replay",
        "/v1/admin",
    ] {
        api.get(path, Some(&token("ann"))).await?.assert_problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            path,
        );
    }
    // With the role the request reaches the handler: an unknown saga.
    let admitted = api.send(retry(Some(admin_token("ann")))?).await?;
    admitted.assert_problem(StatusCode::NOT_FOUND, "saga-not-found", "an admin's token");
    Ok(())
}

#[tokio::test]
async fn rs256_tokens_with_the_configured_public_key() -> Result<()> {
    let api = api(AuthConfig::rs256(RSA_PUBLIC.as_bytes())?).await?;
    let rs256 = |claims: &Claims| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes())?,
        )
    };
    let good = rs256(&Claims::new("ann", HOUR))?;
    assert_eq!(
        api.get("/v1/notes", Some(&good)).await?.status,
        StatusCode::OK
    );
    let id = api.narrated_note("ann").await?;
    assert_eq!(
        api.get(&format!("/v1/notes/{id}"), Some(&good))
            .await?
            .status,
        StatusCode::OK
    );
    // The classic confusion: HS256 signed with the public key as the HMAC secret.
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims::new("ann", HOUR),
        &jsonwebtoken::EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    )?;
    let mut expired = Claims::new("ann", HOUR);
    expired.exp = expired.iat - 3600;
    for (what, token) in [
        ("HS256 with the public key", confused),
        ("HS256 with another secret", token("ann")),
        ("expired", rs256(&expired)?),
    ] {
        api.get("/v1/notes", Some(&token))
            .await?
            .assert_unauthorized(Some("invalid_token"), what);
    }
    Ok(())
}

#[tokio::test]
async fn signed_audio_urls_play_without_a_header() -> Result<()> {
    plays_audio(api(hs256()).await?).await
}

/// The same scenario with the audio in an S3 bucket (moto's server), then with the
/// redirect to a presigned URL switched on.
#[tokio::test]
async fn audio_streams_from_s3_and_redirects_to_presigned_urls() -> Result<()> {
    let moto = tokio::task::spawn_blocking(notesaga_testkit::moto::MotoServer::start).await??;
    let bucket = notesaga_testkit::random_name("audio").to_lowercase();
    moto.create_bucket(&bucket).await?;
    let staging = tempfile::tempdir()?;
    let config = notesaga_narration::S3Config {
        endpoint: Some(moto.endpoint().to_owned()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        ..notesaga_narration::S3Config::from_url(&format!("s3://{bucket}"))
            .map_err(anyhow::Error::msg)?
    };
    let s3 = Blobs::from(notesaga_narration::S3BlobStore::new(
        &config,
        staging.path(),
    )?);
    plays_audio(api_with(hs256(), Some(s3.clone()), false).await?).await?;

    let api = api_with(hs256(), Some(s3), true).await?;
    let id = api.narrated_note("ann").await?;
    let redirected = api
        .get(&format!("/v1/notes/{id}/audio"), Some(&token("ann")))
        .await?;
    assert_eq!(redirected.status, StatusCode::TEMPORARY_REDIRECT);
    let location = redirected
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("a Location")?;
    assert!(location.starts_with(moto.endpoint()), "{location}");
    let fetched = reqwest::get(location)
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    assert_eq!(&fetched[..], AUDIO);
    // Another user is still refused before any URL is made.
    api.get(&format!("/v1/notes/{id}/audio"), Some(&token("bob")))
        .await?
        .assert_problem(StatusCode::NOT_FOUND, "audio-not-found", "bob");
    Ok(())
}

async fn plays_audio(api: Api) -> Result<()> {
    let id = api.narrated_note("ann").await?;
    let other = api.narrated_note("ann").await?;
    let note = api
        .get(&format!("/v1/notes/{id}"), Some(&token("ann")))
        .await?
        .json();
    let url = note["narration"]["audio_url"]
        .as_str()
        .context("audio_url")?
        .to_owned();
    let path = format!("/v1/notes/{id}/audio");
    assert!(url.starts_with(&format!("{path}?expires=")), "{url}");

    let played = api.get(&url, None).await?;
    assert_eq!(played.status, StatusCode::OK);
    assert_eq!(played.body, AUDIO);
    assert_eq!(
        played
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("audio/wav")
    );
    let ranged = api
        .send(
            Request::get(&url)
                .header("range", "bytes=0-3")
                .body(Body::empty())?,
        )
        .await?;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.body, b"RIFF");
    // A range past the end is a problem that says how long the audio is.
    let beyond = api
        .send(
            Request::get(&url)
                .header("range", "bytes=100000-")
                .body(Body::empty())?,
        )
        .await?;
    assert_eq!(
        beyond
            .headers
            .get("content-range")
            .and_then(|v| v.to_str().ok()),
        Some(format!("bytes */{}", AUDIO.len()).as_str())
    );
    beyond.assert_problem(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range-not-satisfiable",
        "a range past the end",
    );

    // The owner's token works too; another user's does not see the note.
    assert_eq!(
        api.get(&path, Some(&token("ann"))).await?.status,
        StatusCode::OK
    );
    api.get(&path, Some(&token("bob"))).await?.assert_problem(
        StatusCode::NOT_FOUND,
        "audio-not-found",
        "bob's token",
    );
    api.get(&path, None)
        .await?
        .assert_unauthorized(None, "neither signature nor token");

    let query = url.split_once('?').context("a query")?.1;
    let sig = query.split_once("sig=").context("sig")?.1;
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let expires = query
        .split('&')
        .find_map(|p| p.strip_prefix("expires="))
        .context("expires")?
        .parse::<u64>()?;
    let expired = api.auth.signed_url_until(&path, expires - 3600);
    for (what, bad, slug) in [
        (
            "tampered sig",
            format!("{path}?expires={expires}&sig={flipped}{}", &sig[1..]),
            "bad-signature",
        ),
        (
            "extended expiry",
            format!("{path}?expires={}&sig={sig}", expires + 3600),
            "bad-signature",
        ),
        (
            "another note",
            format!("/v1/notes/{other}/audio?{query}"),
            "bad-signature",
        ),
        ("expired", expired, "url-expired"),
    ] {
        api.get(&bad, None)
            .await?
            .assert_problem(StatusCode::FORBIDDEN, slug, what);
    }
    Ok(())
}
