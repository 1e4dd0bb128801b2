//! Any bytes as an instance's master playlist: the merge of two regions' copies of it either
//! refuses the input with a reason or writes a master that m3u8-rs parses back, listing the
//! input's variants once per region.
#![no_main]

use cvs_operator::decide::master::{
    Limits, MergeInput, MergeSettings, SteeringTag, merge, parse_contribution,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(contribution) = parse_contribution(
        data,
        "https://origin.example.com/live/event/master.m3u8",
        &Limits::default(),
    ) else {
        return;
    };
    let inputs = [
        MergeInput {
            region: "us-east-1",
            pathway: "us-east-1",
            cdn_domain: "d1.cloudfront.net",
            contribution: &contribution,
        },
        MergeInput {
            region: "eu-west-1",
            pathway: "eu-west-1",
            cdn_domain: "d2.cloudfront.net",
            contribution: &contribution,
        },
    ];
    let settings = MergeSettings {
        steering: Some(SteeringTag {
            server_uri: "https://steer.example.com/steering.json".into(),
            default_pathway: Some("us-east-1".into()),
        }),
        ..Default::default()
    };
    let merged = merge(&inputs, &settings).expect("two valid contributions merge");
    match m3u8_rs::parse_playlist_res(&merged.bytes) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => {
            let variants = m.variants.iter().filter(|v| !v.is_i_frame).count();
            assert_eq!(variants, 2 * contribution.variant_count());
        }
        other => panic!(
            "merged master does not parse as a master: {other:?}\n{}",
            String::from_utf8_lossy(&merged.bytes)
        ),
    }
});
