//! The broker's log database: opening it (lock, crash repair, sled settings) and the
//! naming of each partition's trees (`t/<topic>/<partition>/<kind>`).

use std::{path::PathBuf, time::Duration};

use crate::{
    data_dir::{self, DataDirLock},
    error::{LogError, Result},
    partition,
};

/// How the log database is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The data directory; the database lives in its `db` subdirectory.
    pub data_dir: PathBuf,
    /// sled page cache size in bytes.
    pub cache_capacity_bytes: u64,
    /// How often sled flushes in the background (`durability=interval`).
    pub flush_interval: Duration,
}

/// Opens the log database: takes the data-directory lock, checks (or, in a new
/// directory, writes) the data-format marker, removes incomplete sled snapshots, then
/// opens sled with the cache and flush settings. The lock must be kept as long as the
/// database is used.
pub fn open(config: &LogConfig) -> Result<(sled::Db, DataDirLock)> {
    let lock = DataDirLock::acquire(&config.data_dir)?;
    data_dir::check_format(&config.data_dir)?;
    let db_path = config.data_dir.join("db");
    data_dir::remove_incomplete_snapshots(&db_path)?;
    let db = sled::Config::new()
        .path(&db_path)
        .cache_capacity(config.cache_capacity_bytes)
        .flush_every_ms(Some(config.flush_interval.as_millis().max(1) as u64))
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(|e| LogError::DataDir {
            path: db_path.display().to_string(),
            reason: format!("cannot open the log database: {e}"),
        })?;
    Ok((db, lock))
}

/// Name of a partition's tree of the given kind (`log`, `idx`, `ts`, `meta`).
pub(crate) fn tree_name(topic: &str, partition: u32, kind: &str) -> String {
    format!("t/{topic}/{partition}/{kind}")
}

/// The topic and partition a tree belongs to, when it is a partition's tree.
fn partition_of_tree(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix("t/")?;
    let (topic_partition, _kind) = rest.rsplit_once('/')?;
    let (topic, partition) = topic_partition.rsplit_once('/')?;
    Some((topic, partition.parse().ok()?))
}

/// Drops every tree of a partition (topic deletion, or a partition moved away).
pub fn drop_partition(db: &sled::Db, topic: &str, partition: u32) -> Result<()> {
    for kind in partition::TREE_KINDS {
        db.drop_tree(tree_name(topic, partition, kind))?;
    }
    Ok(())
}

/// Drops the trees of every stored partition for which `hosted(topic, partition)` is
/// false (for example deleted while the broker was down). Returns the trees dropped.
pub fn drop_unhosted_partitions(db: &sled::Db, hosted: impl Fn(&str, u32) -> bool) -> Result<Vec<String>> {
    let mut dropped = Vec::new();
    for tree in db.tree_names() {
        let Ok(name) = std::str::from_utf8(&tree) else { continue };
        let Some((topic, partition)) = partition_of_tree(name) else { continue };
        if !hosted(topic, partition) {
            db.drop_tree(&tree)?;
            dropped.push(name.to_string());
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_names_parse_back_to_their_partition() {
        assert_eq!(partition_of_tree(&tree_name("orders", 3, "idx")), Some(("orders", 3)));
        assert_eq!(partition_of_tree(&tree_name("a/b", 12, "log")), Some(("a/b", 12)));
        assert_eq!(partition_of_tree("metadata/topics"), None);
        assert_eq!(partition_of_tree("t/orders/x/log"), None);
    }

    #[test]
    fn open_locks_the_directory_and_repairs_incomplete_snapshots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            data_dir: dir.path().to_path_buf(),
            cache_capacity_bytes: 1 << 20,
            flush_interval: Duration::from_millis(100),
        };
        let (db, lock) = open(&config).expect("open");
        assert_eq!(lock.path(), dir.path().join("broker.lock"));
        db.insert(b"k", b"v").expect("insert");
        db.flush().expect("flush");
        let err = open(&config).expect_err("locked").to_string();
        assert!(err.starts_with(&format!("data directory {}: is already in use", dir.path().display())), "{err}");
        drop((db, lock));
        // What a kill during sled's open can leave behind.
        let generating = dir.path().join("db").join("snap.00000000000000A0.generating");
        std::fs::write(&generating, b"").expect("write");
        let (db, _lock) = open(&config).expect("reopen");
        assert!(!generating.exists());
        assert_eq!(db.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn only_unhosted_partitions_are_dropped() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        for (topic, p) in [("keep", 0), ("keep", 1), ("gone", 0)] {
            crate::PartitionLog::open(&db, topic, p).expect("open");
        }
        db.open_tree("metadata/topics").expect("tree");
        let mut dropped = drop_unhosted_partitions(&db, |t, p| t == "keep" && p == 0).expect("drop");
        dropped.sort();
        let mut expected: Vec<String> =
            partition::TREE_KINDS.iter().flat_map(|k| [tree_name("gone", 0, k), tree_name("keep", 1, k)]).collect();
        expected.sort();
        assert_eq!(dropped, expected);
        let left: Vec<String> =
            db.tree_names().iter().filter_map(|n| std::str::from_utf8(n).ok().map(String::from)).collect();
        assert!(left.contains(&"metadata/topics".to_string()), "{left:?}");
        assert!(left.contains(&tree_name("keep", 0, "log")), "{left:?}");
        drop_partition(&db, "keep", 0).expect("drop partition");
        assert!(drop_unhosted_partitions(&db, |_, _| false).expect("drop").is_empty());
    }
}
