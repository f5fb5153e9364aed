//! The broker's `ApiVersions` answer: one entry per API the route table serves, with the
//! version range we answer correctly.
//!
//! WHY our own and not tansu-service's `ApiVersionsService`: tansu's answer (v3+) carries
//! all four tagged fields of the response (`SupportedFeatures`, `FinalizedFeaturesEpoch`,
//! `FinalizedFeatures`, `ZkMigrationReady`) with their default values. Apache Kafka writes
//! a tagged field only when it differs from its default, so a broker without features
//! sends none. librdkafka before 2.1 skips a tagged field of length N by N - 1 bytes, so
//! Debian's kcat 1.7.1 (librdkafka 2.0.2) misreads the eight bytes of the epoch as a
//! length and fails with "Protocol read buffer underflow for ApiVersion v3 at 267/272"
//! (reproduced against tansu 0.6; the numbers decode exactly that way). We send no tagged
//! fields, as Kafka does, and librdkafka of every version parses the answer.

use std::sync::Arc;

use tansu_sans_io::{
    api_versions_response::ApiVersion, ApiKey as _, ApiVersionsRequest, ApiVersionsResponse,
    ErrorCode, RootMessageMeta,
};

/// Highest versions we advertise below what tansu's message model knows, by API key.
///
/// An API absent here is advertised with the full range tansu decodes and encodes.
const CAPS: &[(i16, i16)] = &[];

/// The `ApiVersions` answer, computed once from the keys the route table serves.
#[derive(Clone, Debug)]
pub(crate) struct ApiVersions {
    keys: Arc<[ApiVersion]>,
}

impl ApiVersions {
    /// The answer for a route table serving `routed` (ApiVersions itself is added).
    pub(crate) fn new(routed: impl IntoIterator<Item = i16>) -> Self {
        let requests = RootMessageMeta::messages().requests();
        let mut keys: Vec<i16> = routed.into_iter().collect();
        keys.push(ApiVersionsRequest::KEY);
        keys.sort_unstable();
        keys.dedup();
        let keys = keys
            .into_iter()
            .filter_map(|key| requests.get(&key).map(|meta| (key, meta.version.valid)))
            .map(|(key, valid)| {
                let max = CAPS
                    .iter()
                    .find(|(capped, _)| *capped == key)
                    .map_or(valid.end, |(_, cap)| valid.end.min(*cap));
                ApiVersion::default()
                    .api_key(key)
                    .min_version(valid.start)
                    .max_version(max)
            })
            .collect();
        Self { keys }
    }

    /// The response body: no tagged field is set, so none is written (see the module doc).
    pub(crate) fn response(&self) -> ApiVersionsResponse {
        ApiVersionsResponse::default()
            .error_code(ErrorCode::None.into())
            .api_keys(Some(self.keys.to_vec()))
            .throttle_time_ms(Some(0))
            .supported_features(None)
            .finalized_features_epoch(None)
            .finalized_features(None)
            .zk_migration_ready(None)
    }
}

#[cfg(test)]
mod tests {
    use tansu_sans_io::{Frame, Header, MetadataRequest, ProduceRequest};

    use super::*;

    /// The v3 answer as librdkafka 2.0.2 reads it: size, correlation id, error code,
    /// compact array of (key, min, max, no tags), throttle time, and an empty tag buffer.
    #[test]
    fn v3_answer_carries_no_tagged_fields() {
        let versions = ApiVersions::new([MetadataRequest::KEY, ProduceRequest::KEY]);
        let encoded = Frame::response(
            Header::Response { correlation_id: 7 },
            versions.response().into(),
            ApiVersionsRequest::KEY,
            3,
        )
        .expect("encode");
        let keys = 3; // Metadata, Produce, ApiVersions.
        assert_eq!(encoded.len(), 4 + 4 + 2 + 1 + keys * 7 + 4 + 1);
        assert_eq!(
            encoded[10],
            u8::try_from(keys + 1).expect("small"),
            "compact array length"
        );
        assert_eq!(encoded.last(), Some(&0), "no tagged field");
    }
}
