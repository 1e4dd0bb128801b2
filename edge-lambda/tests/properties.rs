//! Property tests of the copilot's decisions: whatever a table item holds and whatever URI a
//! viewer asks for, the copilot answers 404 only for a region it knows to be closed, and a read
//! that fails or finds garbage never changes what it knows.

use edge_lambda::decide::decide;
use edge_lambda::{
    Config, Decision, ItemState, KnownState, ReadOutcome, Request, Trigger, decode_item, fold_read,
};
use proptest::prelude::*;

fn known_state() -> impl Strategy<Value = KnownState> {
    prop_oneof![
        Just(KnownState::Open),
        Just(KnownState::Closed),
        Just(KnownState::Unknown)
    ]
}

/// JSON shaped like a GetItem answer, with `distro_open` of any shape.
fn item_json() -> impl Strategy<Value = String> {
    let attr = prop_oneof![
        any::<bool>().prop_map(|b| format!(r#"{{"BOOL":{b}}}"#)),
        any::<bool>().prop_map(|b| format!(r#"{{"S":"{b}"}}"#)),
        any::<bool>().prop_map(|b| format!(r#"{{"BOOL":{b},"S":"x"}}"#)),
        "[0-9]{1,3}".prop_map(|n| format!(r#"{{"N":"{n}"}}"#)),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("{}".to_owned()),
        Just(r#"{"BOOL":"true"}"#.to_owned()),
    ];
    prop_oneof![
        attr.prop_map(|a| format!(r#"{{"domain":{{"S":"d1.example"}},"distro_open":{a}}}"#)),
        Just(r#"{"domain":{"S":"d1.example"}}"#.to_owned()),
        "\\PC{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Open or closed only from a DynamoDB boolean, alone in its attribute value.
    #[test]
    fn only_a_boolean_opens_or_closes(json in item_json()) {
        match decode_item(&json) {
            ItemState::Open => prop_assert!(json.contains(r#""distro_open":{"BOOL":true}"#), "{json}"),
            ItemState::Closed => prop_assert!(json.contains(r#""distro_open":{"BOOL":false}"#), "{json}"),
            ItemState::Missing | ItemState::Malformed(_) => {}
        }
    }

    /// A failed read or a malformed item keeps the known state; only a well-formed item or a
    /// missing one changes it.
    #[test]
    fn garbage_and_failures_change_nothing(previous in known_state(), json in item_json()) {
        prop_assert_eq!(fold_read(previous, &ReadOutcome::Failed), previous);
        let item = decode_item(&json);
        let after = fold_read(previous, &ReadOutcome::Item(item.clone()));
        match item {
            ItemState::Malformed(_) => prop_assert_eq!(after, previous),
            ItemState::Open => prop_assert_eq!(after, KnownState::Open),
            ItemState::Closed => prop_assert_eq!(after, KnownState::Closed),
            ItemState::Missing => prop_assert_eq!(after, KnownState::Unknown),
        }
    }

    /// A 404 only for a closed region, and only for the playlists and segments it covers.
    #[test]
    fn not_found_only_when_known_closed(
        state in known_state(),
        uri in "/[a-zA-Z0-9/._-]{0,40}",
        viewer in any::<bool>(),
    ) {
        let trigger = if viewer { Trigger::ViewerRequest } else { Trigger::OriginResponse };
        let config = Config::new("cvs-state", "us-east-1", trigger);
        let decision = decide(&config, Request { uri: &uri }, state);
        if decision == Decision::NotFound {
            prop_assert_eq!(state, KnownState::Closed);
            prop_assert!(config.covers(&uri));
        } else {
            prop_assert!(state != KnownState::Closed || !config.covers(&uri));
        }
    }
}
