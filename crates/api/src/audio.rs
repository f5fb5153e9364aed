//! A note's audio from the blob store (the filesystem or S3; the API reads no role's
//! disk): streamed with `Range` support (206, and 416 as a problem carrying
//! `Content-Range: bytes */LENGTH`) so players can seek, or, when configured, a 307 to a
//! presigned URL of the object store so the bytes do not pass through the API.

use axum::{
    body::Body,
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use notesaga_blob::{
    range::{self, Resolved},
    BlobStore as _,
};

use crate::{problem::Problem, AppState};

fn missing(key: &str) -> Problem {
    tracing::warn!(%key, "a published narration is not in the audio store");
    Problem::new(StatusCode::NOT_FOUND, "audio-not-found", "Audio not found")
        .detail("the narration is not in the audio store")
}

/// Answers a `GET` or `HEAD` with these `headers` with the blob under `key`.
pub(crate) async fn serve(
    state: &AppState,
    key: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    if state.config.audio_redirect {
        let ttl = state.config.auth.audio_url_ttl;
        if let Some(url) = state
            .audio
            .presigned_url(key, ttl)
            .await
            .map_err(|err| Problem::internal(&err))?
        {
            let location = HeaderValue::from_str(&url).map_err(|err| Problem::internal(&err))?;
            return Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [
                    (header::LOCATION, location),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
            )
                .into_response());
        }
    }
    let length = state
        .audio
        .size(key)
        .await
        .map_err(|err| Problem::internal(&err))?
        .ok_or_else(|| missing(key))?;
    let header_value = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok());
    let (status, part) = match range::resolve(header_value, length) {
        Resolved::Whole => (StatusCode::OK, 0..length),
        Resolved::Part(part) => (StatusCode::PARTIAL_CONTENT, part),
        Resolved::Unsatisfiable => {
            let mut problem = Problem::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                "Range not satisfiable",
            )
            .detail("the Range header asks for bytes outside the narration")
            .into_response();
            problem.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{length}"))
                    .map_err(|err| Problem::internal(&err))?,
            );
            return Ok(problem);
        }
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "audio/wav")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, part.end - part.start);
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{length}", part.start, part.end - 1),
        );
    }
    let body = if *method == Method::HEAD || part.is_empty() {
        Body::empty()
    } else {
        let range = (status == StatusCode::PARTIAL_CONTENT).then_some(part);
        let stream = state
            .audio
            .read(key, range)
            .await
            .map_err(|err| Problem::internal(&err))?
            .ok_or_else(|| missing(key))?;
        Body::from_stream(stream)
    };
    response.body(body).map_err(|err| Problem::internal(&err))
}
