//! Pixel operations on frames: resize (fast_image_resize: SIMD, a [`Filter`] chosen per
//! render, alpha handled premultiplied) and orientation. One function per operation.
//!
//! Input: a [`Frame`] and a size or orientation; output: a [`Frame`]. Uses `pixels`,
//! `Error`.

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, MulDiv, PixelType, ResizeAlg, ResizeOptions};
use image::metadata::Orientation;

use crate::pixels::{Channels, Frame};
use crate::Error;

/// The resampling filter of a resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Lanczos, 3 lobes: the sharpest, and the reference's.
    Lanczos3,
    /// Catmull-Rom (bicubic): two thirds of Lanczos3's taps and no `sin` per coefficient
    /// (fast_image_resize recomputes the coefficients for every frame of an animation).
    /// Measured on the `emoji` workloads (docs/benchmarks.md): a smaller file and the same
    /// or a higher SSIM against a Lanczos downscale of the source, for less CPU.
    CatmullRom,
}

/// fast_image_resize's resizer (its scratch buffers, reused from frame to frame) and the
/// filter every resize it makes uses.
pub struct Resizer {
    inner: fast_image_resize::Resizer,
    filter: Filter,
}

impl std::fmt::Debug for Resizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resizer({:?})", self.filter)
    }
}

impl Resizer {
    pub fn new(filter: Filter) -> Resizer {
        Resizer {
            inner: fast_image_resize::Resizer::new(),
            filter,
        }
    }
}

/// Resizes to exactly `w`×`h` (the caller has already chosen the size). Same size: unchanged.
pub fn resize(frame: Frame, w: u32, h: u32, resizer: &mut Resizer) -> Result<Frame, Error> {
    if frame.width == w && frame.height == h {
        return Ok(frame);
    }
    resize_part(frame, None, w, h, resizer)
}

/// Resizes the part `crop` (left, top, width, height, in the frame's pixels) of `frame` to
/// exactly `w`×`h`; `None` takes the whole frame.
pub fn resize_part(
    frame: Frame,
    crop: Option<(f64, f64, f64, f64)>,
    w: u32,
    h: u32,
    resizer: &mut Resizer,
) -> Result<Frame, Error> {
    let pixel_type = match frame.channels {
        Channels::Rgb => PixelType::U8x3,
        Channels::Rgba => PixelType::U8x4,
    };
    let err = |e: &dyn std::fmt::Display| Error::Invalid(format!("resize: {e}"));
    let mut src = Image::from_vec_u8(frame.width, frame.height, frame.data, pixel_type)
        .map_err(|e| err(&e))?;
    let mut dst = Image::new(w.max(1), h.max(1), pixel_type);
    // Colours are filtered premultiplied by alpha, so transparent pixels lend none of their
    // colour to their neighbours. The frame is ours, so it is premultiplied in place:
    // `use_alpha(true)` would make a premultiplied copy of the whole source instead (a fresh
    // zeroed buffer of the source's size: 0.1 ms of a 500×500 emoji).
    let alpha = frame.channels == Channels::Rgba;
    let mul_div = MulDiv::default();
    if alpha {
        mul_div
            .multiply_alpha_inplace(&mut src)
            .map_err(|e| err(&e))?;
    }
    let filter = match resizer.filter {
        Filter::Lanczos3 => FilterType::Lanczos3,
        Filter::CatmullRom => FilterType::CatmullRom,
    };
    let mut options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(filter))
        .use_alpha(false);
    if let Some((left, top, cw, ch)) = crop {
        options = options.crop(left, top, cw, ch);
    }
    resizer
        .inner
        .resize(&src, &mut dst, &options)
        .map_err(|e| err(&e))?;
    if alpha {
        mul_div
            .divide_alpha_inplace(&mut dst)
            .map_err(|e| err(&e))?;
    }
    Ok(Frame {
        width: dst.width(),
        height: dst.height(),
        channels: frame.channels,
        data: dst.into_vec(),
        delay_ms: frame.delay_ms,
    })
}

/// Applies an EXIF orientation (rotations and flips), so the output needs no metadata.
pub fn orient(frame: Frame, orientation: Orientation) -> Result<Frame, Error> {
    if orientation == Orientation::NoTransforms {
        return Ok(frame);
    }
    let delay_ms = frame.delay_ms;
    let mut img = frame
        .into_dynamic()
        .ok_or_else(|| Error::Invalid("frame buffer size".into()))?;
    img.apply_orientation(orientation);
    let mut out = Frame::from_dynamic(img);
    out.delay_ms = delay_ms;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opaque red beside fully transparent green: filtered premultiplied, no green may reach
    /// a pixel that shows (a straight filter gives the edge a green-brown fringe), and
    /// the red stays red where it is partly transparent.
    #[test]
    fn transparent_colour_does_not_bleed() {
        for filter in [Filter::Lanczos3, Filter::CatmullRom] {
            no_bleed(filter);
        }
    }

    fn no_bleed(filter: Filter) {
        let (w, h) = (64u32, 64u32);
        let mut data = Vec::with_capacity((w * h * 4) as usize);
        for _ in 0..h {
            for x in 0..w {
                data.extend_from_slice(if x < 32 {
                    &[255, 0, 0, 255]
                } else {
                    &[0, 255, 0, 0]
                });
            }
        }
        let frame = Frame {
            width: w,
            height: h,
            channels: Channels::Rgba,
            data,
            delay_ms: 0,
        };
        let out = resize(frame, 13, 13, &mut Resizer::new(filter)).unwrap();
        assert_eq!(
            (out.width, out.height, out.data.len()),
            (13, 13, 13 * 13 * 4)
        );
        let mut edge = 0;
        for px in out.data.chunks_exact(4) {
            let [r, g, _, a] = [px[0], px[1], px[2], px[3]];
            if a > 0 {
                assert_eq!(g, 0, "{filter:?}: green bled into {px:?}");
            }
            if a > 16 {
                assert!(r >= 240, "{filter:?}: red lost in {px:?}");
            }
            if a > 0 && a < 255 {
                edge += 1;
            }
        }
        assert!(
            edge > 0,
            "no partly transparent pixels: the edge was not filtered"
        );
    }
}
