//! The placeholder image answered for `fallback` requests when anything goes wrong after
//! the URL was read. Drawn here, once, as a small PNG: a light grey tile with a darker
//! frame and a diagonal, the usual "image missing" mark. Input: nothing. Output: PNG bytes.
//!
//! Uses `Error`.

use crate::Error;

/// Side of the square placeholder, in pixels.
pub const SIZE: u32 = 64;

const BACKGROUND: [u8; 4] = [0xE8, 0xE8, 0xE8, 0xFF];
const INK: [u8; 4] = [0x9E, 0x9E, 0x9E, 0xFF];

/// Encodes the placeholder as an RGBA PNG.
pub fn png() -> Result<Vec<u8>, Error> {
    let mut rgba = Vec::with_capacity((SIZE * SIZE * 4) as usize);
    for y in 0..SIZE {
        for x in 0..SIZE {
            let frame = x < 2 || y < 2 || x >= SIZE - 2 || y >= SIZE - 2;
            let diagonal = x.abs_diff(y) < 2;
            rgba.extend_from_slice(if frame || diagonal { &INK } else { &BACKGROUND });
        }
    }
    crate::encode::png_rgba(SIZE, SIZE, &rgba)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_decodes_with_an_independent_decoder() -> Result<(), Box<dyn std::error::Error>> {
        let bytes = png()?;
        let mut decoder = zune_png::PngDecoder::new(zune_core::bytestream::ZCursor::new(&bytes));
        let pixels = decoder.decode_raw()?;
        let (w, h) = decoder.dimensions().ok_or("no dimensions")?;
        assert_eq!((w, h), (SIZE as usize, SIZE as usize), "placeholder size");
        assert_eq!(pixels.len(), (SIZE * SIZE * 4) as usize, "RGBA 8-bit");
        let centre_right = ((10 * SIZE + 50) * 4) as usize;
        assert_eq!(
            pixels.get(centre_right..centre_right + 4),
            Some(&BACKGROUND[..])
        );
        let on_diagonal = ((20 * SIZE + 20) * 4) as usize;
        assert_eq!(pixels.get(on_diagonal..on_diagonal + 4), Some(&INK[..]));
        Ok(())
    }
}
