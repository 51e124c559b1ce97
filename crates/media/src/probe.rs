//! Header-only inspection: format dimensions, frame count and EXIF orientation, read without
//! decoding pixels, so that limits are enforced before anything large is allocated.
//!
//! Dimensions come from each format's header (through the decoders' header readers); frame
//! counts come from walking the container: GIF blocks, WebP `ANMF` chunks, the APNG `acTL`.
//! The GIF and WebP walks are written here because no decoder exposes a frame count without
//! decoding the frames.
//!
//! Input: bytes and their `Format`; output: a [`Probe`] (or the limit it breaks). Uses
//! `header`, `Error`, `Format` and the decoders' header readers.

use std::io::Cursor;

use image::metadata::Orientation;
use image::ImageDecoder;

use crate::{Error, Format};

pub use crate::header::{swaps_axes, Probe};

/// Reads the header of `bytes`, known to be `format`.
pub fn probe(bytes: &[u8], format: Format) -> Result<Probe, Error> {
    let mut frames = 1;
    let (width, height, orientation, icc) = match format {
        Format::Jpeg => {
            let header = crate::jpeg::read_header(bytes)?;
            let w = u32::try_from(header.width).map_err(|_| Error::TooLarge("width".into()))?;
            let h = u32::try_from(header.height).map_err(|_| Error::TooLarge("height".into()))?;
            let segments = crate::jpeg::header_segments(bytes);
            (
                w,
                h,
                segments
                    .exif
                    .map_or(Orientation::NoTransforms, exif_orientation),
                segments.icc,
            )
        }
        Format::Svg => {
            let (w, h) = crate::svg::Svg::parse(bytes, &crate::Limits::default())?.size();
            (w, h, Orientation::NoTransforms, None)
        }
        Format::Avif => return crate::avif::probe(bytes),
        Format::Heic => return crate::heic::probe(bytes),
        Format::Jxl => return crate::jxl::probe(bytes, &crate::Limits::default()),
        Format::Ico => return crate::ico::probe(bytes),
        Format::Tiff => return crate::tiff::probe(bytes),
        Format::Gif => {
            let (w, h, n) = gif_walk(bytes)?;
            frames = n;
            (w, h, Orientation::NoTransforms, None)
        }
        other => {
            container_check(bytes, other)?;
            let mut decoder = image_decoder(bytes, other)?;
            let (w, h) = decoder.dimensions();
            let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
            let icc = decoder.icc_profile().ok().flatten();
            frames = match other {
                Format::Webp => webp_frames(bytes),
                Format::Apng => apng_frames(bytes),
                _ => 1,
            };
            (w, h, orientation, icc)
        }
    };
    Ok(Probe {
        width,
        height,
        frames,
        orientation,
        icc,
        coded: None,
    })
}

/// A header-reading decoder from the `image` crate for the formats it handles for us.
pub(crate) fn image_decoder(
    bytes: &[u8],
    format: Format,
) -> Result<Box<dyn ImageDecoder + '_>, Error> {
    let cursor = Cursor::new(bytes);
    let decoder: Box<dyn ImageDecoder> = match format {
        Format::Png | Format::Apng => Box::new(image::codecs::png::PngDecoder::new(cursor)?),
        Format::Gif => Box::new(image::codecs::gif::GifDecoder::new(cursor)?),
        Format::Webp => Box::new(image::codecs::webp::WebPDecoder::new(cursor)?),
        Format::Bmp => Box::new(image::codecs::bmp::BmpDecoder::new(cursor)?),
        _ => return Err(Error::Unsupported("this format")),
    };
    Ok(decoder)
}

/// The orientation in a JPEG's EXIF data (1 when absent or unreadable).
fn exif_orientation(tiff: &[u8]) -> Orientation {
    let Ok(exif) = exif::Reader::new().read_raw(tiff.to_vec()) else {
        return Orientation::NoTransforms;
    };
    exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .and_then(|v| u8::try_from(v).ok())
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms)
}

/// Walks the GIF block structure: (canvas width, canvas height, number of images).
fn gif_walk(b: &[u8]) -> Result<(u32, u32, u32), Error> {
    let invalid = || Error::Invalid("truncated GIF header".into());
    let screen: [u8; 7] = b
        .get(6..13)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(invalid)?;
    let mut w = u32::from(u16::from_le_bytes([screen[0], screen[1]]));
    let mut h = u32::from(u16::from_le_bytes([screen[2], screen[3]]));
    let mut pos = 13usize;
    if screen[4] & 0x80 != 0 {
        pos += 3 << ((screen[4] & 7) + 1);
    }
    let mut frames = 0u32;
    while let Some(&block) = b.get(pos) {
        pos += 1;
        match block {
            0x2C => {
                let desc: [u8; 9] = b
                    .get(pos..pos + 9)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(invalid)?;
                pos += 9;
                if frames == 0 {
                    // A first frame larger than the screen enlarges it (as Pillow and
                    // browsers show it); later frames are clipped to it.
                    let [l0, l1, t0, t1, w0, w1, h0, h1, _] = desc;
                    let field = |a: u8, b: u8| u32::from(u16::from_le_bytes([a, b]));
                    w = w.max(field(l0, l1) + field(w0, w1));
                    h = h.max(field(t0, t1) + field(h0, h1));
                }
                if desc[8] & 0x80 != 0 {
                    pos += 3 << ((desc[8] & 7) + 1);
                }
                pos += 1; // LZW minimum code size
                pos = skip_sub_blocks(b, pos);
                frames += 1;
            }
            0x21 => pos = skip_sub_blocks(b, pos + 1),
            _ => break, // trailer (0x3B) or junk: stop counting
        }
    }
    if frames == 0 {
        return Err(Error::Invalid("GIF without an image".into()));
    }
    Ok((w, h, frames))
}

fn skip_sub_blocks(b: &[u8], mut pos: usize) -> usize {
    while let Some(&len) = b.get(pos) {
        pos += 1 + usize::from(len);
        if len == 0 {
            break;
        }
    }
    pos
}

/// Structural checks the decoders skip: a WebP whose RIFF size runs past the end of the
/// file was cut short (its first frame may still decode, but the file is broken), and a PNG
/// header with a compression, filter or interlace method the format does not define.
fn container_check(b: &[u8], format: Format) -> Result<(), Error> {
    match format {
        Format::Webp => {
            let riff = b
                .get(4..8)
                .and_then(|s| <[u8; 4]>::try_from(s).ok())
                .map(u32::from_le_bytes)
                .ok_or_else(|| Error::Invalid("truncated WebP header".into()))?;
            if u64::from(riff) + 8 > b.len() as u64 {
                return Err(Error::Invalid(format!(
                    "truncated WebP: {} of {} bytes",
                    b.len(),
                    u64::from(riff) + 8
                )));
            }
        }
        Format::Png | Format::Apng => {
            // Signature (8), IHDR length and type (8), width, height (8), depth, colour type.
            if let Some(&[compression, filter, interlace]) = b.get(26..29) {
                if compression != 0 || filter != 0 || interlace > 1 {
                    return Err(Error::Invalid("PNG header with undefined methods".into()));
                }
            }
            // An iCCP chunk names its compression method after the profile name: only 0
            // (zlib) exists.
            let iccp = crate::format::png_chunks(b)
                .take_while(|(kind, _)| *kind != b"IDAT")
                .find(|(kind, _)| *kind == b"iCCP");
            if let Some((_, data)) = iccp {
                let method = data
                    .iter()
                    .position(|&c| c == 0)
                    .and_then(|nul| data.get(nul + 1));
                if method.is_some_and(|&m| m != 0) {
                    return Err(Error::Invalid(
                        "PNG iCCP with an unknown compression".into(),
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Number of `ANMF` chunks in a WebP (1 for a still image).
fn webp_frames(b: &[u8]) -> u32 {
    let mut pos = 12usize; // "RIFF" size "WEBP"
    let mut frames = 0u32;
    while let Some(header) = b
        .get(pos..pos.saturating_add(8))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
    {
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if &header[..4] == b"ANMF" {
            frames += 1;
        }
        pos = pos.saturating_add(8).saturating_add(size + (size & 1));
    }
    frames.max(1)
}

/// `num_frames` of the APNG `acTL` chunk (1 if absent or unreadable).
fn apng_frames(b: &[u8]) -> u32 {
    let decoder = png::Decoder::new(Cursor::new(b));
    decoder
        .read_info()
        .ok()
        .and_then(|r| r.info().animation_control().map(|a| a.num_frames))
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    use crate::test_corpus as corpus;

    #[test]
    fn frame_counts_from_the_container() {
        let cases = [
            (
                "gif/generated/anim_500_frames_64x64_interlaced.gif",
                Format::Gif,
                (64, 64, 500),
            ),
            (
                "apng/generated/apng_1000_frames_32x32.png",
                Format::Apng,
                (32, 32, 1000),
            ),
            ("apng/image-rs/ball.png", Format::Apng, (100, 100, 20)),
            ("gif/image-gif/2x2.gif", Format::Gif, (2, 2, 1)),
        ];
        for (rel, format, (w, h, n)) in cases {
            let p = probe(&corpus(rel), format).expect(rel);
            assert_eq!((p.width, p.height, p.frames), (w, h, n), "{rel}");
        }
    }

    /// EXIF is read from the header segments: found behind another APP1 (XMP), independent
    /// of what the scan data holds, and a broken segment is no orientation rather than an error.
    #[test]
    fn jpeg_orientation_from_the_header_segments() {
        let six = corpus("jpeg/exif-orientation-recurser/Landscape_6.jpg");
        assert_eq!(
            probe(&six, Format::Jpeg).unwrap().orientation,
            Orientation::Rotate90
        );
        let xmp: &[u8] = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>";
        let len = u16::try_from(xmp.len() + 2).unwrap().to_be_bytes();
        let mut behind_xmp = vec![0xFF, 0xD8, 0xFF, 0xE1, len[0], len[1]];
        behind_xmp.extend_from_slice(xmp);
        behind_xmp.extend_from_slice(&six[2..]);
        let p = probe(&behind_xmp, Format::Jpeg).unwrap();
        assert_eq!(p.orientation, Orientation::Rotate90);
        assert_eq!((p.width, p.height), (1200, 1800)); // stored sideways

        let none = corpus("jpeg/exif-orientation-recurser/Landscape_0.jpg");
        assert_eq!(
            probe(&none, Format::Jpeg).unwrap().orientation,
            Orientation::NoTransforms
        );
        // The EXIF segment's TIFF header cut short: no orientation, no error.
        let exif_at = six.windows(6).position(|w| w == b"Exif\0\0").unwrap();
        let mut broken = six.clone();
        broken[exif_at + 6..exif_at + 14].fill(0);
        assert_eq!(
            probe(&broken, Format::Jpeg).unwrap().orientation,
            Orientation::NoTransforms
        );
    }

    #[test]
    fn limits_refuse_from_the_header() {
        let big = Probe {
            frames: 1,
            ..Probe::still(10_000, 10_000)
        };
        assert!(matches!(
            big.check(&Limits::default()),
            Err(Error::TooLarge(_))
        ));
        let many = Probe {
            frames: 1001,
            ..Probe::still(100, 100)
        };
        assert!(matches!(
            many.check(&Limits::default()),
            Err(Error::TooLarge(_))
        ));
        let area = Probe {
            frames: 201,
            ..Probe::still(1000, 1000)
        };
        assert!(matches!(
            area.check(&Limits::default()),
            Err(Error::TooLarge(_))
        ));
        let fine = Probe {
            frames: 200,
            ..Probe::still(1000, 1000)
        };
        assert!(fine.check(&Limits::default()).is_ok());
        // One frame shown, 600 decoded (JPEG XL's zero-length frames): the decoded count.
        let hidden = |frames, pixels, largest| Probe {
            coded: Some(crate::header::Coded {
                frames,
                pixels,
                largest,
            }),
            ..Probe::still(1000, 1000)
        };
        let limits = Limits::default();
        assert!(matches!(
            hidden(1001, 1_000_000, 1_000).check(&limits),
            Err(Error::TooLarge(_))
        ));
        assert!(matches!(
            hidden(600, 600_000_000, 1_000_000).check(&limits),
            Err(Error::TooLarge(_))
        ));
        assert!(matches!(
            hidden(2, 2_000_000, 60_000_000).check(&limits),
            Err(Error::TooLarge(_))
        ));
        assert!(hidden(200, 200_000_000, 1_000_000).check(&limits).is_ok());
    }
}
