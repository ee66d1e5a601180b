//! What a ConsumerGroup's status should say, and whether a requested offset reset should
//! run now — pure functions of the spec, the previous status and what the coordinator
//! answered.

use sluice_crd::conditions::READY;
use sluice_crd::group::conditions::{LAGGING, RESET_PENDING};
use sluice_crd::{ConsumerGroupSpec, ConsumerGroupState, GroupMember, OffsetReset, PartitionLag, ResetRecord, ResetTo};

use crate::conditions::Decided;

/// The group as its coordinator describes it, in the resource's terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Described {
    pub coordinator: i32,
    pub state: ConsumerGroupState,
    pub members: Vec<GroupMember>,
    pub partitions: Vec<PartitionLag>,
    pub total_lag: i64,
}

/// Why the group could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unobserved {
    ClusterNotFound,
    /// No broker of the Cluster holds a current Lease with an address.
    NoBrokers,
    /// Brokers are live but none answered (the message says what failed).
    Unreachable(String),
}

/// What to do about `spec.offsetReset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetStep {
    /// Nothing requested, or already done for this generation.
    None,
    /// Run it now (plan only when `dry_run`).
    Run { reset: OffsetReset, generation: i64 },
    /// Waits: the group has live members.
    Wait { members: usize },
    /// The spec cannot be applied; the message says why.
    Invalid(String),
}

/// Checks a reset's fields; `now_ms`: the time a timestamp must not pass.
pub fn validate_reset(reset: &OffsetReset, now_ms: i64) -> Result<ResetTo, String> {
    let need = |v: Option<i64>, field: &str| {
        v.ok_or_else(|| format!("offsetReset.to is {:?}: set offsetReset.{field}", reset.to))
    };
    match reset.to {
        ResetTo::Earliest | ResetTo::Latest => Ok(reset.to),
        ResetTo::Timestamp => {
            let ts = need(reset.timestamp_ms, "timestampMs")?;
            if ts > now_ms {
                return Err(format!("offsetReset.timestampMs {ts} is in the future (now is {now_ms})"));
            }
            Ok(reset.to)
        }
        ResetTo::Offset => need(reset.offset, "offset").map(|_| reset.to),
        ResetTo::ShiftBy => need(reset.shift_by, "shiftBy").map(|_| reset.to),
    }
    .and_then(|to| {
        let mut seen = std::collections::BTreeSet::new();
        match reset.topics.iter().find(|t| !seen.insert(&t.name)) {
            Some(t) => Err(format!("offsetReset.topics names {:?} twice", t.name)),
            None => Ok(to),
        }
    })
}

/// The next step for the reset of `spec` at `generation`, given the last one recorded:
/// a reset runs when it differs from the last one applied.
pub fn reset_step(
    spec: &ConsumerGroupSpec,
    generation: i64,
    last: Option<&ResetRecord>,
    described: &Described,
    now_ms: i64,
) -> ResetStep {
    let Some(reset) = &spec.offset_reset else { return ResetStep::None };
    // Once per change of the field: not again for a change elsewhere in the spec.
    if last.is_some_and(|l| &l.reset == reset) {
        return ResetStep::None;
    }
    if let Err(e) = validate_reset(reset, now_ms) {
        return ResetStep::Invalid(e);
    }
    if !described.members.is_empty() {
        return ResetStep::Wait { members: described.members.len() };
    }
    ResetStep::Run { reset: reset.clone(), generation }
}

/// The ResetPending condition for the outcome of this reconcile.
pub fn reset_condition(spec: &ConsumerGroupSpec, last: Option<&ResetRecord>, step: &ResetStep) -> Option<Decided> {
    let reset = spec.offset_reset.as_ref()?;
    Some(match step {
        ResetStep::Invalid(message) => Decided::new(RESET_PENDING, false, "InvalidReset", message.clone()),
        ResetStep::Wait { members } => Decided::new(
            RESET_PENDING,
            true,
            "MembersActive",
            format!("the reset waits for the group's {members} member(s) to leave"),
        ),
        ResetStep::Run { .. } => Decided::new(RESET_PENDING, true, "Applying", "the reset is being applied"),
        ResetStep::None => match last {
            Some(l) if l.dry_run && reset.dry_run => Decided::new(
                RESET_PENDING,
                true,
                "DryRun",
                "planned only: the plan is in status.lastReset; set offsetReset.dryRun to false to apply it",
            ),
            Some(l) if l.partitions.is_empty() => Decided::new(
                RESET_PENDING,
                false,
                "NothingToReset",
                "the group has no committed offsets to reset; name the topics in offsetReset.topics",
            ),
            _ => Decided::new(RESET_PENDING, false, "Applied", "the reset was applied (see status.lastReset)"),
        },
    })
}

/// Ready, then Lagging (when a threshold is set), for a group that was read.
pub fn observed_conditions(spec: &ConsumerGroupSpec, described: &Described, invalid: Option<&str>) -> Vec<Decided> {
    let mut out = vec![match invalid {
        Some(message) => Decided::new(READY, false, "InvalidSpec", message),
        None if described.state == ConsumerGroupState::Dead => Decided::new(
            READY,
            true,
            "GroupNotFound",
            "the brokers know no such group yet (no members, no committed offsets)",
        ),
        None => Decided::new(READY, true, "Observed", "read from the group's coordinator"),
    }];
    if let Some(threshold) = spec.lag_threshold {
        out.push(if described.total_lag > threshold {
            Decided::new(LAGGING, true, "LagAboveThreshold", format!("total lag is above {threshold} records"))
        } else {
            Decided::new(LAGGING, false, "LagWithinThreshold", format!("total lag is at most {threshold} records"))
        });
    }
    out
}

/// Ready for a group that could not be read.
pub fn unobserved_condition(cluster: &str, why: &Unobserved) -> Decided {
    match why {
        Unobserved::ClusterNotFound => Decided::new(
            READY,
            false,
            "ClusterNotFound",
            format!("Cluster {cluster:?} does not exist in this namespace"),
        ),
        Unobserved::NoBrokers => {
            Decided::new(READY, false, "BrokersUnavailable", format!("no broker of Cluster {cluster:?} is live"))
        }
        Unobserved::Unreachable(e) => Decided::new(READY, false, "CoordinatorUnavailable", e.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_crd::ResetTopic;

    fn spec(reset: Option<OffsetReset>) -> ConsumerGroupSpec {
        ConsumerGroupSpec {
            cluster: "c".into(),
            group_id: None,
            lag_threshold: Some(10),
            offset_reset: reset,
            delete_offsets_on_removal: false,
        }
    }

    fn reset(to: ResetTo) -> OffsetReset {
        OffsetReset { to, timestamp_ms: None, offset: None, shift_by: None, topics: vec![], dry_run: false }
    }

    fn record(reset: OffsetReset, generation: i64, dry_run: bool) -> ResetRecord {
        ResetRecord { reset, generation, dry_run, time: String::new(), partitions: vec![] }
    }

    fn member() -> GroupMember {
        GroupMember { member_id: "m".into(), client_id: "c".into(), assignment: vec![] }
    }

    #[test]
    fn a_reset_runs_once_per_generation_and_only_without_members() {
        let s = spec(Some(reset(ResetTo::Earliest)));
        let empty = Described::default();
        let busy = Described { members: vec![member()], ..Default::default() };
        assert_eq!(reset_step(&s, 2, None, &busy, 0), ResetStep::Wait { members: 1 });
        assert!(matches!(reset_step(&s, 2, None, &empty, 0), ResetStep::Run { generation: 2, .. }));
        let done = record(reset(ResetTo::Earliest), 2, false);
        assert_eq!(reset_step(&s, 2, Some(&done), &empty, 0), ResetStep::None);
        // Another field of the spec changed: not again.
        assert_eq!(reset_step(&s, 3, Some(&done), &empty, 0), ResetStep::None);
        // A different reset runs (a dry run turned real, too).
        let latest = spec(Some(reset(ResetTo::Latest)));
        assert!(matches!(reset_step(&latest, 4, Some(&done), &empty, 0), ResetStep::Run { generation: 4, .. }));
        let planned = record(OffsetReset { dry_run: true, ..reset(ResetTo::Earliest) }, 5, true);
        assert!(matches!(reset_step(&s, 6, Some(&planned), &empty, 0), ResetStep::Run { .. }));
        assert_eq!(reset_step(&spec(None), 3, None, &empty, 0), ResetStep::None);
    }

    #[test]
    fn invalid_resets_say_what_to_fix() {
        let mut r = reset(ResetTo::Timestamp);
        assert!(validate_reset(&r, 100).unwrap_err().contains("set offsetReset.timestampMs"));
        r.timestamp_ms = Some(200);
        assert!(validate_reset(&r, 100).unwrap_err().contains("in the future"));
        r.timestamp_ms = Some(50);
        assert_eq!(validate_reset(&r, 100), Ok(ResetTo::Timestamp));
        assert!(validate_reset(&reset(ResetTo::ShiftBy), 0).unwrap_err().contains("shiftBy"));
        assert!(validate_reset(&reset(ResetTo::Offset), 0).unwrap_err().contains("offset"));
        let mut twice = reset(ResetTo::Latest);
        let t = ResetTopic { name: "a".into(), partitions: vec![] };
        twice.topics = vec![t.clone(), t];
        assert!(validate_reset(&twice, 0).unwrap_err().contains("twice"));
        let s = spec(Some(reset(ResetTo::ShiftBy)));
        // Invalid even with live members: the user learns it now, not when they leave.
        let busy = Described { members: vec![member()], ..Default::default() };
        assert!(matches!(reset_step(&s, 1, None, &busy, 0), ResetStep::Invalid(_)));
    }

    #[test]
    fn conditions_follow_the_outcome() {
        let s = spec(Some(OffsetReset { dry_run: true, ..reset(ResetTo::Latest) }));
        let planned = record(s.offset_reset.clone().unwrap(), 1, true);
        let c = reset_condition(&s, Some(&planned), &ResetStep::None).unwrap();
        assert_eq!((c.reason.as_str(), c.status), ("DryRun", sluice_crd::ConditionStatus::True));
        let c = reset_condition(&s, None, &ResetStep::Wait { members: 2 }).unwrap();
        assert!(c.message.contains("2 member(s)"));
        assert_eq!(reset_condition(&spec(None), None, &ResetStep::None), None);

        let lagging = Described { total_lag: 11, ..Default::default() };
        let c = observed_conditions(&s, &lagging, None);
        assert_eq!((c[0].reason.as_str(), c[1].reason.as_str()), ("Observed", "LagAboveThreshold"));
        let c = observed_conditions(&s, &Described { total_lag: 10, ..Default::default() }, Some("bad"));
        assert_eq!((c[0].reason.as_str(), c[1].reason.as_str()), ("InvalidSpec", "LagWithinThreshold"));
        let dead = Described { state: ConsumerGroupState::Dead, ..Default::default() };
        assert_eq!(observed_conditions(&spec(None), &dead, None)[0].reason, "GroupNotFound");
    }
}
