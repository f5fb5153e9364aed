//! A command's response as data: status, headers and a text body, so the same value is
//! sent to the client and stored for an `Idempotency-Key` replay.

use axum::{
    http::{header, HeaderName, StatusCode},
    response::{IntoResponse, Response},
};
use notesaga_projections::idempotency::StoredResponse;
use serde::Serialize;

use crate::problem::Problem;

/// A complete response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    /// Lower-case names, `content-type` among them.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    /// A JSON body.
    pub(crate) fn json(status: StatusCode, body: &impl Serialize) -> Self {
        Self {
            status,
            headers: vec![(
                header::CONTENT_TYPE.as_str().to_owned(),
                "application/json".to_owned(),
            )],
            body: serde_json::to_string(body).expect("JSON values serialise"),
        }
    }

    /// A problem, as [`Problem`]'s own response would be.
    pub(crate) fn problem(problem: &Problem) -> Self {
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut reply = Self::json(status, problem);
        reply.headers[0].1 = "application/problem+json".to_owned();
        reply
    }

    /// With a header.
    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> Self {
        self.headers
            .push((name.as_str().to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn stored(&self) -> StoredResponse {
        StoredResponse {
            status: self.status.as_u16(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }

    pub(crate) fn from_stored(stored: StoredResponse) -> Self {
        Self {
            status: StatusCode::from_u16(stored.status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: stored.headers,
            body: stored.body,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            // Stored headers were built by this API, so they parse; one that does not
            // (a hand-edited row) is dropped rather than failing the replay. Inserted,
            // not appended: `content-type` replaces the plain-text default.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                axum::http::HeaderValue::from_str(&value),
            ) {
                headers.insert(name, value);
            }
        }
        response
    }
}
