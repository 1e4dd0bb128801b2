//! Any table item (as anyone with access to the table may write it) through the operator's
//! strict decoder: no panic, and an item read as well-formed has a boolean `distro_open` and a
//! version the next conditional write can advance.
#![no_main]

use aws_sdk_dynamodb::types::AttributeValue;
use cvs_operator::state::Item;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

#[derive(arbitrary::Arbitrary, Debug)]
enum Value {
    S(String),
    N(String),
    Bool(bool),
    Null,
    Ss(Vec<String>),
    L(Vec<bool>),
}

const NAMES: [&str; 16] = [
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
    "region",
    "cluster",
    "name",
    "reason",
    "owner",
    "updated_at",
];

fuzz_target!(|attrs: Vec<(u8, Value)>| {
    let map: HashMap<String, AttributeValue> = attrs
        .into_iter()
        .map(|(k, v)| {
            let value = match v {
                Value::S(s) => AttributeValue::S(s),
                Value::N(n) => AttributeValue::N(n),
                Value::Bool(b) => AttributeValue::Bool(b),
                Value::Null => AttributeValue::Null(true),
                Value::Ss(s) => AttributeValue::Ss(s),
                Value::L(l) => AttributeValue::L(l.into_iter().map(AttributeValue::Bool).collect()),
            };
            (NAMES[usize::from(k) % NAMES.len()].to_owned(), value)
        })
        .collect();
    if let Ok(item) = Item::from_attributes(&map) {
        assert_eq!(
            map.get("distro_open"),
            Some(&AttributeValue::Bool(item.desired.distro_open))
        );
        assert!(item.version < u64::MAX);
        assert!(item.event_seq.is_none_or(|s| s < u64::MAX));
    }
});
