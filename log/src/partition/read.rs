//! Reads: whole batches from an offset up to the high watermark, and the lookup of the
//! first offset at or after a timestamp.

use bytes::{Bytes, BytesMut};
use sluice_core::batch::Records;

use super::{
    PartitionLog,
    keys::{key, offset_of, stored_header, ts_key},
};
use crate::{
    error::{LogError, Result},
    store::{PartitionStore, ReadResult},
};

impl PartitionLog {
    /// [`PartitionStore::read`].
    pub(super) fn read_from(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let offsets = self.offsets();
        let out_of_range = || LogError::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
            log_start: offsets.log_start,
            high_watermark: offsets.high_watermark,
        };
        let offset = u64::try_from(offset).map_err(|_| out_of_range())?;
        if offset < offsets.log_start || offset > offsets.high_watermark {
            return Err(out_of_range());
        }
        let mut out = BytesMut::new();
        if offset == offsets.high_watermark {
            return Ok(ReadResult { batches: out.freeze(), offsets });
        }
        let start = match self.trees.log.range(..=key(offset)).next_back() {
            Some(item) => item?.0,
            None => key(offset).as_ref().into(),
        };
        for item in self.trees.log.range(start..) {
            let (_, v) = item?;
            let h = stored_header(&v)?;
            if h.next_offset() > offsets.high_watermark {
                break;
            }
            if h.next_offset() <= offset {
                continue;
            }
            if !out.is_empty() && out.len() + v.len() > max_bytes {
                break;
            }
            out.extend_from_slice(&v);
            if out.len() >= max_bytes {
                break;
            }
        }
        Ok(ReadResult { batches: out.freeze(), offsets })
    }

    /// [`PartitionStore::offset_for_timestamp`].
    pub(super) fn lookup_timestamp(&self, ts_ms: i64) -> Result<Option<(u64, i64)>> {
        let offsets = self.offsets();
        let Some(item) = self.trees.ts.range(ts_key(ts_ms)..).next() else {
            return Ok(None);
        };
        let base = offset_of(&item?.1)?.max(offsets.log_start);
        let start = match self.trees.log.range(..=key(base)).next_back() {
            Some(item) => item?.0,
            None => key(base).as_ref().into(),
        };
        for item in self.trees.log.range(start..) {
            let (_, v) = item?;
            let h = stored_header(&v)?;
            if h.next_offset() > offsets.high_watermark {
                break;
            }
            if h.max_timestamp < ts_ms {
                continue;
            }
            for r in Records::new(Bytes::copy_from_slice(&v))? {
                let r = r?;
                if r.offset >= offsets.log_start && r.timestamp_ms >= ts_ms {
                    return Ok(Some((r.offset, r.timestamp_ms)));
                }
            }
        }
        Ok(None)
    }
}
