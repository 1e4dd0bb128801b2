//! What makes a healthy origin imperfect, and faults that touch only some requests: `flaky`
//! (a few requests fail, never twice in a row for one path), `count` on request faults (the
//! first N matching requests only), `lag` (a region behind the others) and `jitter` (segment
//! publication instants spread around their nominal ones).
//!
//! Per-request faults are *claimed* once per request, before its effect is evaluated
//! ([`claim`]), so a request evaluated twice (connection faults, then content) sees one
//! decision. `lag` and `jitter` reshape the clock a playlist or segment is served for
//! ([`reshape`]); they do not apply to LL-HLS blocking reloads and held parts.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::{FaultKind, FlakyFailure};
use crate::faults::{Effect, Fault, Resource};
use crate::hls::Timeline;

/// Default `flaky` rate: one request in this many.
pub const DEFAULT_ONE_IN: u32 = 100;
/// Default `flaky` timeout delay.
pub const DEFAULT_FLAKY_DELAY_MS: u64 = 10_000;
/// Default `lag`.
pub const DEFAULT_LAG_MS: u64 = 5_000;
/// Default `jitter` spread.
pub const DEFAULT_JITTER_PERCENT: u32 = 30;
/// Largest `jitter` spread: each instant moves by less than half a segment, so publications
/// keep their order.
pub const MAX_JITTER_PERCENT: u32 = 90;

/// Per-request state of one fault.
#[derive(Debug, Default)]
pub(crate) struct PerRequest {
    /// `count`: matching requests still to fail.
    pub remaining: Option<AtomicU64>,
    /// `flaky`: (region, path hash) whose last request failed.
    pub failed_last: Mutex<HashSet<(usize, u64)>>,
}

impl PerRequest {
    pub fn new(count: Option<u64>) -> Self {
        Self {
            remaining: count.map(AtomicU64::new),
            failed_last: Mutex::default(),
        }
    }
}

/// How one request fails because of a `flaky` fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlakyOutcome {
    Http500,
    Reset,
    Timeout(u64),
}

/// What one request claimed of the per-request faults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Claims {
    /// Counted faults that apply to this request.
    pub counted: Vec<u64>,
    /// The `flaky` failure of this request, if any.
    pub flaky: Option<FlakyOutcome>,
}

impl Claims {
    pub const NONE: &'static Claims = &Claims {
        counted: Vec::new(),
        flaky: None,
    };
}

/// Whether a fault is decided per request (counted or flaky).
pub(crate) fn is_per_request(f: &Fault) -> bool {
    f.kind == FaultKind::Flaky || f.params.count.is_some()
}

fn path_hash(path: &str) -> u64 {
    // FNV-1a: stable and cheap.
    path.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Claims the per-request faults matching a request: takes one from each counted fault that
/// still has some, and draws the `flaky` outcome. Called once per request.
pub(crate) fn claim(
    faults: &[Arc<Fault>],
    region: usize,
    stream: Option<usize>,
    rendition: Option<&str>,
    resource: Resource,
    path: &str,
) -> Claims {
    let mut claims = Claims::default();
    for f in faults {
        if !is_per_request(f) || !f.matches(region, stream, rendition, resource) {
            continue;
        }
        if f.kind == FaultKind::Flaky {
            if claims.flaky.is_some() {
                continue;
            }
            let key = (region, path_hash(path));
            let mut last = f.per_request.failed_last.lock().expect("flaky lock");
            if last.remove(&key) {
                continue; // Never twice in a row.
            }
            let one_in = f.params.one_in.unwrap_or(DEFAULT_ONE_IN).max(2);
            if fastrand::u32(0..one_in) != 0 {
                continue;
            }
            last.insert(key);
            let delay = f.params.delay_ms.unwrap_or(DEFAULT_FLAKY_DELAY_MS);
            claims.flaky = Some(match f.params.failure.unwrap_or_default() {
                FlakyFailure::Http500 => FlakyOutcome::Http500,
                FlakyFailure::Reset => FlakyOutcome::Reset,
                FlakyFailure::Timeout => FlakyOutcome::Timeout(delay),
                FlakyFailure::Mixed => match fastrand::u8(0..3) {
                    0 => FlakyOutcome::Http500,
                    1 => FlakyOutcome::Reset,
                    _ => FlakyOutcome::Timeout(delay),
                },
            });
        } else if let Some(remaining) = &f.per_request.remaining {
            let took = remaining
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            if took {
                claims.counted.push(f.id);
            }
        }
    }
    claims
}

/// Applies a `flaky` outcome to an effect.
pub(crate) fn apply_flaky(e: &mut Effect, outcome: FlakyOutcome) {
    match outcome {
        FlakyOutcome::Http500 => {
            e.status.get_or_insert(500);
        }
        FlakyOutcome::Reset => e.refuse = true,
        FlakyOutcome::Timeout(ms) => e.delay_ms = e.delay_ms.max(ms),
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// How far segment `n` of stream `stream` is published from its nominal instant, in ms: within
/// +-`percent` / 2 % of the target duration.
pub fn jitter_offset_ms(tl: &Timeline, stream: usize, n: u64, percent: u32) -> i64 {
    let percent = i64::from(percent.min(MAX_JITTER_PERCENT));
    let h = splitmix((stream as u64).wrapping_mul(0x1000_0000_01b3) ^ n);
    let unit = (h % 2_001) as i64 - 1_000; // -1000..=1000
    unit * percent * tl.td_ms as i64 / (2 * 100 * 1_000)
}

/// When segment `n` is published under `jitter`.
pub fn jittered_published_ms(tl: &Timeline, stream: usize, n: u64, percent: u32) -> u64 {
    tl.segment_published_ms(n)
        .saturating_add_signed(jitter_offset_ms(tl, stream, n, percent))
}

/// The instant to render for at `t_ms` so that the newest segment shown is the newest one
/// published by then under `jitter` (the nominal publication instant of that segment).
pub fn jittered_view_ms(tl: &Timeline, stream: usize, t_ms: u64, percent: u32) -> u64 {
    let Some(n0) = tl.last_complete(t_ms) else {
        return t_ms;
    };
    for k in [n0 + 1, n0, n0.saturating_sub(1)] {
        if jittered_published_ms(tl, stream, k, percent) <= t_ms {
            return tl.segment_published_ms(k);
        }
    }
    // Nothing published yet by the jittered clock: render just before segment n0 - 1.
    tl.segment_published_ms(n0.saturating_sub(1))
        .saturating_sub(1)
}

/// The view of the content at `t_ms` through `lag` and `jitter` (not for LL-HLS).
pub(crate) fn reshape_ms(e: &Effect, tl: &Timeline, stream: usize, t_ms: u64) -> u64 {
    let t = t_ms.saturating_sub(e.lag_ms);
    if e.jitter_percent > 0 && !tl.ll() {
        jittered_view_ms(tl, stream, t, e.jitter_percent)
    } else {
        t
    }
}

/// Reshapes a request's clock and freeze instant by `lag` and `jitter`, so every later use of
/// `now` and `eff.view_time(now)` serves the region as it is behind or jittered.
pub(crate) fn reshape(now: u64, mut eff: Effect, tl: &Timeline, stream: usize) -> (u64, Effect) {
    if eff.lag_ms == 0 && eff.jitter_percent == 0 {
        return (now, eff);
    }
    eff.freeze_at = eff.freeze_at.map(|f| reshape_ms(&eff, tl, stream, f));
    (reshape_ms(&eff, tl, stream, now), eff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tl() -> Timeline {
        Timeline {
            start_ms: 1_000_000,
            td_ms: 2_000,
            part_ms: 0,
            window: 6,
        }
    }

    #[test]
    fn jitter_keeps_publications_in_order_and_within_the_spread() {
        let tl = tl();
        let mut gaps = Vec::new();
        for n in 1..2_000 {
            let a = jittered_published_ms(&tl, 3, n - 1, 30);
            let b = jittered_published_ms(&tl, 3, n, 30);
            assert!(b > a);
            gaps.push(b - a);
            assert!(jitter_offset_ms(&tl, 3, n, 30).abs() <= 300);
        }
        // Intervals spread over TD +-30 %.
        assert!(
            gaps.iter().all(|&g| (1_400..=2_600).contains(&g)),
            "{gaps:?}"
        );
        assert!(gaps.iter().any(|&g| g < 1_600) && gaps.iter().any(|&g| g > 2_400));
    }

    #[test]
    fn the_jittered_view_shows_exactly_what_is_published() {
        let tl = tl();
        for t in (1_000_000..1_100_000).step_by(37) {
            let view = jittered_view_ms(&tl, 1, t, 60);
            let shown = tl.last_complete(view);
            let published: Option<u64> = (0..60u64)
                .rev()
                .find(|&n| jittered_published_ms(&tl, 1, n, 60) <= t);
            assert_eq!(shown, published, "at {t}");
        }
    }

    fn fault(id: u64, kind: FaultKind, params: crate::api::FaultParams) -> Arc<Fault> {
        Arc::new(Fault {
            id,
            kind,
            region: None,
            stream: None,
            rendition: None,
            resource: crate::api::ResourceFilter::Any,
            per_request: PerRequest::new(params.count),
            params,
            applied_at_ms: 0,
            healed: tokio_util::sync::CancellationToken::new(),
            region_name: None,
            stream_name: None,
        })
    }

    #[test]
    fn a_counted_fault_fails_exactly_its_count() {
        let f = fault(
            1,
            FaultKind::Http500,
            crate::api::FaultParams {
                count: Some(2),
                ..Default::default()
            },
        );
        let all = vec![f];
        let statuses: Vec<Option<u16>> = (0..5)
            .map(|_| {
                let c = claim(&all, 0, None, None, Resource::Media, "/s/720p/index.m3u8");
                crate::faults::evaluate_claimed(&all, 0, None, None, Resource::Media, &c).status
            })
            .collect();
        assert_eq!(statuses, vec![Some(500), Some(500), None, None, None]);
        // Without a claim (a second evaluation of the same request), a counted fault is not seen.
        assert_eq!(
            crate::faults::evaluate(&all, 0, None, None, Resource::Media).status,
            None
        );
    }

    #[test]
    fn flaky_fails_about_one_in_n_and_never_twice_in_a_row_per_path() {
        let f = fault(
            1,
            FaultKind::Flaky,
            crate::api::FaultParams {
                one_in: Some(4),
                ..Default::default()
            },
        );
        let all = vec![f];
        let mut failures = 0;
        for path in ["/a", "/b", "/c"] {
            let mut last = false;
            for _ in 0..4_000 {
                let c = claim(&all, 0, None, None, Resource::Media, path);
                let failed = c.flaky.is_some();
                assert!(!(failed && last), "twice in a row on {path}");
                failures += u32::from(failed);
                last = failed;
            }
        }
        // 1 in 4 of the requests that may fail: about 12,000 * 1/5.
        assert!((1_800..3_000).contains(&failures), "{failures}");
        // Every outcome kind occurs with `mixed`.
        let kinds: HashSet<_> = (0..300)
            .filter_map(|i| claim(&all, 1, None, None, Resource::Media, &format!("/{i}")).flaky)
            .map(|o| std::mem::discriminant(&o))
            .collect();
        assert_eq!(kinds.len(), 3);
    }

    #[test]
    fn lag_and_freeze_reshape_together() {
        let tl = tl();
        let e = Effect {
            lag_ms: 5_000,
            freeze_at: Some(1_050_000),
            ..Effect::default()
        };
        let (now, e) = reshape(1_060_000, e, &tl, 0);
        assert_eq!(now, 1_055_000);
        assert_eq!(e.view_time(now), 1_045_000);
    }
}
