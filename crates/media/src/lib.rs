//! `media`: the pure image half of media-proxy. Synchronous, CPU only, no I/O: it never
//! touches the network, the file system, tokio, HTTP types or configuration files. The
//! service hands it bytes and typed operations and gets bytes back.
//!
//! Today it knows formats ([`format`]: detection from content and the capability table) and
//! draws the fallback [`placeholder`]. Decoding, transforms and encoding come with the media
//! engine; until then [`render`] says so with [`Error::NotImplemented`].

pub mod error;
pub mod format;
pub mod placeholder;

pub use error::Error;
pub use format::{Capabilities, Format, Sniffed};

/// The Misskey transforms, in the spec's order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Height ≤ 128 (emoji) or ≤ 320 (avatar), animation kept unless `still`.
    Emoji {
        still: bool,
    },
    Avatar {
        still: bool,
    },
    /// First frame inside 498×422.
    Static,
    /// First frame inside 200×200.
    Preview,
    /// 96×96 greyscale notification badge.
    Badge,
    /// An SVG with no flags, rasterised inside 2048×2048.
    SvgRaster,
}

/// An encoded output image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub format: Format,
}

/// The media engine's entry point: decode `input` (already known to be `format`), apply
/// `transform`, encode. Not implemented yet: it answers [`Error::NotImplemented`] rather
/// than anything that could pass for an image.
pub fn render(_input: &[u8], _format: Format, _transform: Transform) -> Result<Rendered, Error> {
    Err(Error::NotImplemented)
}
