//! Thin shells around AWS APIs: each takes decided bytes or items and performs the calls, with
//! typed errors the controller turns into conditions. Pure decisions that belong to one service
//! sit beside its shell.

pub mod edge;
pub mod s3;
