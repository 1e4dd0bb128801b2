//! The stale-playlist detector: decides, per rendition and per instance, whether an origin is
//! still publishing. `decision` is pure; `fetch` and `engine` do the I/O; `redact` strips
//! secrets from URLs before they leave the probe (the controllers use it too).

pub mod confirm;
pub mod credentials;
pub mod decision;
pub mod destination;
pub mod engine;
pub mod fetch;
pub mod host_queue;
pub mod llhls;
pub mod redact;
pub mod scan;
pub mod segments;

pub use engine::{EngineSettings, InstanceHealth, InstanceKey, ProbeEngine, ProbeTarget};
pub use redact::{redact, redact_text};
