//! tansu-storage types whose fields are private and that have no public constructor
//! (`OffsetStage`, `MetadataResponse`) or getter (`OffsetCommitRequest`), built and read
//! through their serde derives. Only another engine of tansu's own crate can build them
//! directly; the tests below pin the field names, so a tansu upgrade that renames one
//! fails here rather than at a client.

use serde_json::{json, Value};
use tansu_sans_io::metadata_response::{MetadataResponseBroker, MetadataResponseTopic};
use tansu_storage::{Error, MetadataResponse, OffsetCommitRequest, OffsetStage, Result};

fn json_error(error: serde_json::Error) -> Error {
    Error::Message(format!("tansu type through serde: {error}"))
}

pub(crate) fn offset_stage(
    last_stable: i64,
    high_watermark: i64,
    log_start: i64,
) -> Result<OffsetStage> {
    serde_json::from_value(json!({
        "last_stable": last_stable,
        "high_watermark": high_watermark,
        "log_start": log_start,
    }))
    .map_err(json_error)
}

pub(crate) fn metadata_response(
    cluster: &str,
    controller: i32,
    broker: MetadataResponseBroker,
    topics: Vec<MetadataResponseTopic>,
) -> Result<MetadataResponse> {
    serde_json::from_value(json!({
        "cluster": cluster,
        "controller": controller,
        "brokers": [serde_json::to_value(broker).map_err(json_error)?],
        "topics": serde_json::to_value(topics).map_err(json_error)?,
    }))
    .map_err(json_error)
}

/// The offset and metadata a commit request carries.
pub(crate) fn commit_request(request: &OffsetCommitRequest) -> Result<(i64, Option<String>)> {
    let value = serde_json::to_value(request).map_err(json_error)?;
    let offset = value
        .get("offset")
        .and_then(Value::as_i64)
        .ok_or_else(|| Error::Message("offset commit request without an offset".into()))?;
    let metadata = value
        .get("metadata")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((offset, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_stages_carry_what_they_were_built_with() {
        let stage = offset_stage(5, 7, 2).unwrap();
        assert_eq!(
            (
                stage.last_stable(),
                stage.high_watermark(),
                stage.log_start()
            ),
            (5, 7, 2)
        );
    }

    #[test]
    fn metadata_responses_carry_what_they_were_built_with() {
        let broker = MetadataResponseBroker::default()
            .node_id(1)
            .host("h".into())
            .port(9);
        let topic = MetadataResponseTopic::default().name(Some("t".into()));
        let response = metadata_response("c", 1, broker, vec![topic]).unwrap();
        assert_eq!(response.cluster(), Some("c"));
        assert_eq!(response.controller(), Some(1));
        assert_eq!(response.brokers()[0].port, 9);
        assert_eq!(response.topics()[0].name.as_deref(), Some("t"));
    }

    #[test]
    fn commit_requests_give_their_offset() {
        let request = OffsetCommitRequest::default().offset(42);
        assert_eq!(commit_request(&request).unwrap(), (42, None));
    }
}
