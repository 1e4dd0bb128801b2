//! Pure HLS timeline math and playlist rendering: no I/O, no clock.
//!
//! Every function takes the time it renders for (`t_ms`, unix milliseconds), so a playlist is a
//! pure function of (stream timeline, time, fault state). Segment `N` of a stream covers
//! `[start + N*TD, start + (N+1)*TD)` and is *published* (appears in the media playlist) at
//! `start + (N+1)*TD`. With LL-HLS, part `P` of segment `N` covers
//! `[start + N*TD + P*PT, start + N*TD + min((P+1)*PT, TD))` and is published at its end.

use std::fmt::Write as _;

use crate::config::{AudioRendition, VideoRendition};
use crate::media::SegmentFormat;

/// The timeline shared by every rendition of one stream (in every region).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// Unix ms when segment 0 started.
    pub start_ms: u64,
    /// Segment duration (the configured target duration) in ms; > 0.
    pub td_ms: u64,
    /// LL-HLS part target in ms; 0 when LL-HLS is off.
    pub part_ms: u64,
    /// Number of complete segments listed in a media playlist; >= 1.
    pub window: u64,
}

/// What a media playlist shows at one instant, in wall-clock segment indices (before any
/// media-sequence offset from a `reset` fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// First listed complete segment.
    pub first: u64,
    /// Last listed complete segment, or `None` when no segment is complete yet.
    pub last: Option<u64>,
    /// Segment in progress at that instant.
    pub current: u64,
    /// Number of parts of `current` already published (LL-HLS only, else 0).
    pub parts_done: u64,
}

impl Timeline {
    /// Whether LL-HLS parts are produced.
    pub fn ll(&self) -> bool {
        self.part_ms > 0
    }

    /// Index of the segment in progress at `t_ms` (0 before the stream starts).
    pub fn current_segment(&self, t_ms: u64) -> u64 {
        t_ms.saturating_sub(self.start_ms) / self.td_ms
    }

    /// Index of the last complete segment at `t_ms`.
    pub fn last_complete(&self, t_ms: u64) -> Option<u64> {
        self.current_segment(t_ms)
            .checked_sub(1)
            .filter(|_| t_ms >= self.start_ms)
    }

    /// Unix ms when segment `n` starts.
    pub fn segment_start_ms(&self, n: u64) -> u64 {
        self.start_ms + n * self.td_ms
    }

    /// Unix ms when segment `n` is complete and appears in the playlist.
    pub fn segment_published_ms(&self, n: u64) -> u64 {
        self.start_ms + (n + 1) * self.td_ms
    }

    /// Parts per segment (the last part may be shorter when TD is not a multiple of PT).
    pub fn parts_per_segment(&self) -> u64 {
        if self.part_ms == 0 {
            0
        } else {
            self.td_ms.div_ceil(self.part_ms)
        }
    }

    /// Duration of part `p` in ms.
    pub fn part_duration_ms(&self, p: u64) -> u64 {
        self.part_ms
            .min(self.td_ms.saturating_sub(p * self.part_ms))
    }

    /// Unix ms when part `p` of segment `n` is complete.
    pub fn part_published_ms(&self, n: u64, p: u64) -> u64 {
        self.segment_start_ms(n) + ((p + 1) * self.part_ms).min(self.td_ms)
    }

    /// Number of parts of segment `n` published at `t_ms` (all of them once `n` is complete).
    pub fn parts_done(&self, n: u64, t_ms: u64) -> u64 {
        if self.part_ms == 0 {
            return 0;
        }
        let seg_start = self.segment_start_ms(n);
        if t_ms < seg_start {
            return 0;
        }
        let elapsed = t_ms - seg_start;
        if elapsed >= self.td_ms {
            self.parts_per_segment()
        } else {
            elapsed / self.part_ms
        }
    }

    /// What a media playlist shows at `t_ms`.
    pub fn snapshot(&self, t_ms: u64) -> Snapshot {
        let current = self.current_segment(t_ms);
        let last = self.last_complete(t_ms);
        let first = last.map_or(0, |l| l.saturating_sub(self.window - 1));
        let parts_done = if self.ll() && t_ms >= self.start_ms {
            self.parts_done(current, t_ms)
        } else {
            0
        };
        Snapshot {
            first,
            last,
            current,
            parts_done,
        }
    }

    /// Unix ms when the newest thing visible in the snapshot at `t_ms` was published: the last
    /// complete segment, or with LL-HLS the last published part.
    pub fn last_published_ms(&self, t_ms: u64) -> (Option<u64>, Option<u64>) {
        let s = self.snapshot(t_ms);
        let seg = s.last.map(|n| self.segment_published_ms(n));
        let part = if self.ll() {
            if s.parts_done > 0 {
                Some(self.part_published_ms(s.current, s.parts_done - 1))
            } else {
                seg
            }
        } else {
            None
        };
        (seg, part)
    }

    /// `EXT-X-TARGETDURATION`: the segment duration rounded to the nearest integer, at least 1.
    pub fn target_duration_tag(&self) -> u64 {
        ((self.td_ms + 500) / 1000).max(1)
    }
}

/// Which media playlist of a rendition is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    /// A video or audio media playlist (`index.m3u8`).
    Media,
    /// An I-frame playlist (`iframes.m3u8`): one I-frame per segment, byte range into the segment.
    IFrames,
}

/// Size of every simulated segment or part body: one MPEG-TS null packet.
pub const SEGMENT_BYTES: usize = 188;

/// Body of every segment and part: one MPEG-TS null packet (sync byte 0x47, PID 0x1FFF).
pub static SEGMENT_BODY: [u8; SEGMENT_BYTES] = {
    let mut b = [0xFFu8; SEGMENT_BYTES];
    b[0] = 0x47;
    b[1] = 0x1F;
    b[2] = 0xFF;
    b[3] = 0x10;
    b
};

/// Writes `ms` as seconds with millisecond precision, e.g. `6.000`.
pub fn write_secs(out: &mut String, ms: u64) {
    let _ = write!(out, "{}.{:03}", ms / 1000, ms % 1000);
}

/// Writes a unix ms time as an ISO 8601 UTC date-time with milliseconds
/// (`2025-01-31T12:00:00.000Z`).
pub fn write_pdt(out: &mut String, unix_ms: u64) {
    let secs = unix_ms / 1000;
    let ms = unix_ms % 1000;
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// What was rendered, for callers that need the served numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// `EXT-X-MEDIA-SEQUENCE` as served (after the reset offset).
    pub media_sequence: u64,
    /// Media sequence number of the last complete segment as served, if any.
    pub last_msn: Option<u64>,
    /// The reset offset actually applied (clamped so sequence numbers never go below 0).
    pub offset: u64,
}

/// How segments are named and addressed in media playlists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentShape {
    /// `N.ts`, or `N.m4s` after `#EXT-X-MAP:URI="init.mp4"`.
    pub format: SegmentFormat,
    /// Length of the `EXT-X-BYTERANGE` (from offset 0) of each I-frame playlist entry.
    pub iframe_bytes: u64,
    /// Date the first listed segment with `EXT-X-PROGRAM-DATE-TIME`.
    pub program_date_time: bool,
}

impl Default for SegmentShape {
    /// The placeholder segments: `N.ts`, I-frames `188@0`.
    fn default() -> Self {
        Self {
            format: SegmentFormat::Ts,
            iframe_bytes: SEGMENT_BYTES as u64,
            program_date_time: true,
        }
    }
}

/// Renders a media (or I-frame) playlist as it is at `t_ms`, with media sequence numbers
/// lowered by `seq_offset` (a `reset` fault; clamped at 0). Appends to `out`. Segments are
/// shaped as the placeholder ones (`N.ts`); see [`render_media_shaped`].
pub fn render_media(
    out: &mut String,
    tl: &Timeline,
    kind: MediaKind,
    t_ms: u64,
    seq_offset: u64,
) -> Rendered {
    render_media_shaped(out, tl, kind, t_ms, seq_offset, &SegmentShape::default())
}

/// [`render_media`] with segments named and addressed as `shape` says.
pub fn render_media_shaped(
    out: &mut String,
    tl: &Timeline,
    kind: MediaKind,
    t_ms: u64,
    seq_offset: u64,
    shape: &SegmentShape,
) -> Rendered {
    let ext = shape.format.extension();
    let snap = tl.snapshot(t_ms);
    let offset = seq_offset.min(snap.first);
    let ll = tl.ll() && kind == MediaKind::Media;
    out.push_str("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:");
    let _ = writeln!(out, "{}", tl.target_duration_tag());
    if ll {
        out.push_str("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=");
        write_secs(out, 3 * tl.part_ms);
        out.push_str("\n#EXT-X-PART-INF:PART-TARGET=");
        write_secs(out, tl.part_ms);
        out.push('\n');
    }
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", snap.first - offset);
    if kind == MediaKind::IFrames {
        out.push_str("#EXT-X-I-FRAMES-ONLY\n");
    }
    if shape.format == SegmentFormat::Fmp4 {
        out.push_str("#EXT-X-MAP:URI=\"init.mp4\"\n");
    }
    let Some(last) = snap.last else {
        return Rendered {
            media_sequence: snap.first - offset,
            last_msn: None,
            offset,
        };
    };
    if shape.program_date_time {
        out.push_str("#EXT-X-PROGRAM-DATE-TIME:");
        write_pdt(out, tl.segment_start_ms(snap.first));
        out.push('\n');
    }
    // Parts are listed for the last complete segment and the one in progress.
    let parts_from = if ll { last } else { u64::MAX };
    for n in snap.first..=last {
        let msn = n - offset;
        if n >= parts_from {
            write_parts(out, tl, msn, tl.parts_per_segment());
        }
        out.push_str("#EXTINF:");
        write_secs(out, tl.td_ms);
        out.push_str(",\n");
        if kind == MediaKind::IFrames {
            let _ = writeln!(out, "#EXT-X-BYTERANGE:{}@0", shape.iframe_bytes);
        }
        let _ = writeln!(out, "{msn}.{ext}");
    }
    if ll {
        let msn = snap.current - offset;
        write_parts(out, tl, msn, snap.parts_done);
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{msn}.{}.ts\"",
            snap.parts_done
        );
    }
    Rendered {
        media_sequence: snap.first - offset,
        last_msn: Some(last - offset),
        offset,
    }
}

fn write_parts(out: &mut String, tl: &Timeline, msn: u64, count: u64) {
    for p in 0..count {
        out.push_str("#EXT-X-PART:DURATION=");
        write_secs(out, tl.part_duration_ms(p));
        let _ = write!(out, ",URI=\"{msn}.{p}.ts\"");
        if p == 0 {
            out.push_str(",INDEPENDENT=YES");
        }
        out.push('\n');
    }
}

/// Renders a master playlist with relative URIs: the audio group `aud`, one
/// `EXT-X-STREAM-INF` per video rendition (highest bandwidth first, as given), and one
/// `EXT-X-I-FRAME-STREAM-INF` per video rendition.
pub fn render_master(out: &mut String, video: &[VideoRendition], audio: &[AudioRendition]) {
    out.push_str("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (i, a) in audio.iter().enumerate() {
        let default = if i == 0 { "YES" } else { "NO" };
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"{}\",LANGUAGE=\"{}\",DEFAULT={default},AUTOSELECT=YES,CHANNELS=\"2\",URI=\"{}/index.m3u8\"",
            a.display_name, a.language, a.name
        );
    }
    let audio_bw = audio.iter().map(|a| a.bandwidth).max().unwrap_or(0);
    let audio_codec = audio.first().map(|a| a.codecs.as_str());
    for v in video {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{},CODECS=\"{}",
            v.bandwidth + audio_bw,
            v.average_bandwidth + audio_bw,
            v.width,
            v.height,
            v.codecs
        );
        if let Some(ac) = audio_codec {
            let _ = write!(out, ",{ac}");
        }
        out.push_str("\",FRAME-RATE=");
        write_secs(out, v.frame_rate_milli);
        if !audio.is_empty() {
            out.push_str(",AUDIO=\"aud\"");
        }
        let _ = writeln!(out, "\n{}/index.m3u8", v.name);
    }
    for v in video {
        let _ = writeln!(
            out,
            "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={},RESOLUTION={}x{},CODECS=\"{}\",URI=\"{}/iframes.m3u8\"",
            (v.bandwidth / 10).max(1),
            v.width,
            v.height,
            v.codecs,
            v.name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{default_audio, ladder};

    const START: u64 = 1_700_000_000_000;

    fn tl(td: u64, part: u64) -> Timeline {
        Timeline {
            start_ms: START,
            td_ms: td,
            part_ms: part,
            window: 6,
        }
    }

    fn media(tl: &Timeline, t: u64, off: u64) -> (String, Rendered) {
        let mut s = String::new();
        let r = render_media(&mut s, tl, MediaKind::Media, t, off);
        (s, r)
    }

    fn tag_value<'a>(pl: &'a str, tag: &str) -> Option<&'a str> {
        pl.lines().find_map(|l| l.strip_prefix(tag))
    }

    fn segment_uris(pl: &str) -> Vec<&str> {
        pl.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect()
    }

    #[test]
    fn sequence_math() {
        let t = tl(6000, 0);
        assert_eq!(t.current_segment(START), 0);
        assert_eq!(t.last_complete(START), None);
        assert_eq!(t.last_complete(START + 5999), None);
        assert_eq!(t.last_complete(START + 6000), Some(0));
        assert_eq!(t.last_complete(START + 11_999), Some(0));
        assert_eq!(t.last_complete(START + 12_000), Some(1));
        assert_eq!(t.last_complete(START - 1), None);
        assert_eq!(t.segment_published_ms(0), START + 6000);
        assert_eq!(t.segment_start_ms(3), START + 18_000);
        assert_eq!(t.target_duration_tag(), 6);
        assert_eq!(tl(500, 0).target_duration_tag(), 1);
        assert_eq!(tl(2400, 0).target_duration_tag(), 2);
        assert_eq!(tl(2500, 0).target_duration_tag(), 3);
    }

    #[test]
    fn window_and_tags() {
        let t = tl(6000, 0);
        // 100 segments complete, 3 s into segment 100.
        let now = START + 100 * 6000 + 3000;
        let (pl, r) = media(&t, now, 0);
        assert!(pl.starts_with("#EXTM3U\n"));
        assert_eq!(tag_value(&pl, "#EXT-X-TARGETDURATION:"), Some("6"));
        assert_eq!(tag_value(&pl, "#EXT-X-MEDIA-SEQUENCE:"), Some("94"));
        assert_eq!(r.media_sequence, 94);
        assert_eq!(r.last_msn, Some(99));
        assert_eq!(
            segment_uris(&pl),
            ["94.ts", "95.ts", "96.ts", "97.ts", "98.ts", "99.ts"]
        );
        assert_eq!(pl.matches("#EXTINF:6.000,\n").count(), 6);
        // PDT of the first listed segment: start + 94 * 6 s.
        let mut pdt = String::new();
        write_pdt(&mut pdt, START + 94 * 6000);
        assert_eq!(
            tag_value(&pl, "#EXT-X-PROGRAM-DATE-TIME:"),
            Some(pdt.as_str())
        );
        assert!(!pl.contains("EXT-X-PART"));
        // Same playlist until the next segment completes, then it advances by one.
        assert_eq!(media(&t, START + 101 * 6000 - 1, 0).0, pl);
        let (next, _) = media(&t, START + 101 * 6000, 0);
        assert_eq!(tag_value(&next, "#EXT-X-MEDIA-SEQUENCE:"), Some("95"));
        assert_eq!(segment_uris(&next).last(), Some(&"100.ts"));
    }

    #[test]
    fn short_window_at_stream_start() {
        let t = tl(500, 0);
        let (pl, r) = media(&t, START + 1200, 0);
        assert_eq!(segment_uris(&pl), ["0.ts", "1.ts"]);
        assert_eq!(r.media_sequence, 0);
        assert!(pl.contains("#EXTINF:0.500,\n"));
        let (empty, r) = media(&t, START + 10, 0);
        assert_eq!(r.last_msn, None);
        assert!(segment_uris(&empty).is_empty());
        assert!(empty.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
    }

    #[test]
    fn freeze_is_rendering_at_the_freeze_time() {
        let t = tl(2000, 0);
        let frozen_at = START + 50 * 2000 + 700;
        let (frozen, _) = media(&t, frozen_at, 0);
        // A frozen playlist is what the stream showed at the freeze instant; its last segment
        // was published at or before that instant.
        let (seg_pub, _) = t.last_published_ms(frozen_at);
        assert_eq!(seg_pub, Some(START + 50 * 2000));
        assert!(seg_pub.unwrap() <= frozen_at);
        let (later, _) = media(&t, frozen_at + 10_000, 0);
        assert_ne!(frozen, later);
        assert_eq!(tag_value(&frozen, "#EXT-X-MEDIA-SEQUENCE:"), Some("44"));
        assert_eq!(tag_value(&later, "#EXT-X-MEDIA-SEQUENCE:"), Some("49"));
    }

    #[test]
    fn reset_lowers_sequence_and_clamps() {
        let t = tl(1000, 0);
        let now = START + 1000 * 1000;
        let (pl, r) = media(&t, now, 994);
        assert_eq!(r.offset, 994);
        assert_eq!(tag_value(&pl, "#EXT-X-MEDIA-SEQUENCE:"), Some("0"));
        assert_eq!(
            segment_uris(&pl),
            ["0.ts", "1.ts", "2.ts", "3.ts", "4.ts", "5.ts"]
        );
        // Offsets larger than the first listed number are clamped to it.
        let (_, r) = media(&t, now, 5000);
        assert_eq!(r.offset, 994);
        assert_eq!(r.media_sequence, 0);
        // And the reset stream keeps advancing.
        let (_, r) = media(&t, now + 3000, 994);
        assert_eq!(r.media_sequence, 3);
    }

    #[test]
    fn ll_hls_parts() {
        let t = tl(2000, 500);
        assert_eq!(t.parts_per_segment(), 4);
        // 10 segments complete, 1.2 s into segment 10: parts 0 and 1 of segment 10 are out.
        let now = START + 10 * 2000 + 1200;
        let s = t.snapshot(now);
        assert_eq!((s.last, s.current, s.parts_done), (Some(9), 10, 2));
        let (pl, _) = media(&t, now, 0);
        assert!(pl.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500\n"));
        assert!(pl.contains("#EXT-X-PART-INF:PART-TARGET=0.500\n"));
        // Parts of the last complete segment, then of the one in progress.
        for p in 0..4 {
            assert!(pl.contains(&format!("URI=\"9.{p}.ts\"")), "{pl}");
        }
        assert!(pl.contains("#EXT-X-PART:DURATION=0.500,URI=\"10.0.ts\",INDEPENDENT=YES\n"));
        assert!(pl.contains("#EXT-X-PART:DURATION=0.500,URI=\"10.1.ts\"\n"));
        assert!(!pl.contains("10.2.ts\"\n#"));
        assert!(pl.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"10.2.ts\"\n"));
        assert!(!pl.contains("URI=\"8.0.ts\""));
        // Publication times.
        assert_eq!(t.part_published_ms(10, 1), START + 10 * 2000 + 1000);
        assert_eq!(
            t.last_published_ms(now),
            (Some(START + 20_000), Some(START + 21_000))
        );
        // At a segment boundary the in-progress segment has no parts yet.
        let s = t.snapshot(START + 11 * 2000);
        assert_eq!((s.last, s.current, s.parts_done), (Some(10), 11, 0));
    }

    #[test]
    fn ll_hls_uneven_parts() {
        // 1.1 s segments with 0.5 s parts: 0.5 + 0.5 + 0.1.
        let t = tl(1100, 500);
        assert_eq!(t.parts_per_segment(), 3);
        assert_eq!(t.part_duration_ms(2), 100);
        assert_eq!(t.part_published_ms(0, 2), START + 1100);
        assert_eq!(t.parts_done(0, START + 1099), 2);
        assert_eq!(t.parts_done(0, START + 1100), 3);
        let (pl, _) = media(&t, START + 5 * 1100 + 10, 0);
        assert!(pl.contains("#EXT-X-PART:DURATION=0.100,URI=\"4.2.ts\"\n"));
    }

    #[test]
    fn iframe_playlist() {
        let t = tl(6000, 500);
        let mut pl = String::new();
        render_media(&mut pl, &t, MediaKind::IFrames, START + 60_000, 0);
        assert!(pl.contains("#EXT-X-I-FRAMES-ONLY\n"));
        assert!(pl.contains("#EXTINF:6.000,\n#EXT-X-BYTERANGE:188@0\n9.ts\n"));
        assert!(!pl.contains("EXT-X-PART"));
    }

    #[test]
    fn program_date_time_can_be_left_out() {
        let t = tl(6000, 0);
        let mut dated = String::new();
        render_media(&mut dated, &t, MediaKind::Media, START + 60_000, 0);
        assert!(dated.contains("#EXT-X-PROGRAM-DATE-TIME:"));
        let mut undated = String::new();
        let shape = SegmentShape {
            program_date_time: false,
            ..SegmentShape::default()
        };
        let r = render_media_shaped(
            &mut undated,
            &t,
            MediaKind::Media,
            START + 60_000,
            0,
            &shape,
        );
        assert!(!undated.contains("PROGRAM-DATE-TIME"), "{undated}");
        assert_eq!(
            undated,
            dated
                .lines()
                .filter(|l| !l.starts_with("#EXT-X-PROGRAM-DATE-TIME:"))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        );
        assert!(r.last_msn.is_some());
    }

    #[test]
    fn pdt_format() {
        let mut s = String::new();
        write_pdt(&mut s, 0);
        assert_eq!(s, "1970-01-01T00:00:00.000Z");
        s.clear();
        write_pdt(&mut s, 1_709_210_096_789); // leap day
        assert_eq!(s, "2024-02-29T12:34:56.789Z");
        s.clear();
        write_pdt(&mut s, 951_782_400_000);
        assert_eq!(s, "2000-02-29T00:00:00.000Z");
        s.clear();
        write_pdt(&mut s, 4_102_444_799_999);
        assert_eq!(s, "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn master_playlist() {
        let video = ladder(3).unwrap();
        let audio = default_audio(1);
        let mut m = String::new();
        render_master(&mut m, &video, &audio);
        assert!(m.starts_with("#EXTM3U\n"));
        assert!(m.contains(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio-en/index.m3u8\"\n"
        ));
        let variants: Vec<_> = m
            .lines()
            .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
            .collect();
        assert_eq!(variants.len(), 3);
        for v in &variants {
            for attr in [
                "BANDWIDTH=",
                "AVERAGE-BANDWIDTH=",
                "RESOLUTION=",
                "CODECS=\"avc1.",
                "FRAME-RATE=30.000",
                "AUDIO=\"aud\"",
            ] {
                assert!(v.contains(attr), "{v} lacks {attr}");
            }
        }
        assert!(m.contains("RESOLUTION=1920x1080"));
        assert!(m.contains("\n1080p/index.m3u8\n720p/") || m.contains("\n1080p/index.m3u8\n"));
        assert_eq!(m.matches("#EXT-X-I-FRAME-STREAM-INF:").count(), 3);
        assert!(m.contains("URI=\"360p/iframes.m3u8\""));
        // Relative URIs only.
        assert!(!m.contains("http"));
    }
}
