//! The stale-playlist detector: decides, per rendition and per instance, whether an origin is
//! still publishing. `decision` is pure; `fetch` and `engine` do the I/O.

pub mod decision;
pub mod engine;
pub mod fetch;

pub use engine::{
    EngineSettings, HealthTransition, InstanceHealth, InstanceKey, ProbeEngine, ProbeTarget,
};
