//! TIFF through the `tiff` crate directly: it decompresses every layout it knows (strips,
//! tiles, planar, predictors; LZW, Deflate, PackBits, CCITT fax, JPEG, WebP), and the
//! samples are turned into 8-bit RGBA here, for every photometric interpretation real files
//! use: grey (either polarity) at 1–32 bits, signed (shifted to unsigned) or float (0–1);
//! RGB(A) at any depth, signed or float, with associated alpha un-premultiplied; palettes
//! (the `ColorMap`); CMYK; YCbCr (JPEG-compressed or not, with the file's coefficients and
//! reference range); CIE L*a*b* (`CIELab` and `ICCLab`, to sRGB through D50 XYZ). The
//! `image` crate's wrapper refuses most of these.
//!
//! Not read (422): 12-bit and other non-byte depths over 8 the decoder does not unpack,
//! CCITT Group 3 fax, LZMA, old-style JPEG (compression 6) with subsampled chroma, and
//! interpretations outside TIFF 6 (LogLuv, CFA).
//!
//! Hand-written: the sample conversion, because no crate maps TIFF's interpretations to RGB
//! (the `tiff` crate hands out raw samples and says so).
//!
//! Input: bytes known to be TIFF and the `Limits`; output: a `Probe` or a `Frame` (the first
//! page). Uses `header`, `limits`, `pixels`, `Error`.

use std::io::Cursor;

use ::tiff::decoder::{Decoder, DecodingResult};
use ::tiff::tags::Tag;
use ::tiff::ColorType;
use image::metadata::Orientation;

use crate::header::Probe;
use crate::limits::Limits;
use crate::pixels::{Channels, Frame};
use crate::Error;

/// Bytes one tag's values may take.
const IFD_VALUES: usize = 16 << 20;

fn decoder<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Decoder<Cursor<&'a [u8]>>, Error> {
    let alloc = usize::try_from(limits.max_alloc).unwrap_or(usize::MAX);
    let mut l = ::tiff::decoder::Limits::default();
    l.decoding_buffer_size = alloc;
    l.intermediate_buffer_size = alloc;
    // Tag values (strip offsets: 8 bytes a strip; a 65,537-row fax has as many strips).
    l.ifd_value_size = alloc.min(IFD_VALUES);
    Ok(Decoder::new(Cursor::new(bytes))
        .map_err(invalid)?
        .with_limits(l))
}

/// The first page's stored size, its orientation and its colour profile.
pub fn probe(bytes: &[u8]) -> Result<Probe, Error> {
    let mut d = decoder(bytes, &Limits::default())?;
    let (width, height) = d.dimensions().map_err(invalid)?;
    let orientation = d
        .find_tag_unsigned::<u8>(Tag::Orientation)
        .ok()
        .flatten()
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms);
    let icc = match d.find_tag(Tag::IccProfile) {
        Ok(Some(value)) => value.into_u8_vec().ok(),
        _ => None,
    };
    Ok(Probe {
        width,
        height,
        frames: 1,
        orientation,
        icc,
        coded: None,
    })
}

/// Photometric interpretations.
const PALETTE: u32 = 3;
const CIELAB: u32 = 8;

/// The first page as RGBA (orientation not applied).
pub fn first_frame(bytes: &[u8], limits: &Limits) -> Result<Frame, Error> {
    let tag = |d: &mut Decoder<_>, t: Tag| d.find_tag_unsigned::<u32>(t).ok().flatten();
    let mut d = decoder(bytes, limits)?;
    let photometric = tag(&mut d, Tag::PhotometricInterpretation).unwrap_or(1);
    // The decoder refuses palettes and CIELab outright, though their samples are plain
    // integers: it is handed a copy that calls them grey (the indices) and RGB (L, a, b).
    let patched = match photometric {
        PALETTE => relabel(bytes, 1),
        CIELAB => relabel(bytes, 2),
        _ => None,
    };
    if let Some(copy) = &patched {
        d = decoder(copy, limits)?;
    }
    let (width, height) = d.dimensions().map_err(invalid)?;
    let color = d.colortype().map_err(invalid)?;
    // The first extra sample: 1 associated (premultiplied) alpha, 2 unassociated alpha,
    // 0 (or none) something else, which is not shown.
    let extra = d
        .find_tag_unsigned_vec::<u16>(Tag::ExtraSamples)
        .ok()
        .flatten()
        .and_then(|v| v.first().copied());
    let associated = extra == Some(1);
    let grey_alpha = matches!(extra, Some(1 | 2));
    let palette = d.find_tag_unsigned_vec::<u16>(Tag::ColorMap).ok().flatten();
    let ycbcr = YCbCr::read(&mut d);
    // Every plane of a planar file (PlanarConfiguration 2), one after another.
    let mut samples = DecodingResult::U8(Vec::new());
    let read = d.read_image_to_buffer(&mut samples).map_err(invalid)?;
    if samples_bytes(&samples) < read.complete_len {
        return Err(Error::TooLarge("TIFF planes over the memory limit".into()));
    }
    let pixels = width as usize * height as usize;
    let (channels, bits) = layout(color)?;
    let planar = read.planes > 1;
    let sample_bytes = samples_bytes(&samples) / samples_in(&samples).max(1);
    let plane = read.plane_stride.map_or(0, |n| n.get()) / sample_bytes.max(1);
    let row = if planar {
        width as usize
    } else {
        width as usize * channels
    };
    let values = Samples::new(samples, bits, row, height as usize)?;
    let mut out = Vec::with_capacity(pixels * 4);
    let index = |p: usize, c: usize| {
        if planar {
            c * plane + p
        } else {
            p * channels + c
        }
    };
    for p in 0..pixels {
        let s = |c: usize| values.get(index(p, c));
        let rgba = match color {
            ColorType::Gray(_) | ColorType::GrayA(_) | ColorType::Multiband { .. }
                if photometric <= 1 =>
            {
                // WhiteIsZero is already inverted by the decoder.
                let v = s(0);
                let a = if channels > 1 && grey_alpha {
                    s(1)
                } else {
                    1.0
                };
                [v, v, v, a]
            }
            ColorType::RGB(8) if photometric == CIELAB => {
                // L unsigned, a and b signed bytes.
                let signed = |c: usize| f32::from(values.raw(index(p, c)) as u8 as i8);
                let (r, g, b) = lab_to_srgb(s(0) * 100.0, signed(1), signed(2));
                [r, g, b, 1.0]
            }
            ColorType::RGB(_) => [s(0), s(1), s(2), 1.0],
            ColorType::RGBA(_) => [s(0), s(1), s(2), s(3)],
            ColorType::Gray(_) if photometric == PALETTE => {
                let map = palette
                    .as_deref()
                    .ok_or_else(|| Error::Invalid("TIFF palette without a ColorMap".into()))?;
                let n = map.len() / 3;
                let index = values.raw(p).min(n.saturating_sub(1) as u64) as usize;
                let c =
                    |k: usize| f32::from(map.get(k * n + index).copied().unwrap_or(0)) / 65535.0;
                [c(0), c(1), c(2), 1.0]
            }
            ColorType::CMYK(_) | ColorType::CMYKA(_) => {
                let k = 1.0 - s(3);
                let a = if channels > 4 { s(4) } else { 1.0 };
                [(1.0 - s(0)) * k, (1.0 - s(1)) * k, (1.0 - s(2)) * k, a]
            }
            ColorType::YCbCr(_) => {
                let (r, g, b) = ycbcr.to_rgb(s(0), s(1), s(2));
                [r, g, b, 1.0]
            }
            ColorType::Lab(_) => {
                // ICCLab (9): a and b offset by 128.
                let (l, a, b) = (s(0) * 100.0, s(1) * 255.0 - 128.0, s(2) * 255.0 - 128.0);
                let (r, g, b) = lab_to_srgb(l, a, b);
                [r, g, b, 1.0]
            }
            _ => return Err(Error::Unsupported("TIFF colour layout")),
        };
        let [r, g, b, a] = rgba;
        let (r, g, b) = if associated && a > 0.0 && a < 1.0 {
            (r / a, g / a, b / a)
        } else {
            (r, g, b)
        };
        out.extend([r, g, b, a].map(to_u8));
    }
    Ok(Frame {
        width,
        height,
        channels: Channels::Rgba,
        data: out,
        delay_ms: 0,
    })
}

/// A copy of `bytes` whose first directory says `photometric` instead. Hand-written: it
/// is one entry of the classic or BigTIFF directory layout, and no TIFF crate writes a
/// directory in place.
fn relabel(bytes: &[u8], photometric: u16) -> Option<Vec<u8>> {
    let little = match bytes.get(..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let read = |at: usize, len: usize| -> Option<u64> {
        let b = bytes.get(at..at.checked_add(len)?)?;
        let fold = |acc: u64, &x: &u8| (acc << 8) | u64::from(x);
        Some(if little {
            b.iter().rev().fold(0, fold)
        } else {
            b.iter().fold(0, fold)
        })
    };
    let big = match read(2, 2)? {
        42 => false,
        43 => true,
        _ => return None,
    };
    let (ifd, count_len, entry_len, value_at) = if big {
        (read(8, 8)?, 8, 20, 12)
    } else {
        (read(4, 4)?, 2, 12, 8)
    };
    let ifd = usize::try_from(ifd).ok()?;
    let count = usize::try_from(read(ifd, count_len)?).ok()?;
    for i in 0..count.min(4096) {
        let entry = ifd + count_len + i * entry_len;
        if read(entry, 2)? == 262 {
            let mut copy = bytes.to_vec();
            let value = if little {
                photometric.to_le_bytes()
            } else {
                photometric.to_be_bytes()
            };
            copy.get_mut(entry + value_at..entry + value_at + 2)?
                .copy_from_slice(&value);
            return Some(copy);
        }
    }
    None
}

fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// How many bytes a decoding result holds.
fn samples_bytes(r: &DecodingResult) -> usize {
    let width = match r {
        DecodingResult::U8(_) | DecodingResult::I8(_) => 1,
        DecodingResult::U16(_) | DecodingResult::I16(_) | DecodingResult::F16(_) => 2,
        DecodingResult::U32(_) | DecodingResult::I32(_) | DecodingResult::F32(_) => 4,
        DecodingResult::U64(_) | DecodingResult::I64(_) | DecodingResult::F64(_) => 8,
    };
    samples_in(r) * width
}

/// How many samples a decoding result holds.
fn samples_in(r: &DecodingResult) -> usize {
    match r {
        DecodingResult::U8(v) => v.len(),
        DecodingResult::U16(v) => v.len(),
        DecodingResult::U32(v) => v.len(),
        DecodingResult::U64(v) => v.len(),
        DecodingResult::F16(v) => v.len(),
        DecodingResult::F32(v) => v.len(),
        DecodingResult::F64(v) => v.len(),
        DecodingResult::I8(v) => v.len(),
        DecodingResult::I16(v) => v.len(),
        DecodingResult::I32(v) => v.len(),
        DecodingResult::I64(v) => v.len(),
    }
}

/// Samples per pixel and bits per sample of a colour type.
fn layout(color: ColorType) -> Result<(usize, u8), Error> {
    Ok(match color {
        ColorType::Gray(b) | ColorType::Palette(b) => (1, b),
        ColorType::GrayA(b) => (2, b),
        ColorType::RGB(b) | ColorType::YCbCr(b) | ColorType::Lab(b) => (3, b),
        ColorType::RGBA(b) | ColorType::CMYK(b) => (4, b),
        ColorType::CMYKA(b) => (5, b),
        ColorType::Multiband {
            bit_depth,
            num_samples,
        } => (usize::from(num_samples), bit_depth),
        _ => return Err(Error::Unsupported("TIFF colour layout")),
    })
}

/// The decoded samples, read one at a time as 0..=1 (or as the raw integer, for palettes).
/// Depths under 8 bits come packed, rows padded to a byte.
struct Samples {
    data: DecodingResult,
    bits: u8,
    /// Samples per row (for packed depths).
    row: usize,
    rows: usize,
}

impl Samples {
    fn new(data: DecodingResult, bits: u8, row: usize, rows: usize) -> Result<Samples, Error> {
        if bits == 0 || bits > 64 {
            return Err(Error::Invalid("TIFF bit depth".into()));
        }
        Ok(Samples {
            data,
            bits,
            row,
            rows,
        })
    }

    /// The integer value of sample `i` (0 where the data ends early).
    fn raw(&self, i: usize) -> u64 {
        match &self.data {
            DecodingResult::U8(v) if self.bits < 8 => {
                let bits = usize::from(self.bits);
                let (y, x) = (i / self.row.max(1), i % self.row.max(1));
                if y >= self.rows {
                    return 0;
                }
                let stride = (self.row * bits).div_ceil(8);
                let bit = x * bits;
                let byte = v.get(y * stride + bit / 8).copied().unwrap_or(0);
                let shift = 8 - bits - bit % 8;
                u64::from(byte >> shift) & ((1 << bits) - 1)
            }
            DecodingResult::U8(v) => v.get(i).map_or(0, |&s| u64::from(s)),
            DecodingResult::U16(v) => v.get(i).map_or(0, |&s| u64::from(s)),
            DecodingResult::U32(v) => v.get(i).map_or(0, |&s| u64::from(s)),
            DecodingResult::U64(v) => v.get(i).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// Sample `i` as 0..=1: unsigned integers over their bit depth, signed ones shifted to
    /// unsigned (as Pillow shows them), floats as they are (clamped later).
    fn get(&self, i: usize) -> f32 {
        let full = |bits: u32| ((1u128 << bits) - 1) as f64;
        let signed = |v: i64, bits: u32| {
            let half = 1i128 << (bits - 1);
            ((i128::from(v) + half) as f64 / full(bits)) as f32
        };
        match &self.data {
            DecodingResult::F16(v) => v.get(i).map_or(0.0, |s| s.to_f32()),
            DecodingResult::F32(v) => v.get(i).copied().unwrap_or(0.0),
            DecodingResult::F64(v) => v.get(i).map_or(0.0, |&s| s as f32),
            DecodingResult::I8(v) => v.get(i).map_or(0.0, |&s| signed(i64::from(s), 8)),
            DecodingResult::I16(v) => v.get(i).map_or(0.0, |&s| signed(i64::from(s), 16)),
            DecodingResult::I32(v) => v.get(i).map_or(0.0, |&s| signed(i64::from(s), 32)),
            DecodingResult::I64(v) => v.get(i).map_or(0.0, |&s| signed(s, 64)),
            _ => {
                // The depth the samples were stored at, within their container's width.
                let bits = u32::from(self.bits).min(64);
                (self.raw(i) as f64 / full(bits)) as f32
            }
        }
    }
}

/// YCbCr → RGB with the file's `YCbCrCoefficients` (default BT.601) and
/// `ReferenceBlackWhite` (default full range).
struct YCbCr {
    kr: f32,
    kb: f32,
    /// Black and white of Y, Cb, Cr, as fractions of the sample range.
    reference: [f32; 6],
}

impl YCbCr {
    fn read<R: std::io::Read + std::io::Seek>(d: &mut Decoder<R>) -> YCbCr {
        let rationals = |d: &mut Decoder<R>, tag: Tag| -> Option<Vec<f32>> {
            let value = d.find_tag(tag).ok().flatten()?;
            let list = value.into_f32_vec().ok()?;
            Some(list)
        };
        let coefficients = rationals(d, Tag::Unknown(529)).unwrap_or_default();
        let reference = rationals(d, Tag::Unknown(532)).unwrap_or_default();
        let mut r = [0.0, 255.0, 128.0, 255.0, 128.0, 255.0];
        if reference.len() == 6 {
            for (slot, v) in r.iter_mut().zip(&reference) {
                *slot = *v;
            }
        }
        YCbCr {
            kr: coefficients.first().copied().unwrap_or(0.299),
            kb: coefficients.get(2).copied().unwrap_or(0.114),
            reference: r.map(|v| v / 255.0),
        }
    }

    fn to_rgb(&self, y: f32, cb: f32, cr: f32) -> (f32, f32, f32) {
        let [yb, yw, cbb, cbw, crb, crw] = self.reference;
        let y = (y - yb) / (yw - yb).max(1e-6);
        // Chroma: the reference's "black" is the zero point, its "white" the full swing.
        let cb = (cb - cbb) / (cbw - cbb).max(1e-6) * 0.5;
        let cr = (cr - crb) / (crw - crb).max(1e-6) * 0.5;
        let (kr, kb) = (self.kr, self.kb);
        let kg = 1.0 - kr - kb;
        let r = y + 2.0 * (1.0 - kr) * cr;
        let b = y + 2.0 * (1.0 - kb) * cb;
        let g = (y - kr * r - kb * b) / kg.max(1e-6);
        (r, g, b)
    }
}

/// CIE L*a*b* (D50, as TIFF and ICC define it) → sRGB (D65, through the Bradford-adapted
/// matrix), gamma-encoded.
fn lab_to_srgb(l: f32, a: f32, b: f32) -> (f32, f32, f32) {
    let fy = (l + 16.0) / 116.0;
    let (fx, fz) = (fy + a / 500.0, fy - b / 200.0);
    let inv = |t: f32| {
        if t > 6.0 / 29.0 {
            t * t * t
        } else {
            3.0 * (6.0f32 / 29.0).powi(2) * (t - 4.0 / 29.0)
        }
    };
    let (x, y, z) = (0.9642 * inv(fx), inv(fy), 0.8249 * inv(fz));
    // XYZ (D50) → linear sRGB, Bradford-adapted (Lindbloom's matrix).
    let r = 3.134_051_4 * x - 1.617_275_5 * y - 0.490_724_1 * z;
    let g = -0.978_795_6 * x + 1.916_142_3 * y + 0.033_453_6 * z;
    let bl = 0.071_976_6 * x - 0.228_984_5 * y + 1.405_718_8 * z;
    let encode = |c: f32| {
        if c <= 0.003_130_8 {
            12.92 * c
        } else {
            1.055 * c.max(0.0).powf(1.0 / 2.4) - 0.055
        }
    };
    (encode(r), encode(g), encode(bl))
}

fn invalid(e: ::tiff::TiffError) -> Error {
    match e {
        ::tiff::TiffError::LimitsExceeded => Error::TooLarge("TIFF over the memory limit".into()),
        other => Error::Invalid(format!("TIFF: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_corpus as corpus;

    #[test]
    fn the_orientation_tag_is_read() {
        let probe = probe(&corpus("tiff/pillow/g4_orientation_6.tif")).unwrap();
        assert_eq!(probe.orientation, Orientation::Rotate90);
        // Stored 88 wide, turned a quarter: shown 590×88 (as Pillow shows it).
        assert_eq!((probe.width, probe.height), (88, 590), "stored");
        assert_eq!(probe.oriented(), (590, 88));
    }
}
