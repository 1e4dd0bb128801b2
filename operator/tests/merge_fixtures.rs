//! The merge over master playlists shaped like those real packagers emit (tests/fixtures/masters):
//! every merged output must parse with m3u8-rs and with hls.js's own parser run in Node
//! (tests/js/parse-master.sh, hls.js pinned in tests/js/package-lock.json), and be byte-for-byte
//! stable.
//!
//! `UPDATE_GOLDEN=1 cargo test -p operator --test merge_fixtures` rewrites the golden outputs in
//! tests/fixtures/merged after a deliberate change of the output.

use cvs_operator::decide::master::{
    Contribution, Limits, MergeInput, MergeSettings, Merged, SteeringTag, merge, parse_contribution,
};
use m3u8_rs::Playlist;
use std::path::PathBuf;
use std::process::Command;

/// Each fixture and the URL its master is served from in region A (region B serves the same
/// file from another origin host).
const FIXTURES: &[(&str, &str)] = &[
    (
        "mediapackage_ts",
        "https://a1b2c3.mediapackage.{r}.amazonaws.com/out/v1/5e0f1d/index.m3u8",
    ),
    (
        "medialive_ts",
        "https://origin-{r}.example.com/live/channel/channel.m3u8",
    ),
    (
        "muxed_ts",
        "http://origin-{r}.example.com/hls/event/master.m3u8",
    ),
    (
        "wowza_chunklist",
        "http://wowza-{r}.example.com:1935/live/myStream/playlist.m3u8",
    ),
    (
        "cmaf_multiaudio_subs_cc",
        "https://origin-{r}.example.com/cmaf/event/master.m3u8",
    ),
    (
        "llhls_master",
        "https://origin-{r}.example.com/live/ll/event/master.m3u8",
    ),
    (
        "absolute_query_tokens",
        "https://origin.example.com/live/event/master.m3u8",
    ),
];

const REGIONS: &[(&str, &str)] = &[
    ("us-east-1", "d111111abcdef8.cloudfront.net"),
    ("eu-west-1", "d222222abcdef8.cloudfront.net"),
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(manifest_dir().join(format!("tests/fixtures/masters/{name}.m3u8"))).unwrap()
}

fn contributions(name: &str, url: &str) -> Vec<Contribution> {
    let bytes = fixture(name);
    REGIONS
        .iter()
        .map(|(region, _)| {
            parse_contribution(&bytes, &url.replace("{r}", region), &Limits::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect()
}

fn merge_all(contribs: &[Contribution], steering: bool) -> Merged {
    let inputs: Vec<MergeInput<'_>> = REGIONS
        .iter()
        .zip(contribs)
        .map(|((region, domain), c)| MergeInput {
            region,
            pathway: region,
            cdn_domain: domain,
            contribution: c,
        })
        .collect();
    let settings = MergeSettings {
        steering: steering.then(|| SteeringTag {
            server_uri: "https://d111111abcdef8.cloudfront.net/steering/event.json".into(),
            default_pathway: Some("eu-west-1".into()),
        }),
        ..Default::default()
    };
    merge(&inputs, &settings).unwrap()
}

struct Counts {
    variants: usize,
    iframes: usize,
    audio: usize,
    subtitles: usize,
    captions: usize,
}

fn m3u8_rs_counts(bytes: &[u8]) -> Counts {
    let Ok(Playlist::MasterPlaylist(m)) = m3u8_rs::parse_playlist_res(bytes) else {
        panic!(
            "m3u8-rs does not read the merged master as a master:\n{}",
            String::from_utf8_lossy(bytes)
        );
    };
    use m3u8_rs::AlternativeMediaType as T;
    let of = |t: T| m.alternatives.iter().filter(|a| a.media_type == t).count();
    Counts {
        variants: m.variants.iter().filter(|v| !v.is_i_frame).count(),
        iframes: m.variants.iter().filter(|v| v.is_i_frame).count(),
        audio: of(T::Audio),
        subtitles: of(T::Subtitles),
        captions: of(T::ClosedCaptions),
    }
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("merged-masters");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_fixture_merges_and_both_parsers_accept_it() {
    let dir = out_dir();
    let mut files: Vec<(PathBuf, Counts)> = Vec::new();
    for (name, url) in FIXTURES {
        let contribs = contributions(name, url);
        let input = m3u8_rs_counts(&fixture(name));
        for steering in [false, true] {
            let merged = merge_all(&contribs, steering);
            let text = String::from_utf8(merged.bytes.clone()).unwrap();
            assert!(
                merged.report.ladder_differences.is_empty(),
                "{name}: {:?}",
                merged.report
            );
            assert!(
                !merged.report.notes.iter().any(|n| n.contains("differs")),
                "{name}: {:?}",
                merged.report.notes
            );
            let counts = m3u8_rs_counts(&merged.bytes);
            assert_eq!(counts.variants, 2 * input.variants, "{name}");
            assert_eq!(counts.iframes, 2 * input.iframes, "{name}");
            assert_eq!(counts.audio, 2 * input.audio, "{name}");
            assert_eq!(counts.subtitles, 2 * input.subtitles, "{name}");
            assert_eq!(counts.captions, 2 * input.captions, "{name}");
            assert_eq!(
                text.matches("#EXT-X-CONTENT-STEERING").count(),
                usize::from(steering),
                "{name}:\n{text}"
            );
            assert!(!text.contains("origin-steering"), "{name}: {text}");
            for line in text.lines() {
                assert!(
                    !line.contains("origin-us-east-1") && !line.contains("origin-eu-west-1"),
                    "{name}: origin host left in {line}"
                );
                assert!(!line.contains("origin.example.com"), "{name}: {line}");
                assert!(
                    !line.contains(":1935"),
                    "{name}: origin port left in {line}"
                );
            }
            let path = dir.join(format!("{name}-steering-{steering}.m3u8"));
            std::fs::write(&path, &merged.bytes).unwrap();
            files.push((path, counts));
        }
    }
    // Ladders that differ still give a master both parsers accept.
    let a = contributions("mediapackage_ts", FIXTURES[0].1);
    let b = contributions("medialive_ts", FIXTURES[1].1);
    let mixed = merge_all(&[a[0].clone(), b[1].clone()], true);
    assert!(mixed.report.ladders_differ());
    let path = dir.join("ladders-differ.m3u8");
    std::fs::write(&path, &mixed.bytes).unwrap();
    files.push((path, m3u8_rs_counts(&mixed.bytes)));

    let script = manifest_dir().join("../tests/js/parse-master.sh");
    let output = Command::new(&script)
        .args(files.iter().map(|(p, _)| p))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "hls.js refused a merged master:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summaries: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(summaries.len(), files.len());
    for ((path, counts), s) in files.iter().zip(&summaries) {
        let what = path.display();
        assert_eq!(s["file"], path.to_str().unwrap());
        assert_eq!(s["levels"], counts.variants, "{what}: {s}");
        assert_eq!(s["iframes"], counts.iframes, "{what}: {s}");
        assert_eq!(s["audio"], counts.audio, "{what}: {s}");
        assert_eq!(s["subtitles"], counts.subtitles, "{what}: {s}");
        assert_eq!(s["captions"], counts.captions, "{what}: {s}");
        assert_eq!(
            s["pathways"],
            serde_json::json!(["eu-west-1", "us-east-1"]),
            "{what}"
        );
        if what.to_string().contains("steering-true") {
            assert_eq!(s["steering"]["pathwayId"], "eu-west-1", "{what}: {s}");
        }
    }
}

#[test]
fn hls_js_check_catches_a_broken_master() {
    // The Node check must be able to fail: a variant referencing a group with no EXT-X-MEDIA and
    // a relative URI.
    let path = out_dir().join("broken.m3u8");
    std::fs::write(
        &path,
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000,AUDIO=\"nope\",PATHWAY-ID=\"a\"\nrelative.m3u8\n",
    )
    .unwrap();
    let output = Command::new(manifest_dir().join("../tests/js/parse-master.sh"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("has no EXT-X-MEDIA"), "{stdout}");
    assert!(stdout.contains("not absolute"), "{stdout}");
}

#[test]
fn output_is_stable_and_matches_the_golden_files() {
    for (name, url) in FIXTURES {
        let first = merge_all(&contributions(name, url), true);
        for _ in 0..5 {
            let again = merge_all(&contributions(name, url), true);
            assert_eq!(first.bytes, again.bytes, "{name}");
        }
        let golden = manifest_dir().join(format!("tests/fixtures/merged/{name}.m3u8"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &first.bytes).unwrap();
        }
        let expected = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", golden.display()));
        assert_eq!(
            String::from_utf8(first.bytes).unwrap(),
            expected,
            "{name}: output changed; if deliberate, rerun with UPDATE_GOLDEN=1 and review the diff"
        );
    }
}
