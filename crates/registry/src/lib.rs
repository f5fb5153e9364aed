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
//! together, and `api` the HTTP resources.

mod api;
mod compat;
mod error;
mod records;
mod registry;
mod store;
mod topic;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::{
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
}

impl RegistryConfig {
    /// A configuration using the default topic.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: DEFAULT_TOPIC.to_owned(),
        }
    }
}

/// The registry's HTTP API, ready to serve or to call with `tower::ServiceExt::oneshot`.
pub fn router(registry: Registry) -> axum::Router {
    api::router(registry)
}

/// Serves the API on `listener` until `shutdown` is cancelled, then finishes the requests
/// in flight.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<()> {
    axum::serve(listener, router(registry))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(Error::Serve)
}
