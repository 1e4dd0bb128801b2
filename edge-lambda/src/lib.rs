//! The copilot: the edge function that turns a closed region's responses into 404s so players
//! move to another region. This crate is the whole decision, as plain functions without I/O or
//! clock; it is compiled to WebAssembly and run by a small Node.js handler on Lambda@Edge
//! (`edge-lambda/js/index.js`, see `edge-lambda/README.md`), which does the table reads and the
//! caching around it.
//!
//! - [`config`]: the configuration the operator bakes into the zip (`config.json`).
//! - [`item`]: strict decoding of a state-table item, and what a read does to the known state.
//! - [`decide`]: pass through, or answer a CloudFront 404.

pub mod config;
pub mod decide;
pub mod item;
mod wasm;

pub use config::{Config, ConfigError, Trigger};
pub use decide::{Decision, Request, not_found_response};
pub use item::{ItemState, KnownState, ReadOutcome, decode_item, fold_read};
