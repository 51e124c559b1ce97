//! JPEG decoding through libjpeg-turbo (the `turbojpeg` crate, built from its vendored
//! sources), at the smallest DCT scale (n/8) that still covers the target size, so a 12 MP
//! photo for a 200×200 preview is never decoded at full size.
//!
//! Progressive JPEGs get one more shortcut. At 1/8 scale the inverse DCT uses only the DC
//! coefficient of each block, and a progressive file sends every DC coefficient first, in
//! its first scan(s). So when 1/8 is enough we cut the file right after the scans that
//! complete the DC of every component and close it with an EOI marker: a shorter, valid
//! progressive JPEG that decodes without entropy-decoding the AC scans, which is where the
//! time goes. Luma comes out the same (less at most the DC refinement bit). Subsampled
//! chroma loses its detail inside each 16×16 block: libjpeg decodes 4:2:0 chroma at 1/8
//! with a 2×2 IDCT (instead of upsampling) that would use the first AC terms. On a 45 MP
//! photo the mean difference from the full decode is ~1 level; it runs 3× faster.
//!
//! Input: JPEG bytes and a target size; output: a [`Frame`] (and the header segments: ICC,
//! EXIF). Uses `pixels`, `Error`.

use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};

use crate::pixels::{Channels, Frame};
use crate::Error;

/// The smallest n/8 DCT scale at which a `width`×`height` JPEG decodes to at least
/// `min_w`×`min_h`, as the `n` of n/8 (what [`decode_scaled`] uses, and what the memory
/// estimate prices). Kept as eighths: `ScalingFactor::new` reduces the fraction (2/8 reads
/// back as 1/4), so its numerator alone does not say which scale it is.
pub(crate) fn eighths_for(width: usize, height: usize, min_w: u32, min_h: u32) -> usize {
    (1..=8usize)
        .find(|&n| {
            let s = ScalingFactor::new(n, 8);
            s.scale(width) >= min_w as usize && s.scale(height) >= min_h as usize
        })
        .unwrap_or(8)
}

/// Memory a decode of `bytes` holds besides its output (which the estimate counts at its
/// scale): the copies it may make of the input (header junk taken out, the DC cut), and
/// for a progressive file libjpeg's coefficients of the whole image — 2 bytes a sample of
/// every component at its own resolution, whatever the output scale (a 45 MP 4:2:0 photo:
/// 136 MB). A sandboxed worker is held to its estimate, so this must be counted, not met.
pub fn decode_buffers(bytes: &[u8]) -> u64 {
    let copies = (bytes.len() as u64).saturating_mul(2);
    let header = Decompressor::new().and_then(|mut d| d.read_header(bytes));
    let Ok(header) = header.or_else(|_| {
        let cleaned = without_header_junk(bytes).unwrap_or_default();
        Decompressor::new().and_then(|mut d| d.read_header(&cleaned))
    }) else {
        return copies;
    };
    if !header.is_progressive {
        return copies;
    }
    let pixels = (header.width as u64).saturating_mul(header.height as u64);
    // Luma and chroma samples per pixel, in quarters.
    let quarters: u64 = match (header.colorspace, header.subsamp) {
        (Colorspace::CMYK | Colorspace::YCCK, _) => 16,
        (_, turbojpeg::Subsamp::Gray) => 4,
        (_, turbojpeg::Subsamp::Sub2x2 | turbojpeg::Subsamp::Sub4x1) => 6,
        (_, turbojpeg::Subsamp::Sub2x1 | turbojpeg::Subsamp::Sub1x2) => 8,
        _ => 12,
    };
    copies.saturating_add(pixels.saturating_mul(quarters) / 4 * 2)
}

/// Decodes at the smallest scale whose output is at least `min_w`×`min_h` (stored
/// orientation). Always returns 8-bit RGB.
pub fn decode_scaled(bytes: &[u8], min_w: u32, min_h: u32) -> Result<Frame, Error> {
    let cleaned = without_header_junk(bytes);
    let bytes = cleaned.as_deref().unwrap_or(bytes);
    let err = |e: turbojpeg::Error| Error::Invalid(e.to_string());
    let mut d = Decompressor::new().map_err(err)?;
    let header = d.read_header(bytes).map_err(err)?;
    let eighths = eighths_for(header.width, header.height, min_w, min_h);
    let factor = ScalingFactor::new(eighths, 8);
    let cut = if eighths == 1 && header.is_progressive && !header.is_arithmetic {
        dc_only_prefix(bytes)
    } else {
        None
    };
    let data = cut.as_deref().unwrap_or(bytes);
    d.set_scaling_factor(factor).map_err(err)?;
    let scaled = header.scaled(factor);
    let cmyk = matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK);
    let (format, channels) = if cmyk {
        (PixelFormat::CMYK, 4)
    } else {
        (PixelFormat::RGB, 3)
    };
    let pitch = scaled.width * channels;
    let mut pixels = vec![0u8; pitch * scaled.height];
    let decoded = d.decompress(
        data,
        Image {
            pixels: pixels.as_mut_slice(),
            width: scaled.width,
            pitch,
            height: scaled.height,
            format,
        },
    );
    match decoded {
        Ok(()) => {}
        // TurboJPEG reports libjpeg warnings as errors, after decoding the whole image. Junk
        // bytes before a marker (common before EOI) are skipped by the decoder and the
        // picture is complete, so that one warning is accepted; truncation and corrupt data
        // warnings stay errors.
        Err(turbojpeg::Error::TurboJpegError(msg)) if msg.contains(BENIGN_WARNING) => {}
        Err(e) => return Err(err(e)),
    }
    if cmyk {
        pixels = cmyk_to_rgb(&pixels, has_adobe_marker(bytes));
    }
    Ok(Frame {
        width: u32::try_from(scaled.width).map_err(|_| Error::TooLarge("width".into()))?,
        height: u32::try_from(scaled.height).map_err(|_| Error::TooLarge("height".into()))?,
        channels: Channels::Rgb,
        data: pixels,
        delay_ms: 0,
    })
}

/// What the probe needs from a JPEG's header segments (those before the first scan).
#[derive(Debug, Default)]
pub struct HeaderSegments<'a> {
    /// The first APP1 `Exif` segment's TIFF data (after `Exif\0\0`).
    pub exif: Option<&'a [u8]>,
    /// The embedded ICC profile: APP2 `ICC_PROFILE\0` segments (sequence number, count,
    /// data) reassembled in order. `None` if absent or inconsistent.
    pub icc: Option<Vec<u8>>,
}

/// Walks the marker segments up to the first scan (SOS). Hand-written: TurboJPEG exposes
/// neither the ICC profile nor EXIF, and the EXIF reader we use (kamadak-exif), left to walk
/// the file itself, reads on through the whole entropy-coded data when there is no EXIF,
/// allocating at every stuffed byte (0.5 ms of a 2 MB photo); this walk stops where EXIF
/// can no longer be.
pub fn header_segments(b: &[u8]) -> HeaderSegments<'_> {
    let mut found = HeaderSegments::default();
    let mut chunks: Vec<(u8, &[u8])> = Vec::new();
    let mut count = 0u8;
    let mut pos = 2usize;
    while let Some(next) = next_marker(b, pos) {
        let Some(&marker) = b.get(next + 1) else {
            break;
        };
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let Some(&[hi, lo]) = b.get(next + 2..next + 4) else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let Some(body) = b.get(next + 4..next + 2 + len) else {
            break;
        };
        match marker {
            0xE1 if found.exif.is_none() => found.exif = body.strip_prefix(b"Exif\0\0"),
            0xE2 => {
                if let Some([seq, n, data @ ..]) = body.strip_prefix(b"ICC_PROFILE\0") {
                    chunks.push((*seq, data));
                    count = *n;
                }
            }
            _ => {}
        }
        pos = next + 2 + len;
    }
    if !chunks.is_empty() && chunks.len() == usize::from(count) {
        chunks.sort_by_key(|(seq, _)| *seq);
        found.icc = Some(
            chunks
                .into_iter()
                .flat_map(|(_, d)| d.iter().copied())
                .collect(),
        );
    }
    found
}

/// Index of the next marker at or after `pos`: an FF followed by neither 00 (a stuffed
/// byte) nor FF (fill before the real marker byte).
fn next_marker(b: &[u8], pos: usize) -> Option<usize> {
    let offset = b
        .get(pos..)?
        .windows(2)
        .position(|w| matches!(w, [0xFF, m] if *m != 0x00 && *m != 0xFF))?;
    Some(pos + offset)
}

/// libjpeg's JWRN_EXTRANEOUS_DATA message.
const BENIGN_WARNING: &str = "extraneous bytes before marker";

/// Reads the header, tolerating stray bytes between header segments.
pub fn read_header(bytes: &[u8]) -> Result<turbojpeg::DecompressHeader, Error> {
    let cleaned = without_header_junk(bytes);
    turbojpeg::read_header(cleaned.as_deref().unwrap_or(bytes))
        .map_err(|e| Error::Invalid(e.to_string()))
}

/// A copy without the stray bytes some writers leave between header segments (before the
/// first scan), or `None` when there are none. libjpeg skips such bytes with a warning, but
/// TurboJPEG turns the warning into an error before it has even read the header.
fn without_header_junk(b: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 2usize; // after SOI
    let mut junk: Vec<(usize, usize)> = Vec::new();
    loop {
        let next = next_marker(b, pos)?;
        if next > pos {
            junk.push((pos, next));
        }
        let marker = *b.get(next + 1)?;
        if marker == 0xDA || marker == 0xD9 {
            break; // start of scan: the header is over
        }
        let len = usize::from(u16::from_be_bytes([*b.get(next + 2)?, *b.get(next + 3)?]));
        pos = next + 2 + len;
    }
    if junk.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    let mut from = 0;
    for (start, end) in junk {
        out.extend_from_slice(b.get(from..start)?);
        from = end;
    }
    out.extend_from_slice(b.get(from..)?);
    Some(out)
}

/// Adobe CMYK JPEGs (APP14 "Adobe") store inverted values; others store plain CMYK. Without
/// an ICC transform this is the usual naive conversion, good enough for thumbnails.
fn cmyk_to_rgb(cmyk: &[u8], inverted: bool) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let &[c, m, y, k] = px else { continue };
        let [c, m, y, k] = [c, m, y, k].map(u32::from);
        let (c, m, y, k) = if inverted {
            (c, m, y, k)
        } else {
            (255 - c, 255 - m, 255 - y, 255 - k)
        };
        // (stored c × k) / 255, all ≤ 255 so the casts are lossless.
        rgb.extend_from_slice(&[
            (c * k / 255) as u8,
            (m * k / 255) as u8,
            (y * k / 255) as u8,
        ]);
    }
    rgb
}

/// An APP14 segment (FF EE, length, "Adobe") near the start of the file.
fn has_adobe_marker(b: &[u8]) -> bool {
    b.windows(9)
        .take(64 * 1024)
        .any(|w| matches!(w, [0xFF, 0xEE, _, _, b'A', b'd', b'o', b'b', b'e']))
}

/// The file cut after the scans that complete the DC coefficients of every component, with
/// an EOI appended; `None` when that is not possible or would not save anything.
fn dc_only_prefix(b: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 2usize; // after SOI
    let mut components: Vec<u8> = Vec::new();
    let mut dc_done: Vec<u8> = Vec::new();
    let mut dqt_at: Vec<usize> = Vec::new();
    loop {
        // Markers may be preceded by fill bytes (0xFF).
        while b.get(pos) == Some(&0xFF) && b.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if b.get(pos) != Some(&0xFF) {
            return None;
        }
        let marker = *b.get(pos + 1)?;
        match marker {
            0xD9 => return None, // EOI before the DC was complete
            0x01 | 0xD0..=0xD7 => {
                pos += 2;
                continue;
            }
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([*b.get(pos + 2)?, *b.get(pos + 3)?]));
        let segment = b.get(pos + 4..pos + 2 + len)?;
        let end = pos + 2 + len;
        match marker {
            0xDB => dqt_at.push(pos),
            // Progressive, Huffman-coded frame header: remember the component ids.
            0xC2 => {
                let n = usize::from(*segment.get(5)?);
                components = (0..n)
                    .map(|i| segment.get(6 + 3 * i).copied())
                    .collect::<Option<Vec<u8>>>()?;
            }
            0xC0 | 0xC1 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
            0xDA => {
                let ns = usize::from(*segment.first()?);
                let ids: Vec<u8> = (0..ns)
                    .map(|i| segment.get(1 + 2 * i).copied())
                    .collect::<Option<Vec<u8>>>()?;
                let ss = *segment.get(1 + 2 * ns)?;
                let ah_al = *segment.get(3 + 2 * ns)?;
                let data_end = entropy_end(b, end)?;
                if ss == 0 && ah_al >> 4 == 0 {
                    dc_done.extend(ids);
                }
                if !components.is_empty() && components.iter().all(|c| dc_done.contains(c)) {
                    if data_end + 1024 >= b.len() {
                        return None; // nothing worth saving
                    }
                    let mut out = Vec::with_capacity(data_end + 2);
                    out.extend_from_slice(b.get(..data_end)?);
                    out.extend_from_slice(&[0xFF, 0xD9]);
                    for at in dqt_at {
                        disable_smoothing(&mut out, at);
                    }
                    return Some(out);
                }
                pos = data_end;
                continue;
            }
            _ => {}
        }
        pos = end;
    }
}

/// Zeroes the quantizer of the first AC coefficient in every table of the DQT segment at
/// `pos`. The cut file carries no AC data, so AC quantizers multiply nothing; but libjpeg
/// sees incomplete AC scans and would run its progressive "block smoothing", which guesses
/// AC values from neighbouring blocks (slow, and it shifts the 1/8-scale result). libjpeg
/// skips smoothing for a table whose first AC quantizer is zero (jdcoefct.c,
/// `smoothing_ok`), so this keeps the decode exact and fast.
fn disable_smoothing(out: &mut [u8], pos: usize) {
    let Some(&[hi, lo]) = out.get(pos + 2..pos + 4) else {
        return;
    };
    let end = pos + 2 + usize::from(u16::from_be_bytes([hi, lo]));
    let mut at = pos + 4;
    while at < end {
        let Some(&pq_tq) = out.get(at) else { return };
        let width = if pq_tq >> 4 == 0 { 1 } else { 2 };
        // Zig-zag index 1 is the first AC coefficient.
        for byte in at + 1 + width..at + 1 + 2 * width {
            if let Some(b) = out.get_mut(byte) {
                *b = 0;
            }
        }
        at += 1 + 64 * width;
    }
}

/// Where the entropy-coded data that starts at `from` ends: the next marker that is not a
/// stuffed byte (FF 00) or a restart marker (FF D0–D7).
fn entropy_end(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let rel = b.get(i..)?.iter().position(|&x| x == 0xFF)?;
        i += rel;
        match b.get(i + 1) {
            Some(0x00) | Some(0xD0..=0xD7) | Some(0xFF) => i += 1,
            Some(_) => return Some(i),
            None => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo_like(w: usize, h: usize, progressive: bool) -> Vec<u8> {
        let mut px = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                px[i] = (x * 255 / w) as u8;
                px[i + 1] = (y * 255 / h) as u8;
                px[i + 2] = ((x ^ y) & 0xFF) as u8;
            }
        }
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(90).unwrap();
        c.set_progressive(progressive).unwrap();
        let image = Image {
            pixels: px.as_slice(),
            width: w,
            pitch: w * 3,
            height: h,
            format: PixelFormat::RGB,
        };
        c.compress_to_vec(image).unwrap()
    }

    #[test]
    fn progressive_dc_cut_decodes_like_the_full_file_at_one_eighth() {
        let full = photo_like(800, 600, true);
        let cut = dc_only_prefix(&full).expect("a progressive file can be cut");
        assert!(
            cut.len() < full.len() / 2,
            "the cut drops the AC scans: {} of {}",
            cut.len(),
            full.len()
        );
        let a = decode_scaled(&full, 100, 75).unwrap();
        // Decode the full file at 1/8 without the shortcut, for comparison.
        let mut d = Decompressor::new().unwrap();
        d.set_scaling_factor(ScalingFactor::ONE_EIGHTH).unwrap();
        let mut reference = vec![0u8; 100 * 75 * 3];
        d.decompress(
            &full,
            Image {
                pixels: reference.as_mut_slice(),
                width: 100,
                pitch: 300,
                height: 75,
                format: PixelFormat::RGB,
            },
        )
        .unwrap();
        assert_eq!((a.width, a.height), (100, 75));
        let worst = a
            .data
            .iter()
            .zip(&reference)
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap();
        assert!(
            worst <= 3,
            "DC-only decode within rounding of the full one, worst {worst}"
        );
    }

    #[test]
    fn stray_bytes_between_segments_or_before_eoi_are_tolerated() {
        let clean = photo_like(64, 48, false);
        let reference = decode_scaled(&clean, 64, 48).unwrap();
        // 4 junk bytes, a stuffed-looking FF 00 among them, before the first DQT (after the
        // 2-byte SOI and the JFIF APP0), as in the corpus' jpeg_ff00_header.jpg.
        let app0_len = usize::from(u16::from_be_bytes([clean[4], clean[5]]));
        let at = 4 + app0_len;
        assert_eq!(clean[at], 0xFF, "a marker follows APP0");
        let mut header_junk = clean.clone();
        header_junk.splice(at..at, [0xFF, 0x00, 0x22, 0x33]);
        assert!(
            turbojpeg::read_header(&header_junk).is_err(),
            "TurboJPEG alone refuses it"
        );
        assert_eq!(read_header(&header_junk).unwrap().width, 64);
        assert_eq!(decode_scaled(&header_junk, 64, 48).unwrap(), reference);
        // Junk before EOI: decoded, same pixels.
        let mut tail_junk = clean.clone();
        let eoi = tail_junk.len() - 2;
        tail_junk.splice(eoi..eoi, [0x00, 0x01, 0x02]);
        assert_eq!(decode_scaled(&tail_junk, 64, 48).unwrap(), reference);
        // Truncation is still an error.
        assert!(decode_scaled(&clean[..clean.len() / 2], 64, 48).is_err());
    }

    #[test]
    fn baseline_files_are_not_cut_and_scale_is_chosen_to_cover_the_target() {
        let base = photo_like(800, 600, false);
        assert!(dc_only_prefix(&base).is_none());
        for ((tw, th), want) in [
            ((100, 75), (100, 75)),
            ((101, 75), (200, 150)),
            ((500, 10), (500, 375)),
            ((801, 1), (800, 600)),
        ] {
            let f = decode_scaled(&base, tw, th).unwrap();
            assert_eq!((f.width, f.height), want, "target {tw}×{th}");
            assert_eq!(f.data.len(), (f.width * f.height * 3) as usize);
        }
    }

    #[test]
    fn only_the_one_eighth_scale_takes_the_dc_cut() {
        assert_eq!(eighths_for(800, 600, 100, 75), 1);
        assert_eq!(
            eighths_for(800, 600, 200, 150),
            2,
            "2/8, not its reduced 1/4"
        );
        assert_eq!(eighths_for(800, 600, 400, 300), 4);
        // A progressive file cut short in its AC scans: its DC scans are whole, so the 1/8
        // decode (which reads only them) works; any larger scale needs the missing scans.
        let full = photo_like(800, 600, true);
        let truncated = &full[..full.len() * 3 / 4];
        assert!(
            decode_scaled(truncated, 100, 75).is_ok(),
            "1/8 from the DC scans"
        );
        for (w, h) in [(200, 150), (400, 300), (800, 600)] {
            assert!(
                decode_scaled(truncated, w, h).is_err(),
                "{w}×{h}: a truncated file is an error, not a DC-only picture"
            );
        }
    }
}
