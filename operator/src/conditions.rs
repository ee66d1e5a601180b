//! Building condition lists that change only when something changed: a condition keeps
//! its `lastTransitionTime` while its status stays the same, so recomputing the status
//! of an unchanged object gives an identical status (and no write).

use sluice_crd::{Condition, ConditionStatus};

/// A condition as a reconciler decides it, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub type_: &'static str,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

impl Decided {
    pub fn new(type_: &'static str, status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        let status = if status { ConditionStatus::True } else { ConditionStatus::False };
        Self { type_, status, reason: reason.into(), message: message.into() }
    }
}

/// The conditions to write: `decided` in order, each keeping the previous transition
/// time when its status did not change.
pub fn merge(previous: &[Condition], decided: Vec<Decided>, generation: Option<i64>, now: &str) -> Vec<Condition> {
    decided
        .into_iter()
        .map(|d| {
            let old = previous.iter().find(|c| c.type_ == d.type_);
            let last_transition_time = match old {
                Some(old) if old.status == d.status => old.last_transition_time.clone(),
                _ => now.to_string(),
            };
            Condition {
                type_: d.type_.to_string(),
                status: d.status,
                reason: d.reason,
                message: (!d.message.is_empty()).then_some(d.message),
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect()
}

/// The `Ready` condition of a list, if any.
pub fn ready(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == sluice_crd::conditions::READY)
}

/// Current time in the RFC 3339 form Kubernetes uses (seconds precision).
pub fn now() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_transition_time_when_status_unchanged() {
        let first = merge(&[], vec![Decided::new("Ready", false, "Waiting", "m")], Some(1), "t1");
        let second = merge(&first, vec![Decided::new("Ready", false, "Waiting", "m")], Some(1), "t2");
        assert_eq!(first, second);
        let third = merge(&second, vec![Decided::new("Ready", true, "Ok", "")], Some(1), "t3");
        assert_eq!(third[0].last_transition_time, "t3");
        let fourth = merge(&third, vec![Decided::new("Ready", true, "Other", "x")], Some(2), "t4");
        assert_eq!(fourth[0].last_transition_time, "t3");
        assert_eq!(fourth[0].reason, "Other");
    }

    #[test]
    fn now_is_rfc3339_seconds() {
        let n = now();
        assert!(n.ends_with('Z') && !n.contains('.'), "{n}");
    }
}
