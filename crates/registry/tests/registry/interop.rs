//! `schema_registry_converter` (the client notesaga's producers and consumers use) against
//! the registry served on a loopback port.

use anyhow::{Context as _, Result};
use apache_avro::types::Value;
use notesaga_registry::serve;
use schema_registry_converter::{
    async_impl::{
        avro::{AvroDecoder, AvroEncoder},
        schema_registry::{get_all_subjects, is_compatible_schema, SrSettings},
    },
    schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::support::start;

const NOTE_CREATED: &str = r#"{
  "type": "record", "name": "NoteCreated", "namespace": "notesaga.notes",
  "fields": [
    {"name": "note_id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "title", "type": "string"},
    {"name": "summary", "type": ["null", "string"], "default": null},
    {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}
  ]
}"#;

fn strategy(schema: &str) -> SubjectNameStrategy {
    SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
        "notes.events".to_owned(),
        SuppliedSchema::new(
            Some("notesaga.notes.NoteCreated".to_owned()),
            SchemaType::Avro,
            schema.to_owned(),
        ),
    )
}

#[tokio::test]
async fn converter_encodes_and_decodes_through_the_registry() -> Result<()> {
    let (_broker, registry, _api) = start().await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        registry,
        notesaga_registry::Access::open(),
        shutdown.clone(),
    ));

    let settings = SrSettings::new_builder(url.clone()).no_proxy().build()?;
    let encoder = AvroEncoder::new(settings.clone());
    let note_id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    let fields = vec![
        ("note_id", Value::String(note_id.to_owned())),
        ("title", Value::String("Photosynthesis".to_owned())),
        (
            "summary",
            Value::Union(1, Box::new(Value::String("light in, sugar out".to_owned()))),
        ),
        ("occurred_at", Value::TimestampMillis(1_700_000_000_123)),
    ];
    let bytes = encoder
        .encode(fields.clone(), strategy(NOTE_CREATED))
        .await
        .context("encoding through the registry")?;

    assert_eq!(bytes[0], 0, "Confluent wire format magic byte");
    let id = u32::from_be_bytes(bytes[1..5].try_into()?);
    let by_id: serde_json::Value = reqwest::get(format!("{url}/schemas/ids/{id}"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(by_id["schema"].as_str(), Some(NOTE_CREATED));

    // A fresh decoder, so the schema really comes from the registry.
    let decoded = AvroDecoder::new(settings.clone())
        .decode(Some(&bytes))
        .await
        .context("decoding through the registry")?;
    let expected: Vec<(String, Value)> = fields
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    let decoded_fields = match decoded.value {
        Value::Record(fields) => fields,
        other => anyhow::bail!("decoded {other:?}"),
    };
    // The uuid logical type decodes as a Uuid; compare it by its text.
    assert_eq!(decoded_fields.len(), expected.len());
    for ((name, got), (expected_name, want)) in decoded_fields.iter().zip(&expected) {
        assert_eq!(name, expected_name);
        match (got, want) {
            (Value::Uuid(uuid), Value::String(text)) => assert_eq!(&uuid.to_string(), text),
            _ => assert_eq!(got, want, "field {name}"),
        }
    }

    // Encoding again registers nothing new.
    let again = AvroEncoder::new(settings.clone())
        .encode(
            vec![
                ("note_id", Value::String(note_id.to_owned())),
                ("title", Value::String(String::new())),
                ("summary", Value::Union(0, Box::new(Value::Null))),
                ("occurred_at", Value::TimestampMillis(0)),
            ],
            strategy(NOTE_CREATED),
        )
        .await?;
    assert_eq!(again[1..5], bytes[1..5]);

    assert_eq!(
        get_all_subjects(&settings).await?,
        vec!["notes.events-notesaga.notes.NoteCreated".to_owned()]
    );
    let compatible = |schema: &str| {
        is_compatible_schema(
            &settings,
            "notes.events-notesaga.notes.NoteCreated".to_owned(),
            SuppliedSchema::new(None, SchemaType::Avro, schema.to_owned()),
        )
    };
    assert!(compatible(NOTE_CREATED).await?);
    assert!(
        !compatible(&NOTE_CREATED.replace(
            r#""name": "title", "type": "string""#,
            r#""name": "title", "type": "int""#
        ))
        .await?
    );

    shutdown.cancel();
    server.await??;
    Ok(())
}
