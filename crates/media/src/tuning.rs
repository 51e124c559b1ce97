//! The per-transform choices the measurements made (docs/benchmarks.md, "encoder frontier"
//! and "Emoji: the resize filter and one segment"): which resampling filter a transform's
//! output is resized with, and which WebP settings a remote-mode animation is encoded with.
//! One place, so a new measurement changes one function.
//!
//! Input: a [`Transform`]; output: a [`Filter`] or [`WebpSettings`]. Uses `ops`,
//! `transform`, `encode`.

use crate::encode::{WebpSettings, MISSKEY_ANIMATED_WEBP, MISSKEY_EMOJI_ANIMATED_WEBP};
use crate::ops::Transform;
use crate::transform::Filter;

/// The resampling filter for `transform`'s output: Catmull-Rom for `emoji` (a 128 px output
/// from anything larger: measured smaller and no worse than Lanczos3, for less CPU, see
/// [`Filter`]), Lanczos3 (the reference's) for everything else.
pub fn resize_filter(transform: Transform) -> Filter {
    match transform {
        Transform::Emoji { .. } => Filter::CatmullRom,
        _ => Filter::Lanczos3,
    }
}

/// The WebP settings of a remote-mode animation (no output asked for) for `transform`.
pub fn misskey_animation(transform: Transform) -> WebpSettings {
    match transform {
        Transform::Emoji { .. } => MISSKEY_EMOJI_ANIMATED_WEBP,
        _ => MISSKEY_ANIMATED_WEBP,
    }
}
