//! Basic authentication with read, write and admin roles: through the router, and with
//! `schema_registry_converter` sending `basic.auth.user.info` over a loopback socket.

use anyhow::{Context as _, Result};
use axum::{
    body::Body,
    http::{header, Request},
};
use notesaga_registry::{auth::basic_header, serve, Access, Role, User};
use schema_registry_converter::{
    async_impl::{avro::AvroEncoder, schema_registry::SrSettings},
    schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema},
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::support::{broker, config, record, Api, Reply, VND};

fn users() -> Access {
    Access::users([
        User::new("analyst", "read-pw", Role::Read),
        User::new("service", "write-pw", Role::Write),
        User::new("operator", "admin-pw", Role::Admin),
    ])
}

/// A request as `user_info` (`None`: anonymous).
async fn call(
    api: &Api,
    method: &str,
    uri: &str,
    body: Option<Value>,
    user_info: Option<&str>,
) -> Result<Reply> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(info) = user_info {
        builder = builder.header(header::AUTHORIZATION, basic_header(info));
    }
    let request = match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, VND)
            .body(Body::from(body.to_string()))?,
        None => builder.body(Body::empty())?,
    };
    api.send(request).await
}

#[tokio::test]
async fn roles_decide_who_registers_deletes_and_configures() -> Result<()> {
    let broker = broker().await?;
    let registry = notesaga_registry::Registry::open(config(
        &broker,
        &notesaga_testkit::random_name("schemas"),
    ))
    .await?;
    let api = Api::secured(registry.clone(), users());
    let subject = "notes.events-notesaga.test.Secured";
    let schema = json!({ "schema": record("Secured", r#"[{"name":"a","type":"string"}]"#) });
    let versions = format!("/subjects/{subject}/versions");

    // No credentials: writes are refused with 401, reads are allowed.
    let anonymous = call(&api, "POST", &versions, Some(schema.clone()), None).await?;
    assert_eq!((anonymous.status, anonymous.code()), (401, Some(40101)));
    assert_eq!(
        call(&api, "GET", "/subjects", None, None).await?.status,
        200
    );
    // Wrong password: 401 even for a read.
    let wrong = call(&api, "GET", "/subjects", None, Some("service:nope")).await?;
    assert_eq!(wrong.status, 401);

    // Read-only credentials: 403 on writes.
    let reader = call(
        &api,
        "POST",
        &versions,
        Some(schema.clone()),
        Some("analyst:read-pw"),
    )
    .await?;
    assert_eq!((reader.status, reader.code()), (403, Some(40301)));

    // The write role registers, and may look up and check compatibility, not delete.
    let written = call(
        &api,
        "POST",
        &versions,
        Some(schema.clone()),
        Some("service:write-pw"),
    )
    .await?;
    assert_eq!(written.status, 200, "{written:?}");
    assert!(written.body["id"].is_u64());
    let lookup = call(
        &api,
        "POST",
        &format!("/subjects/{subject}"),
        Some(schema.clone()),
        Some("analyst:read-pw"),
    )
    .await?;
    assert_eq!(lookup.status, 200, "a lookup is a read: {lookup:?}");
    for (method, uri, body) in [
        ("DELETE", format!("/subjects/{subject}"), None),
        ("DELETE", format!("/subjects/{subject}/versions/1"), None),
        (
            "PUT",
            "/config".to_owned(),
            Some(json!({"compatibility": "NONE"})),
        ),
        (
            "PUT",
            format!("/config/{subject}"),
            Some(json!({"compatibility": "NONE"})),
        ),
    ] {
        let refused = call(&api, method, &uri, body.clone(), Some("service:write-pw")).await?;
        assert_eq!(refused.status, 403, "{method} {uri} as writer: {refused:?}");
        let anonymous = call(&api, method, &uri, body, None).await?;
        assert_eq!(
            anonymous.status, 401,
            "{method} {uri} anonymously: {anonymous:?}"
        );
    }
    // Nothing was deleted or reconfigured by the refused calls.
    let still = call(&api, "GET", &versions, None, None).await?;
    assert_eq!(still.body, json!([1]));
    let level = call(&api, "GET", "/config", None, None).await?;
    assert_eq!(level.body["compatibilityLevel"], "BACKWARD");

    // The admin role deletes and configures.
    let config = call(
        &api,
        "PUT",
        "/config",
        Some(json!({"compatibility": "FULL"})),
        Some("operator:admin-pw"),
    )
    .await?;
    assert_eq!(config.status, 200, "{config:?}");
    let deleted = call(
        &api,
        "DELETE",
        &format!("/subjects/{subject}"),
        None,
        Some("operator:admin-pw"),
    )
    .await?;
    assert_eq!((deleted.status, deleted.body.clone()), (200, json!([1])));

    // Anonymous reads turned off: every request authenticates.
    let closed = Api::secured(registry, users().with_anonymous_read(false));
    let refused = call(&closed, "GET", "/subjects", None, None).await?;
    assert_eq!(refused.status, 401);
    let read = call(&closed, "GET", "/subjects", None, Some("analyst:read-pw")).await?;
    assert_eq!(read.status, 200);
    Ok(())
}

#[tokio::test]
async fn the_converter_sends_basic_auth_user_info() -> Result<()> {
    let broker = broker().await?;
    let registry = notesaga_registry::Registry::open(config(
        &broker,
        &notesaga_testkit::random_name("schemas"),
    ))
    .await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, registry, users(), shutdown.clone()));

    let schema = record("Converted", r#"[{"name":"a","type":"string"}]"#);
    let strategy = || {
        SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
            "notes.events".to_owned(),
            SuppliedSchema::new(
                Some("notesaga.test.Converted".to_owned()),
                SchemaType::Avro,
                schema.clone(),
            ),
        )
    };
    let fields = || vec![("a", apache_avro::types::Value::String("x".into()))];

    let anonymous = AvroEncoder::new(SrSettings::new_builder(url.clone()).no_proxy().build()?);
    let refused = anonymous.encode(fields(), strategy()).await;
    assert!(
        refused.is_err(),
        "registering without credentials must fail"
    );

    let mut builder = SrSettings::new_builder(url.clone());
    builder
        .no_proxy()
        .set_basic_authorization("service", Some("write-pw"));
    let encoder = AvroEncoder::new(builder.build()?);
    let bytes = encoder
        .encode(fields(), strategy())
        .await
        .context("encoding as the write role")?;
    assert_eq!(bytes[0], 0);

    shutdown.cancel();
    server.await??;
    Ok(())
}
