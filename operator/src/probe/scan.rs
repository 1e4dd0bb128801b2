//! Bounds on what an origin's playlist may hold, checked by one cheap pass over its lines before
//! m3u8-rs parses it, and the tail of a long media playlist, which is all the freshness decision
//! reads.
//!
//! An origin can serve anything. The fetcher bounds the bytes of a body
//! ([`super::fetch::FetchLimits`]); this pass bounds the rest, each with a stale reason of its
//! own: the longest line ([`ParseLimits::max_line_bytes`], `PlaylistLineTooLong`), the segments
//! of a media playlist ([`ParseLimits::max_segments`], `TooManySegments`), its LL-HLS parts
//! ([`ParseLimits::max_parts`], `TooManyParts`) and the entries of a master
//! (`TooManyRenditions`). The pass costs about a tenth of a millisecond per MiB; m3u8-rs costs
//! about a microsecond per byte (12 ms for a 10,800-segment playlist, 75 ms for 80,000), so
//! nothing over a limit is ever handed to it.
//!
//! **The tail.** A long media playlist (a DVR or EVENT window of thousands of segments) changes
//! only at its end, and the decision reads only its header (target duration, media sequence),
//! its segment count, its last segments and the program date-time of its newest segment. From
//! [`TRIM_FROM_SEGMENTS`] segments on, m3u8-rs gets the header with the first segment, the block
//! of the last dated segment (`EXT-X-PROGRAM-DATE-TIME`) and the last [`TAIL_SEGMENTS`]
//! segments; the segments left out are counted by this pass, and their `EXTINF` durations added
//! to the newest segment's date ([`Trim::carry`]). A playlist-level tag (target duration, media
//! sequence, server control, ...) found among the segments left out makes the whole body parsed,
//! so nothing the decision reads is lost. What is left out is checked for the limits above and
//! counted, not parsed: a malformed old segment line does not make a long playlist unparsable.

use super::decision::Failure;
use std::ops::Range;

/// Limits on a playlist's contents (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// Longest line, in bytes (newline excluded).
    pub max_line_bytes: usize,
    /// Most segments in one media playlist.
    pub max_segments: u64,
    /// Most LL-HLS parts (`EXT-X-PART`) in one media playlist.
    pub max_parts: u64,
}

/// Default of [`ParseLimits::max_line_bytes`]: 32 KiB, eight times the longest URI or attribute
/// value the master merge accepts (tokenised URIs, SCTE-35 date ranges).
pub const DEFAULT_MAX_LINE_BYTES: usize = 32 << 10;
/// Default of [`ParseLimits::max_segments`]: 25,000, over 13 hours of 2 s segments (a 6-hour
/// EVENT playlist of 2 s segments lists 10,800).
pub const DEFAULT_MAX_SEGMENTS: u64 = 25_000;
/// Default of [`ParseLimits::max_parts`]: 2,000. RFC 8216bis asks for parts of the last few
/// segments only: 4 segments of 4 s in 0.2 s parts are 80.
pub const DEFAULT_MAX_PARTS: u64 = 2_000;

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_segments: DEFAULT_MAX_SEGMENTS,
            max_parts: DEFAULT_MAX_PARTS,
        }
    }
}

/// Segments at the end of a long media playlist that m3u8-rs parses.
pub const TAIL_SEGMENTS: u64 = 64;
/// Media playlists with at least this many segments are parsed by their tail only.
pub const TRIM_FROM_SEGMENTS: u64 = 256;

/// What the pass found in a media playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaScan {
    /// Segment URI lines.
    pub segments: u64,
    /// `EXT-X-PART` lines.
    pub parts: u64,
    /// How to parse only the tail, when the playlist is long enough and that loses nothing.
    pub trim: Option<Trim>,
}

/// The parts of a long media playlist m3u8-rs parses, and what it does not see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trim {
    /// Byte ranges of the body handed to m3u8-rs, in order.
    pub kept: Vec<Range<usize>>,
    /// Segments left out.
    pub skipped: u64,
    /// The segments left out after the last dated one: their `EXTINF` durations are added to
    /// the date after the parsed segment with index `carry_after`.
    pub carry: Range<usize>,
    pub carry_after: usize,
}

impl Trim {
    /// The body m3u8-rs parses.
    pub fn body(&self, body: &[u8]) -> Vec<u8> {
        let len = self.kept.iter().map(|r| r.len()).sum();
        let mut out = Vec::with_capacity(len);
        for r in &self.kept {
            out.extend_from_slice(&body[r.clone()]);
        }
        out
    }
}

/// Tags of the playlist as a whole (RFC 8216bis 4.4.3, 4.4.2, 4.4.6): m3u8-rs must see them.
const PLAYLIST_TAGS: [&[u8]; 13] = [
    b"#EXTM3U",
    b"#EXT-X-VERSION",
    b"#EXT-X-TARGETDURATION",
    b"#EXT-X-MEDIA-SEQUENCE",
    b"#EXT-X-DISCONTINUITY-SEQUENCE",
    b"#EXT-X-PLAYLIST-TYPE",
    b"#EXT-X-I-FRAMES-ONLY",
    b"#EXT-X-INDEPENDENT-SEGMENTS",
    b"#EXT-X-START",
    b"#EXT-X-SERVER-CONTROL",
    b"#EXT-X-PART-INF",
    b"#EXT-X-SKIP",
    b"#EXT-X-DEFINE",
];

/// Lines of `body` with their byte ranges (newline included), refusing one longer than
/// `max_line_bytes`.
fn lines(
    body: &[u8],
    max_line_bytes: usize,
) -> impl Iterator<Item = Result<(usize, usize, &[u8]), Failure>> {
    let mut pos = 0;
    body.split_inclusive(|b| *b == b'\n').map(move |line| {
        let start = pos;
        pos += line.len();
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        if content.len() > max_line_bytes {
            return Err(Failure::LineTooLong(max_line_bytes));
        }
        Ok((start, pos, content.trim_ascii()))
    })
}

/// Checks a media playlist against `limits` and finds its tail (see the module documentation).
pub fn scan_media(body: &[u8], limits: &ParseLimits) -> Result<MediaScan, Failure> {
    let mut segments: u64 = 0;
    let mut parts: u64 = 0;
    // End of the first segment's URI line.
    let mut first_end: Option<usize> = None;
    // Where the blocks of the last TAIL_SEGMENTS segments start (segment i at i % TAIL).
    let mut ring = [0usize; TAIL_SEGMENTS as usize];
    let mut block_start = 0;
    let mut dated = false;
    // The last dated segment: its block and index.
    let mut last_dated: Option<(Range<usize>, u64)> = None;
    // Start of the last playlist-level tag after the first segment.
    let mut late_playlist_tag: Option<usize> = None;
    for line in lines(body, limits.max_line_bytes) {
        let (start, end, line) = line?;
        if line.is_empty() {
            continue;
        }
        if line[0] == b'#' {
            if line.starts_with(b"#EXT-X-PART:") {
                parts += 1;
            } else if line.starts_with(b"#EXT-X-PROGRAM-DATE-TIME:") {
                dated = true;
            } else if first_end.is_some() && PLAYLIST_TAGS.iter().any(|t| line.starts_with(t)) {
                late_playlist_tag = Some(start);
            }
            continue;
        }
        ring[(segments % TAIL_SEGMENTS) as usize] = block_start;
        if std::mem::take(&mut dated) {
            last_dated = Some((block_start..end, segments));
        }
        segments += 1;
        first_end.get_or_insert(end);
        block_start = end;
    }
    if segments > limits.max_segments {
        return Err(Failure::TooManySegments(segments, limits.max_segments));
    }
    if parts > limits.max_parts {
        return Err(Failure::TooManyParts(parts, limits.max_parts));
    }
    let trim = first_end
        .filter(|_| segments >= TRIM_FROM_SEGMENTS)
        .and_then(|first_end| {
            let tail_first = segments - TAIL_SEGMENTS;
            let cut = ring[(tail_first % TAIL_SEGMENTS) as usize];
            if late_playlist_tag.is_some_and(|at| at < cut) {
                return None;
            }
            let mut kept = Vec::with_capacity(3);
            kept.push(0..first_end);
            let mut skipped = tail_first - 1;
            let (carry, carry_after) = match last_dated {
                Some((block, i)) if (1..tail_first).contains(&i) => {
                    let carry = block.end..cut;
                    kept.push(block);
                    skipped -= 1;
                    (carry, 1)
                }
                _ => (first_end..cut, 0),
            };
            kept.push(cut..body.len());
            Some(Trim {
                kept,
                skipped,
                carry,
                carry_after,
            })
        });
    Ok(MediaScan {
        segments,
        parts,
        trim,
    })
}

/// The `EXTINF` durations in `body`, each taken as `ms` says (the decision's clamp), summed
/// with saturation. A duration that does not parse counts as `ms(f32::NAN)`.
pub fn extinf_sum(body: &[u8], ms: impl Fn(f32) -> u64) -> u64 {
    body.split(|b| *b == b'\n')
        .filter_map(|line| line.trim_ascii().strip_prefix(b"#EXTINF:"))
        .map(|rest| {
            let number = rest.split(|b| *b == b',').next().unwrap_or(rest);
            let d = std::str::from_utf8(number)
                .ok()
                .and_then(|n| n.trim().parse::<f32>().ok())
                .unwrap_or(f32::NAN);
            ms(d)
        })
        .fold(0u64, u64::saturating_add)
}

/// Checks a master playlist against `limits`: its longest line, and its entries (variants,
/// I-frame playlists, `EXT-X-MEDIA` with a URI) against `max_renditions`, counted before any
/// parse (duplicates included).
pub fn scan_master(
    body: &[u8],
    limits: &ParseLimits,
    max_renditions: usize,
) -> Result<(), Failure> {
    let mut entries = 0usize;
    for line in lines(body, limits.max_line_bytes) {
        let (_, _, line) = line?;
        if line.starts_with(b"#EXT-X-STREAM-INF")
            || line.starts_with(b"#EXT-X-I-FRAME-STREAM-INF")
            || (line.starts_with(b"#EXT-X-MEDIA:") && line.windows(5).any(|w| w == b"URI=\""))
        {
            entries += 1;
        }
    }
    if entries > max_renditions {
        return Err(Failure::TooManyRenditions(entries, max_renditions));
    }
    Ok(())
}
