//! Active faults and how they combine for one request. Pure: no clock, no I/O.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::{
    BlockingMisbehaviour, FaultInfo, FaultKind, FaultParams, ResourceFilter, TruncateMode,
};
use crate::realism::{self, Claims, PerRequest};

/// Default `slow` delay.
pub const DEFAULT_DELAY_MS: u64 = 1000;
/// Default `garbage` size.
pub const DEFAULT_GARBAGE_BYTES: u64 = 4096;
/// Default `oversize` size.
pub const DEFAULT_OVERSIZE_BYTES: u64 = 8 * 1024 * 1024;
/// Default `long_window` length: 6 hours of 2 s segments.
pub const DEFAULT_LONG_WINDOW: u64 = 10_800;
/// Default `long_line` length.
pub const DEFAULT_LONG_LINE_BYTES: u64 = 1024 * 1024;
/// Default `many_variants` count.
pub const DEFAULT_MANY_VARIANTS: u64 = 10_000;

/// What a request asks for, as far as fault scopes care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Master,
    Media,
    Segment,
    Other,
}

impl ResourceFilter {
    pub(crate) fn admits(self, r: Resource) -> bool {
        match self {
            ResourceFilter::Any => true,
            ResourceFilter::Master => r == Resource::Master,
            ResourceFilter::Media => r == Resource::Media,
            ResourceFilter::Playlist => matches!(r, Resource::Master | Resource::Media),
            ResourceFilter::Segment => r == Resource::Segment,
        }
    }
}

/// One active fault, resolved against the topology.
#[derive(Debug)]
pub(crate) struct Fault {
    pub id: u64,
    pub kind: FaultKind,
    pub region: Option<usize>,
    pub stream: Option<usize>,
    pub rendition: Option<Box<str>>,
    pub resource: ResourceFilter,
    /// Parameters with defaults filled in (as reported by `GET /faults`).
    pub params: FaultParams,
    pub applied_at_ms: u64,
    /// Cancelled when the fault is healed (wakes `hang`).
    pub healed: CancellationToken,
    /// Names for reporting.
    pub region_name: Option<String>,
    pub stream_name: Option<String>,
    /// State of a fault decided per request (`count`, `flaky`).
    pub per_request: PerRequest,
}

impl Fault {
    /// Whether the fault applies to a request in `region` for `stream`/`rendition`/`resource`.
    pub fn matches(
        &self,
        region: usize,
        stream: Option<usize>,
        rendition: Option<&str>,
        resource: Resource,
    ) -> bool {
        self.region.is_none_or(|r| r == region)
            && self.stream.is_none_or(|s| Some(s) == stream)
            && self
                .rendition
                .as_deref()
                .is_none_or(|r| Some(r) == rendition)
            && self.resource.admits(resource)
    }

    /// A `refuse` on whole regions: handled by closing listeners.
    pub fn is_listener_refuse(&self) -> bool {
        self.kind == FaultKind::Refuse
            && self.params.count.is_none()
            && self.stream.is_none()
            && self.rendition.is_none()
            && self.resource == ResourceFilter::Any
    }

    pub fn info(&self) -> FaultInfo {
        FaultInfo {
            id: self.id,
            kind: self.kind,
            region: self.region_name.clone(),
            stream: self.stream_name.clone(),
            rendition: self.rendition.as_deref().map(str::to_string),
            resource: self.resource,
            params: self.params.clone(),
            applied_at_unix_ms: self.applied_at_ms,
        }
    }
}

/// How a body is corrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFault {
    Garbage(u64),
    Truncate(TruncateMode),
    /// Size, and whether it is sent without a Content-Length.
    Oversize(u64, bool),
}

/// The combined effect of every fault matching one request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Effect {
    /// Drop the connection without answering.
    pub refuse: bool,
    /// Wait for this token (the oldest matching `hang`) before answering.
    pub hang: Option<CancellationToken>,
    /// Largest matching `slow` delay.
    pub delay_ms: u64,
    /// Status of the oldest matching `http_404`/`http_500`.
    pub status: Option<u16>,
    /// The oldest matching body fault.
    pub body: Option<BodyFault>,
    /// Earliest matching `freeze` instant.
    pub freeze_at: Option<u64>,
    /// Sum of matching `reset` offsets.
    pub seq_offset: u64,
    /// Largest matching `lag`.
    pub lag_ms: u64,
    /// Largest matching `jitter` spread (%).
    pub jitter_percent: u32,
    /// The oldest matching `blocking_reload`, with its heal token (wakes `hang`).
    pub blocking: Option<(BlockingMisbehaviour, CancellationToken)>,
    /// Largest matching `long_window`: segments listed.
    pub window: Option<u64>,
    /// Largest matching `long_line`: the line's length.
    pub long_line: Option<u64>,
    /// Largest matching `many_variants`: variants added to the master.
    pub extra_variants: Option<u64>,
}

impl Effect {
    /// The instant the content is rendered for: `now`, or the freeze instant if earlier.
    pub fn view_time(&self, now_ms: u64) -> u64 {
        self.freeze_at.map_or(now_ms, |f| f.min(now_ms))
    }
}

/// Combines the faults matching a request, in the order they were applied. O(faults). Faults
/// decided per request (`count`, `flaky`) are left out: see [`evaluate_claimed`].
pub(crate) fn evaluate(
    faults: &[Arc<Fault>],
    region: usize,
    stream: Option<usize>,
    rendition: Option<&str>,
    resource: Resource,
) -> Effect {
    evaluate_claimed(faults, region, stream, rendition, resource, Claims::NONE)
}

/// [`evaluate`] for a request that claimed `claims` (see [`realism::claim`]).
pub(crate) fn evaluate_claimed(
    faults: &[Arc<Fault>],
    region: usize,
    stream: Option<usize>,
    rendition: Option<&str>,
    resource: Resource,
    claims: &Claims,
) -> Effect {
    let mut e = Effect::default();
    if let Some(outcome) = claims.flaky {
        realism::apply_flaky(&mut e, outcome);
    }
    for f in faults {
        if !f.matches(region, stream, rendition, resource) {
            continue;
        }
        if realism::is_per_request(f) && !claims.counted.contains(&f.id) {
            continue;
        }
        match f.kind {
            FaultKind::Refuse => e.refuse = true,
            FaultKind::Hang => {
                if e.hang.is_none() {
                    e.hang = Some(f.healed.clone());
                }
            }
            FaultKind::Slow => e.delay_ms = e.delay_ms.max(f.params.delay_ms.unwrap_or(0)),
            FaultKind::Http404 => {
                e.status.get_or_insert(404);
            }
            FaultKind::Http500 => {
                e.status.get_or_insert(f.params.status.unwrap_or(500));
            }
            FaultKind::Garbage => {
                e.body.get_or_insert(BodyFault::Garbage(
                    f.params.bytes.unwrap_or(DEFAULT_GARBAGE_BYTES),
                ));
            }
            FaultKind::Truncate => {
                e.body
                    .get_or_insert(BodyFault::Truncate(f.params.mode.unwrap_or_default()));
            }
            FaultKind::Oversize => {
                e.body.get_or_insert(BodyFault::Oversize(
                    f.params.bytes.unwrap_or(DEFAULT_OVERSIZE_BYTES),
                    f.params.chunked.unwrap_or(false),
                ));
            }
            FaultKind::Freeze => {
                e.freeze_at = Some(
                    e.freeze_at
                        .map_or(f.applied_at_ms, |t| t.min(f.applied_at_ms)),
                );
            }
            FaultKind::Reset => e.seq_offset += f.params.offset.unwrap_or(0),
            FaultKind::Lag => e.lag_ms = e.lag_ms.max(f.params.delay_ms.unwrap_or(0)),
            FaultKind::Jitter => {
                e.jitter_percent = e.jitter_percent.max(f.params.percent.unwrap_or(0))
            }
            // Decided in `realism::claim`.
            FaultKind::Flaky => {}
            FaultKind::BlockingReload => {
                if e.blocking.is_none() {
                    e.blocking = Some((f.params.blocking.unwrap_or_default(), f.healed.clone()));
                }
            }
            FaultKind::LongWindow => {
                let n = f.params.entries.unwrap_or(DEFAULT_LONG_WINDOW);
                e.window = Some(e.window.map_or(n, |w| w.max(n)));
            }
            FaultKind::LongLine => {
                let n = f.params.bytes.unwrap_or(DEFAULT_LONG_LINE_BYTES);
                e.long_line = Some(e.long_line.map_or(n, |w| w.max(n)));
            }
            FaultKind::ManyVariants => {
                let n = f.params.entries.unwrap_or(DEFAULT_MANY_VARIANTS);
                e.extra_variants = Some(e.extra_variants.map_or(n, |w| w.max(n)));
            }
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(id: u64, kind: FaultKind) -> Fault {
        Fault {
            id,
            kind,
            region: None,
            stream: None,
            rendition: None,
            resource: ResourceFilter::Any,
            params: FaultParams::default(),
            applied_at_ms: 1000 + id,
            healed: CancellationToken::new(),
            region_name: None,
            stream_name: None,
            per_request: PerRequest::default(),
        }
    }

    #[test]
    fn scope_matching() {
        let mut f = fault(1, FaultKind::Http404);
        assert!(f.matches(0, None, None, Resource::Other));
        f.region = Some(1);
        assert!(!f.matches(0, Some(3), None, Resource::Master));
        assert!(f.matches(1, Some(3), None, Resource::Master));
        f.stream = Some(3);
        assert!(f.matches(1, Some(3), Some("720p"), Resource::Media));
        assert!(!f.matches(1, Some(4), Some("720p"), Resource::Media));
        assert!(!f.matches(1, None, None, Resource::Other));
        f.rendition = Some("720p".into());
        assert!(f.matches(1, Some(3), Some("720p"), Resource::Segment));
        assert!(!f.matches(1, Some(3), Some("1080p"), Resource::Media));
        assert!(!f.matches(1, Some(3), None, Resource::Master));
        f.resource = ResourceFilter::Media;
        assert!(!f.matches(1, Some(3), Some("720p"), Resource::Segment));
        assert!(f.matches(1, Some(3), Some("720p"), Resource::Media));
        assert!(!f.is_listener_refuse());
        let mut r = fault(2, FaultKind::Refuse);
        r.region = Some(0);
        assert!(r.is_listener_refuse());
        r.stream = Some(0);
        assert!(!r.is_listener_refuse());
    }

    #[test]
    fn combination() {
        let mut slow1 = fault(1, FaultKind::Slow);
        slow1.params.delay_ms = Some(300);
        let mut slow2 = fault(2, FaultKind::Slow);
        slow2.params.delay_ms = Some(100);
        let mut e500 = fault(3, FaultKind::Http500);
        e500.params.status = Some(503);
        let e404 = fault(4, FaultKind::Http404);
        let freeze_late = fault(7, FaultKind::Freeze);
        let freeze_early = fault(5, FaultKind::Freeze);
        let mut reset_a = fault(8, FaultKind::Reset);
        reset_a.params.offset = Some(10);
        let mut reset_b = fault(9, FaultKind::Reset);
        reset_b.params.offset = Some(5);
        let mut other_region = fault(10, FaultKind::Refuse);
        other_region.region = Some(9);
        let all: Vec<Arc<Fault>> = [
            slow1,
            slow2,
            e500,
            e404,
            freeze_late,
            freeze_early,
            reset_a,
            reset_b,
            other_region,
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let e = evaluate(&all, 0, Some(0), Some("720p"), Resource::Media);
        assert_eq!(e.delay_ms, 300);
        assert_eq!(e.status, Some(503));
        assert_eq!(e.freeze_at, Some(1005));
        assert_eq!(e.seq_offset, 15);
        assert!(!e.refuse);
        assert!(e.hang.is_none());
        assert_eq!(e.view_time(2000), 1005);
        assert_eq!(e.view_time(900), 900);
        assert!(evaluate(&all, 9, None, None, Resource::Other).refuse);
        let none = evaluate(&[], 0, None, None, Resource::Master);
        assert_eq!(none.view_time(42), 42);
    }

    #[test]
    fn body_faults_oldest_wins() {
        let mut t = fault(1, FaultKind::Truncate);
        t.params.mode = Some(TruncateMode::Abort);
        let g = fault(2, FaultKind::Garbage);
        let all = vec![Arc::new(t), Arc::new(g)];
        let e = evaluate(&all, 0, None, None, Resource::Master);
        assert_eq!(e.body, Some(BodyFault::Truncate(TruncateMode::Abort)));
    }
}
