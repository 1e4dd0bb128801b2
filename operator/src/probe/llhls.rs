//! Low-Latency HLS: pure decisions for probing a media playlist with blocking playlist reload
//! (RFC 8216bis 6.2.5.2, 6.3.7) and judging its freshness on parts. No I/O and no clock.
//!
//! When a media playlist offers `EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES` and
//! `EXT-X-PART-INF:PART-TARGET=<s>`, the prober asks for the next part with
//! `?_HLS_msn=M&_HLS_part=P` (delta-free: never `_HLS_skip`). The server holds the request until
//! that part exists, up to three target durations; the request's own timeout is a little above
//! that ([`blocking_timeout_ms`]). A rendition is stale (`NoNewPart`) when no new part arrives
//! within `partStalenessMultiplier` x `PART-TARGET` ([`PartClock`]).
//!
//! A blocking server can misbehave. [`Blocking`] falls back to ordinary polling (segment-based
//! freshness only, at the HLS cadence) after [`MAX_STRIKES`] misbehaviours, each one of:
//! - an answer **without** the requested part, well before the hold limit (it ignored the
//!   parameters);
//! - a 4xx to the blocking request (it refuses the parameters), or any other failure well
//!   before the hold limit (a 503 after holding is what the RFC asks for, and no misbehaviour);
//! - a blocking request our own timeout ended (it hangs past the three target durations);
//! - a plain reload, made when the part deadline passed while a blocking request was held,
//!   that shows newer parts (it held the request although the part had arrived): this one
//!   counts only when it happens [`MAX_STRIKES`] times in a row, without an answered blocking
//!   request between, since a loaded prober or network can delay one answer past the deadline.
//!
//! A held request that passes the part deadline is never a verdict by itself: the prober drops
//! it and confirms with a plain reload, so a server that hangs blocking requests cannot make a
//! live stream look frozen. It retries blocking reload [`RETRY_AFTER_MS`] after a fallback.
//!
//! m3u8-rs (6.x) has no LL-HLS support (it keeps `EXT-X-PART` only as an unknown tag of the next
//! segment, and drops the parts after the last segment), so [`parse`] reads the three tags it
//! needs by hand: one bounded pass over lines, every number clamped.

use super::decision::{Failure, Policy};
use reqwest::Url;

/// Smallest accepted `PART-TARGET`; a smaller one is taken as this.
pub const MIN_PART_TARGET_MS: u64 = 100;
/// Misbehaviours of blocking reload before the prober falls back to ordinary polling.
pub const MAX_STRIKES: u32 = 3;
/// Consecutive well-behaved blocking answers that forgive the misbehaviours counted so far.
pub const FORGIVE_AFTER: u32 = 8;
/// After a fallback, blocking reload is tried again this much later.
pub const RETRY_AFTER_MS: u64 = 300_000;
/// Default of `spec.health.partStalenessMultiplier`: a player holding back the minimum
/// `PART-HOLD-BACK` of three part targets runs dry after that long without a new part.
pub const DEFAULT_PART_STALENESS_MULTIPLIER: f64 = 3.0;

/// A part's place in the stream: media sequence number of its segment, and its index there.
/// Ordered as the stream advances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartPos {
    pub msn: u64,
    pub part: u64,
}

/// What a media playlist says about LL-HLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LlInfo {
    /// `EXT-X-SERVER-CONTROL` has `CAN-BLOCK-RELOAD=YES`.
    pub can_block_reload: bool,
    /// `EXT-X-PART-INF:PART-TARGET`, in ms (at least [`MIN_PART_TARGET_MS`]), if given.
    pub part_target_ms: Option<u64>,
    /// The next part to appear: the segment after the last complete one, and the number of its
    /// parts already listed (`EXT-X-PART` after the last segment URI).
    pub next: PartPos,
}

impl LlInfo {
    /// Whether the playlist can be probed with blocking requests for parts.
    pub fn offers_blocking(&self) -> bool {
        self.can_block_reload && self.part_target_ms.is_some()
    }
}

/// Reads the LL-HLS tags of a media playlist whose `EXT-X-MEDIA-SEQUENCE` is `media_sequence`
/// and which lists `segment_count` segments (as m3u8-rs parsed them). `None` for a playlist
/// without `EXT-X-PART-INF` and `EXT-X-SERVER-CONTROL`. One pass over the lines of a body the
/// fetcher already bounded; hostile numbers are clamped or make the tag count as absent.
pub fn parse(body: &[u8], media_sequence: u64, segment_count: u64) -> Option<LlInfo> {
    let text = std::str::from_utf8(body).ok()?;
    let mut can_block = false;
    let mut part_target_ms = None;
    let mut seen_tag = false;
    let mut trailing_parts: u64 = 0;
    for line in text.lines() {
        let line = line.trim();
        if let Some(attrs) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            seen_tag = true;
            can_block = attribute(attrs, "CAN-BLOCK-RELOAD") == Some("YES");
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-PART-INF:") {
            seen_tag = true;
            part_target_ms = attribute(attrs, "PART-TARGET").and_then(seconds_ms);
        } else if line.starts_with("#EXT-X-PART:") {
            trailing_parts = trailing_parts.saturating_add(1);
        } else if !line.is_empty() && !line.starts_with('#') {
            // A segment URI: the parts listed so far belong to complete segments.
            trailing_parts = 0;
        }
    }
    if !seen_tag {
        return None;
    }
    Some(LlInfo {
        can_block_reload: can_block,
        part_target_ms: part_target_ms.map(|ms: u64| ms.max(MIN_PART_TARGET_MS)),
        next: PartPos {
            msn: media_sequence.saturating_add(segment_count),
            part: trailing_parts,
        },
    })
}

/// The value of `name` in an attribute list (`A=B,C="D"`), quotes removed. Quoted values with
/// commas are not needed for the attributes read here.
fn attribute<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    attrs.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// A decimal number of seconds as milliseconds: `None` unless finite, positive and at most an
/// hour.
fn seconds_ms(v: &str) -> Option<u64> {
    let s: f64 = v.parse().ok()?;
    (s.is_finite() && s > 0.0 && s <= 3600.0).then(|| (s * 1000.0).round() as u64)
}

/// The URL of a blocking reload of `uri` for part `next`: `_HLS_msn` and `_HLS_part` added to
/// the query the master gave (tokens kept), any `_HLS_` parameter already there replaced.
pub fn blocking_url(uri: &Url, next: PartPos) -> Url {
    let mut url = uri.clone();
    let kept: Vec<(String, String)> = uri
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("_HLS_"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.len() == uri.query_pairs().count() {
        // Nothing to remove: append, leaving the origin's own query bytes untouched.
        url.query_pairs_mut()
            .append_pair("_HLS_msn", &next.msn.to_string())
            .append_pair("_HLS_part", &next.part.to_string());
    } else {
        url.set_query(None);
        let mut q = url.query_pairs_mut();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        q.append_pair("_HLS_msn", &next.msn.to_string())
            .append_pair("_HLS_part", &next.part.to_string());
    }
    url
}

/// Timeout of a blocking request: the three target durations a server may hold it, plus half a
/// target duration (at least a second) for the answer to travel.
pub fn blocking_timeout_ms(target_duration_ms: u64) -> u64 {
    let td = target_duration_ms.clamp(
        super::decision::MIN_TARGET_DURATION_MS,
        super::decision::MAX_TARGET_DURATION_MS,
    );
    3 * td + (td / 2).max(1_000)
}

/// The part bound: `partStalenessMultiplier` (taken within 1.5..=20, 3 when not a number) x the
/// part target (taken within [`MIN_PART_TARGET_MS`]..=target duration), never more than the
/// segment bound.
pub fn part_bound_ms(policy: &Policy, part_target_ms: u64, target_duration_ms: u64) -> u64 {
    let m = if policy.part_staleness_multiplier.is_nan() {
        DEFAULT_PART_STALENESS_MULTIPLIER
    } else {
        policy.part_staleness_multiplier.clamp(1.5, 20.0)
    };
    let td = target_duration_ms.clamp(
        super::decision::MIN_TARGET_DURATION_MS,
        super::decision::MAX_TARGET_DURATION_MS,
    );
    let pt = part_target_ms.clamp(MIN_PART_TARGET_MS, td);
    ((pt as f64 * m).round() as u64).min(policy.bound_ms(td))
}

/// When the last new part was seen: the part freshness of one rendition while it is probed with
/// blocking reload. Part of the rendition's [`super::decision::Tracker`], which turns a passed
/// deadline into `NoNewPart`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartClock {
    pub part_target_ms: u64,
    /// The next part expected (one past the newest seen).
    pub next: PartPos,
    pub last_change_ms: u64,
}

impl PartClock {
    /// Armed at `now_ms` on a playlist whose next part is `info.next`.
    pub fn new(part_target_ms: u64, next: PartPos, now_ms: u64) -> Self {
        Self {
            part_target_ms,
            next,
            last_change_ms: now_ms,
        }
    }

    /// Applies a playlist seen at `now_ms` whose next part is `next`; true when it gained a part.
    /// A playlist that went backwards (an origin restart: the segment tracker reports it) starts
    /// the clock again from there.
    pub fn observe(&mut self, part_target_ms: u64, next: PartPos, now_ms: u64) -> bool {
        self.part_target_ms = part_target_ms;
        if next == self.next {
            return false;
        }
        let advanced = next > self.next;
        self.next = next;
        self.last_change_ms = now_ms;
        advanced
    }

    pub fn bound_ms(&self, policy: &Policy, target_duration_ms: u64) -> u64 {
        part_bound_ms(policy, self.part_target_ms, target_duration_ms)
    }

    /// When the rendition is stale if no new part arrives.
    pub fn deadline_ms(&self, policy: &Policy, target_duration_ms: u64) -> u64 {
        self.last_change_ms
            .saturating_add(self.bound_ms(policy, target_duration_ms))
    }
}

/// Whether a rendition is probed with blocking reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Ordinary polling: the playlist offers no blocking reload (or was not seen yet).
    #[default]
    Plain,
    /// Blocking requests for the next part; parts are judged.
    Blocking,
    /// Ordinary polling after blocking reload misbehaved, until `retry_at_ms`.
    FellBack { retry_at_ms: u64 },
}

/// The next request of a rendition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// An ordinary reload. `confirm`: it checks a blocking request that failed or passed the
    /// part deadline (parts stay judged).
    Plain { confirm: bool },
    /// A blocking reload for this part.
    Blocking(PartPos),
}

/// How a blocking request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A playlist whose next part is `next` (`None`: it has no LL-HLS tags any more).
    Playlist { next: Option<PartPos> },
    /// The request failed.
    Failed(Failure),
    /// The part deadline passed while it was held; the prober dropped it.
    DeadlinePassed,
}

/// What to do after a blocking request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Send the next blocking request now.
    Next,
    /// Send the next blocking request after a pause (it answered early: no busy loop).
    Pause(u64),
    /// Reload plainly now, to confirm (the answer is no verdict).
    Confirm,
}

/// Blocking-reload state of one rendition: the mode, and the misbehaviours counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blocking {
    pub mode: Mode,
    strikes: u32,
    good_in_a_row: u32,
    /// Consecutive blocking requests held past the part deadline while parts arrived (reset by
    /// any answered one: a loaded prober or network can delay one answer, a hanging server
    /// delays them all).
    held_strikes: u32,
    /// A plain reload to confirm is owed: the next plan.
    confirm_owed: bool,
    /// The blocking request being confirmed was held past the part deadline.
    held_past_deadline: bool,
    /// The next part the last blocking request asked for, for the confirmation.
    asked: Option<PartPos>,
    /// Number of fallbacks so far (for status and metrics).
    pub fallbacks: u32,
}

impl Blocking {
    /// What the next request is. `healthy_fetches`: the last fetch succeeded (a failing origin
    /// is polled plainly, with the ordinary backoff). `next`: the next part of the last playlist.
    pub fn plan(&mut self, now_ms: u64, healthy_fetches: bool, next: Option<PartPos>) -> Plan {
        if let Mode::FellBack { retry_at_ms } = self.mode
            && now_ms >= retry_at_ms
        {
            // Try again; the next playlist that offers it switches back to blocking.
            self.mode = Mode::Plain;
        }
        if self.confirm_owed {
            self.confirm_owed = false;
            return Plan::Plain { confirm: true };
        }
        match (self.mode, next) {
            (Mode::Blocking, Some(next)) if healthy_fetches => {
                self.asked = Some(next);
                Plan::Blocking(next)
            }
            _ => Plan::Plain { confirm: false },
        }
    }

    /// A playlist was read (by any request): follows what it offers. True while parts are judged.
    pub fn offered(&mut self, info: Option<&LlInfo>) -> bool {
        let offers = info.is_some_and(LlInfo::offers_blocking);
        match self.mode {
            Mode::Plain if offers => self.mode = Mode::Blocking,
            Mode::Blocking if !offers => self.mode = Mode::Plain,
            _ => {}
        }
        self.mode == Mode::Blocking
    }

    /// A blocking request ended after `elapsed_ms`; `target_duration_ms` of the playlist.
    pub fn answered(
        &mut self,
        answer: &Answer,
        elapsed_ms: u64,
        target_duration_ms: u64,
        part_target_ms: u64,
        now_ms: u64,
    ) -> After {
        let asked = self.asked;
        let (strike, after) = match answer {
            Answer::Playlist { next: Some(next) } if asked.is_none_or(|a| *next > a) => {
                (false, After::Next)
            }
            Answer::Playlist { next: None } => (false, After::Next),
            Answer::Playlist { .. } => {
                // Without the part it asked for. Held about the limit: the server gave up (a
                // 200 instead of a 503); the part clock judges. Early: it ignored the request.
                if elapsed_ms < target_duration_ms {
                    (true, After::Pause((part_target_ms / 2).max(50)))
                } else {
                    (false, After::Next)
                }
            }
            Answer::Failed(Failure::Http(code)) if (400..500).contains(code) => {
                (true, After::Confirm)
            }
            Answer::Failed(Failure::Timeout) => (true, After::Confirm),
            // A 503 after the hold is what RFC 8216bis asks for; any failure well before it is
            // no answer to a blocking request (and would loop with its confirmation).
            Answer::Failed(_) => (elapsed_ms < target_duration_ms, After::Confirm),
            Answer::DeadlinePassed => (false, After::Confirm),
        };
        if after == After::Confirm {
            self.confirm_owed = true;
        }
        self.held_past_deadline = *answer == Answer::DeadlinePassed;
        if strike {
            self.strike(now_ms);
        } else if matches!(answer, Answer::Playlist { .. }) {
            self.held_strikes = 0;
            self.good_in_a_row = self.good_in_a_row.saturating_add(1);
            if self.good_in_a_row >= FORGIVE_AFTER {
                self.strikes = 0;
            }
        }
        after
    }

    /// The plain reload that confirmed a held blocking request showed `next`: newer than what the
    /// blocking request asked for means the server held it although the part had arrived.
    pub fn confirmed(&mut self, next: Option<PartPos>, now_ms: u64) {
        if let (true, Some(next), Some(asked)) = (self.held_past_deadline, next, self.asked)
            && next > asked
        {
            self.held_strikes = self.held_strikes.saturating_add(1);
            if self.held_strikes >= MAX_STRIKES {
                self.fall_back(now_ms);
            }
        }
        self.held_past_deadline = false;
    }

    /// A plain reload to confirm a blocking one is due: the stale verdict waits for it.
    pub fn confirm_owed(&self) -> bool {
        self.confirm_owed
    }

    fn strike(&mut self, now_ms: u64) {
        self.good_in_a_row = 0;
        self.strikes = self.strikes.saturating_add(1);
        if self.strikes >= MAX_STRIKES {
            self.fall_back(now_ms);
        }
    }

    fn fall_back(&mut self, now_ms: u64) {
        if self.mode != Mode::Blocking {
            return;
        }
        self.mode = Mode::FellBack {
            retry_at_ms: now_ms.saturating_add(RETRY_AFTER_MS),
        };
        self.strikes = 0;
        self.held_strikes = 0;
        self.confirm_owed = false;
        self.fallbacks = self.fallbacks.saturating_add(1);
    }

    pub fn is_blocking(&self) -> bool {
        self.mode == Mode::Blocking
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500\n\
        #EXT-X-PART-INF:PART-TARGET=0.500\n#EXT-X-MEDIA-SEQUENCE:100\n\
        #EXT-X-PART:DURATION=0.500,URI=\"100.0.ts\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.500,URI=\"100.1.ts\"\n#EXTINF:2.000,\n100.ts\n\
        #EXT-X-PART:DURATION=0.500,URI=\"101.0.ts\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.500,URI=\"101.1.ts\"\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"101.2.ts\"\n";

    fn pos(msn: u64, part: u64) -> PartPos {
        PartPos { msn, part }
    }

    #[test]
    fn the_ll_hls_tags_are_read_and_the_next_part_found() {
        let info = parse(LL.as_bytes(), 100, 1).unwrap();
        assert_eq!(
            info,
            LlInfo {
                can_block_reload: true,
                part_target_ms: Some(500),
                next: pos(101, 2),
            }
        );
        assert!(info.offers_blocking());
        // At a segment boundary: no parts after the last URI.
        let boundary = LL
            .split("#EXT-X-PART:DURATION=0.500,URI=\"101.0.ts\"")
            .next()
            .unwrap();
        assert_eq!(
            parse(boundary.as_bytes(), 100, 1).unwrap().next,
            pos(101, 0)
        );
        // Plain HLS: no LL-HLS at all.
        let plain = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n1.ts\n";
        assert_eq!(parse(plain.as_bytes(), 1, 1), None);
        // Parts without blocking reload, or blocking reload without parts: not offered.
        let no_block = LL.replace("CAN-BLOCK-RELOAD=YES", "CAN-BLOCK-RELOAD=NO");
        assert!(
            !parse(no_block.as_bytes(), 100, 1)
                .unwrap()
                .offers_blocking()
        );
        let no_parts = LL.replace("#EXT-X-PART-INF:PART-TARGET=0.500\n", "");
        assert!(
            !parse(no_parts.as_bytes(), 100, 1)
                .unwrap()
                .offers_blocking()
        );
    }

    #[test]
    fn hostile_ll_hls_numbers_are_clamped_or_ignored() {
        for (pt, want) in [
            ("0.001", Some(MIN_PART_TARGET_MS)),
            ("1e300", None),
            ("NaN", None),
            ("-1", None),
            ("inf", None),
            ("abc", None),
            ("", None),
            ("1.000", Some(1_000)),
        ] {
            let body = LL.replace("PART-TARGET=0.500", &format!("PART-TARGET={pt}"));
            assert_eq!(
                parse(body.as_bytes(), 100, 1).unwrap().part_target_ms,
                want,
                "{pt}"
            );
        }
        let info = parse(LL.as_bytes(), u64::MAX, u64::MAX).unwrap();
        assert_eq!(info.next.msn, u64::MAX);
        assert_eq!(parse(b"\xff\xfe", 0, 0), None);
        let many = "#EXTM3U\n#EXT-X-PART-INF:PART-TARGET=1\n".to_owned()
            + &"#EXT-X-PART:DURATION=1,URI=\"x\"\n".repeat(10_000);
        assert_eq!(parse(many.as_bytes(), 0, 0).unwrap().next, pos(0, 10_000));
    }

    #[test]
    fn blocking_urls_keep_the_origin_query() {
        let u = Url::parse("http://o.example/s/720p/index.m3u8?token=a%2Fb").unwrap();
        assert_eq!(
            blocking_url(&u, pos(12, 3)).as_str(),
            "http://o.example/s/720p/index.m3u8?token=a%2Fb&_HLS_msn=12&_HLS_part=3"
        );
        let old = Url::parse("http://o.example/i.m3u8?_HLS_msn=1&_HLS_part=0&t=x").unwrap();
        assert_eq!(
            blocking_url(&old, pos(2, 0)).as_str(),
            "http://o.example/i.m3u8?t=x&_HLS_msn=2&_HLS_part=0"
        );
        let bare = Url::parse("http://o.example/i.m3u8").unwrap();
        assert_eq!(
            blocking_url(&bare, pos(0, 0)).as_str(),
            "http://o.example/i.m3u8?_HLS_msn=0&_HLS_part=0"
        );
    }

    #[test]
    fn timeouts_and_bounds_stay_within_limits() {
        assert_eq!(blocking_timeout_ms(2_000), 7_000);
        assert_eq!(blocking_timeout_ms(6_000), 21_000);
        assert_eq!(blocking_timeout_ms(u64::MAX), 210_000);
        let p = Policy::default();
        assert_eq!(part_bound_ms(&p, 500, 2_000), 1_500);
        assert_eq!(part_bound_ms(&p, 1_000, 2_000), 3_000);
        // Never beyond the segment bound (1.5 x TD), never from an absurd part target.
        assert_eq!(part_bound_ms(&p, 2_000, 2_000), 3_000);
        assert_eq!(part_bound_ms(&p, 0, 2_000), 300);
        for m in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
            let p = Policy {
                part_staleness_multiplier: m,
                ..Policy::default()
            };
            let b = part_bound_ms(&p, 500, 6_000);
            assert!((750..=9_000).contains(&b), "{m}: {b}");
        }
    }

    #[test]
    fn a_tracker_judging_parts_is_stale_within_the_part_bound() {
        use super::super::decision::{Snapshot, StaleReason, Tracker};
        let p = Policy::default();
        let snap = |seq: u64| Snapshot {
            media_sequence: seq,
            segment_count: 6,
            target_duration_ms: 2_000,
            last_segment_ms: 2_000,
            ended: false,
            newest_end_unix_ms: None,
        };
        let mut t = Tracker::new();
        // Fresh by a new segment; parts judged from 0 ms, one every 500 ms.
        t.parts = Some(PartClock::new(500, pos(16, 0), 0));
        t.observe(snap(10), 0, &p);
        t.parts.as_mut().unwrap().observe(500, pos(17, 0), 100);
        t.observe(snap(11), 100, &p);
        assert!(t.is_fresh());
        for (i, now) in [600, 1_100, 1_600].into_iter().enumerate() {
            t.parts
                .as_mut()
                .unwrap()
                .observe(500, pos(17, i as u64 + 1), now);
            t.observe(snap(11), now, &p);
        }
        assert!(t.is_fresh());
        // The earlier of the part deadline (1,600 + 1,500) and the segment one (100 + 3,000).
        assert_eq!(t.deadline_ms(&p), Some(3_100));
        t.parts.as_mut().unwrap().observe(500, pos(17, 3), 1_700);
        t.observe(snap(11), 1_700, &p);
        assert_eq!(t.deadline_ms(&p), Some(3_100));
        // A new segment at 2,100 moves the segment deadline to 5,100; the part one stays 3,200.
        t.parts.as_mut().unwrap().observe(500, pos(18, 0), 2_100);
        t.observe(snap(12), 2_100, &p);
        assert_eq!(t.deadline_ms(&p), Some(3_600));
        t.tick(3_600, &p);
        assert!(t.is_fresh(), "exactly the bound");
        let v = t.tick(3_601, &p);
        assert!(v.flipped);
        assert_eq!(
            t.stale,
            Some(StaleReason::NoNewPart {
                age_ms: 1_501,
                bound_ms: 1_500
            })
        );
        assert_eq!(t.stale.as_ref().unwrap().code(), "NoNewPart");
        // The first verdict's wording is kept when the segment bound passes too.
        t.tick(9_000, &p);
        assert!(matches!(t.stale, Some(StaleReason::NoNewPart { .. })));
        // Without parts judged, the same tracker waits for the segment bound.
        let mut plain = Tracker::new();
        plain.observe(snap(10), 0, &p);
        plain.observe(snap(11), 100, &p);
        plain.tick(3_000, &p);
        assert!(plain.is_fresh());
    }

    #[test]
    fn the_part_clock_follows_new_parts_and_restarts_on_a_reset() {
        let p = Policy::default();
        let mut c = PartClock::new(500, pos(10, 1), 0);
        assert_eq!(c.deadline_ms(&p, 2_000), 1_500);
        assert!(!c.observe(500, pos(10, 1), 400));
        assert_eq!(c.deadline_ms(&p, 2_000), 1_500);
        assert!(c.observe(500, pos(10, 2), 600));
        assert!(c.observe(500, pos(11, 0), 1_100), "a segment boundary");
        assert_eq!(c.deadline_ms(&p, 2_000), 2_600);
        assert!(!c.observe(500, pos(3, 0), 1_200), "went backwards");
        assert_eq!((c.next, c.last_change_ms), (pos(3, 0), 1_200));
    }

    /// Drives a rendition's blocking state over scripted answers; returns the plans made.
    fn script(b: &mut Blocking, steps: &[(Answer, u64)]) -> Vec<Plan> {
        let mut plans = Vec::new();
        let mut now = 0;
        let mut next = pos(10, 0);
        for (answer, elapsed) in steps {
            let plan = b.plan(now, true, Some(next));
            plans.push(plan);
            now += elapsed;
            match plan {
                Plan::Blocking(_) => {
                    if let Answer::Playlist { next: Some(n) } = answer {
                        next = *n;
                    }
                    b.answered(answer, *elapsed, 2_000, 500, now);
                }
                Plan::Plain { confirm } => {
                    if let Answer::Playlist { next: n } = answer {
                        if confirm {
                            b.confirmed(*n, now);
                        }
                        next = n.unwrap_or(next);
                    }
                }
            }
        }
        plans
    }

    fn playlist(msn: u64, part: u64) -> Answer {
        Answer::Playlist {
            next: Some(pos(msn, part)),
        }
    }

    #[test]
    fn a_well_behaved_server_is_probed_with_blocking_requests_only() {
        let mut b = Blocking::default();
        assert_eq!(b.plan(0, true, None), Plan::Plain { confirm: false });
        assert!(b.offered(parse(LL.as_bytes(), 100, 1).as_ref()));
        let steps: Vec<(Answer, u64)> = (1..40)
            .map(|i| (playlist(10 + i / 4, i % 4), 500))
            .collect();
        let plans = script(&mut b, &steps);
        assert!(
            plans.iter().all(|p| matches!(p, Plan::Blocking(_))),
            "{plans:?}"
        );
        assert!(b.is_blocking());
        assert_eq!(b.fallbacks, 0);
    }

    #[test]
    fn a_server_that_ignores_the_parameters_is_left_for_plain_polling() {
        let advance = |p: PartPos| {
            if p.part < 3 {
                pos(p.msn, p.part + 1)
            } else {
                pos(p.msn + 1, 0)
            }
        };
        let mut b = Blocking::default();
        b.offered(parse(LL.as_bytes(), 100, 1).as_ref());
        // It answers at once with the playlist as it is: the part asked for is not there yet
        // on every other answer, which pauses for half a part target before asking again.
        let (mut next, mut now, mut plans) = (pos(10, 0), 0, Vec::new());
        for i in 0..12 {
            let plan = b.plan(now, true, Some(next));
            plans.push(plan);
            match plan {
                Plan::Blocking(asked) => {
                    let got = if i % 2 == 0 { asked } else { advance(asked) };
                    b.answered(&Answer::Playlist { next: Some(got) }, 3, 2_000, 500, now);
                    next = got;
                }
                Plan::Plain { .. } => next = advance(next),
            }
            now += 250;
        }
        assert!(matches!(b.mode, Mode::FellBack { .. }), "{:?}", b.mode);
        assert_eq!(b.fallbacks, 1);
        // From the fallback on, plain requests only.
        let first_plain = plans
            .iter()
            .position(|p| matches!(p, Plan::Plain { .. }))
            .unwrap();
        assert_eq!(first_plain, 5, "{plans:?}");
        assert!(
            plans[first_plain..]
                .iter()
                .all(|p| *p == Plan::Plain { confirm: false })
        );
        // An early answer pauses before the next request rather than looping.
        let mut b = Blocking::default();
        b.offered(parse(LL.as_bytes(), 100, 1).as_ref());
        b.plan(0, true, Some(pos(10, 1)));
        assert_eq!(
            b.answered(&playlist(10, 1), 2, 2_000, 500, 2),
            After::Pause(250)
        );
        // Answered without the part but after holding a target duration: the server gave up,
        // no strike.
        b.plan(2, true, Some(pos(10, 1)));
        assert_eq!(
            b.answered(&playlist(10, 1), 6_000, 2_000, 500, 6_002),
            After::Next
        );
        assert_eq!(b.strikes, 1);
    }

    #[test]
    fn refusing_or_hanging_blocking_requests_fall_back_after_confirming() {
        for failure in [Failure::Http(400), Failure::Http(404), Failure::Timeout] {
            let mut b = Blocking::default();
            b.offered(parse(LL.as_bytes(), 100, 1).as_ref());
            let steps: Vec<(Answer, u64)> = (0..6)
                .map(|i| {
                    if i % 2 == 0 {
                        (Answer::Failed(failure.clone()), 5)
                    } else {
                        (playlist(10, 1), 5)
                    }
                })
                .collect();
            let plans = script(&mut b, &steps);
            assert_eq!(
                plans,
                vec![
                    Plan::Blocking(pos(10, 0)),
                    Plan::Plain { confirm: true },
                    Plan::Blocking(pos(10, 1)),
                    Plan::Plain { confirm: true },
                    Plan::Blocking(pos(10, 1)),
                    // The third: fallen back, nothing to confirm.
                    Plan::Plain { confirm: false },
                ],
                "{failure}"
            );
            assert!(matches!(b.mode, Mode::FellBack { .. }), "{failure}");
        }
        // A 503 after the hold (RFC 8216bis allows it) or a reset connection is confirmed but is
        // no misbehaviour.
        let mut b = Blocking::default();
        b.offered(parse(LL.as_bytes(), 100, 1).as_ref());
        for _ in 0..10 {
            b.plan(0, true, Some(pos(10, 0)));
            assert_eq!(
                b.answered(&Answer::Failed(Failure::Http(503)), 6_000, 2_000, 500, 0),
                After::Confirm
            );
            assert_eq!(
                b.plan(0, true, Some(pos(10, 0))),
                Plan::Plain { confirm: true }
            );
            b.confirmed(Some(pos(10, 0)), 0);
        }
        assert!(b.is_blocking());
    }

    #[test]
    fn a_held_request_past_the_deadline_is_confirmed_and_a_hanging_server_found() {
        // Frozen origin: the confirmation shows nothing new; no strike, blocking goes on.
        let mut b = Blocking::default();
        b.offered(parse(LL.as_bytes(), 100, 1).as_ref());
        let frozen: Vec<(Answer, u64)> = (0..8)
            .map(|i| {
                if i % 2 == 0 {
                    (Answer::DeadlinePassed, 1_500)
                } else {
                    (playlist(10, 0), 5)
                }
            })
            .collect();
        script(&mut b, &frozen);
        assert!(b.is_blocking());
        // Live origin whose blocking requests hang: the confirmation shows newer parts.
        let mut b = Blocking::default();
        b.offered(parse(LL.as_bytes(), 100, 1).as_ref());
        let hanging: Vec<(Answer, u64)> = (0..6)
            .map(|i| {
                if i % 2 == 0 {
                    (Answer::DeadlinePassed, 1_500)
                } else {
                    (playlist(11 + i, 2), 5)
                }
            })
            .collect();
        script(&mut b, &hanging);
        assert!(matches!(b.mode, Mode::FellBack { .. }));
        // One answer delayed past the deadline now and then (a loaded prober) is no hang.
        let mut b2 = Blocking::default();
        b2.offered(parse(LL.as_bytes(), 100, 1).as_ref());
        let delayed: Vec<(Answer, u64)> = (0..30)
            .map(|i| match i % 3 {
                0 => (Answer::DeadlinePassed, 1_500),
                1 => (playlist(20 + i, 1), 5),
                _ => (playlist(20 + i, 2), 400),
            })
            .collect();
        script(&mut b2, &delayed);
        assert!(b2.is_blocking(), "{:?}", b2.mode);
        // It is tried again after the retry interval, once a playlist offers it.
        assert_eq!(
            b.plan(RETRY_AFTER_MS + 10_000, true, Some(pos(20, 0))),
            Plan::Plain { confirm: false }
        );
        assert!(b.offered(parse(LL.as_bytes(), 100, 1).as_ref()));
        assert_eq!(
            b.plan(RETRY_AFTER_MS + 10_100, true, Some(pos(20, 0))),
            Plan::Blocking(pos(20, 0))
        );
    }

    #[test]
    fn a_failing_origin_is_polled_plainly() {
        let mut b = Blocking::default();
        b.offered(parse(LL.as_bytes(), 100, 1).as_ref());
        assert_eq!(
            b.plan(0, false, Some(pos(1, 0))),
            Plan::Plain { confirm: false }
        );
        assert_eq!(b.plan(0, true, Some(pos(1, 0))), Plan::Blocking(pos(1, 0)));
        // A playlist that stops offering it is polled plainly.
        assert!(!b.offered(None));
        assert_eq!(
            b.plan(0, true, Some(pos(1, 0))),
            Plan::Plain { confirm: false }
        );
    }
}
