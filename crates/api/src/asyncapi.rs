//! `GET /asyncapi.json`: the log's AsyncAPI 3.0 document, generated from the `events`
//! crate ([`notesaga_events::asyncapi`]) once per process.

use std::sync::OnceLock;

use axum::{http::header, response::IntoResponse};

/// The AsyncAPI 3.0 description of the topics, their messages and the consumer groups.
#[utoipa::path(
    get,
    path = "/asyncapi.json",
    tag = "operations",
    summary = "The AsyncAPI 3.0 document of the Kafka topics",
    responses((status = 200, description = "The AsyncAPI 3.0 document", content_type = "application/json", body = Object)),
)]
pub(crate) async fn asyncapi_json() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON
        .get_or_init(|| notesaga_events::asyncapi::document(env!("CARGO_PKG_VERSION")).to_string());
    ([(header::CONTENT_TYPE, "application/json")], json.as_str())
}
