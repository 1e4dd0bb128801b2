//! Shared simulator state: regions, streams, active faults, and the control operations on them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::api::{
    AudioRenditionInfo, FaultApplied, FaultInfo, FaultKind, FaultParams, FaultRequest, FrozenInfo,
    FrozenStream, Healed, HealedAll, MediaUrl, RegionStream, RegionTopology, RenditionUpdate,
    RenditionsChanged, StreamTopology, Topology,
};
use crate::config::{Resolved, VideoRendition, sort_ladder};
use crate::error::SimError;
use crate::faults::{
    DEFAULT_DELAY_MS, DEFAULT_GARBAGE_BYTES, DEFAULT_OVERSIZE_BYTES, Effect, Fault, Resource,
    evaluate, evaluate_claimed,
};
use crate::hls::{SegmentShape, Timeline, render_master};
use crate::realism::{self, Claims, PerRequest};

/// Current wall-clock time in unix ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How long a control call waits for a listener to close or re-open.
const LISTENER_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct Region {
    pub name: String,
    pub addr: SocketAddr,
    pub base_url: String,
    /// Number of active region-wide `refuse` faults; the listener task closes the listener
    /// while it is > 0.
    pub refuse: watch::Sender<usize>,
    /// Whether the listener is open (set by the listener task).
    pub listening: watch::Sender<bool>,
}

/// The video renditions of a stream and its master playlist rendered from them.
pub(crate) struct Renditions {
    pub video: Vec<VideoRendition>,
    pub master: Bytes,
}

pub(crate) struct Stream {
    pub name: String,
    pub timeline: Timeline,
    pub renditions: RwLock<Arc<Renditions>>,
}

/// What kind of media playlist a rendition name denotes in a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RenditionKind {
    Video,
    Audio,
}

impl Stream {
    pub fn renditions(&self) -> Arc<Renditions> {
        self.renditions.read().expect("renditions lock").clone()
    }
}

pub(crate) struct Shared {
    pub cfg: Resolved,
    /// How media playlists name and address segments.
    pub shape: SegmentShape,
    pub regions: Vec<Region>,
    pub streams: Vec<Stream>,
    pub stream_index: HashMap<String, usize>,
    pub control_addr: SocketAddr,
    /// Active faults in the order applied; replaced as a whole on every change.
    faults: RwLock<Arc<Vec<Arc<Fault>>>>,
    next_fault_id: AtomicU64,
    /// Woken on every fault change (blocked playlist requests re-check).
    pub fault_changed: Notify,
    pub shutdown: CancellationToken,
    /// Requests answered 401 for want of the required credentials.
    pub auth_rejected: AtomicU64,
}

fn build_renditions(video: Vec<VideoRendition>, cfg: &Resolved) -> Renditions {
    let mut m = String::with_capacity(256 + 300 * video.len());
    render_master(&mut m, &video, &cfg.audio);
    Renditions {
        video,
        master: Bytes::from(m),
    }
}

impl Shared {
    pub fn new(
        cfg: Resolved,
        region_addrs: Vec<SocketAddr>,
        control_addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> Self {
        let regions = cfg
            .regions
            .iter()
            .zip(region_addrs)
            .map(|(name, addr)| Region {
                name: name.clone(),
                addr,
                base_url: format!("http://{addr}"),
                refuse: watch::Sender::new(0),
                listening: watch::Sender::new(true),
            })
            .collect();
        let streams: Vec<Stream> = cfg
            .stream_names
            .iter()
            .enumerate()
            .map(|(i, name)| Stream {
                name: name.clone(),
                timeline: Timeline {
                    start_ms: cfg.stream_start_ms(i),
                    td_ms: cfg.td_ms,
                    part_ms: cfg.part_ms,
                    window: cfg.window,
                },
                renditions: RwLock::new(Arc::new(build_renditions(cfg.video.clone(), &cfg))),
            })
            .collect();
        let stream_index = streams
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let shape = SegmentShape {
            format: cfg.format,
            iframe_bytes: cfg
                .media
                .as_ref()
                .and_then(|m| m.iframe_bytes())
                .unwrap_or(SegmentShape::default().iframe_bytes),
            program_date_time: cfg.program_date_time,
        };
        Self {
            cfg,
            shape,
            regions,
            streams,
            stream_index,
            control_addr,
            faults: RwLock::new(Arc::new(Vec::new())),
            next_fault_id: AtomicU64::new(1),
            fault_changed: Notify::new(),
            shutdown,
            auth_rejected: AtomicU64::new(0),
        }
    }

    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    fn fault_snapshot(&self) -> Arc<Vec<Arc<Fault>>> {
        self.faults.read().expect("faults lock").clone()
    }

    /// The combined effect of the active faults on one request. Read the clock *before* calling
    /// this: a fault applied after the snapshot was taken has `applied_at` >= that reading.
    pub fn effect(
        &self,
        region: usize,
        stream: Option<usize>,
        rendition: Option<&str>,
        resource: Resource,
    ) -> Effect {
        let faults = self.fault_snapshot();
        if faults.is_empty() {
            return Effect::default();
        }
        evaluate(&faults, region, stream, rendition, resource)
    }

    /// Claims the per-request faults (`count`, `flaky`) for one request to `path`. Call once per
    /// request, then evaluate with [`Shared::effect_claimed`].
    pub fn claim(
        &self,
        region: usize,
        stream: Option<usize>,
        rendition: Option<&str>,
        resource: Resource,
        path: &str,
    ) -> Claims {
        let faults = self.fault_snapshot();
        if faults.is_empty() {
            return Claims::default();
        }
        realism::claim(&faults, region, stream, rendition, resource, path)
    }

    /// [`Shared::effect`] for a request that claimed `claims`.
    pub fn effect_claimed(
        &self,
        region: usize,
        stream: Option<usize>,
        rendition: Option<&str>,
        resource: Resource,
        claims: &Claims,
    ) -> Effect {
        let faults = self.fault_snapshot();
        if faults.is_empty() && claims.flaky.is_none() {
            return Effect::default();
        }
        evaluate_claimed(&faults, region, stream, rendition, resource, claims)
    }

    pub fn rendition_kind(&self, renditions: &Renditions, name: &str) -> Option<RenditionKind> {
        if renditions.video.iter().any(|v| v.name == name) {
            Some(RenditionKind::Video)
        } else if self.cfg.audio.iter().any(|a| a.name == name) {
            Some(RenditionKind::Audio)
        } else {
            None
        }
    }

    fn region_index(&self, name: &str) -> Result<usize, SimError> {
        self.regions
            .iter()
            .position(|r| r.name == name)
            .ok_or_else(|| SimError::BadRequest(format!("unknown region {name:?}")))
    }

    fn stream_idx(&self, name: &str) -> Result<usize, SimError> {
        self.stream_index
            .get(name)
            .copied()
            .ok_or_else(|| SimError::BadRequest(format!("unknown stream {name:?}")))
    }

    /// Applies a fault. A region-wide `refuse` returns once the listeners are closed.
    pub async fn apply_fault(&self, req: FaultRequest) -> Result<FaultApplied, SimError> {
        if self.shutdown.is_cancelled() {
            return Err(SimError::ShuttingDown);
        }
        let region = wildcard(&req.region)
            .map(|r| self.region_index(r))
            .transpose()?;
        let stream = wildcard(&req.stream)
            .map(|s| self.stream_idx(s))
            .transpose()?;
        let rendition = wildcard(&req.rendition).map(str::to_string);
        if let Some(r) = &rendition {
            let exists = |s: &Stream| self.rendition_kind(&s.renditions(), r).is_some();
            let known = match stream {
                Some(i) => exists(&self.streams[i]),
                None => self.streams.iter().any(exists),
            };
            if !known {
                return Err(SimError::BadRequest(format!("unknown rendition {r:?}")));
            }
        }
        let params = resolve_params(req.kind, &req.params)?;

        let healed = CancellationToken::new();
        let fault = {
            let mut guard = self.faults.write().expect("faults lock");
            let mut params = params;
            if req.kind == FaultKind::Reset {
                params.offset = Some(self.reset_offset(&guard, region, stream, params.offset));
            }
            // The instant is read under the write lock: every request that did not see this
            // fault read its clock before it.
            let applied_at_ms = now_ms();
            let count = params.count;
            let fault = Arc::new(Fault {
                id: self.next_fault_id.fetch_add(1, Ordering::Relaxed),
                kind: req.kind,
                region,
                stream,
                rendition: rendition.map(String::into_boxed_str),
                resource: req.resource,
                params,
                applied_at_ms,
                healed,
                region_name: region.map(|i| self.regions[i].name.clone()),
                stream_name: stream.map(|i| self.streams[i].name.clone()),
                per_request: PerRequest::new(count),
            });
            let mut list = Vec::with_capacity(guard.len() + 1);
            list.extend(guard.iter().cloned());
            list.push(fault.clone());
            *guard = Arc::new(list);
            fault
        };
        self.fault_changed.notify_waiters();
        tracing::info!(
            id = fault.id,
            kind = fault.kind.as_str(),
            region = fault.region_name.as_deref().unwrap_or("*"),
            stream = fault.stream_name.as_deref().unwrap_or("*"),
            rendition = fault.rendition.as_deref().unwrap_or("*"),
            "fault applied"
        );

        let mut applied = FaultApplied {
            id: fault.id,
            kind: fault.kind,
            applied_at_unix_ms: fault.applied_at_ms,
            frozen: None,
            reset_offset: None,
            closed_regions: Vec::new(),
        };
        match fault.kind {
            FaultKind::Freeze => applied.frozen = Some(self.frozen_info(&fault)),
            FaultKind::Reset => applied.reset_offset = fault.params.offset,
            FaultKind::Refuse if fault.is_listener_refuse() => {
                let regions = self.fault_regions(&fault);
                for &r in &regions {
                    self.regions[r].refuse.send_modify(|n| *n += 1);
                }
                for &r in &regions {
                    self.wait_listening(r, false).await;
                    applied.closed_regions.push(self.regions[r].name.clone());
                }
            }
            _ => {}
        }
        Ok(applied)
    }

    fn fault_regions(&self, f: &Fault) -> Vec<usize> {
        match f.region {
            Some(r) => vec![r],
            None => (0..self.regions.len()).collect(),
        }
    }

    async fn wait_listening(&self, region: usize, want: bool) {
        let mut rx = self.regions[region].listening.subscribe();
        let wait = rx.wait_for(|&l| l == want);
        if tokio::time::timeout(LISTENER_WAIT, wait).await.is_err() {
            tracing::warn!(
                region = %self.regions[region].name,
                want, "listener did not change state in time"
            );
        }
    }

    /// Offset for a new `reset`: the requested one (default: back to 0), clamped so that no
    /// stream in scope goes below sequence 0 given the resets already active there.
    fn reset_offset(
        &self,
        active: &[Arc<Fault>],
        region: Option<usize>,
        stream: Option<usize>,
        requested: Option<u64>,
    ) -> u64 {
        let now = now_ms();
        let overlaps = |f: &Fault, s: usize| {
            f.kind == FaultKind::Reset
                && f.stream.is_none_or(|fs| fs == s)
                && (f.region.is_none() || region.is_none() || f.region == region)
        };
        let streams: Box<dyn Iterator<Item = usize>> = match stream {
            Some(s) => Box::new(std::iter::once(s)),
            None => Box::new(0..self.streams.len()),
        };
        let room = streams
            .map(|s| {
                let first = self.streams[s].timeline.snapshot(now).first;
                let used: u64 = active
                    .iter()
                    .filter(|f| overlaps(f, s))
                    .map(|f| f.params.offset.unwrap_or(0))
                    .sum();
                first.saturating_sub(used)
            })
            .min()
            .unwrap_or(0);
        requested.map_or(room, |r| r.min(room))
    }

    fn frozen_info(&self, f: &Fault) -> FrozenInfo {
        let t = f.applied_at_ms;
        let faults = self.fault_snapshot();
        let region = f.region.unwrap_or(0);
        let streams: Vec<usize> = match f.stream {
            Some(s) => vec![s],
            None => (0..self.streams.len()).collect(),
        };
        let mut info = FrozenInfo {
            last_segment_published_unix_ms: None,
            last_part_published_unix_ms: None,
            streams: BTreeMap::new(),
        };
        for s in streams {
            let stream = &self.streams[s];
            let tl = &stream.timeline;
            // The frozen view is the earliest active freeze on it (this one, unless an older
            // freeze already held it).
            let rendition = f
                .rendition
                .as_deref()
                .map(str::to_string)
                .or_else(|| stream.renditions().video.first().map(|v| v.name.clone()));
            let eff = evaluate(
                &faults,
                region,
                Some(s),
                rendition.as_deref(),
                Resource::Media,
            );
            let (t, eff) = realism::reshape(t, eff, tl, s);
            let view = eff.view_time(t);
            let snap = tl.snapshot(view);
            let (mut seg, part) = tl.last_published_ms(view);
            if eff.jitter_percent > 0 && !tl.ll() {
                seg = snap.last.map(|n| {
                    realism::jittered_published_ms(tl, s, n, eff.jitter_percent)
                        .saturating_add(eff.lag_ms)
                });
            }
            let offset = eff.seq_offset.min(snap.first);
            info.last_segment_published_unix_ms = info.last_segment_published_unix_ms.max(seg);
            info.last_part_published_unix_ms = info.last_part_published_unix_ms.max(part);
            info.streams.insert(
                stream.name.clone(),
                FrozenStream {
                    last_msn: snap.last.map(|l| l - offset),
                    last_segment_published_unix_ms: seg,
                    last_part_published_unix_ms: part,
                },
            );
        }
        info
    }

    /// Heals one fault.
    pub async fn heal_fault(&self, id: u64) -> Result<Healed, SimError> {
        let (fault, healed_at) = {
            let mut guard = self.faults.write().expect("faults lock");
            let Some(pos) = guard.iter().position(|f| f.id == id) else {
                return Err(SimError::NotFound(format!("no active fault {id}")));
            };
            let mut list: Vec<_> = guard.iter().cloned().collect();
            let fault = list.remove(pos);
            *guard = Arc::new(list);
            (fault, now_ms())
        };
        self.after_heal(std::slice::from_ref(&fault)).await;
        Ok(Healed {
            id,
            healed_at_unix_ms: healed_at,
        })
    }

    /// Heals every fault.
    pub async fn heal_all(&self) -> HealedAll {
        let (list, healed_at) = {
            let mut guard = self.faults.write().expect("faults lock");
            let list = std::mem::take(&mut *guard);
            (list, now_ms())
        };
        self.after_heal(&list).await;
        HealedAll {
            healed: list.iter().map(|f| f.id).collect(),
            healed_at_unix_ms: healed_at,
        }
    }

    async fn after_heal(&self, healed: &[Arc<Fault>]) {
        let mut reopened = Vec::new();
        for f in healed {
            f.healed.cancel();
            tracing::info!(id = f.id, kind = f.kind.as_str(), "fault healed");
            if f.is_listener_refuse() {
                for r in self.fault_regions(f) {
                    self.regions[r]
                        .refuse
                        .send_modify(|n| *n = n.saturating_sub(1));
                    reopened.push(r);
                }
            }
        }
        self.fault_changed.notify_waiters();
        reopened.sort_unstable();
        reopened.dedup();
        for r in reopened {
            if *self.regions[r].refuse.borrow() == 0 {
                self.wait_listening(r, true).await;
            }
        }
    }

    pub fn fault_list(&self) -> Vec<FaultInfo> {
        self.fault_snapshot().iter().map(|f| f.info()).collect()
    }

    /// Adds and removes video renditions of one stream, or of every stream for `*`.
    pub fn update_renditions(
        &self,
        stream: &str,
        update: &RenditionUpdate,
    ) -> Result<RenditionsChanged, SimError> {
        let targets: Vec<usize> = if stream == "*" {
            (0..self.streams.len()).collect()
        } else {
            vec![
                self.stream_index
                    .get(stream)
                    .copied()
                    .ok_or_else(|| SimError::NotFound(format!("unknown stream {stream:?}")))?,
            ]
        };
        let add: Vec<VideoRendition> = update
            .add
            .iter()
            .map(|s| s.to_rendition())
            .collect::<Result<_, _>>()?;
        // Validate against every target first, then change them all.
        let mut new_sets = Vec::with_capacity(targets.len());
        for &t in &targets {
            let current = self.streams[t].renditions();
            let mut video = current.video.clone();
            for name in &update.remove {
                let before = video.len();
                video.retain(|v| &v.name != name);
                if video.len() == before {
                    return Err(SimError::BadRequest(format!(
                        "stream {} has no video rendition {name:?}",
                        self.streams[t].name
                    )));
                }
            }
            for r in &add {
                if video.iter().any(|v| v.name == r.name) {
                    return Err(SimError::BadRequest(format!(
                        "stream {} already has rendition {:?}",
                        self.streams[t].name, r.name
                    )));
                }
                video.push(r.clone());
            }
            if video.is_empty() {
                return Err(SimError::BadRequest(
                    "at least one video rendition must remain".into(),
                ));
            }
            sort_ladder(&mut video);
            new_sets.push(video);
        }
        let mut names = Vec::new();
        for (&t, video) in targets.iter().zip(new_sets) {
            if names.is_empty() {
                names = video.iter().map(|v| v.name.clone()).collect();
            }
            let r = Arc::new(build_renditions(video, &self.cfg));
            *self.streams[t].renditions.write().expect("renditions lock") = r;
        }
        tracing::info!(
            stream,
            add = update.add.len(),
            remove = update.remove.len(),
            "renditions changed"
        );
        Ok(RenditionsChanged {
            streams: targets
                .iter()
                .map(|&t| self.streams[t].name.clone())
                .collect(),
            renditions: names,
            changed_at_unix_ms: now_ms(),
        })
    }

    /// The topology, optionally limited to one stream and/or one region.
    pub fn topology(&self, stream: Option<&str>, region: Option<&str>) -> Topology {
        let streams: Vec<&Stream> = self
            .streams
            .iter()
            .filter(|s| stream.is_none_or(|n| n == s.name))
            .collect();
        let rendition_sets: Vec<Arc<Renditions>> = streams.iter().map(|s| s.renditions()).collect();
        let regions = self
            .regions
            .iter()
            .filter(|r| region.is_none_or(|n| n == r.name))
            .map(|r| RegionTopology {
                name: r.name.clone(),
                base_url: r.base_url.clone(),
                listening: *r.listening.borrow(),
                streams: streams
                    .iter()
                    .zip(&rendition_sets)
                    .map(|(s, rs)| {
                        let base = format!("{}/{}", r.base_url, s.name);
                        let mut media =
                            Vec::with_capacity(rs.video.len() * 2 + self.cfg.audio.len());
                        for v in &rs.video {
                            media.push(MediaUrl {
                                rendition: v.name.clone(),
                                kind: "video".into(),
                                url: format!("{base}/{}/index.m3u8", v.name),
                            });
                        }
                        for a in &self.cfg.audio {
                            media.push(MediaUrl {
                                rendition: a.name.clone(),
                                kind: "audio".into(),
                                url: format!("{base}/{}/index.m3u8", a.name),
                            });
                        }
                        for v in &rs.video {
                            media.push(MediaUrl {
                                rendition: v.name.clone(),
                                kind: "iframe".into(),
                                url: format!("{base}/{}/iframes.m3u8", v.name),
                            });
                        }
                        RegionStream {
                            name: s.name.clone(),
                            master_url: format!("{base}/master.m3u8"),
                            media,
                        }
                    })
                    .collect(),
            })
            .collect();
        Topology {
            control: self.control_url(),
            target_duration_ms: self.cfg.td_ms,
            window: self.cfg.window,
            ll_hls: self.cfg.part_ms > 0,
            part_target_ms: (self.cfg.part_ms > 0).then_some(self.cfg.part_ms),
            regions,
            streams: streams
                .iter()
                .zip(&rendition_sets)
                .map(|(s, rs)| StreamTopology {
                    name: s.name.clone(),
                    start_unix_ms: s.timeline.start_ms,
                    master_path: format!("{}/master.m3u8", s.name),
                    video: rs.video.clone(),
                    audio: self
                        .cfg
                        .audio
                        .iter()
                        .map(AudioRenditionInfo::from)
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A scope field: `None`, empty and `*` mean every one.
fn wildcard(o: &Option<String>) -> Option<&str> {
    o.as_deref().filter(|s| !s.is_empty() && *s != "*")
}

/// Checks a fault's parameters and fills in defaults.
fn resolve_params(kind: FaultKind, p: &FaultParams) -> Result<FaultParams, SimError> {
    let bad = |m: &str| Err(SimError::BadRequest(format!("{}: {m}", kind.as_str())));
    let allowed: &[&str] = match kind {
        FaultKind::Slow => &["delay_ms", "count"],
        FaultKind::Garbage => &["bytes", "count"],
        FaultKind::Oversize => &["bytes", "count", "chunked"],
        FaultKind::Reset => &["offset"],
        FaultKind::Http500 => &["status", "count"],
        FaultKind::Truncate => &["mode", "count"],
        FaultKind::Http404 | FaultKind::Refuse | FaultKind::Hang => &["count"],
        FaultKind::Flaky => &["one_in", "failure", "delay_ms"],
        FaultKind::Lag => &["delay_ms"],
        FaultKind::Jitter => &["percent"],
        FaultKind::BlockingReload => &["blocking"],
        FaultKind::LongWindow | FaultKind::ManyVariants => &["entries"],
        FaultKind::LongLine => &["bytes"],
        FaultKind::Freeze => &[],
    };
    let given = [
        ("delay_ms", p.delay_ms.is_some()),
        ("bytes", p.bytes.is_some()),
        ("offset", p.offset.is_some()),
        ("status", p.status.is_some()),
        ("mode", p.mode.is_some()),
        ("count", p.count.is_some()),
        ("one_in", p.one_in.is_some()),
        ("failure", p.failure.is_some()),
        ("percent", p.percent.is_some()),
        ("blocking", p.blocking.is_some()),
        ("entries", p.entries.is_some()),
        ("chunked", p.chunked.is_some()),
    ];
    for (name, set) in given {
        if set && !allowed.contains(&name) {
            return bad(&format!("parameter {name} does not apply"));
        }
    }
    let mut out = FaultParams::default();
    match kind {
        FaultKind::Slow => {
            let d = p.delay_ms.unwrap_or(DEFAULT_DELAY_MS);
            if d > 3_600_000 {
                return bad("delay_ms must be <= 3600000");
            }
            out.delay_ms = Some(d);
        }
        FaultKind::Garbage => {
            let b = p.bytes.unwrap_or(DEFAULT_GARBAGE_BYTES);
            if b == 0 || b > 1 << 30 {
                return bad("bytes must be 1..=1 GiB");
            }
            out.bytes = Some(b);
        }
        FaultKind::Oversize => {
            let b = p.bytes.unwrap_or(DEFAULT_OVERSIZE_BYTES);
            if b > 1 << 34 {
                return bad("bytes must be <= 16 GiB");
            }
            out.bytes = Some(b);
            out.chunked = p.chunked;
        }
        FaultKind::Http500 => {
            let s = p.status.unwrap_or(500);
            if !(400..=599).contains(&s) {
                return bad("status must be 400..=599");
            }
            out.status = Some(s);
        }
        FaultKind::Truncate => out.mode = Some(p.mode.unwrap_or_default()),
        FaultKind::BlockingReload => out.blocking = Some(p.blocking.unwrap_or_default()),
        FaultKind::Reset => out.offset = p.offset,
        FaultKind::Flaky => {
            let n = p.one_in.unwrap_or(realism::DEFAULT_ONE_IN);
            if n < 2 {
                return bad("one_in must be at least 2");
            }
            out.one_in = Some(n);
            out.failure = Some(p.failure.unwrap_or_default());
            let d = p.delay_ms.unwrap_or(realism::DEFAULT_FLAKY_DELAY_MS);
            if d > 3_600_000 {
                return bad("delay_ms must be <= 3600000");
            }
            out.delay_ms = Some(d);
        }
        FaultKind::Lag => {
            let d = p.delay_ms.unwrap_or(realism::DEFAULT_LAG_MS);
            if d > 3_600_000 {
                return bad("delay_ms must be <= 3600000");
            }
            out.delay_ms = Some(d);
        }
        FaultKind::LongWindow => {
            let n = p.entries.unwrap_or(crate::faults::DEFAULT_LONG_WINDOW);
            if !(1..=1_000_000).contains(&n) {
                return bad("entries must be 1..=1000000");
            }
            out.entries = Some(n);
        }
        FaultKind::ManyVariants => {
            let n = p.entries.unwrap_or(crate::faults::DEFAULT_MANY_VARIANTS);
            if !(1..=1_000_000).contains(&n) {
                return bad("entries must be 1..=1000000");
            }
            out.entries = Some(n);
        }
        FaultKind::LongLine => {
            let b = p.bytes.unwrap_or(crate::faults::DEFAULT_LONG_LINE_BYTES);
            if !(1..=1 << 26).contains(&b) {
                return bad("bytes must be 1..=64 MiB");
            }
            out.bytes = Some(b);
        }
        FaultKind::Jitter => {
            let pc = p.percent.unwrap_or(realism::DEFAULT_JITTER_PERCENT);
            if pc > realism::MAX_JITTER_PERCENT {
                return bad("percent must be <= 90");
            }
            out.percent = Some(pc);
        }
        _ => {}
    }
    out.count = p.count;
    Ok(out)
}
