//! The snapshot encoding of a [`ProducerStateManager`]: a version byte, then every
//! producer (id, epoch, last append time, its cached batches), big-endian.

use std::collections::{HashMap, VecDeque};

use super::{BatchMetadata, MAX_CACHED_BATCHES, ProducerEntry, ProducerStateManager};

/// The format written by [`ProducerStateManager::encode`].
const VERSION: u8 = 1;

/// A snapshot that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("producer-state snapshot has version {0}; this broker reads version {VERSION}")]
    Version(u8),
    #[error("producer-state snapshot truncated at byte {0}")]
    Truncated(usize),
    #[error("producer-state snapshot has {0} trailing bytes")]
    Trailing(usize),
}

impl ProducerStateManager {
    /// Encodes the state (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(5 + self.producers.len() * (19 + MAX_CACHED_BATCHES * 24));
        b.push(VERSION);
        b.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort();
        for id in ids {
            let e = &self.producers[id];
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&e.epoch.to_be_bytes());
            b.extend_from_slice(&e.last_append_ms.to_be_bytes());
            b.push(e.batches.len() as u8);
            for m in &e.batches {
                b.extend_from_slice(&m.first_sequence.to_be_bytes());
                b.extend_from_slice(&m.last_sequence.to_be_bytes());
                b.extend_from_slice(&m.base_offset.to_be_bytes());
                b.extend_from_slice(&m.last_offset.to_be_bytes());
            }
        }
        b
    }

    /// Decodes what [`Self::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut r = Reader { b: bytes, at: 0 };
        let version = r.take::<1>()?[0];
        if version != VERSION {
            return Err(SnapshotError::Version(version));
        }
        let count = u32::from_be_bytes(r.take()?);
        let mut producers = HashMap::with_capacity(count.min(1 << 16) as usize);
        for _ in 0..count {
            let id = i64::from_be_bytes(r.take()?);
            let epoch = i16::from_be_bytes(r.take()?);
            let last_append_ms = i64::from_be_bytes(r.take()?);
            let n = r.take::<1>()?[0];
            let mut batches = VecDeque::with_capacity(usize::from(n));
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_sequence: i32::from_be_bytes(r.take()?),
                    last_sequence: i32::from_be_bytes(r.take()?),
                    base_offset: u64::from_be_bytes(r.take()?),
                    last_offset: u64::from_be_bytes(r.take()?),
                });
            }
            producers.insert(id, ProducerEntry { epoch, batches, last_append_ms });
        }
        if r.at != bytes.len() {
            return Err(SnapshotError::Trailing(bytes.len() - r.at));
        }
        Ok(Self { producers })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let s = self.b.get(self.at..self.at + N).ok_or(SnapshotError::Truncated(self.at))?;
        self.at += N;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}
