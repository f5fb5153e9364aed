//! The OpenAPI document: complete for every endpoint, parameter, body and error the issue
//! names, served at `/openapi.json` without a token, and the responses of the router
//! (public ones, refusals, unknown routes) conform to it.

mod offline;

use std::time::Duration;

use anyhow::Result;
use axum::{
    body::Body,
    http::{Request, StatusCode},
    Router,
};
use http_body_util::BodyExt as _;
use notesaga_api::{openapi, router, ApiConfig};
use notesaga_testkit::openapi::Spec;
use serde_json::Value;
use tower::ServiceExt as _;

/// Every operation the issue promises.
const OPERATIONS: [(&str, &str); 18] = [
    ("post", "/v1/notes"),
    ("get", "/v1/notes"),
    ("get", "/v1/notes/{note_id}"),
    ("put", "/v1/notes/{note_id}"),
    ("delete", "/v1/notes/{note_id}"),
    ("get", "/v1/notes/{note_id}/audio"),
    ("get", "/v1/notes/{note_id}/sagas"),
    ("get", "/v1/commands/{command_id}"),
    ("get", "/v1/search"),
    ("get", "/v1/sagas"),
    ("get", "/v1/sagas/{saga_id}"),
    ("post", "/v1/admin/sagas/{saga_id}/retry"),
    ("post", "/v1/admin/projections/{name}/replay"),
    ("get", "/v1/admin/jobs/{job_id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

fn document() -> Value {
    serde_json::to_value(openapi::document()).expect("the document serialises")
}

fn operation<'a>(document: &'a Value, method: &str, path: &str) -> &'a Value {
    let operation = &document["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    operation
}

fn parameter_names(operation: &Value) -> Vec<String> {
    operation["parameters"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|p| {
                    format!(
                        "{}:{}",
                        p["in"].as_str().unwrap_or(""),
                        p["name"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_promised_operation_is_documented_with_its_parameters() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    for (method, path) in OPERATIONS {
        let operation = operation(&document, method, path);
        let parameters = parameter_names(operation);
        assert!(
            parameters.contains(&"header:X-Request-Id".to_owned()),
            "{method} {path}: {parameters:?}"
        );
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(['{', '}']);
            assert!(
                parameters.contains(&format!("path:{name}")),
                "{method} {path} lacks its path parameter {name}: {parameters:?}"
            );
        }
        let commands = path.starts_with("/v1/notes") && method != "get";
        if commands {
            for header in ["Idempotency-Key", "Prefer"] {
                assert!(
                    parameters.contains(&format!("header:{header}")),
                    "{method} {path} lacks {header}: {parameters:?}"
                );
            }
            let responses = &operation["responses"];
            assert!(
                responses["202"]["headers"]["Location"].is_object(),
                "{method} {path}: a 202 carries Location"
            );
        }
        if method == "put" || method == "delete" {
            assert!(
                parameters.contains(&"header:If-Match".to_owned()),
                "{method} {path}"
            );
        }
    }
    let get_note = operation(&document, "get", "/v1/notes/{note_id}");
    assert!(parameter_names(get_note).contains(&"query:min_version".to_owned()));
    assert!(get_note["responses"]["200"]["headers"]["ETag"].is_object());
    for (path, parameters) in [
        ("/v1/notes", ["status", "limit", "cursor"].as_slice()),
        ("/v1/search", ["q", "mode", "limit"].as_slice()),
        ("/v1/sagas", ["state", "stuck", "limit"].as_slice()),
    ] {
        let names = parameter_names(operation(&document, "get", path));
        for parameter in parameters {
            assert!(
                names.contains(&format!("query:{parameter}")),
                "GET {path}: {names:?}"
            );
        }
    }
    for (method, path) in [("post", "/v1/notes"), ("put", "/v1/notes/{note_id}")] {
        let body = &operation(&document, method, path)["requestBody"];
        assert_eq!(
            body["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/NoteInput",
            "{method} {path}"
        );
        assert_eq!(body["required"], true, "{method} {path}");
    }
}

#[test]
fn errors_are_problems_and_the_refusals_carry_their_headers() {
    let document = document();
    let problem = &document["components"]["schemas"]["Problem"];
    let required: Vec<&str> = problem["required"]
        .as_array()
        .expect("required members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for member in ["type", "title", "status", "detail"] {
        assert!(
            required.contains(&member),
            "Problem requires {member}: {required:?}"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["bearerFormat"],
        "JWT"
    );
    for (method, path) in OPERATIONS {
        let operation = operation(&document, method, path);
        let responses = operation["responses"].as_object().expect("responses");
        let public = openapi::PUBLIC_PATHS.contains(&path);
        if public {
            assert_eq!(
                operation["security"],
                serde_json::json!([]),
                "{method} {path}"
            );
        } else {
            assert!(
                responses["401"]["headers"]["WWW-Authenticate"].is_object(),
                "{method} {path}: 401 with WWW-Authenticate"
            );
            assert!(
                responses["429"]["headers"]["Retry-After"].is_object(),
                "{method} {path}: 429 with Retry-After"
            );
        }
        if path.starts_with("/v1/admin/") {
            assert!(responses.contains_key("403"), "{method} {path}: 403");
        }
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
        }
    }
}

/// An API without a token key (every protected route answers 401) whose broker and
/// registry are a closed port.
async fn api() -> Result<(tempfile::TempDir, Router)> {
    let config = ApiConfig {
        readiness_timeout: Duration::from_millis(300),
        ..ApiConfig::default()
    };
    let offline = offline::offline(config, None).await?;
    Ok((offline.dir, router(offline.state)))
}

/// The router's answer to `method uri`, checked against the served document.
async fn call(
    router: &Router,
    spec: &Spec,
    method: &str,
    uri: &str,
) -> Result<(StatusCode, Vec<u8>)> {
    let response = router
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())?,
        )
        .await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes().to_vec();
    spec.assert(method, uri, parts.status.as_u16(), &parts.headers, &body);
    Ok((parts.status, body))
}

#[tokio::test]
async fn the_document_is_served_without_a_token_and_answers_conform_to_it() -> Result<()> {
    let (_dir, router) = api().await?;
    let response = router
        .clone()
        .oneshot(Request::get("/openapi.json").body(Body::empty())?)
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str()?,
        "application/json"
    );
    let served: Value = serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
    assert_eq!(
        served,
        document(),
        "the served document is the generated one"
    );
    let spec = Spec::new(served)?;

    let (status, _) = call(&router, &spec, "GET", "/openapi.json").await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&router, &spec, "GET", "/healthz").await?;
    assert_eq!(status, StatusCode::OK);
    // The broker and registry are down: a documented 503 problem.
    let (status, _) = call(&router, &spec, "GET", "/readyz").await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // This process renders no metrics: a documented 404 problem.
    let (status, _) = call(&router, &spec, "GET", "/metrics").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Protected routes without a token: 401 with WWW-Authenticate, as documented.
    for (method, uri) in [
        ("GET", "/v1/notes"),
        ("POST", "/v1/notes"),
        ("GET", "/v1/notes/00000000-0000-0000-0000-000000000001"),
        ("GET", "/v1/search?q=x"),
        ("POST", "/v1/admin/projections/notes/replay"),
    ] {
        let (status, _) = call(&router, &spec, method, uri).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    Ok(())
}

#[tokio::test]
async fn an_undocumented_route_fails_the_check() -> Result<()> {
    let (_dir, router) = api().await?;
    let spec = Spec::new(document())?;
    let response = router
        .oneshot(Request::get("/v1/nowhere").body(Body::empty())?)
        .await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    let verdict = spec.check(
        "GET",
        "/v1/nowhere",
        parts.status.as_u16(),
        &parts.headers,
        &body,
    );
    assert!(
        verdict
            .as_ref()
            .is_err_and(|why| why.contains("no documented path")),
        "{verdict:?}"
    );
    Ok(())
}
