//! The region origin: answers playlist, segment and part requests, with faults applied.
//!
//! URL layout (relative to a region's base URL):
//! - `/{stream}/master.m3u8`
//! - `/{stream}/{rendition}/index.m3u8` (video or audio media playlist; LL-HLS blocking reload
//!   with `?_HLS_msn=M[&_HLS_part=P]`)
//! - `/{stream}/{video}/iframes.m3u8`
//! - `/{stream}/{rendition}/{msn}.ts` and, with LL-HLS, `/{stream}/{rendition}/{msn}.{part}.ts`
//! - `/healthz`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::time::Instant;

use crate::api::{BlockingMisbehaviour, TruncateMode};
use crate::body::SimBody;
use crate::error::Refused;
use crate::faults::{BodyFault, Effect, Resource};
use crate::hls::{MediaKind, SEGMENT_BODY, Timeline, render_media_shaped};
use crate::media::{SegmentFormat, Track};
use crate::state::{RenditionKind, Shared, Stream, now_ms};

const PLAYLIST_TYPE: HeaderValue = HeaderValue::from_static("application/vnd.apple.mpegurl");
const SEGMENT_TYPE: HeaderValue = HeaderValue::from_static("video/mp2t");
const MP4_VIDEO_TYPE: HeaderValue = HeaderValue::from_static("video/mp4");
const MP4_AUDIO_TYPE: HeaderValue = HeaderValue::from_static("audio/mp4");
const TEXT_TYPE: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
const IMMUTABLE: HeaderValue = HeaderValue::from_static("max-age=3600");
const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    Master,
    Media(MediaKind),
    Segment(u64),
    Part(u64, u64),
    /// The fMP4 init segment `init.mp4`.
    Init,
    Health,
    NotFound,
}

/// A parsed request target.
struct Target<'a> {
    stream: Option<usize>,
    rendition: Option<&'a str>,
    what: What,
}

impl Target<'_> {
    fn resource(&self) -> Resource {
        match self.what {
            What::Master => Resource::Master,
            What::Media(_) => Resource::Media,
            What::Segment(_) | What::Part(..) | What::Init => Resource::Segment,
            What::Health | What::NotFound => Resource::Other,
        }
    }
}

fn parse_target<'a>(shared: &Shared, path: &'a str) -> Target<'a> {
    let mut t = Target {
        stream: None,
        rendition: None,
        what: What::NotFound,
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    if path == "healthz" {
        t.what = What::Health;
        return t;
    }
    let mut parts = path.split('/');
    let (Some(stream), Some(second)) = (parts.next(), parts.next()) else {
        return t;
    };
    t.stream = shared.stream_index.get(stream).copied();
    if t.stream.is_none() {
        return t;
    }
    let third = parts.next();
    if parts.next().is_some() {
        return t;
    }
    let Some(file) = third else {
        if second == "master.m3u8" {
            t.what = What::Master;
        }
        return t;
    };
    t.rendition = Some(second);
    t.what = match file {
        "index.m3u8" => What::Media(MediaKind::Media),
        "iframes.m3u8" => What::Media(MediaKind::IFrames),
        "init.mp4" => What::Init,
        f if f.ends_with(".m4s") && shared.shape.format == SegmentFormat::Fmp4 => f[..f.len() - 4]
            .parse()
            .map_or(What::NotFound, What::Segment),
        _ if shared.shape.format == SegmentFormat::Fmp4 => What::NotFound,
        f => match f.strip_suffix(".ts").map(|s| s.split_once('.')) {
            Some(Some((n, p))) => match (n.parse(), p.parse()) {
                (Ok(n), Ok(p)) => What::Part(n, p),
                _ => What::NotFound,
            },
            Some(None) => f[..f.len() - 3]
                .parse()
                .map_or(What::NotFound, What::Segment),
            None => What::NotFound,
        },
    };
    t
}

/// `_HLS_msn` / `_HLS_part` of a blocking playlist reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blocking {
    None,
    Wait { msn: u64, part: Option<u64> },
    Invalid,
}

fn parse_blocking(query: Option<&str>) -> Blocking {
    let Some(q) = query else {
        return Blocking::None;
    };
    let mut msn = None;
    let mut part = None;
    for kv in q.split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "_HLS_msn" => match v.parse() {
                Ok(n) => msn = Some(n),
                Err(_) => return Blocking::Invalid,
            },
            "_HLS_part" => match v.parse() {
                Ok(n) => part = Some(n),
                Err(_) => return Blocking::Invalid,
            },
            _ => {}
        }
    }
    match (msn, part) {
        (Some(msn), part) => Blocking::Wait { msn, part },
        (None, Some(_)) => Blocking::Invalid,
        (None, None) => Blocking::None,
    }
}

fn response(
    status: StatusCode,
    ctype: HeaderValue,
    cache: HeaderValue,
    body: SimBody,
) -> Response<SimBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, ctype);
    h.insert(header::CACHE_CONTROL, cache);
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    r
}

fn status_response(status: u16) -> Response<SimBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = status.canonical_reason().unwrap_or("error");
    response(
        status,
        TEXT_TYPE,
        NO_CACHE,
        SimBody::full(format!("{text}\n")),
    )
}

/// Applies the body fault of `eff` (if any) and builds a 200.
fn ok_response(
    body: Bytes,
    ctype: HeaderValue,
    cache: HeaderValue,
    eff: &Effect,
) -> Response<SimBody> {
    let body = match eff.long_line {
        Some(n) if body.starts_with(b"#EXTM3U") => with_long_line(&body, n),
        _ => body,
    };
    let body = match eff.body {
        None => SimBody::full(body),
        Some(BodyFault::Garbage(n)) => SimBody::garbage(n),
        Some(BodyFault::Oversize(n, false)) => SimBody::padded(body, n),
        Some(BodyFault::Oversize(n, true)) => SimBody::padded_chunked(body, n),
        Some(BodyFault::Truncate(TruncateMode::Short)) => {
            let half = body.len() / 2;
            SimBody::full(body.slice(..half))
        }
        Some(BodyFault::Truncate(TruncateMode::Abort)) => {
            let half = body.len() / 2;
            SimBody::aborted(body.slice(..half), (body.len() - half) as u64)
        }
    };
    let ctype = if matches!(eff.body, Some(BodyFault::Garbage(_))) {
        HeaderValue::from_static("application/octet-stream")
    } else {
        ctype
    };
    response(StatusCode::OK, ctype, cache, body)
}

/// `body` with a line of `n` bytes (an unknown tag) after its first line.
fn with_long_line(body: &[u8], n: u64) -> Bytes {
    const TAG: &[u8] = b"#EXT-X-SIM-LONG-LINE:";
    let n = usize::try_from(n).unwrap_or(usize::MAX).max(TAG.len());
    let split = body
        .iter()
        .position(|b| *b == b'\n')
        .map_or(body.len(), |i| i + 1);
    let mut out = Vec::with_capacity(body.len() + n + 1);
    out.extend_from_slice(&body[..split]);
    if split == body.len() && !body.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(TAG);
    out.resize(out.len() + n - TAG.len(), b'x');
    out.push(b'\n');
    out.extend_from_slice(&body[split..]);
    Bytes::from(out)
}

/// The master `master` with `n` further variants (`extra{N}/index.m3u8`).
fn with_extra_variants(master: &[u8], n: u64) -> Bytes {
    use std::fmt::Write as _;
    let mut out = String::from_utf8_lossy(master).into_owned();
    for i in 0..n {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION=640x360\nextra{i}/index.m3u8\n",
            100_000 + i
        );
    }
    Bytes::from(out)
}

/// Outcome of waiting for content to become visible.
enum Waited {
    Ready(Effect, u64),
    Respond(Response<SimBody>),
    Refuse,
    TimedOut,
}

/// Handles one request of region `region`.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    region: usize,
    abort: Arc<AtomicBool>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, Refused> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = status_response(405);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let target = parse_target(&shared, req.uri().path());
    if let Some((name, value)) = &shared.cfg.auth
        && target.what != What::Health
        && req
            .headers()
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            != Some(value.as_str())
    {
        shared.auth_rejected.fetch_add(1, Ordering::Relaxed);
        let mut r = status_response(401);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"hls-sim\""),
        );
        return Ok(r);
    }
    let resource = target.resource();
    let claims = shared.claim(
        region,
        target.stream,
        target.rendition,
        resource,
        req.uri().path(),
    );
    let scope = |shared: &Shared| {
        shared.effect_claimed(region, target.stream, target.rendition, resource, &claims)
    };

    // Connection-level faults first: refuse, hang, slow.
    let mut eff = scope(&shared);
    loop {
        if eff.refuse {
            abort.store(true, Ordering::Relaxed);
            return Err(Refused);
        }
        let Some(token) = eff.hang.take() else { break };
        tokio::select! {
            _ = token.cancelled() => {}
            _ = shared.shutdown.cancelled() => return Ok(status_response(503)),
        }
        eff = scope(&shared);
    }
    if eff.delay_ms > 0 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(eff.delay_ms)) => {}
            _ = shared.shutdown.cancelled() => return Ok(status_response(503)),
        }
    }

    // Content. The clock is read before the fault snapshot (see `Shared::effect`).
    let now = now_ms();
    let eff = scope(&shared);
    if eff.refuse {
        abort.store(true, Ordering::Relaxed);
        return Err(Refused);
    }
    if let Some(s) = eff.status {
        return Ok(status_response(s));
    }
    let stream = match (target.what, target.stream) {
        (What::Health, _) => {
            return Ok(ok_response(
                Bytes::from_static(b"ok\n"),
                TEXT_TYPE,
                NO_CACHE,
                &eff,
            ));
        }
        (What::NotFound, _) | (_, None) => return Ok(status_response(404)),
        (_, Some(s)) => &shared.streams[s],
    };
    let renditions = stream.renditions();
    if target.what == What::Master {
        let master = match eff.extra_variants {
            Some(n) => with_extra_variants(&renditions.master, n),
            None => renditions.master.clone(),
        };
        return Ok(ok_response(master, PLAYLIST_TYPE, NO_CACHE, &eff));
    }
    let rendition = target.rendition.unwrap_or_default();
    let Some(kind) = shared.rendition_kind(&renditions, rendition) else {
        return Ok(status_response(404));
    };
    drop(renditions);
    let tl = stream.timeline;
    let (now, eff) = crate::realism::reshape(now, eff, &tl, target.stream.unwrap_or(0));
    match target.what {
        What::Media(media_kind) => {
            if media_kind == MediaKind::IFrames && kind != RenditionKind::Video {
                return Ok(status_response(404));
            }
            let mut blocking = if tl.ll() && media_kind == MediaKind::Media {
                parse_blocking(req.uri().query())
            } else {
                Blocking::None
            };
            // A `blocking_reload` fault: the server mishandles blocking requests.
            if let (Blocking::Wait { .. }, Some((mode, healed))) = (blocking, &eff.blocking) {
                match mode {
                    BlockingMisbehaviour::Ignore => blocking = Blocking::None,
                    BlockingMisbehaviour::Error => return Ok(status_response(400)),
                    BlockingMisbehaviour::Hang => {
                        tokio::select! {
                            _ = healed.cancelled() => {}
                            _ = shared.shutdown.cancelled() => return Ok(status_response(503)),
                        }
                        return Ok(status_response(503));
                    }
                }
            }
            let (eff, now) = match blocking {
                Blocking::None => (eff, now),
                Blocking::Invalid => return Ok(status_response(400)),
                Blocking::Wait { msn, part } => {
                    if part.is_some_and(|p| p >= tl.parts_per_segment()) {
                        return Ok(status_response(400));
                    }
                    // Per RFC 8216bis 6.2.5.2: too far ahead of the playlist is a 400.
                    let snap = tl.snapshot(eff.view_time(now));
                    let offset = eff.seq_offset.min(snap.first);
                    if msn + offset > snap.current + 2 {
                        return Ok(status_response(400));
                    }
                    let need = Need { msn, part };
                    match wait_visible(&shared, region, &target, stream, need, 3 * tl.td_ms).await {
                        Waited::Ready(e, n) => (e, n),
                        Waited::Respond(r) => return Ok(r),
                        Waited::Refuse => {
                            abort.store(true, Ordering::Relaxed);
                            return Err(Refused);
                        }
                        Waited::TimedOut => return Ok(status_response(503)),
                    }
                }
            };
            // A `long_window` fault: a DVR window, as an EVENT playlist.
            let tl = match eff.window {
                Some(window) => Timeline { window, ..tl },
                None => tl,
            };
            let mut out = String::with_capacity(playlist_capacity(&tl));
            render_media_shaped(
                &mut out,
                &tl,
                media_kind,
                eff.view_time(now),
                eff.seq_offset,
                &shared.shape,
            );
            if eff.window.is_some()
                && let Some(at) = out.find('\n')
            {
                out.insert_str(at + 1, "#EXT-X-PLAYLIST-TYPE:EVENT\n");
            }
            Ok(ok_response(Bytes::from(out), PLAYLIST_TYPE, NO_CACHE, &eff))
        }
        What::Segment(msn) => {
            let view = eff.view_time(now);
            let wall = msn + eff.seq_offset.min(tl.snapshot(view).first);
            if tl.segment_published_ms(wall) > view {
                return Ok(status_response(404));
            }
            Ok(match &shared.cfg.media {
                None => segment_response(&eff),
                Some(media) => {
                    let track = track_of(kind);
                    let ctype = media_type(media.format(), track);
                    ok_response(media.segment(track, msn), ctype, IMMUTABLE.clone(), &eff)
                }
            })
        }
        What::Init => match &shared.cfg.media {
            Some(media) if media.format() == SegmentFormat::Fmp4 => {
                let track = track_of(kind);
                let init = media.init(track).unwrap_or_default();
                let ctype = media_type(media.format(), track);
                Ok(ok_response(init, ctype, IMMUTABLE, &eff))
            }
            _ => Ok(status_response(404)),
        },
        What::Part(msn, p) => {
            if !tl.ll() || p >= tl.parts_per_segment() {
                return Ok(status_response(404));
            }
            let view = eff.view_time(now);
            let wall = msn + eff.seq_offset.min(tl.snapshot(view).first);
            let published = tl.part_published_ms(wall, p);
            if published <= view {
                return Ok(segment_response(&eff));
            }
            // A part not out yet (e.g. the preload hint) is held until it is, if it is due
            // within a target duration.
            if published.saturating_sub(now) > tl.td_ms {
                return Ok(status_response(404));
            }
            let need = Need { msn, part: Some(p) };
            match wait_visible(&shared, region, &target, stream, need, 3 * tl.td_ms).await {
                Waited::Ready(e, _) => Ok(segment_response(&e)),
                Waited::Respond(r) => Ok(r),
                Waited::Refuse => {
                    abort.store(true, Ordering::Relaxed);
                    Err(Refused)
                }
                Waited::TimedOut => Ok(status_response(404)),
            }
        }
        What::Master | What::Health | What::NotFound => Ok(status_response(404)),
    }
}

fn track_of(kind: RenditionKind) -> Track {
    match kind {
        RenditionKind::Video => Track::Video,
        RenditionKind::Audio => Track::Audio,
    }
}

fn media_type(format: SegmentFormat, track: Track) -> HeaderValue {
    match (format, track) {
        (SegmentFormat::Ts, _) => SEGMENT_TYPE,
        (SegmentFormat::Fmp4, Track::Video) => MP4_VIDEO_TYPE,
        (SegmentFormat::Fmp4, Track::Audio) => MP4_AUDIO_TYPE,
    }
}

fn segment_response(eff: &Effect) -> Response<SimBody> {
    ok_response(
        Bytes::from_static(&SEGMENT_BODY),
        SEGMENT_TYPE,
        IMMUTABLE,
        eff,
    )
}

fn playlist_capacity(tl: &Timeline) -> usize {
    let parts = if tl.ll() {
        2 * tl.parts_per_segment() as usize * 48 + 64
    } else {
        0
    };
    256 + tl.window as usize * 40 + parts
}

/// A segment (`part` = None) or part to wait for, in served numbering.
#[derive(Clone, Copy)]
struct Need {
    msn: u64,
    part: Option<u64>,
}

/// Waits until `need` is visible in the stream as faults shape it, for at most `limit_ms`.
/// Re-checks on every fault change; sleeps exactly until the publication instant otherwise.
async fn wait_visible(
    shared: &Shared,
    region: usize,
    target: &Target<'_>,
    stream: &Stream,
    need: Need,
    limit_ms: u64,
) -> Waited {
    let tl = &stream.timeline;
    let deadline = Instant::now() + Duration::from_millis(limit_ms);
    loop {
        let notified = shared.fault_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = now_ms();
        let eff = shared.effect(region, target.stream, target.rendition, target.resource());
        if eff.refuse {
            return Waited::Refuse;
        }
        if let Some(s) = eff.status {
            return Waited::Respond(status_response(s));
        }
        let view = eff.view_time(now);
        let wall = need.msn + eff.seq_offset.min(tl.snapshot(view).first);
        let available_at = match need.part {
            None => tl.segment_published_ms(wall),
            Some(p) => tl.part_published_ms(wall, p),
        };
        if available_at <= view {
            return Waited::Ready(eff, now);
        }
        let now_i = Instant::now();
        if now_i >= deadline {
            return Waited::TimedOut;
        }
        let wake = if eff.freeze_at.is_some() {
            deadline
        } else {
            // At least 1 ms, so a wall clock lagging the monotonic one cannot spin.
            let ms = (available_at - now).max(1);
            deadline.min(now_i + Duration::from_millis(ms))
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = &mut notified => {}
            _ = shared.shutdown.cancelled() => return Waited::Respond(status_response(503)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_query() {
        assert_eq!(parse_blocking(None), Blocking::None);
        assert_eq!(parse_blocking(Some("a=b")), Blocking::None);
        assert_eq!(
            parse_blocking(Some("_HLS_msn=12&_HLS_part=3")),
            Blocking::Wait {
                msn: 12,
                part: Some(3)
            }
        );
        assert_eq!(
            parse_blocking(Some("_HLS_msn=12")),
            Blocking::Wait {
                msn: 12,
                part: None
            }
        );
        assert_eq!(parse_blocking(Some("_HLS_part=1")), Blocking::Invalid);
        assert_eq!(parse_blocking(Some("_HLS_msn=x")), Blocking::Invalid);
    }
}
