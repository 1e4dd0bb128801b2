//! Simulator configuration and the rendition ladder.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SimError;
use crate::media::{MediaLibrary, SegmentFormat};

/// Configuration of one simulator instance. `Default` gives two regions, 10 streams of three
/// video renditions and one audio rendition, 6 s segments, a window of 6, no LL-HLS, every port
/// chosen by the OS on 127.0.0.1.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Region names; each gets its own listener. At least one, unique, path-safe.
    pub regions: Vec<String>,
    /// Number of streams, named `s0001`, `s0002`, ... (at least 4 digits).
    pub streams: usize,
    /// Number of video renditions per stream (1..=10), from the built-in ladder.
    pub renditions: usize,
    /// Number of audio renditions per stream (1..=8), group `aud`.
    pub audio_renditions: usize,
    /// Segment duration (also the advertised target duration, rounded). Millisecond precision.
    pub target_duration: Duration,
    /// Complete segments listed per media playlist.
    pub window: usize,
    /// Serve LL-HLS (parts, preload hints, blocking playlist reload).
    pub ll_hls: bool,
    /// LL-HLS part target; `None` = 0.5 s, or a quarter of the target duration when that is
    /// under 1 s.
    pub part_target: Option<Duration>,
    /// Address every listener binds.
    pub bind: IpAddr,
    /// Control API port (0 = any free port).
    pub control_port: u16,
    /// First region port: region `i` listens on `region_port_base + i`. `None` = any free port.
    pub region_port_base: Option<u16>,
    /// Unix ms when segment 0 of every stream started. `None` = 1000 segments before the
    /// simulator started (rounded down to a whole second), so playlists are full from the start
    /// and media sequence numbers are large enough for a visible `reset`.
    pub start_unix_ms: Option<u64>,
    /// Spread stream start times evenly over one segment duration (stream `i` of `n` starts
    /// `i * TD / n` earlier), so thousands of streams do not all publish at the same instant.
    pub stagger: bool,
    /// Serve real media from this directory (made by `tests/player/make-media.sh`): every video
    /// rendition serves the clip's video track, every audio rendition its audio track, looped
    /// with timestamps that follow the media sequence number. `None` = 188-byte placeholder
    /// segments. The clip's segment duration must equal `target_duration`; no LL-HLS.
    pub media_dir: Option<PathBuf>,
    /// Container of the segments: MPEG-TS (`N.ts`) or fMP4 (`N.m4s` + `EXT-X-MAP` `init.mp4`,
    /// which needs `media_dir`).
    pub segment_format: SegmentFormat,
    /// Require credentials on every request but `/healthz`: a request without them, or with
    /// others, gets a 401. `None` = open origin.
    pub auth: Option<OriginAuth>,
    /// Date segments with `EXT-X-PROGRAM-DATE-TIME` (default true). Without it, media playlists
    /// carry no date, as many origins serve them.
    pub program_date_time: bool,
}

/// Credentials an origin requires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginAuth {
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: String },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `<name>: <value>` (for example a CDN identifier header).
    Header { name: String, value: String },
}

impl OriginAuth {
    /// The header (lower-case name) and the exact value a request must carry.
    pub fn expected(&self) -> (String, String) {
        use base64::Engine as _;
        match self {
            OriginAuth::Basic { username, password } => (
                "authorization".into(),
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"))
                ),
            ),
            OriginAuth::Bearer(token) => ("authorization".into(), format!("Bearer {token}")),
            OriginAuth::Header { name, value } => (name.to_ascii_lowercase(), value.clone()),
        }
    }

    /// Parses `basic:USER:PASSWORD`, `bearer:TOKEN` or `header:NAME:VALUE`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?}: expected basic:USER:PASSWORD, bearer:TOKEN or header:NAME:VALUE");
        match s.split_once(':').ok_or_else(bad)? {
            ("basic", rest) => {
                let (username, password) = rest.split_once(':').ok_or_else(bad)?;
                Ok(OriginAuth::Basic {
                    username: username.into(),
                    password: password.into(),
                })
            }
            ("bearer", token) if !token.is_empty() => Ok(OriginAuth::Bearer(token.into())),
            ("header", rest) => {
                let (name, value) = rest.split_once(':').ok_or_else(bad)?;
                Ok(OriginAuth::Header {
                    name: name.into(),
                    value: value.into(),
                })
            }
            _ => Err(bad()),
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            regions: vec!["us-east-1".into(), "eu-west-1".into()],
            streams: 10,
            renditions: 3,
            audio_renditions: 1,
            target_duration: Duration::from_secs(6),
            window: 6,
            ll_hls: false,
            part_target: None,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            control_port: 0,
            region_port_base: None,
            start_unix_ms: None,
            stagger: true,
            media_dir: None,
            segment_format: SegmentFormat::Ts,
            auth: None,
            program_date_time: true,
        }
    }
}

/// Validated configuration with derived values.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub regions: Vec<String>,
    pub stream_names: Vec<String>,
    pub video: Vec<VideoRendition>,
    pub audio: Vec<AudioRendition>,
    pub td_ms: u64,
    pub part_ms: u64,
    pub window: u64,
    pub base_start_ms: u64,
    pub stagger: bool,
    pub format: SegmentFormat,
    /// Real media, loaded by [`SimConfig::load_media`].
    pub media: Option<Arc<MediaLibrary>>,
    /// The header (lower-case name) and value every request must carry, if any.
    pub auth: Option<(String, String)>,
    pub program_date_time: bool,
}

impl Resolved {
    /// Start of segment 0 for stream `i`.
    pub fn stream_start_ms(&self, i: usize) -> u64 {
        let n = self.stream_names.len().max(1) as u64;
        let stagger = if self.stagger {
            (i as u64 * self.td_ms) / n
        } else {
            0
        };
        self.base_start_ms.saturating_sub(stagger)
    }
}

impl SimConfig {
    pub(crate) fn resolve(&self, now_ms: u64) -> Result<Resolved, SimError> {
        let bad = |m: String| Err(SimError::Config(m));
        if self.regions.is_empty() {
            return bad("at least one region is needed".into());
        }
        for (i, r) in self.regions.iter().enumerate() {
            if !is_path_safe(r) {
                return bad(format!("region name {r:?} must be 1-64 of [A-Za-z0-9._-]"));
            }
            if self.regions[..i].contains(r) {
                return bad(format!("region {r:?} is listed twice"));
            }
        }
        if self.streams == 0 || self.streams > 1_000_000 {
            return bad("streams must be 1..=1000000".into());
        }
        if self.window == 0 || self.window > 10_000 {
            return bad("window must be 1..=10000".into());
        }
        if !(1..=8).contains(&self.audio_renditions) {
            return bad("audio renditions must be 1..=8".into());
        }
        let td_ms = self.target_duration.as_millis() as u64;
        if !(50..=3_600_000).contains(&td_ms) {
            return bad("target duration must be between 0.05 s and 3600 s".into());
        }
        let part_ms = if self.ll_hls {
            let p = match self.part_target {
                Some(p) => p.as_millis() as u64,
                None if td_ms >= 1000 => 500,
                None => (td_ms / 4).max(1),
            };
            if p == 0 || p > td_ms {
                return bad("part target must be > 0 and <= target duration".into());
            }
            if td_ms.div_ceil(p) > 1000 {
                return bad("at most 1000 parts per segment".into());
            }
            p
        } else {
            0
        };
        if let Some(base) = self.region_port_base
            && (base == 0 || base as usize + self.regions.len() > 65_536)
        {
            return bad("region port base out of range".into());
        }
        if self.media_dir.is_some() && self.ll_hls {
            return bad("real media (media_dir) does not support LL-HLS parts".into());
        }
        if self.media_dir.is_none() && self.segment_format == SegmentFormat::Fmp4 {
            return bad("fMP4 segments need real media (media_dir)".into());
        }
        let video = ladder(self.renditions)?;
        let audio = default_audio(self.audio_renditions);
        let base_start_ms = match self.start_unix_ms {
            Some(s) => s,
            None => (now_ms / 1000 * 1000).saturating_sub(1000 * td_ms),
        };
        let width = self.streams.to_string().len().max(4);
        let stream_names = (1..=self.streams)
            .map(|i| format!("s{i:0width$}"))
            .collect();
        Ok(Resolved {
            regions: self.regions.clone(),
            stream_names,
            video,
            audio,
            td_ms,
            part_ms,
            window: self.window as u64,
            base_start_ms,
            stagger: self.stagger,
            format: self.segment_format,
            media: None,
            auth: self.auth.as_ref().map(OriginAuth::expected),
            program_date_time: self.program_date_time,
        })
    }

    /// Loads `media_dir` (if any) into `cfg` and checks it fits the timeline. Reads files.
    pub(crate) fn load_media(&self, cfg: &mut Resolved) -> Result<(), SimError> {
        let Some(dir) = &self.media_dir else {
            return Ok(());
        };
        let media = MediaLibrary::load(dir, self.segment_format)?;
        if media.segment_ms() != cfg.td_ms {
            return Err(SimError::Config(format!(
                "media in {} has {} ms segments but the target duration is {} ms; make media for it",
                dir.display(),
                media.segment_ms(),
                cfg.td_ms
            )));
        }
        cfg.media = Some(Arc::new(media));
        Ok(())
    }
}

/// `[A-Za-z0-9._-]{1,64}`, not `.` or `..`.
pub(crate) fn is_path_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One video rendition (variant stream) of a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoRendition {
    /// Path segment and fault scope name, e.g. `1080p`.
    pub name: String,
    /// Peak video bandwidth in bit/s (the master adds the audio bandwidth).
    pub bandwidth: u64,
    /// Average video bandwidth in bit/s.
    pub average_bandwidth: u64,
    pub width: u32,
    pub height: u32,
    /// Video codec (RFC 6381), e.g. `avc1.640028`.
    pub codecs: String,
    /// Frame rate in thousandths (30000 = 30.000 fps).
    pub frame_rate_milli: u64,
}

/// One audio rendition of the `aud` group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AudioRendition {
    /// Path segment and fault scope name, e.g. `audio-en`.
    pub name: String,
    pub language: String,
    pub display_name: String,
    pub bandwidth: u64,
    pub codecs: String,
}

const LADDER: &[(&str, u32, u32, u64, &str)] = &[
    ("2160p", 3840, 2160, 16_000_000, "avc1.640033"),
    ("1440p", 2560, 1440, 9_000_000, "avc1.640032"),
    ("1080p", 1920, 1080, 5_000_000, "avc1.640028"),
    ("720p", 1280, 720, 3_000_000, "avc1.64001f"),
    ("540p", 960, 540, 2_000_000, "avc1.64001f"),
    ("480p", 854, 480, 1_400_000, "avc1.64001e"),
    ("360p", 640, 360, 800_000, "avc1.64001e"),
    ("270p", 480, 270, 500_000, "avc1.640015"),
    ("240p", 426, 240, 400_000, "avc1.640015"),
    ("144p", 256, 144, 200_000, "avc1.64000c"),
];

/// Order in which ladder rungs are picked for `--renditions N`.
const PICK_ORDER: &[&str] = &[
    "1080p", "720p", "360p", "540p", "480p", "270p", "1440p", "2160p", "240p", "144p",
];

/// The built-in rendition with this name (`1080p`, `720p`, ...), if any.
pub fn ladder_rung(name: &str) -> Option<VideoRendition> {
    LADDER
        .iter()
        .find(|r| r.0 == name)
        .map(|&(name, width, height, bandwidth, codecs)| VideoRendition {
            name: name.to_string(),
            bandwidth,
            average_bandwidth: bandwidth * 9 / 10,
            width,
            height,
            codecs: codecs.to_string(),
            frame_rate_milli: 30_000,
        })
}

/// The first `n` rungs of the default ladder (1080p, 720p, 360p, 540p, ...), sorted by
/// bandwidth, highest first.
pub fn ladder(n: usize) -> Result<Vec<VideoRendition>, SimError> {
    if !(1..=PICK_ORDER.len()).contains(&n) {
        return Err(SimError::Config(format!(
            "renditions must be 1..={}",
            PICK_ORDER.len()
        )));
    }
    let mut v: Vec<_> = PICK_ORDER[..n]
        .iter()
        .map(|name| ladder_rung(name).expect("rung exists"))
        .collect();
    sort_ladder(&mut v);
    Ok(v)
}

pub(crate) fn sort_ladder(v: &mut [VideoRendition]) {
    v.sort_by(|a, b| {
        b.bandwidth
            .cmp(&a.bandwidth)
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// `n` audio renditions: `audio-en`, `audio-es`, ...
pub fn default_audio(n: usize) -> Vec<AudioRendition> {
    const LANGS: &[(&str, &str)] = &[
        ("en", "English"),
        ("es", "Español"),
        ("fr", "Français"),
        ("de", "Deutsch"),
        ("it", "Italiano"),
        ("pt", "Português"),
        ("ja", "日本語"),
        ("ko", "한국어"),
    ];
    LANGS
        .iter()
        .take(n)
        .map(|(lang, display)| AudioRendition {
            name: format!("audio-{lang}"),
            language: lang.to_string(),
            display_name: display.to_string(),
            bandwidth: 128_000,
            codecs: "mp4a.40.2".into(),
        })
        .collect()
}

/// A video rendition to add: either a ladder name (`"540p"`) or an object whose missing fields
/// come from the ladder rung of the same name, or else from the height.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RenditionSpec {
    Name(String),
    Full {
        name: String,
        #[serde(default)]
        bandwidth: Option<u64>,
        #[serde(default)]
        average_bandwidth: Option<u64>,
        #[serde(default)]
        width: Option<u32>,
        #[serde(default)]
        height: Option<u32>,
        #[serde(default)]
        codecs: Option<String>,
        #[serde(default)]
        frame_rate: Option<f64>,
    },
}

impl RenditionSpec {
    pub fn name(&self) -> &str {
        match self {
            RenditionSpec::Name(n) | RenditionSpec::Full { name: n, .. } => n,
        }
    }

    /// Resolves to a full rendition.
    pub fn to_rendition(&self) -> Result<VideoRendition, SimError> {
        let name = self.name();
        if !is_path_safe(name) || name.starts_with("audio-") {
            return Err(SimError::BadRequest(format!(
                "rendition name {name:?} must be 1-64 of [A-Za-z0-9._-] and not start with audio-"
            )));
        }
        let base = ladder_rung(name).unwrap_or_else(|| {
            // "<height>p" names get a plausible 16:9 rung; anything else a 360p-like one.
            let h: u32 = name
                .strip_suffix('p')
                .and_then(|h| h.parse().ok())
                .filter(|h| (16..=4320).contains(h))
                .unwrap_or(360);
            let w = (h * 16 / 9 + 1) & !1;
            let bw = (u64::from(w) * u64::from(h) * 5 / 2).max(100_000);
            VideoRendition {
                name: name.to_string(),
                bandwidth: bw,
                average_bandwidth: bw * 9 / 10,
                width: w,
                height: h,
                codecs: "avc1.64001f".into(),
                frame_rate_milli: 30_000,
            }
        });
        let RenditionSpec::Full {
            bandwidth,
            average_bandwidth,
            width,
            height,
            codecs,
            frame_rate,
            ..
        } = self
        else {
            return Ok(base);
        };
        let bandwidth = bandwidth.unwrap_or(base.bandwidth);
        let r = VideoRendition {
            name: name.to_string(),
            bandwidth,
            average_bandwidth: average_bandwidth.unwrap_or(bandwidth.min(base.average_bandwidth)),
            width: width.unwrap_or(base.width),
            height: height.unwrap_or(base.height),
            codecs: codecs.clone().unwrap_or(base.codecs),
            frame_rate_milli: frame_rate
                .map_or(base.frame_rate_milli, |f| (f * 1000.0).round() as u64),
        };
        if r.bandwidth == 0 || r.width == 0 || r.height == 0 || r.frame_rate_milli == 0 {
            return Err(SimError::BadRequest(
                "bandwidth, width, height and frame_rate must be > 0".into(),
            ));
        }
        if r.codecs.is_empty() || r.codecs.contains(['"', '\n', '\r']) {
            return Err(SimError::BadRequest("codecs must be a plain string".into()));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ladder() {
        let l = ladder(3).unwrap();
        let names: Vec<_> = l.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["1080p", "720p", "360p"]);
        assert!(ladder(0).is_err());
        assert!(ladder(11).is_err());
        assert_eq!(ladder(10).unwrap().first().unwrap().name, "2160p");
    }

    #[test]
    fn resolve_names_and_starts() {
        let cfg = SimConfig {
            streams: 3,
            target_duration: Duration::from_millis(600),
            ..Default::default()
        };
        let r = cfg.resolve(1_700_000_000_123).unwrap();
        assert_eq!(r.stream_names, ["s0001", "s0002", "s0003"]);
        assert_eq!(r.base_start_ms, 1_700_000_000_000 - 600_000);
        assert_eq!(r.stream_start_ms(0), r.base_start_ms);
        assert_eq!(r.stream_start_ms(1), r.base_start_ms - 200);
        assert_eq!(r.stream_start_ms(2), r.base_start_ms - 400);
        let r = SimConfig {
            streams: 12_345,
            ..Default::default()
        }
        .resolve(0)
        .unwrap();
        assert_eq!(r.stream_names[0], "s00001");
    }

    #[test]
    fn resolve_part_target() {
        let mut cfg = SimConfig {
            ll_hls: true,
            target_duration: Duration::from_millis(500),
            ..Default::default()
        };
        assert_eq!(cfg.resolve(0).unwrap().part_ms, 125);
        cfg.target_duration = Duration::from_secs(4);
        assert_eq!(cfg.resolve(0).unwrap().part_ms, 500);
        cfg.part_target = Some(Duration::from_secs(5));
        assert!(cfg.resolve(0).is_err());
        cfg.ll_hls = false;
        assert_eq!(cfg.resolve(0).unwrap().part_ms, 0);
    }

    #[test]
    fn rendition_specs() {
        let r: RenditionSpec = serde_json::from_str("\"540p\"").unwrap();
        assert_eq!(r.to_rendition().unwrap().width, 960);
        let r: RenditionSpec =
            serde_json::from_str(r#"{"name":"800p","bandwidth":4000000}"#).unwrap();
        let r = r.to_rendition().unwrap();
        assert_eq!((r.width, r.height, r.bandwidth), (1422, 800, 4_000_000));
        let r: RenditionSpec = serde_json::from_str("\"../x\"").unwrap();
        assert!(r.to_rendition().is_err());
        let r: RenditionSpec = serde_json::from_str("\"audio-xx\"").unwrap();
        assert!(r.to_rendition().is_err());
    }
}
