//! The crate's failures, and the Confluent-coded refusals the HTTP API answers with.

use std::time::Duration;

use rdkafka::error::KafkaError;

/// What can go wrong running the registry (as opposed to a client's request being refused).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kafka client call failed; `context` says what the registry was doing.
    #[error("{context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: KafkaError,
    },
    /// The schemas topic exists with more than one partition, so it has no total order.
    #[error("topic {topic} has {partitions} partitions; a schemas topic must have exactly 1")]
    TopicPartitions { topic: String, partitions: usize },
    /// The schemas topic did not show up in the broker's metadata after being created.
    #[error("topic {topic} is not in the broker's metadata after {waited:?}")]
    TopicMissing { topic: String, waited: Duration },
    /// The in-memory state did not reach an offset of the topic in time.
    #[error("reading {topic} did not reach offset {offset} within {waited:?}")]
    CatchUpTimeout {
        topic: String,
        offset: i64,
        waited: Duration,
    },
    /// A blocking Kafka call (metadata, watermarks) panicked or was cancelled.
    #[error("a blocking Kafka call did not complete: {0}")]
    Blocking(#[from] tokio::task::JoinError),
    /// Accepting or serving HTTP connections failed.
    #[error("serving the registry's HTTP API failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A request the registry refuses, with Confluent's error code and wording, so clients
/// written against Confluent's registry (which match on the codes) behave the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejection {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    /// `None` when looking a schema up by its text rather than its id.
    #[error("{}", match .0 { Some(id) => format!("Schema {id} not found"), None => "Schema not found".to_owned() })]
    SchemaNotFound(Option<u32>),
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error(
        "Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently"
    )]
    VersionSoftDeleted { subject: String, version: u32 },
    #[error(
        "Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
    )]
    VersionNotSoftDeleted { subject: String, version: u32 },
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectLevelNotConfigured(String),
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
        .messages.join(", ")
    )]
    Incompatible {
        subject: String,
        messages: Vec<String>,
    },
    #[error("{0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between \
         [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error("{}", crate::compat::INVALID_LEVEL_MESSAGE)]
    InvalidCompatibilityLevel,
    #[error("{0}")]
    MalformedRequest(String),
    #[error("{0}")]
    UnprocessableEntity(String),
    #[error("HTTP 415 Unsupported Media Type")]
    UnsupportedMediaType,
    #[error("HTTP 404 Not Found")]
    RouteNotFound,
    #[error("HTTP 405 Method Not Allowed")]
    MethodNotAllowed,
}

impl Rejection {
    /// Confluent's `error_code`; its first three digits are the HTTP status.
    pub(crate) fn code(&self) -> u32 {
        match self {
            Self::SubjectNotFound(_) => 40401,
            Self::VersionNotFound(_) => 40402,
            Self::SchemaNotFound(_) => 40403,
            Self::SubjectSoftDeleted(_) => 40404,
            Self::SubjectNotSoftDeleted(_) => 40405,
            Self::VersionSoftDeleted { .. } => 40406,
            Self::VersionNotSoftDeleted { .. } => 40407,
            Self::SubjectLevelNotConfigured(_) => 40408,
            Self::Incompatible { .. } => 409,
            Self::InvalidSchema(_) => 42201,
            Self::InvalidVersion(_) => 42202,
            Self::InvalidCompatibilityLevel => 42203,
            Self::MalformedRequest(_) => 400,
            Self::UnprocessableEntity(_) => 422,
            Self::UnsupportedMediaType => 415,
            Self::RouteNotFound => 404,
            Self::MethodNotAllowed => 405,
        }
    }

    pub(crate) fn status(&self) -> u16 {
        match self.code() {
            code @ 100..=599 => code as u16,
            code => (code / 100) as u16,
        }
    }
}

/// Why a request did not succeed: refused (4xx) or the registry failed (500).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Failed(#[from] Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_codes() {
        let table = [
            (Rejection::SubjectNotFound("s".into()), 404),
            (Rejection::SubjectLevelNotConfigured("s".into()), 404),
            (
                Rejection::Incompatible {
                    subject: "s".into(),
                    messages: vec![],
                },
                409,
            ),
            (Rejection::InvalidCompatibilityLevel, 422),
            (Rejection::InvalidVersion("0".into()), 422),
            (Rejection::MalformedRequest("x".into()), 400),
            (Rejection::UnsupportedMediaType, 415),
            (Rejection::MethodNotAllowed, 405),
        ];
        for (rejection, status) in table {
            assert_eq!(rejection.status(), status, "{rejection:?}");
        }
    }

    #[test]
    fn messages_match_confluent_wording() {
        assert_eq!(
            Rejection::SubjectNotFound("x".into()).to_string(),
            "Subject 'x' not found."
        );
        let incompatible = Rejection::Incompatible {
            subject: "s".into(),
            messages: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            incompatible.to_string(),
            "Schema being registered is incompatible with an earlier schema for subject \"s\", \
             details: [a, b]"
        );
    }
}
