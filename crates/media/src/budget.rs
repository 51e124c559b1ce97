//! What a render will cost, known before it starts, and how to stop one that runs too long.
//!
//! [`crate::prepare`] reads only headers (the same probe that enforces the limits) and
//! prices the render with the functions here: an upper estimate of the memory it will hold
//! at its peak: the input, the decoded
//! pixels at the size they will actually be decoded (JPEG at its reduced DCT scale), the
//! canvases an animation keeps, the output buffers, and a decoder's own whole-image buffers
//! (a progressive JPEG's coefficients: `jpeg::decode_buffers`, added by `prepare`). A
//! sandboxed worker is held to about this estimate, so what it misses fails a render. The service reserves that much from
//! its global memory budget before the work may start.
//!
//! [`Stop`] is checked between stages and between animation frames: a render whose client
//! went away, or whose deadline passed, ends at the next check with [`Error::Cancelled`] or
//! [`Error::TimedOut`].
//! A single C decode call cannot be interrupted, but each is bounded by the pixel limits.
//!
//! Uses `ops`, `probe`, `Error`, `Format`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::ops::Transform;
use crate::probe::{self, Probe};
use crate::{Error, Format};

/// Codec state, row buffers and bookkeeping that do not scale with the image.
const FIXED_OVERHEAD: u64 = 4 << 20;

fn rgba(w: u32, h: u32) -> u64 {
    u64::from(w) * u64::from(h) * 4
}

/// An SVG drawn at `drawn` and shown at `shown`: the text and the parsed tree (its nodes,
/// and outlines a few times the text), the raster, the layers groups with opacity, masks or
/// filters draw into (as much again), and the resized and encoded copies.
pub(crate) fn svg_cost(input_len: u64, tree: u64, drawn: (u32, u32), shown: (u32, u32)) -> u64 {
    FIXED_OVERHEAD
        .saturating_add(input_len.saturating_mul(4))
        .saturating_add(tree)
        .saturating_add(rgba(drawn.0, drawn.1).saturating_mul(4))
        .saturating_add(rgba(shown.0, shown.1).saturating_mul(3))
}

/// See [`crate::svg_parse_cost`]: the text's XML tree (held while usvg converts it) and
/// usvg's tree at its largest (elements times what a usvg node holds).
pub(crate) fn svg_parse_cost(input_len: u64, max_elements: u64) -> u64 {
    FIXED_OVERHEAD
        .saturating_add(input_len.saturating_mul(16))
        .saturating_add(crate::svg::cost::tree_bytes(max_elements))
}

/// A raster input whose header says `probe`, rendered with `transform` (`animated`: every
/// frame is kept).
pub(crate) fn raster_cost(
    probe: &Probe,
    format: Format,
    transform: Transform,
    animated: bool,
    input_len: u64,
) -> u64 {
    let (ow, oh) = probe.oriented();
    let geometry = transform.geometry(ow, oh);
    let (tw, th) = geometry.canvas;
    let (w, h) = (probe.width, probe.height);
    if animated {
        // The decoder's canvas, the frame handed out, a previous canvas (APNG/GIF disposal),
        // and the encoder's own canvases at the output size (current, previous, candidate).
        return FIXED_OVERHEAD + input_len + rgba(w, h) * 3 + rgba(tw, th) * 6;
    }
    let decoded = match format {
        Format::Jpeg => {
            // Decoded at the scale `jpeg::decode_scaled` picks (large enough for the part
            // shown), 3 or 4 bytes a pixel.
            let (dw, dh) = geometry.decode_size(ow, oh);
            let (sw, sh) = if probe::swaps_axes(probe.orientation) {
                (dh, dw)
            } else {
                (dw, dh)
            };
            let (w, h) = (w as usize, h as usize);
            let eighths = crate::jpeg::eighths_for(w, h, sw, sh);
            let scale = turbojpeg::ScalingFactor::new(eighths, 8);
            (scale.scale(w) as u64) * (scale.scale(h) as u64) * 4
        }
        // 16-bit samples are decoded wide, then narrowed: up to 8 bytes a pixel plus the copy.
        Format::Png | Format::Apng | Format::Tiff => rgba(w, h) * 3,
        // AVIF: the decoder's YUV planes (up to 16-bit 4:4:4 with alpha) and the RGB(A) copy.
        Format::Avif => rgba(w, h) * 3,
        // HEIC: the tiles' YUV planes, the RGBA canvas at 16 bits, the 8-bit copy (106 MB
        // peak measured for 12 MP: under this estimate).
        Format::Heic => rgba(w, h) * 4,
        // JPEG XL renders in 32-bit floats, in groups and whole-frame buffers: measured at
        // 379 MB peak for 12 MP (bench/formats-figures.sh), about 8 bytes per RGBA byte.
        // Priced at its largest decoded frame (which may be larger than the canvas).
        Format::Jxl => probe.largest_frame().saturating_mul(4 * 8),
        _ => rgba(w, h) * 2,
    };
    // Resized, oriented and encoded copies of the (small) result.
    FIXED_OVERHEAD + input_len + decoded + rgba(tw, th) * 4
}

/// A flag the service sets when nobody waits for the result any more, and a deadline.
/// Cheap to clone; every clone sees the same flag.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    cancelled: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl Stop {
    /// Stops at `deadline`, or earlier when [`Stop::cancel`] is called.
    pub fn at(deadline: Instant) -> Stop {
        Stop {
            cancelled: Arc::default(),
            deadline: Some(deadline),
        }
    }

    /// Asks the render to end at its next check.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    /// `Err(Cancelled)` once cancelled, `Err(TimedOut)` past the deadline.
    pub fn check(&self) -> Result<(), Error> {
        if self.cancelled.load(Ordering::Acquire) {
            return Err(Error::Cancelled);
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(Error::TimedOut),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{prepare, Limits};

    fn jpeg(w: usize, h: usize) -> Vec<u8> {
        let px = vec![128u8; w * h * 3];
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(80).unwrap();
        c.compress_to_vec(turbojpeg::Image {
            pixels: px.as_slice(),
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        })
        .unwrap()
    }

    #[test]
    fn a_jpeg_preview_costs_its_scaled_decode_not_its_full_size() {
        let big = jpeg(4000, 3000);
        let limits = Limits::default();
        let cost = |t| prepare(&big, Format::Jpeg, t, &limits).unwrap().cost();
        let (preview, static_) = (cost(Transform::Preview), cost(Transform::Static));
        // 1/8 scale: 500×375; full size would be 48 MB at 4 bytes a pixel.
        assert!(preview < 8 << 20, "{preview}");
        assert!(
            static_ > preview,
            "a larger target decodes at a larger scale"
        );
        assert!(static_ < 16 << 20, "{static_}");
    }

    #[test]
    fn over_limit_inputs_are_refused_when_prepared() {
        let big = jpeg(1000, 1000);
        let limits = Limits {
            max_pixels: 999_999,
            ..Limits::default()
        };
        let r = prepare(&big, Format::Jpeg, Transform::Preview, &limits);
        assert!(matches!(r, Err(Error::TooLarge(_))), "{r:?}");
    }

    #[test]
    fn stop_trips_on_cancel_and_on_the_deadline() {
        let stop = Stop::at(Instant::now() + std::time::Duration::from_secs(60));
        assert!(stop.check().is_ok());
        stop.clone().cancel();
        assert!(matches!(stop.check(), Err(Error::Cancelled)));
        let late = Stop::at(Instant::now());
        assert!(matches!(late.check(), Err(Error::TimedOut)));
        assert!(Stop::default().check().is_ok());
    }
}
