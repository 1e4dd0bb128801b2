//! Any bytes as a media playlist and as a master playlist, as the probe parses them, then fed to
//! the freshness tracker: no panic, and first sight of a playlist without a program date-time is
//! never fresh.
#![no_main]

use cvs_operator::probe::decision::{Policy, Tracker};
use cvs_operator::probe::fetch::{parse_master, parse_media};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let base = url::Url::parse("https://origin.example.com/live/master.m3u8").unwrap();
    let _ = parse_master(data, &base);
    let Ok(snap) = parse_media(data) else { return };
    let policy = Policy::default();
    let mut tracker = Tracker::new();
    tracker.observe(snap, 1_000, &policy);
    assert!(!tracker.is_fresh(), "first sight without a date is no evidence");
    // The same playlist again later: still nothing new, so still not fresh.
    tracker.observe(snap, 2_000, &policy);
    assert!(!tracker.is_fresh());
    tracker.tick(u64::MAX / 2, &policy);
    assert!(!tracker.is_fresh());
    let delay = tracker.next_poll_in_ms(false, 2_000, &policy, 60_000);
    assert!((50..=60_000).contains(&delay), "poll delay {delay}");
});
