//! HTTP metrics: one latency histogram, `notesaga_http_request_duration_seconds`, by
//! `method`, `route` and `status`.
//!
//! `route` is the matched route template (`/v1/notes/{note_id}`), never the raw path: a
//! label per note id would grow without bound. Requests no route matched share the
//! route `unmatched`. The layer is added with `Router::layer`, which axum applies per
//! route after routing, so the template ([`MatchedPath`]) is known here.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};

/// Histogram: seconds from a request's arrival to its response's head, by `method`,
/// `route` and `status`.
pub(crate) const HTTP_REQUEST_DURATION_SECONDS: &str = "notesaga_http_request_duration_seconds";

/// The `route` label of a request that matched no route.
const UNMATCHED: &str = "unmatched";

/// Times one request (middleware for `axum::middleware::from_fn`).
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = route_label(request.extensions().get::<MatchedPath>());
    let response = next.run(request).await;
    metrics::histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}

fn route_label(matched: Option<&MatchedPath>) -> String {
    matched.map_or_else(|| UNMATCHED.to_owned(), |m| m.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request, routing::get, Router};
    use metrics_exporter_prometheus::PrometheusBuilder;
    use tower::ServiceExt as _;

    use super::*;

    /// The label is the template, and an unknown path does not become a label.
    #[tokio::test]
    async fn routes_are_labelled_by_template() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let app = Router::new()
            .route("/v1/notes/{note_id}", get(|| async { "note" }))
            .layer(axum::middleware::from_fn(track));
        let _guard = metrics::set_default_local_recorder(&recorder);
        for uri in ["/v1/notes/1", "/v1/notes/2", "/nowhere/3"] {
            app.clone()
                .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
                .await
                .expect("answered");
        }
        let text = handle.render();
        assert!(
            text.contains(r#"route="/v1/notes/{note_id}",status="200""#),
            "{text}"
        );
        assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
        assert!(!text.contains("/v1/notes/1"), "{text}");
    }
}
