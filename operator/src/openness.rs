//! The effective open state of every instance of a ClusteredStream: a pure decision from what
//! people asked for (`spec.distroOpen`), what the probes saw, and the ClusteredStream's policy.
//!
//! Rules, in order:
//! 1. An instance starts from what its `spec.distroOpen` asks.
//! 2. With `failover.mode: Automatic`, an instance that asks to be open is closed while it is
//!    stale, and reopened once it has stayed healthy for `holdDownSeconds`. Until the first probe
//!    result it keeps the state it has.
//! 3. The result never leaves fewer than `minOpen` instances open (or every instance, when there
//!    are fewer than `minOpen`). When a close would break that, instances are kept open,
//!    preferring one that is open now (so nothing flips needlessly), then a healthy one, then by
//!    name, and the held instances say why.

use crate::resources::{ClusteredStreamSpec, FailoverMode};

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
    /// When the instance last became healthy (unix milliseconds), if it is healthy.
    pub healthy_since_ms: Option<i64>,
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
    /// Closed by automatic failover because its playlists are stale.
    FailedOver,
    /// Healthy again, but closed until it has stayed healthy for the hold-down time.
    HoldDown,
}

impl OpenReason {
    /// The condition reason (CamelCase) for this outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            OpenReason::DesiredOpen => "DesiredOpen",
            OpenReason::DesiredClosed => "DesiredClosed",
            OpenReason::HeldOpenForMinOpen => "HeldOpenForMinOpen",
            OpenReason::FailedOver => "FailedOver",
            OpenReason::HoldDown => "HoldDown",
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

/// The decisions for a ClusteredStream, and when they should be made again even if nothing
/// changes (a hold-down ending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decisions {
    pub instances: Vec<OpenDecision>,
    pub recheck_at_ms: Option<i64>,
}

fn decision(name: &str, open: bool, reason: OpenReason, message: String) -> OpenDecision {
    OpenDecision {
        name: name.to_owned(),
        open,
        reason,
        message,
    }
}

/// Decides the effective open state of every instance of one ClusteredStream at `now_ms`.
pub fn decide(spec: &ClusteredStreamSpec, instances: &[InstanceView], now_ms: i64) -> Decisions {
    let automatic = spec.failover.mode == FailoverMode::Automatic;
    let hold_down_ms = i64::from(spec.failover.hold_down_seconds) * 1000;
    let mut recheck_at_ms: Option<i64> = None;
    let mut decisions: Vec<OpenDecision> = instances
        .iter()
        .map(|i| {
            if !i.desired_open {
                return decision(
                    &i.name,
                    false,
                    OpenReason::DesiredClosed,
                    "spec.distroOpen is false".into(),
                );
            }
            if !automatic {
                return decision(
                    &i.name,
                    true,
                    OpenReason::DesiredOpen,
                    "spec.distroOpen is true".into(),
                );
            }
            match i.healthy {
                Some(false) => decision(
                    &i.name,
                    false,
                    OpenReason::FailedOver,
                    "closed by automatic failover: the instance's playlists are stale".into(),
                ),
                Some(true) if i.open_now == Some(false) => {
                    let since = i.healthy_since_ms.unwrap_or(now_ms);
                    let reopen_at = since.saturating_add(hold_down_ms);
                    if now_ms < reopen_at {
                        recheck_at_ms = Some(recheck_at_ms.map_or(reopen_at, |r| r.min(reopen_at)));
                        decision(
                            &i.name,
                            false,
                            OpenReason::HoldDown,
                            format!(
                                "healthy again; reopens once healthy for {}s, at {}",
                                spec.failover.hold_down_seconds,
                                jiff::Timestamp::from_millisecond(reopen_at)
                                    .map(|t| t.to_string())
                                    .unwrap_or_else(|_| reopen_at.to_string())
                            ),
                        )
                    } else {
                        decision(
                            &i.name,
                            true,
                            OpenReason::DesiredOpen,
                            "spec.distroOpen is true".into(),
                        )
                    }
                }
                None if i.open_now == Some(false) => decision(
                    &i.name,
                    false,
                    OpenReason::FailedOver,
                    "kept closed until the first probe result".into(),
                ),
                _ => decision(
                    &i.name,
                    true,
                    OpenReason::DesiredOpen,
                    "spec.distroOpen is true".into(),
                ),
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
            let why = match decisions[i].reason {
                OpenReason::DesiredClosed => "spec.distroOpen is false",
                OpenReason::FailedOver => "it is stale",
                _ => "it is in hold-down",
            };
            decisions[i] = decision(
                &instances[i].name,
                true,
                OpenReason::HeldOpenForMinOpen,
                format!(
                    "{why}, but closing it would leave {open_count} open instance(s), fewer than minOpen {}",
                    spec.min_open
                ),
            );
        }
    }
    Decisions {
        instances: decisions,
        recheck_at_ms,
    }
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
            healthy_since_ms: healthy.filter(|h| *h).map(|_| 0),
        }
    }

    fn decide(spec: &ClusteredStreamSpec, instances: &[InstanceView]) -> Vec<OpenDecision> {
        super::decide(spec, instances, 1_000_000).instances
    }

    fn automatic(min_open: u32, hold_down_seconds: u32) -> ClusteredStreamSpec {
        let mut s = spec(min_open);
        s.failover.mode = FailoverMode::Automatic;
        s.failover.hold_down_seconds = hold_down_seconds;
        s
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
    fn manual_mode_ignores_health() {
        let d = decide(
            &spec(1),
            &[
                view("a", true, Some(false), Some(true)),
                view("b", true, Some(true), Some(true)),
            ],
        );
        assert_eq!(open_names(&d), vec!["a", "b"]);
    }

    #[test]
    fn automatic_failover_closes_a_stale_instance() {
        let d = decide(
            &automatic(1, 60),
            &[
                view("a", true, Some(false), Some(true)),
                view("b", true, Some(true), Some(true)),
            ],
        );
        assert_eq!(open_names(&d), vec!["b"]);
        assert_eq!(d[0].reason, OpenReason::FailedOver);
    }

    #[test]
    fn automatic_failover_never_closes_the_last_open_instance() {
        let d = decide(
            &automatic(1, 60),
            &[
                view("a", true, Some(false), Some(true)),
                view("b", true, Some(false), Some(false)),
            ],
        );
        assert_eq!(
            open_names(&d),
            vec!["a"],
            "a is open now, so it is the one held"
        );
        assert_eq!(d[0].reason, OpenReason::HeldOpenForMinOpen);
        assert!(d[0].message.starts_with("it is stale"), "{}", d[0].message);
    }

    #[test]
    fn reopening_waits_for_the_hold_down() {
        let s = automatic(1, 60);
        let mut a = view("a", true, Some(true), Some(false));
        a.healthy_since_ms = Some(1_000_000 - 20_000);
        let b = view("b", true, Some(true), Some(true));
        let out = super::decide(&s, &[a.clone(), b.clone()], 1_000_000);
        assert!(!out.instances[0].open);
        assert_eq!(out.instances[0].reason, OpenReason::HoldDown);
        assert_eq!(out.recheck_at_ms, Some(1_000_000 + 40_000));
        let later = super::decide(&s, &[a, b], 1_000_000 + 40_000);
        assert!(later.instances[0].open);
        assert_eq!(later.recheck_at_ms, None);
    }

    #[test]
    fn unknown_health_keeps_the_current_state() {
        let d = decide(
            &automatic(1, 60),
            &[
                view("a", true, None, Some(false)),
                view("b", true, None, None),
                view("c", true, Some(true), Some(true)),
            ],
        );
        assert_eq!(open_names(&d), vec!["b", "c"]);
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
