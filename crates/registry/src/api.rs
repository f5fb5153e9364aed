//! The HTTP API: Confluent Schema Registry's REST resources, request and response shapes,
//! media types and error bodies, so that Confluent's clients and `schema_registry_converter`
//! work against it unchanged.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Query, Request, State},
    http::{header, request::Parts, HeaderValue, StatusCode},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{
    auth::{Access, Denied},
    compat::CompatibilityLevel,
    error::{ApiError, Rejection},
    records::AVRO,
    store::{Candidate, StoredSchema, SubjectVersion, VersionSpec},
    Registry,
};

/// The media type of every response, as Confluent's clients expect.
const VND_JSON: &str = "application/vnd.schemaregistry.v1+json";

/// Request media types Confluent's server accepts.
const ACCEPTED_REQUEST_TYPES: [&str; 4] = [
    "application/vnd.schemaregistry.v1+json",
    "application/vnd.schemaregistry+json",
    "application/json",
    "application/octet-stream",
];

/// The routes, with no state left to provide, behind `access`.
pub(crate) fn router(registry: Registry, access: Access) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_by_id))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(raw_schema_by_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_against_subject),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_against_version),
        )
        .fallback(|| async { ApiError::from(Rejection::RouteNotFound) })
        .method_not_allowed_fallback(|| async { ApiError::from(Rejection::MethodNotAllowed) })
        .layer(middleware::from_fn_with_state(Arc::new(access), authorize))
        .with_state(registry)
}

/// Lets a request through if `access` allows it; else 401 (with a basic-auth challenge)
/// or 403, with Confluent's codes (40101, 40301) and error body.
async fn authorize(
    State(access): State<Arc<Access>>,
    request: Request,
    next: middleware::Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match access.authorize(request.method(), request.uri().path(), authorization) {
        Ok(()) => next.run(request).await,
        Err(Denied::Unauthenticated) => {
            let mut response = error_response(
                StatusCode::UNAUTHORIZED,
                40101,
                "Unauthorized: send basic.auth.user.info credentials",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"notesaga-registry\""),
            );
            response
        }
        Err(Denied::Forbidden { needed }) => error_response(
            StatusCode::FORBIDDEN,
            40301,
            &format!("Forbidden: this request needs the {needed} role"),
        ),
    }
}

// ---- responses ---------------------------------------------------------------------------

/// A JSON body with Confluent's media type.
struct Vnd<T>(T);

impl<T: Serialize> IntoResponse for Vnd<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => vnd(StatusCode::OK, body),
            Err(err) => {
                tracing::error!(error = %err, "serialising a response");
                internal_error()
            }
        }
    }
}

/// A body that already is JSON (a schema's own text), with Confluent's media type.
struct RawJson(String);

impl IntoResponse for RawJson {
    fn into_response(self) -> Response {
        vnd(StatusCode::OK, self.0.into_bytes())
    }
}

fn vnd(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(VND_JSON))],
        body,
    )
        .into_response()
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error_code: u32,
    message: &'a str,
}

fn error_response(status: StatusCode, error_code: u32, message: &str) -> Response {
    let body = serde_json::to_vec(&ErrorBody {
        error_code,
        message,
    })
    .unwrap_or_default();
    vnd(status, body)
}

fn internal_error() -> Response {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        50001,
        "Error in the backend data store",
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Rejected(rejection) => error_response(
                StatusCode::from_u16(rejection.status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                rejection.code(),
                &rejection.to_string(),
            ),
            ApiError::Failed(err) => {
                // The cause is for operators; clients get Confluent's generic 50001.
                tracing::error!(error = %err, "request failed");
                internal_error()
            }
        }
    }
}

/// `{"subject","id","version","schema"}` (+ `schemaType`, `references` when set).
fn subject_version_json(found: &SubjectVersion) -> Value {
    let mut body = json!({
        "subject": found.subject,
        "version": found.version,
        "id": found.id,
        "schema": found.schema.text,
    });
    add_type_and_references(&mut body, &found.schema);
    body
}

fn add_type_and_references(body: &mut Value, schema: &StoredSchema) {
    if let Value::Object(map) = body {
        // Confluent leaves the type out for Avro, and some clients assume that.
        if schema.schema_type != AVRO {
            map.insert("schemaType".into(), schema.schema_type.clone().into());
        }
        if !schema.references.is_empty() {
            map.insert("references".into(), schema.references.clone().into());
        }
    }
}

// ---- request extraction ------------------------------------------------------------------

/// Path parameters, with Confluent-style errors instead of axum's plain-text ones.
struct Params<T>(T);

impl<T, S> FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(params)| Params(params))
            .map_err(|rejection| Rejection::MalformedRequest(rejection.body_text()).into())
    }
}

/// The query string's flags (`deleted=true`, `permanent=true`, ...).
struct Flags(HashMap<String, String>);

impl Flags {
    fn get(&self, name: &str) -> bool {
        self.0
            .get(name)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Flags {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(flags)| Flags(flags))
            .map_err(|rejection| Rejection::MalformedRequest(rejection.body_text()).into())
    }
}

/// A JSON request body in one of the media types Confluent accepts (or none given).
struct Body<T>(T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
            let essence = content_type
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim();
            if !ACCEPTED_REQUEST_TYPES
                .iter()
                .any(|accepted| accepted.eq_ignore_ascii_case(essence))
            {
                return Err(Rejection::UnsupportedMediaType.into());
            }
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| Rejection::MalformedRequest(rejection.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|err| match err.classify() {
                serde_json::error::Category::Data => {
                    Rejection::UnprocessableEntity(err.to_string()).into()
                }
                _ => Rejection::MalformedRequest(err.to_string()).into(),
            })
    }
}

/// The body of a registration, lookup or compatibility check.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: Option<String>,
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<Value>>,
}

impl SchemaRequest {
    fn candidate(&self) -> Result<Candidate, Rejection> {
        let text = self
            .schema
            .as_deref()
            .filter(|text| !text.trim().is_empty())
            .ok_or_else(|| Rejection::InvalidSchema("Empty schema".to_owned()))?;
        Candidate::parse(
            self.schema_type.as_deref(),
            text,
            self.references.as_deref().unwrap_or_default(),
        )
    }
}

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: Option<String>,
}

impl ConfigRequest {
    fn level(&self) -> Result<CompatibilityLevel, Rejection> {
        self.compatibility
            .as_deref()
            .and_then(|level| level.parse().ok())
            .ok_or(Rejection::InvalidCompatibilityLevel)
    }
}

/// Schema ids are non-negative integers; anything else names no resource.
fn schema_id(text: &str) -> Result<u32, Rejection> {
    text.parse().map_err(|_| Rejection::RouteNotFound)
}

type ApiResult<T> = Result<T, ApiError>;

// ---- handlers ----------------------------------------------------------------------------

async fn root() -> Vnd<Value> {
    Vnd(json!({}))
}

async fn schema_types() -> Vnd<[&'static str; 1]> {
    Vnd([AVRO])
}

async fn schema_by_id(
    State(registry): State<Registry>,
    Params(id): Params<String>,
) -> ApiResult<Vnd<Value>> {
    let id = schema_id(&id)?;
    let schema = registry.read(|store| store.schema(id))?;
    let mut body = json!({ "schema": schema.text });
    add_type_and_references(&mut body, &schema);
    Ok(Vnd(body))
}

async fn raw_schema_by_id(
    State(registry): State<Registry>,
    Params(id): Params<String>,
) -> ApiResult<RawJson> {
    let id = schema_id(&id)?;
    let schema = registry.read(|store| store.schema(id))?;
    Ok(RawJson(schema.text.clone()))
}

async fn subjects_by_id(
    State(registry): State<Registry>,
    Params(id): Params<String>,
    flags: Flags,
) -> ApiResult<Vnd<Vec<String>>> {
    let id = schema_id(&id)?;
    let mut subjects: Vec<String> = registry
        .read(|store| store.usages(id, flags.get("deleted")))?
        .into_iter()
        .map(|(subject, _)| subject)
        .collect();
    subjects.dedup();
    Ok(Vnd(subjects))
}

async fn versions_by_id(
    State(registry): State<Registry>,
    Params(id): Params<String>,
    flags: Flags,
) -> ApiResult<Vnd<Vec<Value>>> {
    let id = schema_id(&id)?;
    let usages = registry.read(|store| store.usages(id, flags.get("deleted")))?;
    Ok(Vnd(usages
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect()))
}

async fn list_subjects(State(registry): State<Registry>, flags: Flags) -> Vnd<Vec<String>> {
    let prefix = flags.text("subjectPrefix").unwrap_or_default();
    Vnd(registry.read(|store| store.subjects(flags.get("deleted"), prefix)))
}

async fn list_versions(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
    flags: Flags,
) -> ApiResult<Vnd<Vec<u32>>> {
    Ok(Vnd(registry.read(|store| {
        store.versions(&subject, flags.get("deleted"))
    })?))
}

async fn register(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
    Body(request): Body<SchemaRequest>,
) -> ApiResult<Vnd<Value>> {
    let candidate = request.candidate()?;
    let id = registry.register(&subject, &candidate).await?;
    Ok(Vnd(json!({ "id": id })))
}

async fn lookup(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
    flags: Flags,
    Body(request): Body<SchemaRequest>,
) -> ApiResult<Vnd<Value>> {
    let candidate = request.candidate()?;
    let found = registry.read(|store| store.lookup(&subject, &candidate, flags.get("deleted")))?;
    Ok(Vnd(subject_version_json(&found)))
}

async fn delete_subject(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
    flags: Flags,
) -> ApiResult<Vnd<Vec<u32>>> {
    Ok(Vnd(registry
        .delete_subject(&subject, flags.get("permanent"))
        .await?))
}

async fn get_version(
    State(registry): State<Registry>,
    Params((subject, version)): Params<(String, String)>,
    flags: Flags,
) -> ApiResult<Vnd<Value>> {
    let spec = VersionSpec::parse(&version)?;
    let found = registry.read(|store| store.version(&subject, spec, flags.get("deleted")))?;
    Ok(Vnd(subject_version_json(&found)))
}

async fn raw_schema_by_version(
    State(registry): State<Registry>,
    Params((subject, version)): Params<(String, String)>,
    flags: Flags,
) -> ApiResult<RawJson> {
    let spec = VersionSpec::parse(&version)?;
    let found = registry.read(|store| store.version(&subject, spec, flags.get("deleted")))?;
    Ok(RawJson(found.schema.text.clone()))
}

async fn delete_version(
    State(registry): State<Registry>,
    Params((subject, version)): Params<(String, String)>,
    flags: Flags,
) -> ApiResult<Vnd<u32>> {
    let spec = VersionSpec::parse(&version)?;
    Ok(Vnd(registry
        .delete_version(&subject, spec, flags.get("permanent"))
        .await?))
}

/// No schema can reference another here (references are refused), so existing versions
/// answer an empty list; Confluent's clients ask before deleting.
async fn referenced_by(
    State(registry): State<Registry>,
    Params((subject, version)): Params<(String, String)>,
) -> ApiResult<Vnd<Vec<u32>>> {
    let spec = VersionSpec::parse(&version)?;
    registry.read(|store| store.version(&subject, spec, true))?;
    Ok(Vnd(Vec::new()))
}

fn level_json(level: CompatibilityLevel) -> Vnd<Value> {
    Vnd(json!({ "compatibilityLevel": level.as_str() }))
}

async fn get_global_config(State(registry): State<Registry>) -> Vnd<Value> {
    level_json(registry.read(|store| store.global_level()))
}

async fn put_global_config(
    State(registry): State<Registry>,
    Body(request): Body<ConfigRequest>,
) -> ApiResult<Vnd<Value>> {
    let level = request.level()?;
    registry.set_level(None, level).await?;
    Ok(Vnd(json!({ "compatibility": level.as_str() })))
}

async fn delete_global_config(State(registry): State<Registry>) -> ApiResult<Vnd<Value>> {
    Ok(level_json(registry.delete_level(None).await?))
}

async fn get_subject_config(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
    flags: Flags,
) -> ApiResult<Vnd<Value>> {
    let level = registry.read(|store| {
        if flags.get("defaultToGlobal") {
            Ok(store.effective_level(&subject))
        } else {
            store
                .subject_level(&subject)
                .ok_or_else(|| Rejection::SubjectLevelNotConfigured(subject.clone()))
        }
    })?;
    Ok(level_json(level))
}

async fn put_subject_config(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
    Body(request): Body<ConfigRequest>,
) -> ApiResult<Vnd<Value>> {
    let level = request.level()?;
    registry.set_level(Some(&subject), level).await?;
    Ok(Vnd(json!({ "compatibility": level.as_str() })))
}

async fn delete_subject_config(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
) -> ApiResult<Vnd<Value>> {
    Ok(level_json(registry.delete_level(Some(&subject)).await?))
}

fn compatibility_json(messages: Vec<String>, verbose: bool) -> Vnd<Value> {
    let mut body = json!({ "is_compatible": messages.is_empty() });
    if verbose {
        body["messages"] = messages.into();
    }
    Vnd(body)
}

/// Against the versions the subject's level names (a subject with none: compatible), as
/// `schema_registry_converter`'s `is_compatible_schema` asks.
async fn check_against_subject(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
    flags: Flags,
    Body(request): Body<SchemaRequest>,
) -> ApiResult<Vnd<Value>> {
    let candidate = request.candidate()?;
    let messages = registry.read(|store| store.incompatibilities(&subject, &candidate));
    Ok(compatibility_json(messages, flags.get("verbose")))
}

async fn check_against_version(
    State(registry): State<Registry>,
    Params((subject, version)): Params<(String, String)>,
    flags: Flags,
    Body(request): Body<SchemaRequest>,
) -> ApiResult<Vnd<Value>> {
    let spec = VersionSpec::parse(&version)?;
    let candidate = request.candidate()?;
    let messages =
        registry.read(|store| store.incompatibilities_with(&subject, spec, &candidate))?;
    Ok(compatibility_json(messages, flags.get("verbose")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error::Error;

    async fn parts(response: Response) -> (StatusCode, String, Value) {
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes).expect("JSON body");
        (status, content_type, body)
    }

    #[tokio::test]
    async fn failures_are_a_generic_50001() {
        let failure = ApiError::Failed(Error::CatchUpTimeout {
            topic: "_schemas".into(),
            offset: 42,
            waited: Duration::from_secs(30),
        });
        let (status, content_type, body) = parts(failure.into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(content_type, VND_JSON);
        assert_eq!(body["error_code"], json!(50001));
        // Internal details stay in the log.
        assert!(!body.to_string().contains("_schemas"), "{body}");
    }

    #[tokio::test]
    async fn rejections_carry_confluent_codes() {
        let rejection = ApiError::from(Rejection::VersionNotFound("3".into()));
        let (status, content_type, body) = parts(rejection.into_response()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(content_type, VND_JSON);
        assert_eq!(
            body,
            json!({"error_code": 40402, "message": "Version 3 not found."})
        );
    }
}
