//! Segment availability: a playlist that advances while its segments are not served is no better
//! than a frozen one for a player. On an advance, the newest segment is checked with a HEAD
//! (and the `EXT-X-MAP` initialisation segment once per URI), sampled so the cost stays bounded:
//! a rendition checks the segments whose number falls on its turn (`(head + its hash) %
//! renditions == 0`), which makes about one check per instance per segment and reaches every
//! rendition every `renditions` segments. A rendition whose check failed is checked on every new
//! segment until one is served. `failure_threshold` failed checks in a row (each confirmed by a
//! retry) make it stale (`SegmentUnavailable`); a served segment ends that, and the rendition
//! goes through the usual recovery hysteresis. Pure: no I/O, no clock.

use super::decision::{Failure, Policy};

/// The newest segment a media playlist lists, and its initialisation segment, as written in the
/// playlist (relative or absolute URIs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRef {
    pub uri: String,
    pub map: Option<String>,
}

/// Finds the newest segment's URI (the last URI line) and the last `EXT-X-MAP` URI of a media
/// playlist with one pass over its lines. `None` when it lists no segment.
pub fn newest_segment(body: &[u8]) -> Option<SegmentRef> {
    let text = std::str::from_utf8(body).ok()?;
    let mut uri = None;
    let mut map = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(attrs) = line.strip_prefix("#EXT-X-MAP:") {
            map = quoted_uri(attrs).map(str::to_owned);
        } else if !line.starts_with('#') {
            uri = Some(line);
        }
    }
    Some(SegmentRef {
        uri: uri?.to_owned(),
        map,
    })
}

/// The value of `URI="..."` in an attribute list.
fn quoted_uri(attrs: &str) -> Option<&str> {
    let at = attrs.find("URI=\"")?;
    let rest = &attrs[at + 5..];
    let end = rest.find('"')?;
    Some(&rest[..end]).filter(|u| !u.is_empty())
}

/// A stable number for a rendition key (FNV-1a), which places its turns among its instance's.
pub fn turn_of(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What a check found, for the tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing changes.
    Unchanged,
    /// The threshold of failed checks is reached: the rendition is stale.
    Unavailable { uri: String, failure: Failure },
    /// A segment is served again after the rendition was stale for it.
    Served,
}

/// The segment-availability state of one rendition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentCheck {
    /// Failed checks in a row.
    pub failures: u32,
    /// Stale for an unavailable segment.
    pub unavailable: bool,
    /// The init segment URI last found served.
    checked_map: Option<String>,
}

impl SegmentCheck {
    /// Whether the newest segment (number `head`, one past it by [`super::decision::Snapshot::head`])
    /// is this rendition's to check, among `renditions` of its instance.
    pub fn due(&self, head: u64, turn: u64, renditions: usize) -> bool {
        self.failures > 0
            || self.unavailable
            || head
                .wrapping_add(turn)
                .is_multiple_of(renditions.max(1) as u64)
    }

    /// Whether the init segment `map` still needs its one check.
    pub fn map_due(&self, map: &str) -> bool {
        self.checked_map.as_deref() != Some(map)
    }

    /// Applies the result of checking `uri` (the init segment when `is_map`). A destination
    /// the operator refuses to connect to is no verdict on the origin: nothing changes.
    pub fn record(
        &mut self,
        uri: &str,
        is_map: bool,
        result: Result<(), Failure>,
        policy: &Policy,
    ) -> Outcome {
        match result {
            Ok(()) => {
                if is_map {
                    self.checked_map = Some(uri.to_owned());
                }
                self.failures = 0;
                if std::mem::take(&mut self.unavailable) {
                    Outcome::Served
                } else {
                    Outcome::Unchanged
                }
            }
            Err(Failure::Refused(_)) => Outcome::Unchanged,
            Err(failure) => {
                self.failures = self.failures.saturating_add(1);
                if !self.unavailable && self.failures >= policy.failure_threshold() {
                    self.unavailable = true;
                    Outcome::Unavailable {
                        uri: uri.to_owned(),
                        failure,
                    }
                } else {
                    Outcome::Unchanged
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_segment_and_the_init_segment_are_found() {
        let body = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\"\n\
            #EXTINF:2.0,\n10.m4s\n#EXTINF:2.0,\n11.m4s\n\
            #EXT-X-PART:DURATION=0.5,URI=\"12.0.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"12.1.m4s\"\n";
        assert_eq!(
            newest_segment(body),
            Some(SegmentRef {
                uri: "11.m4s".into(),
                map: Some("init.mp4".into())
            })
        );
        assert_eq!(
            newest_segment(b"#EXTM3U\n#EXTINF:2,\nhttps://cdn/a.ts\r\n\n")
                .unwrap()
                .uri,
            "https://cdn/a.ts"
        );
        assert_eq!(newest_segment(b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n"), None);
        assert_eq!(newest_segment(b"\xff\xfe"), None);
        assert_eq!(quoted_uri("URI=\"\""), None);
        assert_eq!(quoted_uri("URI=\"x"), None);
    }

    #[test]
    fn about_one_rendition_per_instance_checks_each_segment() {
        let keys: Vec<u64> = (0..7)
            .map(|i| turn_of(&format!("http://o/{i}.m3u8")))
            .collect();
        let idle = SegmentCheck::default();
        let mut per_rendition = [0u32; 7];
        let mut total = 0;
        for head in 1_000..1_700u64 {
            for (i, &k) in keys.iter().enumerate() {
                if idle.due(head, k, 7) {
                    per_rendition[i] += 1;
                    total += 1;
                }
            }
        }
        // 700 segments: 700 checks in all, every rendition every 7th segment.
        assert_eq!(total, 700);
        assert!(per_rendition.iter().all(|&n| n == 100), "{per_rendition:?}");
        // A single rendition checks every segment; none is never checked.
        assert!(idle.due(5, 99, 1) && idle.due(5, 99, 0));
    }

    #[test]
    fn one_missing_segment_is_no_verdict_and_the_threshold_is() {
        let p = Policy::default();
        let mut c = SegmentCheck::default();
        let missing = || Err(Failure::Http(404));
        assert_eq!(c.record("10.ts", false, missing(), &p), Outcome::Unchanged);
        // After a failure every segment is checked, whatever the turn.
        assert!(c.due(11, 3, 7) && c.due(12, 3, 7));
        assert_eq!(c.record("11.ts", false, Ok(()), &p), Outcome::Unchanged);
        assert_eq!(c.failures, 0);
        assert!(!c.due(12, 3, 7) || 15u64.is_multiple_of(7));
        for n in 0..2 {
            assert_eq!(
                c.record("x.ts", false, missing(), &p),
                Outcome::Unchanged,
                "{n}"
            );
        }
        assert_eq!(
            c.record("14.ts", false, missing(), &p),
            Outcome::Unavailable {
                uri: "14.ts".into(),
                failure: Failure::Http(404)
            }
        );
        assert_eq!(c.record("15.ts", false, missing(), &p), Outcome::Unchanged);
        assert_eq!(c.record("16.ts", false, Ok(()), &p), Outcome::Served);
        assert!(!c.unavailable);
        // A destination the operator refuses is no verdict.
        for _ in 0..5 {
            let r = c.record(
                "https://other/x.ts",
                false,
                Err(Failure::Refused("host".into())),
                &p,
            );
            assert_eq!(r, Outcome::Unchanged);
        }
        assert_eq!(c.failures, 0);
    }

    #[test]
    fn the_init_segment_is_checked_once_per_uri() {
        let p = Policy::default();
        let mut c = SegmentCheck::default();
        assert!(c.map_due("init.mp4"));
        c.record("init.mp4", true, Ok(()), &p);
        assert!(!c.map_due("init.mp4"));
        assert!(c.map_due("init-2.mp4"));
        c.record("init-2.mp4", true, Err(Failure::Http(404)), &p);
        assert!(c.map_due("init-2.mp4"), "checked again until served");
    }
}
