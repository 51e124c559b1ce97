//! VP8 key frames through the WebP decoder the engine already has: a lossy WebP image *is* a
//! VP8 key frame in a RIFF wrapper, so the key frame of a WebM is wrapped and decoded as one
//! (`image`'s WebP decoder, pure Rust). Inter frames cannot be decoded this way: a VP8
//! still is the key frame at or before the time asked for (up to a GOP early; the plan is
//! cut to it by [`super::bounded`]).
//!
//! Input: the samples of a plan (the key frame first); output: the key frame as RGB. Uses
//! `pixels`, `Error`.

use crate::pixels::Frame;
use crate::Error;

/// The key frame `samples[0]`, decoded. Never panics.
pub fn decode(samples: &[&[u8]]) -> Result<Frame, Error> {
    let frame = samples
        .first()
        .ok_or_else(|| Error::Invalid("VP8: no frame".into()))?;
    // A key frame: bit 0 of the frame tag clear, then the start code 9d 01 2a.
    let keyframe = frame.first().is_some_and(|b| b & 1 == 0)
        && frame.get(3..6) == Some(&[0x9d, 0x01, 0x2a][..]);
    if !keyframe {
        return Err(Error::Invalid(
            "VP8: decoding must start at a key frame".into(),
        ));
    }
    let len = u32::try_from(frame.len()).map_err(|_| Error::Invalid("VP8 frame size".into()))?;
    let padded = len + (len & 1);
    let mut webp = Vec::with_capacity(frame.len() + 21);
    webp.extend_from_slice(b"RIFF");
    webp.extend_from_slice(&(4 + 8 + padded).to_le_bytes());
    webp.extend_from_slice(b"WEBPVP8 ");
    webp.extend_from_slice(&len.to_le_bytes());
    webp.extend_from_slice(frame);
    if len & 1 == 1 {
        webp.push(0);
    }
    std::panic::catch_unwind(|| {
        image::load_from_memory_with_format(&webp, image::ImageFormat::WebP)
            .map(|img| Frame::from_dynamic(image::DynamicImage::ImageRgb8(img.to_rgb8())))
            .map_err(|e| Error::Invalid(format!("VP8 key frame: {e}")))
    })
    .unwrap_or(Err(Error::Panicked))
}
