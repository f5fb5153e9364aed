//! RFC 9457 problem details: every 4xx and 5xx body.

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// One field that is wrong.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct FieldProblem {
    /// The field (`title`, `body`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// An `application/problem+json` response (RFC 9457). Every 4xx and 5xx of the API is
/// one; `detail` is always set, `errors` only on validation problems, and extension
/// members (e.g. `/readyz`'s `checks`) may follow.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`https://notesaga.dev/problems/<slug>`).
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What happened this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = true, value_type = String)]
    pub detail: Option<String>,
    /// Fields at fault (validation).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub errors: Vec<FieldProblem>,
    /// Members beyond the standard ones (RFC 9457 §3.2), e.g. readiness checks. Boxed:
    /// few problems have any, and every handler's `Result` carries a `Problem`. Not in
    /// the schema, which allows additional members.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub extensions: Option<Box<Map<String, Value>>>,
}

impl Problem {
    /// A problem of kind `slug` (documented at `https://notesaga.dev/problems/<slug>`).
    pub fn new(status: StatusCode, slug: &str, title: &str) -> Self {
        Self {
            kind: format!("https://notesaga.dev/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
            extensions: None,
        }
    }

    /// With a detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// With field errors.
    pub fn errors(mut self, errors: Vec<FieldProblem>) -> Self {
        self.errors = errors;
        self
    }

    /// With an extension member `name` (never one of the standard names).
    pub fn extension(mut self, name: &str, value: Value) -> Self {
        debug_assert!(!["type", "title", "status", "detail", "errors"].contains(&name));
        self.extensions
            .get_or_insert_with(Box::default)
            .insert(name.to_owned(), value);
        self
    }

    /// A 500 whose cause goes to the log, not to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        )
        .detail("the server failed; the request id in X-Request-Id finds it in the logs")
    }

    /// A 503 for a dependency that is down.
    pub fn unavailable(what: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, what, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        )
        .detail(format!("{what} is unavailable; retry later"))
    }
}

/// A read-store failure: the store is a dependency that may come back, so 503 (the
/// cause goes to the log only).
impl From<notesaga_projections::Error> for Problem {
    fn from(err: notesaga_projections::Error) -> Self {
        Self::unavailable("the read store", &err)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("problems serialise");
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        // A `retry_after` member (seconds, e.g. of a 429) is also the `Retry-After` header.
        if let Some(seconds) = self
            .extensions
            .as_ref()
            .and_then(|members| members.get("retry_after"))
            .and_then(Value::as_u64)
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
