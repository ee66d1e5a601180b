//! What a producing run leaves for the check: the values it writes, and the state file
//! (what was sent, acknowledged where, and what failed).

use std::{
    collections::BTreeMap,
    io::{BufReader, BufWriter, Write},
    path::Path,
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// First word of every value `sluice verify` writes.
const MAGIC: &str = "sluice-verify";
const VERSION: u32 = 1;

/// The value of record `seq` of `producer`, padded with '.' to `pad_to` bytes.
pub fn value(producer: &str, seq: u64, pad_to: usize) -> Vec<u8> {
    let mut v = format!("{MAGIC} {producer} {seq}").into_bytes();
    if v.len() < pad_to {
        v.push(b' ');
        v.resize(pad_to, b'.');
    }
    v
}

/// The producer and sequence a value carries, when `sluice verify` wrote it.
pub fn parse_value(value: &[u8]) -> Option<(&str, u64)> {
    let text = std::str::from_utf8(value.get(..value.len().min(128))?).ok()?;
    let mut words = text.split(' ');
    if words.next()? != MAGIC {
        return None;
    }
    let producer = words.next()?;
    let seq = words.next()?.trim_end_matches('.').parse().ok()?;
    Some((producer, seq))
}

/// An acknowledged record: where the broker said it stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    pub seq: u64,
    pub partition: u32,
    pub offset: u64,
}

/// Everything a check needs from a producing run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub topic: String,
    pub producer: String,
    /// Sequences 0..sent were handed to the producer.
    pub sent: u64,
    pub acked: Vec<Acked>,
    /// Sequences whose delivery failed (they may still have been stored).
    pub failed: Vec<u64>,
    /// Delivery errors by message, with how many records each failed.
    pub errors: BTreeMap<String, u64>,
    pub rate: u32,
    pub started_ms: i64,
    pub finished_ms: i64,
}

impl State {
    pub fn new(topic: &str, producer: &str, rate: u32, started_ms: i64) -> Self {
        Self { version: VERSION, topic: topic.into(), producer: producer.into(), rate, started_ms, ..Self::default() }
    }

    /// Writes the state to `path` (a temporary file renamed into place, so a reader never
    /// sees half of one).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
            serde_json::to_writer(&mut w, self)?;
            w.flush()?;
            w.get_ref().sync_all()
        };
        write().with_context(|| format!("cannot write the state file {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write the state file {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open the state file {}", path.display()))?;
        let state: State = serde_json::from_reader(BufReader::new(file))
            .with_context(|| format!("{} is not a state file of sluice verify", path.display()))?;
        if state.version != VERSION {
            bail!("{}: state file version {} (this sluice reads {VERSION})", path.display(), state.version);
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_producer_and_sequence() {
        let v = value("p1", 42, 0);
        assert_eq!(v, b"sluice-verify p1 42");
        assert_eq!(parse_value(&v), Some(("p1", 42)));
        let padded = value("p1", 7, 100);
        assert_eq!(padded.len(), 100);
        assert_eq!(parse_value(&padded), Some(("p1", 7)));
        assert_eq!(parse_value(b"hello"), None);
        assert_eq!(parse_value(b"sluice-verify p1 x"), None);
        assert_eq!(parse_value(&[0xff, 0xfe]), None);
    }

    #[test]
    fn a_state_survives_a_round_trip_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = State::new("t", "p", 10, 1);
        s.sent = 3;
        s.acked = vec![Acked { seq: 0, partition: 1, offset: 5 }];
        s.failed = vec![2];
        s.errors.insert("boom".into(), 1);
        s.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), s);
        std::fs::write(&path, "{}").unwrap();
        assert!(State::load(&path).is_err());
    }
}
