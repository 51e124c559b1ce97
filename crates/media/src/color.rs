//! Colour management: an image tagged with an ICC profile is converted to sRGB. Browsers
//! apply embedded profiles, and our output carries none (metadata is stripped), so without
//! this step a Display P3 phone photo or an Adobe RGB camera file would look washed out.
//! The conversion runs on the small, resized frame, where it costs next to nothing.
//!
//! Input: a frame and the source's ICC bytes. Uses moxcms (pure Rust, already used by the
//! `image` crate). A profile that does not parse, or is not an RGB profile, is ignored, as
//! browsers ignore broken profiles: the pixels are then taken to be sRGB.

use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};

use crate::pixels::{Channels, Frame};

/// Profiles larger than this are ignored (real ones are a few KiB; the corpus has a 100 MB
/// decompression bomb in a PNG iCCP chunk).
const MAX_ICC_BYTES: usize = 4 * 1024 * 1024;

/// A prepared conversion from one source profile to sRGB, reused for every frame.
pub struct ToSrgb(std::sync::Arc<moxcms::Transform8BitExecutor>);

impl std::fmt::Debug for ToSrgb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToSrgb")
    }
}

impl ToSrgb {
    /// `None` when there is nothing to do (no profile, an unusable one, or not RGB).
    pub fn new(icc: Option<&[u8]>, channels: Channels) -> Option<ToSrgb> {
        let icc = icc.filter(|p| p.len() <= MAX_ICC_BYTES)?;
        let source = ColorProfile::new_from_slice(icc).ok()?;
        if source.color_space != DataColorSpace::Rgb {
            return None;
        }
        let layout = match channels {
            Channels::Rgb => Layout::Rgb,
            Channels::Rgba => Layout::Rgba,
        };
        source
            .create_transform_8bit(
                layout,
                &ColorProfile::new_srgb(),
                layout,
                TransformOptions::default(),
            )
            .ok()
            .map(ToSrgb)
    }

    /// Converts `frame` in place. On a (never expected) size mismatch it is left as it was.
    pub fn apply(&self, frame: &mut Frame) {
        let mut out = vec![0u8; frame.data.len()];
        if self.0.transform(&frame.data, &mut out).is_ok() {
            frame.data = out;
        }
    }
}

/// Converts `frame` to sRGB if `icc` asks for it.
pub fn to_srgb(frame: &mut Frame, icc: Option<&[u8]>) {
    if let Some(t) = ToSrgb::new(icc, frame.channels) {
        t.apply(frame);
    }
}

#[cfg(test)]
mod tests {
    use crate::{render, Format, Limits, Transform};

    /// A flat 64×64 JPEG of `rgb`, tagged with `icc` in an APP2 segment after SOI.
    fn tagged_jpeg(rgb: [u8; 3], icc: &[u8]) -> Vec<u8> {
        let px = rgb.repeat(64 * 64);
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(95).unwrap();
        let image = turbojpeg::Image {
            pixels: px.as_slice(),
            width: 64,
            pitch: 192,
            height: 64,
            format: turbojpeg::PixelFormat::RGB,
        };
        let jpeg = c.compress_to_vec(image).unwrap();
        let mut app2 = vec![0xFF, 0xE2];
        let len = (2 + 12 + 2 + icc.len()) as u16;
        app2.extend_from_slice(&len.to_be_bytes());
        app2.extend_from_slice(b"ICC_PROFILE\0\x01\x01");
        app2.extend_from_slice(icc);
        let mut out = jpeg[..2].to_vec();
        out.extend(app2);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    /// Display P3 → sRGB by the textbook route (both use the sRGB transfer curve and D65):
    /// linearise, P3 → XYZ, XYZ → sRGB, clip, encode. Independent of moxcms.
    fn p3_to_srgb(rgb: [u8; 3]) -> [u8; 3] {
        let lin = |v: f64| {
            if v <= 0.04045 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        let enc = |v: f64| {
            let v = v.clamp(0.0, 1.0);
            let e = if v <= 0.0031308 {
                v * 12.92
            } else {
                1.055 * v.powf(1.0 / 2.4) - 0.055
            };
            (e * 255.0).round() as u8
        };
        let [r, g, b] = rgb.map(|c| lin(f64::from(c) / 255.0));
        let x = 0.4865709 * r + 0.2656677 * g + 0.1982173 * b;
        let y = 0.2289746 * r + 0.6917385 * g + 0.0792869 * b;
        let z = 0.0451134 * g + 1.0439444 * b;
        [
            enc(3.2404542 * x - 1.5371385 * y - 0.4985314 * z),
            enc(-0.9692660 * x + 1.8760108 * y + 0.0415560 * z),
            enc(0.0556434 * x - 0.2040259 * y + 1.0572252 * z),
        ]
    }

    fn centre_of_webp(bytes: &[u8]) -> [u8; 3] {
        let mut d = image_webp::WebPDecoder::new(std::io::Cursor::new(bytes)).unwrap();
        let mut buf = vec![0u8; d.output_buffer_size().unwrap()];
        d.read_image(&mut buf).unwrap();
        let n = if d.has_alpha() { 4 } else { 3 };
        let (w, h) = d.dimensions();
        let at = ((h / 2 * w + w / 2) as usize) * n;
        [buf[at], buf[at + 1], buf[at + 2]]
    }

    #[test]
    fn display_p3_input_is_converted_to_srgb() {
        let p3 = [200, 100, 50];
        let want = p3_to_srgb(p3);
        assert!(
            want.iter().zip(p3).any(|(a, b)| a.abs_diff(b) > 10),
            "the test can tell: {want:?}"
        );
        let icc = moxcms::ColorProfile::new_display_p3().encode().unwrap();
        let jpeg = tagged_jpeg(p3, &icc);
        assert_eq!(
            crate::jpeg::header_segments(&jpeg).icc.as_deref(),
            Some(&icc[..]),
            "profile reassembled"
        );
        let out = render(&jpeg, Format::Jpeg, Transform::Static, &Limits::default()).unwrap();
        let got = centre_of_webp(&out.bytes);
        for (g, w) in got.iter().zip(want) {
            assert!(
                g.abs_diff(w) <= 6,
                "P3 {p3:?} should show as sRGB {want:?}, got {got:?}"
            );
        }
        // Without a profile the same pixels are taken as sRGB and kept.
        let plain = render(
            &tagged_jpeg(p3, b"not a profile"),
            Format::Jpeg,
            Transform::Static,
            &Limits::default(),
        )
        .unwrap();
        let kept = centre_of_webp(&plain.bytes);
        for (k, p) in kept.iter().zip(p3) {
            assert!(
                k.abs_diff(p) <= 6,
                "untagged (broken profile) colours kept: {kept:?}"
            );
        }
    }
}
