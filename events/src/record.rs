//! The traits that tie a Rust type to its Avro schema and to the topic it travels on.

use std::fmt::Debug;

use apache_avro::types::Value;
use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;

/// Why a value could not be turned into one of the contract's types.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The record's schema names a type that may not appear on this topic.
    #[error("{full_name} is not a record that may appear on {topic_kind}")]
    UnexpectedType {
        /// Full Avro name found.
        full_name: String,
        /// The enum that was asked for.
        topic_kind: &'static str,
    },
    /// The Avro value did not match the Rust type.
    #[error("cannot read {full_name}: {source}")]
    Invalid {
        /// Full Avro name of the record.
        full_name: String,
        /// What apache-avro reported.
        source: apache_avro::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One record type of the contract and its schema.
pub trait Record: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static {
    /// Short name, the value of the `event_type` header (`NoteCreated`).
    const NAME: &'static str;
    /// Avro namespace (`notesaga.notes`).
    const NAMESPACE: &'static str;
    /// The `.avsc` text.
    const SCHEMA: &'static str;

    /// The note the record is about, which is also its key.
    fn note_id(&self) -> Uuid;

    /// Full Avro name (`notesaga.notes.NoteCreated`).
    fn full_name() -> String {
        format!("{}.{}", Self::NAMESPACE, Self::NAME)
    }
}

/// What may appear on one topic: an enum over [`Record`] types. It serializes as the
/// record inside, so the encoder writes exactly that record's schema.
pub trait Message: Serialize + Clone + Debug + Send + Sync + Sized + 'static {
    /// Name of the enum, for errors.
    const KIND: &'static str;

    /// Short type name of the record inside.
    fn event_type(&self) -> &'static str;
    /// Full Avro name of the record inside.
    fn full_name(&self) -> String;
    /// Schema of the record inside.
    fn schema(&self) -> &'static str;
    /// The note the record is about.
    fn note_id(&self) -> Uuid;
    /// Reads a decoded Avro record whose schema has the given full name.
    fn from_avro(full_name: &str, value: &Value) -> Result<Self>;
    /// `(full name, schema)` of every record type the enum can hold.
    fn schemas() -> Vec<(String, &'static str)>;
}

/// Implements [`Record`] for a struct with a `note_id: Uuid` field.
macro_rules! record {
    ($ty:ident, $namespace:literal, $dir:literal) => {
        impl $crate::record::Record for $ty {
            const NAME: &'static str = stringify!($ty);
            const NAMESPACE: &'static str = $namespace;
            const SCHEMA: &'static str =
                include_str!(concat!("../schemas/", $dir, "/", stringify!($ty), ".avsc"));

            fn note_id(&self) -> uuid::Uuid {
                self.note_id
            }
        }
    };
}
pub(crate) use record;

/// Declares the enum of records that may appear on one topic and implements [`Message`].
macro_rules! message {
    ($(#[$meta:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(untagged)]
        #[allow(missing_docs)]
        pub enum $name {
            $($variant($variant)),+
        }

        impl $crate::record::Message for $name {
            const KIND: &'static str = stringify!($name);

            fn event_type(&self) -> &'static str {
                use $crate::record::Record as _;
                match self {
                    $(Self::$variant(_) => $variant::NAME),+
                }
            }

            fn full_name(&self) -> String {
                use $crate::record::Record as _;
                match self {
                    $(Self::$variant(_) => $variant::full_name()),+
                }
            }

            fn schema(&self) -> &'static str {
                use $crate::record::Record as _;
                match self {
                    $(Self::$variant(_) => $variant::SCHEMA),+
                }
            }

            fn note_id(&self) -> uuid::Uuid {
                use $crate::record::Record as _;
                match self {
                    $(Self::$variant(record) => record.note_id()),+
                }
            }

            fn from_avro(
                full_name: &str,
                value: &apache_avro::types::Value,
            ) -> $crate::record::Result<Self> {
                use $crate::record::Record as _;
                $(
                    if full_name == $variant::full_name() {
                        return apache_avro::from_value::<$variant>(value)
                            .map(Self::$variant)
                            .map_err(|source| $crate::record::Error::Invalid {
                                full_name: full_name.to_owned(),
                                source,
                            });
                    }
                )+
                Err($crate::record::Error::UnexpectedType {
                    full_name: full_name.to_owned(),
                    topic_kind: stringify!($name),
                })
            }

            fn schemas() -> Vec<(String, &'static str)> {
                use $crate::record::Record as _;
                vec![$(($variant::full_name(), $variant::SCHEMA)),+]
            }
        }

        $(
            impl From<$variant> for $name {
                fn from(record: $variant) -> Self {
                    Self::$variant(record)
                }
            }
        )+
    };
}
pub(crate) use message;
