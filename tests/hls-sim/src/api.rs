//! Request and response shapes of the control API (also used in-process through
//! [`crate::SimHandle`]). All of them serialize to the JSON the HTTP API speaks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{AudioRendition, RenditionSpec, VideoRendition};

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    /// Media playlists stop advancing: they show what they showed at `applied_at_unix_ms`.
    /// After heal they jump back to the wall-clock sequence.
    #[serde(rename = "freeze")]
    Freeze,
    /// Answer 404.
    #[serde(rename = "http_404")]
    Http404,
    /// Answer 500 (or `params.status`, 400..=599).
    #[serde(rename = "http_500")]
    Http500,
    /// A whole region (no stream, no rendition, resource `any`): the listener is closed so
    /// connect() fails, and re-opened on the same port at heal. Narrower: the connection is reset
    /// without a response.
    #[serde(rename = "refuse")]
    Refuse,
    /// Accept the request and answer only after heal (or never, if the client gives up).
    #[serde(rename = "hang")]
    Hang,
    /// Delay each response by `params.delay_ms` (default 1000).
    #[serde(rename = "slow")]
    Slow,
    /// Media sequence numbers drop by `params.offset` (default: back to about 0), like an encoder
    /// restart; the stream keeps advancing from there. Heal jumps back to the wall-clock numbers.
    #[serde(rename = "reset")]
    Reset,
    /// The body is cut in the middle (`params.mode`: `short` = a 200 with half the body and a
    /// matching Content-Length; `abort` = full Content-Length, half the body, then the
    /// connection is closed).
    #[serde(rename = "truncate")]
    Truncate,
    /// A 200 whose body is `params.bytes` (default 4096) bytes of binary noise.
    #[serde(rename = "garbage")]
    Garbage,
    /// A 200 whose body is the real one padded with ignorable tag lines up to `params.bytes`
    /// (default 8 MiB), streamed.
    #[serde(rename = "oversize")]
    Oversize,
    /// A realistic, healthy but imperfect origin: about one request in `params.one_in` (default
    /// 100) fails as `params.failure` says (default `mixed`: a 500, a reset connection or a
    /// timeout, chosen at random), never two requests in a row for one URL path in one region.
    #[serde(rename = "flaky")]
    Flaky,
    /// The region runs behind: playlists and segments are served as they were `params.delay_ms`
    /// (default 5000) ago, program date-times included.
    #[serde(rename = "lag")]
    Lag,
    /// Segment publication is jittered: each segment appears up to `params.percent` / 2 % of the
    /// target duration (default 30: +-15 %) before or after its nominal instant, so the time
    /// between two publications varies by up to +-`percent` % (at most 90). Deterministic per
    /// stream and segment, the same in every region.
    #[serde(rename = "jitter")]
    Jitter,
    /// LL-HLS blocking playlist reload misbehaves (`params.blocking`): `ignore` answers a
    /// `_HLS_msn`/`_HLS_part` request at once with the playlist as it is, `hang` holds it until
    /// heal (past the RFC's three target durations), `error` answers 400. Plain reloads, segments
    /// and parts are served as usual.
    #[serde(rename = "blocking_reload")]
    BlockingReload,
    /// Media playlists list the last `params.entries` (default 10,800) complete segments, as
    /// many as the stream has published, as an `EXT-X-PLAYLIST-TYPE:EVENT` playlist: a DVR
    /// window (6 hours of 2 s segments), or with a large `entries` a hostile one.
    #[serde(rename = "long_window")]
    LongWindow,
    /// Playlists (master and media) get a line of `params.bytes` (default 1 MiB) bytes, an
    /// unknown tag `#EXT-X-SIM-LONG-LINE:xxx...`, after their first line.
    #[serde(rename = "long_line")]
    LongLine,
    /// The master playlist lists `params.entries` (default 10,000) further variants
    /// (`extra{N}/index.m3u8`, which answer 404).
    #[serde(rename = "many_variants")]
    ManyVariants,
}

impl FaultKind {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Freeze => "freeze",
            FaultKind::Http404 => "http_404",
            FaultKind::Http500 => "http_500",
            FaultKind::Refuse => "refuse",
            FaultKind::Hang => "hang",
            FaultKind::Slow => "slow",
            FaultKind::Reset => "reset",
            FaultKind::Truncate => "truncate",
            FaultKind::Garbage => "garbage",
            FaultKind::Oversize => "oversize",
            FaultKind::Flaky => "flaky",
            FaultKind::Lag => "lag",
            FaultKind::Jitter => "jitter",
            FaultKind::BlockingReload => "blocking_reload",
            FaultKind::LongWindow => "long_window",
            FaultKind::LongLine => "long_line",
            FaultKind::ManyVariants => "many_variants",
        }
    }
}

/// Which requests of the scope a fault applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceFilter {
    /// Every request in scope (playlists, segments, parts, anything else).
    #[default]
    Any,
    /// Master playlists only.
    Master,
    /// Media playlists only (video, audio and I-frame).
    Media,
    /// Master and media playlists.
    Playlist,
    /// Segments and parts.
    Segment,
}

/// How `truncate` cuts a body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruncateMode {
    /// 200 with the first half of the body and a Content-Length that matches it.
    #[default]
    Short,
    /// Content-Length of the whole body, the first half sent, then the connection closed.
    Abort,
}

/// How a `flaky` request fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlakyFailure {
    /// One of the three below, at random.
    #[default]
    Mixed,
    /// Answer 500.
    Http500,
    /// Reset the connection without an answer.
    Reset,
    /// Answer only after `params.delay_ms` (default 10000), later than a prober waits.
    Timeout,
}

/// How `blocking_reload` misbehaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockingMisbehaviour {
    /// Answer at once, as if `_HLS_msn`/`_HLS_part` were absent.
    #[default]
    Ignore,
    /// Hold the request until the fault is healed.
    Hang,
    /// Answer 400 Bad Request.
    Error,
}

/// Kind-specific parameters; unknown fields are refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultParams {
    /// `slow`: delay in ms (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// `garbage` (default 4096) and `oversize` (default 8 MiB): body size in bytes; `long_line`
    /// (default 1 MiB): the line's length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// `reset`: how far media sequence numbers drop (default: back to about 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// `http_500`: the status to answer (400..=599, default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `truncate`: how to cut (default `short`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TruncateMode>,
    /// Request faults (`http_404`, `http_500`, `refuse`, `hang`, `slow`, `truncate`, `garbage`,
    /// `oversize`): apply to the first `count` matching requests only, then to none (the fault
    /// stays listed until healed). Absent: every matching request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `flaky`: about one request in this many fails (default 100, at least 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_in: Option<u32>,
    /// `flaky`: how a request fails (default `mixed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FlakyFailure>,
    /// `jitter`: the spread of the time between publications, in % of the target duration
    /// (default 30, at most 90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// `blocking_reload`: how it misbehaves (default `ignore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking: Option<BlockingMisbehaviour>,
    /// `long_window`: segments listed (default 10,800); `many_variants`: variants added
    /// (default 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// `oversize`: send the body without a Content-Length (chunked), so the client finds its
    /// size only by reading it; with a large `bytes`, a body that does not end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunked: Option<bool>,
}

/// `POST /faults`. `region`, `stream` and `rendition` narrow the scope; absent, `null` or `"*"`
/// means every one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    pub kind: FaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendition: Option<String>,
    #[serde(default)]
    pub resource: ResourceFilter,
    #[serde(default)]
    pub params: FaultParams,
}

impl FaultRequest {
    /// A fault of this kind on everything; narrow it with the builder methods.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            region: None,
            stream: None,
            rendition: None,
            resource: ResourceFilter::Any,
            params: FaultParams::default(),
        }
    }
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }
    pub fn rendition(mut self, rendition: impl Into<String>) -> Self {
        self.rendition = Some(rendition.into());
        self
    }
    pub fn resource(mut self, resource: ResourceFilter) -> Self {
        self.resource = resource;
        self
    }
    pub fn params(mut self, params: FaultParams) -> Self {
        self.params = params;
        self
    }
}

/// Answer to `POST /faults`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultApplied {
    pub id: u64,
    pub kind: FaultKind,
    /// The instant the fault took effect (for `freeze`, the instant the playlists froze at).
    pub applied_at_unix_ms: u64,
    /// `freeze` only: what the frozen playlists show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<FrozenInfo>,
    /// `reset` only: how far media sequence numbers dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_offset: Option<u64>,
    /// Region-wide `refuse` only: regions whose listener is now closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed_regions: Vec<String>,
}

/// What a frozen playlist shows, so detection latency can be measured exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrozenInfo {
    /// When the last segment visible in the frozen playlist was published (the latest over the
    /// streams in scope; they differ only when stream starts are staggered).
    pub last_segment_published_unix_ms: Option<u64>,
    /// LL-HLS: when the last part visible in the frozen playlist was published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_part_published_unix_ms: Option<u64>,
    /// Per stream in scope.
    pub streams: BTreeMap<String, FrozenStream>,
}

/// What one stream's frozen playlists show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrozenStream {
    /// Media sequence number of the last complete segment listed (as served).
    pub last_msn: Option<u64>,
    pub last_segment_published_unix_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_part_published_unix_ms: Option<u64>,
}

/// An active fault (`GET /faults`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultInfo {
    pub id: u64,
    pub kind: FaultKind,
    pub region: Option<String>,
    pub stream: Option<String>,
    pub rendition: Option<String>,
    pub resource: ResourceFilter,
    /// The parameters in force, defaults filled in.
    pub params: FaultParams,
    pub applied_at_unix_ms: u64,
}

/// `GET /faults`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultList {
    pub faults: Vec<FaultInfo>,
}

/// Answer to `DELETE /faults/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healed {
    pub id: u64,
    pub healed_at_unix_ms: u64,
}

/// Answer to `DELETE /faults`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealedAll {
    pub healed: Vec<u64>,
    pub healed_at_unix_ms: u64,
}

/// `POST /streams/{stream}/renditions` (`{stream}` may be `*` for every stream).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionUpdate {
    /// Video renditions to add: ladder names (`"540p"`) or objects
    /// `{"name", "bandwidth"?, "average_bandwidth"?, "width"?, "height"?, "codecs"?, "frame_rate"?}`.
    #[serde(default)]
    pub add: Vec<RenditionSpec>,
    /// Names of video renditions to remove (at least one must remain).
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Answer to `POST /streams/{stream}/renditions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenditionsChanged {
    /// Streams changed.
    pub streams: Vec<String>,
    /// The video renditions now listed (of the first stream changed).
    pub renditions: Vec<String>,
    pub changed_at_unix_ms: u64,
}

/// `GET /topology` (`?stream=NAME` and `?region=NAME` filter it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub control: String,
    /// Segment duration in ms (`EXT-X-TARGETDURATION` is this rounded to whole seconds, >= 1).
    pub target_duration_ms: u64,
    pub window: u64,
    pub ll_hls: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_target_ms: Option<u64>,
    pub regions: Vec<RegionTopology>,
    pub streams: Vec<StreamTopology>,
}

/// One region in the topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionTopology {
    pub name: String,
    pub base_url: String,
    /// False while a region-wide `refuse` holds the listener closed.
    pub listening: bool,
    pub streams: Vec<RegionStream>,
}

/// One stream instance (stream x region) with its playlist URLs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionStream {
    pub name: String,
    pub master_url: String,
    pub media: Vec<MediaUrl>,
}

/// One media playlist URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaUrl {
    pub rendition: String,
    /// `video`, `audio` or `iframe`.
    pub kind: String,
    pub url: String,
}

/// One stream (the same in every region).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamTopology {
    pub name: String,
    /// Unix ms when segment 0 started: segment N covers `[start + N*TD, start + (N+1)*TD)`.
    pub start_unix_ms: u64,
    /// Path of the master playlist relative to a region's base URL.
    pub master_path: String,
    pub video: Vec<VideoRendition>,
    pub audio: Vec<AudioRenditionInfo>,
}

/// An audio rendition in the topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioRenditionInfo {
    pub name: String,
    pub language: String,
    pub bandwidth: u64,
}

impl From<&AudioRendition> for AudioRenditionInfo {
    fn from(a: &AudioRendition) -> Self {
        Self {
            name: a.name.clone(),
            language: a.language.clone(),
            bandwidth: a.bandwidth,
        }
    }
}

/// The line printed on stdout (and written to `--ready-file`) once every listener is up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub control: String,
    pub regions: BTreeMap<String, String>,
}
