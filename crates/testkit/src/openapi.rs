//! Checks HTTP responses against the API's OpenAPI document (`/openapi.json`).
//!
//! The issue promises that every response in the test suite validates against the
//! document, so the client helpers of this crate and the oneshot helpers of the API's
//! own tests hand every response they get to [`Spec::assert`] (or [`check_live`]), which
//! panics with what is wrong. A response passes when:
//!
//! - its path (query aside) matches a documented path template and its method is
//!   documented there — an undocumented route fails;
//! - its status is documented for that operation (exactly, as `4XX`, or as `default`);
//! - the headers the API promises whenever it documents them ([`PROMISED_HEADERS`]:
//!   `Location` on a 202, `ETag` on a note, `WWW-Authenticate` on a 401, …) are
//!   present when the response documents them (OpenAPI has no `required` on response
//!   headers that utoipa writes, so the promise is kept here);
//! - its `Content-Type` is one the response documents (an undocumented body fails), and
//!   a JSON body validates against that media type's schema (JSON Schema 2020-12, as
//!   OpenAPI 3.1 defines it, with `$ref`s into the document's `components`, formats
//!   such as `uuid` and `date-time` checked).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use anyhow::{Context as _, Result};
use axum::http::{header, HeaderMap};
use serde_json::{json, Value};

/// Response headers that are sent whenever a response documents them; the others
/// (`Preference-Applied`, `Idempotent-Replayed`) are sent only in some cases.
pub const PROMISED_HEADERS: [&str; 6] = [
    "location",
    "etag",
    "www-authenticate",
    "retry-after",
    "x-request-id",
    "content-range",
];

/// A parsed OpenAPI document that checks responses.
#[derive(Debug)]
pub struct Spec {
    document: Value,
    /// Compiled body schemas by `(path template, method, status key, media type)`.
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Spec {
    /// A checker for `document` (an OpenAPI 3.1 document as JSON).
    pub fn new(document: Value) -> Result<Self> {
        document
            .get("paths")
            .and_then(Value::as_object)
            .context("the document has no paths")?;
        Ok(Self {
            document,
            validators: Mutex::new(HashMap::new()),
        })
    }

    /// Panics, saying what is wrong, unless the response conforms (see the module docs).
    /// `path` may carry a query string.
    pub fn assert(&self, method: &str, path: &str, status: u16, headers: &HeaderMap, body: &[u8]) {
        if let Err(problem) = self.check(method, path, status, headers, body) {
            let shown = String::from_utf8_lossy(&body[..body.len().min(2000)]);
            panic!(
                "the response to {method} {path} ({status}) does not conform to /openapi.json: \
                 {problem}\nbody: {shown}"
            );
        }
    }

    /// Whether `method path` (query aside) is a documented operation.
    pub fn documents(&self, method: &str, path: &str) -> bool {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        self.template(path).is_some_and(|template| {
            self.document["paths"][template]
                .get(method.to_ascii_lowercase())
                .is_some()
        })
    }

    /// Panics unless the response to an undocumented route is a refusal: 401, 403, 404
    /// or 405 as a `Problem` (`application/problem+json`). For tests that probe unknown
    /// routes on purpose (authentication is in front of every route, known or not); any
    /// other response of an undocumented route fails.
    pub fn assert_refusal(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) {
        let verdict = if ![401, 403, 404, 405].contains(&status) {
            Err(format!("an undocumented route answered {status}"))
        } else {
            self.check_problem(headers, body)
        };
        if let Err(problem) = verdict {
            let shown = String::from_utf8_lossy(&body[..body.len().min(2000)]);
            panic!(
                "the response to the undocumented {method} {path} ({status}) is not a refusal: \
                 {problem}\nbody: {shown}"
            );
        }
    }

    fn check_problem(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if content_type != "application/problem+json" {
            return Err(format!("Content-Type {content_type:?}, not a problem"));
        }
        let instance: Value = serde_json::from_slice(body)
            .map_err(|err| format!("the problem is not JSON: {err}"))?;
        let schema = json!({"$ref": "#/components/schemas/Problem"});
        let validator = self.validator("refusal", &schema)?;
        let first = validator
            .iter_errors(&instance)
            .next()
            .map(|e| e.to_string());
        match first {
            None => Ok(()),
            Some(error) => Err(format!("the body is not a Problem: {error}")),
        }
    }

    /// Why the response does not conform, if it does not.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), String> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let template = self
            .template(path)
            .ok_or_else(|| format!("no documented path matches {path}"))?;
        let method_key = method.to_ascii_lowercase();
        let operation = self.document["paths"][template]
            .get(&method_key)
            .ok_or_else(|| format!("{method} is not documented on {template}"))?;
        let responses = &operation["responses"];
        let class = format!("{}XX", status / 100);
        let (status_key, response) = [status.to_string(), class, "default".to_owned()]
            .into_iter()
            .find_map(|key| responses.get(&key).map(|r| (key, r)))
            .ok_or_else(|| format!("status {status} is not documented for {method} {template}"))?;
        let response = self.resolve(response)?;

        if let Some(documented) = response.get("headers").and_then(Value::as_object) {
            for name in documented.keys() {
                let promised = PROMISED_HEADERS.contains(&name.to_ascii_lowercase().as_str());
                if promised && !headers.contains_key(name.as_str()) {
                    return Err(format!(
                        "header {name} is documented for {status_key} but missing"
                    ));
                }
            }
        }

        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let content = response.get("content").and_then(Value::as_object);
        let Some(content) = content.filter(|c| !c.is_empty()) else {
            if body.is_empty() {
                return Ok(());
            }
            return Err(format!(
                "{status_key} documents no body, but one of {} bytes ({content_type}) came",
                body.len()
            ));
        };
        let (media, media_object) = content
            .iter()
            .find(|(media, _)| media_matches(media, &essence))
            .ok_or_else(|| {
                format!(
                    "Content-Type {content_type:?} is not among the documented {:?}",
                    content.keys().collect::<Vec<_>>()
                )
            })?;
        let is_json = essence == "application/json" || essence.ends_with("+json");
        let Some(schema) = media_object.get("schema").filter(|_| is_json) else {
            return Ok(());
        };
        let instance: Value = serde_json::from_slice(body)
            .map_err(|err| format!("the body is not the JSON its {essence} promises: {err}"))?;
        let key = format!("{template} {method_key} {status_key} {media}");
        let validator = self.validator(&key, schema)?;
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .take(5)
            .map(|error| format!("at {:?}: {error}", error.instance_path().as_str()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the body violates the {status_key} schema: {}",
                errors.join("; ")
            ))
        }
    }

    /// The documented template `path` matches; literal segments beat parameters
    /// (`/v1/notes/{id}/sagas` is not `/v1/sagas/{id}`-like guesswork).
    fn template(&self, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.split('/').collect();
        self.document["paths"]
            .as_object()?
            .keys()
            .filter_map(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut literals = 0;
                for (part, segment) in parts.iter().zip(&segments) {
                    if part.starts_with('{') && part.ends_with('}') {
                        if segment.is_empty() {
                            return None;
                        }
                    } else if part == segment {
                        literals += 1;
                    } else {
                        return None;
                    }
                }
                Some((literals, template.as_str()))
            })
            .max_by_key(|(literals, _)| *literals)
            .map(|(_, template)| template)
    }

    /// A response object, following a `$ref` into `components/responses`.
    fn resolve<'a>(&'a self, response: &'a Value) -> Result<&'a Value, String> {
        match response.get("$ref").and_then(Value::as_str) {
            None => Ok(response),
            Some(reference) => {
                let pointer = reference
                    .strip_prefix('#')
                    .ok_or_else(|| format!("only local $refs are supported, not {reference}"))?;
                self.document
                    .pointer(pointer)
                    .ok_or_else(|| format!("dangling $ref {reference}"))
            }
        }
    }

    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let mut validators = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(validator) = validators.get(key) {
            return Ok(validator.clone());
        }
        // The schema with the document's components beside it, so that its
        // `#/components/schemas/…` references resolve within one resource.
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
            "components": self.document.get("components").cloned().unwrap_or(json!({})),
        });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|err| format!("the schema for {key} does not compile: {err}"))?;
        let validator = Arc::new(validator);
        validators.insert(key.to_owned(), validator.clone());
        Ok(validator)
    }
}

/// Whether a documented media type (maybe `audio/*` or `*/*`) covers `essence`.
fn media_matches(documented: &str, essence: &str) -> bool {
    let documented = documented.to_ascii_lowercase();
    if documented == essence || documented == "*/*" {
        return true;
    }
    match documented.strip_suffix("/*") {
        Some(kind) => essence.split('/').next() == Some(kind),
        None => false,
    }
}

/// The document a running API at `base` serves, fetched once per `base` and kept.
pub async fn live_spec(base: &str) -> Result<Arc<Spec>> {
    static SPECS: OnceLock<Mutex<HashMap<String, Arc<Spec>>>> = OnceLock::new();
    let specs = SPECS.get_or_init(Default::default);
    if let Some(spec) = specs.lock().unwrap_or_else(|e| e.into_inner()).get(base) {
        return Ok(spec.clone());
    }
    let url = format!("{base}/openapi.json");
    let response = reqwest::get(&url)
        .await
        .with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    let spec = Arc::new(Spec::new(response.json().await.context("the document")?)?);
    specs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(base.to_owned(), spec.clone());
    Ok(spec)
}

/// Panics unless a response of the API at `base` conforms to the `/openapi.json` it
/// serves. `path` is the request's path (and query).
pub async fn check_live(
    base: &str,
    method: &str,
    path: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<()> {
    live_spec(base)
        .await?
        .assert(method, path, status, headers, body);
    Ok(())
}

/// Reads a `reqwest` response whole, checks it against the document of the API at
/// `base` (panicking if it does not conform), and returns its status, headers and body.
pub async fn checked(
    base: &str,
    method: &str,
    response: reqwest::Response,
) -> Result<(u16, HeaderMap, Vec<u8>)> {
    let status = response.status().as_u16();
    let path = match response.url().query() {
        Some(query) => format!("{}?{query}", response.url().path()),
        None => response.url().path().to_owned(),
    };
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .context("the response body")?
        .to_vec();
    check_live(base, method, &path, status, &headers, &body).await?;
    Ok((status, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec::new(json!({
            "openapi": "3.1.0",
            "paths": {
                "/v1/notes/{note_id}": {"get": {"responses": {
                    "200": {"description": "a note",
                            "headers": {"ETag": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Note"}}}},
                    "4XX": {"description": "a problem",
                            "content": {"application/problem+json": {"schema": {"type": "object", "required": ["status"]}}}}
                }}},
                "/v1/notes/{note_id}/audio": {"get": {"responses": {
                    "200": {"description": "audio", "content": {"audio/*": {}}}
                }}},
                "/v1/notes/count": {"get": {"responses": {"204": {"description": "nothing"}}}}
            },
            "components": {"schemas": {"Note": {
                "type": "object", "required": ["note_id"],
                "properties": {"note_id": {"type": "string", "format": "uuid"}}
            }}}
        }))
        .expect("a document")
    }

    /// An undocumented route may answer a refusal problem, and nothing else.
    #[test]
    fn undocumented_routes_may_only_refuse() {
        let mut document = serde_json::to_value(spec().document).expect("a document");
        document["components"]["schemas"]["Problem"] = json!({
            "type": "object", "required": ["type", "status"]
        });
        let spec = Spec::new(document).expect("a document");
        assert!(spec.documents("GET", "/v1/notes/1?x=1"));
        assert!(!spec.documents("POST", "/v1/notes/1"));
        assert!(!spec.documents("GET", "/v1/elsewhere"));
        let problem = headers(&[("content-type", "application/problem+json")]);
        let body = br#"{"type": "https://notesaga.dev/problems/unauthorized", "status": 401}"#;
        spec.assert_refusal("GET", "/v1/elsewhere", 401, &problem, body);
        for (status, headers, body) in [
            (200, &problem, &body[..]),
            (
                401,
                &headers(&[("content-type", "application/json")]),
                &body[..],
            ),
            (404, &problem, &br#"{"status": 404}"#[..]),
        ] {
            let refused = std::panic::catch_unwind(|| {
                spec.assert_refusal("GET", "/v1/elsewhere", status, headers, body)
            });
            assert!(refused.is_err(), "{status} {body:?} passed as a refusal");
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    header::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn conforming_and_not() {
        let spec = spec();
        let json = headers(&[("content-type", "application/json"), ("etag", "\"1\"")]);
        let note = br#"{"note_id": "2b0c3e3c-1a7e-4c1a-9c55-3f1f3e0c9a10"}"#;
        let check = |method, path, status, headers: &HeaderMap, body: &[u8]| {
            spec.check(method, path, status, headers, body)
        };
        let cases: Vec<(Result<(), String>, Option<&str>)> = vec![
            (check("GET", "/v1/notes/1?x=y", 200, &json, note), None),
            (
                check("GET", "/v1/notes/1", 200, &json, br#"{"note_id": "nope"}"#),
                Some("violates"),
            ),
            (
                check(
                    "GET",
                    "/v1/notes/1",
                    200,
                    &headers(&[("content-type", "application/json")]),
                    note,
                ),
                Some("ETag"),
            ),
            (
                check("PUT", "/v1/notes/1", 200, &json, note),
                Some("not documented"),
            ),
            (
                check("GET", "/v1/elsewhere", 200, &json, note),
                Some("no documented path"),
            ),
            (
                check("GET", "/v1/notes/1", 500, &json, note),
                Some("status 500"),
            ),
            (
                check(
                    "GET",
                    "/v1/notes/1",
                    404,
                    &headers(&[("content-type", "application/problem+json")]),
                    br#"{"status": 404}"#,
                ),
                None,
            ),
            (
                check("GET", "/v1/notes/1", 404, &json, br#"{"status": 404}"#),
                Some("Content-Type"),
            ),
            (
                check(
                    "GET",
                    "/v1/notes/1/audio",
                    200,
                    &headers(&[("content-type", "audio/wav")]),
                    b"RIFF",
                ),
                None,
            ),
            // The literal segment wins over the parameter.
            (
                check("GET", "/v1/notes/count", 204, &HeaderMap::new(), b""),
                None,
            ),
            (
                check("GET", "/v1/notes/count", 204, &json, b"{}"),
                Some("no body"),
            ),
        ];
        for (i, (result, expected)) in cases.into_iter().enumerate() {
            match (result, expected) {
                (Ok(()), None) => {}
                (Err(problem), Some(needle)) => {
                    assert!(problem.contains(needle), "case {i}: {problem}")
                }
                (result, expected) => panic!("case {i}: {result:?}, expected {expected:?}"),
            }
        }
    }
}
