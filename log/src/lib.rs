//! The broker's storage: one `sled::Db` per broker, one set of trees per partition.
//!
//! - [`data_dir`]: locks the data directory and repairs sled's crash leftovers before
//!   sled opens it.
//! - [`partition`]: the partition log (append, read, offsets, retention, recovery).
//! - [`group_commit`]: shares one sled flush among concurrent `durability=always`
//!   produce requests.
//! - [`retention`]: the pure decision of which batches retention deletes.

pub mod data_dir;
pub mod group_commit;
pub mod partition;
pub mod retention;

use crate::{config::BrokerConfig, error::Result};

pub use data_dir::DataDirLock;
pub use group_commit::GroupCommit;
pub use partition::{LogOffsets, PartitionLog, ReadResult};

/// Opens the broker's database: takes the data-directory lock, removes incomplete sled
/// snapshots, then opens sled with the broker's cache and flush settings.
pub fn open(config: &BrokerConfig) -> Result<(sled::Db, DataDirLock)> {
    let lock = DataDirLock::acquire(&config.data_dir)?;
    let db_path = config.data_dir.join("db");
    data_dir::remove_incomplete_snapshots(&db_path)?;
    let db = sled::Config::new()
        .path(&db_path)
        .cache_capacity(config.cache_capacity_bytes)
        .flush_every_ms(Some(config.flush_interval.as_millis().max(1) as u64))
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(|e| crate::error::BrokerError::DataDir {
            path: db_path.display().to_string(),
            reason: format!("cannot open the log database: {e}"),
        })?;
    Ok((db, lock))
}

/// Name of a partition's tree of the given kind (`log`, `idx`, `ts`, `meta`).
pub(crate) fn tree_name(topic: &str, partition: u32, kind: &str) -> String {
    format!("t/{topic}/{partition}/{kind}")
}

/// Drops every tree of a partition (topic deletion).
pub fn drop_partition(db: &sled::Db, topic: &str, partition: u32) -> Result<()> {
    for kind in partition::TREE_KINDS {
        db.drop_tree(tree_name(topic, partition, kind))?;
    }
    Ok(())
}
