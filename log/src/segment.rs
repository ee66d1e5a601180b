//! One segment file of a partition: `<base offset, 20 digits>.log`, record batches (Kafka
//! RecordBatch v2) back to back, appended with positioned writes and read with
//! positioned reads (never mapped, never read whole), and the checks a stored batch
//! must pass (framing, base offset, magic, CRC).

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
};

use sluice_core::{
    BatchHeader,
    batch::{HEADER_LEN, LOG_OVERHEAD, MAGIC, compute_crc},
};

/// Suffix of segment files.
pub(crate) const SUFFIX: &str = ".log";

/// The file name of the segment starting at `base`.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:020}{SUFFIX}")
}

/// The base offset a segment file name stands for.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// An open segment file. Appends are serialised by the partition lock; reads may run
/// concurrently (positioned I/O shares no cursor).
#[derive(Debug)]
pub(crate) struct Segment {
    pub base: u64,
    pub path: PathBuf,
    file: File,
    /// Bytes of whole batches written (the next append goes here).
    len: AtomicU64,
    /// Offset after the last batch of the segment.
    end: AtomicU64,
    batches: AtomicU64,
    max_ts: AtomicI64,
    /// When the segment was created (or, reopened, last modified): `segment.ms` rolls.
    pub created_ms: i64,
}

impl Segment {
    /// Creates a new, empty segment file in `dir`.
    pub fn create(dir: &Path, base: u64, now_ms: i64) -> io::Result<Self> {
        let path = dir.join(file_name(base));
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        Ok(Self::with(base, path, file, 0, now_ms))
    }

    /// Opens an existing segment file; its length is the file's.
    pub fn open(path: PathBuf, base: u64) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let meta = file.metadata()?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        Ok(Self::with(base, path, file, meta.len(), modified))
    }

    fn with(base: u64, path: PathBuf, file: File, len: u64, created_ms: i64) -> Self {
        Self {
            base,
            path,
            file,
            len: AtomicU64::new(len),
            end: AtomicU64::new(base),
            batches: AtomicU64::new(0),
            max_ts: AtomicI64::new(i64::MIN),
            created_ms,
        }
    }

    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    pub fn end_offset(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    pub fn batch_count(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_ts.load(Ordering::Relaxed)
    }

    /// Counts one more batch of the segment (append, or the index walk at open).
    pub fn account(&self, next_offset: u64, max_ts: i64) {
        self.end.fetch_max(next_offset, Ordering::AcqRel);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.max_ts.fetch_max(max_ts, Ordering::Relaxed);
    }

    /// Writes a whole batch at the end. On failure nothing is counted: the next append
    /// overwrites whatever part was written.
    pub fn append(&self, batch: &[u8], next_offset: u64, max_ts: i64) -> io::Result<u64> {
        let pos = self.len();
        if let Err(e) = self.file.write_all_at(batch, pos) {
            // Drop what part was written (best effort: the next append overwrites it).
            let _ = self.file.set_len(pos);
            return Err(e);
        }
        self.len.store(pos + batch.len() as u64, Ordering::Release);
        self.account(next_offset, max_ts);
        Ok(pos)
    }

    /// Reads `len` bytes at `pos`.
    pub fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.file.read_exact_at(&mut buf, pos)?;
        Ok(buf)
    }

    /// Makes everything written so far durable (fdatasync).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Cuts the file at `len` bytes, durably; the segment then ends at `end_offset`.
    pub fn truncate(&self, len: u64, end_offset: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_data()?;
        self.len.store(len, Ordering::Release);
        self.end.store(end_offset, Ordering::Release);
        Ok(())
    }

    /// Resets the counters the index walk at open recomputes.
    pub fn reset_counts(&self) {
        self.end.store(self.base, Ordering::Release);
        self.batches.store(0, Ordering::Relaxed);
        self.max_ts.store(i64::MIN, Ordering::Relaxed);
    }

    /// Reads the batch at `pos` into `buf` and checks it (see [`check_batch`]). `Ok(None)`
    /// exactly at the end of the file; `Err` says why the bytes there are no valid batch.
    pub fn read_batch(&self, pos: u64, expected_base: u64, buf: &mut Vec<u8>) -> Result<Option<BatchHeader>, String> {
        let file_len = self.len();
        if pos == file_len {
            return Ok(None);
        }
        if pos > file_len {
            return Err(format!("the file is {file_len} bytes, shorter than what was written to it"));
        }
        if pos + HEADER_LEN as u64 > file_len {
            return Err(format!("{} bytes at the end are too short for a batch header", file_len - pos));
        }
        buf.resize(HEADER_LEN, 0);
        self.file.read_exact_at(buf, pos).map_err(|e| format!("cannot read: {e}"))?;
        let h = BatchHeader::parse(buf).ok_or("no batch header")?;
        if h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 || pos + h.size() as u64 > file_len {
            return Err(format!("batch length {} does not fit the {} bytes left", h.batch_length, file_len - pos));
        }
        buf.resize(h.size(), 0);
        self.file
            .read_exact_at(&mut buf[HEADER_LEN..], pos + HEADER_LEN as u64)
            .map_err(|e| format!("cannot read: {e}"))?;
        check_batch(buf, expected_base).map(Some)
    }
}

/// What a stored batch must be: a whole RecordBatch v2 with the expected base offset,
/// magic 2, a matching CRC and a record count that agrees with its offset range.
pub(crate) fn check_batch(b: &[u8], expected_base: u64) -> Result<BatchHeader, String> {
    let h = BatchHeader::parse(b).ok_or("no batch header")?;
    if h.size() != b.len() {
        return Err(format!("batch length {} does not match its {} stored bytes", h.batch_length, b.len()));
    }
    if h.magic != MAGIC {
        return Err(format!("unknown magic byte {}", h.magic));
    }
    if h.base_offset < 0 || h.first_offset() != expected_base {
        return Err(format!("base offset {} where {expected_base} was expected", h.base_offset));
    }
    if h.record_count < 1 || h.last_offset_delta != h.record_count - 1 {
        return Err(format!("record count {} does not match lastOffsetDelta {}", h.record_count, h.last_offset_delta));
    }
    let crc = compute_crc(b);
    if crc != h.crc {
        return Err(format!("CRC mismatch (stored {:#010x}, computed {crc:#010x})", h.crc));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_twenty_digits_and_parse_back() {
        assert_eq!(file_name(42), "00000000000000000042.log");
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_name("42.log"), None);
        assert_eq!(parse_name("0000000000000000004x.log"), None);
        assert_eq!(parse_name("00000000000000000042.index"), None);
    }
}
