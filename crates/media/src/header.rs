//! What a header says, and whether that is within the limits: the [`Probe`] every format's
//! header reader returns (`probe.rs`, `avif.rs`), with the display size after orientation
//! and the limit check. Input: the values read; output: accept or [`Error::TooLarge`] /
//! [`Error::Invalid`]. Uses only `image`'s orientation type and the limits.

use image::metadata::Orientation;

use crate::limits::Limits;
use crate::Error;

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Stored width and height (before orientation), of the canvas for animations.
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    pub orientation: Orientation,
    /// The embedded ICC colour profile, if any.
    pub icc: Option<Vec<u8>>,
    /// Every frame the decoder decodes, shown or not, when a format has more than it shows
    /// (JPEG XL's zero-length and reference-only frames): the limits count these too.
    pub coded: Option<Coded>,
}

/// The frames a decoder decodes to render the shown ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coded {
    pub frames: u32,
    /// Their pixels, all added up.
    pub pixels: u64,
    /// The pixels of the largest one (a frame may be larger than the canvas it is shown on).
    pub largest: u64,
}

impl Probe {
    /// A single upright frame of `width`×`height` with no colour profile.
    pub fn still(width: u32, height: u32) -> Probe {
        Probe {
            width,
            height,
            frames: 1,
            orientation: Orientation::NoTransforms,
            icc: None,
            coded: None,
        }
    }

    /// Pixels of the largest frame decoded.
    pub fn largest_frame(&self) -> u64 {
        let shown = u64::from(self.width) * u64::from(self.height);
        self.coded.map_or(shown, |c| c.largest.max(shown))
    }

    /// Width and height as displayed, after the EXIF orientation.
    pub fn oriented(&self) -> (u32, u32) {
        if swaps_axes(self.orientation) {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }

    /// Refuses inputs over `limits` (422), before decoding: the shown frames, and every
    /// frame decoded ([`Probe::coded`]).
    pub fn check(&self, limits: &Limits) -> Result<(), Error> {
        let pixels = u64::from(self.width) * u64::from(self.height);
        if self.width == 0 || self.height == 0 {
            return Err(Error::Invalid("zero-sized image".into()));
        }
        if pixels > limits.max_pixels {
            return Err(Error::TooLarge(format!(
                "{}×{} is over {} pixels",
                self.width, self.height, limits.max_pixels
            )));
        }
        if self.frames > limits.max_frames {
            return Err(Error::TooLarge(format!(
                "{} frames is over {}",
                self.frames, limits.max_frames
            )));
        }
        if pixels.saturating_mul(u64::from(self.frames)) > limits.max_total_pixels {
            return Err(Error::TooLarge(format!(
                "{} frames of {}×{} is over {} pixels in all",
                self.frames, self.width, self.height, limits.max_total_pixels
            )));
        }
        if let Some(coded) = self.coded {
            if coded.largest > limits.max_pixels {
                return Err(Error::TooLarge(format!(
                    "a decoded frame of {} pixels, over {}",
                    coded.largest, limits.max_pixels
                )));
            }
            if coded.frames > limits.max_frames {
                return Err(Error::TooLarge(format!(
                    "{} frames decoded ({} shown) is over {}",
                    coded.frames, self.frames, limits.max_frames
                )));
            }
            if coded.pixels > limits.max_total_pixels {
                return Err(Error::TooLarge(format!(
                    "{} frames decoded of {} pixels in all, over {}",
                    coded.frames, coded.pixels, limits.max_total_pixels
                )));
            }
        }
        Ok(())
    }
}

/// Orientations 5–8 turn the image a quarter: width and height swap.
pub fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}
