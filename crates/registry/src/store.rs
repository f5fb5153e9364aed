//! The registry's in-memory state: a fold of the `_schemas` topic's records, the queries
//! the API answers from it, and the plans (records to append) for every write. Pure: the
//! topic I/O lives in `topic.rs`, so everything here is tested as tables of records.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use apache_avro::Schema;

use crate::{
    compat::{self, CompatibilityLevel, Existing},
    error::Rejection,
    records::{Record, SchemaValue, AVRO},
};

/// A schema as stored under an id.
#[derive(Debug)]
pub(crate) struct StoredSchema {
    /// The text as first registered; clients get it back byte for byte.
    pub(crate) text: String,
    pub(crate) schema_type: String,
    pub(crate) references: Vec<serde_json::Value>,
    /// `None` when it is not Avro or cannot be parsed on its own (it has references).
    pub(crate) parsed: Option<Schema>,
    /// What makes two registrations "the same schema"; see [`identity`].
    identity: String,
}

impl StoredSchema {
    fn from_value(value: &SchemaValue) -> Self {
        let parsed = (value.schema_type() == AVRO && value.references.is_empty())
            .then(|| Schema::parse_str(&value.schema).ok())
            .flatten();
        let identity = identity(
            value.schema_type(),
            parsed.as_ref(),
            &value.schema,
            &value.references,
        );
        Self {
            text: value.schema.clone(),
            schema_type: value.schema_type().to_owned(),
            references: value.references.clone(),
            parsed,
            identity,
        }
    }
}

/// The key under which a schema is "already registered".
///
/// Avro schemas compare by their parsed form serialised back to JSON, which is what
/// Confluent compares (Java Avro's `Schema.toString()`): whitespace, key order and
/// string-vs-object spellings of primitives do not matter, but `default`, `logicalType`
/// and `doc` do. Avro's Parsing Canonical Form would be too coarse: it strips
/// `logicalType` and `default`, so a schema that only adds a logical type would get the
/// old id, and readers resolving that id would decode with the wrong types.
fn identity(
    schema_type: &str,
    parsed: Option<&Schema>,
    text: &str,
    references: &[serde_json::Value],
) -> String {
    let form = parsed
        .and_then(|schema| serde_json::to_string(schema).ok())
        .unwrap_or_else(|| text.to_owned());
    let references = serde_json::Value::Array(references.to_vec());
    format!("{schema_type}\n{references}\n{form}")
}

/// A schema submitted by a client, validated and parsed.
#[derive(Debug)]
pub(crate) struct Candidate {
    text: String,
    parsed: Schema,
    identity: String,
}

impl Candidate {
    /// Validates a submitted schema: Avro only, no references (they are not resolved
    /// here), and it must parse.
    pub(crate) fn parse(
        schema_type: Option<&str>,
        text: &str,
        references: &[serde_json::Value],
    ) -> Result<Self, Rejection> {
        if let Some(other) = schema_type.filter(|t| !t.eq_ignore_ascii_case(AVRO)) {
            return Err(Rejection::InvalidSchema(format!(
                "Schema type '{other}' is not supported: this registry stores AVRO schemas only"
            )));
        }
        if !references.is_empty() {
            return Err(Rejection::InvalidSchema(
                "Schema references are not supported by this registry".to_owned(),
            ));
        }
        let parsed = Schema::parse_str(text).map_err(|err| {
            Rejection::InvalidSchema(format!("Invalid schema {text} with error {err}"))
        })?;
        let identity = identity(AVRO, Some(&parsed), text, &[]);
        Ok(Self {
            text: text.to_owned(),
            parsed,
            identity,
        })
    }
}

/// Which version a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VersionSpec {
    Latest,
    Number(u32),
}

impl VersionSpec {
    /// Confluent accepts `latest`, `-1` (also latest) and 1..=2^31-1.
    pub(crate) fn parse(text: &str) -> Result<Self, Rejection> {
        if text.eq_ignore_ascii_case("latest") || text == "-1" {
            return Ok(Self::Latest);
        }
        match text.parse::<u32>() {
            Ok(n) if n >= 1 && n <= i32::MAX as u32 => Ok(Self::Number(n)),
            _ => Err(Rejection::InvalidVersion(text.to_owned())),
        }
    }
}

/// One version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VersionEntry {
    id: u32,
    deleted: bool,
}

/// A resolved (subject, version) with its schema.
#[derive(Debug, Clone)]
pub(crate) struct SubjectVersion {
    pub(crate) subject: String,
    pub(crate) version: u32,
    pub(crate) id: u32,
    pub(crate) schema: Arc<StoredSchema>,
}

/// What registering a schema under a subject comes to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RegisterPlan {
    /// It is already a live version of the subject: answer this id, write nothing.
    Existing(u32),
    /// Append this record; its `id` is the answer.
    New(SchemaValue),
}

/// The fold of the topic.
#[derive(Debug, Default)]
pub(crate) struct Store {
    subjects: BTreeMap<String, BTreeMap<u32, VersionEntry>>,
    schemas: BTreeMap<u32, Arc<StoredSchema>>,
    by_identity: HashMap<String, u32>,
    global_level: Option<CompatibilityLevel>,
    subject_levels: BTreeMap<String, CompatibilityLevel>,
    /// The largest id ever seen, including ids whose versions were deleted since, so that a
    /// running registry never hands out an id a consumer may still have cached.
    max_id: u32,
    /// The offset of the next record to apply: everything before it is folded in.
    next_offset: i64,
}

impl Store {
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Folds in the record at `offset` unless it was already applied. Records arrive in
    /// offset order but with gaps (compaction), so any offset at or past the next one is
    /// taken.
    pub(crate) fn apply_at(&mut self, offset: i64, record: &Record) -> bool {
        if offset < self.next_offset {
            return false;
        }
        self.apply(record);
        self.next_offset = offset + 1;
        true
    }

    pub(crate) fn apply(&mut self, record: &Record) {
        match record {
            Record::Schema(value) => self.apply_schema(value),
            Record::SchemaTombstone { subject, version } => {
                if let Some(versions) = self.subjects.get_mut(subject) {
                    let removed = versions.remove(version);
                    if versions.is_empty() {
                        self.subjects.remove(subject);
                    }
                    if let Some(entry) = removed {
                        self.forget_if_unused(entry.id);
                    }
                }
            }
            Record::Config {
                subject: None,
                level,
            } => self.global_level = Some(*level),
            Record::Config {
                subject: Some(subject),
                level,
            } => {
                self.subject_levels.insert(subject.clone(), *level);
            }
            Record::ConfigTombstone { subject: None } => self.global_level = None,
            Record::ConfigTombstone {
                subject: Some(subject),
            } => {
                self.subject_levels.remove(subject);
            }
            Record::Noop => {}
        }
    }

    fn apply_schema(&mut self, value: &SchemaValue) {
        self.max_id = self.max_id.max(value.id);
        let stored = StoredSchema::from_value(value);
        match self.schemas.get(&value.id) {
            Some(existing) if existing.identity != stored.identity => {
                // Two registry instances raced for the same id. Every instance folds the
                // same log in the same order, so keeping the first keeps them in agreement.
                tracing::warn!(
                    id = value.id,
                    subject = %value.subject,
                    version = value.version,
                    "schema id reused for a different schema; keeping the first"
                );
            }
            Some(_) => {}
            None => {
                self.by_identity
                    .entry(stored.identity.clone())
                    .or_insert(value.id);
                self.schemas.insert(value.id, Arc::new(stored));
            }
        }
        let entry = VersionEntry {
            id: value.id,
            deleted: value.deleted,
        };
        let previous = self
            .subjects
            .entry(value.subject.clone())
            .or_default()
            .insert(value.version, entry);
        if let Some(previous) = previous.filter(|p| p.id != value.id) {
            self.forget_if_unused(previous.id);
        }
    }

    /// Drops a schema no version refers to any more (after permanent deletes), as a
    /// registry rebuilt from the compacted topic would not know it either.
    fn forget_if_unused(&mut self, id: u32) {
        let used = self
            .subjects
            .values()
            .any(|versions| versions.values().any(|entry| entry.id == id));
        if used {
            return;
        }
        if let Some(schema) = self.schemas.remove(&id) {
            if self.by_identity.get(&schema.identity) == Some(&id) {
                self.by_identity.remove(&schema.identity);
            }
        }
    }

    // ---- queries ------------------------------------------------------------------------

    /// Subjects with a live version (or any version, with `deleted`), sorted.
    pub(crate) fn subjects(&self, deleted: bool, prefix: &str) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(name, versions)| {
                name.starts_with(prefix) && versions.values().any(|v| deleted || !v.deleted)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The visible versions of a subject, ascending; a subject without any is not found.
    pub(crate) fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>, Rejection> {
        let versions: Vec<u32> = self
            .subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|(_, entry)| deleted || !entry.deleted)
            .map(|(version, _)| *version)
            .collect();
        if versions.is_empty() {
            return Err(Rejection::SubjectNotFound(subject.to_owned()));
        }
        Ok(versions)
    }

    pub(crate) fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<SubjectVersion, Rejection> {
        let visible = self.versions(subject, deleted)?;
        let version = match spec {
            VersionSpec::Latest => visible.last().copied(),
            VersionSpec::Number(n) => visible.contains(&n).then_some(n),
        }
        .ok_or_else(|| Rejection::VersionNotFound(spec_text(spec)))?;
        self.resolve(subject, version)
    }

    fn resolve(&self, subject: &str, version: u32) -> Result<SubjectVersion, Rejection> {
        let entry = self
            .subjects
            .get(subject)
            .and_then(|versions| versions.get(&version))
            .ok_or_else(|| Rejection::VersionNotFound(version.to_string()))?;
        let schema = self
            .schemas
            .get(&entry.id)
            .cloned()
            .ok_or(Rejection::SchemaNotFound(Some(entry.id)))?;
        Ok(SubjectVersion {
            subject: subject.to_owned(),
            version,
            id: entry.id,
            schema,
        })
    }

    /// The schema under an id, whether or not its versions were soft-deleted (consumers
    /// must still decode old records).
    pub(crate) fn schema(&self, id: u32) -> Result<Arc<StoredSchema>, Rejection> {
        self.schemas
            .get(&id)
            .cloned()
            .ok_or(Rejection::SchemaNotFound(Some(id)))
    }

    /// The (subject, version) pairs registered with an id.
    pub(crate) fn usages(&self, id: u32, deleted: bool) -> Result<Vec<(String, u32)>, Rejection> {
        self.schema(id)?;
        Ok(self
            .subjects
            .iter()
            .flat_map(|(subject, versions)| {
                versions
                    .iter()
                    .filter(move |(_, entry)| entry.id == id && (deleted || !entry.deleted))
                    .map(move |(version, _)| (subject.clone(), *version))
            })
            .collect())
    }

    /// The version of `subject` holding the candidate's schema (the newest, if several).
    pub(crate) fn lookup(
        &self,
        subject: &str,
        candidate: &Candidate,
        deleted: bool,
    ) -> Result<SubjectVersion, Rejection> {
        let visible = self.versions(subject, deleted)?;
        let found = visible.iter().rev().find_map(|version| {
            let found = self.resolve(subject, *version).ok()?;
            (found.schema.identity == candidate.identity).then_some(found)
        });
        found.ok_or(Rejection::SchemaNotFound(None))
    }

    /// The subject's own level, if it has one.
    pub(crate) fn subject_level(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.subject_levels.get(subject).copied()
    }

    /// The global level (Confluent's default, BACKWARD, until one is set).
    pub(crate) fn global_level(&self) -> CompatibilityLevel {
        self.global_level.unwrap_or_default()
    }

    /// The level a subject's new versions are checked with.
    pub(crate) fn effective_level(&self, subject: &str) -> CompatibilityLevel {
        self.subject_level(subject)
            .unwrap_or_else(|| self.global_level())
    }

    fn live(&self, subject: &str) -> Vec<(u32, Arc<StoredSchema>)> {
        self.subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|(_, entry)| !entry.deleted)
            .filter_map(|(version, entry)| Some((*version, self.schemas.get(&entry.id)?.clone())))
            .collect()
    }

    /// Why `candidate` may not follow the live versions of `subject` (empty: it may).
    pub(crate) fn incompatibilities(&self, subject: &str, candidate: &Candidate) -> Vec<String> {
        let live = self.live(subject);
        let existing: Vec<Existing<'_>> = live
            .iter()
            .map(|(version, schema)| Existing {
                version: *version,
                schema: schema.parsed.as_ref(),
            })
            .collect();
        compat::check(self.effective_level(subject), &candidate.parsed, &existing)
    }

    /// Why `candidate` is incompatible with one version of `subject` under the subject's
    /// level (Confluent checks only that version, transitive or not).
    pub(crate) fn incompatibilities_with(
        &self,
        subject: &str,
        spec: VersionSpec,
        candidate: &Candidate,
    ) -> Result<Vec<String>, Rejection> {
        let target = self.version(subject, spec, false)?;
        let existing = [Existing {
            version: target.version,
            schema: target.schema.parsed.as_ref(),
        }];
        Ok(compat::check(
            self.effective_level(subject),
            &candidate.parsed,
            &existing,
        ))
    }

    // ---- plans for writes ---------------------------------------------------------------

    /// Registering `candidate` under `subject`: the existing id, a refusal, or the record
    /// for a new version (with the id the same schema has anywhere, else a fresh one).
    pub(crate) fn plan_register(
        &self,
        subject: &str,
        candidate: &Candidate,
    ) -> Result<RegisterPlan, Rejection> {
        if let Ok(found) = self.lookup(subject, candidate, false) {
            return Ok(RegisterPlan::Existing(found.id));
        }
        let messages = self.incompatibilities(subject, candidate);
        if !messages.is_empty() {
            return Err(Rejection::Incompatible {
                subject: subject.to_owned(),
                messages,
            });
        }
        let id = self
            .by_identity
            .get(&candidate.identity)
            .copied()
            .unwrap_or(self.max_id + 1);
        let version = self
            .subjects
            .get(subject)
            .and_then(|versions| versions.keys().next_back())
            .map_or(1, |latest| latest + 1);
        // The stored text of a known id wins, so every version with that id reads back the
        // same bytes.
        let schema = self
            .schemas
            .get(&id)
            .map_or_else(|| candidate.text.clone(), |stored| stored.text.clone());
        Ok(RegisterPlan::New(SchemaValue {
            subject: subject.to_owned(),
            version,
            id,
            schema,
            deleted: false,
            schema_type: None,
            references: Vec::new(),
        }))
    }

    fn value_of(
        &self,
        subject: &str,
        version: u32,
        deleted: bool,
    ) -> Result<SchemaValue, Rejection> {
        let found = self.resolve(subject, version)?;
        Ok(SchemaValue {
            subject: subject.to_owned(),
            version,
            id: found.id,
            schema: found.schema.text.clone(),
            deleted,
            schema_type: (found.schema.schema_type != AVRO)
                .then(|| found.schema.schema_type.clone()),
            references: found.schema.references.clone(),
        })
    }

    /// Deleting one version: soft (marks it deleted) or permanent (only after soft).
    pub(crate) fn plan_delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<(u32, Record), Rejection> {
        let versions = self
            .subjects
            .get(subject)
            .filter(|versions| !versions.is_empty())
            .ok_or_else(|| Rejection::SubjectNotFound(subject.to_owned()))?;
        let (version, entry) = match spec {
            // Soft-deleting "latest" means the latest live one; a permanent delete of
            // "latest" means the latest there is.
            VersionSpec::Latest => versions
                .iter()
                .rev()
                .find(|(_, entry)| permanent || !entry.deleted),
            VersionSpec::Number(n) => versions.get_key_value(&n),
        }
        .ok_or_else(|| Rejection::VersionNotFound(spec_text(spec)))?;
        let (version, entry) = (*version, *entry);
        let record = match (permanent, entry.deleted) {
            (false, true) => {
                return Err(Rejection::VersionSoftDeleted {
                    subject: subject.to_owned(),
                    version,
                })
            }
            (true, false) => {
                return Err(Rejection::VersionNotSoftDeleted {
                    subject: subject.to_owned(),
                    version,
                })
            }
            (false, false) => Record::Schema(self.value_of(subject, version, true)?),
            (true, true) => Record::SchemaTombstone {
                subject: subject.to_owned(),
                version,
            },
        };
        Ok((version, record))
    }

    /// Deleting a subject: soft (every live version) or permanent (every version, and the
    /// subject's level, once all are soft-deleted). Returns the versions deleted.
    pub(crate) fn plan_delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<(Vec<u32>, Vec<Record>), Rejection> {
        let versions = self
            .subjects
            .get(subject)
            .filter(|versions| !versions.is_empty())
            .ok_or_else(|| Rejection::SubjectNotFound(subject.to_owned()))?;
        let live: Vec<u32> = versions
            .iter()
            .filter(|(_, entry)| !entry.deleted)
            .map(|(version, _)| *version)
            .collect();
        if !permanent {
            if live.is_empty() {
                return Err(Rejection::SubjectSoftDeleted(subject.to_owned()));
            }
            let records = live
                .iter()
                .map(|version| self.value_of(subject, *version, true).map(Record::Schema))
                .collect::<Result<_, _>>()?;
            return Ok((live, records));
        }
        if !live.is_empty() {
            return Err(Rejection::SubjectNotSoftDeleted(subject.to_owned()));
        }
        let all: Vec<u32> = versions.keys().copied().collect();
        let mut records: Vec<Record> = all
            .iter()
            .map(|version| Record::SchemaTombstone {
                subject: subject.to_owned(),
                version: *version,
            })
            .collect();
        if self.subject_levels.contains_key(subject) {
            records.push(Record::ConfigTombstone {
                subject: Some(subject.to_owned()),
            });
        }
        Ok((all, records))
    }
}

fn spec_text(spec: VersionSpec) -> String {
    match spec {
        VersionSpec::Latest => "latest".to_owned(),
        VersionSpec::Number(n) => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}"#;
    /// A, spelled differently (whitespace, key order, primitive as an object).
    const A_RESPELLED: &str = r#"{ "name": "A", "type": "record", "fields": [ {"type": {"type": "long"}, "name": "x"} ] }"#;
    /// A with a logical type: the same Parsing Canonical Form, yet a different schema.
    const A_TIMESTAMP: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;
    /// A plus a field with a default (BACKWARD compatible).
    const A2: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"},{"name":"y","type":"string","default":""}]}"#;
    /// A with `x` made a string (incompatible every way).
    const A_BROKEN: &str =
        r#"{"type":"record","name":"A","fields":[{"name":"x","type":"string"}]}"#;

    fn candidate(text: &str) -> Candidate {
        Candidate::parse(None, text, &[]).expect("valid candidate")
    }

    /// Registers through the plan, as the registry does, and returns the id.
    fn register(store: &mut Store, subject: &str, text: &str) -> Result<u32, Rejection> {
        match store.plan_register(subject, &candidate(text))? {
            RegisterPlan::Existing(id) => Ok(id),
            RegisterPlan::New(value) => {
                let id = value.id;
                store.apply(&Record::Schema(value));
                Ok(id)
            }
        }
    }

    fn apply_all(store: &mut Store, records: Vec<Record>) {
        for record in records {
            store.apply(&record);
        }
    }

    #[test]
    fn same_schema_same_id_across_subjects() {
        let mut store = Store::default();
        assert_eq!(register(&mut store, "s1", A), Ok(1));
        assert_eq!(register(&mut store, "s1", A_RESPELLED), Ok(1));
        assert_eq!(register(&mut store, "s2", A), Ok(1));
        assert_eq!(store.versions("s2", false), Ok(vec![1]));
        assert_eq!(register(&mut store, "s1", A2), Ok(2));
        assert_eq!(store.versions("s1", false), Ok(vec![1, 2]));
        assert_eq!(
            store.usages(1, false),
            Ok(vec![("s1".into(), 1), ("s2".into(), 1)])
        );
    }

    #[test]
    fn logical_types_make_a_different_schema() {
        let mut store = Store::default();
        store.apply(&Record::Config {
            subject: None,
            level: CompatibilityLevel::None,
        });
        assert_eq!(register(&mut store, "s", A), Ok(1));
        assert_eq!(register(&mut store, "s", A_TIMESTAMP), Ok(2));
    }

    #[test]
    fn incompatible_versions_are_refused_by_level() {
        let mut store = Store::default();
        register(&mut store, "s", A).expect("first version");
        let refused = register(&mut store, "s", A_BROKEN);
        assert!(
            matches!(refused, Err(Rejection::Incompatible { ref messages, .. }) if !messages.is_empty()),
            "{refused:?}"
        );
        store.apply(&Record::Config {
            subject: Some("s".into()),
            level: CompatibilityLevel::None,
        });
        assert_eq!(register(&mut store, "s", A_BROKEN), Ok(2));
        // Another subject still uses the global default.
        register(&mut store, "t", A).expect("first version");
        assert!(register(&mut store, "t", A_BROKEN).is_err());
        assert_eq!(store.effective_level("t"), CompatibilityLevel::Backward);
    }

    #[test]
    fn soft_delete_hides_versions_but_keeps_ids() {
        let mut store = Store::default();
        register(&mut store, "s", A).expect("v1");
        register(&mut store, "s", A2).expect("v2");
        let (version, record) = store
            .plan_delete_version("s", VersionSpec::Latest, false)
            .expect("soft delete latest");
        assert_eq!(version, 2);
        store.apply(&record);
        assert_eq!(store.versions("s", false), Ok(vec![1]));
        assert_eq!(store.versions("s", true), Ok(vec![1, 2]));
        assert!(store.schema(2).is_ok());
        assert_eq!(
            store
                .version("s", VersionSpec::Number(2), false)
                .map(|v| v.id),
            Err(Rejection::VersionNotFound("2".into()))
        );
        assert_eq!(
            store
                .version("s", VersionSpec::Number(2), true)
                .map(|v| v.id),
            Ok(2)
        );
        // Re-registering a soft-deleted schema makes a new version with the same id.
        assert_eq!(register(&mut store, "s", A2), Ok(2));
        assert_eq!(store.versions("s", false), Ok(vec![1, 3]));
    }

    #[test]
    fn subject_deletion_rules() {
        let mut store = Store::default();
        register(&mut store, "s", A).expect("v1");
        store.apply(&Record::Config {
            subject: Some("s".into()),
            level: CompatibilityLevel::Full,
        });
        assert_eq!(
            store.plan_delete_subject("s", true).map(|(v, _)| v),
            Err(Rejection::SubjectNotSoftDeleted("s".into()))
        );
        let (versions, records) = store.plan_delete_subject("s", false).expect("soft");
        assert_eq!(versions, vec![1]);
        apply_all(&mut store, records);
        assert_eq!(store.subjects(false, ""), Vec::<String>::new());
        assert_eq!(store.subjects(true, ""), vec!["s".to_owned()]);
        assert_eq!(
            store.plan_delete_subject("s", false).map(|(v, _)| v),
            Err(Rejection::SubjectSoftDeleted("s".into()))
        );
        let (versions, records) = store.plan_delete_subject("s", true).expect("hard");
        assert_eq!(versions, vec![1]);
        apply_all(&mut store, records);
        assert_eq!(store.subjects(true, ""), Vec::<String>::new());
        assert_eq!(store.subject_level("s"), None);
        // Nothing refers to id 1 any more, but it is never handed out again.
        assert_eq!(
            store.schema(1).map(|_| ()),
            Err(Rejection::SchemaNotFound(Some(1)))
        );
        assert_eq!(register(&mut store, "s", A2), Ok(2));
        assert_eq!(
            store.plan_delete_subject("nope", false).map(|(v, _)| v),
            Err(Rejection::SubjectNotFound("nope".into()))
        );
    }

    #[test]
    fn version_deletion_rules() {
        let mut store = Store::default();
        register(&mut store, "s", A).expect("v1");
        let plan = |store: &Store, spec, permanent| {
            store
                .plan_delete_version("s", spec, permanent)
                .map(|(version, _)| version)
        };
        assert_eq!(
            plan(&store, VersionSpec::Number(1), true),
            Err(Rejection::VersionNotSoftDeleted {
                subject: "s".into(),
                version: 1
            })
        );
        assert_eq!(
            plan(&store, VersionSpec::Number(9), false),
            Err(Rejection::VersionNotFound("9".into()))
        );
        let (_, record) = store
            .plan_delete_version("s", VersionSpec::Number(1), false)
            .expect("soft");
        store.apply(&record);
        assert_eq!(
            plan(&store, VersionSpec::Number(1), false),
            Err(Rejection::VersionSoftDeleted {
                subject: "s".into(),
                version: 1
            })
        );
        let (_, record) = store
            .plan_delete_version("s", VersionSpec::Latest, true)
            .expect("hard");
        assert_eq!(
            record,
            Record::SchemaTombstone {
                subject: "s".into(),
                version: 1
            }
        );
    }

    #[test]
    fn applying_is_idempotent_per_offset() {
        let mut store = Store::default();
        let record = Record::Config {
            subject: None,
            level: CompatibilityLevel::Full,
        };
        assert!(store.apply_at(0, &record));
        assert!(!store.apply_at(0, &record));
        // Compaction leaves gaps.
        assert!(store.apply_at(5, &Record::ConfigTombstone { subject: None }));
        assert_eq!(store.next_offset(), 6);
        assert_eq!(store.global_level(), CompatibilityLevel::Backward);
    }

    #[test]
    fn racing_ids_keep_the_first_schema() {
        let mut store = Store::default();
        let value = |subject: &str, schema: &str| SchemaValue {
            subject: subject.into(),
            version: 1,
            id: 1,
            schema: schema.into(),
            deleted: false,
            schema_type: None,
            references: Vec::new(),
        };
        store.apply(&Record::Schema(value("a", A)));
        store.apply(&Record::Schema(value("b", A2)));
        assert_eq!(store.schema(1).map(|s| s.text.clone()), Ok(A.to_owned()));
        assert_eq!(register(&mut store, "c", A_BROKEN), Ok(2));
    }

    #[test]
    fn candidates_must_be_plain_avro() {
        assert!(matches!(
            Candidate::parse(Some("PROTOBUF"), "syntax = \"proto3\";", &[]),
            Err(Rejection::InvalidSchema(message)) if message.contains("PROTOBUF")
        ));
        assert!(matches!(
            Candidate::parse(None, r#"{"type":"recor"}"#, &[]),
            Err(Rejection::InvalidSchema(_))
        ));
        assert!(matches!(
            Candidate::parse(None, A, &[serde_json::json!({"name":"x","subject":"y","version":1})]),
            Err(Rejection::InvalidSchema(message)) if message.contains("references")
        ));
        assert!(Candidate::parse(Some("avro"), A, &[]).is_ok());
    }

    #[test]
    fn version_specs() {
        let table = [
            ("latest", Ok(VersionSpec::Latest)),
            ("-1", Ok(VersionSpec::Latest)),
            ("1", Ok(VersionSpec::Number(1))),
            ("2147483647", Ok(VersionSpec::Number(2147483647))),
            ("0", Err(())),
            ("-2", Err(())),
            ("2147483648", Err(())),
            ("one", Err(())),
        ];
        for (text, expected) in table {
            assert_eq!(VersionSpec::parse(text).map_err(|_| ()), expected, "{text}");
        }
    }
}
