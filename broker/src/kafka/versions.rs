//! The APIs and versions this listener implements, which is exactly what ApiVersions
//! advertises. Minimums follow Kafka 4 (RecordBatch v2 only: Produce v3+, Fetch v4+);
//! maximums are what current clients (librdkafka 2.x, kafka-python, aiokafka, the Java
//! client) negotiate, stopping before versions that need topic ids or features the
//! broker does not have.

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, api_versions_response::ApiVersion};

/// (API, min version, max version).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
];

/// The supported range of an API, `None` when it is not implemented at all.
pub fn range(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == api).map(|&(_, min, max)| (min, max))
}

pub fn supports(api: ApiKey, version: i16) -> bool {
    range(api).is_some_and(|(min, max)| (min..=max).contains(&version))
}

/// The ApiVersions answer; `error_code` is UNSUPPORTED_VERSION (35) when the client
/// asked with a version this broker does not speak (it then retries with v0..max).
pub fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|&(k, min, max)| ApiVersion::default().with_api_key(k as i16).with_min_version(min).with_max_version(max))
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::Message;

    use super::*;

    #[test]
    fn every_advertised_range_is_one_the_codec_can_decode() {
        for &(api, min, max) in SUPPORTED {
            let codec = api.valid_versions();
            assert!(min >= codec.min && max <= codec.max && min <= max, "{api:?} {min}..{max} vs {codec}");
        }
        assert!(supports(ApiKey::Fetch, 12) && !supports(ApiKey::Fetch, 13) && !supports(ApiKey::Fetch, 3));
        assert_eq!(kafka_protocol::messages::ApiVersionsRequest::VERSIONS.max, 4);
    }
}
