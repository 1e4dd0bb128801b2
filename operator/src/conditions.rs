//! Status conditions with Kubernetes semantics: `lastTransitionTime` moves only when a
//! condition's `status` flips, never when only its reason or message changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The three values a condition's status can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }

    pub fn from_bool(value: bool) -> Self {
        if value { Status::True } else { Status::False }
    }
}

/// A condition as a reconciler decides it, before timestamps are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: Status,
    pub reason: &'static str,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: Status,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Builds the condition list to write: each desired condition keeps the `lastTransitionTime` of
/// the current condition of the same type when its status is unchanged, and gets `now` otherwise.
pub fn merge(
    current: &[Condition],
    desired: Vec<Desired>,
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    desired
        .into_iter()
        .map(|d| {
            let previous = current.iter().find(|c| c.type_ == d.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == d.status.as_str() => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: d.type_.to_owned(),
                status: d.status.as_str().to_owned(),
                reason: d.reason.to_owned(),
                message: d.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// A status flip worth an Event: the condition type, its old status (None if it is new), and the
/// new condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub type_: String,
    pub from: Option<String>,
    pub to: Condition,
}

/// The conditions in `next` whose status differs from the same type in `current`.
pub fn transitions(current: &[Condition], next: &[Condition]) -> Vec<Transition> {
    next.iter()
        .filter_map(|n| {
            let old = find(current, &n.type_);
            match old {
                Some(o) if o.status == n.status => None,
                _ => Some(Transition {
                    type_: n.type_.clone(),
                    from: old.map(|o| o.status.clone()),
                    to: n.clone(),
                }),
            }
        })
        .collect()
}

/// The current time as a Kubernetes `Time`.
pub fn now() -> Time {
    Time(jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).unwrap())
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let first = merge(
            &[],
            vec![Desired::new("Ready", Status::False, "Starting", "starting")],
            Some(1),
            at(100),
        );
        assert_eq!(first[0].last_transition_time, at(100));

        let same_status_new_reason = merge(
            &first,
            vec![Desired::new(
                "Ready",
                Status::False,
                "TooFewOpen",
                "0 of 1 open",
            )],
            Some(2),
            at(200),
        );
        assert_eq!(same_status_new_reason[0].last_transition_time, at(100));
        assert_eq!(same_status_new_reason[0].reason, "TooFewOpen");
        assert_eq!(same_status_new_reason[0].observed_generation, Some(2));

        let flipped = merge(
            &same_status_new_reason,
            vec![Desired::new(
                "Ready",
                Status::True,
                "InstancesOpen",
                "2 of 2 open",
            )],
            Some(2),
            at(300),
        );
        assert_eq!(flipped[0].last_transition_time, at(300));
    }

    #[test]
    fn transitions_report_only_status_flips() {
        let old = merge(
            &[],
            vec![
                Desired::new("Healthy", Status::True, "Fresh", ""),
                Desired::new("Open", Status::True, "Desired", ""),
            ],
            None,
            at(1),
        );
        let new = merge(
            &old,
            vec![
                Desired::new("Healthy", Status::False, "Stale", "720p frozen"),
                Desired::new("Open", Status::True, "Desired", "still open"),
                Desired::new("Stale", Status::True, "Stale", ""),
            ],
            None,
            at(2),
        );
        let t = transitions(&old, &new);
        let kinds: Vec<_> = t
            .iter()
            .map(|t| (t.type_.as_str(), t.from.as_deref()))
            .collect();
        assert_eq!(kinds, vec![("Healthy", Some("True")), ("Stale", None)]);
    }
}
