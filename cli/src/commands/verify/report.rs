//! The result of a check: the counts, printed as two lines or as JSON.

use serde::Serialize;

use super::state::Acked;

/// What a check found (definitions in docs/verify.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Records acknowledged to the producer.
    pub acked: u64,
    /// Acknowledged, never read.
    pub lost: u64,
    /// Sequences read more than once.
    pub duplicates: u64,
    /// Sequences read, for the first time, after a higher sequence of the same partition.
    pub reordered: u64,
    /// Acknowledged records whose offset holds another record, or whose offset was
    /// acknowledged to another record too.
    pub offsets_reused: u64,
    /// Records handed to the producer.
    pub sent: u64,
    /// Records whose delivery failed.
    pub failed: u64,
    /// Sequences read that were never acknowledged (failed records may be stored: fine).
    pub unacked_seen: u64,
    /// Records read.
    pub read: u64,
    /// Records read that this producer did not write.
    pub other: u64,
    /// A few of the lost records, with where they were acknowledged.
    pub lost_examples: Vec<Acked>,
}

impl Counts {
    /// True when nothing acknowledged was lost, duplicated, reordered or overwritten.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.reordered == 0 && self.offsets_reused == 0
    }

    /// The first line: what the check is about.
    pub fn line(&self) -> String {
        format!(
            "acked={} lost={} duplicates={} reordered={} offsets_reused={}",
            self.acked, self.lost, self.duplicates, self.reordered, self.offsets_reused
        )
    }

    /// The second line: records whose fate was not acknowledged, and the totals.
    pub fn details(&self) -> String {
        format!(
            "sent={} failed={} unacked_seen={} read={} other={}",
            self.sent, self.failed, self.unacked_seen, self.read, self.other
        )
    }
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    pub topic: &'a str,
    pub producer: &'a str,
    pub clean: bool,
    #[serde(flatten)]
    pub counts: &'a Counts,
    /// Partitions read: [partition, log start offset, end offset].
    pub partitions: &'a [(u32, u64, u64)],
    pub topic_missing: bool,
    /// Delivery errors by message, with how many records each failed.
    pub errors: &'a std::collections::BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_name_every_count() {
        let c = Counts {
            acked: 10,
            lost: 1,
            duplicates: 2,
            reordered: 3,
            offsets_reused: 4,
            sent: 12,
            failed: 2,
            unacked_seen: 1,
            read: 12,
            other: 0,
            lost_examples: vec![],
        };
        assert_eq!(c.line(), "acked=10 lost=1 duplicates=2 reordered=3 offsets_reused=4");
        assert_eq!(c.details(), "sent=12 failed=2 unacked_seen=1 read=12 other=0");
        assert!(!c.clean());
        assert!(Counts::default().clean());
    }
}
