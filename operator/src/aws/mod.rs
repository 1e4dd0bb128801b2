//! Thin shells over AWS services, with their pure decisions beside them.

pub mod edge;
