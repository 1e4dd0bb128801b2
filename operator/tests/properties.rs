//! Property tests of the pure decisions a false verdict would come from: the freshness tracker,
//! the instance aggregate, the master merge, the steering manifest and the state-item decoder.
//! Each property is an invariant the operator's safety rests on, checked over generated inputs
//! (proptest shrinks any counter-example to a small one). The fuzz targets in `fuzz/` drive the
//! same functions with unstructured bytes for longer.

use aws_sdk_dynamodb::types::AttributeValue;
use cvs_operator::decide::master::{Limits, MergeInput, MergeSettings, merge, parse_contribution};
use cvs_operator::decide::steering::{PathwayState, steering_manifest};
use cvs_operator::probe::decision::{Failure, Policy, Snapshot, Tracker, aggregate};
use cvs_operator::state::Item;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

// ---------------------------------------------------------------------------------------------
// The freshness tracker
// ---------------------------------------------------------------------------------------------

/// One thing that happens to a tracked playlist, `after_ms` after the previous one.
#[derive(Clone, Debug)]
enum Event {
    /// A poll answered: the playlist gained `new_segments` (0: unchanged), slid its window by
    /// `slide` (the oldest segments dropped), with this target duration.
    Answer {
        after_ms: u64,
        new_segments: u64,
        slide: u64,
        target_duration_s: u64,
    },
    /// A poll failed.
    Fail { after_ms: u64, kind: u8 },
    /// The deadline timer fired.
    Tick { after_ms: u64 },
}

fn event() -> impl Strategy<Value = Event> {
    let after = 1u64..4_000;
    prop_oneof![
        6 => (after.clone(), 0u64..3, 0u64..2, prop::sample::select(vec![1u64, 2, 4, 6])).prop_map(
            |(after_ms, new_segments, slide, target_duration_s)| Event::Answer {
                after_ms,
                new_segments,
                slide,
                target_duration_s,
            }
        ),
        1 => (after.clone(), 0u8..4).prop_map(|(after_ms, kind)| Event::Fail { after_ms, kind }),
        2 => after.prop_map(|after_ms| Event::Tick { after_ms }),
    ]
}

fn failure(kind: u8) -> Failure {
    match kind {
        0 => Failure::Http(503),
        1 => Failure::Timeout,
        2 => Failure::Http(404),
        _ => Failure::Connect("connection refused".into()),
    }
}

fn policy() -> impl Strategy<Value = Policy> {
    (1.0f64..4.0, 1u32..4, 1u32..5).prop_map(
        |(staleness_multiplier, recovery_updates, failure_threshold)| Policy {
            staleness_multiplier,
            recovery_updates,
            failure_threshold,
            check_segments: true,
            ..Policy::default()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The tracker never reports fresh a playlist that has not gained a segment within the
    /// staleness bound (of its current target duration), whatever answers, failures and timer
    /// ticks came before. Without program date-times, first sight is no evidence either.
    #[test]
    fn never_fresh_without_a_new_segment_within_the_bound(
        policy in policy(),
        events in prop::collection::vec(event(), 1..80),
    ) {
        let mut tracker = Tracker::new();
        let mut now = 0u64;
        let (mut media_sequence, mut segment_count) = (100u64, 5u64);
        let mut last_head: Option<u64> = None;
        let mut last_advance: Option<u64> = None;
        for event in events {
            match event {
                Event::Answer { after_ms, new_segments, slide, target_duration_s } => {
                    now += after_ms;
                    segment_count += new_segments;
                    let slide = slide.min(segment_count.saturating_sub(1));
                    media_sequence += slide;
                    segment_count -= slide;
                    let snap = Snapshot {
                        media_sequence,
                        segment_count,
                        target_duration_ms: target_duration_s * 1000,
                        last_segment_ms: target_duration_s * 1000,
                        ended: false,
                        newest_end_unix_ms: None,
                    };
                    if last_head.is_some_and(|h| snap.head() > h) {
                        last_advance = Some(now);
                    }
                    last_head = Some(snap.head());
                    tracker.observe(snap, now, &policy);
                }
                Event::Fail { after_ms, kind } => {
                    now += after_ms;
                    tracker.fail(failure(kind), now, &policy);
                }
                Event::Tick { after_ms } => {
                    now += after_ms;
                    tracker.tick(now, &policy);
                }
            }
            if tracker.is_fresh() {
                let bound = policy.bound_ms(tracker.target_duration_ms());
                let advanced = last_advance
                    .expect("fresh without ever seeing a new segment");
                prop_assert!(
                    now - advanced <= bound,
                    "fresh at {now} ms, last new segment at {advanced} ms, bound {bound} ms"
                );
            }
        }
    }

    /// One failed fetch (a transient kind, after a successful one) never turns a fresh playlist
    /// stale while its staleness deadline has not passed, when the threshold is above one;
    /// whatever came before.
    #[test]
    fn one_failure_never_turns_a_fresh_playlist_stale(
        policy in policy(),
        events in prop::collection::vec(event(), 1..60),
        kind in 0u8..4,
        after_ms in 1u64..4_000,
    ) {
        let mut tracker = Tracker::new();
        let mut now = 0u64;
        let mut count = 5u64;
        for event in events {
            match event {
                Event::Answer { after_ms, new_segments, target_duration_s, .. } => {
                    now += after_ms;
                    count += new_segments;
                    tracker.observe(
                        Snapshot {
                            media_sequence: 100,
                            segment_count: count,
                            target_duration_ms: target_duration_s * 1000,
                            last_segment_ms: target_duration_s * 1000,
                            ended: false,
                            newest_end_unix_ms: None,
                        },
                        now,
                        &policy,
                    );
                }
                Event::Fail { after_ms, kind } => {
                    now += after_ms;
                    tracker.fail(failure(kind), now, &policy);
                }
                Event::Tick { after_ms } => {
                    now += after_ms;
                    tracker.tick(now, &policy);
                }
            }
        }
        now += after_ms;
        let within = tracker.deadline_ms(&policy).is_some_and(|d| now <= d);
        if policy.failure_threshold >= 2
            && tracker.is_fresh()
            && tracker.consecutive_failures == 0
            && within
        {
            let v = tracker.fail(failure(kind), now, &policy);
            prop_assert!(!v.flipped && tracker.is_fresh(), "{:?}", tracker.stale);
        }
    }

    /// An instance is healthy only when every rendition is fresh, and never healthy while any
    /// rendition has no verdict.
    #[test]
    fn healthy_only_when_every_rendition_is_fresh(
        policy in policy(),
        scripts in prop::collection::vec(prop::collection::vec(event(), 0..20), 1..6),
        master_fails in any::<bool>(),
    ) {
        let trackers: Vec<(String, Tracker)> = scripts
            .into_iter()
            .enumerate()
            .map(|(i, script)| {
                let mut t = Tracker::new();
                let mut now = 0;
                let mut count = 3;
                for e in script {
                    match e {
                        Event::Answer { after_ms, new_segments, .. } => {
                            now += after_ms;
                            count += new_segments;
                            t.observe(
                                Snapshot {
                                    media_sequence: 0,
                                    segment_count: count,
                                    target_duration_ms: 2000,
                                    last_segment_ms: 2000,
                                    ended: false,
                                    newest_end_unix_ms: None,
                                },
                                now,
                                &policy,
                            );
                        }
                        Event::Fail { after_ms, kind } => {
                            now += after_ms;
                            t.fail(failure(kind), now, &policy);
                        }
                        Event::Tick { after_ms } => {
                            now += after_ms;
                            t.tick(now, &policy);
                        }
                    }
                }
                (format!("r{i}.m3u8"), t)
            })
            .collect();
        let master_error = master_fails.then_some(Failure::Http(500));
        let verdict = aggregate(
            master_error.as_ref(),
            trackers.iter().map(|(n, t)| (n.as_str(), t)),
        );
        if verdict.healthy == Some(true) {
            prop_assert!(trackers.iter().all(|(_, t)| t.is_fresh()), "{verdict:?}");
        }
        if trackers.iter().any(|(_, t)| t.is_judged() && !t.is_fresh()) {
            prop_assert_eq!(verdict.healthy, Some(false), "a stale rendition: {:?}", verdict);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The master merge
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Variant {
    path: String,
    bandwidth: u64,
    height: Option<u32>,
}

fn variants() -> impl Strategy<Value = Vec<Variant>> {
    prop::collection::btree_map(
        "[a-z][a-z0-9]{0,7}",
        (
            1_000u64..50_000_000,
            prop::option::of(prop::sample::select(vec![240u32, 360, 720, 1080])),
        ),
        1..8,
    )
    .prop_map(|m: BTreeMap<String, (u64, Option<u32>)>| {
        m.into_iter()
            .map(|(name, (bandwidth, height))| Variant {
                path: format!("{name}/index.m3u8"),
                bandwidth,
                height,
            })
            .collect()
    })
}

fn master_text(variants: &[Variant], with_audio: bool) -> String {
    let mut s = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
    if with_audio {
        s.push_str(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",DEFAULT=YES,URI=\"audio/en.m3u8\"\n",
        );
    }
    for v in variants {
        s.push_str(&format!("#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth));
        if let Some(h) = v.height {
            s.push_str(&format!(",RESOLUTION={}x{h}", h * 16 / 9));
        }
        if with_audio {
            s.push_str(",AUDIO=\"aud\"");
        }
        s.push('\n');
        s.push_str(&v.path);
        s.push('\n');
    }
    s
}

/// `(PATHWAY-ID, URI)` of every EXT-X-STREAM-INF of a master playlist.
fn stream_infs(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("#EXT-X-STREAM-INF:"))
        .map(|(i, l)| {
            let pathway = l
                .split("PATHWAY-ID=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("")
                .to_owned();
            (pathway, lines.get(i + 1).copied().unwrap_or("").to_owned())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The merge of N valid masters parses as a master playlist and lists every input variant
    /// exactly once per region, on that region's CDN host, and nothing else.
    #[test]
    fn merge_lists_every_variant_once_per_region(
        regions in prop::collection::vec((variants(), any::<bool>()), 1..5),
        steering in any::<bool>(),
    ) {
        let named: Vec<(String, String, String, String)> = regions
            .iter()
            .enumerate()
            .map(|(i, (vs, audio))| {
                (
                    format!("region-{i}"),
                    format!("d{i}.cdn.example"),
                    format!("https://origin-{i}.example.com/live/master.m3u8"),
                    master_text(vs, *audio),
                )
            })
            .collect();
        let contributions: Vec<_> = named
            .iter()
            .map(|(_, _, origin, text)| {
                parse_contribution(text.as_bytes(), origin, &Limits::default()).unwrap()
            })
            .collect();
        let inputs: Vec<MergeInput<'_>> = named
            .iter()
            .zip(&contributions)
            .map(|((region, cdn, _, _), contribution)| MergeInput {
                region,
                pathway: region,
                cdn_domain: cdn,
                contribution,
            })
            .collect();
        let settings = MergeSettings {
            steering: steering.then(|| cvs_operator::decide::master::SteeringTag {
                server_uri: "https://steer.example/steering.json".into(),
                default_pathway: None,
            }),
            ..Default::default()
        };
        let merged = merge(&inputs, &settings).unwrap();
        let text = String::from_utf8(merged.bytes).unwrap();
        prop_assert!(
            m3u8_rs::parse_master_playlist_res(text.as_bytes()).is_ok(),
            "the merged master does not parse:\n{text}"
        );
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (pathway, uri) in stream_infs(&text) {
            seen.entry(pathway).or_default().push(uri);
        }
        prop_assert_eq!(seen.len(), named.len(), "pathways in:\n{}", text);
        for ((region, cdn, _, _), (vs, _)) in named.iter().zip(&regions) {
            let mut got = seen.get(region).cloned().unwrap_or_default();
            got.sort();
            let mut want: Vec<String> = vs
                .iter()
                .map(|v| format!("https://{cdn}/live/{}", v.path))
                .collect();
            want.sort();
            prop_assert_eq!(got, want, "region {}:\n{}", region, text);
        }
    }

    /// The steering manifest lists each pathway at most once, never a closed one while any is
    /// open, every open one, healthy ones first, and never nothing when there is a pathway.
    #[test]
    fn steering_never_sends_players_nowhere_or_to_a_closed_region(
        states in prop::collection::vec(
            ("[a-c]", any::<bool>(), prop::option::of(any::<bool>())),
            0..8,
        ),
        ttl in any::<u32>(),
    ) {
        let states: Vec<PathwayState> = states
            .into_iter()
            .map(|(pathway, open, healthy)| PathwayState { pathway, open, healthy })
            .collect();
        let decision = steering_manifest(&states, ttl, None);
        let priority = &decision.manifest.pathway_priority;
        let unique: BTreeSet<&String> = priority.iter().collect();
        prop_assert_eq!(unique.len(), priority.len(), "duplicates in {:?}", priority);
        prop_assert!((1..=3600).contains(&decision.manifest.ttl));
        if states.is_empty() {
            prop_assert!(priority.is_empty());
            return Ok(());
        }
        prop_assert!(!priority.is_empty(), "no pathway for {:?}", states);
        // The first entry of each pathway ID is the one the decision uses (it dedups by ID).
        let mut first: BTreeMap<&str, &PathwayState> = BTreeMap::new();
        for s in &states {
            first.entry(s.pathway.as_str()).or_insert(s);
        }
        let any_open = first.values().any(|s| s.open);
        prop_assert_eq!(decision.all_closed, !any_open);
        for (id, s) in &first {
            let listed = priority.iter().any(|p| p == id);
            if any_open {
                prop_assert_eq!(listed, s.open, "pathway {} in {:?}", id, priority);
            } else {
                prop_assert!(listed);
            }
        }
        let healthy_rank: Vec<bool> = priority
            .iter()
            .map(|p| first[p.as_str()].healthy == Some(true))
            .collect();
        prop_assert!(
            healthy_rank.windows(2).all(|w| w[0] >= w[1]),
            "healthy pathways not first: {:?}",
            priority
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The state-item decoder (an item anyone with access to the table may have written)
// ---------------------------------------------------------------------------------------------

fn attribute_value() -> impl Strategy<Value = AttributeValue> {
    prop_oneof![
        any::<bool>().prop_map(AttributeValue::Bool),
        "\\PC{0,12}".prop_map(AttributeValue::S),
        number_text().prop_map(AttributeValue::N),
        Just(AttributeValue::Null(true)),
        prop::collection::vec("[a-z]{0,3}", 0..3).prop_map(AttributeValue::Ss),
    ]
}

/// A number attribute as stored: mostly a valid version, sometimes an edge of the range.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (0u64..1_000_000).prop_map(|n| n.to_string()),
        1 => Just("18446744073709551614".to_owned()),
        1 => Just("18446744073709551615".to_owned()),
        1 => Just("18446744073709551616".to_owned()),
        1 => prop_oneof![Just("-1".to_owned()), Just("1e3".to_owned()), "[0-9.e+-]{0,8}"],
    ]
}

/// An item as the operator writes it (each attribute present or not), then up to three
/// attributes replaced by anything at all: most items are close to well-formed, so the decoder's
/// checks of each attribute are reached, not only the first problem.
fn attribute_map() -> impl Strategy<Value = HashMap<String, AttributeValue>> {
    let boolean = || prop::option::weighted(0.8, any::<bool>().prop_map(AttributeValue::Bool));
    let number = || prop::option::weighted(0.8, number_text().prop_map(AttributeValue::N));
    let text = || prop::option::weighted(0.8, "[a-z0-9/.-]{0,12}".prop_map(AttributeValue::S));
    let base = (
        (
            text(),
            boolean(),
            boolean(),
            any::<bool>(),
            prop::option::of(any::<bool>()),
        ),
        (number(), number(), number(), boolean(), boolean()),
        (text(), text(), text(), text(), text(), text()),
    )
        .prop_map(|(a, b, c)| {
            let (domain, distro_open, desired_open, fresh, health) = a;
            let (version, event_seq, announced, previous_open, previous_fresh) = b;
            let (region, cluster, name, reason, owner, updated_at) = c;
            let mut m = HashMap::new();
            let mut put = |k: &str, v: Option<AttributeValue>| {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            };
            put("domain", domain);
            put("distro_open", distro_open);
            put("desired_open", desired_open);
            // Health as the operator writes it: both attributes or neither; `fresh` decides
            // whether a contradiction is planted.
            if let Some(h) = health {
                put("playlist_fresh", Some(AttributeValue::Bool(h)));
                put(
                    "stale",
                    Some(AttributeValue::Bool(if fresh { !h } else { h })),
                );
            }
            put("version", version);
            put("event_seq", event_seq);
            put("announced_version", announced);
            put("previous_open", previous_open);
            put("previous_fresh", previous_fresh);
            put("region", region);
            put("cluster", cluster);
            put("name", name);
            put("reason", reason);
            put("owner", owner);
            put("updated_at", updated_at);
            m
        });
    let names = prop::sample::select(vec![
        "domain",
        "distro_open",
        "desired_open",
        "playlist_fresh",
        "stale",
        "version",
        "event_seq",
        "announced_version",
        "previous_open",
        "previous_fresh",
        "owner",
        "something_else",
    ]);
    (
        base,
        prop::collection::vec((names.prop_map(str::to_owned), attribute_value()), 0..3),
    )
        .prop_map(|(mut m, replacements)| {
            m.extend(replacements);
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Whatever is stored, decoding answers (no panic), and reads an item as open or closed only
    /// when `distro_open` is a DynamoDB boolean saying so, with a version below 2^64 - 1 (the
    /// next conditional write must not overflow).
    #[test]
    fn decoding_any_item_is_strict_and_never_panics(attrs in attribute_map()) {
        match Item::from_attributes(&attrs) {
            Ok(item) => {
                prop_assert_eq!(
                    attrs.get("distro_open"),
                    Some(&AttributeValue::Bool(item.desired.distro_open))
                );
                prop_assert!(item.version < u64::MAX);
                if let (Some(AttributeValue::Bool(f)), Some(AttributeValue::Bool(s))) =
                    (attrs.get("playlist_fresh"), attrs.get("stale"))
                {
                    prop_assert_ne!(f, s);
                }
                for key in ["distro_open", "desired_open", "playlist_fresh", "stale"] {
                    if let Some(v) = attrs.get(key) {
                        prop_assert!(matches!(v, AttributeValue::Bool(_)), "{key}: {v:?}");
                    }
                }
            }
            Err(malformed) => {
                prop_assert!(!malformed.problems.is_empty());
                prop_assert!(!malformed.describe().is_empty());
            }
        }
    }
}
