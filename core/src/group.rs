//! Consumer-group vocabulary shared by clients, brokers and the operator.

use std::{fmt, str::FromStr};

/// How partitions are divided among a group's members (Kafka's assignor names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Per topic, contiguous ranges of partitions to the subscribed members in id order
    /// (Kafka's `range`).
    Range,
    /// Every partition of every topic dealt to the subscribed members in turn.
    RoundRobin,
    /// Balanced like round-robin, but a member keeps what it owns whenever balance
    /// allows, so a join or leave moves as few partitions as possible.
    #[default]
    CooperativeSticky,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Range => "range",
            Strategy::RoundRobin => "roundrobin",
            Strategy::CooperativeSticky => "cooperative-sticky",
        }
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "range" => Ok(Self::Range),
            "roundrobin" => Ok(Self::RoundRobin),
            "cooperative-sticky" => Ok(Self::CooperativeSticky),
            other => Err(format!("unknown strategy '{other}' (range, roundrobin, cooperative-sticky)")),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a reset moves a group's committed offsets (`kafka-consumer-groups
/// --reset-offsets --to-earliest | --to-latest | --to-offset | --to-datetime |
/// --shift-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(u64),
    /// The first offset whose timestamp is at or after this (ms since the Unix epoch).
    Timestamp(i64),
    /// Move the committed offset by this many records (negative: back).
    ShiftBy(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_round_trip_their_names() {
        for s in [Strategy::Range, Strategy::RoundRobin, Strategy::CooperativeSticky] {
            assert_eq!(s.as_str().parse::<Strategy>(), Ok(s));
        }
        assert!("sticky".parse::<Strategy>().unwrap_err().contains("unknown strategy 'sticky'"));
    }
}
