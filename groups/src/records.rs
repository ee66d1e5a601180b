//! The records of `__consumer_offsets`. One record per committed offset, keyed by
//! (group, topic, partition), so the newest record of a key is the truth and older ones
//! can be compacted away; a record without a value (tombstone) deletes the offset.
//! Key and value are small JSON objects: readable with `sluice consume`, and easy to
//! extend.

use serde::{Deserialize, Serialize};

use crate::{
    TopicPartition,
    error::{GroupError, Result},
};

/// Key of an offset record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: u32,
}

/// Value of an offset record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// Offset of the next record to consume.
    pub offset: u64,
    #[serde(default)]
    pub metadata: String,
    pub commit_time_ms: i64,
}

impl OffsetKey {
    pub fn new(group: &str, tp: &TopicPartition) -> Self {
        Self { group: group.to_string(), topic: tp.topic.clone(), partition: tp.partition }
    }

    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&self.topic, self.partition)
    }
}

pub fn encode_key(k: &OffsetKey) -> Result<Vec<u8>> {
    serde_json::to_vec(k).map_err(GroupError::Record)
}

pub fn encode_value(v: &Committed) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(GroupError::Record)
}

/// Decodes one record: `None` value is a tombstone.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<(OffsetKey, Option<Committed>)> {
    let k = serde_json::from_slice(key).map_err(GroupError::Record)?;
    let v = value.map(serde_json::from_slice).transpose().map_err(GroupError::Record)?;
    Ok((k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tombstone() {
        let k = OffsetKey::new("g", &TopicPartition::new("t", 3));
        let v = Committed { offset: 42, metadata: "m".into(), commit_time_ms: 7 };
        let (kb, vb) = (encode_key(&k).expect("key"), encode_value(&v).expect("value"));
        assert_eq!(decode(&kb, Some(&vb)).expect("decode"), (k.clone(), Some(v)));
        assert_eq!(decode(&kb, None).expect("decode"), (k, None));
        let err = decode(b"nope", None).unwrap_err();
        assert!(err.to_string().starts_with("storage error: offsets record: "), "{err}");
    }
}
