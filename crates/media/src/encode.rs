//! Frames → bytes: WebP (still and animated) through libwebp built from vendored sources
//! (`libwebp-sys`), JPEG through libjpeg-turbo (`turbojpeg`: progressive, optimised
//! Huffman tables, 4:2:0), PNG through the `png` crate, GIF through the `gif` crate (NeuQuant
//! palettes per frame). AVIF lives in [`crate::avif`], beside its decoder.
//!
//! WebP settings are the Misskey spec's: lossy, quality 77, alpha quality 95, method 2,
//! smart ("sharp YUV") chroma subsampling; animations loop forever, and are encoded without
//! sharp YUV and with a key frame every 3–5 frames ([`MISSKEY_ANIMATED_WEBP`], measured), and
//! `emoji` animations with one segment at quality 60 ([`MISSKEY_EMOJI_ANIMATED_WEBP`],
//! measured). The store mode passes its
//! own quality and leaves sharp YUV off: at 512×384 it was 14 of the 22 ms of the encode,
//! and the photo came out 4 % larger with it (`docs/benchmarks.md`). The `webp` crate pins an old
//! libwebp and the animation crates default to lossless, so this module is a thin wrapper
//! over `WebPEncode` and `WebPAnimEncoder`: the only `unsafe` code in the project. Every
//! pointer handed to libwebp comes from a live Rust value that outlives the call, and each
//! libwebp allocation is released by a `Drop` guard.
//!
//! Input: [`Frame`]s and an output choice; output: encoded bytes. Uses `pixels`, `Error`.

#![allow(unsafe_code)]

use std::ffi::c_void;

use libwebp_sys as sys;

use crate::pixels::{Channels, Frame};
use crate::Error;

/// The Misskey spec's WebP quality.
pub const QUALITY: f32 = 77.0;
const ALPHA_QUALITY: i32 = 95;
/// The Misskey spec's libwebp effort.
pub const METHOD: i32 = 2;

/// How a WebP is encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WebpSettings {
    /// 0–100.
    pub quality: f32,
    /// libwebp's sharp ("smart") RGB→YUV conversion: crisper colour edges on graphics, but
    /// most of the encode time at small sizes, and no smaller on photos.
    pub sharp_yuv: bool,
    /// libwebp's effort, 0 (fastest) – 6.
    pub method: i32,
    /// Animations: a key frame at least every `kmax` frames and at most every `kmin`
    /// (`WebPAnimEncoderOptions`); `None`: libwebp's default (no forced key frames).
    pub keyframes: Option<(i32, i32)>,
    /// libwebp's number of segments (macroblock classes with their own quantiser), 1–4.
    /// One segment skips the analysis pass that sorts macroblocks into them.
    pub segments: i32,
}

/// The Misskey spec's settings: quality 77, sharp YUV, method 2.
pub const MISSKEY_WEBP: WebpSettings = WebpSettings {
    quality: QUALITY,
    sharp_yuv: true,
    method: METHOD,
    keyframes: None,
    segments: 4,
};

fn config(settings: WebpSettings) -> Result<sys::WebPConfig, Error> {
    let quality = settings.quality;
    let mut config =
        sys::WebPConfig::new_with_preset(sys::WebPPreset::WEBP_PRESET_DEFAULT, quality)
            .map_err(|()| Error::Encode("libwebp version mismatch".into()))?;
    config.lossless = 0;
    config.quality = quality;
    config.alpha_quality = ALPHA_QUALITY;
    config.method = settings.method;
    config.use_sharp_yuv = i32::from(settings.sharp_yuv);
    config.segments = settings.segments;
    // SAFETY: `config` is a fully initialised WebPConfig owned by this frame.
    if unsafe { sys::WebPValidateConfig(&config) } == 0 {
        return Err(Error::Encode("invalid WebP configuration".into()));
    }
    Ok(config)
}

/// The remote mode's animations (`emoji`, `avatar` of a GIF, APNG or animated WebP): sharp
/// YUV off and a key frame every 3–5 frames. Measured on the encoder frontier
/// (`benches/frontier.rs`, docs/benchmarks.md) for the 30-frame GIF `emoji` against the
/// spec's settings: 37 % less encode time, 11 % smaller, and a higher SSIM (R, G, B) — the
/// key frames spare libwebp its sub-frame candidate search and stop errors from
/// accumulating frame to frame. Stills keep the spec's settings (sharp YUV is worth its
/// time on a still's colour edges there).
pub const MISSKEY_ANIMATED_WEBP: WebpSettings = WebpSettings {
    sharp_yuv: false,
    keyframes: Some((3, 5)),
    ..MISSKEY_WEBP
};

/// The `emoji` animations (at most 128 px high): as [`MISSKEY_ANIMATED_WEBP`], with one
/// segment at quality 60. At this size the segment analysis and the four segments' headers
/// cost more than they save: measured through the service against the reference
/// (`bench/run.sh`, docs/benchmarks.md) on the 30-frame GIF `emoji`, 22 % less CPU, a
/// smaller file, and an SSIM against a Lanczos downscale of the source still above the
/// reference's. Not for larger animations: a 320 px avatar came out 14 % larger and worse.
pub const MISSKEY_EMOJI_ANIMATED_WEBP: WebpSettings = WebpSettings {
    quality: 60.0,
    segments: 1,
    ..MISSKEY_ANIMATED_WEBP
};

/// A WebPPicture holding a copy of one frame, freed on drop.
struct Picture(sys::WebPPicture);

impl Picture {
    fn new(frame: &Frame) -> Result<Picture, Error> {
        let mut pic = sys::WebPPicture::new()
            .map_err(|()| Error::Encode("libwebp version mismatch".into()))?;
        let too_big = || Error::Encode("frame too large for WebP".into());
        pic.width = i32::try_from(frame.width).map_err(|_| too_big())?;
        pic.height = i32::try_from(frame.height).map_err(|_| too_big())?;
        // ARGB input lets WebPEncode do the sharp-YUV conversion itself.
        pic.use_argb = 1;
        let stride =
            i32::try_from(frame.width as usize * frame.channels.count()).map_err(|_| too_big())?;
        let expected = frame.width as usize * frame.height as usize * frame.channels.count();
        if frame.data.len() != expected {
            return Err(Error::Encode("frame buffer size".into()));
        }
        // SAFETY: `pic` is initialised with width/height set; `frame.data` holds exactly
        // height rows of `stride` bytes (checked above) and outlives the call; libwebp copies.
        let ok = unsafe {
            match frame.channels {
                Channels::Rgb => sys::WebPPictureImportRGB(&mut pic, frame.data.as_ptr(), stride),
                Channels::Rgba => sys::WebPPictureImportRGBA(&mut pic, frame.data.as_ptr(), stride),
            }
        };
        let picture = Picture(pic);
        if ok == 0 {
            return Err(Error::Encode("WebP import failed (out of memory?)".into()));
        }
        Ok(picture)
    }
}

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: the picture was initialised by WebPPictureInit; freeing twice is not
        // possible because this is its only owner.
        unsafe { sys::WebPPictureFree(&mut self.0) }
    }
}

/// One still frame as a lossy WebP.
pub fn webp(frame: &Frame, settings: WebpSettings) -> Result<Vec<u8>, Error> {
    let config = config(settings)?;
    let mut picture = Picture::new(frame)?;
    // SAFETY: an all-zero WebPMemoryWriter is what WebPMemoryWriterInit produces anyway.
    let mut writer: sys::WebPMemoryWriter = unsafe { std::mem::zeroed() };
    // SAFETY: `writer` lives until after WebPMemoryWriterClear below; the picture's writer
    // callback and custom_ptr point at it only for the duration of WebPEncode.
    unsafe {
        sys::WebPMemoryWriterInit(&mut writer);
        picture.0.writer = Some(sys::WebPMemoryWrite);
        picture.0.custom_ptr = std::ptr::addr_of_mut!(writer).cast::<c_void>();
        let ok = sys::WebPEncode(&config, &mut picture.0);
        picture.0.custom_ptr = std::ptr::null_mut();
        let out = if ok != 0 && !writer.mem.is_null() {
            Ok(std::slice::from_raw_parts(writer.mem, writer.size).to_vec())
        } else {
            Err(Error::Encode(format!(
                "WebPEncode failed: {:?}",
                picture.0.error_code
            )))
        };
        sys::WebPMemoryWriterClear(&mut writer);
        out
    }
}

/// Builds an animated WebP frame by frame: add each frame as it is decoded, then finish.
pub struct AnimatedWebp {
    encoder: *mut sys::WebPAnimEncoder,
    config: sys::WebPConfig,
    width: u32,
    height: u32,
    timestamp_ms: i32,
    frames: u32,
}

impl std::fmt::Debug for AnimatedWebp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AnimatedWebp({}×{}, {} frames)",
            self.width, self.height, self.frames
        )
    }
}

impl AnimatedWebp {
    /// A new animation of `width`×`height` that loops forever.
    pub fn new(width: u32, height: u32, settings: WebpSettings) -> Result<AnimatedWebp, Error> {
        let config = config(settings)?;
        let too_big = || Error::Encode("animation too large for WebP".into());
        let (w, h) = (
            i32::try_from(width).map_err(|_| too_big())?,
            i32::try_from(height).map_err(|_| too_big())?,
        );
        // SAFETY: all-zero options are then filled in by the Init call, as libwebp expects.
        let mut options: sys::WebPAnimEncoderOptions = unsafe { std::mem::zeroed() };
        // SAFETY: `options` outlives both calls; the ABI version is the one the bindings
        // were generated for.
        let encoder = unsafe {
            if sys::WebPAnimEncoderOptionsInitInternal(
                &mut options,
                sys::WEBP_MUX_ABI_VERSION as i32,
            ) == 0
            {
                return Err(Error::Encode("libwebp mux version mismatch".into()));
            }
            options.anim_params.loop_count = 0; // forever
            options.allow_mixed = 0;
            if let Some((kmin, kmax)) = settings.keyframes {
                options.kmin = kmin;
                options.kmax = kmax;
            }
            sys::WebPAnimEncoderNewInternal(w, h, &options, sys::WEBP_MUX_ABI_VERSION as i32)
        };
        if encoder.is_null() {
            return Err(Error::Encode(
                "cannot create the WebP animation encoder".into(),
            ));
        }
        Ok(AnimatedWebp {
            encoder,
            config,
            width,
            height,
            timestamp_ms: 0,
            frames: 0,
        })
    }

    /// Appends a frame shown for `frame.delay_ms`. Its size must be the animation's.
    pub fn add(&mut self, frame: &Frame) -> Result<(), Error> {
        if frame.width != self.width || frame.height != self.height {
            return Err(Error::Encode("animation frame of the wrong size".into()));
        }
        let mut picture = Picture::new(frame)?;
        // SAFETY: encoder is live (non-null, not yet deleted); picture and config outlive
        // the call; libwebp copies what it keeps.
        let ok = unsafe {
            sys::WebPAnimEncoderAdd(
                self.encoder,
                &mut picture.0,
                self.timestamp_ms,
                &self.config,
            )
        };
        if ok == 0 {
            return Err(Error::Encode("WebPAnimEncoderAdd failed".into()));
        }
        let delay = i32::try_from(frame.delay_ms).unwrap_or(i32::MAX);
        self.timestamp_ms = self.timestamp_ms.saturating_add(delay);
        self.frames += 1;
        Ok(())
    }

    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Closes the animation and returns the file.
    pub fn finish(self) -> Result<Vec<u8>, Error> {
        let mut data = sys::WebPData::default();
        // SAFETY: a NULL frame marks the end, as documented; `data` is released by
        // WebPDataClear after its bytes are copied. The encoder is deleted by Drop.
        unsafe {
            let end = sys::WebPAnimEncoderAdd(
                self.encoder,
                std::ptr::null_mut(),
                self.timestamp_ms,
                std::ptr::null(),
            );
            if end == 0 || sys::WebPAnimEncoderAssemble(self.encoder, &mut data) == 0 {
                return Err(Error::Encode("WebP animation assembly failed".into()));
            }
            let out = if data.bytes.is_null() {
                Err(Error::Encode("empty WebP animation".into()))
            } else {
                Ok(std::slice::from_raw_parts(data.bytes, data.size).to_vec())
            };
            sys::WebPDataClear(&mut data);
            out
        }
    }
}

impl Drop for AnimatedWebp {
    fn drop(&mut self) {
        // SAFETY: `encoder` came from WebPAnimEncoderNew and is deleted only here.
        unsafe { sys::WebPAnimEncoderDelete(self.encoder) }
    }
}

/// An RGBA PNG (used for the badge).
pub fn png_rgba(width: u32, height: u32, rgba: &[u8]) -> Result<Vec<u8>, Error> {
    png_with(width, height, Channels::Rgba, rgba, png::Compression::Fast)
}

/// A frame as a PNG (RGB or RGBA as the frame is), compressed for a CDN to keep.
pub fn png(frame: &Frame) -> Result<Vec<u8>, Error> {
    png_with(
        frame.width,
        frame.height,
        frame.channels,
        &frame.data,
        png::Compression::Balanced,
    )
}

fn png_with(
    width: u32,
    height: u32,
    channels: Channels,
    data: &[u8],
    compression: png::Compression,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(match channels {
        Channels::Rgb => png::ColorType::Rgb,
        Channels::Rgba => png::ColorType::Rgba,
    });
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(compression);
    let mut writer = encoder
        .write_header()
        .map_err(|e| Error::Encode(e.to_string()))?;
    writer
        .write_image_data(data)
        .map_err(|e| Error::Encode(e.to_string()))?;
    writer.finish().map_err(|e| Error::Encode(e.to_string()))?;
    Ok(out)
}

/// An RGB frame as a progressive JPEG with optimised Huffman tables and 4:2:0 chroma (the
/// caller flattens alpha first: JPEG has none).
pub fn jpeg(frame: &Frame, quality: u8) -> Result<Vec<u8>, Error> {
    if frame.channels != Channels::Rgb {
        return Err(Error::Encode("JPEG takes RGB frames".into()));
    }
    let err = |e: turbojpeg::Error| Error::Encode(e.to_string());
    let mut c = turbojpeg::Compressor::new().map_err(err)?;
    c.set_quality(i32::from(quality.clamp(1, 100)))
        .map_err(err)?;
    c.set_subsamp(turbojpeg::Subsamp::Sub2x2).map_err(err)?;
    c.set_optimize(true).map_err(err)?;
    c.set_progressive(true).map_err(err)?;
    let width = frame.width as usize;
    c.compress_to_vec(turbojpeg::Image {
        pixels: frame.data.as_slice(),
        width,
        pitch: width * 3,
        height: frame.height as usize,
        format: turbojpeg::PixelFormat::RGB,
    })
    .map_err(err)
}

/// Builds an animated GIF (or a one-frame GIF) frame by frame; loops forever. Each frame
/// gets its own palette (NeuQuant); alpha becomes 1-bit transparency.
pub struct AnimatedGif {
    encoder: gif::Encoder<Vec<u8>>,
    width: u16,
    height: u16,
    frames: u32,
}

impl std::fmt::Debug for AnimatedGif {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AnimatedGif({}×{}, {} frames)",
            self.width, self.height, self.frames
        )
    }
}

/// NeuQuant sampling factor: 10 is the gif crate's recommended speed/quality balance.
const GIF_QUANT_SPEED: i32 = 10;

impl AnimatedGif {
    pub fn new(width: u32, height: u32) -> Result<AnimatedGif, Error> {
        let too_big = || Error::Encode("image too large for GIF (65535 px a side)".into());
        let w = u16::try_from(width).map_err(|_| too_big())?;
        let h = u16::try_from(height).map_err(|_| too_big())?;
        let err = |e: gif::EncodingError| Error::Encode(e.to_string());
        let mut encoder = gif::Encoder::new(Vec::new(), w, h, &[]).map_err(err)?;
        encoder.set_repeat(gif::Repeat::Infinite).map_err(err)?;
        Ok(AnimatedGif {
            encoder,
            width: w,
            height: h,
            frames: 0,
        })
    }

    pub fn add(&mut self, frame: &Frame) -> Result<(), Error> {
        if frame.width != u32::from(self.width) || frame.height != u32::from(self.height) {
            return Err(Error::Encode("GIF frame of the wrong size".into()));
        }
        let expected = frame.width as usize * frame.height as usize * frame.channels.count();
        if frame.data.len() != expected {
            return Err(Error::Encode("frame buffer size".into()));
        }
        // Checked above: the gif crate asserts these lengths.
        let mut out = match frame.channels {
            Channels::Rgba => {
                let mut rgba = frame.data.clone();
                gif::Frame::from_rgba_speed(self.width, self.height, &mut rgba, GIF_QUANT_SPEED)
            }
            Channels::Rgb => {
                gif::Frame::from_rgb_speed(self.width, self.height, &frame.data, GIF_QUANT_SPEED)
            }
        };
        // GIF delays are in hundredths of a second.
        out.delay = u16::try_from(frame.delay_ms.div_ceil(10)).unwrap_or(u16::MAX);
        out.dispose = gif::DisposalMethod::Background;
        self.encoder
            .write_frame(&out)
            .map_err(|e| Error::Encode(e.to_string()))?;
        self.frames += 1;
        Ok(())
    }

    pub fn frames(&self) -> u32 {
        self.frames
    }

    pub fn finish(self) -> Result<Vec<u8>, Error> {
        self.encoder
            .into_inner()
            .map_err(|e| Error::Encode(e.to_string()))
    }
}
