//! Opening the broker's storage (lock, format marker, sled crash repair, the database,
//! the check that every partition directory is known to it) and removing the data of
//! partitions the broker no longer hosts.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use tracing::info;

use crate::{
    data_dir::{self, DataDirLock},
    error::{LogError, Result},
    storage::LogStore,
};

/// Default `--segment-bytes`: Kafka's `log.segment.bytes`.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;
/// Default `--segment-ms`: Kafka's `log.roll.ms` (7 days).
pub const DEFAULT_SEGMENT_MS: u64 = 7 * 24 * 3600 * 1000;

/// How the storage is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The data directory: the database lives in its `db` subdirectory, each partition's
    /// segment files in `<topic>-<partition>/`.
    pub data_dir: PathBuf,
    /// sled page cache size in bytes.
    pub cache_capacity_bytes: u64,
    /// How often sled flushes in the background.
    pub flush_interval: Duration,
    /// A segment is rolled when the next batch would take it past this size.
    pub segment_bytes: u64,
    /// A segment is rolled when it is this old.
    pub segment_ms: u64,
    /// Damage found at open truncates the partition to its last valid batch (logged)
    /// instead of refusing to start.
    pub recover: bool,
}

impl LogConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            cache_capacity_bytes: 128 * 1024 * 1024,
            flush_interval: Duration::from_millis(1000),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: DEFAULT_SEGMENT_MS,
            recover: false,
        }
    }
}

/// Opens the storage: takes the data-directory lock, checks (or, in a new directory,
/// writes) the data-format marker, removes incomplete sled snapshots, opens sled (a
/// panic inside sled is reported as an error), and refuses a database that does not
/// know the partition directories beside it (a lost or replaced database). The lock
/// must be kept as long as the storage is used.
pub fn open(config: &LogConfig) -> Result<(Arc<LogStore>, DataDirLock)> {
    let lock = DataDirLock::acquire(&config.data_dir)?;
    data_dir::check_format(&config.data_dir)?;
    let db_path = config.data_dir.join("db");
    let damaged = |reason: String| LogError::DataDir {
        path: db_path.display().to_string(),
        reason: format!(
            "{reason}; the log database is damaged or missing: restore the data directory from a backup \
             (with replication, start this broker on an empty --data-dir and let it re-fetch), or move it away \
             to start empty"
        ),
    };
    if !db_path.exists() && data_dir::partition_dirs(&config.data_dir)?.next().is_some() {
        return Err(damaged("it does not exist, but the directory holds partition directories".into()));
    }
    data_dir::remove_incomplete_snapshots(&db_path)?;
    let opened = catch_unwind(AssertUnwindSafe(|| {
        sled::Config::new()
            .path(&db_path)
            .cache_capacity(config.cache_capacity_bytes)
            .flush_every_ms(Some(config.flush_interval.as_millis().max(1) as u64))
            .mode(sled::Mode::HighThroughput)
            .open()
    }));
    let db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => return Err(damaged(format!("cannot open it: {e}"))),
        Err(panic) => return Err(damaged(format!("opening it failed inside sled: {}", panic_text(&panic)))),
    };
    let store = catch_unwind(AssertUnwindSafe(|| {
        LogStore::new(db, config.data_dir.clone(), config.segment_bytes, config.segment_ms, config.recover)
    }))
    .map_err(|p| damaged(format!("reading it failed inside sled: {}", panic_text(&p))))?
    .map_err(|e| damaged(format!("cannot read it: {e}")))?;
    let mut unknown = Vec::new();
    for name in data_dir::partition_dirs(&config.data_dir)? {
        if store.pids.get(&name).map_err(|e| damaged(format!("cannot read it: {e}")))?.is_none() {
            unknown.push(name);
        }
    }
    if !unknown.is_empty() {
        unknown.sort();
        let more = if unknown.len() > 5 { format!(" and {} more", unknown.len() - 5) } else { String::new() };
        unknown.truncate(5);
        return Err(damaged(format!(
            "it does not know the partition directories {}{more} beside it",
            unknown.join(", ")
        )));
    }
    Ok((Arc::new(store), lock))
}

/// The message of a caught panic.
pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}

/// Deletes a partition's data: unlinks its directory, then forgets its keys (topic
/// deletion, or a partition moved away). Memory stays constant whatever its size.
pub fn drop_partition(store: &LogStore, topic: &str, partition: u32) -> Result<()> {
    let dir = store.partition_dir(topic, partition);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LogError::io(&dir, "cannot delete", &e)),
    }
    if let Some(pid) = store.find_pid(topic, partition)? {
        store.forget_dirty(pid, 0);
        store.remove_keys(pid)?;
        store.pids.remove(LogStore::dir_name(topic, partition))?;
    }
    Ok(())
}

/// Deletes the data of every stored partition for which `hosted(topic, partition)` is
/// false (for example deleted while the broker was down). Returns their names.
pub fn drop_unhosted_partitions(store: &LogStore, hosted: impl Fn(&str, u32) -> bool) -> Result<Vec<String>> {
    let mut dropped = Vec::new();
    for item in store.pids.iter() {
        let (k, _) = item?;
        let Ok(name) = std::str::from_utf8(&k) else { continue };
        let Some((topic, partition)) = data_dir::parse_partition_dir(name) else { continue };
        if !hosted(topic, partition) {
            drop_partition(store, topic, partition)?;
            info!(partition = name, "dropped the data of a partition this broker does not host");
            dropped.push(name.to_string());
        }
    }
    Ok(dropped)
}
