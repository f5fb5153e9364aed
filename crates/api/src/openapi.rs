//! The OpenAPI 3.1 description of the API, generated from the code and served at
//! `GET /openapi.json`.
//!
//! Each handler carries a `#[utoipa::path]` attribute with what is particular to it
//! (its parameters, request body, success responses and its own errors); [`ApiDoc`]
//! collects them. What every operation shares is added once by [`Conventions`] instead
//! of being repeated (and forgotten) on each handler:
//!
//! - the bearer (JWT) security scheme, required everywhere but on the public endpoints,
//!   which say `security: []`;
//! - on protected operations `401` (with `WWW-Authenticate`) and `429` (with
//!   `Retry-After`), and `403` on `/v1/admin/*`; `400`, `413` and `415` on operations
//!   with a JSON body; `500` and `503` (a dependency down, the request timeout) on
//!   every `/v1` operation;
//! - every `4xx`/`5xx` as `application/problem+json` with the [`Problem`] schema;
//! - the `X-Request-Id` request parameter and response header.
//!
//! The test suite checks every response it gets against this document
//! (`notesaga_testkit::openapi`), so a handler and its description cannot drift apart
//! unnoticed.

pub mod schemas;

use std::sync::OnceLock;

use axum::{http::header, response::IntoResponse};
use utoipa::{
    openapi::{
        path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem},
        response::{Response, ResponseBuilder},
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
        ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi as Document, RefOr, Required, Type,
    },
    Modify, OpenApi,
};

use crate::problem::{FieldProblem, Problem};

/// The paths anyone may call without a token.
pub const PUBLIC_PATHS: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/openapi.json"];

/// The name of the bearer security scheme.
const BEARER: &str = "bearer";

/// The media type of every error body.
const PROBLEM_JSON: &str = "application/problem+json";

/// The API's OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "notesaga",
        description = "Study notes turned into embeddings and narrations by sagas on a durable \
            log. Commands answer 202 with the command's status URL in `Location`; every error \
            is `application/problem+json`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        crate::notes::create_note,
        crate::notes::list_notes,
        crate::notes::get_note,
        crate::notes::edit_note,
        crate::notes::delete_note,
        crate::notes::get_audio,
        crate::sagas::note_sagas,
        crate::commands::get_command,
        crate::search::search,
        crate::sagas::list_sagas,
        crate::sagas::get_saga,
        crate::sagas::retry_saga,
        crate::admin::replay_projection,
        crate::admin::get_job,
        crate::healthz,
        crate::health::readyz,
        crate::metrics,
        openapi_json,
        crate::asyncapi::asyncapi_json,
    ),
    components(schemas(Problem, FieldProblem)),
    modifiers(&Conventions),
    tags(
        (name = "notes", description = "Notes: commands and reads"),
        (name = "commands", description = "What became of a command"),
        (name = "search", description = "Semantic search over published notes"),
        (name = "sagas", description = "Saga timelines and the operator's retry"),
        (name = "admin", description = "Operators: projection rebuilds and their jobs"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    ),
)]
pub struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// This document: the API's OpenAPI 3.1 description.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| document().to_json().expect("the document serialises"));
    ([(header::CONTENT_TYPE, "application/json")], json.as_str())
}

/// What every operation shares (see the module documentation).
#[derive(Debug)]
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT (HS256 or RS256, as configured) whose `sub` owns the notes; \
                         the claim `roles` containing `admin` grants `/v1/admin/*`.",
                    ))
                    .build(),
            ),
        );
        openapi.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        for (path, item) in &mut openapi.paths.paths {
            let public = PUBLIC_PATHS.contains(&path.as_str());
            let admin = path.starts_with("/v1/admin/");
            for operation in operations(item) {
                apply(operation, public, admin, path.starts_with("/v1/"));
            }
        }
    }
}

/// The operations of a path.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn apply(operation: &mut Operation, public: bool, admin: bool, versioned: bool) {
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(request_id_parameter());
    if public {
        // An empty list overrides the document's bearer requirement: no token needed.
        operation.security = Some(Vec::new());
    } else {
        add(
            operation,
            401,
            problem("Missing, malformed, expired or badly signed bearer token").header(
                "WWW-Authenticate",
                string_header("`Bearer` with the `error` and `error_description` of RFC 6750"),
            ),
        );
        add(
            operation,
            429,
            problem("Too many requests from this user").header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(0)),
                    )
                    .description(Some("Seconds to wait before the next request"))
                    .build(),
            ),
        );
        if admin {
            add(
                operation,
                403,
                problem("The token lacks the `admin` role").header(
                    "WWW-Authenticate",
                    string_header("`Bearer` with `error=\"insufficient_scope\"`"),
                ),
            );
        }
    }
    if operation.request_body.is_some() {
        add(operation, 400, problem("The body is not valid JSON"));
        add(
            operation,
            413,
            problem("The body is larger than the server accepts"),
        );
        add(
            operation,
            415,
            problem("The body is not `application/json`"),
        );
    }
    if versioned {
        add(
            operation,
            500,
            problem("The server failed; `X-Request-Id` finds the cause in its logs"),
        );
        // Every `/v1` request is bounded by the request timeout and reads or writes the
        // read store; handlers describe a 503 themselves only to say more (what was sent).
        add(
            operation,
            503,
            problem("A dependency is unavailable, or the request timed out; retry"),
        );
    }
    for (status, response) in &mut operation.responses.responses {
        let RefOr::T(response) = response else {
            continue;
        };
        if status.starts_with('4') || status.starts_with('5') {
            // Whatever a handler's attribute says, an error body is a problem.
            response.content.clear();
            response.content.insert(
                PROBLEM_JSON.to_owned(),
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "Problem",
                    ))))
                    .build(),
            );
        }
        response.headers.insert(
            "X-Request-Id".to_owned(),
            string_header("The request's id (the client's `X-Request-Id` or a new UUID)"),
        );
    }
}

/// Adds a response for `status` unless the handler's attribute describes it already.
fn add(operation: &mut Operation, status: u16, response: ResponseBuilder) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::T(response.build()));
}

/// A problem response (its content is filled in by [`apply`]).
fn problem(description: &str) -> ResponseBuilder {
    Response::builder().description(description)
}

fn string_header(description: &str) -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

fn request_id_parameter() -> Parameter {
    ParameterBuilder::new()
        .name("X-Request-Id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Correlates the request, the command and every event it causes; generated when \
             absent and returned on the response",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_bearer_security() {
        let json = serde_json::to_value(document()).expect("serialises");
        assert_eq!(json["openapi"], "3.1.0");
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(json["security"][0]["bearer"], serde_json::json!([]));
    }

    #[test]
    fn public_paths_need_no_token_and_errors_are_problems() {
        let json = serde_json::to_value(document()).expect("serialises");
        for (path, item) in json["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let public = PUBLIC_PATHS.contains(&path.as_str());
                let security = &operation["security"];
                assert_eq!(
                    public,
                    security == &serde_json::json!([]),
                    "{method} {path}: security {security}"
                );
                assert_eq!(
                    !public,
                    operation["responses"].get("401").is_some(),
                    "{method} {path}: a 401 exactly when a token is needed"
                );
                for (status, response) in operation["responses"].as_object().expect("responses") {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert_eq!(
                            response["content"][PROBLEM_JSON]["schema"]["$ref"],
                            "#/components/schemas/Problem",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}
