//! Everything notesaga does with Kafka, in one place, so the domain crates never touch
//! rdkafka directly.
//!
//! - [`config`]: broker connection settings and the librdkafka settings every client gets.
//! - [`topics`]: creates the flow and DLQ topics at start-up, idempotently.
//! - [`codec`]: Avro in the Confluent wire format through `schema_registry_converter`.
//! - [`envelope`]: the headers every record carries; [`flow`]: the event topics' union.
//! - [`producer`]: the idempotent, `acks=all` [`Publisher`].
//! - [`consumer`]: the consumer loop: decode, handle, store the offset only after the
//!   handler's outcome is durable, dead-letter what cannot be handled.
//! - [`reader`]: reads one partition from the beginning, for state rebuilds.
//! - [`redrive`]: how a group reads the dead letters an operator sends back to it.
//! - [`retry`]: the one [`RetryPolicy`] every retry goes through; [`breaker`]: the
//!   circuit breaker that makes a failing provider fail fast.
//! - [`faults`]: fault points that exist only with the `fault-injection` feature.
//! - [`bench`]: the produce→consume benchmark against plain rdkafka.

pub mod answer;
pub mod bench;
pub mod breaker;
pub mod codec;
pub mod config;
pub mod consumer;
pub mod dlq;
pub mod envelope;
pub mod error;
pub mod faults;
pub mod flow;
pub mod producer;
pub mod provider;
pub mod reader;
pub mod redrive;
pub mod retry;
pub mod telemetry;
pub mod topics;

pub use answer::{answer_all, Answer};
pub use codec::{redact_registry_url, registry_url_with_user_info, AvroCodec, Inbound};
pub use config::KafkaConfig;
pub use consumer::{ConsumerLoop, Handler, HandlerError, Incoming};
pub use envelope::Metadata;
pub use error::{Error, Result};
pub use flow::{FlowEvent, FLOW_EVENT_TOPICS, PROJECTION_TOPICS};
pub use producer::Publisher;
pub use retry::RetryPolicy;
