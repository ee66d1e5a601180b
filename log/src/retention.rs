//! Which batches retention deletes: a pure decision over the batch index, so it can be
//! tested without storage. Whole batches are deleted from the head of the log.

/// What retention needs to know of one stored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub base_offset: u64,
    pub next_offset: u64,
    pub stored_len: u64,
    pub max_timestamp_ms: i64,
}

/// Retention limits of a topic (`None` = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionLimits {
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
}

/// Walks batches from the head (oldest first) and returns the new log start offset if
/// any batch is to be deleted.
///
/// - By time: a batch goes when its newest record is older than `now - retention.ms`;
///   the walk stops at the first batch that is young enough (as Kafka stops at the first
///   segment it keeps).
/// - By size: a batch goes while the partition would still hold at least
///   `retention.bytes` without it (Kafka's rule for segments).
pub fn plan(
    batches: impl Iterator<Item = BatchSummary>,
    total_bytes: u64,
    now_ms: i64,
    limits: RetentionLimits,
) -> Option<u64> {
    let cutoff = limits.retention_ms.map(|ms| now_ms.saturating_sub(ms.min(i64::MAX as u64) as i64));
    let mut remaining = total_bytes;
    let mut new_start = None;
    for b in batches {
        let too_old = cutoff.is_some_and(|c| b.max_timestamp_ms < c);
        let too_big = limits.retention_bytes.is_some_and(|max| remaining.saturating_sub(b.stored_len) >= max);
        if !(too_old || too_big) {
            break;
        }
        remaining -= b.stored_len.min(remaining);
        new_start = Some(b.next_offset);
    }
    new_start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(ts: &[i64], size: u64) -> Vec<BatchSummary> {
        ts.iter()
            .enumerate()
            .map(|(i, t)| BatchSummary {
                base_offset: i as u64 * 10,
                next_offset: i as u64 * 10 + 10,
                stored_len: size,
                max_timestamp_ms: *t,
            })
            .collect()
    }

    #[test]
    fn unlimited_keeps_everything() {
        let b = batches(&[0, 1, 2], 100);
        let limits = RetentionLimits { retention_ms: None, retention_bytes: None };
        assert_eq!(plan(b.into_iter(), 300, 1_000_000, limits), None);
    }

    #[test]
    fn time_deletes_old_prefix_only() {
        let b = batches(&[100, 200, 900, 150], 10);
        let limits = RetentionLimits { retention_ms: Some(500), retention_bytes: None };
        // cutoff = 1000 - 500 = 500: batches 0 and 1 go; batch 2 stops the walk, so
        // batch 3 (old but behind a young one) stays.
        assert_eq!(plan(b.into_iter(), 40, 1000, limits), Some(20));
    }

    #[test]
    fn size_keeps_at_least_the_limit() {
        let b = batches(&[0, 0, 0, 0, 0], 100);
        let limits = RetentionLimits { retention_ms: None, retention_bytes: Some(250) };
        // 500 bytes; deleting two leaves 300 >= 250, a third would leave 200 < 250.
        assert_eq!(plan(b.into_iter(), 500, 0, limits), Some(20));
    }

    #[test]
    fn size_zero_deletes_everything() {
        let b = batches(&[0, 0], 100);
        let limits = RetentionLimits { retention_ms: None, retention_bytes: Some(0) };
        assert_eq!(plan(b.into_iter(), 200, 0, limits), Some(20));
    }
}
