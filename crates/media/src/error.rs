//! `media::Error`: everything the image engine can refuse or fail at. Each variant's doc
//! names who is at fault; the service maps them to statuses in one place.

/// An error from the image engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine has no implementation for this operation yet (server side; 501).
    #[error("image transforms are not implemented yet")]
    NotImplemented,
    /// Encoding our own output failed (server side; 500).
    #[error("encoding failed: {0}")]
    Encode(String),
}
