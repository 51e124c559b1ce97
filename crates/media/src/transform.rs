//! Pixel operations on frames: resize (fast_image_resize: SIMD, Lanczos3, alpha handled
//! premultiplied) and orientation. One function per operation.

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;

use crate::pixels::{Channels, Frame};
use crate::Error;

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
    let src = Image::from_vec_u8(frame.width, frame.height, frame.data, pixel_type)
        .map_err(|e| err(&e))?;
    let mut dst = Image::new(w.max(1), h.max(1), pixel_type);
    let mut options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .use_alpha(true);
    if let Some((left, top, cw, ch)) = crop {
        options = options.crop(left, top, cw, ch);
    }
    resizer
        .resize(&src, &mut dst, &options)
        .map_err(|e| err(&e))?;
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
