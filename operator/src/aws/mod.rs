//! Thin shells around AWS APIs: each takes decided bytes or items and performs the calls, with
//! typed errors the controller turns into conditions.

pub mod s3;
