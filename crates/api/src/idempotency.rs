//! `Idempotency-Key` on `POST`, `PUT` and `DELETE`: a retried command is answered, not
//! repeated.
//!
//! The key is scoped to the caller and bound to the first request it came with (its
//! fingerprint: method, path, `If-Match` and the JSON body, key order and whitespace
//! aside). The same request again replays the first response (status, headers, body),
//! command id included, and sends nothing; another request with the key is a 422; a
//! retry while the first is being answered is a 409. Keys are kept for
//! [`crate::Limits::idempotency_retention`] (24 hours by default) and purged lazily.
//! How a crash between reserving a key and storing its response is survived is told in
//! [`notesaga_projections::idempotency`].

use std::sync::atomic::{AtomicI64, Ordering};

use axum::http::{header, HeaderMap, Method, StatusCode};
use notesaga_projections::idempotency::{KeyRequest, Reservation};
use serde_json::Value;
use uuid::Uuid;

use crate::{caller::Caller, problem::Problem, AppState};

/// The request header.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on a replayed response.
pub(crate) const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// The longest key accepted (a UUID is 36).
const MAX_KEY_LEN: usize = 255;
/// Expired keys are purged at most this often per process.
const PURGE_EVERY_MS: i64 = 60_000;
/// The namespace of request fingerprints (a UUIDv5 of the canonical request).
const FINGERPRINT_NAMESPACE: Uuid = Uuid::from_u128(0x6e6f7465_7361_6761_8000_69646b657931);

/// A command request's key and fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdempotentRequest {
    pub(crate) key: String,
    pub(crate) fingerprint: String,
}

/// The key of `headers`, if any, with the request's fingerprint; 400 for a key that is
/// empty, too long or not visible ASCII.
pub(crate) fn idempotent_request(
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Option<IdempotentRequest>, Problem> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = raw.to_str().unwrap_or_default().trim();
    // The draft standard makes the key a structured-field string: quotes are optional.
    let key = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(key);
    if key.is_empty()
        || key.len() > MAX_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-idempotency-key",
            "Bad Idempotency-Key",
        )
        .detail(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters, e.g. a UUID"
        )));
    }
    Ok(Some(IdempotentRequest {
        key: key.to_owned(),
        fingerprint: fingerprint(headers, method, path, body),
    }))
}

/// What makes two requests the same: method, path, `If-Match` and the body as JSON
/// (serde_json's map is ordered, so key order and whitespace do not count). A UUIDv5
/// (SHA-1) of that: a collision needs two different requests under one user's own key,
/// which only that user could arrange, and only to their own confusion.
fn fingerprint(headers: &HeaderMap, method: &Method, path: &str, body: Option<&Value>) -> String {
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    let body = body.map(Value::to_string).unwrap_or_default();
    let canonical = format!("{method}\n{path}\n{if_match}\n{body}");
    Uuid::new_v5(&FINGERPRINT_NAMESPACE, canonical.as_bytes()).to_string()
}

/// Reserves the key for this request (see [`Reservation`]), purging expired keys first
/// now and then.
pub(crate) async fn reserve(
    state: &AppState,
    caller: &Caller,
    request: &IdempotentRequest,
    command_id: Uuid,
    note_id: Uuid,
    purged_at: &AtomicI64,
) -> Result<Reservation, Problem> {
    let limits = &state.config.limits;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let last = purged_at.load(Ordering::Relaxed);
    if now_ms - last >= PURGE_EVERY_MS
        && purged_at
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        // Expired rows are already treated as absent; purging only bounds the table, so
        // a failure is logged, not answered.
        match state.store.purge_idempotency_keys(now_ms).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "expired idempotency keys purged"),
            Err(err) => tracing::warn!(error = %err, "cannot purge expired idempotency keys"),
        }
    }
    let millis = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Ok(state
        .store
        .reserve_idempotency_key(&KeyRequest {
            owner: caller.owner.clone(),
            key: request.key.clone(),
            fingerprint: request.fingerprint.clone(),
            command_id,
            note_id,
            now_ms,
            retention_ms: millis(limits.idempotency_retention),
            abandoned_after_ms: millis(limits.abandoned_after()),
        })
        .await?)
}

/// 409: the first request with the key is still being answered.
pub(crate) fn in_flight(key: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "idempotency-key-in-flight",
        "Request in progress",
    )
    .detail(format!(
        "a request with Idempotency-Key {key:?} is still being answered; retry later"
    ))
}

/// 422: the key was used with a different request.
pub(crate) fn mismatch(key: &str) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-key-reused",
        "Idempotency-Key reused",
    )
    .detail(format!(
        "Idempotency-Key {key:?} was used with a different request (method, path, If-Match or body); use a new key"
    ))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).expect("valid"));
        }
        headers
    }

    #[test]
    fn keys_are_checked() {
        let table: [(&str, Result<Option<&str>, ()>); 6] = [
            ("abc-123", Ok(Some("abc-123"))),
            ("\"quoted\"", Ok(Some("quoted"))),
            ("  padded ", Ok(Some("padded"))),
            ("", Err(())),
            ("\"\"", Err(())),
            (&"k".repeat(256), Err(())),
        ];
        for (raw, expected) in table {
            let got = idempotent_request(
                &headers(&[(IDEMPOTENCY_KEY, raw)]),
                &Method::POST,
                "/v1/notes",
                None,
            )
            .map(|r| r.map(|r| r.key))
            .map_err(|p| assert_eq!(p.status, 400));
            assert_eq!(got, expected.map(|k| k.map(str::to_owned)), "{raw:?}");
        }
        assert!(
            idempotent_request(&HeaderMap::new(), &Method::POST, "/v1/notes", None)
                .is_ok_and(|request| request.is_none())
        );
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let body = json!({"title": "t", "body": "b"});
        let same_reordered: Value =
            serde_json::from_str(r#"{ "body": "b", "title": "t" }"#).expect("json");
        let none = HeaderMap::new();
        let base = fingerprint(&none, &Method::PUT, "/v1/notes/1", Some(&body));
        assert_eq!(
            base,
            fingerprint(&none, &Method::PUT, "/v1/notes/1", Some(&same_reordered))
        );
        let different = [
            fingerprint(&none, &Method::POST, "/v1/notes/1", Some(&body)),
            fingerprint(&none, &Method::PUT, "/v1/notes/2", Some(&body)),
            fingerprint(
                &none,
                &Method::PUT,
                "/v1/notes/1",
                Some(&json!({"title": "t", "body": "c"})),
            ),
            fingerprint(
                &headers(&[("if-match", "\"3\"")]),
                &Method::PUT,
                "/v1/notes/1",
                Some(&body),
            ),
            fingerprint(&none, &Method::PUT, "/v1/notes/1", None),
        ];
        for other in different {
            assert_ne!(base, other);
        }
    }
}
