//! Errors.

/// Errors of the simulator and of its control operations.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// A control request is invalid (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// A named thing does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The simulator is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

impl SimError {
    /// HTTP status for the control API.
    pub fn status(&self) -> u16 {
        match self {
            SimError::BadRequest(_) | SimError::Config(_) => 400,
            SimError::NotFound(_) => 404,
            SimError::ShuttingDown => 503,
            SimError::Bind { .. } => 500,
        }
    }
}

/// Error a region's request handler returns to make hyper drop the connection without
/// writing a response (the `refuse` fault on a narrower scope than a whole region).
#[derive(Debug, thiserror::Error)]
#[error("connection refused by fault")]
pub(crate) struct Refused;
