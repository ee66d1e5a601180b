//! [`LogStore`]: what every partition of a broker shares: the sled database (and in it
//! four global trees keyed by a partition id, so 10,000 partitions cost no trees), the
//! data directory holding one directory of segment files per partition, the roll
//! settings, and the set of segment files written but not yet flushed.
//!
//! Trees (keys start with the partition id, big-endian, so one partition's keys are
//! one range):
//!
//! - `log/pids`: `<topic>-<partition>` (the partition's directory name) → partition id.
//!   Assigned at the first append: a partition that never held data has no id, no
//!   directory and no other key.
//! - `log/idx`: id + base offset → where the batch is (segment, position, size) and
//!   what retention and recovery need (record count, max timestamp).
//! - `log/ts`: id + running max timestamp → base offset of the first batch reaching it.
//! - `log/epochs`: id + leader epoch → the offset of the first batch of that epoch
//!   (the leader-epoch history, Kafka's `leader-epoch-checkpoint`).
//! - `log/meta`: id + kind → log start offset, the target of a truncation in progress,
//!   and the recovery checkpoint (offset, segment and position up to which the segment
//!   files are known flushed).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use tracing::warn;

use crate::{
    error::{LogError, Result},
    segment::Segment,
};

/// Free space kept on the data directory's filesystem: appends are refused (disk full)
/// before it is used, so the database always has room for its own writes (sled makes an
/// I/O error of its flusher permanent until a restart).
pub const DISK_RESERVE_BYTES: u64 = 8 * 1024 * 1024;

/// `log/meta` kinds.
pub(crate) const META_LOG_START: u8 = 1;
pub(crate) const META_TRUNCATE: u8 = 2;
pub(crate) const META_CHECKPOINT: u8 = 3;

/// Key of a partition's entry in a global tree.
pub(crate) fn pkey(pid: u64, x: u64) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&pid.to_be_bytes());
    k[8..].copy_from_slice(&x.to_be_bytes());
    k
}

pub(crate) fn meta_key(pid: u64, kind: u8) -> [u8; 9] {
    let mut k = [0; 9];
    k[..8].copy_from_slice(&pid.to_be_bytes());
    k[8] = kind;
    k
}

/// The second half of a [`pkey`].
pub(crate) fn key_tail(k: &[u8]) -> Result<u64> {
    let a: [u8; 8] =
        k.get(8..16).and_then(|s| s.try_into().ok()).ok_or_else(|| LogError::Storage("bad index key".into()))?;
    Ok(u64::from_be_bytes(a))
}

pub(crate) fn u64_of(v: &[u8]) -> Result<u64> {
    let a: [u8; 8] =
        v.get(..8).and_then(|s| s.try_into().ok()).ok_or_else(|| LogError::Storage("bad stored offset".into()))?;
    Ok(u64::from_be_bytes(a))
}

/// Offset, segment and position up to which a partition's segment files are flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Checkpoint {
    pub offset: u64,
    pub segment: u64,
    pub position: u64,
}

impl Checkpoint {
    pub fn encode(&self) -> [u8; 24] {
        let mut b = [0; 24];
        b[..8].copy_from_slice(&self.offset.to_be_bytes());
        b[8..16].copy_from_slice(&self.segment.to_be_bytes());
        b[16..].copy_from_slice(&self.position.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != 24 {
            return Err(LogError::Storage("bad recovery checkpoint".into()));
        }
        Ok(Self { offset: u64_of(&b[..8])?, segment: u64_of(&b[8..16])?, position: u64_of(&b[16..])? })
    }
}

/// The part of a partition the flusher updates: its id and its recovery checkpoint.
/// Truncation bumps the generation under the same mutex, so a flush that started before
/// a truncation never writes a checkpoint beyond the truncated log.
#[derive(Debug)]
pub(crate) struct PartitionId {
    pub pid: u64,
    pub state: Mutex<CheckpointState>,
}

#[derive(Debug, Default)]
pub(crate) struct CheckpointState {
    pub generation: u64,
    pub written: Checkpoint,
}

/// A segment written since the last flush.
#[derive(Debug)]
struct Dirty {
    segment: Arc<Segment>,
    /// Directories whose entries changed (a new segment, a new partition directory).
    dirs: Vec<PathBuf>,
    partition: Arc<PartitionId>,
    generation: u64,
    checkpoint: Checkpoint,
}

/// Shared storage of all partitions (see the module documentation).
#[derive(Debug)]
pub struct LogStore {
    db: sled::Db,
    pub(crate) pids: sled::Tree,
    pub(crate) idx: sled::Tree,
    pub(crate) ts: sled::Tree,
    pub(crate) meta: sled::Tree,
    pub(crate) epochs: sled::Tree,
    data_dir: PathBuf,
    pub(crate) segment_bytes: u64,
    pub(crate) segment_ms: u64,
    pub(crate) recover: bool,
    dirty: Mutex<HashMap<(u64, u64), Dirty>>,
}

impl LogStore {
    pub(crate) fn new(
        db: sled::Db,
        data_dir: PathBuf,
        segment_bytes: u64,
        segment_ms: u64,
        recover: bool,
    ) -> Result<Self> {
        Ok(Self {
            pids: db.open_tree("log/pids")?,
            idx: db.open_tree("log/idx")?,
            ts: db.open_tree("log/ts")?,
            meta: db.open_tree("log/meta")?,
            epochs: db.open_tree("log/epochs")?,
            db,
            data_dir,
            segment_bytes: segment_bytes.clamp(1, u64::from(u32::MAX)),
            segment_ms: segment_ms.max(1),
            recover,
            dirty: Mutex::new(HashMap::new()),
        })
    }

    /// A store over a temporary database and directory (tests).
    pub fn temporary(data_dir: &Path, segment_bytes: u64) -> Result<Arc<Self>> {
        let db = sled::Config::new().temporary(true).open()?;
        Ok(Arc::new(Self::new(db, data_dir.to_path_buf(), segment_bytes, u64::MAX, false)?))
    }

    /// The database (for the broker's own trees: metadata, offsets, producer state).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Refuses a write of `bytes` when it would leave less than [`DISK_RESERVE_BYTES`]
    /// free on the data directory's filesystem.
    pub(crate) fn check_space(&self, bytes: u64) -> Result<()> {
        match fs2::available_space(&self.data_dir) {
            Ok(free) if free < bytes + DISK_RESERVE_BYTES => {
                Err(LogError::DiskFull { path: self.data_dir.display().to_string() })
            }
            _ => Ok(()),
        }
    }

    /// The directory name of a partition, `<topic>-<partition>` as Kafka's.
    pub fn dir_name(topic: &str, partition: u32) -> String {
        format!("{topic}-{partition}")
    }

    pub(crate) fn partition_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.data_dir.join(Self::dir_name(topic, partition))
    }

    /// The id of a partition that holds (or held) data.
    pub(crate) fn find_pid(&self, topic: &str, partition: u32) -> Result<Option<u64>> {
        self.pids.get(Self::dir_name(topic, partition))?.map(|v| u64_of(&v)).transpose()
    }

    /// Gives a partition its id at its first append. The id is flushed before any file
    /// of the partition exists, so a partition directory is never unknown to the database.
    pub(crate) fn assign_pid(&self, topic: &str, partition: u32) -> Result<u64> {
        let pid = self.db.generate_id()? + 1;
        self.pids.insert(Self::dir_name(topic, partition), &pid.to_be_bytes())?;
        self.db.flush()?;
        Ok(pid)
    }

    /// Notes that `segment` was written up to `checkpoint`; the next flush syncs it and
    /// then records the checkpoint.
    pub(crate) fn mark_dirty(
        &self,
        partition: &Arc<PartitionId>,
        generation: u64,
        segment: &Arc<Segment>,
        checkpoint: Checkpoint,
        dirs: Vec<PathBuf>,
    ) {
        let Ok(mut dirty) = self.dirty.lock() else { return };
        let e = dirty.entry((partition.pid, segment.base)).or_insert_with(|| Dirty {
            segment: segment.clone(),
            dirs: Vec::new(),
            partition: partition.clone(),
            generation,
            checkpoint,
        });
        e.dirs.extend(dirs);
        if checkpoint.offset >= e.checkpoint.offset {
            e.checkpoint = checkpoint;
            e.generation = generation;
        }
    }

    /// Flushes every segment written since the last flush (fdatasync, and the
    /// directories that gained entries), then records the partitions' recovery
    /// checkpoints. Blocking: call it off the async workers. On failure the segments stay
    /// marked, so the next flush tries again.
    pub fn flush_segments(&self) -> Result<usize> {
        let taken: Vec<Dirty> = {
            let mut dirty = self.dirty.lock().map_err(|_| LogError::Storage("dirty set lock poisoned".into()))?;
            dirty.drain().map(|(_, d)| d).collect()
        };
        let n = taken.len();
        let mut failed = None;
        for d in &taken {
            let r =
                d.dirs.iter().try_for_each(|dir| std::fs::File::open(dir)?.sync_all()).and_then(|()| d.segment.sync());
            if let Err(e) = r {
                failed = Some(LogError::io(&d.segment.path, "cannot flush", &e));
                break;
            }
        }
        if let Some(e) = failed {
            warn!(error = %e, "segment flush failed; will retry");
            for d in taken {
                self.mark_dirty(&d.partition, d.generation, &d.segment, d.checkpoint, d.dirs);
            }
            return Err(e);
        }
        for d in taken {
            self.record_checkpoint(&d.partition, d.generation, d.checkpoint)?;
        }
        Ok(n)
    }

    fn record_checkpoint(&self, p: &PartitionId, generation: u64, c: Checkpoint) -> Result<()> {
        let mut s = p.state.lock().map_err(|_| LogError::Storage("checkpoint lock poisoned".into()))?;
        if s.generation != generation || c.offset <= s.written.offset {
            return Ok(());
        }
        self.meta.insert(meta_key(p.pid, META_CHECKPOINT), &c.encode())?;
        s.written = c;
        Ok(())
    }

    /// Forgets dirty segments of a partition (it is being deleted or truncated).
    pub(crate) fn forget_dirty(&self, pid: u64, from_segment: u64) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.retain(|(p, s), _| *p != pid || *s < from_segment);
        }
    }

    /// Forgets one dirty segment (it is being unlinked).
    pub(crate) fn forget_dirty_segment(&self, pid: u64, segment: u64) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.remove(&(pid, segment));
        }
    }

    /// Flushes the database (index, metadata): before an irreversible file operation
    /// that the database must know about after a crash.
    pub(crate) fn flush_db(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Removes every key of a partition from the global trees, in bounded steps.
    pub(crate) fn remove_keys(&self, pid: u64) -> Result<()> {
        for tree in [&self.idx, &self.ts, &self.epochs] {
            remove_range(tree, pkey(pid, 0), pkey(pid, u64::MAX), true)?;
        }
        for kind in [META_LOG_START, META_TRUNCATE, META_CHECKPOINT] {
            self.meta.remove(meta_key(pid, kind))?;
        }
        Ok(())
    }
}

/// Removes the keys in `[from, to)` (`to` included when `inclusive`).
pub(crate) fn remove_range(tree: &sled::Tree, from: [u8; 16], to: [u8; 16], inclusive: bool) -> Result<u64> {
    let mut n = 0;
    let keys = if inclusive { tree.range(from..=to) } else { tree.range(from..to) };
    for k in keys.keys() {
        tree.remove(k?)?;
        n += 1;
    }
    Ok(n)
}
