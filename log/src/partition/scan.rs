//! The walk over a partition's segment files that recovery uses: from a position, every
//! batch is read and checked (framing, base offset, CRC) until the end of the last
//! segment or the first failure, with the index entries the batches make.

use std::{collections::BTreeMap, sync::Arc};

use super::index::IdxEntry;
use crate::segment::Segment;

/// Where a scan stopped.
#[derive(Debug)]
pub(super) struct ScanEnd {
    /// Segment and position after the last valid batch.
    pub segment: Option<u64>,
    pub position: u64,
    /// Offset after the last valid batch.
    pub offset: u64,
    /// Why the scan stopped before the end of the last segment (file, position, reason).
    pub failure: Option<String>,
    /// Every valid batch met: base offset and index entry.
    pub batches: Vec<(u64, IdxEntry)>,
}

/// Scans from `position` of `segment` (whose batch there starts at `offset`) to the end
/// of the last segment. Later segments must start exactly where the previous one ends.
pub(super) fn scan(segments: &BTreeMap<u64, Arc<Segment>>, segment: u64, position: u64, offset: u64) -> ScanEnd {
    let mut end = ScanEnd { segment: None, position, offset, failure: None, batches: Vec::new() };
    let mut buf = Vec::new();
    for (i, (base, s)) in segments.range(segment..).enumerate() {
        let mut pos = if i == 0 { position } else { 0 };
        if i > 0 && *base != end.offset {
            end.failure = Some(format!(
                "{} starts at offset {base}, but the segment before it ends at offset {}",
                s.path.display(),
                end.offset
            ));
            return end;
        }
        end.segment = Some(*base);
        end.position = pos;
        loop {
            match s.read_batch(pos, end.offset, &mut buf) {
                Ok(None) => break,
                Ok(Some(h)) => {
                    let size = h.size() as u32;
                    end.batches.push((
                        end.offset,
                        IdxEntry {
                            segment: *base,
                            position: pos as u32,
                            size,
                            record_count: h.record_count.max(0) as u32,
                            max_ts: h.max_timestamp,
                        },
                    ));
                    pos += u64::from(size);
                    end.offset = h.next_offset();
                    end.position = pos;
                }
                Err(why) => {
                    end.failure = Some(format!("{} at byte {pos}: {why}", s.path.display()));
                    return end;
                }
            }
        }
    }
    end
}
