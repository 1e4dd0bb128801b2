//! The effective open state of every instance of a ClusteredStream: a pure decision from what
//! people asked for (`spec.distroOpen`), what the probes saw, and the ClusteredStream's policy.
//!
//! Rules, in order:
//! 1. An instance starts from what its `spec.distroOpen` asks.
//! 2. The result never leaves fewer than `minOpen` instances open (or every instance, when there
//!    are fewer than `minOpen`). When a request to close would break that, instances are kept
//!    open, preferring one that is open now (so nothing flips needlessly), then a healthy one,
//!    then by name, and the held instances say why.

use crate::resources::ClusteredStreamSpec;

/// What the decision needs to know of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceView {
    pub name: String,
    /// `spec.distroOpen`.
    pub desired_open: bool,
    /// Whether the instance's playlists are fresh; `None` until the first probe result.
    pub healthy: Option<bool>,
    /// The effective open state decided last time (from status); `None` for a new instance.
    pub open_now: Option<bool>,
}

/// Why an instance ends up open or closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenReason {
    /// Open because `spec.distroOpen` is true.
    DesiredOpen,
    /// Closed because `spec.distroOpen` is false.
    DesiredClosed,
    /// Asked to close, but kept open so that at least `minOpen` instances stay open.
    HeldOpenForMinOpen,
}

impl OpenReason {
    /// The condition reason (CamelCase) for this outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            OpenReason::DesiredOpen => "DesiredOpen",
            OpenReason::DesiredClosed => "DesiredClosed",
            OpenReason::HeldOpenForMinOpen => "HeldOpenForMinOpen",
        }
    }
}

/// The decision for one instance, in the order of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenDecision {
    pub name: String,
    pub open: bool,
    pub reason: OpenReason,
    pub message: String,
}

/// Decides the effective open state of every instance of one ClusteredStream.
pub fn decide(spec: &ClusteredStreamSpec, instances: &[InstanceView]) -> Vec<OpenDecision> {
    let mut decisions: Vec<OpenDecision> = instances
        .iter()
        .map(|i| {
            if i.desired_open {
                OpenDecision {
                    name: i.name.clone(),
                    open: true,
                    reason: OpenReason::DesiredOpen,
                    message: "spec.distroOpen is true".to_owned(),
                }
            } else {
                OpenDecision {
                    name: i.name.clone(),
                    open: false,
                    reason: OpenReason::DesiredClosed,
                    message: "spec.distroOpen is false".to_owned(),
                }
            }
        })
        .collect();

    let min_open = (spec.min_open as usize).min(instances.len());
    let open_count = decisions.iter().filter(|d| d.open).count();
    if open_count < min_open {
        let mut candidates: Vec<usize> = (0..instances.len())
            .filter(|&i| !decisions[i].open)
            .collect();
        // Prefer instances open right now, then healthy ones, then a stable order by name.
        candidates.sort_by_key(|&i| {
            let v = &instances[i];
            (
                v.open_now != Some(true),
                v.healthy != Some(true),
                v.name.clone(),
            )
        });
        for &i in candidates.iter().take(min_open - open_count) {
            decisions[i] = OpenDecision {
                name: instances[i].name.clone(),
                open: true,
                reason: OpenReason::HeldOpenForMinOpen,
                message: format!(
                    "spec.distroOpen is false, but closing it would leave {open_count} open instance(s), \
                     fewer than minOpen {}",
                    spec.min_open
                ),
            };
        }
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min_open: u32) -> ClusteredStreamSpec {
        let mut spec: ClusteredStreamSpec = serde_json::from_value(serde_json::json!({
            "stateTable": {"name": "cvs-state", "region": "us-east-1"}
        }))
        .unwrap();
        spec.min_open = min_open;
        spec
    }

    fn view(
        name: &str,
        desired_open: bool,
        healthy: Option<bool>,
        open_now: Option<bool>,
    ) -> InstanceView {
        InstanceView {
            name: name.to_owned(),
            desired_open,
            healthy,
            open_now,
        }
    }

    fn open_names(d: &[OpenDecision]) -> Vec<&str> {
        d.iter()
            .filter(|d| d.open)
            .map(|d| d.name.as_str())
            .collect()
    }

    #[test]
    fn follows_desired_state_when_min_open_is_kept() {
        let d = decide(
            &spec(1),
            &[
                view("a", true, Some(true), Some(true)),
                view("b", false, Some(true), Some(true)),
            ],
        );
        assert_eq!(open_names(&d), vec!["a"]);
        assert_eq!(d[1].reason, OpenReason::DesiredClosed);
    }

    #[test]
    fn closing_the_last_open_instance_is_refused() {
        let d = decide(
            &spec(1),
            &[
                view("a", false, Some(true), Some(false)),
                view("b", false, Some(true), Some(true)),
            ],
        );
        // b is open now, so b is the one kept open: nothing flips.
        assert_eq!(open_names(&d), vec!["b"]);
        assert_eq!(d[1].reason, OpenReason::HeldOpenForMinOpen);
        assert!(d[1].message.contains("minOpen 1"), "{}", d[1].message);
    }

    #[test]
    fn held_instance_prefers_healthy_then_name() {
        let d = decide(
            &spec(1),
            &[
                view("c", false, Some(true), None),
                view("a", false, Some(false), None),
                view("b", false, Some(true), None),
            ],
        );
        assert_eq!(open_names(&d), vec!["b"]);
    }

    #[test]
    fn min_open_is_capped_by_the_number_of_instances() {
        let d = decide(
            &spec(3),
            &[view("a", false, None, None), view("b", true, None, None)],
        );
        assert_eq!(open_names(&d), vec!["a", "b"]);
        assert!(decide(&spec(3), &[]).is_empty());
    }
}
