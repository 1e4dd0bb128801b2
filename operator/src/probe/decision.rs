//! Pure freshness decisions for one media playlist, and their aggregation to an instance.
//! No I/O and no clock: every function takes the time (milliseconds on a monotonic scale) as an
//! argument, so scripted sequences test it exactly.
//!
//! A rendition is **stale** when
//! - no new segment has appeared for `stalenessMultiplier x EXT-X-TARGETDURATION` (RFC 8216bis
//!   6.2.1; default 1.5), measured from when the prober saw the last one, or
//! - `failure_threshold` fetches in a row failed with a failure that can pass (HTTP 4xx/5xx,
//!   timeout, refused or reset, unparsable; each already confirmed by the engine's quick retry,
//!   see [`needs_confirmation`] and `confirm`), or one failed with a failure that gives the same
//!   answer every time (too large, bad redirect, target duration out of range, refused
//!   destination). Failures below the threshold change no verdict; the age bound applies
//!   regardless, or
//! - EXT-X-MEDIA-SEQUENCE went backwards (an origin restart), or
//! - the playlist ended (EXT-X-ENDLIST) on a live event.
//!
//! A stale rendition counts as fresh again only after `recoveryUpdates` consecutive new segments
//! (hysteresis), so an origin that flaps does not flap the instance.
//!
//! Fresh needs evidence. A playlist seen for the first time (a new instance, or every playlist
//! after an operator restart) is **not judged yet**: neither fresh nor stale. It becomes fresh
//! when a new segment is seen to arrive, or at once when the `EXT-X-PROGRAM-DATE-TIME` of its
//! newest segment (plus that segment's duration) is within the bound of the probe's wall clock
//! (a date up to [`PDT_FUTURE_TOLERANCE_MS`] ahead counts as now; one further ahead, or absurd,
//! is no evidence). Without evidence within the bound from first sight it is stale
//! (`NoNewSegment`).
//!
//! An instance is healthy when its master playlist answers and **every** rendition its master
//! lists has been judged fresh: one frozen rendition out of many is reported (the original
//! system's "95 % tolerance" hid it), and a partial picture is "not judged yet", never healthy.
//!
//! Numbers from playlists are hostile. Accepted `EXT-X-TARGETDURATION`: [`MIN_TARGET_DURATION_MS`]
//! to [`MAX_TARGET_DURATION_MS`] (1 s to 60 s); anything else makes the rendition stale
//! (`TargetDurationOutOfRange`). Segment durations are clamped to the target duration, every
//! sum saturates, and the poll interval stays within [`MIN_POLL_MS`] and [`MAX_POLL_MS`].

use super::llhls::PartClock;
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
    /// When the newest segment ends by `EXT-X-PROGRAM-DATE-TIME` (milliseconds since the Unix
    /// epoch, extrapolated from the last dated segment), if the playlist dates its segments.
    pub newest_end_unix_ms: Option<i64>,
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
    /// `EXT-X-TARGETDURATION` (in seconds) outside the accepted range.
    TargetDuration(u64),
    /// The operator refused to connect there (scheme, host or address not allowed).
    Refused(String),
    /// The master lists more media playlists than the operator probes for one instance
    /// (`found`, `limit`).
    TooManyRenditions(usize, usize),
    /// A line of the playlist is longer than the limit (bytes).
    LineTooLong(usize),
    /// The media playlist lists more segments than the limit (`found`, `limit`).
    TooManySegments(u64, u64),
    /// The media playlist lists more LL-HLS parts than the limit (`found`, `limit`).
    TooManyParts(u64, u64),
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
            Failure::TargetDuration(s) => write!(
                f,
                "EXT-X-TARGETDURATION {s} s outside the accepted {}..={} s",
                MIN_TARGET_DURATION_MS / 1000,
                MAX_TARGET_DURATION_MS / 1000
            ),
            Failure::Refused(e) => write!(f, "destination refused: {e}"),
            Failure::TooManyRenditions(found, limit) => write!(
                f,
                "lists {found} media playlists, more than the {limit} probed per instance"
            ),
            Failure::LineTooLong(limit) => {
                write!(f, "playlist has a line longer than {limit} bytes")
            }
            Failure::TooManySegments(found, limit) => write!(
                f,
                "playlist lists {found} segments, more than the limit of {limit}"
            ),
            Failure::TooManyParts(found, limit) => write!(
                f,
                "playlist lists {found} LL-HLS parts, more than the limit of {limit}"
            ),
            Failure::Other(e) => write!(f, "{e}"),
        }
    }
}

impl Failure {
    /// Whether this kind of failure can be a passing glitch of an origin or the network (an
    /// HTTP error status, a timeout, a refused or reset connection, a body cut short or
    /// unparsable): such a failure is confirmed by a quick retry and counts towards
    /// [`Policy::failure_threshold`]. The others (a playlist over a size limit: bytes, line
    /// length, segments, parts or renditions; a bad redirect, a target duration out of range, a
    /// destination the operator refuses) give the same answer every time: they count at once.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Failure::Http(_)
                | Failure::Timeout
                | Failure::Connect(_)
                | Failure::Unparsable(_)
                | Failure::Other(_)
        )
    }

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
            Failure::TargetDuration(_) => "target_duration",
            Failure::Refused(_) => "refused",
            Failure::TooManyRenditions(..) => "too_many_renditions",
            Failure::LineTooLong(_) => "line_too_long",
            Failure::TooManySegments(..) => "too_many_segments",
            Failure::TooManyParts(..) => "too_many_parts",
            Failure::Other(_) => "other",
        }
    }
}

/// Why a rendition is stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StaleReason {
    /// Nothing fetched successfully yet (e.g. the origin is down at start-up). Not judged:
    /// neither fresh nor stale.
    NeverFetched,
    /// Seen, but no evidence of freshness yet (no new segment seen to arrive, no recent
    /// program date-time). Not judged: neither fresh nor stale, until the bound from first
    /// sight passes.
    AwaitingEvidence,
    /// No new segment within the bound.
    NoNewSegment {
        age_ms: u64,
        bound_ms: u64,
    },
    /// LL-HLS, probed with blocking reload: no new part within the part bound (see
    /// [`super::llhls`]).
    NoNewPart {
        age_ms: u64,
        bound_ms: u64,
    },
    Failed(Failure),
    SequenceReset {
        from: u64,
        to: u64,
    },
    Ended,
    /// The playlist advances, but its newest segment (or its init segment) was not served
    /// `failure_threshold` checks in a row.
    SegmentUnavailable {
        uri: String,
        failure: Failure,
    },
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
            StaleReason::AwaitingEvidence => write!(f, "not judged yet: awaiting a new segment"),
            StaleReason::NoNewSegment { age_ms, bound_ms } => write!(
                f,
                "no new segment for {:.3} s (bound {:.3} s)",
                *age_ms as f64 / 1000.0,
                *bound_ms as f64 / 1000.0
            ),
            StaleReason::NoNewPart { age_ms, bound_ms } => write!(
                f,
                "no new part for {:.3} s (bound {:.3} s)",
                *age_ms as f64 / 1000.0,
                *bound_ms as f64 / 1000.0
            ),
            StaleReason::Failed(e) => write!(f, "{e}"),
            StaleReason::SequenceReset { from, to } => {
                write!(f, "media sequence went backwards from {from} to {to}")
            }
            StaleReason::Ended => write!(f, "playlist ended (EXT-X-ENDLIST)"),
            StaleReason::SegmentUnavailable { uri, failure } => {
                write!(f, "segment {uri} not served: {failure}")
            }
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
            StaleReason::AwaitingEvidence => "AwaitingEvidence",
            StaleReason::NoNewSegment { .. } => "NoNewSegment",
            StaleReason::NoNewPart { .. } => "NoNewPart",
            StaleReason::Failed(Failure::Http(_)) => "HttpError",
            StaleReason::Failed(Failure::Timeout) => "Timeout",
            StaleReason::Failed(Failure::Connect(_)) => "ConnectionFailed",
            StaleReason::Failed(Failure::TooLarge(_)) => "PlaylistTooLarge",
            StaleReason::Failed(Failure::Unparsable(_)) => "PlaylistUnparsable",
            StaleReason::Failed(Failure::Redirect(_)) => "BadRedirect",
            StaleReason::Failed(Failure::TargetDuration(_)) => "TargetDurationOutOfRange",
            StaleReason::Failed(Failure::Refused(_)) => "DestinationRefused",
            StaleReason::Failed(Failure::TooManyRenditions(..)) => "TooManyRenditions",
            StaleReason::Failed(Failure::LineTooLong(_)) => "PlaylistLineTooLong",
            StaleReason::Failed(Failure::TooManySegments(..)) => "TooManySegments",
            StaleReason::Failed(Failure::TooManyParts(..)) => "TooManyParts",
            StaleReason::Failed(Failure::Other(_)) => "FetchFailed",
            StaleReason::SequenceReset { .. } => "MediaSequenceReset",
            StaleReason::Ended => "PlaylistEnded",
            StaleReason::SegmentUnavailable { .. } => "SegmentUnavailable",
            StaleReason::Recovering { .. } => "Recovering",
        }
    }

    /// False for the states that are no verdict at all (not fetched yet, awaiting evidence).
    pub fn is_judged(&self) -> bool {
        !matches!(
            self,
            StaleReason::NeverFetched | StaleReason::AwaitingEvidence
        )
    }
}

/// How freshness is judged (from the ClusteredStream's `spec.health`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    pub staleness_multiplier: f64,
    pub recovery_updates: u32,
    /// Consecutive failed fetches (each already confirmed by a quick retry) before a rendition
    /// counts as failed. Taken within 1..=[`MAX_FAILURE_THRESHOLD`].
    pub failure_threshold: u32,
    /// Check that the newest segments (and init segments) are served (see `segments`).
    pub check_segments: bool,
    /// LL-HLS: stale when no new part for this many part targets (see [`super::llhls`]).
    pub part_staleness_multiplier: f64,
}

/// Default of [`Policy::failure_threshold`].
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// Largest accepted [`Policy::failure_threshold`].
pub const MAX_FAILURE_THRESHOLD: u32 = 10;

impl Default for Policy {
    fn default() -> Self {
        Self {
            staleness_multiplier: 1.5,
            recovery_updates: 2,
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            check_segments: true,
            part_staleness_multiplier: super::llhls::DEFAULT_PART_STALENESS_MULTIPLIER,
        }
    }
}

impl Policy {
    /// [`Policy::failure_threshold`] within its accepted range.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold.clamp(1, MAX_FAILURE_THRESHOLD)
    }

    /// The staleness bound for a target duration. The multiplier is taken within 1..=10 (1.5
    /// when it is not a number), the target duration within the accepted range.
    pub fn bound_ms(&self, target_duration_ms: u64) -> u64 {
        let m = if self.staleness_multiplier.is_nan() {
            1.5
        } else {
            self.staleness_multiplier.clamp(1.0, 10.0)
        };
        let td = target_duration_ms.clamp(MIN_TARGET_DURATION_MS, MAX_TARGET_DURATION_MS);
        (td as f64 * m).round() as u64
    }
}

/// Target duration assumed before the first playlist is seen.
pub const DEFAULT_TARGET_DURATION_MS: u64 = 6_000;
/// Smallest accepted `EXT-X-TARGETDURATION` (it is a whole number of seconds).
pub const MIN_TARGET_DURATION_MS: u64 = 1_000;
/// Largest accepted `EXT-X-TARGETDURATION`. Live origins use 1 to 10 s; 60 s leaves room for
/// slow ones, and refuses a value written in milliseconds by mistake (6000).
pub const MAX_TARGET_DURATION_MS: u64 = 60_000;
/// A program date-time at most this far ahead of the probe's clock counts as "now" (clock skew);
/// one further ahead is no evidence of freshness.
pub const PDT_FUTURE_TOLERANCE_MS: i64 = 2_000;

/// How long ago the newest segment ended, by its program date-time, at wall time `now_unix_ms`.
/// `None` when the date is further than [`PDT_FUTURE_TOLERANCE_MS`] in the future (a skewed or
/// hostile clock); a date slightly ahead is clamped to an age of zero.
pub fn pdt_age_ms(newest_end_unix_ms: i64, now_unix_ms: i64) -> Option<u64> {
    let ahead = newest_end_unix_ms.saturating_sub(now_unix_ms);
    if ahead > PDT_FUTURE_TOLERANCE_MS {
        return None;
    }
    Some(now_unix_ms.saturating_sub(newest_end_unix_ms).max(0) as u64)
}

/// The freshness state of one media playlist.
#[derive(Clone, Debug, PartialEq)]
pub struct Tracker {
    pub last: Option<Snapshot>,
    /// When the prober last saw the playlist gain a segment (or, from a program date-time,
    /// when its newest segment was published).
    pub last_change_ms: Option<u64>,
    /// When a playlist awaiting evidence was first seen: the bound runs from here.
    awaiting_since_ms: Option<u64>,
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
    /// LL-HLS part freshness, while the rendition is probed with blocking reload (set by the
    /// engine, see [`super::llhls`]); `None` otherwise.
    pub parts: Option<PartClock>,
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
            awaiting_since_ms: None,
            stale: Some(StaleReason::NeverFetched),
            recovering_seen: 0,
            last_error: None,
            consecutive_failures: 0,
            last_poll_ms: None,
            change_after_ms: None,
            clock_lost: false,
            parts: None,
        }
    }

    /// A tracker for a rendition whose probe task had to be restarted: stale (it was not
    /// watched for a while) until it goes through the recovery hysteresis.
    pub fn restarted(why: &str) -> Self {
        Self {
            stale: Some(StaleReason::Failed(Failure::Other(why.to_owned()))),
            ..Self::new()
        }
    }

    pub fn is_fresh(&self) -> bool {
        self.stale.is_none()
    }

    /// False while there is no verdict yet (not fetched, or awaiting evidence).
    pub fn is_judged(&self) -> bool {
        self.stale.as_ref().is_none_or(StaleReason::is_judged)
    }

    pub fn target_duration_ms(&self) -> u64 {
        self.last
            .map(|s| s.target_duration_ms)
            .filter(|&t| t > 0)
            .unwrap_or(DEFAULT_TARGET_DURATION_MS)
            .clamp(MIN_TARGET_DURATION_MS, MAX_TARGET_DURATION_MS)
    }

    /// When the playlist becomes stale if nothing new arrives: the segment deadline, or the
    /// part deadline when parts are judged and it is earlier.
    pub fn deadline_ms(&self, policy: &Policy) -> Option<u64> {
        let segment = self.segment_deadline_ms(policy);
        let part = self.part_deadline_ms(policy);
        match (segment, part) {
            (Some(s), Some(p)) => Some(s.min(p)),
            (s, p) => s.or(p),
        }
    }

    fn segment_deadline_ms(&self, policy: &Policy) -> Option<u64> {
        let since = self.last_change_ms.or(self.awaiting_since_ms)?;
        Some(since.saturating_add(policy.bound_ms(self.target_duration_ms())))
    }

    fn part_deadline_ms(&self, policy: &Policy) -> Option<u64> {
        self.parts
            .as_ref()
            .map(|p| p.deadline_ms(policy, self.target_duration_ms()))
    }

    /// The deadline a timer must watch: while fresh, while awaiting evidence, or while never
    /// fetched after a failure below the threshold.
    pub fn watch_deadline_ms(&self, policy: &Policy) -> Option<u64> {
        match self.stale {
            None | Some(StaleReason::AwaitingEvidence | StaleReason::NeverFetched) => {
                self.deadline_ms(policy)
            }
            _ => None,
        }
    }

    fn set_stale(&mut self, reason: StaleReason) -> bool {
        let was_fresh = self.stale.is_none();
        self.stale = Some(reason);
        self.recovering_seen = 0;
        was_fresh
    }

    /// Applies a successfully parsed playlist seen at `now_ms`, without a wall clock (program
    /// date-times are then no evidence).
    pub fn observe(&mut self, snap: Snapshot, now_ms: u64, policy: &Policy) -> Verdict {
        self.observe_at(snap, now_ms, None, policy)
    }

    /// Applies a successfully parsed playlist seen at `now_ms` (monotonic) and `wall_unix_ms`
    /// (the probe's wall clock, for program date-times).
    pub fn observe_at(
        &mut self,
        snap: Snapshot,
        now_ms: u64,
        wall_unix_ms: Option<i64>,
        policy: &Policy,
    ) -> Verdict {
        let was_fresh = self.is_fresh();
        let previous_poll_ms = self.last_poll_ms.replace(now_ms);
        self.last_error = None;
        self.consecutive_failures = 0;
        let previous = self.last.replace(snap);
        let mut advanced = false;
        match previous {
            None => {
                // First sight is no evidence: fresh only when the newest segment's program
                // date-time is within the bound, otherwise not judged until a new segment
                // arrives or the bound from now passes. A playlist that failed before it was
                // ever seen (origin down at start-up) still goes through the hysteresis.
                self.recovering_seen = 0;
                self.awaiting_since_ms = None;
                let bound = policy.bound_ms(snap.target_duration_ms);
                let dated = snap
                    .newest_end_unix_ms
                    .zip(wall_unix_ms)
                    .and_then(|(end, wall)| pdt_age_ms(end, wall))
                    .filter(|&age| age <= bound);
                match self.stale {
                    Some(StaleReason::NeverFetched | StaleReason::AwaitingEvidence) | None => {
                        if dated.is_some() {
                            // The date is evidence of freshness, not the start of the bound: the
                            // bound runs from when the probe saw the playlist, as it does for
                            // every later segment. Dating it back to the segment's publication
                            // left only half a target duration (less the first poll's delay,
                            // before the segment clock is found) for the next segment to be
                            // seen, and a live origin could be reported stale.
                            self.last_change_ms = Some(now_ms);
                            self.stale = None;
                        } else {
                            self.last_change_ms = None;
                            self.awaiting_since_ms = Some(now_ms);
                            self.stale = Some(StaleReason::AwaitingEvidence);
                        }
                    }
                    Some(_) => {
                        self.last_change_ms = Some(now_ms);
                        self.stale = Some(StaleReason::Recovering {
                            seen: 0,
                            needed: policy.recovery_updates,
                        });
                    }
                }
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
                self.awaiting_since_ms = None;
                // One new segment dates itself to after the previous poll. A jump of several (an
                // origin catching up after a freeze heals) says nothing about the segment clock,
                // nor does the first segment after a stale spell: a freeze that healed may reveal
                // a single segment published long ago. Then expect the next one at once and find
                // it by catch-up polling.
                let ends_stale_spell = matches!(
                    self.stale,
                    Some(
                        StaleReason::NoNewSegment { .. }
                            | StaleReason::NoNewPart { .. }
                            | StaleReason::Failed(_)
                            | StaleReason::SequenceReset { .. }
                    )
                );
                self.clock_lost = snap.head().saturating_sub(prev.head()) > 1 || ends_stale_spell;
                self.change_after_ms = previous_poll_ms;
                match &self.stale {
                    None => {}
                    Some(StaleReason::NeverFetched | StaleReason::AwaitingEvidence) => {
                        self.stale = None
                    }
                    // Only a served segment ends this (`segment_served`).
                    Some(StaleReason::SegmentUnavailable { .. }) => {}
                    Some(_) => {
                        self.recovering_seen = self.recovering_seen.saturating_add(1);
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

    /// Applies a failed fetch at `now_ms` (already confirmed by the engine's quick retry, see
    /// [`needs_confirmation`]). A transient failure ([`Failure::is_transient`]) makes the
    /// rendition stale only once `policy.failure_threshold` fetches in a row have failed; before
    /// that it changes no verdict (a recovering rendition starts its recovery again), and the age
    /// bound still applies, so a dead origin is reported at the staleness deadline whatever the
    /// threshold. Any other failure makes it stale at once.
    pub fn fail(&mut self, failure: Failure, now_ms: u64, policy: &Policy) -> Verdict {
        let was_fresh = self.is_fresh();
        self.last_poll_ms = Some(now_ms);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_error = Some(failure.clone());
        if matches!(self.stale, Some(StaleReason::NeverFetched)) && self.awaiting_since_ms.is_none()
        {
            // Never fetched: the bound runs from the first failure, so an origin that fails
            // below the threshold from the start is still judged within the bound.
            self.awaiting_since_ms = Some(now_ms);
        }
        if !failure.is_transient() || self.consecutive_failures >= policy.failure_threshold() {
            self.set_stale(StaleReason::Failed(failure));
        } else {
            if let Some(StaleReason::Recovering { needed, .. }) = self.stale {
                self.recovering_seen = 0;
                self.stale = Some(StaleReason::Recovering { seen: 0, needed });
            }
            self.check_age(now_ms, policy);
        }
        Verdict {
            advanced: false,
            flipped: was_fresh != self.is_fresh(),
        }
    }

    /// The newest segment (or init segment) `uri` was not served `failure_threshold` checks in
    /// a row (see `segments`): stale until a segment is served again.
    pub fn segment_unavailable(&mut self, uri: String, failure: Failure) -> Verdict {
        let was_fresh = self.is_fresh();
        self.set_stale(StaleReason::SegmentUnavailable { uri, failure });
        Verdict {
            advanced: false,
            flipped: was_fresh,
        }
    }

    /// A segment is served again after [`Tracker::segment_unavailable`]: the rendition goes
    /// through the recovery hysteresis (new segments) from here.
    pub fn segment_served(&mut self, policy: &Policy) {
        if matches!(self.stale, Some(StaleReason::SegmentUnavailable { .. })) {
            self.recovering_seen = 0;
            self.stale = Some(StaleReason::Recovering {
                seen: 0,
                needed: policy.recovery_updates,
            });
        }
    }

    /// Stale because fetches failed (as opposed to awaiting a threshold, or stale for another
    /// reason while fetches fail).
    fn failing(&self) -> bool {
        self.consecutive_failures > 0 && matches!(self.stale, Some(StaleReason::Failed(_)))
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
        self.check_part_age(now_ms, policy);
        let Some(deadline) = self.segment_deadline_ms(policy) else {
            return;
        };
        let since = self.last_change_ms.or(self.awaiting_since_ms);
        // Keep the first verdict's wording (and age) so status messages stay stable while stale.
        if now_ms > deadline
            && !matches!(
                self.stale,
                Some(
                    StaleReason::Failed(_)
                        | StaleReason::Ended
                        | StaleReason::NoNewSegment { .. }
                        | StaleReason::SegmentUnavailable { .. }
                        | StaleReason::NoNewPart { .. }
                )
            )
        {
            let age_ms = now_ms.saturating_sub(since.unwrap_or(now_ms));
            let bound_ms = policy.bound_ms(self.target_duration_ms());
            match (&self.stale, &self.last_error) {
                // Never fetched, failing below the threshold until the bound: the failure.
                (Some(StaleReason::NeverFetched), Some(e)) => {
                    let e = e.clone();
                    self.set_stale(StaleReason::Failed(e));
                }
                _ => {
                    self.set_stale(StaleReason::NoNewSegment { age_ms, bound_ms });
                }
            }
        }
    }

    /// LL-HLS: no new part within the part bound. Kept below a segment verdict, like it.
    fn check_part_age(&mut self, now_ms: u64, policy: &Policy) {
        let (Some(deadline), Some(parts)) = (self.part_deadline_ms(policy), self.parts) else {
            return;
        };
        if now_ms > deadline
            && !matches!(
                self.stale,
                Some(
                    StaleReason::Failed(_)
                        | StaleReason::Ended
                        | StaleReason::NoNewSegment { .. }
                        | StaleReason::NoNewPart { .. }
                )
            )
        {
            self.set_stale(StaleReason::NoNewPart {
                age_ms: now_ms.saturating_sub(parts.last_change_ms),
                bound_ms: parts.bound_ms(policy, self.target_duration_ms()),
            });
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
        let failing = self.failing();
        let mut delay = if failing {
            let exp = self
                .consecutive_failures
                .saturating_sub(policy.failure_threshold())
                .min(16);
            (td / 2)
                .saturating_mul(1u64 << exp)
                .min(max_backoff_ms.max(td / 2))
        } else if self.consecutive_failures > 0 {
            // A failure below the threshold: the HLS reload interval after a failed reload, so
            // a short burst of errors is not counted several times within a few catch-up polls.
            td / 2
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
                .map(|after| after.saturating_add(seg));
            // Once stale for want of a new segment, the plain HLS reload interval: catch-up
            // polling a frozen origin (often thousands of playlists when a region stalls) for as
            // long as it stays frozen would add load where it hurts, to win milliseconds on a
            // recovery that waits out its hysteresis anyway.
            let frozen = matches!(
                self.stale,
                Some(StaleReason::NoNewSegment { .. } | StaleReason::NoNewPart { .. })
            );
            match due {
                _ if self.clock_lost => catch_up,
                Some(due) if verdict_advanced => due.saturating_sub(now_ms).max(catch_up),
                Some(due) if now_ms.saturating_add(td / 2) > due && !frozen => catch_up,
                _ => td / 2,
            }
        };
        if !failing && let Some(deadline) = self.watch_deadline_ms(policy) {
            delay = delay.min(deadline.saturating_sub(now_ms).saturating_add(1));
        }
        delay.clamp(MIN_POLL_MS, MAX_POLL_MS)
    }
}

/// Never poll one playlist more often than this.
pub const MIN_POLL_MS: u64 = 50;
/// Never wait longer than this between polls of one playlist.
pub const MAX_POLL_MS: u64 = 60_000;

/// The catch-up interval: a twentieth of the target duration, between 50 and 150 ms.
pub fn catch_up_ms(target_duration_ms: u64) -> u64 {
    (target_duration_ms / 20).clamp(MIN_POLL_MS, 150)
}

/// Whether a fetch's outcome must be confirmed by a quick second fetch before it is applied to a
/// tracker whose last playlist was `previous`: a transient failure ([`Failure::is_transient`]),
/// or a playlist that would make the rendition stale at once on one reading (its media sequence
/// went backwards, it lost segments at its end, or it ended). One such answer can be a passing
/// glitch (a cache node with an old copy, a connection reset); the second answer is the one
/// applied.
pub fn needs_confirmation(
    previous: Option<&Snapshot>,
    outcome: &Result<Snapshot, Failure>,
) -> bool {
    match (outcome, previous) {
        (Err(f), _) => f.is_transient(),
        (Ok(s), Some(prev)) => {
            s.media_sequence < prev.media_sequence
                || s.head() < prev.head()
                || (s.ended && !prev.ended)
        }
        (Ok(s), None) => s.ended,
    }
}

/// The instance-level verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceVerdict {
    /// `Some(true)` healthy, `Some(false)` stale, `None` **not judged yet**: some rendition
    /// the master lists has no verdict yet and none is stale. A consumer must treat `None` as
    /// "no new verdict" (keep what it knew), never as fresh.
    pub healthy: Option<bool>,
    pub reason: &'static str,
    pub message: String,
}

impl InstanceVerdict {
    pub fn is_judged(&self) -> bool {
        self.healthy.is_some()
    }
}

/// Aggregates renditions: healthy only when the master answers, at least one rendition is
/// known, and every rendition the master lists has been judged fresh. Any judged-stale
/// rendition (or a failing master) makes the instance stale; otherwise a rendition without a
/// verdict yet (just discovered, or awaiting evidence) makes it "not judged yet".
pub fn aggregate<'a>(
    master_error: Option<&Failure>,
    renditions: impl IntoIterator<Item = (&'a str, &'a Tracker)>,
) -> InstanceVerdict {
    let all: Vec<(&str, &Tracker)> = renditions.into_iter().collect();
    // A master refused for a limit of the operator's says which one.
    let master_reason = match master_error {
        Some(Failure::TooManyRenditions(..)) => "TooManyRenditions",
        Some(Failure::TooLarge(_)) => "MasterTooLarge",
        Some(Failure::LineTooLong(_)) => "PlaylistLineTooLong",
        _ => "MasterUnavailable",
    };
    if let Some(e) = master_error
        && all.is_empty()
    {
        return InstanceVerdict {
            healthy: Some(false),
            reason: master_reason,
            message: format!("master playlist: {e}"),
        };
    }
    if all.is_empty() {
        return InstanceVerdict {
            healthy: Some(false),
            reason: "NoRenditions",
            message: "the master playlist lists no media playlists".into(),
        };
    }
    let stale: Vec<(&str, &StaleReason)> = all
        .iter()
        .filter_map(|(name, t)| t.stale.as_ref().map(|r| (*name, r)))
        .filter(|(_, r)| r.is_judged())
        .collect();
    let pending = all.iter().filter(|(_, t)| !t.is_judged()).count();
    if stale.is_empty() {
        if let Some(e) = master_error {
            return InstanceVerdict {
                healthy: Some(false),
                reason: master_reason,
                message: format!(
                    "master playlist: {e}; {} of {} renditions fresh",
                    all.len() - pending,
                    all.len()
                ),
            };
        }
        if pending > 0 {
            // Worded without counts that move as renditions are judged, so a cold start does
            // not rewrite status once per rendition.
            return InstanceVerdict {
                healthy: None,
                reason: "AwaitingEvidence",
                message: format!(
                    "not judged yet: waiting to see a new segment on each of the {} renditions",
                    all.len()
                ),
            };
        }
        return InstanceVerdict {
            healthy: Some(true),
            reason: "AllRenditionsFresh",
            message: format!("all {} renditions fresh", all.len()),
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
    let mut message = format!("{} of {} renditions stale: ", stale.len(), all.len());
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
        healthy: Some(false),
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
            newest_end_unix_ms: None,
        }
    }

    /// Observes with a wall clock equal to `now` and a newest segment dated to end right then,
    /// so a first sight is fresh (by program date-time) and the scripted timings stay simple.
    fn obs(t: &mut Tracker, s: Snapshot, now: u64, p: &Policy) -> Verdict {
        let s = Snapshot {
            newest_end_unix_ms: Some(now as i64),
            ..s
        };
        t.observe_at(s, now, Some(now as i64), p)
    }

    fn policy() -> Policy {
        Policy::default()
    }

    #[test]
    fn fresh_while_segments_arrive_and_stale_after_one_and_a_half_target_durations() {
        let mut t = Tracker::new();
        assert!(!t.is_fresh(), "nothing fetched yet");
        assert!(obs(&mut t, snap(10, 6), 0, &policy()).flipped);
        assert!(t.is_fresh());
        assert!(obs(&mut t, snap(11, 6), 2_000, &policy()).advanced);
        // Same playlist at 4,999 ms: 2,999 ms since the change, bound is 3,000 ms.
        obs(&mut t, snap(11, 6), 4_999, &policy());
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
            ..Policy::default()
        };
        let mut t = Tracker::new();
        obs(&mut t, snap(1, 3), 100, &p);
        t.tick(2_600, &p);
        assert!(t.is_fresh(), "2,500 ms is exactly the bound");
        t.tick(2_601, &p);
        assert!(!t.is_fresh());
    }

    #[test]
    fn recovery_needs_consecutive_updates() {
        let mut t = Tracker::new();
        obs(&mut t, snap(1, 6), 0, &policy());
        t.tick(10_000, &policy());
        assert!(!t.is_fresh());
        obs(&mut t, snap(2, 6), 10_100, &policy());
        assert!(matches!(
            t.stale,
            Some(StaleReason::Recovering { seen: 1, needed: 2 })
        ));
        let v = obs(&mut t, snap(3, 6), 12_100, &policy());
        assert!(v.flipped && t.is_fresh());
    }

    /// Fails `failure` `n` times from `at`, 100 ms apart.
    fn fail_times(t: &mut Tracker, failure: &Failure, n: u32, at: u64, p: &Policy) -> Vec<Verdict> {
        (0..n)
            .map(|i| t.fail(failure.clone(), at + u64::from(i) * 100, p))
            .collect()
    }

    #[test]
    fn errors_are_stale_at_the_failure_threshold_and_recovery_is_hysteretic() {
        for failure in [
            Failure::Http(404),
            Failure::Http(500),
            Failure::Timeout,
            Failure::Connect("refused".into()),
            Failure::Unparsable("garbage".into()),
            Failure::Other("body cut short".into()),
        ] {
            let mut t = Tracker::new();
            obs(&mut t, snap(1, 6), 0, &policy());
            // Two failures in a row (each already confirmed by a retry) change nothing.
            let v = fail_times(&mut t, &failure, 2, 300, &policy());
            assert!(v.iter().all(|v| !v.flipped), "{failure}");
            assert!(t.is_fresh(), "{failure}");
            assert_eq!(t.consecutive_failures, 2);
            assert_eq!(t.last_error, Some(failure.clone()));
            // The third is the default threshold.
            let v = t.fail(failure.clone(), 500, &policy());
            assert!(v.flipped, "{failure}");
            assert_eq!(t.stale, Some(StaleReason::Failed(failure.clone())));
            // The same playlist again is not an update: still stale, now recovering.
            obs(&mut t, snap(1, 6), 900, &policy());
            assert!(matches!(
                t.stale,
                Some(StaleReason::Recovering { seen: 0, .. })
            ));
            obs(&mut t, snap(2, 6), 2_000, &policy());
            assert!(!t.is_fresh());
            obs(&mut t, snap(3, 6), 4_000, &policy());
            assert!(t.is_fresh(), "{failure}");
        }
        // Failures that give the same answer every time count at once.
        for failure in [
            Failure::TooLarge(1 << 20),
            Failure::TargetDuration(6_000),
            Failure::Redirect("redirect to a ftp: URL".into()),
            Failure::Refused("169.254.169.254 is link-local".into()),
        ] {
            let mut t = Tracker::new();
            obs(&mut t, snap(1, 6), 0, &policy());
            assert!(t.fail(failure.clone(), 500, &policy()).flipped, "{failure}");
            assert_eq!(t.stale, Some(StaleReason::Failed(failure)));
        }
    }

    #[test]
    fn a_single_transient_failure_never_changes_the_verdict() {
        // Scripted: a live playlist advancing every 2 s, polled every second, with one failed
        // fetch in every stretch, never two in a row (what the benchmark's origins do).
        let p = policy();
        let mut t = Tracker::new();
        let failures = [
            Failure::Http(500),
            Failure::Timeout,
            Failure::Connect("connection reset".into()),
            Failure::Http(404),
            Failure::Unparsable("truncated".into()),
        ];
        let mut flips = 0;
        for i in 0..200u64 {
            let now = i * 1_000;
            let v = if i % 3 == 1 {
                t.fail(failures[(i as usize / 3) % failures.len()].clone(), now, &p)
            } else {
                obs(&mut t, snap(i / 2, 6), now, &p)
            };
            flips += u32::from(v.flipped && i > 0);
            t.tick(now + 1, &p);
        }
        assert_eq!(flips, 0);
        assert!(t.is_fresh());
        // With a threshold of 1, the same script flips at the first failure.
        let strict = Policy {
            failure_threshold: 1,
            ..p
        };
        let mut t = Tracker::new();
        obs(&mut t, snap(0, 6), 0, &strict);
        assert!(t.fail(Failure::Http(500), 1_000, &strict).flipped);
    }

    #[test]
    fn the_age_bound_applies_while_failures_are_below_the_threshold() {
        // A dead origin answering one error per poll, with a threshold it never reaches before
        // the bound: still stale at the bound (1.5 x 2 s after the last new segment).
        let p = Policy {
            failure_threshold: 10,
            ..policy()
        };
        let mut t = Tracker::new();
        obs(&mut t, snap(1, 6), 0, &p);
        let mut now = 0;
        let mut stale_at = None;
        while now < 10_000 {
            now += t.next_poll_in_ms(false, now, &p, 30_000);
            let v = t.fail(Failure::Http(503), now, &p);
            if v.flipped {
                stale_at = Some(now);
                break;
            }
            if t.tick(t.deadline_ms(&p).unwrap() + 1, &p).flipped {
                stale_at = t.deadline_ms(&p).map(|d| d + 1);
                break;
            }
        }
        assert_eq!(stale_at, Some(3_001));
        assert!(matches!(t.stale, Some(StaleReason::NoNewSegment { .. })));
        // The failure names the cause once the threshold is reached.
        for i in 0..10 {
            t.fail(Failure::Http(503), 4_000 + i, &p);
        }
        assert_eq!(t.stale, Some(StaleReason::Failed(Failure::Http(503))));
    }

    #[test]
    fn an_origin_failing_from_the_start_is_judged_within_the_bound() {
        // Never fetched, failing below the threshold (10): stale at the bound from the first
        // failure (default target duration 6 s: 9 s), named by the failure.
        let p = Policy {
            failure_threshold: 10,
            ..policy()
        };
        let mut t = Tracker::new();
        t.fail(Failure::Timeout, 1_000, &p);
        assert!(!t.is_judged());
        assert_eq!(t.watch_deadline_ms(&p), Some(10_000));
        t.fail(Failure::Timeout, 4_000, &p);
        t.tick(10_000, &p);
        assert!(!t.is_judged());
        t.tick(10_001, &p);
        assert_eq!(t.stale, Some(StaleReason::Failed(Failure::Timeout)));
        // Without any failure, nothing is watched.
        assert_eq!(Tracker::new().watch_deadline_ms(&p), None);
    }

    #[test]
    fn an_unavailable_segment_holds_until_one_is_served() {
        let p = policy();
        let mut t = Tracker::new();
        obs(&mut t, snap(1, 6), 0, &p);
        let v = t.segment_unavailable("7.ts".into(), Failure::Http(404));
        assert!(v.flipped);
        assert_eq!(
            t.stale.as_ref().map(StaleReason::code),
            Some("SegmentUnavailable")
        );
        // New segments alone do not end it, nor does the age bound rename it.
        for i in 2..6 {
            obs(&mut t, snap(i, 6), i * 2_000, &p);
        }
        t.tick(60_000, &p);
        assert_eq!(
            t.stale,
            Some(StaleReason::SegmentUnavailable {
                uri: "7.ts".into(),
                failure: Failure::Http(404)
            })
        );
        // A served segment, then the hysteresis.
        obs(&mut t, snap(6, 6), 61_000, &p);
        t.segment_served(&p);
        obs(&mut t, snap(7, 6), 62_000, &p);
        assert!(!t.is_fresh());
        obs(&mut t, snap(8, 6), 64_000, &p);
        assert!(t.is_fresh());
    }

    #[test]
    fn a_failure_during_recovery_starts_the_recovery_again() {
        let p = policy();
        let mut t = Tracker::new();
        obs(&mut t, snap(1, 6), 0, &p);
        t.tick(10_000, &p);
        obs(&mut t, snap(2, 6), 10_100, &p);
        assert_eq!(
            t.stale,
            Some(StaleReason::Recovering { seen: 1, needed: 2 })
        );
        let v = t.fail(Failure::Http(500), 11_000, &p);
        assert!(!v.flipped);
        assert_eq!(
            t.stale,
            Some(StaleReason::Recovering { seen: 0, needed: 2 })
        );
        obs(&mut t, snap(3, 6), 12_100, &p);
        assert!(!t.is_fresh());
        obs(&mut t, snap(4, 6), 14_100, &p);
        assert!(t.is_fresh());
    }

    #[test]
    fn suspicious_answers_need_confirmation() {
        let prev = snap(100, 6);
        let c = |s: Result<Snapshot, Failure>| needs_confirmation(Some(&prev), &s);
        assert!(c(Err(Failure::Http(500))));
        assert!(c(Err(Failure::Timeout)));
        assert!(c(Err(Failure::Connect("reset".into()))));
        assert!(c(Err(Failure::Unparsable("x".into()))));
        assert!(!c(Err(Failure::TooLarge(1))));
        assert!(!c(Err(Failure::Refused("x".into()))));
        assert!(c(Ok(snap(3, 6))), "sequence reset");
        assert!(c(Ok(snap(100, 3))), "segments lost at the end");
        assert!(
            c(Ok(Snapshot {
                ended: true,
                ..snap(101, 6)
            })),
            "ended"
        );
        assert!(!c(Ok(snap(100, 6))));
        assert!(!c(Ok(snap(101, 6))));
        assert!(!needs_confirmation(None, &Ok(snap(3, 6))));
    }

    #[test]
    fn media_sequence_going_backwards_is_stale() {
        let mut t = Tracker::new();
        obs(&mut t, snap(500, 6), 0, &policy());
        let v = obs(&mut t, snap(3, 6), 1_000, &policy());
        assert!(v.flipped);
        assert_eq!(
            t.stale,
            Some(StaleReason::SequenceReset { from: 500, to: 3 })
        );
        obs(&mut t, snap(4, 6), 2_000, &policy());
        obs(&mut t, snap(5, 6), 4_000, &policy());
        assert!(t.is_fresh());
    }

    #[test]
    fn a_growing_playlist_without_sliding_counts_as_advancing() {
        let mut t = Tracker::new();
        obs(&mut t, snap(0, 3), 0, &policy());
        assert!(obs(&mut t, snap(0, 4), 2_000, &policy()).advanced);
    }

    #[test]
    fn a_playlist_that_loses_segments_is_stale_and_not_a_later_update() {
        let mut t = Tracker::new();
        obs(&mut t, snap(10, 6), 0, &policy());
        obs(&mut t, snap(10, 3), 500, &policy());
        assert!(matches!(
            t.stale,
            Some(StaleReason::Failed(Failure::Unparsable(_)))
        ));
        // The full playlist again is not an advance.
        assert!(!obs(&mut t, snap(10, 6), 900, &policy()).advanced);
    }

    #[test]
    fn ended_playlist_is_stale() {
        let mut t = Tracker::new();
        let mut s = snap(1, 6);
        obs(&mut t, s, 0, &policy());
        s.ended = true;
        s.segment_count = 7;
        obs(&mut t, s, 2_000, &policy());
        assert_eq!(t.stale, Some(StaleReason::Ended));
    }

    #[test]
    fn origin_down_at_start_up_is_simply_stale() {
        let mut t = Tracker::new();
        let v = fail_times(&mut t, &Failure::Connect("refused".into()), 2, 0, &policy());
        assert!(v.iter().all(|v| !v.flipped));
        assert!(!t.is_judged(), "below the threshold: no verdict yet");
        let v = t.fail(Failure::Connect("refused".into()), 500, &policy());
        assert!(!v.flipped, "it was never fresh");
        assert!(t.is_judged() && !t.is_fresh());
        obs(&mut t, snap(1, 6), 1_000, &policy());
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
            let v = obs(&mut t, snap(head, 6), now, &p);
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
        obs(&mut t, snap(10, 6), 0, &p);
        // The origin catches up several segments at once (a freeze healed).
        let v = obs(&mut t, snap(15, 6), 600, &p);
        assert!(v.advanced);
        assert_eq!(
            t.next_poll_in_ms(v.advanced, 600, &p, 30_000),
            catch_up_ms(TD)
        );
        // One segment later than that poll, a single new segment: its timing is known again.
        let v = obs(&mut t, snap(16, 6), 1_300, &p);
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
            let v = obs(&mut t, snap(head, 6), now, &p);
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
        obs(&mut t, snap(1, 6), 0, &p);
        let (mut now, mut polls) = (0, 0);
        // Frozen for 30 s: catch-up polling until the deadline, then every half target duration.
        while now < 30_000 {
            let v = obs(&mut t, snap(1, 6), now, &p);
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
        obs(&mut t, snap(1, 6), 0, &p);
        let v = obs(&mut t, snap(2, 6), 2_000, &p);
        assert!(v.advanced);
        // Unchanged right before the deadline (5,000 ms): the next poll is right after it.
        let v = obs(&mut t, snap(2, 6), 4_990, &p);
        assert_eq!(
            t.next_poll_in_ms(v.advanced, 4_990, &p, 30_000),
            MIN_POLL_MS
        );
        // Unchanged long before the next segment is due: half a target duration.
        let mut t = Tracker::new();
        obs(&mut t, snap(1, 6), 0, &p);
        assert_eq!(t.next_poll_in_ms(false, 0, &p, 30_000), TD / 2);
    }

    #[test]
    fn failures_back_off_without_busy_looping() {
        let p = policy();
        let mut t = Tracker::new();
        let delays: Vec<u64> = (0..8)
            .map(|i| {
                t.fail(Failure::Connect("refused".into()), i * 10, &policy());
                t.next_poll_in_ms(false, i * 10, &p, 30_000)
            })
            .collect();
        // Default TD before any playlist is 6 s: half of it up to the threshold (3), then
        // doubling: 3, 6, 12, 24, then capped at 30 s.
        assert_eq!(
            delays,
            vec![3_000, 3_000, 3_000, 6_000, 12_000, 24_000, 30_000, 30_000]
        );
        assert!(delays.iter().all(|&d| d >= MIN_POLL_MS));
    }

    #[test]
    fn one_frozen_rendition_of_many_makes_the_instance_unhealthy() {
        let mut fresh = Tracker::new();
        obs(&mut fresh, snap(1, 6), 0, &policy());
        let mut frozen = Tracker::new();
        obs(&mut frozen, snap(1, 6), 0, &policy());
        frozen.tick(10_000, &policy());
        let v = aggregate(
            None,
            [("1080p", &fresh), ("720p", &frozen), ("360p", &fresh)],
        );
        assert_eq!(v.healthy, Some(false));
        assert_eq!(v.reason, "NoNewSegment");
        assert!(
            v.message
                .starts_with("1 of 3 renditions stale: 720p: no new segment"),
            "{}",
            v.message
        );
        let mut failing = Tracker::new();
        fail_times(&mut failing, &Failure::Http(404), 3, 0, &policy());
        let v = aggregate(None, [("720p", &frozen), ("iframes", &frozen)]);
        assert_eq!(v.reason, "NoNewSegment", "one shared cause is named");
        let v = aggregate(None, [("720p", &frozen), ("360p", &failing)]);
        assert_eq!(v.reason, "RenditionsStale", "mixed causes");
        let v = aggregate(None, [("1080p", &fresh), ("360p", &fresh)]);
        assert_eq!(v.healthy, Some(true));
        // A rendition just discovered and not fetched yet makes a partial picture: not judged,
        // neither healthy nor stale.
        let new = Tracker::new();
        let v = aggregate(None, [("1080p", &fresh), ("540p", &new)]);
        assert_eq!((v.healthy, v.reason), (None, "AwaitingEvidence"));
        assert_eq!(aggregate(None, [("540p", &new)]).healthy, None);
        // A stale one is stale whatever the others are.
        let v = aggregate(None, [("720p", &frozen), ("540p", &new)]);
        assert_eq!(v.healthy, Some(false));
        assert!(
            v.message.starts_with("1 of 2 renditions stale"),
            "{}",
            v.message
        );
    }

    #[test]
    fn first_sight_is_not_judged_until_a_new_segment_arrives() {
        let p = policy();
        let mut t = Tracker::new();
        // A frozen origin seen for the first time (a restart) is not reported fresh.
        let v = t.observe(snap(10, 6), 0, &p);
        assert!(!v.flipped && !t.is_fresh() && !t.is_judged());
        assert_eq!(t.stale, Some(StaleReason::AwaitingEvidence));
        assert_eq!(t.watch_deadline_ms(&p), Some(3_000));
        // Unchanged within the bound: still not judged, polled at the deadline at the latest.
        t.observe(snap(10, 6), 1_000, &p);
        assert!(!t.is_judged());
        assert!(t.next_poll_in_ms(false, 1_000, &p, 30_000) <= 2_001);
        // A new segment is the evidence.
        let v = t.observe(snap(11, 6), 2_000, &p);
        assert!(v.advanced && v.flipped && t.is_fresh());
        assert_eq!(t.deadline_ms(&p), Some(5_000));
    }

    #[test]
    fn first_sight_without_evidence_turns_stale_after_the_bound() {
        let p = policy();
        let mut t = Tracker::new();
        t.observe(snap(10, 6), 0, &p);
        t.tick(3_000, &p);
        assert!(!t.is_judged());
        let v = t.tick(3_001, &p);
        assert!(!v.flipped, "never was fresh");
        assert_eq!(
            t.stale,
            Some(StaleReason::NoNewSegment {
                age_ms: 3_001,
                bound_ms: 3_000
            })
        );
        // Failures at first sight, up to the threshold, are a verdict too.
        let mut t = Tracker::new();
        t.observe(snap(10, 6), 0, &p);
        fail_times(&mut t, &Failure::Http(503), 3, 500, &p);
        assert!(t.is_judged() && !t.is_fresh());
    }

    #[test]
    fn a_recent_program_date_time_is_evidence_at_first_sight() {
        let p = policy();
        let wall = 1_767_225_600_000_i64;
        let dated = |end: i64| Snapshot {
            newest_end_unix_ms: Some(end),
            ..snap(10, 6)
        };
        // Newest segment ended 1 s ago: fresh, and the bound runs from first sight, as it does
        // from every later sighting (not from the segment's date: that would leave a live origin
        // only half a target duration, less the first poll's delay, to be seen advancing).
        let mut t = Tracker::new();
        t.observe_at(dated(wall - 1_000), 10_000, Some(wall), &p);
        assert!(t.is_fresh());
        assert_eq!(t.deadline_ms(&p), Some(10_000 + 3_000));
        // The next segment is published 1 s later and first seen half a target duration after
        // that (the segment clock is not known yet): still fresh, never a flip.
        let v = t.tick(12_900, &p);
        assert!(t.is_fresh(), "{v:?}");
        t.observe_at(
            Snapshot {
                newest_end_unix_ms: Some(wall + 1_000),
                ..snap(11, 6)
            },
            12_900,
            Some(wall + 2_900),
            &p,
        );
        assert!(t.is_fresh());
        // Ended 3.5 s ago (more than the 3 s bound): no evidence.
        let mut t = Tracker::new();
        t.observe_at(dated(wall - 3_500), 10_000, Some(wall), &p);
        assert_eq!(t.stale, Some(StaleReason::AwaitingEvidence));
        // Slightly in the future (clock skew): clamped to now.
        let mut t = Tracker::new();
        t.observe_at(dated(wall + 1_500), 10_000, Some(wall), &p);
        assert!(t.is_fresh());
        assert_eq!(t.deadline_ms(&p), Some(13_000));
        // Far in the future, absurd, or without a wall clock: no evidence.
        for (end, clock) in [
            (wall + 60_000, Some(wall)),
            (i64::MAX, Some(wall)),
            (i64::MIN, Some(wall)),
            (wall, None),
        ] {
            let mut t = Tracker::new();
            t.observe_at(dated(end), 10_000, clock, &p);
            assert_eq!(t.stale, Some(StaleReason::AwaitingEvidence), "{end}");
        }
        assert_eq!(pdt_age_ms(i64::MIN, i64::MAX), Some(u64::MAX >> 1));
        assert_eq!(pdt_age_ms(i64::MAX, i64::MIN), None);
    }

    #[test]
    fn hostile_numbers_neither_overflow_nor_wedge_polling() {
        let p = policy();
        for (td, seg) in [
            (u64::MAX, u64::MAX),
            (12_000_000_000_000_000_000, u64::MAX),
            (6_000_000, 6_000_000),
            (0, u64::MAX),
        ] {
            let s = |seq| Snapshot {
                target_duration_ms: td,
                last_segment_ms: seg,
                ..snap(seq, 6)
            };
            let mut t = Tracker::new();
            let mut now = u64::MAX - 100_000;
            for seq in [1, 1, 2, 3, 3, u64::MAX - 6, u64::MAX] {
                let v = t.observe(s(seq), now, &p);
                let d = t.next_poll_in_ms(v.advanced, now, &p, u64::MAX);
                assert!((MIN_POLL_MS..=MAX_POLL_MS).contains(&d), "{td} {seg}: {d}");
                t.tick(now, &p);
                let _ = t.deadline_ms(&p);
                now = now.saturating_add(d);
            }
            t.fail(Failure::Timeout, now, &policy());
            let d = t.next_poll_in_ms(false, now, &p, u64::MAX);
            assert!((MIN_POLL_MS..=MAX_POLL_MS).contains(&d), "{d}");
        }
        // A multiplier that is not a number or absurd stays within 1..=10.
        for m in [f64::NAN, f64::INFINITY, -1.0, 1e300] {
            let p = Policy {
                staleness_multiplier: m,
                recovery_updates: u32::MAX,
                failure_threshold: u32::MAX,
                check_segments: true,
                ..Policy::default()
            };
            assert!((1_000..=600_000).contains(&p.bound_ms(u64::MAX)), "{m}");
        }
    }

    #[test]
    fn master_failure_without_renditions_is_unhealthy() {
        let v = aggregate(Some(&Failure::Http(404)), []);
        assert_eq!((v.healthy, v.reason), (Some(false), "MasterUnavailable"));
        assert!(v.message.contains("HTTP 404"));
        assert_eq!(aggregate(None, []).reason, "NoRenditions");
        let v = aggregate(Some(&Failure::TooManyRenditions(3_007, 500)), []);
        assert_eq!((v.healthy, v.reason), (Some(false), "TooManyRenditions"));
        assert!(
            v.message
                .contains("3007 media playlists, more than the 500"),
            "{}",
            v.message
        );
    }
}
