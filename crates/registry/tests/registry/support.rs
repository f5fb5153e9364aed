//! Starting a broker and a registry on a fresh topic, and calling the router.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use axum::{
    body::Body,
    http::{header, Request},
    Router,
};
use http_body_util::BodyExt as _;
use notesaga_registry::{router, Registry, RegistryConfig};
use notesaga_testkit::{random_name, BrokerProcess};
use serde_json::Value;
use tower::ServiceExt as _;

pub(crate) const VND: &str = "application/vnd.schemaregistry.v1+json";

/// A broker process (started off the async threads, it blocks while waiting for the port).
pub(crate) async fn broker() -> Result<BrokerProcess> {
    tokio::task::spawn_blocking(BrokerProcess::start).await?
}

pub(crate) fn config(broker: &BrokerProcess, topic: &str) -> RegistryConfig {
    RegistryConfig {
        topic: topic.to_owned(),
        ..RegistryConfig::new(broker.addr())
    }
}

/// A broker and a registry on a topic no other test uses.
pub(crate) async fn start() -> Result<(BrokerProcess, Registry, Api)> {
    let broker = broker().await?;
    let registry = Registry::open(config(&broker, &random_name("schemas"))).await?;
    let api = Api::new(registry.clone());
    Ok((broker, registry, api))
}

/// Calls the router without a socket.
#[derive(Clone)]
pub(crate) struct Api {
    router: Router,
}

/// A response: status, and the body parsed as JSON.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

impl Reply {
    /// The Confluent `error_code` of an error body.
    pub(crate) fn code(&self) -> Option<u64> {
        self.body["error_code"].as_u64()
    }
}

impl Api {
    pub(crate) fn new(registry: Registry) -> Self {
        Self {
            router: router(registry),
        }
    }

    /// The API behind basic authentication.
    pub(crate) fn secured(registry: Registry, access: notesaga_registry::Access) -> Self {
        Self {
            router: notesaga_registry::secured_router(registry, access),
        }
    }

    /// Sends a request and checks what every response must have: Confluent's media type
    /// and, for errors, a Confluent error body.
    pub(crate) async fn send(&self, request: Request<Body>) -> Result<Reply> {
        let what = format!("{} {}", request.method(), request.uri());
        let response = self.router.clone().oneshot(request).await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.into_body().collect().await?.to_bytes();
        if content_type != VND {
            bail!("{what}: content type {content_type:?}");
        }
        let body: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{what}: body {:?}", String::from_utf8_lossy(&bytes)))?;
        if status >= 400 {
            let code = body["error_code"].as_u64().unwrap_or_default();
            if !code.to_string().starts_with(&status.to_string()) || !body["message"].is_string() {
                bail!("{what}: {status} with a non-Confluent error body {body}");
            }
        }
        Ok(Reply { status, body })
    }

    pub(crate) async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Result<Reply> {
        let builder = Request::builder().method(method).uri(uri);
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, VND)
                .body(Body::from(body.to_string()))?,
            None => builder.body(Body::empty())?,
        };
        self.send(request).await
    }

    pub(crate) async fn get(&self, uri: &str) -> Result<Reply> {
        self.call("GET", uri, None).await
    }

    pub(crate) async fn post(&self, uri: &str, body: Value) -> Result<Reply> {
        self.call("POST", uri, Some(body)).await
    }

    pub(crate) async fn put(&self, uri: &str, body: Value) -> Result<Reply> {
        self.call("PUT", uri, Some(body)).await
    }

    pub(crate) async fn delete(&self, uri: &str) -> Result<Reply> {
        self.call("DELETE", uri, None).await
    }

    /// Registers `schema` under `subject` and returns its id, failing on anything but 200.
    pub(crate) async fn register(&self, subject: &str, schema: &str) -> Result<u64> {
        let reply = self
            .post(
                &format!("/subjects/{subject}/versions"),
                serde_json::json!({ "schema": schema }),
            )
            .await?;
        match (reply.status, reply.body["id"].as_u64()) {
            (200, Some(id)) => Ok(id),
            _ => bail!("registering under {subject}: {reply:?}"),
        }
    }
}

/// Polls `check` until it holds or `timeout` passes.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A record schema named `name` with the given fields (JSON array text).
pub(crate) fn record(name: &str, fields: &str) -> String {
    format!(r#"{{"type":"record","name":"{name}","namespace":"notesaga.test","fields":{fields}}}"#)
}
