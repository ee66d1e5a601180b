//! Produce-side vocabulary shared by clients and brokers: how many copies must store a
//! batch before it is acknowledged, and when a stored batch is on disk.

use std::{fmt, str::FromStr};

/// How many replicas must store a batch before the broker acknowledges it (Kafka's
/// `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Do not wait for storage (`acks=0`; offsets are not reported).
    None,
    /// The leader stored it (`acks=1`).
    Leader,
    /// All in-sync replicas stored it (`acks=all`, the default, as in Kafka 3).
    #[default]
    All,
}

impl Acks {
    /// Kafka's spelling: `0`, `1`, `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

impl FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err(format!("acks must be 0, 1 or all, not '{s}'")),
        }
    }
}

impl fmt::Display for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When an acknowledged batch is on disk (topic config `durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub enum Durability {
    /// The log is flushed every flush interval (Kafka's default behaviour: a produce
    /// is acknowledged once it is in the log, safe with replication).
    #[default]
    Interval,
    /// A produce is acknowledged only after the data is flushed to disk. Concurrent
    /// produce requests share one flush (group commit).
    Always,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Interval => "interval",
            Durability::Always => "always",
        }
    }
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "interval" => Ok(Self::Interval),
            "always" => Ok(Self::Always),
            other => Err(format!("durability must be 'interval' or 'always', not '{other}'")),
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_and_durability_round_trip_their_spelling() {
        for a in [Acks::None, Acks::Leader, Acks::All] {
            assert_eq!(a.as_str().parse::<Acks>(), Ok(a));
        }
        assert_eq!("-1".parse::<Acks>(), Ok(Acks::All));
        assert!("2".parse::<Acks>().unwrap_err().contains("0, 1 or all"));
        for d in [Durability::Interval, Durability::Always] {
            assert_eq!(d.as_str().parse::<Durability>(), Ok(d));
        }
        assert!("maybe".parse::<Durability>().unwrap_err().contains("'maybe'"));
    }
}
