//! The WebAssembly interface the Node.js handler calls (`edge-lambda/js/index.js`). States cross
//! the boundary as small integers so a warm invocation costs one call with one string:
//! 0 unknown, 1 open, 2 closed.

use wasm_bindgen::prelude::*;

use crate::config::Config;
use crate::decide::{Decision, Request, decide, not_found_response};
use crate::item::{ItemState, KnownState, ReadOutcome, decode_item, fold_read};

/// Added to [`Copilot::fold_item`]'s answer when the item was malformed, so the handler logs it.
pub const MALFORMED_FLAG: u8 = 8;

fn to_code(state: KnownState) -> u8 {
    match state {
        KnownState::Unknown => 0,
        KnownState::Open => 1,
        KnownState::Closed => 2,
    }
}

fn from_code(code: u8) -> KnownState {
    match code & 7 {
        1 => KnownState::Open,
        2 => KnownState::Closed,
        _ => KnownState::Unknown,
    }
}

/// One configured copilot; the handler makes one per container from `config.json`.
#[wasm_bindgen]
pub struct Copilot {
    config: Config,
    not_found: String,
}

#[wasm_bindgen]
impl Copilot {
    /// Parses and validates `config.json`; throws with the reason when it is refused.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str) -> Result<Copilot, JsError> {
        Copilot::from_json(config_json).map_err(|e| JsError::new(&e))
    }

    /// True when the event is answered with [`Copilot::not_found_response`].
    pub fn decide(&self, uri: &str, state: u8) -> bool {
        decide(&self.config, Request { uri }, from_code(state)) == Decision::NotFound
    }

    /// The 404 response object as JSON.
    #[wasm_bindgen(js_name = notFoundResponse)]
    pub fn not_found_response(&self) -> String {
        self.not_found.clone()
    }

    /// The state known after a successful read whose `Item` (DynamoDB JSON, or "" when there
    /// is none) is given, from the state known before. [`MALFORMED_FLAG`] is added when the item
    /// was malformed (and the previous state kept).
    #[wasm_bindgen(js_name = foldItem)]
    pub fn fold_item(&self, previous: u8, item_json: &str) -> u8 {
        let item = decode_item(item_json);
        let malformed = matches!(item, ItemState::Malformed(_));
        let code = to_code(fold_read(from_code(previous), &ReadOutcome::Item(item)));
        if malformed {
            code | MALFORMED_FLAG
        } else {
            code
        }
    }

    /// Why an item is malformed ("" when it is not), for the log.
    #[wasm_bindgen(js_name = describeItem)]
    pub fn describe_item(&self, item_json: &str) -> String {
        match decode_item(item_json) {
            ItemState::Malformed(why) => why,
            _ => String::new(),
        }
    }

    /// The table region to read from in this edge region.
    #[wasm_bindgen(js_name = readRegion)]
    pub fn read_region(&self, edge_region: &str) -> String {
        self.config.read_region(edge_region).to_owned()
    }

    pub fn table(&self) -> String {
        self.config.table.clone()
    }

    pub fn trigger(&self) -> String {
        self.config.trigger.event_type().to_owned()
    }

    #[wasm_bindgen(js_name = cacheMillis)]
    pub fn cache_millis(&self) -> u32 {
        self.config.cache_seconds * 1000
    }

    #[wasm_bindgen(js_name = readTimeoutMillis)]
    pub fn read_timeout_millis(&self) -> u32 {
        self.config.read_timeout_millis
    }

    #[wasm_bindgen(js_name = coldReadTimeoutMillis)]
    pub fn cold_read_timeout_millis(&self) -> u32 {
        self.config.cold_read_timeout_millis
    }
}

impl Copilot {
    fn from_json(config_json: &str) -> Result<Copilot, String> {
        let config = Config::from_json(config_json).map_err(|e| e.to_string())?;
        let not_found = not_found_response(&config).to_string();
        Ok(Copilot { config, not_found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str =
        r#"{"version":1,"table":"t","homeRegion":"us-east-1","trigger":"viewer-request"}"#;

    #[test]
    fn codes_round_trip_and_garbage_is_unknown() {
        let c = Copilot::from_json(CONFIG).unwrap();
        assert!(c.decide("/a.m3u8", 2));
        assert!(!c.decide("/a.m3u8", 1));
        assert!(!c.decide("/a.m3u8", 0));
        assert!(!c.decide("/a.m3u8", 4), "unknown codes pass through");
        assert_eq!(c.fold_item(0, r#"{"distro_open":{"BOOL":false}}"#), 2);
        assert_eq!(
            c.fold_item(2, r#"{"distro_open":{"S":"false"}}"#),
            2 | MALFORMED_FLAG
        );
        assert_eq!(
            c.fold_item(0, r#"{"distro_open":{"S":"false"}}"#),
            MALFORMED_FLAG
        );
        assert_eq!(c.fold_item(2, ""), 0);
        assert_eq!(
            c.describe_item(r#"{"distro_open":{"S":"false"}}"#),
            "distro_open is S, not BOOL"
        );
        assert_eq!(c.trigger(), "viewer-request");
        assert_eq!(c.cache_millis(), 5000);
        let r: serde_json::Value = serde_json::from_str(&c.not_found_response()).unwrap();
        assert_eq!(r["status"], "404");
    }

    #[test]
    fn bad_config_is_an_error() {
        assert!(Copilot::from_json("{}").is_err());
    }
}
