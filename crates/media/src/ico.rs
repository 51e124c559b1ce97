//! ICO (and CUR) favicons: the directory is read here, its largest entry chosen (by the
//! directory's size, then bit depth), and that entry decoded: a PNG entry of any colour type
//! and bit depth through the PNG decoder; a BMP entry (a headerless DIB: 1, 4 or 8 bits with
//! a palette, 24 or 32 bits, then the 1-bit AND mask) by [`dib`] below.
//!
//! Hand-written because the `image` crate's ICO reader refuses what real favicons contain:
//! PNG entries that are not 8-bit RGBA, a directory whose bit depth disagrees with the
//! entry, an AND mask cut short. Browsers show all of these; so do we. The entry's own
//! header is what counts for the size (a directory that lies about it is ignored), so an
//! entry declaring a huge picture is refused from that header like any other image.
//!
//! Input: bytes known to be ICO; output: a `Probe` or a `Frame`. Uses `header`, `limits`,
//! `pixels`, `Error` and the `image` crate's PNG decoder.

use std::io::Cursor;

use image::ImageDecoder;

use crate::header::Probe;
use crate::limits::Limits;
use crate::pixels::{Channels, Frame};
use crate::Error;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The entry picked from the directory.
struct Entry<'a> {
    /// Its bytes.
    data: &'a [u8],
}

impl Entry<'_> {
    fn is_png(&self) -> bool {
        self.data.starts_with(PNG_SIGNATURE)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The largest entry of the directory. The walk stops where the directory's bytes end, so a
/// count of 65,535 costs no more than the directory bytes really present; an entry whose
/// data runs past the end of the file means the file was cut short (refused).
fn choose(bytes: &[u8]) -> Result<Entry<'_>, Error> {
    let invalid = |why: &str| Error::Invalid(format!("ICO: {why}"));
    let (reserved, kind, count) = (u16_at(bytes, 0), u16_at(bytes, 2), u16_at(bytes, 4));
    if reserved != Some(0) || !matches!(kind, Some(1 | 2)) {
        return Err(invalid("not an icon directory"));
    }
    let mut best: Option<((u32, u16), Entry<'_>)> = None;
    for i in 0..usize::from(count.unwrap_or(0)) {
        let at = 6 + 16 * i;
        let Some(&[w, h, ..]) = bytes.get(at..at + 16) else {
            break;
        };
        let dir = bytes.get(at..at + 16).unwrap_or_default();
        let side = |v: u8| if v == 0 { 256 } else { u32::from(v) };
        let (w, h) = (side(w), side(h));
        let bpp = u16_at(dir, 6).unwrap_or(0);
        let (Some(len), Some(offset)) = (u32_at(dir, 8), u32_at(dir, 12)) else {
            continue;
        };
        // An entry running past the end of the file: the file was cut short.
        let (start, end) = (offset as usize, offset as usize + len as usize);
        let Some(data) = bytes.get(start..end).filter(|d| !d.is_empty()) else {
            return Err(invalid("truncated: an entry runs past the end of the file"));
        };
        let score = (w * h, bpp);
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, Entry { data }));
        }
    }
    best.map(|(_, e)| e)
        .ok_or_else(|| invalid("no entry inside the file"))
}

/// The chosen entry's size, from its own header.
pub fn probe(bytes: &[u8]) -> Result<Probe, Error> {
    let entry = choose(bytes)?;
    let (w, h) = if entry.is_png() {
        image::codecs::png::PngDecoder::new(Cursor::new(entry.data))?.dimensions()
    } else {
        let header = dib::Header::read(entry.data)?;
        (header.width, header.height)
    };
    Ok(Probe::still(w, h))
}

/// The chosen entry, as RGBA.
pub fn first_frame(bytes: &[u8], limits: &Limits) -> Result<Frame, Error> {
    let entry = choose(bytes)?;
    if entry.is_png() {
        let mut decoder = image::codecs::png::PngDecoder::new(Cursor::new(entry.data))?;
        decoder.set_limits(limits.for_image())?;
        return Ok(Frame::from_dynamic(image::DynamicImage::from_decoder(
            decoder,
        )?));
    }
    let header = dib::Header::read(entry.data)?;
    let data = dib::decode(entry.data, &header)?;
    Ok(Frame {
        width: header.width,
        height: header.height,
        channels: Channels::Rgba,
        data,
        delay_ms: 0,
    })
}

/// A BMP entry: a BITMAPINFOHEADER (or a larger version of it), the palette, the colour
/// rows (XOR mask) bottom-up, then the 1-bit AND mask (set bits are transparent).
mod dib {
    use super::{u16_at, u32_at};
    use crate::Error;

    pub(super) struct Header {
        pub width: u32,
        /// The picture's height (the header's is twice it: colour rows and mask rows).
        pub height: u32,
        pub bpp: u16,
        /// Offset of the first colour row.
        pixels: usize,
        /// Palette entries (BGRx), for 1, 4 and 8 bits.
        palette: usize,
        colours: usize,
        top_down: bool,
    }

    fn invalid(why: &str) -> Error {
        Error::Invalid(format!("ICO BMP entry: {why}"))
    }

    impl Header {
        pub fn read(d: &[u8]) -> Result<Header, Error> {
            let size = u32_at(d, 0).ok_or_else(|| invalid("truncated header"))? as usize;
            if !(40..=124).contains(&size) {
                return Err(invalid("unknown header"));
            }
            let width = u32_at(d, 4).ok_or_else(|| invalid("truncated header"))? as i32;
            let height = u32_at(d, 8).ok_or_else(|| invalid("truncated header"))? as i32;
            let bpp = u16_at(d, 14).ok_or_else(|| invalid("truncated header"))?;
            let compression = u32_at(d, 16).unwrap_or(0);
            let used = u32_at(d, 32).unwrap_or(0) as usize;
            if width <= 0 || height == 0 {
                return Err(invalid("zero or negative width"));
            }
            // BI_RGB, or BI_BITFIELDS with the usual masks at 32 bits.
            if compression != 0 && !(compression == 3 && bpp == 32) {
                return Err(invalid("compressed"));
            }
            let colours = match bpp {
                1 | 4 | 8 if used == 0 => 1usize << bpp,
                1 | 4 | 8 => used.min(1 << bpp),
                24 | 32 => 0,
                _ => return Err(Error::Unsupported("ICO entry bit depth")),
            };
            // BITMAPINFOHEADER with BI_BITFIELDS carries three masks after it.
            let masks = if compression == 3 && size == 40 {
                12
            } else {
                0
            };
            let palette = size + masks;
            Ok(Header {
                width: width.unsigned_abs(),
                height: (height.unsigned_abs() / 2).max(1),
                bpp,
                pixels: palette + colours * 4,
                palette,
                colours,
                top_down: height < 0,
            })
        }
    }

    /// Bytes of one row of `width` samples of `bits`, padded to four bytes.
    fn stride(width: u32, bits: u16) -> usize {
        (width as usize * usize::from(bits)).div_ceil(32) * 4
    }

    /// RGBA rows, top first. Rows missing at the end of the data are transparent; a mask
    /// cut short leaves the pixels it would have covered opaque (as browsers show them).
    pub fn decode(d: &[u8], h: &Header) -> Result<Vec<u8>, Error> {
        let (w, rows) = (h.width as usize, h.height as usize);
        let row_len = stride(h.width, h.bpp);
        let mask_len = stride(h.width, 1);
        let mask_at = h.pixels + row_len * rows;
        if d.len() < h.pixels + row_len {
            return Err(invalid("no pixel rows"));
        }
        let palette: Vec<[u8; 4]> = (0..h.colours)
            .map(|i| {
                let at = h.palette + 4 * i;
                match d.get(at..at + 3) {
                    Some(&[b, g, r]) => [r, g, b, 255],
                    _ => [0, 0, 0, 255],
                }
            })
            .collect();
        let mut out = vec![0u8; w * rows * 4];
        let mut any_alpha = false;
        for y in 0..rows {
            // Stored bottom-up unless the height was negative.
            let stored = if h.top_down { y } else { rows - 1 - y };
            let Some(row) = d.get(h.pixels + stored * row_len..).map(|r| {
                let end = row_len.min(r.len());
                r.get(..end).unwrap_or_default()
            }) else {
                continue;
            };
            let out_row = out
                .get_mut(y * w * 4..(y + 1) * w * 4)
                .ok_or_else(|| invalid("size"))?;
            for (x, px) in out_row.chunks_exact_mut(4).enumerate() {
                let rgba = match h.bpp {
                    1 | 4 | 8 => {
                        let bits = usize::from(h.bpp);
                        let bit = x * bits;
                        let Some(&byte) = row.get(bit / 8) else {
                            continue;
                        };
                        let shift = 8 - bits - (bit % 8);
                        let index = usize::from(byte >> shift) & ((1 << bits) - 1);
                        palette.get(index).copied().unwrap_or([0, 0, 0, 255])
                    }
                    24 => match row.get(x * 3..x * 3 + 3) {
                        Some(&[b, g, r]) => [r, g, b, 255],
                        _ => continue,
                    },
                    _ => match row.get(x * 4..x * 4 + 4) {
                        Some(&[b, g, r, a]) => {
                            any_alpha |= a != 0;
                            [r, g, b, a]
                        }
                        _ => continue,
                    },
                };
                px.copy_from_slice(&rgba);
            }
        }
        // 32-bit entries carry their own alpha; an all-zero alpha channel means the
        // entry relies on the mask, as the other depths do.
        let use_mask = h.bpp != 32 || !any_alpha;
        if h.bpp == 32 && use_mask {
            for px in out.chunks_exact_mut(4) {
                if let Some(a) = px.get_mut(3) {
                    *a = 255;
                }
            }
        }
        if use_mask {
            for y in 0..rows {
                let stored = if h.top_down { y } else { rows - 1 - y };
                let at = mask_at + stored * mask_len;
                for x in 0..w {
                    let Some(&byte) = d.get(at + x / 8) else {
                        break;
                    };
                    if byte & (0x80 >> (x % 8)) != 0 {
                        if let Some(a) = out.get_mut((y * w + x) * 4 + 3) {
                            *a = 0;
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
