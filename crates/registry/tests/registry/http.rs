//! Every endpoint through the router, with Confluent's status codes and error codes.

use anyhow::Result;
use axum::{
    body::Body,
    http::{header, Request},
};
use serde_json::{json, Value};

use crate::support::{record, start};

fn v1() -> String {
    record("Note", r#"[{"name":"id","type":"string"}]"#)
}

/// v1 plus a field with a default: BACKWARD compatible.
fn v2() -> String {
    record(
        "Note",
        r#"[{"name":"id","type":"string"},{"name":"title","type":"string","default":""}]"#,
    )
}

/// v1 with `id` turned into an int: incompatible every way.
fn broken() -> String {
    record("Note", r#"[{"name":"id","type":"int"}]"#)
}

#[tokio::test]
async fn root_types_and_unknown_routes() -> Result<()> {
    let (_broker, _registry, api) = start().await?;

    let root = api.get("/").await?;
    assert_eq!((root.status, root.body), (200, json!({})));

    let types = api.get("/schemas/types").await?;
    assert_eq!((types.status, types.body), (200, json!(["AVRO"])));

    let unknown = api.get("/no/such/route").await?;
    assert_eq!((unknown.status, unknown.code()), (404, Some(404)));

    let wrong_method = api.call("PUT", "/subjects", None).await?;
    assert_eq!((wrong_method.status, wrong_method.code()), (405, Some(405)));

    let not_an_id = api.get("/schemas/ids/abc").await?;
    assert_eq!(not_an_id.status, 404);
    Ok(())
}

#[tokio::test]
async fn register_and_read_back() -> Result<()> {
    let (_broker, _registry, api) = start().await?;

    let id = api.register("notes", &v1()).await?;
    // Same schema spelled differently: still the same registration.
    let respelled = r#"{ "namespace": "notesaga.test", "name": "Note", "type": "record",
        "fields": [ { "type": { "type": "string" }, "name": "id" } ] }"#;
    assert_eq!(api.register("notes", respelled).await?, id);
    // The same schema under another subject gets the same global id.
    assert_eq!(api.register("other", &v1()).await?, id);
    let id2 = api.register("notes", &v2()).await?;
    assert_ne!(id2, id);

    assert_eq!(api.get("/subjects").await?.body, json!(["notes", "other"]));
    assert_eq!(
        api.get("/subjects?subjectPrefix=not").await?.body,
        json!(["notes"])
    );
    assert_eq!(
        api.get("/subjects/notes/versions").await?.body,
        json!([1, 2])
    );

    let expected_v1 = json!({"subject": "notes", "version": 1, "id": id, "schema": v1()});
    let expected_v2 = json!({"subject": "notes", "version": 2, "id": id2, "schema": v2()});
    assert_eq!(
        api.get("/subjects/notes/versions/1").await?.body,
        expected_v1
    );
    assert_eq!(
        api.get("/subjects/notes/versions/latest").await?.body,
        expected_v2
    );
    assert_eq!(
        api.get("/subjects/notes/versions/-1").await?.body,
        expected_v2
    );
    let raw = api.get("/subjects/notes/versions/1/schema").await?;
    assert_eq!(raw.body, serde_json::from_str::<Value>(&v1())?);

    let by_id = api.get(&format!("/schemas/ids/{id}")).await?;
    assert_eq!(by_id.body, json!({ "schema": v1() }));
    let raw_by_id = api.get(&format!("/schemas/ids/{id}/schema")).await?;
    assert_eq!(raw_by_id.body, serde_json::from_str::<Value>(&v1())?);
    assert_eq!(
        api.get(&format!("/schemas/ids/{id}/subjects")).await?.body,
        json!(["notes", "other"])
    );
    assert_eq!(
        api.get(&format!("/schemas/ids/{id}/versions")).await?.body,
        json!([{"subject": "notes", "version": 1}, {"subject": "other", "version": 1}])
    );

    assert_eq!(
        api.get("/subjects/notes/versions/1/referencedby")
            .await?
            .body,
        json!([])
    );
    assert_eq!(
        api.get("/subjects/notes/versions/3/referencedby")
            .await?
            .code(),
        Some(40402)
    );

    let found = api
        .post("/subjects/notes", json!({ "schema": v2() }))
        .await?;
    assert_eq!((found.status, found.body), (200, expected_v2));

    // Errors.
    let missing_schema = api
        .post("/subjects/notes", json!({ "schema": broken() }))
        .await?;
    assert_eq!(
        (missing_schema.status, missing_schema.code()),
        (404, Some(40403))
    );
    let missing_subject = api
        .post("/subjects/nope", json!({ "schema": v1() }))
        .await?;
    assert_eq!(
        (missing_subject.status, missing_subject.code()),
        (404, Some(40401))
    );
    assert_eq!(
        missing_subject.body["message"],
        json!("Subject 'nope' not found.")
    );
    assert_eq!(api.get("/schemas/ids/999").await?.code(), Some(40403));
    assert_eq!(
        api.get("/schemas/ids/999/schema").await?.code(),
        Some(40403)
    );
    assert_eq!(
        api.get("/schemas/ids/999/subjects").await?.code(),
        Some(40403)
    );
    assert_eq!(
        api.get("/schemas/ids/999/versions").await?.code(),
        Some(40403)
    );
    assert_eq!(
        api.get("/subjects/nope/versions").await?.code(),
        Some(40401)
    );
    assert_eq!(
        api.get("/subjects/nope/versions/1").await?.code(),
        Some(40401)
    );
    assert_eq!(
        api.get("/subjects/notes/versions/9").await?.code(),
        Some(40402)
    );
    assert_eq!(
        api.get("/subjects/notes/versions/9/schema").await?.code(),
        Some(40402)
    );
    for bad in ["0", "-2", "two", "2147483648"] {
        let reply = api.get(&format!("/subjects/notes/versions/{bad}")).await?;
        assert_eq!((reply.status, reply.code()), (422, Some(42202)), "{bad}");
    }
    Ok(())
}

#[tokio::test]
async fn registration_is_refused_with_confluent_codes() -> Result<()> {
    let (_broker, _registry, api) = start().await?;
    api.register("s", &v1()).await?;

    let incompatible = api
        .post("/subjects/s/versions", json!({ "schema": broken() }))
        .await?;
    assert_eq!((incompatible.status, incompatible.code()), (409, Some(409)));
    let message = incompatible.body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Schema being registered is incompatible with an earlier schema"),
        "{message}"
    );

    let invalid = api
        .post(
            "/subjects/s/versions",
            json!({ "schema": "{\"type\":\"recrd\"}" }),
        )
        .await?;
    assert_eq!((invalid.status, invalid.code()), (422, Some(42201)));

    let protobuf = api
        .post(
            "/subjects/s/versions",
            json!({ "schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF" }),
        )
        .await?;
    assert_eq!((protobuf.status, protobuf.code()), (422, Some(42201)));
    assert!(protobuf.body["message"]
        .as_str()
        .unwrap_or_default()
        .contains("AVRO"));

    let explicit_avro = api
        .post(
            "/subjects/s/versions",
            json!({ "schema": v1(), "schemaType": "AVRO", "references": [] }),
        )
        .await?;
    assert_eq!(explicit_avro.status, 200);

    let references = api
        .post(
            "/subjects/s/versions",
            json!({ "schema": v2(), "references": [{"name": "x", "subject": "y", "version": 1}] }),
        )
        .await?;
    assert_eq!(references.code(), Some(42201));

    let empty = api.post("/subjects/s/versions", json!({})).await?;
    assert_eq!(empty.code(), Some(42201));

    let malformed = api
        .send(
            Request::post("/subjects/s/versions")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{not json"))?,
        )
        .await?;
    assert_eq!(malformed.status, 400);

    let wrong_media_type = api
        .send(
            Request::post("/subjects/s/versions")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(json!({ "schema": v2() }).to_string()))?,
        )
        .await?;
    assert_eq!(wrong_media_type.status, 415);

    // Nothing refused was registered.
    assert_eq!(api.get("/subjects/s/versions").await?.body, json!([1]));

    // Every accepted media type, with parameters, or none at all.
    let body = json!({ "schema": v2() }).to_string();
    for content_type in [
        Some("application/json"),
        Some("application/octet-stream"),
        Some("application/vnd.schemaregistry+json"),
        Some("application/vnd.schemaregistry.v1+json; charset=utf-8"),
        None,
    ] {
        let mut request = Request::post("/subjects/s/versions");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let reply = api.send(request.body(Body::from(body.clone()))?).await?;
        assert_eq!(reply.status, 200, "{content_type:?}: {reply:?}");
    }
    assert_eq!(api.get("/subjects/s/versions").await?.body, json!([1, 2]));
    Ok(())
}

#[tokio::test]
async fn config_endpoints() -> Result<()> {
    let (_broker, _registry, api) = start().await?;

    assert_eq!(
        api.get("/config").await?.body,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    let put = api.put("/config", json!({"compatibility": "FULL"})).await?;
    assert_eq!(
        (put.status, put.body),
        (200, json!({"compatibility": "FULL"}))
    );
    assert_eq!(
        api.get("/config").await?.body,
        json!({"compatibilityLevel": "FULL"})
    );

    let invalid = api
        .put("/config", json!({"compatibility": "SIDEWAYS"}))
        .await?;
    assert_eq!((invalid.status, invalid.code()), (422, Some(42203)));
    let missing = api.put("/config", json!({})).await?;
    assert_eq!(missing.code(), Some(42203));
    assert_eq!(
        api.get("/config").await?.body,
        json!({"compatibilityLevel": "FULL"})
    );

    let unset = api.get("/config/s").await?;
    assert_eq!((unset.status, unset.code()), (404, Some(40408)));
    assert_eq!(
        api.get("/config/s?defaultToGlobal=true").await?.body,
        json!({"compatibilityLevel": "FULL"})
    );

    // A subject's own level governs its registrations.
    api.register("s", &v1()).await?;
    assert_eq!(
        api.post("/subjects/s/versions", json!({ "schema": broken() }))
            .await?
            .status,
        409
    );
    let put = api
        .put("/config/s", json!({"compatibility": "none"}))
        .await?;
    assert_eq!(put.body, json!({"compatibility": "NONE"}));
    assert_eq!(
        api.get("/config/s").await?.body,
        json!({"compatibilityLevel": "NONE"})
    );
    api.register("s", &broken()).await?;
    assert_eq!(
        api.put("/config/s", json!({"compatibility": "BAD"}))
            .await?
            .code(),
        Some(42203)
    );

    let deleted = api.delete("/config/s").await?;
    assert_eq!(deleted.body, json!({"compatibilityLevel": "NONE"}));
    assert_eq!(api.get("/config/s").await?.code(), Some(40408));
    assert_eq!(api.delete("/config/s").await?.code(), Some(40408));

    let reset = api.delete("/config").await?;
    assert_eq!(reset.body, json!({"compatibilityLevel": "FULL"}));
    assert_eq!(
        api.get("/config").await?.body,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    Ok(())
}

#[tokio::test]
async fn compatibility_endpoints() -> Result<()> {
    let (_broker, _registry, api) = start().await?;
    api.register("s", &v1()).await?;

    for version in ["latest", "1"] {
        let uri = format!("/compatibility/subjects/s/versions/{version}");
        let ok = api.post(&uri, json!({ "schema": v2() })).await?;
        assert_eq!((ok.status, ok.body), (200, json!({"is_compatible": true})));
        let not_ok = api.post(&uri, json!({ "schema": broken() })).await?;
        assert_eq!(not_ok.body, json!({"is_compatible": false}));
    }
    let verbose = api
        .post(
            "/compatibility/subjects/s/versions/latest?verbose=true",
            json!({ "schema": broken() }),
        )
        .await?;
    assert_eq!(verbose.body["is_compatible"], json!(false));
    let messages = verbose.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!messages.is_empty(), "{verbose:?}");

    // Against the versions the level names (what schema_registry_converter asks).
    let all = api
        .post(
            "/compatibility/subjects/s/versions",
            json!({ "schema": broken() }),
        )
        .await?;
    assert_eq!(all.body, json!({"is_compatible": false}));
    let fresh = api
        .post(
            "/compatibility/subjects/fresh/versions",
            json!({ "schema": broken() }),
        )
        .await?;
    assert_eq!(fresh.body, json!({"is_compatible": true}));

    let unknown_subject = api
        .post(
            "/compatibility/subjects/nope/versions/latest",
            json!({ "schema": v2() }),
        )
        .await?;
    assert_eq!(unknown_subject.code(), Some(40401));
    let unknown_version = api
        .post(
            "/compatibility/subjects/s/versions/7",
            json!({ "schema": v2() }),
        )
        .await?;
    assert_eq!(unknown_version.code(), Some(40402));
    let invalid_schema = api
        .post(
            "/compatibility/subjects/s/versions/1",
            json!({ "schema": "nope" }),
        )
        .await?;
    assert_eq!(invalid_schema.code(), Some(42201));
    Ok(())
}

#[tokio::test]
async fn soft_and_permanent_deletes() -> Result<()> {
    let (_broker, _registry, api) = start().await?;
    let id1 = api.register("s", &v1()).await?;
    let id2 = api.register("s", &v2()).await?;

    // Permanent before soft is refused.
    let hard_first = api.delete("/subjects/s/versions/2?permanent=true").await?;
    assert_eq!((hard_first.status, hard_first.code()), (404, Some(40407)));

    let soft = api.delete("/subjects/s/versions/2").await?;
    assert_eq!((soft.status, soft.body), (200, json!(2)));
    assert_eq!(api.get("/subjects/s/versions").await?.body, json!([1]));
    assert_eq!(
        api.get("/subjects/s/versions?deleted=true").await?.body,
        json!([1, 2])
    );
    assert_eq!(api.get("/subjects/s/versions/2").await?.code(), Some(40402));
    assert_eq!(
        api.get("/subjects/s/versions/2?deleted=true").await?.body["id"],
        json!(id2)
    );
    assert_eq!(
        api.get("/subjects/s/versions/latest").await?.body["version"],
        json!(1)
    );
    // Consumers can still resolve the id of a soft-deleted version.
    assert_eq!(
        api.get(&format!("/schemas/ids/{id2}")).await?.body,
        json!({ "schema": v2() })
    );
    assert_eq!(
        api.get(&format!("/schemas/ids/{id2}/versions")).await?.body,
        json!([])
    );
    assert_eq!(
        api.get(&format!("/schemas/ids/{id2}/versions?deleted=true"))
            .await?
            .body,
        json!([{"subject": "s", "version": 2}])
    );
    assert_eq!(
        api.delete("/subjects/s/versions/2").await?.code(),
        Some(40406)
    );

    let hard = api.delete("/subjects/s/versions/2?permanent=true").await?;
    assert_eq!(hard.body, json!(2));
    assert_eq!(
        api.get("/subjects/s/versions?deleted=true").await?.body,
        json!([1])
    );
    assert_eq!(
        api.get(&format!("/schemas/ids/{id2}")).await?.code(),
        Some(40403)
    );

    // Whole subject.
    assert_eq!(
        api.delete("/subjects/s?permanent=true").await?.code(),
        Some(40405)
    );
    let soft = api.delete("/subjects/s").await?;
    assert_eq!(soft.body, json!([1]));
    assert_eq!(api.get("/subjects").await?.body, json!([]));
    assert_eq!(api.get("/subjects?deleted=true").await?.body, json!(["s"]));
    assert_eq!(api.get("/subjects/s/versions").await?.code(), Some(40401));
    assert_eq!(
        api.get(&format!("/schemas/ids/{id1}")).await?.body,
        json!({ "schema": v1() })
    );
    assert_eq!(api.delete("/subjects/s").await?.code(), Some(40404));
    let hard = api.delete("/subjects/s?permanent=true").await?;
    assert_eq!(hard.body, json!([1]));
    assert_eq!(api.get("/subjects?deleted=true").await?.body, json!([]));
    assert_eq!(
        api.get(&format!("/schemas/ids/{id1}")).await?.code(),
        Some(40403)
    );
    assert_eq!(api.delete("/subjects/s").await?.code(), Some(40401));
    assert_eq!(
        api.delete("/subjects/nope/versions/1").await?.code(),
        Some(40401)
    );

    // The subject starts over, and ids are never handed out twice.
    let again = api.register("s", &v1()).await?;
    assert!(again > id2, "{again} after {id2}");
    assert_eq!(api.get("/subjects/s/versions").await?.body, json!([1]));
    Ok(())
}

#[tokio::test]
async fn subjects_with_slashes_and_spaces_round_trip() -> Result<()> {
    let (_broker, _registry, api) = start().await?;
    // schema_registry_converter escapes `/` as %2F.
    let id = api.register("team%2Fnotes%20v1", &v1()).await?;
    assert_eq!(api.get("/subjects").await?.body, json!(["team/notes v1"]));
    let reply = api
        .get("/subjects/team%2Fnotes%20v1/versions/latest")
        .await?;
    assert_eq!(reply.body["subject"], json!("team/notes v1"));
    assert_eq!(reply.body["id"], json!(id));
    Ok(())
}
