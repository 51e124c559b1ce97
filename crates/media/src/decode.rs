//! Bytes → frames. JPEG goes through libjpeg-turbo at a reduced DCT scale ([`crate::jpeg`]);
//! GIF through `gif` + `gif-dispose` ([`crate::gif`]); AVIF through libavif ([`crate::avif`]);
//! HEIC through heifer ([`crate::heic`]); JPEG XL through jxl-oxide ([`crate::jxl`]); ICO
//! from its directory ([`crate::ico`]); 16-bit APNG composited by [`crate::apng`]; TIFF through the `tiff` crate ([`crate::tiff`]);
//! PNG/APNG, WebP and BMP through the `image` crate's decoders,
//! under allocation and dimension limits. Animations are decoded one composited frame at a
//! time, so memory holds the canvas and one frame, never the whole animation.
//! Orientation is not applied here (it is cheaper on the resized frame).
//!
//! Input: bytes, their `Format` and the `Limits`; output: [`Frame`]s. Uses `avif`, `gif`,
//! `apng`, `heic`, `ico`, `jpeg`, `jxl`, `tiff`, `limits`, `pixels`, `Error`, `Format`.

use std::io::Cursor;

use image::{AnimationDecoder, ImageDecoder};

use crate::limits::Limits;
use crate::pixels::{Channels, Frame};
use crate::{Error, Format};

/// The first (or only) frame, decoded at least as large as `min_w`×`min_h` where the format
/// can decode at reduced size (JPEG), else at full size.
pub fn first_frame(
    bytes: &[u8],
    format: Format,
    min_w: u32,
    min_h: u32,
    limits: &Limits,
) -> Result<Frame, Error> {
    match format {
        Format::Jpeg => crate::jpeg::decode_scaled(bytes, min_w, min_h),
        Format::Avif => crate::avif::first_frame(bytes, limits),
        Format::Heic => crate::heic::first_frame(bytes, limits),
        Format::Jxl => crate::jxl::first_frame(bytes, limits),
        Format::Ico => crate::ico::first_frame(bytes, limits),
        Format::Tiff => crate::tiff::first_frame(bytes, limits),
        // The default image of an APNG may not be part of the animation: take frame one.
        // A GIF's first frame is composited on its screen like the others.
        Format::Apng | Format::Gif => frames(bytes, format, limits)?
            .next()
            .unwrap_or_else(|| Err(Error::Invalid("animation without frames".into()))),
        other => {
            let mut decoder = crate::probe::image_decoder(bytes, other)?;
            decoder.set_limits(limits.for_image())?;
            let img = image::DynamicImage::from_decoder(decoder)?;
            Ok(Frame::from_dynamic(img))
        }
    }
}

/// Every frame of an animated GIF, WebP, APNG or JPEG XL, composited on the canvas, in order.
pub fn frames<'a>(
    bytes: &'a [u8],
    format: Format,
    limits: &Limits,
) -> Result<Box<dyn Iterator<Item = Result<Frame, Error>> + 'a>, Error> {
    let cursor = Cursor::new(bytes);
    let frames = match format {
        Format::Gif => return Ok(Box::new(crate::gif::frames(bytes, limits)?)),
        Format::Jxl => return Ok(Box::new(crate::jxl::frames(bytes, limits)?)),
        Format::Apng if crate::apng::sixteen_bit(bytes) => {
            return Ok(Box::new(crate::apng::frames(bytes, limits)?))
        }
        Format::Webp => {
            let mut d = image::codecs::webp::WebPDecoder::new(cursor)?;
            d.set_limits(limits.for_image())?;
            d.into_frames()
        }
        Format::Apng | Format::Png => {
            let mut d = image::codecs::png::PngDecoder::new(cursor)?;
            d.set_limits(limits.for_image())?;
            d.apng()?.into_frames()
        }
        _ => return Err(Error::Unsupported("animation in this format")),
    };
    Ok(Box::new(frames.map(|frame| {
        let frame = frame?;
        let (num, den) = frame.delay().numer_denom_ms();
        let buffer = frame.into_buffer();
        Ok(Frame {
            width: buffer.width(),
            height: buffer.height(),
            channels: Channels::Rgba,
            data: buffer.into_raw(),
            delay_ms: num.checked_div(den).unwrap_or(0),
        })
    })))
}
