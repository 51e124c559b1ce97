//! AVIF through libavif with libaom, both built from vendored sources (`libavif-sys`).
//! libavif reads the whole container (grids, alpha auxiliary images, 8–12-bit, every chroma
//! layout) and converts YUV to 8-bit RGB(A) itself; this module only drives it.
//!
//! `unsafe` here is limited to the libavif calls. The decoder owns no input: libavif reads
//! `bytes` in place, so [`Decoder`] borrows them for as long as it lives, and its `Drop`
//! destroys the decoder (and every image it owns) exactly once.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::marker::PhantomData;

use image::metadata::Orientation;
use libavif_sys as sys;

use crate::limits::Limits;
use crate::pixels::{Channels, Frame};
use crate::probe::Probe;
use crate::Error;

/// A libavif decoder reading `'a` bytes, with its container already parsed.
struct Decoder<'a> {
    raw: *mut sys::avifDecoder,
    _input: PhantomData<&'a [u8]>,
}

impl Drop for Decoder<'_> {
    fn drop(&mut self) {
        // SAFETY: `raw` came from avifDecoderCreate and is destroyed only here.
        unsafe { sys::avifDecoderDestroy(self.raw) }
    }
}

impl<'a> Decoder<'a> {
    /// Creates a single-threaded decoder over `bytes` and parses the container (no pixels).
    fn parse(bytes: &'a [u8], limits: &Limits) -> Result<Decoder<'a>, Error> {
        // SAFETY: plain constructor; NULL on allocation failure, checked below.
        let raw = unsafe { sys::avifDecoderCreate() };
        if raw.is_null() {
            return Err(Error::Invalid("AVIF: out of memory".into()));
        }
        let decoder = Decoder {
            raw,
            _input: PhantomData,
        };
        // SAFETY: `raw` is a live decoder; the settings are plain fields. The IO reads
        // `bytes`, which outlive the decoder (its lifetime is tied to them).
        let result = unsafe {
            let d = &mut *raw;
            // The service runs one decode per worker; libaom must not add threads.
            d.maxThreads = 1;
            d.ignoreExif = 1;
            d.ignoreXMP = 1;
            // Browsers accept files that bend the letter of the spec; so do we.
            d.strictFlags = sys::AVIF_STRICT_DISABLED;
            d.imageSizeLimit = u32::try_from(limits.max_pixels).unwrap_or(u32::MAX);
            d.imageCountLimit = limits.max_frames;
            let r = sys::avifDecoderSetIOMemory(raw, bytes.as_ptr(), bytes.len());
            if r == sys::AVIF_RESULT_OK {
                sys::avifDecoderParse(raw)
            } else {
                r
            }
        };
        decoder.check(result)?;
        Ok(decoder)
    }

    /// Turns a libavif result into an error carrying libavif's own diagnostic.
    fn check(&self, result: sys::avifResult) -> Result<(), Error> {
        if result == sys::AVIF_RESULT_OK {
            return Ok(());
        }
        // SAFETY: avifResultToString returns a static NUL-terminated string; `diag.error`
        // is a NUL-terminated buffer inside the live decoder.
        let (what, detail) = unsafe {
            (
                CStr::from_ptr(sys::avifResultToString(result))
                    .to_string_lossy()
                    .into_owned(),
                CStr::from_ptr((*self.raw).diag.error.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
            )
        };
        let message = if detail.is_empty() {
            format!("AVIF: {what}")
        } else {
            format!("AVIF: {what}: {detail}")
        };
        Err(match result {
            sys::AVIF_RESULT_NOT_IMPLEMENTED => Error::Unsupported("this AVIF feature"),
            _ => Error::Invalid(message),
        })
    }

    /// The current image (after parsing: its header; after `next`: its pixels).
    fn image(&self) -> Result<&sys::avifImage, Error> {
        // SAFETY: `raw` is live; `image` is owned by the decoder and lives as long as it,
        // and `&self` keeps the decoder alive for the returned borrow.
        unsafe { (*self.raw).image.as_ref() }.ok_or_else(|| Error::Invalid("AVIF: no image".into()))
    }

    fn frames(&self) -> u32 {
        // SAFETY: `raw` is live.
        let count = unsafe { (*self.raw).imageCount };
        u32::try_from(count).unwrap_or(0).max(1)
    }

    fn next(&mut self) -> Result<(), Error> {
        // SAFETY: `raw` is live and parsed.
        let result = unsafe { sys::avifDecoderNextImage(self.raw) };
        self.check(result)
    }
}

/// Header facts of an AVIF: size, frames (for sequences), orientation from `irot`/`imir`,
/// ICC profile.
pub fn probe(bytes: &[u8]) -> Result<Probe, Error> {
    let decoder = Decoder::parse(bytes, &Limits::default())?;
    let image = decoder.image()?;
    Ok(Probe {
        width: image.width,
        height: image.height,
        frames: decoder.frames(),
        orientation: orientation(image),
        icc: icc(image),
    })
}

/// The first (or only) image, as 8-bit RGB, or RGBA when it has an alpha plane.
pub fn first_frame(bytes: &[u8], limits: &Limits) -> Result<Frame, Error> {
    let mut decoder = Decoder::parse(bytes, limits)?;
    decoder.next()?;
    let image = decoder.image()?;
    let channels = if image.alphaPlane.is_null() {
        Channels::Rgb
    } else {
        Channels::Rgba
    };
    let (width, height) = (image.width, image.height);
    let row = width as usize * channels.count();
    let len = row
        .checked_mul(height as usize)
        .filter(|&n| n as u64 <= limits.max_alloc)
        .ok_or_else(|| Error::TooLarge("AVIF frame buffer".into()))?;
    let mut data = vec![0u8; len];
    let result = {
        // SAFETY: an all-zero avifRGBImage is then filled in by avifRGBImageSetDefaults.
        let mut rgb: sys::avifRGBImage = unsafe { std::mem::zeroed() };
        // SAFETY: `image` is the decoder's live image; `rgb.pixels` points at `data`, which
        // holds exactly `height` rows of `rowBytes` bytes and outlives the call.
        unsafe {
            sys::avifRGBImageSetDefaults(&mut rgb, image);
            rgb.depth = 8;
            rgb.format = match channels {
                Channels::Rgb => sys::AVIF_RGB_FORMAT_RGB,
                Channels::Rgba => sys::AVIF_RGB_FORMAT_RGBA,
            };
            rgb.maxThreads = 1;
            rgb.rowBytes = u32::try_from(row).map_err(|_| Error::TooLarge("AVIF row".into()))?;
            rgb.pixels = data.as_mut_ptr();
            sys::avifImageYUVToRGB(image, &mut rgb)
        }
    };
    decoder.check(result)?;
    Ok(Frame {
        width,
        height,
        channels,
        data,
        delay_ms: 0,
    })
}

/// `irot` (counter-clockwise quarter turns) then `imir` (axis 0: left–right mirror, axis 1:
/// top–bottom), as the equivalent EXIF orientation.
fn orientation(image: &sys::avifImage) -> Orientation {
    let flags = image.transformFlags;
    let turns = if flags & sys::AVIF_TRANSFORM_IROT != 0 {
        image.irot.angle % 4
    } else {
        0
    };
    let mirror = (flags & sys::AVIF_TRANSFORM_IMIR != 0).then_some(image.imir.axis);
    use Orientation as O;
    match (turns, mirror) {
        (0, None) => O::NoTransforms,
        (0, Some(0)) | (2, Some(1)) => O::FlipHorizontal,
        (0, Some(_)) | (2, Some(_)) => O::FlipVertical,
        (1, None) => O::Rotate270,
        (1, Some(0)) | (3, Some(1)) => O::Rotate270FlipH,
        (1, Some(_)) | (3, Some(_)) => O::Rotate90FlipH,
        (2, None) => O::Rotate180,
        _ => O::Rotate90,
    }
}

fn icc(image: &sys::avifImage) -> Option<Vec<u8>> {
    if image.icc.data.is_null() || image.icc.size == 0 {
        return None;
    }
    // SAFETY: libavif owns `icc.size` bytes at `icc.data` for the image's lifetime.
    Some(unsafe { std::slice::from_raw_parts(image.icc.data, image.icc.size) }.to_vec())
}
