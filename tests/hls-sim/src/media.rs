//! Real media for segments: a short clip of `K` segments per track (video, audio), looped forever,
//! with the timestamps of every served copy rewritten from its media sequence number, so a player
//! sees one continuous live stream whose timestamps keep increasing, identical in every region.
//!
//! The clip is made by `tests/player/make-media.sh` (Debian's ffmpeg) into a directory:
//!
//! ```text
//! media.json                    {"version":1,"segment_ms":1000,"segments":8,"source_first_index":8}
//! ts/video/0.ts ... 7.ts        H.264 in MPEG-TS, one keyframe at the start of each segment
//! ts/audio/0.ts ... 7.ts        AAC (ADTS) in MPEG-TS
//! fmp4/video/init.mp4, 0.m4s .. fMP4 (CMAF-like) with an init segment, one track per file
//! fmp4/audio/init.mp4, 0.m4s ..
//! ```
//!
//! Clip file `j` was encoded as segment `source_first_index + j` of a longer encode, so its
//! timestamps are those of that segment. Served segment `N` is file `N mod K` with every timestamp
//! moved by `(N - N mod K - source_first_index)` segment durations: MPEG-TS PES PTS/DTS and PCR
//! (33 bits, wrapping like a real encoder), fMP4 `tfdt` and `sidx` earliest presentation time
//! (clamped at 0). Taking the clip from the middle of a longer encode (the script uses the second
//! of two loops) means the audio frames of the clip tile the loop exactly, so the loop point has
//! no gap or overlap. Continuity counters are not rewritten (players ignore them across segments).

use std::path::Path;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use crate::error::SimError;

/// Container of the served segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SegmentFormat {
    /// MPEG-TS segments `N.ts`.
    #[default]
    Ts,
    /// Fragmented MP4 segments `N.m4s` with an `EXT-X-MAP` init segment `init.mp4`.
    Fmp4,
}

impl SegmentFormat {
    /// Segment file extension (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            SegmentFormat::Ts => "ts",
            SegmentFormat::Fmp4 => "m4s",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            SegmentFormat::Ts => "ts",
            SegmentFormat::Fmp4 => "fmp4",
        }
    }
}

impl std::str::FromStr for SegmentFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ts" => Ok(SegmentFormat::Ts),
            "fmp4" => Ok(SegmentFormat::Fmp4),
            _ => Err(format!("unknown segment format {s:?} (ts or fmp4)")),
        }
    }
}

/// Which track of the clip a rendition serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Track {
    Video,
    Audio,
}

#[derive(Deserialize)]
struct Manifest {
    version: u32,
    segment_ms: u64,
    segments: u64,
    source_first_index: u64,
}

/// Where a timestamp sits in a clip file, and how it is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stamp {
    /// A PES PTS or DTS: 5 bytes, 33 bits at 90 kHz.
    Pes(usize),
    /// An adaptation-field PCR: 6 bytes, 33-bit base at 90 kHz.
    Pcr(usize),
    /// A 32- or 64-bit big-endian count of `timescale` ticks (`tfdt`, `sidx`).
    Ticks {
        pos: usize,
        wide: bool,
        timescale: u64,
    },
}

struct Clip {
    bytes: Bytes,
    stamps: Vec<Stamp>,
}

struct TrackClips {
    init: Option<Bytes>,
    clips: Vec<Clip>,
}

/// A loaded clip: what every video rendition and every audio rendition serves.
pub struct MediaLibrary {
    format: SegmentFormat,
    segment_ms: u64,
    source_first_index: u64,
    video: TrackClips,
    audio: TrackClips,
}

impl std::fmt::Debug for MediaLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaLibrary")
            .field("format", &self.format)
            .field("segment_ms", &self.segment_ms)
            .field("segments", &self.video.clips.len())
            .finish()
    }
}

const TS_PACKET: usize = 188;
const PTS_MOD: i128 = 1 << 33;

impl MediaLibrary {
    /// Loads the clip of `format` from `dir` (see the module doc) and indexes its timestamps.
    pub fn load(dir: &Path, format: SegmentFormat) -> Result<Self, SimError> {
        let bad = |m: String| SimError::Config(format!("media {}: {m}", dir.display()));
        let read = |p: &Path| std::fs::read(p).map_err(|e| bad(format!("{}: {e}", p.display())));
        let manifest: Manifest = serde_json::from_slice(&read(&dir.join("media.json"))?)
            .map_err(|e| bad(format!("media.json: {e}")))?;
        if manifest.version != 1 {
            return Err(bad(format!("media.json version {}", manifest.version)));
        }
        if !(1..=1000).contains(&manifest.segments) || manifest.segment_ms == 0 {
            return Err(bad(
                "media.json: segments must be 1..=1000, segment_ms > 0".into()
            ));
        }
        let load_track = |name: &str| -> Result<TrackClips, SimError> {
            let base = dir.join(format.dir()).join(name);
            let mut timescale = 90_000;
            let init = match format {
                SegmentFormat::Ts => None,
                SegmentFormat::Fmp4 => {
                    let init = read(&base.join("init.mp4"))?;
                    timescale = init_timescale(&init)
                        .ok_or_else(|| bad(format!("{name}/init.mp4: no single mdhd")))?;
                    Some(Bytes::from(init))
                }
            };
            if !(manifest.segment_ms * timescale).is_multiple_of(1000) {
                return Err(bad(format!(
                    "{name}: a segment is not a whole number of ticks at {timescale} Hz"
                )));
            }
            let clips = (0..manifest.segments)
                .map(|j| {
                    let path = base.join(format!("{j}.{}", format.extension()));
                    let bytes = read(&path)?;
                    let stamps = match format {
                        SegmentFormat::Ts => ts_stamps(&bytes),
                        SegmentFormat::Fmp4 => mp4_stamps(&bytes, timescale),
                    }
                    .map_err(|e| bad(format!("{}: {e}", path.display())))?;
                    Ok(Clip {
                        bytes: Bytes::from(bytes),
                        stamps,
                    })
                })
                .collect::<Result<_, SimError>>()?;
            Ok(TrackClips { init, clips })
        };
        Ok(Self {
            format,
            segment_ms: manifest.segment_ms,
            source_first_index: manifest.source_first_index,
            video: load_track("video")?,
            audio: load_track("audio")?,
        })
    }

    pub fn format(&self) -> SegmentFormat {
        self.format
    }

    /// Duration of each clip segment in ms (must equal the simulator's target duration).
    pub fn segment_ms(&self) -> u64 {
        self.segment_ms
    }

    /// Bytes from the start of each MPEG-TS video segment to the end of its first (key) frame,
    /// the largest over the clip: the I-frame playlists' byte range. `None` for fMP4.
    pub fn iframe_bytes(&self) -> Option<u64> {
        if self.format != SegmentFormat::Ts {
            return None;
        }
        self.video
            .clips
            .iter()
            .map(|c| first_frame_end(&c.bytes))
            .max()
            .map(|n| n as u64)
    }

    fn track(&self, track: Track) -> &TrackClips {
        match track {
            Track::Video => &self.video,
            Track::Audio => &self.audio,
        }
    }

    /// The fMP4 init segment of `track` (`None` for MPEG-TS).
    pub fn init(&self, track: Track) -> Option<Bytes> {
        self.track(track).init.clone()
    }

    /// Segment `msn` of `track`: clip file `msn mod K` with its timestamps moved to `msn`.
    pub fn segment(&self, track: Track, msn: u64) -> Bytes {
        let t = self.track(track);
        let k = t.clips.len() as u64;
        let clip = &t.clips[(msn % k) as usize];
        let shift = i128::from(msn - msn % k) - i128::from(self.source_first_index);
        if shift == 0 {
            return clip.bytes.clone();
        }
        let mut out = BytesMut::from(&clip.bytes[..]);
        for s in &clip.stamps {
            match *s {
                Stamp::Pes(pos) => {
                    let v = read_pes_ts(&out[pos..pos + 5]);
                    let d = shift * i128::from(self.segment_ms) * 90;
                    write_pes_ts(&mut out[pos..pos + 5], wrap33(v, d));
                }
                Stamp::Pcr(pos) => {
                    let v = read_pcr_base(&out[pos..pos + 6]);
                    let d = shift * i128::from(self.segment_ms) * 90;
                    write_pcr_base(&mut out[pos..pos + 6], wrap33(v, d));
                }
                Stamp::Ticks {
                    pos,
                    wide,
                    timescale,
                } => {
                    let d = shift * i128::from(self.segment_ms) * i128::from(timescale) / 1000;
                    if wide {
                        let v = u64::from_be_bytes(out[pos..pos + 8].try_into().expect("8"));
                        let n = (i128::from(v) + d).clamp(0, i128::from(u64::MAX)) as u64;
                        out[pos..pos + 8].copy_from_slice(&n.to_be_bytes());
                    } else {
                        let v = u32::from_be_bytes(out[pos..pos + 4].try_into().expect("4"));
                        let n = (i128::from(v) + d).clamp(0, i128::from(u32::MAX)) as u32;
                        out[pos..pos + 4].copy_from_slice(&n.to_be_bytes());
                    }
                }
            }
        }
        out.freeze()
    }
}

fn wrap33(v: u64, d: i128) -> u64 {
    (i128::from(v) + d).rem_euclid(PTS_MOD) as u64
}

fn read_pes_ts(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 0x07) << 30
        | u64::from(b[1]) << 22
        | (u64::from(b[2]) >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4]) >> 1
}

/// Writes a 33-bit PTS/DTS, keeping the 4-bit prefix and the marker bits.
fn write_pes_ts(b: &mut [u8], v: u64) {
    b[0] = (b[0] & 0xF0) | (((v >> 30) as u8 & 0x07) << 1) | 1;
    b[1] = (v >> 22) as u8;
    b[2] = (((v >> 15) as u8) << 1) | 1;
    b[3] = (v >> 7) as u8;
    b[4] = ((v as u8) << 1) | 1;
}

fn read_pcr_base(b: &[u8]) -> u64 {
    u64::from(b[0]) << 25
        | u64::from(b[1]) << 17
        | u64::from(b[2]) << 9
        | u64::from(b[3]) << 1
        | u64::from(b[4]) >> 7
}

/// Writes a PCR's 33-bit base, keeping the reserved bits and the extension.
fn write_pcr_base(b: &mut [u8], v: u64) {
    b[0] = (v >> 25) as u8;
    b[1] = (v >> 17) as u8;
    b[2] = (v >> 9) as u8;
    b[3] = (v >> 1) as u8;
    b[4] = (b[4] & 0x7F) | (((v & 1) as u8) << 7);
}

/// Positions of every PES PTS/DTS and PCR in an MPEG-TS file.
fn ts_stamps(b: &[u8]) -> Result<Vec<Stamp>, String> {
    if b.is_empty() || !b.len().is_multiple_of(TS_PACKET) {
        return Err(format!(
            "{} bytes is not a whole number of TS packets",
            b.len()
        ));
    }
    let mut stamps = Vec::new();
    for (i, p) in b.chunks_exact(TS_PACKET).enumerate() {
        let at = i * TS_PACKET;
        if p[0] != 0x47 {
            return Err(format!("no sync byte at {at}"));
        }
        let pusi = p[1] & 0x40 != 0;
        let afc = (p[3] >> 4) & 0x03;
        let mut payload = 4;
        if afc & 0x02 != 0 {
            let len = usize::from(p[4]);
            if 5 + len > TS_PACKET {
                return Err(format!("adaptation field too long at {at}"));
            }
            if len >= 7 && p[5] & 0x10 != 0 {
                stamps.push(Stamp::Pcr(at + 6));
            }
            payload = 5 + len;
        }
        if afc & 0x01 == 0 || !pusi || payload + 14 > TS_PACKET {
            continue;
        }
        let pes = &p[payload..];
        // Audio (0xC0..=0xDF) and video (0xE0..=0xEF) PES carry the optional header.
        if pes[..3] != [0, 0, 1] || !(0xC0..=0xEF).contains(&pes[3]) {
            continue;
        }
        let flags = pes[7] >> 6;
        if flags & 0x02 != 0 {
            stamps.push(Stamp::Pes(at + payload + 9));
        }
        if flags == 0x03 {
            if payload + 19 > TS_PACKET {
                return Err(format!("PES header cut at {at}"));
            }
            stamps.push(Stamp::Pes(at + payload + 14));
        }
    }
    Ok(stamps)
}

/// Offset of the second video PES start in a TS file (the end of the first frame), or the
/// file's length when there is none.
fn first_frame_end(b: &[u8]) -> usize {
    let mut seen = 0;
    for (i, p) in b.chunks_exact(TS_PACKET).enumerate() {
        let afc = (p[3] >> 4) & 0x03;
        let payload = if afc & 0x02 != 0 {
            5 + usize::from(p[4])
        } else {
            4
        };
        if p[1] & 0x40 == 0 || afc & 0x01 == 0 || payload + 4 > TS_PACKET {
            continue;
        }
        let pes = &p[payload..];
        if pes[..3] == [0, 0, 1] && (0xE0..=0xEF).contains(&pes[3]) {
            seen += 1;
            if seen == 2 {
                return i * TS_PACKET;
            }
        }
    }
    b.len()
}

/// Iterates over the boxes in `b[start..end]`: (type, offset, size, header length).
fn boxes(b: &[u8], start: usize, end: usize) -> Result<Vec<([u8; 4], usize, usize)>, String> {
    let mut out = Vec::new();
    let mut off = start;
    while off + 8 <= end {
        let size = u32::from_be_bytes(b[off..off + 4].try_into().expect("4")) as usize;
        let typ: [u8; 4] = b[off + 4..off + 8].try_into().expect("4");
        let size = match size {
            0 => end - off,
            1 => {
                if off + 16 > end {
                    return Err(format!("box cut at {off}"));
                }
                u64::from_be_bytes(b[off + 8..off + 16].try_into().expect("8")) as usize
            }
            s => s,
        };
        if size < 8 || size > end - off {
            return Err(format!("bad box size {size} at {off}"));
        }
        out.push((typ, off, size));
        off += size;
    }
    Ok(out)
}

/// The timescale of the single track of an fMP4 init segment (its one `mdhd`).
fn init_timescale(b: &[u8]) -> Option<u64> {
    let mut found = Vec::new();
    let mut stack = vec![(0, b.len())];
    while let Some((s, e)) = stack.pop() {
        for (typ, off, size) in boxes(b, s, e).ok()? {
            match &typ {
                b"moov" | b"trak" | b"mdia" => stack.push((off + 8, off + size)),
                b"mdhd" if size >= 32 => {
                    let v = b[off + 8];
                    let at = if v == 1 { off + 28 } else { off + 20 };
                    found.push(u64::from(u32::from_be_bytes(
                        b.get(at..at + 4)?.try_into().ok()?,
                    )));
                }
                _ => {}
            }
        }
    }
    match found[..] {
        [ts] if ts > 0 => Some(ts),
        _ => None,
    }
}

/// Positions of `tfdt` base media decode times and `sidx` earliest presentation times.
fn mp4_stamps(b: &[u8], timescale: u64) -> Result<Vec<Stamp>, String> {
    let mut stamps = Vec::new();
    let mut stack = vec![(0, b.len())];
    while let Some((s, e)) = stack.pop() {
        for (typ, off, size) in boxes(b, s, e)? {
            let wide = b.get(off + 8) == Some(&1);
            match &typ {
                b"moof" | b"traf" => stack.push((off + 8, off + size)),
                b"tfdt" if size >= if wide { 20 } else { 16 } => stamps.push(Stamp::Ticks {
                    pos: off + 12,
                    wide,
                    timescale,
                }),
                b"sidx" if size >= if wide { 28 } else { 24 } => {
                    let ts = u32::from_be_bytes(b[off + 16..off + 20].try_into().expect("4"));
                    stamps.push(Stamp::Ticks {
                        pos: off + 20,
                        wide,
                        timescale: u64::from(ts.max(1)),
                    });
                }
                _ => {}
            }
        }
    }
    if !stamps
        .iter()
        .any(|s| matches!(s, Stamp::Ticks { timescale: t, .. } if *t == timescale))
    {
        return Err("no tfdt".into());
    }
    Ok(stamps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pes_timestamps_round_trip_and_keep_marker_bits() {
        for v in [0u64, 1, 90_000, (1 << 33) - 1, 0x1_2345_6789] {
            let mut b = [0x21u8, 0, 1, 0, 1];
            write_pes_ts(&mut b, v);
            assert_eq!(read_pes_ts(&b), v);
            assert_eq!(b[0] & 0xF1, 0x21, "prefix and marker kept");
            assert_eq!(b[2] & 1, 1);
            assert_eq!(b[4] & 1, 1);
        }
    }

    #[test]
    fn pcr_base_round_trips_and_keeps_extension() {
        let mut b = [0u8, 0, 0, 0, 0x7F, 0xAB];
        write_pcr_base(&mut b, 0x1_FFFF_FFFF);
        assert_eq!(read_pcr_base(&b), 0x1_FFFF_FFFF);
        assert_eq!(b[4] & 0x7F, 0x7F);
        assert_eq!(b[5], 0xAB);
        write_pcr_base(&mut b, 12345);
        assert_eq!(read_pcr_base(&b), 12345);
    }

    #[test]
    fn wraps_like_33_bit_clocks() {
        assert_eq!(wrap33((1 << 33) - 10, 20), 10);
        assert_eq!(wrap33(5, -10), (1 << 33) - 5);
    }

    /// One TS packet holding the start of a video PES with PTS and DTS, and a PCR.
    fn ts_packet(pts: u64, pcr: u64) -> Vec<u8> {
        let mut p = vec![0xFFu8; TS_PACKET];
        p[..4].copy_from_slice(&[0x47, 0x41, 0x00, 0x30]);
        p[4] = 7; // adaptation field length
        p[5] = 0x10; // PCR flag
        write_pcr_base(&mut p[6..12], pcr);
        let pes = 12;
        p[pes..pes + 9].copy_from_slice(&[0, 0, 1, 0xE0, 0, 0, 0x80, 0xC0, 10]);
        p[pes + 9] = 0x30;
        write_pes_ts(&mut p[pes + 9..pes + 14], pts);
        p[pes + 14] = 0x10;
        write_pes_ts(&mut p[pes + 14..pes + 19], pts - 3000);
        p
    }

    fn lib_of(clips: Vec<Vec<u8>>, first: u64) -> MediaLibrary {
        let track = || TrackClips {
            init: None,
            clips: clips
                .iter()
                .map(|c| Clip {
                    bytes: Bytes::from(c.clone()),
                    stamps: ts_stamps(c).unwrap(),
                })
                .collect(),
        };
        MediaLibrary {
            format: SegmentFormat::Ts,
            segment_ms: 1000,
            source_first_index: first,
            video: track(),
            audio: track(),
        }
    }

    #[test]
    fn served_ts_timestamps_follow_the_sequence_number() {
        // A clip of 2 one-second segments encoded as segments 2 and 3 (PTS 1.4 s + n s).
        let base = 126_000;
        let lib = lib_of(
            vec![
                ts_packet(base + 2 * 90_000, base + 2 * 90_000 - 100),
                ts_packet(base + 3 * 90_000, base + 3 * 90_000 - 100),
            ],
            2,
        );
        for msn in [2u64, 3, 4, 5, 1000, 1001, 123_457] {
            let seg = lib.segment(Track::Video, msn);
            let stamps = ts_stamps(&seg).unwrap();
            let [Stamp::Pcr(pcr), Stamp::Pes(pts), Stamp::Pes(dts)] = stamps[..] else {
                panic!("{stamps:?}");
            };
            let want = (base + msn * 90_000) % (1 << 33);
            assert_eq!(read_pes_ts(&seg[pts..pts + 5]), want, "msn {msn}");
            assert_eq!(read_pes_ts(&seg[dts..dts + 5]), want - 3000);
            assert_eq!(read_pcr_base(&seg[pcr..pcr + 6]), want - 100);
        }
        // Before the clip's own numbers the clock wraps, as a 33-bit clock does.
        let seg = lib.segment(Track::Audio, 0);
        let pts = ts_stamps(&seg).unwrap()[1];
        let Stamp::Pes(pos) = pts else { panic!() };
        assert_eq!(read_pes_ts(&seg[pos..pos + 5]), base);
    }

    #[test]
    fn first_frame_ends_at_the_second_video_pes() {
        let mut b = ts_packet(900_000, 899_000);
        b.extend(vec![0x47, 0x01, 0x00, 0x10].into_iter().chain([0xFF; 184]));
        b.extend(ts_packet(903_000, 902_000));
        assert_eq!(first_frame_end(&b), 2 * TS_PACKET);
        assert_eq!(first_frame_end(&b[..2 * TS_PACKET]), 2 * TS_PACKET);
    }

    #[test]
    fn hostile_box_sizes_are_refused() {
        // A 64-bit size that would overflow the end offset.
        let mut b = mp4_box(b"free", &[]);
        b.extend_from_slice(&[0, 0, 0, 1, b'm', b'o', b'o', b'f']);
        b.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(boxes(&b, 0, b.len()).is_err());
        assert!(mp4_stamps(&mp4_box(b"moof", &[0; 4]), 90_000).is_err());
        assert_eq!(init_timescale(&[0, 0, 0, 9, b'm', b'o', b'o', b'v']), None);
    }

    #[test]
    fn ts_parser_refuses_non_ts() {
        assert!(ts_stamps(b"#EXTM3U\n").is_err());
        assert!(ts_stamps(&[0u8; 188]).is_err());
    }

    fn mp4_box(typ: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(typ);
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn served_fmp4_decode_times_follow_the_sequence_number() {
        let ts = 15_360u64;
        let mut mdhd = vec![0u8; 24];
        mdhd[12..16].copy_from_slice(&(ts as u32).to_be_bytes());
        let init = mp4_box(
            b"moov",
            &mp4_box(b"trak", &mp4_box(b"mdia", &mp4_box(b"mdhd", &mdhd))),
        );
        assert_eq!(init_timescale(&init), Some(ts));
        let seg = |n: u64| {
            let mut tfdt = vec![1u8, 0, 0, 0];
            tfdt.extend_from_slice(&(n * ts).to_be_bytes());
            let mut sidx = vec![0u8, 0, 0, 0, 0, 0, 0, 1];
            sidx.extend_from_slice(&(ts as u32).to_be_bytes());
            sidx.extend_from_slice(&((n * ts) as u32).to_be_bytes());
            sidx.extend_from_slice(&[0; 8]);
            let mut b = mp4_box(b"sidx", &sidx);
            b.extend(mp4_box(
                b"moof",
                &mp4_box(b"traf", &mp4_box(b"tfdt", &tfdt)),
            ));
            b
        };
        let clips: Vec<_> = [4u64, 5]
            .iter()
            .map(|&n| {
                let b = seg(n);
                Clip {
                    stamps: mp4_stamps(&b, ts).unwrap(),
                    bytes: Bytes::from(b),
                }
            })
            .collect();
        let track = TrackClips {
            init: Some(Bytes::from(init)),
            clips,
        };
        let lib = MediaLibrary {
            format: SegmentFormat::Fmp4,
            segment_ms: 1000,
            source_first_index: 4,
            video: track,
            audio: TrackClips {
                init: None,
                clips: vec![],
            },
        };
        for msn in [1u64, 4, 5, 6, 7, 1001] {
            let b = lib.segment(Track::Video, msn);
            let stamps = mp4_stamps(&b, ts).unwrap();
            for s in stamps {
                let Stamp::Ticks { pos, wide, .. } = s else {
                    panic!()
                };
                let v = if wide {
                    u64::from_be_bytes(b[pos..pos + 8].try_into().unwrap())
                } else {
                    u64::from(u32::from_be_bytes(b[pos..pos + 4].try_into().unwrap()))
                };
                assert_eq!(v, msn * ts, "msn {msn}");
            }
        }
    }
}
