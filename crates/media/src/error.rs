//! `media::Error`: everything the image engine can refuse or fail at. Each variant's doc
//! names who is at fault; the service maps them to statuses in one place.
//!
//! Input: the codecs' failures; output: an [`Error`]. Uses nothing of ours.

/// An error from the image engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The format is recognised but this build cannot decode it (input; 422).
    #[error("decoding {0} is not supported")]
    Unsupported(&'static str),
    /// The bytes do not decode (input; 422).
    #[error("cannot decode image: {0}")]
    Invalid(String),
    /// Over a pixel, frame or allocation limit, known from the header (input; 422).
    #[error("image over the limits: {0}")]
    TooLarge(String),
    /// A codec panicked on this input; caught and refused (input; 422).
    #[error("decoder failed on this input")]
    Panicked,
    /// The badge would be a nearly uniform square: the client draws its own icon (404).
    #[error("badge image is nearly uniform")]
    UniformBadge,
    /// The processing deadline passed before the render finished (input; 422).
    #[error("processing took longer than the deadline")]
    TimedOut,
    /// Nobody waits for this render any more (its client left; the status is never seen).
    #[error("render cancelled")]
    Cancelled,
    /// Encoding our own output failed (server side; 500).
    #[error("encoding failed: {0}")]
    Encode(String),
}

impl From<image::ImageError> for Error {
    fn from(e: image::ImageError) -> Self {
        match e {
            image::ImageError::Limits(l) => Error::TooLarge(l.to_string()),
            image::ImageError::Unsupported(u) => Error::Invalid(u.to_string()),
            other => Error::Invalid(other.to_string()),
        }
    }
}
