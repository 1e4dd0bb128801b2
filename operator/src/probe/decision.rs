//! Pure freshness decisions for one media playlist, and their aggregation to an instance.
//! No I/O and no clock: every function takes the time (milliseconds on a monotonic scale) as an
//! argument, so scripted sequences test it exactly.
//!
//! A rendition is **stale** when
//! - no new segment has appeared for `stalenessMultiplier x EXT-X-TARGETDURATION` (RFC 8216bis
//!   6.2.1; default 1.5), measured from when the prober saw the last one, or
//! - the last fetch failed (HTTP 4xx/5xx, timeout, refused, too large, unparsable), or
//! - EXT-X-MEDIA-SEQUENCE went backwards (an origin restart), or
//! - the playlist ended (EXT-X-ENDLIST) on a live event.
//!
//! A stale rendition counts as fresh again only after `recoveryUpdates` consecutive new segments
//! (hysteresis), so an origin that flaps does not flap the instance.
//!
//! An instance is healthy when its master playlist answers and **every** rendition is fresh: one
//! frozen rendition out of many is reported (the original system's "95 % tolerance" hid it).

use std::fmt;

/// What a parsed media playlist tells the prober.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub media_sequence: u64,
    pub segment_count: u64,
    pub target_duration_ms: u64,
    /// Duration of the last segment, the HLS reload interval after a change.
    pub last_segment_ms: u64,
    pub ended: bool,
}

impl Snapshot {
    /// Sequence number one past the newest segment: grows by one per new segment.
    pub fn head(&self) -> u64 {
        self.media_sequence.saturating_add(self.segment_count)
    }
}

/// Why a fetch produced no usable playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    Http(u16),
    Timeout,
    Connect(String),
    TooLarge(u64),
    Unparsable(String),
    Redirect(String),
    Other(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Http(code) => write!(f, "HTTP {code}"),
            Failure::Timeout => write!(f, "request timed out"),
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::TooLarge(limit) => write!(f, "playlist larger than {limit} bytes"),
            Failure::Unparsable(e) => write!(f, "unparsable playlist: {e}"),
            Failure::Redirect(e) => write!(f, "bad redirect: {e}"),
            Failure::Other(e) => write!(f, "{e}"),
        }
    }
}

impl Failure {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Http(c) if *c < 500 => "http_4xx",
            Failure::Http(_) => "http_5xx",
            Failure::Timeout => "timeout",
            Failure::Connect(_) => "connect",
            Failure::TooLarge(_) => "too_large",
            Failure::Unparsable(_) => "unparsable",
            Failure::Redirect(_) => "redirect",
            Failure::Other(_) => "other",
        }
    }
}

/// Why a rendition is stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StaleReason {
    /// Nothing fetched successfully yet (e.g. the origin is down at start-up).
    NeverFetched,
    /// No new segment within the bound.
    NoNewSegment {
        age_ms: u64,
        bound_ms: u64,
    },
    Failed(Failure),
    SequenceReset {
        from: u64,
        to: u64,
    },
    Ended,
    /// Stale earlier and not yet through the recovery hysteresis.
    Recovering {
        seen: u32,
        needed: u32,
    },
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleReason::NeverFetched => write!(f, "no playlist fetched yet"),
            StaleReason::NoNewSegment { age_ms, bound_ms } => write!(
                f,
                "no new segment for {:.3} s (bound {:.3} s)",
                *age_ms as f64 / 1000.0,
                *bound_ms as f64 / 1000.0
            ),
            StaleReason::Failed(e) => write!(f, "{e}"),
            StaleReason::SequenceReset { from, to } => {
                write!(f, "media sequence went backwards from {from} to {to}")
            }
            StaleReason::Ended => write!(f, "playlist ended (EXT-X-ENDLIST)"),
            StaleReason::Recovering { seen, needed } => {
                write!(f, "recovering: {seen} of {needed} fresh updates seen")
            }
        }
    }
}

impl StaleReason {
    /// The condition reason (CamelCase).
    pub fn code(&self) -> &'static str {
        match self {
            StaleReason::NeverFetched => "NeverFetched",
            StaleReason::NoNewSegment { .. } => "NoNewSegment",
            StaleReason::Failed(Failure::Http(_)) => "HttpError",
            StaleReason::Failed(Failure::Timeout) => "Timeout",
            StaleReason::Failed(Failure::Connect(_)) => "ConnectionFailed",
            StaleReason::Failed(Failure::TooLarge(_)) => "PlaylistTooLarge",
            StaleReason::Failed(Failure::Unparsable(_)) => "PlaylistUnparsable",
            StaleReason::Failed(Failure::Redirect(_)) => "BadRedirect",
            StaleReason::Failed(Failure::Other(_)) => "FetchFailed",
            StaleReason::SequenceReset { .. } => "MediaSequenceReset",
            StaleReason::Ended => "PlaylistEnded",
            StaleReason::Recovering { .. } => "Recovering",
        }
    }
}

/// How freshness is judged (from the ClusteredStream's `spec.health`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    pub staleness_multiplier: f64,
    pub recovery_updates: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            staleness_multiplier: 1.5,
            recovery_updates: 2,
        }
    }
}

impl Policy {
    pub fn bound_ms(&self, target_duration_ms: u64) -> u64 {
        (target_duration_ms as f64 * self.staleness_multiplier).round() as u64
    }
}

/// Target duration assumed before the first playlist is seen.
pub const DEFAULT_TARGET_DURATION_MS: u64 = 6_000;

/// The freshness state of one media playlist.
#[derive(Clone, Debug, PartialEq)]
pub struct Tracker {
    pub last: Option<Snapshot>,
    /// When the prober last saw the playlist gain a segment.
    pub last_change_ms: Option<u64>,
    pub stale: Option<StaleReason>,
    /// Consecutive new-segment updates seen while recovering.
    recovering_seen: u32,
    pub last_error: Option<Failure>,
    pub consecutive_failures: u32,
    /// When the prober last polled (successfully or not).
    last_poll_ms: Option<u64>,
    /// The last new segment appeared after this time (the poll before the one that saw it), so
    /// the next is due one segment after it. Polling from there keeps the prober within one
    /// catch-up interval of the origin's segment clock, whatever phase it started in.
    change_after_ms: Option<u64>,
    /// The last update added several segments at once, so it dates nothing: poll every
    /// catch-up interval until a single new segment shows where the segment clock is.
    clock_lost: bool,
}

/// What one observation changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The playlist gained a segment.
    pub advanced: bool,
    /// Fresh/stale flipped.
    pub flipped: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    pub fn new() -> Self {
        Self {
            last: None,
            last_change_ms: None,
            stale: Some(StaleReason::NeverFetched),
            recovering_seen: 0,
            last_error: None,
            consecutive_failures: 0,
            last_poll_ms: None,
            change_after_ms: None,
            clock_lost: false,
        }
    }

    pub fn is_fresh(&self) -> bool {
        self.stale.is_none()
    }

    pub fn target_duration_ms(&self) -> u64 {
        self.last
            .map(|s| s.target_duration_ms)
            .filter(|&t| t > 0)
            .unwrap_or(DEFAULT_TARGET_DURATION_MS)
    }

    /// When the playlist becomes stale if nothing new arrives.
    pub fn deadline_ms(&self, policy: &Policy) -> Option<u64> {
        let change = self.last_change_ms?;
        Some(change + policy.bound_ms(self.target_duration_ms()))
    }

    fn set_stale(&mut self, reason: StaleReason) -> bool {
        let was_fresh = self.stale.is_none();
        self.stale = Some(reason);
        self.recovering_seen = 0;
        was_fresh
    }

    /// Applies a successfully parsed playlist seen at `now_ms`.
    pub fn observe(&mut self, snap: Snapshot, now_ms: u64, policy: &Policy) -> Verdict {
        let was_fresh = self.is_fresh();
        let previous_poll_ms = self.last_poll_ms.replace(now_ms);
        self.last_error = None;
        self.consecutive_failures = 0;
        let previous = self.last.replace(snap);
        let mut advanced = false;
        match previous {
            None => {
                // First sight: give the playlist a full bound. A playlist that failed before it
                // was ever seen (origin down at start-up) still goes through the hysteresis.
                self.last_change_ms = Some(now_ms);
                self.recovering_seen = 0;
                self.stale = match self.stale {
                    Some(StaleReason::NeverFetched) | None => None,
                    Some(_) => Some(StaleReason::Recovering {
                        seen: 0,
                        needed: policy.recovery_updates,
                    }),
                };
            }
            Some(prev) if snap.media_sequence < prev.media_sequence => {
                self.last_change_ms = Some(now_ms);
                self.set_stale(StaleReason::SequenceReset {
                    from: prev.media_sequence,
                    to: snap.media_sequence,
                });
            }
            Some(prev) if snap.head() < prev.head() => {
                // Segments vanished from the end (a truncated body, or a broken origin). Keep the
                // longer playlist as the reference so a later full one is not taken as new.
                self.last = Some(prev);
                self.set_stale(StaleReason::Failed(Failure::Unparsable(
                    "playlist lost segments at its end".into(),
                )));
            }
            Some(prev) if snap.head() > prev.head() => {
                advanced = true;
                self.last_change_ms = Some(now_ms);
                // One new segment dates itself to after the previous poll. A jump of several (an
                // origin catching up after a freeze heals) says nothing about the segment clock,
                // nor does the first segment after a stale spell: a freeze that healed may reveal
                // a single segment published long ago. Then expect the next one at once and find
                // it by catch-up polling.
                let ends_stale_spell = matches!(
                    self.stale,
                    Some(
                        StaleReason::NoNewSegment { .. }
                            | StaleReason::Failed(_)
                            | StaleReason::SequenceReset { .. }
                    )
                );
                self.clock_lost = snap.head() - prev.head() > 1 || ends_stale_spell;
                self.change_after_ms = previous_poll_ms;
                match &self.stale {
                    None => {}
                    Some(StaleReason::NeverFetched) => self.stale = None,
                    Some(_) => {
                        self.recovering_seen += 1;
                        if self.recovering_seen >= policy.recovery_updates {
                            self.stale = None;
                            self.recovering_seen = 0;
                        } else {
                            self.stale = Some(StaleReason::Recovering {
                                seen: self.recovering_seen,
                                needed: policy.recovery_updates,
                            });
                        }
                    }
                }
            }
            Some(_) => {
                // Answering again but not advanced: no longer a fetch failure, not yet fresh.
                if matches!(self.stale, Some(StaleReason::Failed(_))) {
                    self.stale = Some(StaleReason::Recovering {
                        seen: 0,
                        needed: policy.recovery_updates,
                    });
                }
            }
        }
        if snap.ended {
            self.set_stale(StaleReason::Ended);
        } else {
            self.check_age(now_ms, policy);
        }
        Verdict {
            advanced,
            flipped: was_fresh != self.is_fresh(),
        }
    }

    /// Applies a failed fetch at `now_ms`.
    pub fn fail(&mut self, failure: Failure, now_ms: u64) -> Verdict {
        let was_fresh = self.is_fresh();
        self.last_poll_ms = Some(now_ms);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_error = Some(failure.clone());
        self.set_stale(StaleReason::Failed(failure));
        Verdict {
            advanced: false,
            flipped: was_fresh,
        }
    }

    /// Re-evaluates the age bound at `now_ms` without a new observation (a timer fired).
    pub fn tick(&mut self, now_ms: u64, policy: &Policy) -> Verdict {
        let was_fresh = self.is_fresh();
        self.check_age(now_ms, policy);
        Verdict {
            advanced: false,
            flipped: was_fresh != self.is_fresh(),
        }
    }

    fn check_age(&mut self, now_ms: u64, policy: &Policy) {
        let Some(deadline) = self.deadline_ms(policy) else {
            return;
        };
        // Keep the first verdict's wording (and age) so status messages stay stable while stale.
        if now_ms > deadline
            && !matches!(
                self.stale,
                Some(
                    StaleReason::Failed(_) | StaleReason::Ended | StaleReason::NoNewSegment { .. }
                )
            )
        {
            let age_ms = now_ms - self.last_change_ms.unwrap_or(now_ms);
            let bound_ms = policy.bound_ms(self.target_duration_ms());
            self.set_stale(StaleReason::NoNewSegment { age_ms, bound_ms });
        }
    }

    /// Milliseconds until the next poll. HLS cadence (RFC 8216bis 6.3.4): after a change, the
    /// last segment's duration; otherwise half the target duration. Two refinements keep
    /// detection within the bound plus one `catch_up_ms`: the next segment is expected one
    /// segment after the poll *before* the one that saw the last change (the earliest it could
    /// have appeared), and from then an unchanged playlist is re-polled every `catch_up_ms`, so
    /// after one segment the prober is within `catch_up_ms` of the origin's segment clock
    /// whatever phase it started in; and a poll is always due at the staleness deadline. Failures back off
    /// exponentially from half the target duration to `max_backoff_ms`, never below 50 ms.
    pub fn next_poll_in_ms(
        &self,
        verdict_advanced: bool,
        now_ms: u64,
        policy: &Policy,
        max_backoff_ms: u64,
    ) -> u64 {
        let td = self.target_duration_ms();
        let catch_up = catch_up_ms(td);
        let mut delay = if self.consecutive_failures > 0 {
            let exp = self.consecutive_failures.saturating_sub(1).min(16);
            (td / 2)
                .saturating_mul(1u64 << exp)
                .min(max_backoff_ms.max(td / 2))
        } else {
            let seg = self
                .last
                .map(|s| s.last_segment_ms)
                .filter(|&d| d > 0)
                .unwrap_or(td);
            // The next segment is due one segment after the last one could first have appeared.
            let due = self
                .change_after_ms
                .or(self.last_change_ms.map(|c| c.saturating_sub(catch_up)))
                .map(|after| after + seg);
            // Once stale for want of a new segment, the plain HLS reload interval: catch-up
            // polling a frozen origin (often thousands of playlists when a region stalls) for as
            // long as it stays frozen would add load where it hurts, to win milliseconds on a
            // recovery that waits out its hysteresis anyway.
            let frozen = matches!(self.stale, Some(StaleReason::NoNewSegment { .. }));
            match due {
                _ if self.clock_lost => catch_up,
                Some(due) if verdict_advanced => due.saturating_sub(now_ms).max(catch_up),
                Some(due) if now_ms + td / 2 > due && !frozen => catch_up,
                _ => td / 2,
            }
        };
        if self.consecutive_failures == 0
            && let Some(deadline) = self.deadline_ms(policy)
            && self.is_fresh()
        {
            delay = delay.min(deadline.saturating_sub(now_ms) + 1);
        }
        delay.max(MIN_POLL_MS)
    }
}

/// Never poll one playlist more often than this.
pub const MIN_POLL_MS: u64 = 50;

/// The catch-up interval: a twentieth of the target duration, between 50 and 150 ms.
pub fn catch_up_ms(target_duration_ms: u64) -> u64 {
    (target_duration_ms / 20).clamp(MIN_POLL_MS, 150)
}

/// The instance-level verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceVerdict {
    pub healthy: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Aggregates renditions: healthy only when the master answers, at least one rendition is known,
/// and every rendition is fresh. A rendition not fetched yet (just discovered) is not judged;
/// `None` means there is nothing to judge yet.
pub fn aggregate<'a>(
    master_error: Option<&Failure>,
    renditions: impl IntoIterator<Item = (&'a str, &'a Tracker)>,
) -> Option<InstanceVerdict> {
    let all: Vec<(&str, &Tracker)> = renditions.into_iter().collect();
    let renditions: Vec<(&str, &Tracker)> = all
        .iter()
        .copied()
        .filter(|(_, t)| t.stale != Some(StaleReason::NeverFetched))
        .collect();
    if master_error.is_none() && !all.is_empty() && renditions.is_empty() {
        return None;
    }
    Some(aggregate_judged(master_error, renditions))
}

fn aggregate_judged(
    master_error: Option<&Failure>,
    renditions: Vec<(&str, &Tracker)>,
) -> InstanceVerdict {
    if let Some(e) = master_error
        && renditions.is_empty()
    {
        return InstanceVerdict {
            healthy: false,
            reason: "MasterUnavailable",
            message: format!("master playlist: {e}"),
        };
    }
    if renditions.is_empty() {
        return InstanceVerdict {
            healthy: false,
            reason: "NoRenditions",
            message: "the master playlist lists no media playlists".into(),
        };
    }
    let stale: Vec<(&str, &StaleReason)> = renditions
        .iter()
        .filter_map(|(name, t)| t.stale.as_ref().map(|r| (*name, r)))
        .collect();
    if stale.is_empty() {
        if let Some(e) = master_error {
            return InstanceVerdict {
                healthy: false,
                reason: "MasterUnavailable",
                message: format!(
                    "master playlist: {e}; all {} renditions fresh",
                    renditions.len()
                ),
            };
        }
        return InstanceVerdict {
            healthy: true,
            reason: "AllRenditionsFresh",
            message: format!("all {} renditions fresh", renditions.len()),
        };
    }
    // One cause shared by every stale rendition names the reason; mixed causes do not.
    let first = stale[0].1.code();
    let reason = if stale.iter().all(|(_, r)| r.code() == first) {
        first
    } else {
        "RenditionsStale"
    };
    const SHOWN: usize = 5;
    let mut message = format!("{} of {} renditions stale: ", stale.len(), renditions.len());
    let listed: Vec<String> = stale
        .iter()
        .take(SHOWN)
        .map(|(n, r)| format!("{n}: {r}"))
        .collect();
    message.push_str(&listed.join("; "));
    if stale.len() > SHOWN {
        message.push_str(&format!("; and {} more", stale.len() - SHOWN));
    }
    InstanceVerdict {
        healthy: false,
        reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD: u64 = 2_000;

    fn snap(seq: u64, count: u64) -> Snapshot {
        Snapshot {
            media_sequence: seq,
            segment_count: count,
            target_duration_ms: TD,
            last_segment_ms: TD,
            ended: false,
        }
    }

    fn policy() -> Policy {
        Policy::default()
    }

    #[test]
    fn fresh_while_segments_arrive_and_stale_after_one_and_a_half_target_durations() {
        let mut t = Tracker::new();
        assert!(!t.is_fresh(), "nothing fetched yet");
        assert!(t.observe(snap(10, 6), 0, &policy()).flipped);
        assert!(t.is_fresh());
        assert!(t.observe(snap(11, 6), 2_000, &policy()).advanced);
        // Same playlist at 4,999 ms: 2,999 ms since the change, bound is 3,000 ms.
        t.observe(snap(11, 6), 4_999, &policy());
        assert!(t.is_fresh());
        assert_eq!(t.deadline_ms(&policy()), Some(5_000));
        // One millisecond past the bound.
        let v = t.tick(5_001, &policy());
        assert!(v.flipped && !t.is_fresh());
        assert_eq!(
            t.stale,
            Some(StaleReason::NoNewSegment {
                age_ms: 3_001,
                bound_ms: 3_000
            })
        );
    }

    #[test]
    fn millisecond_resolution_and_custom_multiplier() {
        let p = Policy {
            staleness_multiplier: 1.25,
            recovery_updates: 1,
        };
        let mut t = Tracker::new();
        t.observe(snap(1, 3), 100, &p);
        t.tick(2_600, &p);
        assert!(t.is_fresh(), "2,500 ms is exactly the bound");
        t.tick(2_601, &p);
        assert!(!t.is_fresh());
    }

    #[test]
    fn recovery_needs_consecutive_updates() {
        let mut t = Tracker::new();
        t.observe(snap(1, 6), 0, &policy());
        t.tick(10_000, &policy());
        assert!(!t.is_fresh());
        t.observe(snap(2, 6), 10_100, &policy());
        assert!(matches!(
            t.stale,
            Some(StaleReason::Recovering { seen: 1, needed: 2 })
        ));
        let v = t.observe(snap(3, 6), 12_100, &policy());
        assert!(v.flipped && t.is_fresh());
    }

    #[test]
    fn errors_are_stale_immediately_and_recovery_is_hysteretic() {
        for failure in [
            Failure::Http(404),
            Failure::Http(500),
            Failure::Timeout,
            Failure::Connect("refused".into()),
            Failure::TooLarge(1 << 20),
            Failure::Unparsable("garbage".into()),
        ] {
            let mut t = Tracker::new();
            t.observe(snap(1, 6), 0, &policy());
            let v = t.fail(failure.clone(), 500);
            assert!(v.flipped, "{failure}");
            assert_eq!(t.stale, Some(StaleReason::Failed(failure.clone())));
            // The same playlist again is not an update: still stale, now recovering.
            t.observe(snap(1, 6), 900, &policy());
            assert!(matches!(
                t.stale,
                Some(StaleReason::Recovering { seen: 0, .. })
            ));
            t.observe(snap(2, 6), 2_000, &policy());
            assert!(!t.is_fresh());
            t.observe(snap(3, 6), 4_000, &policy());
            assert!(t.is_fresh(), "{failure}");
        }
    }

    #[test]
    fn media_sequence_going_backwards_is_stale() {
        let mut t = Tracker::new();
        t.observe(snap(500, 6), 0, &policy());
        let v = t.observe(snap(3, 6), 1_000, &policy());
        assert!(v.flipped);
        assert_eq!(
            t.stale,
            Some(StaleReason::SequenceReset { from: 500, to: 3 })
        );
        t.observe(snap(4, 6), 2_000, &policy());
        t.observe(snap(5, 6), 4_000, &policy());
        assert!(t.is_fresh());
    }

    #[test]
    fn a_growing_playlist_without_sliding_counts_as_advancing() {
        let mut t = Tracker::new();
        t.observe(snap(0, 3), 0, &policy());
        assert!(t.observe(snap(0, 4), 2_000, &policy()).advanced);
    }

    #[test]
    fn a_playlist_that_loses_segments_is_stale_and_not_a_later_update() {
        let mut t = Tracker::new();
        t.observe(snap(10, 6), 0, &policy());
        t.observe(snap(10, 3), 500, &policy());
        assert!(matches!(
            t.stale,
            Some(StaleReason::Failed(Failure::Unparsable(_)))
        ));
        // The full playlist again is not an advance.
        assert!(!t.observe(snap(10, 6), 900, &policy()).advanced);
    }

    #[test]
    fn ended_playlist_is_stale() {
        let mut t = Tracker::new();
        let mut s = snap(1, 6);
        t.observe(s, 0, &policy());
        s.ended = true;
        s.segment_count = 7;
        t.observe(s, 2_000, &policy());
        assert_eq!(t.stale, Some(StaleReason::Ended));
    }

    #[test]
    fn origin_down_at_start_up_is_simply_stale() {
        let mut t = Tracker::new();
        let v = t.fail(Failure::Connect("refused".into()), 0);
        assert!(!v.flipped, "it was never fresh");
        assert!(!t.is_fresh());
        t.observe(snap(1, 6), 1_000, &policy());
        assert!(
            !t.is_fresh(),
            "recovering from a failure needs the hysteresis"
        );
    }

    #[test]
    fn polling_locks_onto_the_segment_clock_within_one_catch_up() {
        let p = policy();
        // The origin publishes a segment every 2 s from 700 ms on; the prober starts at 0.
        let head_at = |t: u64| if t < 700 { 0 } else { 1 + (t - 700) / TD };
        let mut t = Tracker::new();
        let (mut now, mut polls, mut lags) = (0u64, 0u32, Vec::new());
        while now < 40_000 {
            let head = head_at(now);
            let v = t.observe(snap(head, 6), now, &p);
            polls += 1;
            if v.advanced {
                lags.push(now - (700 + (head - 1) * TD));
            }
            now += t.next_poll_in_ms(v.advanced, now, &p, 30_000);
        }
        // From the second segment on, every new segment is seen within one catch-up interval.
        assert!(lags[1..].iter().all(|&l| l <= catch_up_ms(TD)), "{lags:?}");
        // At a bounded cost: about two polls per segment once locked.
        assert!(polls <= 20 * 3, "{polls} polls for 20 segments");
        assert!(t.is_fresh());
    }

    #[test]
    fn after_a_jump_the_segment_clock_is_found_again_by_catch_up_polling() {
        let p = policy();
        let mut t = Tracker::new();
        t.observe(snap(10, 6), 0, &p);
        // The origin catches up several segments at once (a freeze healed).
        let v = t.observe(snap(15, 6), 600, &p);
        assert!(v.advanced);
        assert_eq!(
            t.next_poll_in_ms(v.advanced, 600, &p, 30_000),
            catch_up_ms(TD)
        );
        // One segment later than that poll, a single new segment: its timing is known again.
        let v = t.observe(snap(16, 6), 1_300, &p);
        assert!(v.advanced);
        assert_eq!(
            t.next_poll_in_ms(v.advanced, 1_300, &p, 30_000),
            600 + TD - 1_300
        );
    }

    #[test]
    fn a_healed_freeze_that_reveals_one_old_segment_does_not_date_the_clock() {
        // Found by the detection benchmark. Segments are published every 2 s from 0. The
        // playlist freezes after the segment of 4,000 and heals at 7,300, revealing only the
        // segment of 6,000: dating it "after the previous poll" put the next one ~1.3 s late, so
        // a freeze right after the recovery was detected that much late.
        let p = policy();
        let published = |t: u64| 1 + t / TD;
        let visible = |t: u64| {
            if (4_000..7_300).contains(&t) {
                published(4_000)
            } else {
                published(t)
            }
        };
        let mut t = Tracker::new();
        let mut now = 0;
        let mut lags = Vec::new();
        while now < 16_000 {
            let head = visible(now);
            let v = t.observe(snap(head, 6), now, &p);
            if v.advanced && now > 7_300 {
                lags.push((head, now - (head - 1) * TD));
            }
            now += t.next_poll_in_ms(v.advanced, now, &p, 30_000);
        }
        // The revealed segment is seen late by nature; every later one within a catch-up.
        assert!(lags.len() >= 3, "{lags:?}");
        assert!(
            lags[1..].iter().all(|&(_, lag)| lag <= catch_up_ms(TD)),
            "{lags:?}"
        );
        assert!(t.is_fresh());
    }

    #[test]
    fn a_frozen_playlist_is_polled_at_the_hls_reload_interval() {
        let p = policy();
        let mut t = Tracker::new();
        t.observe(snap(1, 6), 0, &p);
        let (mut now, mut polls) = (0, 0);
        // Frozen for 30 s: catch-up polling until the deadline, then every half target duration.
        while now < 30_000 {
            let v = t.observe(snap(1, 6), now, &p);
            polls += 1;
            now += t.next_poll_in_ms(v.advanced, now, &p, 30_000);
        }
        assert!(!t.is_fresh());
        assert_eq!(t.next_poll_in_ms(false, now, &p, 30_000), TD / 2);
        assert!(polls <= 30_000 / (TD / 2) + 12, "{polls} polls");
    }

    #[test]
    fn a_poll_is_due_at_the_staleness_deadline() {
        let p = policy();
        let mut t = Tracker::new();
        t.observe(snap(1, 6), 0, &p);
        let v = t.observe(snap(2, 6), 2_000, &p);
        assert!(v.advanced);
        // Unchanged right before the deadline (5,000 ms): the next poll is right after it.
        let v = t.observe(snap(2, 6), 4_990, &p);
        assert_eq!(
            t.next_poll_in_ms(v.advanced, 4_990, &p, 30_000),
            MIN_POLL_MS
        );
        // Unchanged long before the next segment is due: half a target duration.
        let mut t = Tracker::new();
        t.observe(snap(1, 6), 0, &p);
        assert_eq!(t.next_poll_in_ms(false, 0, &p, 30_000), TD / 2);
    }

    #[test]
    fn failures_back_off_without_busy_looping() {
        let p = policy();
        let mut t = Tracker::new();
        let delays: Vec<u64> = (0..8)
            .map(|i| {
                t.fail(Failure::Connect("refused".into()), i * 10);
                t.next_poll_in_ms(false, i * 10, &p, 30_000)
            })
            .collect();
        // Default TD before any playlist is 6 s: 3, 6, 12, 24, then capped at 30 s.
        assert_eq!(
            delays,
            vec![3_000, 6_000, 12_000, 24_000, 30_000, 30_000, 30_000, 30_000]
        );
        assert!(delays.iter().all(|&d| d >= MIN_POLL_MS));
    }

    #[test]
    fn one_frozen_rendition_of_many_makes_the_instance_unhealthy() {
        let mut fresh = Tracker::new();
        fresh.observe(snap(1, 6), 0, &policy());
        let mut frozen = Tracker::new();
        frozen.observe(snap(1, 6), 0, &policy());
        frozen.tick(10_000, &policy());
        let v = aggregate(
            None,
            [("1080p", &fresh), ("720p", &frozen), ("360p", &fresh)],
        )
        .unwrap();
        assert!(!v.healthy);
        assert_eq!(v.reason, "NoNewSegment");
        assert!(
            v.message
                .starts_with("1 of 3 renditions stale: 720p: no new segment"),
            "{}",
            v.message
        );
        let mut failing = Tracker::new();
        failing.fail(Failure::Http(404), 0);
        let v = aggregate(None, [("720p", &frozen), ("iframes", &frozen)]).unwrap();
        assert_eq!(v.reason, "NoNewSegment", "one shared cause is named");
        let v = aggregate(None, [("720p", &frozen), ("360p", &failing)]).unwrap();
        assert_eq!(v.reason, "RenditionsStale", "mixed causes");
        let v = aggregate(None, [("1080p", &fresh), ("360p", &fresh)]).unwrap();
        assert!(v.healthy);
        // A rendition just discovered and not fetched yet does not flap the instance.
        let new = Tracker::new();
        let v = aggregate(None, [("1080p", &fresh), ("540p", &new)]).unwrap();
        assert!(v.healthy);
        assert_eq!(v.message, "all 1 renditions fresh");
        assert_eq!(aggregate(None, [("540p", &new)]), None);
    }

    #[test]
    fn master_failure_without_renditions_is_unhealthy() {
        let v = aggregate(Some(&Failure::Http(404)), []).unwrap();
        assert_eq!((v.healthy, v.reason), (false, "MasterUnavailable"));
        assert!(v.message.contains("HTTP 404"));
        assert_eq!(aggregate(None, []).unwrap().reason, "NoRenditions");
    }
}
