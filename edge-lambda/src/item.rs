//! Strict decoding of a state-table item, and what each read does to the state a container
//! knows. The operator writes `distro_open` as a DynamoDB `BOOL`; anything else (the attribute
//! missing, stored as the string "false", a number, a list) is *malformed*: it is never read as
//! open or closed, and the container keeps the state it last knew (or passes through when it
//! never knew one). An item that does not exist passes through: the operator never deletes
//! items (a removed instance is closed), so a missing item is a domain the copilot has no say on.

use serde_json::Value;

/// What one table read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemState {
    /// `distro_open` is `{"BOOL": true}`.
    Open,
    /// `distro_open` is `{"BOOL": false}`.
    Closed,
    /// No item with that key.
    Missing,
    /// An item exists but its `distro_open` is not a DynamoDB boolean; the text says why.
    Malformed(String),
}

/// Decodes the `Item` of a GetItem answer in DynamoDB's JSON form (`{"distro_open": {"BOOL":
/// true}, ...}`, as the AWS SDK returns it without the document client). `null`, an empty
/// string or an absent item mean [`ItemState::Missing`].
pub fn decode_item(json: &str) -> ItemState {
    let json = json.trim();
    if json.is_empty() || json == "null" || json == "undefined" {
        return ItemState::Missing;
    }
    let value: Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => return ItemState::Malformed(format!("item is not JSON: {e}")),
    };
    let Value::Object(item) = value else {
        return ItemState::Malformed("item is not a map".to_owned());
    };
    let Some(attr) = item.get("distro_open") else {
        return ItemState::Malformed("distro_open is missing".to_owned());
    };
    let Value::Object(attr) = attr else {
        return ItemState::Malformed("distro_open is not an attribute value".to_owned());
    };
    // Exactly one type key, as DynamoDB's wire format has.
    match (attr.len(), attr.get("BOOL")) {
        (1, Some(Value::Bool(true))) => ItemState::Open,
        (1, Some(Value::Bool(false))) => ItemState::Closed,
        _ => {
            let kind = attr.keys().next().map(String::as_str).unwrap_or("nothing");
            ItemState::Malformed(format!("distro_open is {kind}, not BOOL"))
        }
    }
}

/// The state a container acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownState {
    Open,
    Closed,
    /// Never read successfully (or the item is missing): pass through.
    Unknown,
}

/// The outcome of one attempt to read the item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Item(ItemState),
    /// The read failed or did not answer within the timeout.
    Failed,
}

/// The state known after a read, given the state known before it. A failed read or a malformed
/// item keeps the previous state (last known wins over a guess); a missing item makes it unknown.
pub fn fold_read(previous: KnownState, outcome: &ReadOutcome) -> KnownState {
    match outcome {
        ReadOutcome::Item(ItemState::Open) => KnownState::Open,
        ReadOutcome::Item(ItemState::Closed) => KnownState::Closed,
        ReadOutcome::Item(ItemState::Missing) => KnownState::Unknown,
        ReadOutcome::Item(ItemState::Malformed(_)) | ReadOutcome::Failed => previous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_items_decode() {
        let open = r#"{"domain":{"S":"d1.cloudfront.net"},"distro_open":{"BOOL":true},
                       "version":{"N":"7"},"stale":{"BOOL":false}}"#;
        assert_eq!(decode_item(open), ItemState::Open);
        assert_eq!(
            decode_item(r#"{"distro_open":{"BOOL":false}}"#),
            ItemState::Closed
        );
    }

    #[test]
    fn absent_items_are_missing() {
        for json in ["", "null", " undefined "] {
            assert_eq!(decode_item(json), ItemState::Missing, "{json:?}");
        }
    }

    #[test]
    fn anything_but_a_bool_is_malformed_never_open_or_closed() {
        for json in [
            r#"{"distro_open":{"S":"false"}}"#,
            r#"{"distro_open":{"S":"true"}}"#,
            r#"{"distro_open":{"N":"0"}}"#,
            r#"{"distro_open":{"BOOL":"false"}}"#,
            r#"{"distro_open":{"BOOL":1}}"#,
            r#"{"distro_open":{"BOOL":true,"S":"x"}}"#,
            r#"{"distro_open":{"NULL":true}}"#,
            r#"{"distro_open":true}"#,
            r#"{"distro_open":{}}"#,
            r#"{"domain":{"S":"d"}}"#,
            r#"[1,2]"#,
            r#"{"distro_open":"#,
        ] {
            assert!(
                matches!(decode_item(json), ItemState::Malformed(_)),
                "{json}"
            );
        }
    }

    #[test]
    fn failures_and_malformed_items_keep_the_last_known_state() {
        use KnownState::*;
        let malformed = ReadOutcome::Item(ItemState::Malformed("x".into()));
        for prev in [Open, Closed, Unknown] {
            assert_eq!(fold_read(prev, &ReadOutcome::Failed), prev);
            assert_eq!(fold_read(prev, &malformed), prev);
            assert_eq!(fold_read(prev, &ReadOutcome::Item(ItemState::Open)), Open);
            assert_eq!(
                fold_read(prev, &ReadOutcome::Item(ItemState::Closed)),
                Closed
            );
            assert_eq!(
                fold_read(prev, &ReadOutcome::Item(ItemState::Missing)),
                Unknown
            );
        }
    }
}
