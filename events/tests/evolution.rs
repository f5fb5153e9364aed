//! Schema evolution: the contract may only change so that today's readers still read
//! everything already on the log (event topics keep their records forever).
//!
//! - Every `.avsc` is checked against each of its committed versions (git history) with
//!   the BACKWARD rule the registry applies: today's schema, as reader, reads data
//!   written with the older one fully (apache-avro's `can_read`, a partial match — a
//!   writer union branch or enum symbol the reader lacks — counting as incompatible,
//!   as in Confluent's checker). A working-tree change is checked before it is committed.
//! - `tests/samples/<full name>.json` hold one record of every record type as it was
//!   written (its writer schema and its Avro bytes in hex). Each is decoded with today's
//!   schema of that name as reader and then into today's Rust type: a sample that no
//!   longer decodes is data on the log that no longer decodes. Every record type of the
//!   contract must have a sample; a new type gets one with
//!   `cargo test -p notesaga-events --test evolution -- --ignored write_missing_samples`,
//!   and samples, once committed, are never rewritten.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use apache_avro::{
    reader::datum::GenericDatumReader,
    schema::RecordSchema,
    schema_compatibility::{Compatibility, SchemaCompatibility},
    types::Value,
    writer::datum::GenericDatumWriter,
    Schema,
};
use notesaga_events::{
    embedding::{EmbeddingCommand, EmbeddingEvent},
    narration::{NarrationCommand, NarrationEvent},
    notes::{NotesCommand, NotesEvent, NotesOutcome},
    saga::SagaEvent,
    Message,
};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![crate_dir().join("schemas")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("schemas/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "avsc") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .current_dir(crate_dir())
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The committed versions of `file`, newest first (distinct texts only).
fn committed_versions(file: &Path) -> Vec<(String, String)> {
    let relative = file
        .strip_prefix(crate_dir())
        .expect("under the crate")
        .to_string_lossy()
        .into_owned();
    let log = git(&["log", "--format=%H", "--", &relative]).unwrap_or_default();
    let mut versions: Vec<(String, String)> = Vec::new();
    for commit in log.lines() {
        let Some(text) = git(&["show", &format!("{commit}:./{relative}")]) else {
            continue;
        };
        if !versions.iter().any(|(_, t)| *t == text) {
            versions.push((commit[..12].to_owned(), text));
        }
    }
    versions
}

fn reads_fully(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Ok(()),
        Ok(Compatibility::Partial) => {
            Err("only part of the data resolves (a union branch or enum symbol)".into())
        }
        Err(err) => Err(err.to_string()),
    }
}

#[test]
fn every_schema_reads_what_its_committed_versions_wrote() {
    assert!(
        git(&["rev-parse", "--is-inside-work-tree"]).is_some(),
        "the schema evolution check needs the git history of events/schemas (run it in a checkout with git installed)"
    );
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in schema_files() {
        let text = std::fs::read_to_string(&file).expect("readable");
        let today = Schema::parse_str(&text)
            .unwrap_or_else(|err| panic!("{} does not parse: {err}", file.display()));
        for (commit, old) in committed_versions(&file) {
            if old == text {
                continue;
            }
            let Ok(old_schema) = Schema::parse_str(&old) else {
                broken.push(format!("{} at {commit} does not parse", file.display()));
                continue;
            };
            checked += 1;
            if let Err(reason) = reads_fully(&old_schema, &today) {
                broken.push(format!(
                    "{}: today's schema cannot read data written with the version of {commit}: {reason}",
                    file.display()
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "not BACKWARD compatible:\n{}",
        broken.join("\n")
    );
    eprintln!("checked {checked} earlier versions of the schemas");
}

/// A deliberately incompatible change is caught (the check can fail).
#[test]
fn an_incompatible_change_is_caught() {
    let old =
        r#"{"type":"record","name":"X","namespace":"t","fields":[{"name":"a","type":"string"}]}"#;
    let added_no_default = r#"{"type":"record","name":"X","namespace":"t","fields":[{"name":"a","type":"string"},{"name":"b","type":"long"}]}"#;
    let added_default = r#"{"type":"record","name":"X","namespace":"t","fields":[{"name":"a","type":"string"},{"name":"b","type":"long","default":0}]}"#;
    let parse = |s: &str| Schema::parse_str(s).unwrap();
    assert!(reads_fully(&parse(old), &parse(added_no_default)).is_err());
    assert!(reads_fully(&parse(old), &parse(added_default)).is_ok());
}

/// Today's readers: every record type of the contract, by full name, with its schema
/// and a function reading a decoded value into its Rust type.
type Reader = fn(&str, &Value) -> Result<(), String>;

fn readers() -> BTreeMap<String, (&'static str, Reader)> {
    fn of<M: Message>(out: &mut BTreeMap<String, (&'static str, Reader)>) {
        for (name, schema) in M::schemas() {
            let read: Reader = |name, value| {
                M::from_avro(name, value)
                    .map(|_| ())
                    .map_err(|err| err.to_string())
            };
            out.insert(name, (schema, read));
        }
    }
    let mut out = BTreeMap::new();
    of::<NotesCommand>(&mut out);
    of::<NotesEvent>(&mut out);
    of::<NotesOutcome>(&mut out);
    of::<EmbeddingCommand>(&mut out);
    of::<EmbeddingEvent>(&mut out);
    of::<NarrationCommand>(&mut out);
    of::<NarrationEvent>(&mut out);
    of::<SagaEvent>(&mut out);
    out
}

fn samples_dir() -> PathBuf {
    crate_dir().join("tests").join("samples")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn stored_samples_of_every_record_type_decode_with_todays_readers() {
    let readers = readers();
    let mut sampled = Vec::new();
    let mut broken = Vec::new();
    for entry in std::fs::read_dir(samples_dir()).expect("tests/samples exists") {
        let path = entry.expect("an entry").path();
        let sample: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("readable"))
                .expect("a sample is JSON");
        let name = sample["record"].as_str().expect("record").to_owned();
        let writer = Schema::parse(&sample["writer_schema"]).expect("the writer schema parses");
        let bytes = unhex(sample["avro_hex"].as_str().expect("avro_hex"));
        let Some((schema, read)) = readers.get(&name) else {
            broken.push(format!(
                "{name}: no record type of today's contract reads it"
            ));
            continue;
        };
        let reader = Schema::parse_str(schema).expect("today's schema parses");
        let decoded = GenericDatumReader::builder(&writer)
            .reader_schema(&reader)
            .build()
            .and_then(|r| r.read_value(&mut bytes.as_slice()));
        let value = match decoded {
            Ok(value) => value,
            Err(err) => {
                broken.push(format!(
                    "{name}: today's schema cannot read the sample: {err}"
                ));
                continue;
            }
        };
        if let Err(err) = read(&name, &value) {
            broken.push(format!(
                "{name}: today's Rust type cannot read the sample: {err}"
            ));
        }
        sampled.push(name);
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    let missing: Vec<&String> = readers.keys().filter(|n| !sampled.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "record types without a stored sample (write them with `cargo test -p notesaga-events --test evolution -- --ignored write_missing_samples`): {missing:?}"
    );
}

/// A value for every field of `schema`: ids are UUIDs (the Rust types check them),
/// unions take their first non-null branch, so optional fields are exercised too.
fn sample_value(schema: &Schema, field: &str) -> Value {
    match schema {
        Schema::Null => Value::Null,
        Schema::Boolean => Value::Boolean(true),
        Schema::Int => Value::Int(1),
        Schema::Long => Value::Long(1),
        Schema::Float => Value::Float(0.5),
        Schema::Double => Value::Double(0.5),
        Schema::Bytes => Value::Bytes(vec![1, 2, 3]),
        Schema::String if field.ends_with("id") => {
            Value::String("00000000-0000-4000-8000-000000000001".into())
        }
        Schema::String => Value::String(format!("sample {field}")),
        Schema::Array(array) => Value::Array(vec![sample_value(&array.items, field)]),
        Schema::Map(map) => Value::Map(
            [("k".to_owned(), sample_value(&map.types, field))]
                .into_iter()
                .collect(),
        ),
        Schema::Union(union) => {
            let (index, branch) = union
                .variants()
                .iter()
                .enumerate()
                .find(|(_, s)| !matches!(s, Schema::Null))
                .unwrap_or((0, &Schema::Null));
            Value::Union(index as u32, Box::new(sample_value(branch, field)))
        }
        Schema::Record(RecordSchema { fields, .. }) => Value::Record(
            fields
                .iter()
                .map(|f| (f.name.clone(), sample_value(&f.schema, &f.name)))
                .collect(),
        ),
        Schema::Enum(e) => Value::Enum(0, e.symbols[0].clone()),
        Schema::TimestampMillis => Value::TimestampMillis(1_796_400_000_000),
        Schema::TimestampMicros => Value::TimestampMicros(1_796_400_000_000_000),
        Schema::Date => Value::Date(20_000),
        Schema::TimeMillis => Value::TimeMillis(1_000),
        Schema::Fixed(f) => Value::Fixed(f.size, vec![0; f.size]),
        other => panic!("no sample for {other:?}"),
    }
}

/// Writes a sample for every record type that has none, with today's schema as writer.
/// Run by hand when a record type is added; never rewrites an existing sample.
#[test]
#[ignore = "writes files: run by hand when a record type is added"]
fn write_missing_samples() {
    std::fs::create_dir_all(samples_dir()).expect("create tests/samples");
    for (name, (schema_text, read)) in readers() {
        let path = samples_dir().join(format!("{name}.json"));
        if path.exists() {
            continue;
        }
        let schema = Schema::parse_str(schema_text).expect("parses");
        let value = sample_value(&schema, "");
        let bytes = GenericDatumWriter::builder(&schema)
            .build()
            .and_then(|w| w.write_value_to_vec(value.clone()))
            .expect("encodes");
        read(&name, &value).unwrap_or_else(|err| panic!("{name}: {err}"));
        let sample = serde_json::json!({
            "record": name,
            "writer_schema": serde_json::from_str::<serde_json::Value>(schema_text).expect("JSON"),
            "avro_hex": hex(&bytes),
        });
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&sample).expect("JSON") + "\n",
        )
        .expect("write the sample");
        eprintln!("wrote {}", path.display());
    }
}
