//! A Confluent-compatible Schema Registry for single-node use and tests: the REST API
//! Confluent's clients and `schema_registry_converter` speak, served with axum, whose
//! only durable state is the compacted `_schemas` topic, in Confluent's record format.
//!
//! [`Registry::open`] creates the topic if needed, replays it into memory and keeps
//! following it, so several instances on one topic converge; every write is appended
//! and acknowledged by the broker before it is applied and answered. [`router`] and
//! [`serve`] expose the API. Inside: `records` is the topic's wire format, `store` the
//! in-memory fold of it with the query and write plans (pure), `compat` the
//! compatibility rules (pure), `topic` the Kafka I/O, `registry` the handle tying them
//! together, `api` the HTTP resources, and `auth` who may call which of them (basic
//! authentication with read, write and admin roles, Confluent's convention).

mod api;
pub mod auth;
mod compat;
mod error;
mod records;
mod registry;
mod store;
mod topic;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::{
    auth::{Access, Role, User},
    error::{Error, Result},
    registry::Registry,
};

/// The topic Confluent's registry uses, and ours by default.
pub const DEFAULT_TOPIC: &str = "_schemas";

/// Where the registry keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Kafka bootstrap servers (`host:port[,host:port]`).
    pub bootstrap_servers: String,
    /// The compacted, single-partition topic holding the schemas; `_schemas` by default.
    pub topic: String,
    /// Extra librdkafka settings for every client (SASL, SSL), applied last.
    pub kafka_options: Vec<(String, String)>,
    /// Replicas of the schemas topic when the registry creates it (1 on a single node).
    pub replication_factor: i32,
    /// Its `min.insync.replicas`; 1 (Kafka's default) is not written.
    pub min_insync_replicas: i32,
}

impl RegistryConfig {
    /// A configuration using the default topic, one replica, no extra settings.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: DEFAULT_TOPIC.to_owned(),
            kafka_options: Vec::new(),
            replication_factor: 1,
            min_insync_replicas: 1,
        }
    }

    /// A client configuration with the bootstrap servers and the extra settings.
    pub(crate) fn client(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in &self.kafka_options {
            config.set(key, value);
        }
        config
    }
}

/// The registry's HTTP API with no authentication, ready to serve or to call with
/// `tower::ServiceExt::oneshot`.
pub fn router(registry: Registry) -> axum::Router {
    api::router(registry, Access::open())
}

/// The registry's HTTP API behind `access` (basic authentication with roles).
pub fn secured_router(registry: Registry, access: Access) -> axum::Router {
    api::router(registry, access)
}

/// Serves the API behind `access` on `listener` until `shutdown` is cancelled, then
/// finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    access: Access,
    shutdown: CancellationToken,
) -> Result<()> {
    axum::serve(listener, secured_router(registry, access))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(Error::Serve)
}
