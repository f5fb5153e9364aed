//! The log layer's errors.

/// What can go wrong talking to the broker or the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// librdkafka reported an error.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A record could not be delivered to the broker.
    #[error("cannot deliver to {topic}: {source}")]
    Delivery {
        /// Destination topic.
        topic: String,
        /// librdkafka's reason.
        source: rdkafka::error::KafkaError,
    },
    /// A topic could not be created.
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's reason.
        reason: String,
    },
    /// Encoding a record with the schema registry failed.
    #[error("cannot encode {full_name} for {topic}: {reason}")]
    Encode {
        /// Destination topic.
        topic: String,
        /// Full Avro name of the record.
        full_name: String,
        /// What the encoder said.
        reason: String,
    },
    /// A record could not be decoded; it is dead-lettered by the consumer loop.
    #[error("cannot decode record at {topic}/{partition}@{offset}: {reason}")]
    Decode {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
        /// Source offset.
        offset: i64,
        /// Why (bad magic byte, unknown schema id, unexpected type, invalid payload).
        reason: String,
    },
    /// A handler hook failed for good.
    #[error("{0}")]
    Handler(String),
    /// The broker did not answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// Result with the log layer's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
