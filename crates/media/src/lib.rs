//! `media`: the pure image half of media-proxy. Synchronous, CPU only, no I/O: it never
//! touches the network, the file system, tokio, HTTP types or configuration files. The
//! service hands it bytes, a [`Format`] (already sniffed), a [`Transform`] and [`Limits`],
//! and gets encoded bytes back.
//!
//! [`render`] reads like the pipeline it is:
//! probe the header → refuse over-limit inputs → pick the output size → decode only what is
//! needed (JPEG at a reduced DCT scale; one frame at a time for animations) → resize →
//! orient → convert to sRGB → encode (WebP, animated WebP, or the badge PNG). Codec panics are caught and
//! become [`Error::Panicked`].

pub mod avif;
pub mod badge;
pub mod budget;
pub mod color;
pub mod decode;
pub mod encode;
pub mod error;
pub mod format;
pub mod gif;
pub mod jpeg;
pub mod limits;
pub mod ops;
pub mod pixels;
pub mod placeholder;
pub mod probe;
pub mod svg;
pub mod transform;

use std::panic::{catch_unwind, AssertUnwindSafe};

pub use budget::{estimate, Stop};
pub use error::Error;
pub use format::{Capabilities, Format, Sniffed};
pub use limits::Limits;
pub use ops::Transform;
pub use pixels::Frame;

use fast_image_resize::Resizer;

/// An encoded output image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub format: Format,
}

/// Browsers show GIF frames with a delay of 10 ms or less for 100 ms; keep what they show.
const MIN_DELAY_MS: u32 = 11;
const SHORT_DELAY_SHOWN_MS: u32 = 100;

/// The media engine's entry point: decode `input` (already known to be `format`), apply
/// `transform`, encode. Never panics: a codec panic becomes [`Error::Panicked`].
pub fn render(
    input: &[u8],
    format: Format,
    transform: Transform,
    limits: &Limits,
) -> Result<Rendered, Error> {
    render_until(input, format, transform, limits, &Stop::default())
}

/// [`render`] that ends early ([`Error::Cancelled`], [`Error::TimedOut`]) when `stop`
/// trips (checked between stages and between animation frames).
pub fn render_until(
    input: &[u8],
    format: Format,
    transform: Transform,
    limits: &Limits,
    stop: &Stop,
) -> Result<Rendered, Error> {
    catch_unwind(AssertUnwindSafe(|| {
        render_inner(input, format, transform, limits, stop)
    }))
    .unwrap_or(Err(Error::Panicked))
}

fn render_inner(
    input: &[u8],
    format: Format,
    transform: Transform,
    limits: &Limits,
    stop: &Stop,
) -> Result<Rendered, Error> {
    stop.check()?;
    if !format.capabilities().transform {
        return Err(Error::Unsupported(format.mime()));
    }
    if format == Format::Svg {
        // Parsed once: the same document is measured, checked and rendered.
        let doc = svg::Svg::parse(input)?;
        let (w, h) = doc.size();
        probe::Probe::still(w, h).check(limits)?;
        let (tw, th) = transform.target(w, h);
        let frame = doc.rasterise(tw, th)?;
        stop.check()?;
        return finish(frame, transform);
    }
    let probe = probe::probe(input, format)?;
    probe.check(limits)?;
    let (ow, oh) = probe.oriented();
    let (tw, th) = transform.target(ow, oh);
    let mut resizer = Resizer::new();
    let animated = matches!(format, Format::Gif | Format::Webp | Format::Apng);
    if transform.animated() && animated && probe.frames > 1 {
        let to_srgb = color::ToSrgb::new(probe.icc.as_deref(), pixels::Channels::Rgba);
        return animate(input, format, (tw, th), limits, &mut resizer, to_srgb, stop);
    }
    // Size in the stored orientation: orientation is applied after resizing (cheaper).
    let (sw, sh) = if probe::swaps_axes(probe.orientation) {
        (th, tw)
    } else {
        (tw, th)
    };
    let frame = decode::first_frame(input, format, sw, sh, limits)?;
    stop.check()?;
    let frame = transform::resize(frame, sw, sh, &mut resizer)?;
    let mut frame = transform::orient(frame, probe.orientation)?;
    color::to_srgb(&mut frame, probe.icc.as_deref());
    finish(frame, transform)
}

/// Animated input → animated WebP, one frame at a time: decode, resize, add, drop.
fn animate(
    input: &[u8],
    format: Format,
    (tw, th): (u32, u32),
    limits: &Limits,
    resizer: &mut Resizer,
    to_srgb: Option<color::ToSrgb>,
    stop: &Stop,
) -> Result<Rendered, Error> {
    let mut encoder = encode::AnimatedWebp::new(tw, th)?;
    for frame in decode::frames(input, format, limits)? {
        stop.check()?;
        if encoder.frames() >= limits.max_frames {
            return Err(Error::TooLarge(format!(
                "more than {} frames",
                limits.max_frames
            )));
        }
        let mut frame = transform::resize(frame?, tw, th, resizer)?;
        if let Some(t) = &to_srgb {
            t.apply(&mut frame);
        }
        if frame.delay_ms < MIN_DELAY_MS {
            frame.delay_ms = SHORT_DELAY_SHOWN_MS;
        }
        encoder.add(&frame)?;
    }
    if encoder.frames() == 0 {
        return Err(Error::Invalid("animation without frames".into()));
    }
    Ok(Rendered {
        bytes: encoder.finish()?,
        format: Format::Webp,
    })
}

fn finish(frame: Frame, transform: Transform) -> Result<Rendered, Error> {
    if transform == Transform::Badge {
        let rgba = badge::badge(&frame)?;
        let side = ops::BADGE_SIZE;
        return Ok(Rendered {
            bytes: encode::png_rgba(side, side, &rgba)?,
            format: Format::Png,
        });
    }
    Ok(Rendered {
        bytes: encode::webp(&frame)?,
        format: Format::Webp,
    })
}
