//! Any configuration file, table item and URI for the copilot: no panic, and a 404 only for a
//! region the copilot knows to be closed.
#![no_main]

use edge_lambda::decide::decide;
use edge_lambda::{Config, Decision, KnownState, ReadOutcome, Request, decode_item, fold_read};
use libfuzzer_sys::fuzz_target;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input<'a> {
    config: &'a str,
    item: &'a str,
    uri: &'a str,
    previous: u8,
}

fuzz_target!(|input: Input<'_>| {
    let Ok(config) = Config::from_json(input.config) else {
        return;
    };
    let _ = config.read_region(input.uri);
    let previous = match input.previous % 3 {
        0 => KnownState::Open,
        1 => KnownState::Closed,
        _ => KnownState::Unknown,
    };
    let state = fold_read(previous, &ReadOutcome::Item(decode_item(input.item)));
    if decide(&config, Request { uri: input.uri }, state) == Decision::NotFound {
        assert_eq!(state, KnownState::Closed);
        let response = edge_lambda::not_found_response(&config);
        assert_eq!(response["status"], "404");
    }
});
