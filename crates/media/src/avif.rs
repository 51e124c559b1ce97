//! AVIF through libavif with libaom, both built from vendored sources (`libavif-sys`).
//! libavif reads the whole container (grids, alpha auxiliary images, 8–12-bit, every chroma
//! layout) and converts YUV to 8-bit RGB(A) itself; this module only drives it. The same
//! libaom encodes: [`Encoder`] writes still images and image sequences (animations), 8-bit
//! 4:2:0 tagged as sRGB, one thread, at a speed suited to on-demand work.
//!
//! `unsafe` here is limited to the libavif calls. The decoder owns no input: libavif reads
//! `bytes` in place, so [`Decoder`] borrows them for as long as it lives, and its `Drop`
//! destroys the decoder (and every image it owns) exactly once.
//!
//! Input: AVIF bytes (and the header [`Probe`]) or frames; output: frames or AVIF bytes.
//! Uses `header`, `limits`, `pixels`, `Error`.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::marker::PhantomData;

use image::metadata::Orientation;
use libavif_sys as sys;

use crate::header::Probe;
use crate::limits::Limits;
use crate::pixels::{Channels, Frame};
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
        // SAFETY: `raw` is the live decoder; its `diag` lives as long as it does.
        let message = describe(result, unsafe { &(*self.raw).diag });
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
        coded: None,
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

/// An AVIF being written: one still image, or an image sequence frame by frame.
pub struct Encoder {
    raw: *mut sys::avifEncoder,
    width: u32,
    height: u32,
    animated: bool,
    frames: u32,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "avif::Encoder({}×{}, {} frames)",
            self.width, self.height, self.frames
        )
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: `raw` came from avifEncoderCreate and is destroyed only here.
        unsafe { sys::avifEncoderDestroy(self.raw) }
    }
}

/// An avifImage owned by Rust, destroyed on drop.
struct Image(*mut sys::avifImage);

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: the pointer came from avifImageCreate and is destroyed only here.
        unsafe { sys::avifImageDestroy(self.0) }
    }
}

impl Encoder {
    /// `quality` 1–100 (libavif's scale), `speed` 0 (slowest) to 10 (fastest); `animated`
    /// writes an image sequence that loops forever.
    pub fn new(
        width: u32,
        height: u32,
        quality: u8,
        speed: u8,
        animated: bool,
    ) -> Result<Encoder, Error> {
        // SAFETY: plain constructor; NULL on allocation failure, checked below.
        let raw = unsafe { sys::avifEncoderCreate() };
        if raw.is_null() {
            return Err(Error::Encode("AVIF: out of memory".into()));
        }
        // SAFETY: `raw` is a live encoder; these are plain fields read at the first add.
        unsafe {
            let e = &mut *raw;
            e.codecChoice = sys::AVIF_CODEC_CHOICE_AOM;
            e.maxThreads = 1;
            e.speed = i32::from(speed.min(10));
            e.quality = i32::from(quality.clamp(1, 100));
            e.qualityAlpha = i32::from(quality.clamp(1, 100)).max(80);
            e.timescale = 1000;
            e.repetitionCount = sys::AVIF_REPETITION_COUNT_INFINITE;
        }
        Ok(Encoder {
            raw,
            width,
            height,
            animated,
            frames: 0,
        })
    }

    /// Adds a frame, shown for `frame.delay_ms` in a sequence.
    pub fn add(&mut self, frame: &Frame) -> Result<(), Error> {
        if frame.width != self.width || frame.height != self.height {
            return Err(Error::Encode("AVIF frame of the wrong size".into()));
        }
        if !self.animated && self.frames > 0 {
            return Err(Error::Encode("a still AVIF has one frame".into()));
        }
        let channels = frame.channels.count();
        let row_bytes = u32::try_from(frame.width as usize * channels)
            .map_err(|_| Error::Encode("AVIF frame too large".into()))?;
        if frame.data.len() != frame.width as usize * frame.height as usize * channels {
            return Err(Error::Encode("frame buffer size".into()));
        }
        // SAFETY: plain constructor; NULL on failure, checked.
        let image = Image(unsafe {
            sys::avifImageCreate(self.width, self.height, 8, sys::AVIF_PIXEL_FORMAT_YUV420)
        });
        if image.0.is_null() {
            return Err(Error::Encode("AVIF: out of memory".into()));
        }
        let flags = if self.animated {
            sys::AVIF_ADD_IMAGE_FLAG_NONE
        } else {
            sys::AVIF_ADD_IMAGE_FLAG_SINGLE
        };
        // SAFETY: `image` is live; `rgb` points into `frame.data`, which holds exactly
        // height rows of `row_bytes` (checked above) and outlives both calls; libavif only
        // reads through `pixels` in RGBToYUV and copies into its own planes. The encoder
        // is live and copies what it keeps from `image`.
        let result = unsafe {
            let img = &mut *image.0;
            img.colorPrimaries = sys::AVIF_COLOR_PRIMARIES_BT709 as _;
            img.transferCharacteristics = sys::AVIF_TRANSFER_CHARACTERISTICS_SRGB as _;
            img.matrixCoefficients = sys::AVIF_MATRIX_COEFFICIENTS_BT601 as _;
            img.yuvRange = sys::AVIF_RANGE_FULL;
            let mut rgb = sys::avifRGBImage::default();
            sys::avifRGBImageSetDefaults(&mut rgb, image.0);
            rgb.format = match frame.channels {
                Channels::Rgb => sys::AVIF_RGB_FORMAT_RGB,
                Channels::Rgba => sys::AVIF_RGB_FORMAT_RGBA,
            };
            rgb.chromaDownsampling = sys::AVIF_CHROMA_DOWNSAMPLING_AVERAGE;
            rgb.pixels = frame.data.as_ptr().cast_mut();
            rgb.rowBytes = row_bytes;
            let r = sys::avifImageRGBToYUV(image.0, &rgb);
            if r == sys::AVIF_RESULT_OK {
                let duration = u64::from(frame.delay_ms.max(1));
                sys::avifEncoderAddImage(self.raw, image.0, duration, flags as _)
            } else {
                r
            }
        };
        self.check(result)?;
        self.frames += 1;
        Ok(())
    }

    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Closes the file and returns its bytes.
    pub fn finish(self) -> Result<Vec<u8>, Error> {
        let mut out = sys::avifRWData::default();
        // SAFETY: the encoder is live; `out` is released by avifRWDataFree after its bytes
        // are copied.
        let result = unsafe { sys::avifEncoderFinish(self.raw, &mut out) };
        let bytes = if result == sys::AVIF_RESULT_OK && !out.data.is_null() {
            // SAFETY: libavif wrote `size` bytes at `data`.
            Ok(unsafe { std::slice::from_raw_parts(out.data, out.size) }.to_vec())
        } else {
            self.check(result)
                .and(Err(Error::Encode("AVIF: empty output".into())))
        };
        // SAFETY: frees what avifEncoderFinish allocated (a no-op on an empty buffer).
        unsafe { sys::avifRWDataFree(&mut out) };
        bytes
    }

    fn check(&self, result: sys::avifResult) -> Result<(), Error> {
        if result == sys::AVIF_RESULT_OK {
            return Ok(());
        }
        // SAFETY: `raw` is the live encoder; its `diag` lives as long as it does.
        Err(Error::Encode(describe(result, unsafe {
            &(*self.raw).diag
        })))
    }
}

/// libavif's name for `result` and its diagnostic text: `AVIF: <what>[: <detail>]`.
fn describe(result: sys::avifResult, diag: &sys::avifDiagnostics) -> String {
    // SAFETY: avifResultToString returns a static NUL-terminated string; `diag.error` is a
    // NUL-terminated buffer that libavif always terminates.
    let (what, detail) = unsafe {
        (
            CStr::from_ptr(sys::avifResultToString(result)).to_string_lossy(),
            CStr::from_ptr(diag.error.as_ptr()).to_string_lossy(),
        )
    };
    if detail.is_empty() {
        format!("AVIF: {what}")
    } else {
        format!("AVIF: {what}: {detail}")
    }
}
