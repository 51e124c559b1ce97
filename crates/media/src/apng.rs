//! 16-bit APNG frames, composited here: the `image` crate's APNG reader takes 8-bit frames
//! only. The `png` crate decodes each frame (narrowed to 8 bits, expanded to RGBA or grey
//! with alpha), and the frames are drawn on the canvas by the APNG rules: `blend_op`
//! (source or over), `dispose_op` (none, background, previous) after the frame is shown.
//! Hand-written because no crate composites 16-bit APNG; 8-bit APNG stays with `image`.
//!
//! Input: APNG bytes and the `Limits`; output: composited frames, one at a time (memory holds
//! the canvas, the saved canvas for `previous`, and one frame). Uses `limits`, `pixels`,
//! `Error`.

use std::io::Cursor;

use png::{BlendOp, DisposeOp, Transformations};

use crate::limits::Limits;
use crate::pixels::{Channels, Frame};
use crate::Error;

/// Whether a PNG's header says 16 bits a sample (the IHDR bit depth byte).
pub fn sixteen_bit(bytes: &[u8]) -> bool {
    bytes.get(24) == Some(&16)
}

fn invalid(e: png::DecodingError) -> Error {
    Error::Invalid(format!("APNG: {e}"))
}

/// Every frame, composited, in order, with its delay.
pub fn frames<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<impl Iterator<Item = Result<Frame, Error>> + 'a, Error> {
    let alloc = usize::try_from(limits.max_alloc).unwrap_or(usize::MAX);
    let mut decoder =
        png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: alloc });
    decoder.set_transformations(
        Transformations::EXPAND | Transformations::STRIP_16 | Transformations::ALPHA,
    );
    let mut reader = decoder.read_info().map_err(invalid)?;
    let (width, height) = reader.info().size();
    let frames = reader
        .info()
        .animation_control
        .map_or(1, |a| a.num_frames.max(1));
    // The default image is part of the animation only when a fcTL comes before it.
    let skip_default =
        reader.info().animation_control.is_some() && reader.info().frame_control.is_none();
    let pixels = width as usize * height as usize;
    let mut canvas = vec![0u8; pixels * 4];
    let mut buf = vec![
        0u8;
        reader
            .output_buffer_size()
            .ok_or_else(|| Error::TooLarge("APNG".into()))?
    ];
    let mut left = frames as usize + usize::from(skip_default);
    let mut first = true;
    Ok(std::iter::from_fn(move || loop {
        if left == 0 {
            return None;
        }
        left -= 1;
        let step = (|| -> Result<Option<Frame>, Error> {
            let out = reader.next_frame(&mut buf).map_err(invalid)?;
            if std::mem::take(&mut first) && skip_default {
                return Ok(None);
            }
            let control = reader.info().frame_control.unwrap_or_default();
            let (fw, fh) = (out.width as usize, out.height as usize);
            let grey = matches!(out.color_type, png::ColorType::GrayscaleAlpha);
            let step = if grey { 2 } else { 4 };
            let saved = matches!(control.dispose_op, DisposeOp::Previous).then(|| canvas.clone());
            let (x0, y0) = (control.x_offset as usize, control.y_offset as usize);
            for y in 0..fh {
                let row = buf.get(y * out.line_size..).unwrap_or_default();
                for x in 0..fw {
                    let (cx, cy) = (x0 + x, y0 + y);
                    if cx >= width as usize || cy >= height as usize {
                        continue;
                    }
                    let s = row.get(x * step..x * step + step).unwrap_or_default();
                    let src = match *s {
                        [v, a] => [v, v, v, a],
                        [r, g, b, a] => [r, g, b, a],
                        _ => continue,
                    };
                    let at = (cy * width as usize + cx) * 4;
                    let Some(dst) = canvas.get_mut(at..at + 4) else {
                        continue;
                    };
                    match control.blend_op {
                        BlendOp::Source => dst.copy_from_slice(&src),
                        BlendOp::Over => over(dst, src),
                    }
                }
            }
            let frame = Frame {
                width,
                height,
                channels: Channels::Rgba,
                data: canvas.clone(),
                delay_ms: delay_ms(control.delay_num, control.delay_den),
            };
            match control.dispose_op {
                DisposeOp::None => {}
                DisposeOp::Background => {
                    for y in y0..(y0 + fh).min(height as usize) {
                        let from = (y * width as usize + x0.min(width as usize)) * 4;
                        let to = (y * width as usize + (x0 + fw).min(width as usize)) * 4;
                        if let Some(region) = canvas.get_mut(from..to) {
                            region.fill(0);
                        }
                    }
                }
                DisposeOp::Previous => {
                    if let Some(saved) = saved {
                        canvas = saved;
                    }
                }
            }
            Ok(Some(frame))
        })();
        match step {
            Ok(None) => continue,
            Ok(Some(frame)) => return Some(Ok(frame)),
            Err(e) => {
                left = 0;
                return Some(Err(e));
            }
        }
    }))
}

/// `src` drawn over `dst` (straight alpha).
fn over(dst: &mut [u8], src: [u8; 4]) {
    let sa = u32::from(src[3]);
    if sa == 255 {
        dst.copy_from_slice(&src);
        return;
    }
    if sa == 0 {
        return;
    }
    let da = u32::from(dst.get(3).copied().unwrap_or(0));
    let out_a = sa * 255 + da * (255 - sa); // ×255
    if out_a == 0 {
        return;
    }
    for (c, d) in dst.iter_mut().take(3).enumerate() {
        let s = u32::from(src.get(c).copied().unwrap_or(0));
        let v = (s * sa * 255 + u32::from(*d) * da * (255 - sa)) / out_a;
        *d = v.min(255) as u8;
    }
    if let Some(a) = dst.get_mut(3) {
        *a = (out_a / 255).min(255) as u8;
    }
}

/// The frame's delay; a zero denominator means hundredths (the APNG rule).
fn delay_ms(num: u16, den: u16) -> u32 {
    let den = if den == 0 { 100 } else { u32::from(den) };
    u32::from(num) * 1000 / den
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_corpus as corpus;

    #[test]
    fn sixteen_bit_frames_are_composited_with_their_delays() {
        // Three 20×20 frames, red, green, blue, 3/10 s each (as Pillow reads them).
        let bytes = corpus("apng/image-rs/rgba16.png");
        assert!(sixteen_bit(&bytes));
        let frames: Vec<Frame> = frames(&bytes, &Limits::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let seen: Vec<([u8; 4], u32)> = frames
            .iter()
            .map(|f| {
                assert_eq!((f.width, f.height), (20, 20));
                let px = <[u8; 4]>::try_from(&f.data[(10 * 20 + 10) * 4..][..4]).unwrap();
                (px, f.delay_ms)
            })
            .collect();
        assert_eq!(
            seen,
            [
                ([255, 0, 0, 255], 300),
                ([0, 255, 0, 255], 300),
                ([0, 0, 255, 255], 300)
            ]
        );
    }

    #[test]
    fn blending_over_keeps_what_shows_through() {
        let mut dst = [0, 0, 0, 255];
        over(&mut dst, [0, 0, 255, 128]);
        assert_eq!(dst, [0, 0, 128, 255]);
        let mut clear = [0, 0, 0, 0];
        over(&mut clear, [200, 100, 0, 64]);
        assert_eq!(clear, [200, 100, 0, 64]);
    }
}
