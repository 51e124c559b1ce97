//! What the remote pipeline answers, before it becomes an HTTP response: a passthrough
//! (the type, the name, which bytes follow) or a transformed variant. Input: built by
//! `remote`; output: read by `response`. Uses `cache` (the variant), `request` (the
//! resolved range), `source` (the stream's error type) and `media::Format`.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use media::Format;

use crate::cache::Variant;
use crate::request::range::Resolved;
use crate::source::SourceError;

/// What to answer, before it becomes an HTTP response.
#[derive(Debug)]
pub enum Reply {
    /// A browser-safe original, as is.
    Passthrough(Passthrough),
    /// The media engine's output (fresh or cached).
    Transformed { variant: Arc<Variant>, name: String },
}

/// A passthrough answer: the type, the name, and which bytes follow.
#[derive(Debug)]
pub struct Passthrough {
    pub format: Format,
    /// Download name without the output extension rule applied.
    pub name: String,
    /// Full length of the original, when known.
    pub total: Option<u64>,
    /// `Some` for a 206.
    pub range: Option<Resolved>,
    pub payload: Payload,
}

/// The body of a passthrough answer.
pub enum Payload {
    /// `HEAD`: headers only.
    Nothing,
    Bytes(Bytes),
    Stream(BoxStream<'static, Result<Bytes, SourceError>>),
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::Nothing => f.write_str("Nothing"),
            Payload::Bytes(b) => write!(f, "Bytes({})", b.len()),
            Payload::Stream(_) => f.write_str("Stream"),
        }
    }
}
