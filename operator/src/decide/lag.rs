//! Cross-region lag: whether an instance of a ClusteredStream runs behind the others.
//!
//! Every instance of a ClusteredStream carries the same event. Each one's **live edge** is
//! where its newest segment ends:
//! - by `EXT-X-PROGRAM-DATE-TIME` (the date of the newest segment plus its duration), when
//!   the compared instances date their segments. This compares the packagers' clocks, which
//!   must be synchronised (NTP), as they are for any PDT-based workflow; or
//! - by media sequence (the sequence number one past the newest segment times the target
//!   duration), only when `spec.health.lag.sharedMediaSequence` says the regions number their
//!   segments alike (one encoder, or epoch-locked packagers). Sequence numbers of independent
//!   packagers mean nothing to each other, so without that opt-in there is no verdict.
//!
//! An instance's live edge is the newest across its fresh renditions. Only instances the probe
//! judges fresh, with a recent observation, are compared: a stale, dead or not-yet-judged
//! instance is not "lagging" (it is stale, or unknown) and never leads, so a region that stopped
//! can never make the others lag. A program date-time further in the future than
//! [`PDT_FUTURE_TOLERANCE_MS`] or further in the past than [`MAX_PLAUSIBLE_LAG_MS`] is a broken
//! clock, not a lead or a lag: that instance is left out (or, for the instance judged, no
//! verdict). The leader is the instance with the newest edge; the lag is how far behind it the
//! instance judged is. When every instance lags equally, nobody lags.
//!
//! A lag is sampled at each poll, so it moves by up to about a target duration from one sample
//! to the next. Hysteresis ([`LagTracker`]) keeps that from flapping the verdict: an instance
//! is `Lagging` only once its lag has stayed above the limit for [`sustain_ms`] (a few target
//! durations), and stops lagging only once it has stayed below the limit minus a margin for as
//! long. Without a comparison (no peer, no common clock) there is no verdict; an instance that
//! was lagging keeps that verdict for the sustained time (a peer's sample late on a loaded
//! operator is no news), then stops counting as lagging: the region left may be the only one.
//!
//! No I/O and no clock: the times are arguments.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Default `spec.health.lag.maxSeconds`.
pub const DEFAULT_MAX_SECONDS: u32 = 20;
/// Smallest accepted `maxSeconds`: a lag is only known to within about a target duration.
pub const MIN_MAX_SECONDS: u32 = 2;
/// Largest accepted `maxSeconds`.
pub const MAX_MAX_SECONDS: u32 = 600;
/// A program date-time at most this far ahead of the probe's clock is taken as it is (clock
/// skew); one further ahead is no live edge.
pub const PDT_FUTURE_TOLERANCE_MS: i64 = crate::probe::decision::PDT_FUTURE_TOLERANCE_MS;
/// A live edge further than this behind the probe's clock (by date), or a media-sequence
/// distance longer than this, is a broken clock or a misconfiguration, not a lag.
pub const MAX_PLAUSIBLE_LAG_MS: u64 = 6 * 3_600_000;
/// The lag must stay beyond the limit (or within it, minus the margin) for this many target
/// durations before the verdict changes...
pub const SUSTAIN_TARGET_DURATIONS: u64 = 3;
/// ...and at least this long.
pub const MIN_SUSTAIN_MS: u64 = 3_000;
/// Accepted target durations, as the freshness decisions take them.
const TD_RANGE: (u64, u64) = (
    crate::probe::decision::MIN_TARGET_DURATION_MS,
    crate::probe::decision::MAX_TARGET_DURATION_MS,
);

/// How lag is judged (from `spec.health.lag`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LagPolicy {
    /// The limit, in seconds; taken within [`MIN_MAX_SECONDS`]..=[`MAX_MAX_SECONDS`].
    pub max_seconds: u32,
    /// A lagging instance counts as unhealthy.
    pub unhealthy: bool,
    /// The regions share a media-sequence clock: compare by media sequence when program
    /// date-times are missing.
    pub shared_media_sequence: bool,
}

impl Default for LagPolicy {
    fn default() -> Self {
        Self {
            max_seconds: DEFAULT_MAX_SECONDS,
            unhealthy: false,
            shared_media_sequence: false,
        }
    }
}

impl LagPolicy {
    /// The limit in milliseconds, within the accepted range.
    pub fn max_lag_ms(&self) -> u64 {
        u64::from(self.max_seconds.clamp(MIN_MAX_SECONDS, MAX_MAX_SECONDS)) * 1000
    }

    /// How far below the limit a lagging instance must come back: a target duration (the
    /// sampling noise), a quarter of the limit at least, half of it at most.
    pub fn margin_ms(&self, target_duration_ms: u64) -> u64 {
        let limit = self.max_lag_ms();
        clamp_td(target_duration_ms).max(limit / 4).min(limit / 2)
    }
}

/// How long the lag must stay beyond (or back within) the limit before the verdict changes.
pub fn sustain_ms(target_duration_ms: u64) -> u64 {
    (clamp_td(target_duration_ms) * SUSTAIN_TARGET_DURATIONS).max(MIN_SUSTAIN_MS)
}

fn clamp_td(td: u64) -> u64 {
    td.clamp(TD_RANGE.0, TD_RANGE.1)
}

/// What the probe judged of an instance's freshness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Fresh,
    Stale,
    NotJudged,
}

/// One rendition as the edge is built from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenditionEdge {
    pub fresh: bool,
    /// When its newest segment ends by program date-time (unix ms).
    pub pdt_end_unix_ms: Option<i64>,
    /// Media sequence number one past its newest segment.
    pub head: u64,
    pub target_duration_ms: u64,
}

/// One instance's live edge as its probe last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub standing: Standing,
    /// The newest program-date-time edge of its fresh renditions (unix ms).
    pub pdt_unix_ms: Option<i64>,
    /// The newest media-sequence edge of its fresh renditions: head x target duration (ms).
    pub sequence_ms: Option<u64>,
    /// The longest target duration of its fresh renditions.
    pub target_duration_ms: u64,
    /// When the probe made this observation (unix ms).
    pub observed_unix_ms: i64,
}

impl Edge {
    /// The edge of an instance whose probe judged it `standing`, from its renditions, observed
    /// at `observed_unix_ms`. Only fresh renditions count.
    pub fn of(
        standing: Standing,
        renditions: impl IntoIterator<Item = RenditionEdge>,
        observed_unix_ms: i64,
    ) -> Edge {
        let mut edge = Edge {
            standing,
            pdt_unix_ms: None,
            sequence_ms: None,
            target_duration_ms: 0,
            observed_unix_ms,
        };
        for r in renditions.into_iter().filter(|r| r.fresh) {
            let td = clamp_td(r.target_duration_ms);
            edge.target_duration_ms = edge.target_duration_ms.max(td);
            if let Some(pdt) = r.pdt_end_unix_ms {
                edge.pdt_unix_ms = Some(edge.pdt_unix_ms.map_or(pdt, |e| e.max(pdt)));
            }
            let seq = r.head.saturating_mul(td);
            edge.sequence_ms = Some(edge.sequence_ms.map_or(seq, |e| e.max(seq)));
        }
        if edge.target_duration_ms == 0 {
            edge.target_duration_ms = crate::probe::decision::DEFAULT_TARGET_DURATION_MS;
        }
        edge
    }

    /// Recent enough to compare: observed within a few target durations (and 10 s) of `now`.
    fn is_recent(&self, now_unix_ms: i64) -> bool {
        let bound = (clamp_td(self.target_duration_ms) * 3).max(10_000);
        now_unix_ms.saturating_sub(self.observed_unix_ms) <= bound as i64
    }

    /// The program-date-time edge, if it is a plausible one at `now`.
    fn plausible_pdt(&self, now_unix_ms: i64) -> Result<Option<i64>, &'static str> {
        match self.pdt_unix_ms {
            None => Ok(None),
            Some(p) if p.saturating_sub(now_unix_ms) > PDT_FUTURE_TOLERANCE_MS => {
                Err("ProgramDateTimeInFuture")
            }
            Some(p) if now_unix_ms.saturating_sub(p) > MAX_PLAUSIBLE_LAG_MS as i64 => {
                Err("ProgramDateTimeImplausible")
            }
            Some(p) => Ok(Some(p)),
        }
    }
}

/// What the live edges are compared by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    ProgramDateTime,
    MediaSequence,
}

impl Basis {
    fn describe(self) -> &'static str {
        match self {
            Basis::ProgramDateTime => "by EXT-X-PROGRAM-DATE-TIME",
            Basis::MediaSequence => "by media sequence",
        }
    }
}

/// One instance compared with the others of its ClusteredStream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// How far behind the leader it is (0 when it leads).
    Behind {
        lag_ms: u64,
        leader: String,
        basis: Basis,
        /// The longest target duration of the compared instances.
        target_duration_ms: u64,
    },
    /// No comparison can be made, and why.
    Unknown {
        reason: &'static str,
        message: String,
    },
}

fn unknown(reason: &'static str, message: impl Into<String>) -> Comparison {
    Comparison::Unknown {
        reason,
        message: message.into(),
    }
}

/// Compares instance `me` with the others of its ClusteredStream (`edges`, by instance name,
/// `me` included) at wall time `now_unix_ms`.
pub fn compare(
    me: &str,
    edges: &BTreeMap<String, Edge>,
    policy: &LagPolicy,
    now_unix_ms: i64,
) -> Comparison {
    let Some(mine) = edges.get(me) else {
        return unknown("NotCompared", "no probe result for this instance yet");
    };
    match mine.standing {
        Standing::Fresh => {}
        Standing::Stale => {
            return unknown(
                "InstanceStale",
                "this instance is stale (see Healthy): its lag is not compared",
            );
        }
        Standing::NotJudged => {
            return unknown(
                "InstanceNotJudged",
                "this instance is not judged fresh yet: its lag is not compared",
            );
        }
    }
    if mine.sequence_ms.is_none() {
        return unknown(
            "NotCompared",
            "no rendition of this instance has a recent probe result (the probe is short of \
             permits): its lag is not compared",
        );
    }
    let my_pdt = match mine.plausible_pdt(now_unix_ms) {
        Ok(p) => p,
        Err(reason) => {
            return unknown(
                reason,
                format!(
                    "this instance's EXT-X-PROGRAM-DATE-TIME is {} the operator's clock: its lag \
                     is not compared",
                    if reason == "ProgramDateTimeInFuture" {
                        "ahead of"
                    } else {
                        "hours behind"
                    }
                ),
            );
        }
    };
    let peers: Vec<(&String, &Edge)> = edges
        .iter()
        .filter(|(name, e)| {
            name.as_str() != me
                && e.standing == Standing::Fresh
                && e.sequence_ms.is_some()
                && e.is_recent(now_unix_ms)
        })
        .collect();
    if peers.is_empty() {
        return unknown(
            "NoPeer",
            "no other instance of the ClusteredStream is fresh: nothing to compare with",
        );
    }
    // Peers with a plausible date, and whether every peer offers one.
    let dated: Vec<(&String, i64)> = peers
        .iter()
        .filter_map(|(n, e)| e.plausible_pdt(now_unix_ms).ok().flatten().map(|p| (*n, p)))
        .collect();
    let all_dated = dated.len() == peers.len();
    let (basis, mine_ms, compared): (Basis, i128, Vec<(&String, i128)>) =
        match (my_pdt, all_dated, policy.shared_media_sequence) {
            (Some(p), true, _) | (Some(p), false, false) if !dated.is_empty() => (
                Basis::ProgramDateTime,
                i128::from(p),
                dated.iter().map(|(n, p)| (*n, i128::from(*p))).collect(),
            ),
            (_, _, true) => (
                Basis::MediaSequence,
                i128::from(mine.sequence_ms.unwrap_or(0)),
                peers
                    .iter()
                    .filter_map(|(n, e)| e.sequence_ms.map(|s| (*n, i128::from(s))))
                    .collect(),
            ),
            (Some(_), _, false) => {
                return unknown(
                    "NoCommonClock",
                    "no other fresh instance dates its segments with EXT-X-PROGRAM-DATE-TIME \
                     (and spec.health.lag.sharedMediaSequence is false): no lag verdict",
                );
            }
            (None, _, false) => {
                return unknown(
                    "NoCommonClock",
                    "this instance's playlists carry no EXT-X-PROGRAM-DATE-TIME and \
                     spec.health.lag.sharedMediaSequence is false: no lag verdict",
                );
            }
        };
    if compared.is_empty() {
        return unknown(
            "NoPeer",
            "no other fresh instance can be compared with this one",
        );
    }
    // The newest edge leads; on a tie this instance, then the first name.
    let (leader, lead_ms) = compared.iter().fold((me, mine_ms), |(ln, lm), (n, m)| {
        if *m > lm { (n.as_str(), *m) } else { (ln, lm) }
    });
    let lag = u64::try_from(lead_ms - mine_ms).unwrap_or(u64::MAX);
    if lag > MAX_PLAUSIBLE_LAG_MS {
        return unknown(
            "EdgesImplausible",
            format!(
                "{leader} is more than {} h ahead {}: a clock or configuration error, not a lag",
                MAX_PLAUSIBLE_LAG_MS / 3_600_000,
                basis.describe()
            ),
        );
    }
    let target_duration_ms = compared
        .iter()
        .filter_map(|(n, _)| edges.get(*n))
        .map(|e| clamp_td(e.target_duration_ms))
        .fold(clamp_td(mine.target_duration_ms), u64::max);
    Comparison::Behind {
        lag_ms: lag,
        leader: leader.to_owned(),
        basis,
        target_duration_ms,
    }
}

/// The lag verdict of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LagVerdict {
    /// `Some(true)` lagging, `Some(false)` not, `None` no verdict.
    pub lagging: Option<bool>,
    pub reason: &'static str,
    pub message: String,
    /// The lag behind the leader (0 when leading), when compared.
    pub lag_ms: Option<u64>,
    pub leader: Option<String>,
}

impl LagVerdict {
    /// Same status and reason. The lag moves at every sample, and so does the leader: two
    /// regions of one stream publish each segment a moment apart, so which one leads alternates.
    /// Neither is a change worth a status write of its own (they go out at the status refresh
    /// cadence); counting the leader made every instance ask for a write every few seconds.
    pub fn same_standing(&self, other: &LagVerdict) -> bool {
        self.lagging == other.lagging && self.reason == other.reason
    }
}

/// Hysteresis over an instance's comparisons.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LagTracker {
    lagging: bool,
    /// While not lagging: since when the lag has been above the limit.
    above_since_ms: Option<u64>,
    /// While lagging: since when the lag has been below the limit minus the margin.
    below_since_ms: Option<u64>,
    /// The previous comparison: a gap longer than the sustained time between two is no
    /// evidence of what happened meanwhile, so the time starts again.
    last_ms: Option<u64>,
    /// While lagging: since when no comparison could be made.
    unknown_since_ms: Option<u64>,
    /// The leader and the sustained time of the last comparison.
    last_leader: Option<String>,
    last_sustain_ms: u64,
}

impl LagTracker {
    pub fn is_lagging(&self) -> bool {
        self.lagging
    }

    /// Applies a comparison made at `now_ms` (a monotonic clock) and gives the verdict.
    pub fn observe(&mut self, c: &Comparison, policy: &LagPolicy, now_ms: u64) -> LagVerdict {
        let (lag_ms, leader, basis, td) = match c {
            Comparison::Unknown { reason, message } => {
                // A comparison lost for a moment (a peer's sample late on a loaded operator)
                // does not end a lag: the verdict holds for the sustained time, then goes.
                // This instance stale or not judged is its own verdict at once.
                let own = matches!(*reason, "InstanceStale" | "InstanceNotJudged");
                if self.lagging && !own {
                    let since = *self.unknown_since_ms.get_or_insert(now_ms);
                    if now_ms.saturating_sub(since) < self.last_sustain_ms {
                        self.above_since_ms = None;
                        self.below_since_ms = None;
                        self.last_ms = Some(now_ms);
                        return LagVerdict {
                            lagging: Some(true),
                            reason: "Lagging",
                            message: format!(
                                "no comparison now ({message}); the lag verdict holds for up to \
                                 {} s",
                                secs(self.last_sustain_ms)
                            ),
                            lag_ms: None,
                            leader: self.last_leader.clone(),
                        };
                    }
                }
                *self = LagTracker::default();
                return LagVerdict {
                    lagging: None,
                    reason,
                    message: message.clone(),
                    lag_ms: None,
                    leader: None,
                };
            }
            Comparison::Behind {
                lag_ms,
                leader,
                basis,
                target_duration_ms,
            } => (*lag_ms, leader, *basis, *target_duration_ms),
        };
        let limit = policy.max_lag_ms();
        let clear_below = limit.saturating_sub(policy.margin_ms(td));
        let sustain = sustain_ms(td);
        self.unknown_since_ms = None;
        self.last_leader = Some(leader.clone());
        self.last_sustain_ms = sustain;
        if self
            .last_ms
            .replace(now_ms)
            .is_some_and(|last| now_ms.saturating_sub(last) > sustain)
        {
            self.above_since_ms = None;
            self.below_since_ms = None;
        }
        if self.lagging {
            if lag_ms < clear_below {
                let since = *self.below_since_ms.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) >= sustain {
                    *self = LagTracker {
                        last_ms: Some(now_ms),
                        last_leader: self.last_leader.take(),
                        last_sustain_ms: sustain,
                        ..LagTracker::default()
                    };
                }
            } else {
                self.below_since_ms = None;
            }
        } else if lag_ms > limit {
            let since = *self.above_since_ms.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= sustain {
                *self = LagTracker {
                    lagging: true,
                    last_ms: Some(now_ms),
                    last_leader: self.last_leader.take(),
                    last_sustain_ms: sustain,
                    ..LagTracker::default()
                };
            }
        } else {
            self.above_since_ms = None;
        }
        let mut message = String::new();
        if lag_ms == 0 {
            let _ = write!(message, "leading instance {}", basis.describe());
        } else {
            let _ = write!(
                message,
                "{} s behind {leader} {}",
                secs(lag_ms),
                basis.describe()
            );
        }
        let _ = write!(message, " (limit {} s", secs(limit));
        if self.lagging {
            let _ = write!(message, "; clears below {} s", secs(clear_below));
        }
        message.push(')');
        LagVerdict {
            lagging: Some(self.lagging),
            reason: if self.lagging {
                "Lagging"
            } else {
                "WithinLimit"
            },
            message,
            lag_ms: Some(lag_ms),
            leader: Some(leader.clone()),
        }
    }
}

/// Milliseconds as seconds with one decimal.
pub fn secs(ms: u64) -> String {
    format!("{}.{}", ms / 1000, (ms % 1000) / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const TD: u64 = 2_000;

    fn fresh(pdt: Option<i64>, head: u64) -> Edge {
        Edge::of(
            Standing::Fresh,
            [RenditionEdge {
                fresh: true,
                pdt_end_unix_ms: pdt,
                head,
                target_duration_ms: TD,
            }],
            NOW,
        )
    }

    fn edges(list: &[(&str, Edge)]) -> BTreeMap<String, Edge> {
        list.iter().map(|(n, e)| (n.to_string(), *e)).collect()
    }

    fn policy(max_seconds: u32) -> LagPolicy {
        LagPolicy {
            max_seconds,
            ..LagPolicy::default()
        }
    }

    fn lag_of(c: &Comparison) -> (u64, &str, Basis) {
        match c {
            Comparison::Behind {
                lag_ms,
                leader,
                basis,
                ..
            } => (*lag_ms, leader.as_str(), *basis),
            other => panic!("no comparison: {other:?}"),
        }
    }

    fn reason(c: &Comparison) -> &'static str {
        match c {
            Comparison::Unknown { reason, .. } => reason,
            other => panic!("a comparison: {other:?}"),
        }
    }

    #[test]
    fn the_edge_is_the_newest_of_the_fresh_renditions() {
        let r = |fresh, pdt: Option<i64>, head, td| RenditionEdge {
            fresh,
            pdt_end_unix_ms: pdt,
            head,
            target_duration_ms: td,
        };
        let e = Edge::of(
            Standing::Fresh,
            [
                r(true, Some(NOW - 4_000), 100, 2_000),
                r(true, Some(NOW - 1_000), 99, 2_000),
                // A stale rendition's (newer, hostile) edge does not count.
                r(false, Some(NOW + 60_000), 1_000_000, 2_000),
                // Hostile target durations are clamped; none overflows.
                r(true, None, u64::MAX, u64::MAX),
            ],
            NOW,
        );
        assert_eq!(e.pdt_unix_ms, Some(NOW - 1_000));
        assert_eq!(e.sequence_ms, Some(u64::MAX));
        assert_eq!(e.target_duration_ms, 60_000);
        let none = Edge::of(Standing::Fresh, [], NOW);
        assert_eq!((none.pdt_unix_ms, none.sequence_ms), (None, None));
        assert_eq!(
            none.target_duration_ms,
            crate::probe::decision::DEFAULT_TARGET_DURATION_MS
        );
    }

    #[test]
    fn lag_is_measured_from_the_newest_program_date_time() {
        let e = edges(&[
            ("east", fresh(Some(NOW - 1_000), 500)),
            ("west", fresh(Some(NOW - 31_000), 485)),
            ("south", fresh(Some(NOW - 3_000), 499)),
        ]);
        let p = policy(20);
        assert_eq!(
            lag_of(&compare("west", &e, &p, NOW)),
            (30_000, "east", Basis::ProgramDateTime)
        );
        assert_eq!(lag_of(&compare("south", &e, &p, NOW)).0, 2_000);
        // The leader lags nobody.
        assert_eq!(
            lag_of(&compare("east", &e, &p, NOW)),
            (0, "east", Basis::ProgramDateTime)
        );
    }

    #[test]
    fn all_lagging_equally_means_nobody_lags() {
        let e = edges(&[
            ("a", fresh(Some(NOW - 40_000), 1)),
            ("b", fresh(Some(NOW - 40_000), 1)),
            ("c", fresh(Some(NOW - 40_500), 1)),
        ]);
        for me in ["a", "b", "c"] {
            assert!(lag_of(&compare(me, &e, &policy(20), NOW)).0 <= 500);
        }
    }

    #[test]
    fn stale_unjudged_or_silent_instances_neither_lag_nor_lead() {
        let mut stale_leader = fresh(Some(NOW - 1_000), 500);
        stale_leader.standing = Standing::Stale;
        let mut pending_leader = fresh(Some(NOW), 501);
        pending_leader.standing = Standing::NotJudged;
        let mut silent_leader = fresh(Some(NOW - 500), 502);
        silent_leader.observed_unix_ms = NOW - 60_000;
        let e = edges(&[
            ("dead", stale_leader),
            ("new", pending_leader),
            ("gone", silent_leader),
            ("west", fresh(Some(NOW - 31_000), 485)),
            ("south", fresh(Some(NOW - 30_000), 485)),
        ]);
        let p = policy(20);
        // Compared among the fresh ones only.
        assert_eq!(
            lag_of(&compare("west", &e, &p, NOW)),
            (1_000, "south", Basis::ProgramDateTime)
        );
        // A stale instance is stale, not lagging.
        assert_eq!(reason(&compare("dead", &e, &p, NOW)), "InstanceStale");
        assert_eq!(reason(&compare("new", &e, &p, NOW)), "InstanceNotJudged");
        assert_eq!(reason(&compare("absent", &e, &p, NOW)), "NotCompared");
    }

    #[test]
    fn an_instance_without_a_sampled_rendition_is_not_compared() {
        // Fresh, but every rendition's probe starved of permits: no edge at all.
        let unsampled = Edge::of(Standing::Fresh, [], NOW);
        let e = edges(&[
            ("starved", unsampled),
            ("west", fresh(Some(NOW - 31_000), 485)),
        ]);
        assert_eq!(
            reason(&compare("starved", &e, &policy(20), NOW)),
            "NotCompared"
        );
        // Nor does it lead, by date or by sequence.
        assert_eq!(reason(&compare("west", &e, &policy(20), NOW)), "NoPeer");
        let shared = LagPolicy {
            shared_media_sequence: true,
            ..policy(20)
        };
        assert_eq!(reason(&compare("west", &e, &shared, NOW)), "NoPeer");
    }

    #[test]
    fn a_single_instance_has_nothing_to_compare_with() {
        let e = edges(&[("only", fresh(Some(NOW - 100_000), 1))]);
        assert_eq!(reason(&compare("only", &e, &policy(20), NOW)), "NoPeer");
        let mut dead = fresh(Some(NOW), 9);
        dead.standing = Standing::Stale;
        let e = edges(&[("only", fresh(Some(NOW - 100_000), 1)), ("dead", dead)]);
        assert_eq!(reason(&compare("only", &e, &policy(20), NOW)), "NoPeer");
    }

    #[test]
    fn hostile_dates_never_lead_and_give_no_verdict_of_their_own() {
        let e = edges(&[
            ("future", fresh(Some(NOW + 3_600_000), 1)),
            ("ancient", fresh(Some(0), 1)),
            ("absurd", fresh(Some(i64::MAX), 1)),
            ("west", fresh(Some(NOW - 31_000), 485)),
            ("east", fresh(Some(NOW - 1_000), 500)),
        ]);
        let p = policy(20);
        assert_eq!(
            lag_of(&compare("west", &e, &p, NOW)),
            (30_000, "east", Basis::ProgramDateTime)
        );
        assert_eq!(lag_of(&compare("east", &e, &p, NOW)).0, 0);
        assert_eq!(
            reason(&compare("future", &e, &p, NOW)),
            "ProgramDateTimeInFuture"
        );
        assert_eq!(
            reason(&compare("absurd", &e, &p, NOW)),
            "ProgramDateTimeInFuture"
        );
        assert_eq!(
            reason(&compare("ancient", &e, &p, NOW)),
            "ProgramDateTimeImplausible"
        );
        // Slightly ahead (clock skew within the tolerance) is taken as it is.
        let e = edges(&[
            ("skewed", fresh(Some(NOW + 1_500), 1)),
            ("west", fresh(Some(NOW - 1_000), 1)),
        ]);
        assert_eq!(
            lag_of(&compare("west", &e, &p, NOW)),
            (2_500, "skewed", Basis::ProgramDateTime)
        );
        // i64 extremes do not overflow.
        let e = edges(&[("a", fresh(Some(i64::MIN), 1)), ("b", fresh(Some(NOW), 1))]);
        assert_eq!(
            reason(&compare("a", &e, &p, i64::MAX)),
            "ProgramDateTimeImplausible"
        );
    }

    #[test]
    fn media_sequence_is_compared_only_when_the_regions_share_a_clock() {
        let e = edges(&[("east", fresh(None, 500)), ("west", fresh(None, 485))]);
        let c = compare("west", &e, &policy(20), NOW);
        assert_eq!(reason(&c), "NoCommonClock");
        let shared = LagPolicy {
            shared_media_sequence: true,
            ..policy(20)
        };
        assert_eq!(
            lag_of(&compare("west", &e, &shared, NOW)),
            (30_000, "east", Basis::MediaSequence)
        );
        // One instance without dates: by sequence for all when opted in, else only the dated
        // peers are compared.
        let e = edges(&[
            ("east", fresh(None, 500)),
            ("west", fresh(Some(NOW - 31_000), 485)),
            ("south", fresh(Some(NOW - 1_000), 500)),
        ]);
        assert_eq!(
            lag_of(&compare("west", &e, &shared, NOW)),
            (30_000, "east", Basis::MediaSequence)
        );
        assert_eq!(
            lag_of(&compare("west", &e, &policy(20), NOW)),
            (30_000, "south", Basis::ProgramDateTime)
        );
        assert_eq!(
            reason(&compare("east", &e, &policy(20), NOW)),
            "NoCommonClock"
        );
        // Sequences that are hours apart are not a shared clock.
        let e = edges(&[("east", fresh(None, 5_000_000)), ("west", fresh(None, 485))]);
        assert_eq!(
            reason(&compare("west", &e, &shared, NOW)),
            "EdgesImplausible"
        );
        let e = edges(&[("east", fresh(None, u64::MAX)), ("west", fresh(None, 0))]);
        assert_eq!(
            reason(&compare("west", &e, &shared, NOW)),
            "EdgesImplausible"
        );
    }

    #[test]
    fn the_limit_is_clamped() {
        assert_eq!(policy(0).max_lag_ms(), 2_000);
        assert_eq!(policy(u32::MAX).max_lag_ms(), 600_000);
        assert_eq!(LagPolicy::default().max_lag_ms(), 20_000);
        // The margin is a target duration, within a quarter and a half of the limit.
        assert_eq!(policy(20).margin_ms(2_000), 5_000);
        assert_eq!(policy(20).margin_ms(6_000), 6_000);
        assert_eq!(policy(4).margin_ms(6_000), 2_000);
        assert_eq!(policy(4).margin_ms(u64::MAX), 2_000);
        assert_eq!(sustain_ms(1_000), 3_000);
        assert_eq!(sustain_ms(6_000), 18_000);
        assert_eq!(sustain_ms(u64::MAX), 180_000);
    }

    fn behind(lag_ms: u64) -> Comparison {
        Comparison::Behind {
            lag_ms,
            leader: "east".into(),
            basis: Basis::ProgramDateTime,
            target_duration_ms: TD,
        }
    }

    /// Runs `samples` (lag in ms, one every second from 0) and gives the verdicts.
    fn run(t: &mut LagTracker, p: &LagPolicy, from_s: u64, samples: &[u64]) -> Vec<Option<bool>> {
        samples
            .iter()
            .enumerate()
            .map(|(i, &lag)| {
                t.observe(&behind(lag), p, (from_s + i as u64) * 1000)
                    .lagging
            })
            .collect()
    }

    #[test]
    fn lagging_only_after_the_lag_is_sustained() {
        let p = policy(10); // sustain 6 s at TD 2 s, clears below 10 - 2.5 = 7.5 s
        let mut t = LagTracker::default();
        // Brief excursions over the limit, broken by samples within it: never lagging.
        let spiky = [
            11_000, 12_000, 9_000, 11_000, 11_000, 11_000, 11_000, 11_000, 8_000, 12_000,
        ];
        assert!(run(&mut t, &p, 0, &spiky).iter().all(|v| *v == Some(false)));
        // Over the limit for 6 s: lagging at the sample 6 s after the first.
        let v = run(&mut t, &p, 100, &[11_000; 8]);
        assert_eq!(v[..6], [Some(false); 6]);
        assert_eq!(v[6..], [Some(true); 2]);
        let verdict = t.observe(&behind(12_345), &p, 108_000);
        assert_eq!(verdict.reason, "Lagging");
        assert_eq!(verdict.lag_ms, Some(12_345));
        assert!(
            verdict
                .message
                .starts_with("12.3 s behind east by EXT-X-PROGRAM-DATE-TIME (limit 10.0 s"),
            "{}",
            verdict.message
        );
    }

    #[test]
    fn lagging_clears_only_below_the_margin_for_the_sustained_time() {
        let p = policy(10);
        let mut t = LagTracker::default();
        run(&mut t, &p, 0, &[15_000; 7]);
        assert!(t.is_lagging());
        // Just under the limit, but not under the margin: still lagging, however long.
        assert!(
            run(&mut t, &p, 10, &[9_000; 20])
                .iter()
                .all(|v| *v == Some(true))
        );
        // Under the margin, broken once: the time starts again.
        let v = run(
            &mut t,
            &p,
            40,
            &[
                5_000, 5_000, 5_000, 5_000, 9_000, 5_000, 5_000, 5_000, 5_000, 5_000, 5_000, 5_000,
            ],
        );
        assert!(v[..11].iter().all(|v| *v == Some(true)), "{v:?}");
        assert_eq!(v[11], Some(false), "{v:?}");
        let verdict = t.observe(&behind(0), &p, 60_000);
        assert_eq!(
            (verdict.lagging, verdict.reason),
            (Some(false), "WithinLimit")
        );
    }

    #[test]
    fn losing_the_comparison_ends_the_verdict_after_the_sustained_time() {
        let p = policy(10); // sustain 6 s at TD 2 s
        let mut t = LagTracker::default();
        run(&mut t, &p, 0, &[15_000; 7]);
        assert!(t.is_lagging());
        // The comparison is lost (the leader went stale, or its samples are late): the lag
        // verdict holds for the sustained time, then there is none.
        let lost = unknown("NoPeer", "nothing to compare with");
        let held = t.observe(&lost, &p, 8_000);
        assert_eq!(
            (held.lagging, held.reason, held.lag_ms),
            (Some(true), "Lagging", None)
        );
        assert_eq!(held.leader.as_deref(), Some("east"));
        assert!(
            held.message.contains("nothing to compare with"),
            "{}",
            held.message
        );
        assert_eq!(t.observe(&lost, &p, 13_999).lagging, Some(true));
        let v = t.observe(&lost, &p, 14_000);
        assert_eq!((v.lagging, v.reason, v.lag_ms), (None, "NoPeer", None));
        assert!(!t.is_lagging());
        // And the hysteresis starts over when it comes back.
        let v = run(&mut t, &p, 15, &[15_000; 3]);
        assert!(v.iter().all(|v| *v == Some(false)));

        // A comparison lost for a moment changes nothing.
        let mut t = LagTracker::default();
        run(&mut t, &p, 0, &[15_000; 7]);
        assert_eq!(t.observe(&lost, &p, 7_000).lagging, Some(true));
        assert_eq!(t.observe(&behind(15_000), &p, 8_000).lagging, Some(true));
        // Later losses get the full time again.
        assert_eq!(t.observe(&lost, &p, 9_000).lagging, Some(true));
        assert_eq!(t.observe(&lost, &p, 14_999).lagging, Some(true));

        // This instance stale: its own verdict, at once.
        let mut t = LagTracker::default();
        run(&mut t, &p, 0, &[15_000; 7]);
        let v = t.observe(&unknown("InstanceStale", "stale"), &p, 7_000);
        assert_eq!((v.lagging, v.reason), (None, "InstanceStale"));
    }

    #[test]
    fn a_scripted_region_falling_behind_and_catching_up() {
        // Two regions at TD 2 s polled every second; west's packager stalls for 30 s and then
        // serves 30 s behind for a minute, then catches up.
        let p = policy(20);
        let mut t = LagTracker::default();
        let mut seen = Vec::new();
        for s in 0..200u64 {
            let now = NOW + s as i64 * 1000;
            // Edges move by whole segments.
            let seg = |t: i64| t - t.rem_euclid(2_000);
            let delay = match s {
                0..40 => 0,
                40..70 => (s as i64 - 40) * 1000,
                70..130 => 30_000,
                _ => 0,
            };
            let e = edges(&[
                (
                    "east",
                    Edge::of(
                        Standing::Fresh,
                        [RenditionEdge {
                            fresh: true,
                            pdt_end_unix_ms: Some(seg(now)),
                            head: 0,
                            target_duration_ms: TD,
                        }],
                        now,
                    ),
                ),
                (
                    "west",
                    Edge::of(
                        Standing::Fresh,
                        [RenditionEdge {
                            fresh: true,
                            pdt_end_unix_ms: Some(seg(now - delay)),
                            head: 0,
                            target_duration_ms: TD,
                        }],
                        now,
                    ),
                ),
            ]);
            let v = t.observe(&compare("west", &e, &p, now), &p, s * 1000);
            if seen.last().map(|(_, l)| *l) != Some(v.lagging) {
                seen.push((s, v.lagging));
            }
        }
        // Over 20 s from about s = 61, lagging 6 s later; back at s = 130, cleared 6 s later.
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen[0], (0, Some(false)));
        assert!(
            (66..=69).contains(&seen[1].0) && seen[1].1 == Some(true),
            "{seen:?}"
        );
        assert!(
            (136..=137).contains(&seen[2].0) && seen[2].1 == Some(false),
            "{seen:?}"
        );
    }

    #[test]
    fn a_leader_alternating_between_regions_a_moment_apart_is_no_change() {
        let behind = LagVerdict {
            lagging: Some(false),
            reason: "WithinLimit",
            message: "6.0 s behind a-eu by EXT-X-PROGRAM-DATE-TIME (limit 20.0 s)".into(),
            lag_ms: Some(6_000),
            leader: Some("a-eu".into()),
        };
        let leading = LagVerdict {
            message: "leading instance by EXT-X-PROGRAM-DATE-TIME (limit 20.0 s)".into(),
            lag_ms: Some(0),
            leader: None,
            ..behind.clone()
        };
        assert!(behind.same_standing(&leading));
        let lagging = LagVerdict {
            lagging: Some(true),
            reason: "Lagging",
            ..behind.clone()
        };
        assert!(!behind.same_standing(&lagging));
    }
}
