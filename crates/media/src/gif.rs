//! GIF frames through the `gif` crate (indexed output) composited by `gif-dispose`, which
//! implements the disposal methods as browsers do. This is several times cheaper than the
//! `image` crate's compositor, which builds every canvas pixel through a closure.
//!
//! Frames that reach past the logical screen are clipped to it, as browsers show them. A
//! frame with no colour table at all (neither its own nor a global one) is read with a grey
//! ramp, as Pillow reads it ([`with_colour_table`]).
//!
//! Input: GIF bytes and the `Limits`; output: composited frames. Uses `limits`, `pixels`,
//! `Error`.

use std::borrow::Cow;
use std::io::Cursor;
use std::num::NonZeroU64;

use crate::limits::Limits;
use crate::pixels::{Channels, Frame};
use crate::Error;

impl From<gif::DecodingError> for Error {
    fn from(e: gif::DecodingError) -> Self {
        Error::Invalid(format!("GIF: {e}"))
    }
}

impl From<gif_dispose::Error> for Error {
    fn from(e: gif_dispose::Error) -> Self {
        Error::Invalid(format!("GIF: {e}"))
    }
}

/// Every frame of a GIF, composited on its screen, one at a time (memory holds the screen
/// and the frame being decoded, never the whole animation).
pub fn frames<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<impl Iterator<Item = Result<Frame, Error>> + 'a, Error> {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    if let Some(bytes) = NonZeroU64::new(limits.max_alloc) {
        options.set_memory_limit(gif::MemoryLimit::Bytes(bytes));
    }
    let mut decoder = options.read_info(Cursor::new(with_colour_table(bytes)))?;
    let mut screen: Option<Screen> = None;
    let mut done = false;
    Ok(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let step = next(&mut decoder, &mut screen);
        done = !matches!(step, Ok(Some(_))); // stop after the last frame or the first error
        step.transpose()
    }))
}

/// The compositing screen and its size.
struct Screen {
    pixels: gif_dispose::Screen,
    width: u16,
    height: u16,
}

/// The `gif` crate refuses a frame with no colour table at all (neither its own nor a
/// global one): a file without a global table is read from a copy given a grey ramp as
/// its global table. Frames with their own table are unaffected.
/// Hand-written: it is the screen descriptor's flag byte and 768 bytes after it.
fn with_colour_table(bytes: &[u8]) -> Cow<'_, [u8]> {
    const SCREEN_END: usize = 13; // "GIF89a", width, height, flags, background, aspect
    match bytes.get(10) {
        Some(flags) if flags & 0x80 == 0 && bytes.len() > SCREEN_END => {
            let mut copy = Vec::with_capacity(bytes.len() + 768);
            copy.extend_from_slice(bytes.get(..SCREEN_END).unwrap_or_default());
            if let Some(f) = copy.get_mut(10) {
                *f |= 0x80 | 0x07; // a global table of 2^(7+1) entries
            }
            // Index i is grey i, as Pillow shows such files (GIF leaves it to the decoder).
            copy.extend((0..=255u8).flat_map(|v| [v, v, v]));
            copy.extend_from_slice(bytes.get(SCREEN_END..).unwrap_or_default());
            Cow::Owned(copy)
        }
        _ => Cow::Borrowed(bytes),
    }
}

fn next(
    decoder: &mut gif::Decoder<Cursor<Cow<'_, [u8]>>>,
    screen: &mut Option<Screen>,
) -> Result<Option<Frame>, Error> {
    // The screen is made at the first frame: one larger than the logical screen enlarges
    // it (as Pillow and the probe do); later frames are clipped to it.
    let first = screen.is_none().then(|| {
        let palette = decoder.global_palette().map(<[u8]>::to_vec);
        (decoder.width(), decoder.height(), palette)
    });
    let Some(frame) = decoder.read_next_frame()? else {
        return Ok(None);
    };
    if let Some((w, h, palette)) = first {
        let width = w.max(frame.left.saturating_add(frame.width));
        let height = h.max(frame.top.saturating_add(frame.height));
        let palette = palette
            .as_deref()
            .and_then(|p| p.get(..p.len() / 3 * 3))
            .map(rgb::bytemuck::cast_slice::<u8, rgb::RGB8>);
        *screen = Some(Screen {
            pixels: gif_dispose::Screen::new(usize::from(width), usize::from(height), palette),
            width,
            height,
        });
    }
    let Some(Screen {
        pixels: screen,
        width,
        height,
    }) = screen.as_mut()
    else {
        return Err(Error::Invalid("GIF: no screen".into()));
    };
    let (width, height) = (*width, *height);
    // Clip to the screen (the compositor expects the frame to fit).
    let w = frame.width.min(width.saturating_sub(frame.left));
    let h = frame.height.min(height.saturating_sub(frame.top));
    if w > 0 && h > 0 {
        let full = imgref::ImgRef::new(
            &frame.buffer[..],
            usize::from(frame.width),
            usize::from(frame.height),
        );
        let clipped = full.sub_image(0, 0, usize::from(w), usize::from(h));
        let palette = frame
            .palette
            .as_deref()
            .and_then(|p| p.get(..p.len() / 3 * 3))
            .map(rgb::bytemuck::cast_slice::<u8, rgb::RGB8>);
        screen.blit(
            palette,
            frame.dispose,
            frame.left,
            frame.top,
            clipped,
            frame.transparent,
        )?;
    }
    let delay_ms = u32::from(frame.delay) * 10;
    let pixels = screen.pixels_rgba();
    let data = rgb::bytemuck::cast_slice::<rgb::RGBA8, u8>(pixels.buf()).to_vec();
    Ok(Some(Frame {
        width: u32::from(width),
        height: u32::from(height),
        channels: Channels::Rgba,
        data,
        delay_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4×4 GIF: frame 1 red over the whole screen; frame 2 a 4×4 blue block at (2, 2),
    /// half outside the screen, with index 2 transparent in its top-left pixel.
    fn overhanging() -> Vec<u8> {
        let palette = [255, 0, 0, 0, 0, 255, 0, 255, 0];
        let mut out = Vec::new();
        {
            let mut enc = gif::Encoder::new(&mut out, 4, 4, &palette).unwrap();
            let mut red = gif::Frame::from_indexed_pixels(4, 4, vec![0; 16], None);
            red.delay = 5;
            enc.write_frame(&red).unwrap();
            let mut pixels = vec![1; 16];
            pixels[0] = 2;
            let mut blue = gif::Frame::from_indexed_pixels(4, 4, pixels, Some(2));
            blue.left = 2;
            blue.top = 2;
            blue.delay = 7;
            enc.write_frame(&blue).unwrap();
        }
        out
    }

    fn pixel(f: &Frame, x: usize, y: usize) -> &[u8] {
        let at = (y * f.width as usize + x) * 4;
        &f.data[at..at + 4]
    }

    #[test]
    fn frames_are_composited_and_clipped_to_the_screen() {
        let bytes = overhanging();
        let frames: Vec<Frame> = frames(&bytes, &Limits::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(frames.len(), 2);
        let (one, two) = (&frames[0], &frames[1]);
        assert_eq!((one.width, one.height, one.delay_ms), (4, 4, 50));
        assert_eq!((two.width, two.height, two.delay_ms), (4, 4, 70));
        assert_eq!(pixel(one, 3, 3), [255, 0, 0, 255]);
        // Frame 2 keeps frame 1 where it does not draw, and where its pixel is transparent.
        assert_eq!(pixel(two, 0, 0), [255, 0, 0, 255]);
        assert_eq!(pixel(two, 2, 2), [255, 0, 0, 255]);
        assert_eq!(pixel(two, 3, 2), [0, 0, 255, 255]);
        assert_eq!(pixel(two, 3, 3), [0, 0, 255, 255]);
    }

    #[test]
    fn frames_without_any_colour_table_are_grey() {
        // A 2×1 GIF of indices 0x80 and 0x20, written with a 256-colour global table of
        // red, which is then cut out: no table at all is left.
        let mut bytes = Vec::new();
        {
            let palette: Vec<u8> = (0..256).flat_map(|_| [255, 0, 0]).collect();
            let mut enc = gif::Encoder::new(&mut bytes, 2, 1, &palette).unwrap();
            let frame = gif::Frame::from_indexed_pixels(2, 1, vec![0x80, 0x20], None);
            enc.write_frame(&frame).unwrap();
        }
        assert_eq!(bytes[10] & 0x87, 0x87, "a global table of 256 colours");
        bytes[10] &= !0x87;
        bytes.drain(13..13 + 768);
        let frames: Vec<Frame> = frames(&bytes, &Limits::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(pixel(&frames[0], 0, 0), [0x80, 0x80, 0x80, 255]);
        assert_eq!(pixel(&frames[0], 1, 0), [0x20, 0x20, 0x20, 255]);
    }

    #[test]
    fn garbage_after_the_header_is_an_error_not_a_panic() {
        let mut bytes = overhanging();
        bytes.truncate(30);
        let result: Result<Vec<Frame>, Error> =
            frames(&bytes, &Limits::default()).and_then(|f| f.collect());
        assert!(matches!(result, Err(Error::Invalid(_))), "{result:?}");
    }
}
