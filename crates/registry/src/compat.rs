//! Compatibility levels and the rules that decide whether a new schema may follow the
//! versions already registered under a subject. Pure: no state, no I/O.

use std::{error::Error as _, fmt, str::FromStr};

use apache_avro::{
    schema_compatibility::{Compatibility, SchemaCompatibility},
    Schema,
};

/// A subject's (or the registry's) compatibility level, with Confluent's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CompatibilityLevel {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

/// The text Confluent answers for a level it does not know (42203).
pub(crate) const INVALID_LEVEL_MESSAGE: &str = "Invalid compatibility level. Valid values are \
    none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive";

impl CompatibilityLevel {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether the new schema is checked against every live version, not just the latest.
    fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    /// New readers must read data written with the old schema.
    fn backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    /// Old readers must read data written with the new schema.
    fn forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level name that is not one of Confluent's seven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidLevel;

impl FromStr for CompatibilityLevel {
    type Err = InvalidLevel;

    /// Case-insensitive, as Confluent's server upper-cases what clients send.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ALL: [CompatibilityLevel; 7] = [
            CompatibilityLevel::None,
            CompatibilityLevel::Backward,
            CompatibilityLevel::BackwardTransitive,
            CompatibilityLevel::Forward,
            CompatibilityLevel::ForwardTransitive,
            CompatibilityLevel::Full,
            CompatibilityLevel::FullTransitive,
        ];
        ALL.into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or(InvalidLevel)
    }
}

/// A registered version the new schema is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Existing<'a> {
    pub(crate) version: u32,
    /// `None` when the stored schema is not Avro (or cannot be parsed), which no Avro
    /// schema can be compatible with.
    pub(crate) schema: Option<&'a Schema>,
}

/// Checks `new` against `existing` (oldest first) under `level`: only the latest version
/// unless the level is transitive. Returns why it is incompatible; empty means compatible.
pub(crate) fn check(
    level: CompatibilityLevel,
    new: &Schema,
    existing: &[Existing<'_>],
) -> Vec<String> {
    if level == CompatibilityLevel::None {
        return Vec::new();
    }
    let against: &[Existing<'_>] = if level.transitive() {
        existing
    } else {
        existing
            .last()
            .map(std::slice::from_ref)
            .unwrap_or_default()
    };
    let mut messages = Vec::new();
    for old in against.iter().rev() {
        let Some(old_schema) = old.schema else {
            messages.push(format!(
                "version {} is not an Avro schema this registry can read",
                old.version
            ));
            continue;
        };
        if level.backward() {
            if let Err(why) = can_read(old_schema, new) {
                messages.push(format!(
                    "{level}: the new schema cannot read data written with version {}: {why}",
                    old.version
                ));
            }
        }
        if level.forward() {
            if let Err(why) = can_read(new, old_schema) {
                messages.push(format!(
                    "{level}: version {} cannot read data written with the new schema: {why}",
                    old.version
                ));
            }
        }
    }
    messages
}

/// Whether every datum written with `writer` can be read with `reader`.
///
/// apache-avro calls a pair "partially" compatible when only some data resolves (a writer
/// union branch or enum symbol the reader lacks). Confluent's (Java Avro's) checker rejects
/// those, and a consumer failing on some records is the outcome a registry must prevent,
/// so partial counts as incompatible here.
fn can_read(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Ok(()),
        Ok(Compatibility::Partial) => Err(
            "only part of the data resolves (a union branch or enum symbol of the writer \
             is missing in the reader)"
                .to_owned(),
        ),
        Err(err) => {
            // The useful detail of a field mismatch sits in the error's source chain.
            let mut text = err.to_string();
            let mut source = err.source();
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            Err(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"Note","namespace":"notesaga.notes",
        "fields":[{"name":"id","type":"string"}]}"#;
    /// V1 plus a field with a default: readable both ways.
    const V2_WITH_DEFAULT: &str = r#"{"type":"record","name":"Note","namespace":"notesaga.notes",
        "fields":[{"name":"id","type":"string"},{"name":"title","type":"string","default":""}]}"#;
    /// V1 plus a field without a default: old readers cope, new readers cannot read old data.
    const V2_NO_DEFAULT: &str = r#"{"type":"record","name":"Note","namespace":"notesaga.notes",
        "fields":[{"name":"id","type":"string"},{"name":"title","type":"string"}]}"#;
    /// V1 with its only field changed to an incompatible type.
    const V2_TYPE_CHANGE: &str = r#"{"type":"record","name":"Note","namespace":"notesaga.notes",
        "fields":[{"name":"id","type":"int"}]}"#;

    fn parse(text: &str) -> Schema {
        Schema::parse_str(text).expect("test schema parses")
    }

    fn is_compatible(level: CompatibilityLevel, new: &str, existing: &[&str]) -> bool {
        let parsed: Vec<Schema> = existing.iter().map(|s| parse(s)).collect();
        let existing: Vec<Existing<'_>> = parsed
            .iter()
            .zip(1..)
            .map(|(schema, version)| Existing {
                version,
                schema: Some(schema),
            })
            .collect();
        check(level, &parse(new), &existing).is_empty()
    }

    #[test]
    fn levels_against_the_latest_version() {
        use CompatibilityLevel::*;
        // (level, new schema, expected) against [V1]
        let table = [
            (None, V2_TYPE_CHANGE, true),
            (Backward, V2_WITH_DEFAULT, true),
            (Backward, V2_NO_DEFAULT, false),
            (Backward, V2_TYPE_CHANGE, false),
            (Forward, V2_WITH_DEFAULT, true),
            (Forward, V2_NO_DEFAULT, true),
            (Forward, V2_TYPE_CHANGE, false),
            (Full, V2_WITH_DEFAULT, true),
            (Full, V2_NO_DEFAULT, false),
            (Full, V2_TYPE_CHANGE, false),
            (BackwardTransitive, V2_WITH_DEFAULT, true),
            (BackwardTransitive, V2_NO_DEFAULT, false),
            (ForwardTransitive, V2_NO_DEFAULT, true),
            (ForwardTransitive, V2_TYPE_CHANGE, false),
            (FullTransitive, V2_WITH_DEFAULT, true),
            (FullTransitive, V2_TYPE_CHANGE, false),
        ];
        for (level, new, expected) in table {
            assert_eq!(
                is_compatible(level, new, &[V1]),
                expected,
                "{level} with {new}"
            );
        }
    }

    #[test]
    fn forward_transitive_checks_older_readers() {
        use CompatibilityLevel::*;
        let required = r#"{"type":"record","name":"R","fields":[{"name":"x","type":"string"}]}"#;
        let defaulted =
            r#"{"type":"record","name":"R","fields":[{"name":"x","type":"string","default":""}]}"#;
        let empty = r#"{"type":"record","name":"R","fields":[]}"#;
        // Readers of `defaulted` fill in `x`; readers of `required` cannot.
        assert!(is_compatible(Forward, empty, &[required, defaulted]));
        assert!(!is_compatible(
            ForwardTransitive,
            empty,
            &[required, defaulted]
        ));
        assert!(is_compatible(ForwardTransitive, empty, &[defaulted]));
    }

    #[test]
    fn transitive_catches_what_latest_only_misses() {
        use CompatibilityLevel::*;
        let int_v1 = r#"{"type":"record","name":"R","fields":[{"name":"n","type":"int"}]}"#;
        // Dropping `n` from the latest and re-adding it as a string is fine against v2 alone.
        let without = r#"{"type":"record","name":"R","fields":[]}"#;
        let string_v3 =
            r#"{"type":"record","name":"R","fields":[{"name":"n","type":"string","default":""}]}"#;
        assert!(is_compatible(Backward, string_v3, &[int_v1, without]));
        assert!(!is_compatible(
            BackwardTransitive,
            string_v3,
            &[int_v1, without]
        ));
        assert!(is_compatible(Full, string_v3, &[int_v1, without]));
        assert!(!is_compatible(
            FullTransitive,
            string_v3,
            &[int_v1, without]
        ));
    }

    #[test]
    fn partial_union_and_enum_matches_are_incompatible() {
        use CompatibilityLevel::*;
        let union =
            r#"{"type":"record","name":"R","fields":[{"name":"v","type":["int","string"]}]}"#;
        let int_only = r#"{"type":"record","name":"R","fields":[{"name":"v","type":"int"}]}"#;
        // New reader of `int` cannot read old `string` branch data.
        assert!(!is_compatible(Backward, int_only, &[union]));
        // Old union reader reads every int.
        assert!(is_compatible(Forward, int_only, &[union]));

        let abc = r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#;
        let ab = r#"{"type":"enum","name":"E","symbols":["A","B"]}"#;
        let ab_default = r#"{"type":"enum","name":"E","symbols":["A","B"],"default":"A"}"#;
        assert!(!is_compatible(Backward, ab, &[abc]));
        assert!(is_compatible(Backward, ab_default, &[abc]));
        assert!(is_compatible(Backward, abc, &[ab]));
    }

    #[test]
    fn non_avro_versions_are_never_compatible() {
        let new = parse(V1);
        let existing = [Existing {
            version: 1,
            schema: None,
        }];
        assert_eq!(
            check(CompatibilityLevel::Backward, &new, &existing).len(),
            1
        );
        assert!(check(CompatibilityLevel::None, &new, &existing).is_empty());
    }

    #[test]
    fn no_versions_is_compatible() {
        for level in [
            CompatibilityLevel::Backward,
            CompatibilityLevel::FullTransitive,
        ] {
            assert!(check(level, &parse(V1), &[]).is_empty());
        }
    }

    #[test]
    fn messages_name_the_version_and_field() {
        let old = parse(V1);
        let messages = check(
            CompatibilityLevel::Backward,
            &parse(V2_TYPE_CHANGE),
            &[Existing {
                version: 7,
                schema: Some(&old),
            }],
        );
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].contains("version 7"), "{messages:?}");
        assert!(messages[0].contains("'id'"), "{messages:?}");
    }

    #[test]
    fn level_names_parse_case_insensitively_and_round_trip() {
        for name in [
            "NONE",
            "BACKWARD",
            "BACKWARD_TRANSITIVE",
            "FORWARD",
            "FORWARD_TRANSITIVE",
            "FULL",
            "FULL_TRANSITIVE",
        ] {
            let level: CompatibilityLevel = name.parse().expect("valid level");
            assert_eq!(level.as_str(), name);
            let lower: CompatibilityLevel = name.to_lowercase().parse().expect("lower case");
            assert_eq!(lower, level);
        }
        assert_eq!("SIDEWAYS".parse::<CompatibilityLevel>(), Err(InvalidLevel));
        assert_eq!("".parse::<CompatibilityLevel>(), Err(InvalidLevel));
    }
}
