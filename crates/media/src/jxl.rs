//! JPEG XL stills and animations through `jxl-oxide` (pure Rust), on the calling thread, with
//! its allocations counted against `limits.max_alloc` by the decoder's own tracker.
//!
//! The header read ([`probe`]) parses the codestream's headers and frame table (no pixels):
//! the size as shown (orientation is applied by the decoder, so none is left to apply) and
//! the number of displayed frames, and every frame the decoder decodes to show them
//! (zero-length frames are blended into the next, reference-only frames are kept for later
//! ones: each is decoded work the shown count does not say, and a frame may be larger than
//! the canvas). Pixels are asked for in sRGB; the decoder converts what
//! its colour management knows (XYB, the enumerated encodings, matrix ICC profiles); an
//! image it cannot convert (CMYK) is refused.
//!
//! Input: bytes known to be JPEG XL and the `Limits`; output: a `Probe`, a `Frame`, or the
//! frames of an animation one at a time. Uses `header`, `limits`, `pixels`, `Error`.

use image::metadata::Orientation;
use jxl_oxide::{
    AllocTracker, EnumColourEncoding, JxlImage, JxlThreadPool, PixelFormat, RenderingIntent,
};

use crate::header::{Coded, Probe};
use crate::limits::Limits;
use crate::pixels::{Channels, Frame};
use crate::Error;

/// The codestream's headers and frame table, ready to render in sRGB.
fn open(bytes: &[u8], limits: &Limits) -> Result<JxlImage, Error> {
    let tracker = AllocTracker::with_limit(usize::try_from(limits.max_alloc).unwrap_or(usize::MAX));
    let mut image = JxlImage::builder()
        .pool(JxlThreadPool::none())
        .alloc_tracker(tracker)
        .read(bytes)
        .map_err(invalid)?;
    if matches!(image.pixel_format(), PixelFormat::Cmyk | PixelFormat::Cmyka) {
        return Err(Error::Unsupported("CMYK JPEG XL"));
    }
    image.request_color_encoding(EnumColourEncoding::srgb(RenderingIntent::Relative));
    Ok(image)
}

/// The size as shown and the number of displayed frames.
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<Probe, Error> {
    let image = open(bytes, limits)?;
    if !image.is_loading_done() {
        return Err(Error::Invalid("truncated JPEG XL".into()));
    }
    let frames = u32::try_from(image.num_loaded_keyframes()).unwrap_or(u32::MAX);
    if frames == 0 {
        return Err(Error::Invalid("JPEG XL without a frame".into()));
    }
    let mut coded = Coded {
        frames: 0,
        pixels: 0,
        largest: 0,
    };
    for index in 0..image.num_loaded_frames() {
        let Some(frame) = image.frame(index) else {
            continue;
        };
        let header = frame.header();
        let pixels = u64::from(header.width) * u64::from(header.height);
        coded.frames = coded.frames.saturating_add(1);
        coded.pixels = coded.pixels.saturating_add(pixels);
        coded.largest = coded.largest.max(pixels);
    }
    Ok(Probe {
        width: image.width(),
        height: image.height(),
        frames,
        orientation: Orientation::NoTransforms,
        icc: None,
        coded: Some(coded),
    })
}

/// The first displayed frame.
pub fn first_frame(bytes: &[u8], limits: &Limits) -> Result<Frame, Error> {
    let image = open(bytes, limits)?;
    render(&image, 0, 0)
}

/// Every displayed frame, composited, in order, with its delay.
pub fn frames(
    bytes: &[u8],
    limits: &Limits,
) -> Result<impl Iterator<Item = Result<Frame, Error>>, Error> {
    let image = open(bytes, limits)?;
    let tick_ms = image
        .image_header()
        .metadata
        .animation
        .as_ref()
        .map_or(0.0, |a| {
            1000.0 * f64::from(a.tps_denominator) / f64::from(a.tps_numerator.max(1))
        });
    let count = image.num_loaded_keyframes();
    Ok((0..count).map(move |index| {
        let delay = image
            .frame_header(index)
            .map_or(0.0, |h| f64::from(h.duration) * tick_ms);
        render(&image, index, delay.round() as u32)
    }))
}

/// One displayed frame as 8-bit RGBA.
fn render(image: &JxlImage, index: usize, delay_ms: u32) -> Result<Frame, Error> {
    let rendered = image.render_frame(index).map_err(invalid)?;
    let mut stream = rendered.stream();
    let (width, height) = (stream.width(), stream.height());
    let channels = stream.channels() as usize;
    let pixels = width as usize * height as usize;
    let mut samples = vec![0u8; pixels * channels];
    stream.write_to_buffer(&mut samples);
    let data = match channels {
        1 => samples.iter().flat_map(|&v| [v, v, v, 255]).collect(),
        2 => samples
            .chunks_exact(2)
            .flat_map(|p| {
                let (v, a) = (p.first().copied(), p.get(1).copied());
                let v = v.unwrap_or(0);
                [v, v, v, a.unwrap_or(255)]
            })
            .collect(),
        3 => samples
            .chunks_exact(3)
            .flat_map(|p| {
                let s = |i: usize| p.get(i).copied().unwrap_or(0);
                [s(0), s(1), s(2), 255]
            })
            .collect(),
        4 => samples,
        _ => return Err(Error::Unsupported("JPEG XL channel layout")),
    };
    Ok(Frame {
        width,
        height,
        channels: Channels::Rgba,
        data,
        delay_ms,
    })
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("JPEG XL: {e}"))
}
