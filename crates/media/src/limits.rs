//! Resource limits checked from the header (an SVG: its parsed tree), before any pixel is
//! decoded.
//!
//! Input: a header's facts (size, frames, bytes); output: `Ok` or `Error::TooLarge`. Uses
//! nothing of ours (the `image` crate's limit type, to hand them to its decoders).

/// What one input may cost. Defaults: 50 MP per frame, 1000 frames, 200 MP over all frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Pixels in one frame (or the canvas of an animation).
    pub max_pixels: u64,
    /// Frames in an animation.
    pub max_frames: u32,
    /// Pixels summed over every frame that would be decoded.
    pub max_total_pixels: u64,
    /// Largest single allocation a decoder may make, in bytes.
    pub max_alloc: u64,
    /// Elements of an SVG once every `<use>` is expanded (usvg copies what each refers to).
    pub max_svg_elements: u64,
    /// Pixel operations an SVG render may need at its output size (painted areas, layers,
    /// filters; see `svg::cost`). resvg cannot be interrupted, so this is what bounds its CPU.
    pub max_svg_work: u64,
    /// Bytes of a video read for one still (box headers, the index, the samples of the
    /// frame): a video is read by range, never whole.
    pub max_video_read: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 50_000_000,
            max_frames: 1000,
            max_total_pixels: 200_000_000,
            max_alloc: 512 * 1024 * 1024,
            max_svg_elements: 100_000,
            max_svg_work: 300_000_000,
            max_video_read: 8 << 20,
        }
    }
}

impl Limits {
    /// The same limits in the `image` crate's terms (its decoders check them).
    pub(crate) fn for_image(&self) -> image::Limits {
        let side = u32::try_from(self.max_pixels).unwrap_or(u32::MAX);
        let mut l = image::Limits::default();
        l.max_image_width = Some(side);
        l.max_image_height = Some(side);
        l.max_alloc = Some(self.max_alloc);
        l
    }
}
