//! The Clustered Video Streams operator: keeps a live HLS event on air when a region fails.
//!
//! Pure decisions live in plain modules ([`openness`], [`conditions`], the `plan` stages of the
//! reconcilers) and are unit-tested directly; I/O stays in the reconcilers and the server.

pub mod aws;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod dashboard;
pub mod decide;
pub mod heap;
pub mod metrics;
pub mod notify;
pub mod openness;
pub mod probe;
pub mod resources;
pub mod server;
pub mod state;
