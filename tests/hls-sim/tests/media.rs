//! Real media: the simulator serves a looped clip with timestamps that follow the media sequence
//! number, as MPEG-TS or as fMP4 with an init segment. The clip here is synthetic (one packet or
//! box per segment) so the test needs no ffmpeg; tests/player plays ffmpeg-made media in Chromium.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use hls_sim::{SegmentFormat, SimConfig, SimError, Simulator};

const TD_MS: u64 = 500;
/// The clip's files are segments 4 and 5 of the encode it was cut from.
const FIRST: u64 = 4;
/// PTS of segment 0 in the encode (1.4 s, as ffmpeg's MPEG-TS muxer starts).
const BASE: u64 = 126_000;

fn write_pts(b: &mut [u8], v: u64) {
    b[0] = 0x20 | (((v >> 30) as u8 & 7) << 1) | 1;
    b[1] = (v >> 22) as u8;
    b[2] = (((v >> 15) as u8) << 1) | 1;
    b[3] = (v >> 7) as u8;
    b[4] = ((v as u8) << 1) | 1;
}

fn read_pts(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 7) << 30
        | u64::from(b[1]) << 22
        | (u64::from(b[2]) >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4]) >> 1
}

/// One TS packet starting a PES of `stream_id` with a PTS at byte 13.
fn ts_segment(stream_id: u8, pts: u64) -> Vec<u8> {
    let mut p = vec![0xFFu8; 188];
    p[..4].copy_from_slice(&[0x47, 0x41, 0x00, 0x10]);
    p[4..13].copy_from_slice(&[0, 0, 1, stream_id, 0, 0, 0x80, 0x80, 5]);
    write_pts(&mut p[13..18], pts);
    p
}

fn mp4_box(typ: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(typ);
    b.extend_from_slice(body);
    b
}

fn init(timescale: u32) -> Vec<u8> {
    let mut mdhd = vec![0u8; 24];
    mdhd[12..16].copy_from_slice(&timescale.to_be_bytes());
    let mut b = mp4_box(b"ftyp", b"iso6\0\0\0\0");
    b.extend(mp4_box(
        b"moov",
        &mp4_box(b"trak", &mp4_box(b"mdia", &mp4_box(b"mdhd", &mdhd))),
    ));
    b
}

/// moof/traf/tfdt (version 1; its value at byte 28), then an empty mdat.
fn m4s_segment(decode_time: u64) -> Vec<u8> {
    let mut tfdt = vec![1u8, 0, 0, 0];
    tfdt.extend_from_slice(&decode_time.to_be_bytes());
    let mut b = mp4_box(b"moof", &mp4_box(b"traf", &mp4_box(b"tfdt", &tfdt)));
    b.extend(mp4_box(b"mdat", &[]));
    b
}

fn media_dir(segment_ms: u64) -> PathBuf {
    // Tests run in parallel threads of one process: the time alone can repeat, so a counter
    // keeps each test's media apart (two tests once shared a directory and one read the other's
    // segment duration).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hls-sim-media-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        hls_sim::now_ms()
    ));
    let w = |p: &Path, b: &[u8]| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    };
    w(
        &dir.join("media.json"),
        format!(
            r#"{{"version":1,"segment_ms":{segment_ms},"segments":2,"source_first_index":{FIRST}}}"#
        )
        .as_bytes(),
    );
    for j in 0..2u64 {
        let n = FIRST + j;
        let pts = BASE + n * TD_MS * 90;
        w(
            &dir.join(format!("ts/video/{j}.ts")),
            &ts_segment(0xE0, pts),
        );
        w(
            &dir.join(format!("ts/audio/{j}.ts")),
            &ts_segment(0xC0, pts),
        );
        w(
            &dir.join(format!("fmp4/video/{j}.m4s")),
            &m4s_segment(n * 15_360 / 2),
        );
        w(
            &dir.join(format!("fmp4/audio/{j}.m4s")),
            &m4s_segment(n * 48_000 / 2),
        );
    }
    w(&dir.join("fmp4/video/init.mp4"), &init(15_360));
    w(&dir.join("fmp4/audio/init.mp4"), &init(48_000));
    dir
}

async fn start_with(dir: &Path, format: SegmentFormat) -> Result<hls_sim::SimHandle, SimError> {
    Simulator::start(SimConfig {
        regions: vec![REGION_A.into(), REGION_B.into()],
        streams: 1,
        target_duration: Duration::from_millis(TD_MS),
        media_dir: Some(dir.to_path_buf()),
        segment_format: format,
        ..SimConfig::default()
    })
    .await
}

async fn get_bytes(c: &reqwest::Client, url: &str) -> (u16, String, Vec<u8>) {
    let r = c.get(url).send().await.expect("GET");
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, r.bytes().await.expect("body").to_vec())
}

fn last_uri(playlist: &str) -> &str {
    playlist
        .lines()
        .rfind(|l| !l.starts_with('#') && !l.is_empty())
        .expect("a segment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_segments_carry_timestamps_of_their_sequence_number_in_every_region() {
    let dir = media_dir(TD_MS);
    let sim = start_with(&dir, SegmentFormat::Ts).await.expect("starts");
    let c = client();
    bounded(20, async {
        for rendition in ["720p", "audio-en"] {
            let url = sim.media_url(REGION_A, "s0001", rendition).unwrap();
            let (_, pl) = get(&c, &url).await;
            assert!(!pl.contains("EXT-X-MAP"));
            let last = last_uri(&pl);
            let msn: u64 = last.strip_suffix(".ts").unwrap().parse().unwrap();
            // Several loops of the 2-segment clip: every one continues the clock.
            for n in msn - 5..=msn {
                let (st, ctype, a) =
                    get_bytes(&c, &url.replace("index.m3u8", &format!("{n}.ts"))).await;
                assert_eq!((st, ctype.as_str()), (200, "video/mp2t"));
                assert_eq!(
                    read_pts(&a[13..18]),
                    (BASE + n * TD_MS * 90) % (1 << 33),
                    "{rendition} {n}"
                );
                let url_b = sim.media_url(REGION_B, "s0001", rendition).unwrap();
                let (_, _, b) =
                    get_bytes(&c, &url_b.replace("index.m3u8", &format!("{n}.ts"))).await;
                assert_eq!(a, b, "identical in every region");
            }
            // Not yet published: still a 404.
            let (st, _, _) =
                get_bytes(&c, &url.replace("index.m3u8", &format!("{}.ts", msn + 3))).await;
            assert_eq!(st, 404);
        }
        let (st, _, _) = get_bytes(
            &c,
            &sim.media_url(REGION_A, "s0001", "720p")
                .unwrap()
                .replace("index.m3u8", "init.mp4"),
        )
        .await;
        assert_eq!(st, 404, "no init segment for MPEG-TS");
    })
    .await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fmp4_playlists_map_an_init_segment_and_decode_times_follow_the_sequence() {
    let dir = media_dir(TD_MS);
    let sim = start_with(&dir, SegmentFormat::Fmp4).await.expect("starts");
    let c = client();
    bounded(20, async {
        for (rendition, timescale, mime) in [
            ("720p", 15_360u64, "video/mp4"),
            ("audio-en", 48_000, "audio/mp4"),
        ] {
            let url = sim.media_url(REGION_A, "s0001", rendition).unwrap();
            let (_, pl) = get(&c, &url).await;
            assert!(pl.contains("#EXT-X-MAP:URI=\"init.mp4\"\n"), "{pl}");
            let msn: u64 = last_uri(&pl).strip_suffix(".m4s").unwrap().parse().unwrap();
            let (st, ctype, init) = get_bytes(&c, &url.replace("index.m3u8", "init.mp4")).await;
            assert_eq!((st, ctype.as_str()), (200, mime));
            assert_eq!(&init[4..8], b"ftyp");
            for n in msn - 3..=msn {
                let (st, _, b) =
                    get_bytes(&c, &url.replace("index.m3u8", &format!("{n}.m4s"))).await;
                assert_eq!(st, 200);
                let t = u64::from_be_bytes(b[28..36].try_into().unwrap());
                assert_eq!(t, n * timescale * TD_MS / 1000, "{rendition} {n}");
            }
            let (st, _, _) = get_bytes(&c, &url.replace("index.m3u8", &format!("{msn}.ts"))).await;
            assert_eq!(st, 404, "fMP4 streams have no .ts segments");
        }
    })
    .await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn media_must_fit_the_timeline() {
    let dir = media_dir(TD_MS * 2);
    let err = start_with(&dir, SegmentFormat::Ts)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("1000 ms segments"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
    let dir = media_dir(TD_MS);
    let err = Simulator::start(SimConfig {
        media_dir: Some(dir.clone()),
        target_duration: Duration::from_millis(TD_MS),
        ll_hls: true,
        ..SimConfig::default()
    })
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("LL-HLS"), "{err}");
    let err = Simulator::start(SimConfig {
        segment_format: SegmentFormat::Fmp4,
        ..SimConfig::default()
    })
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("media_dir"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
