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

mod animator;
pub mod apng;
pub mod avif;
pub mod badge;
pub mod bmff;
pub mod budget;
pub mod color;
pub mod decode;
pub mod encode;
pub mod error;
pub mod format;
pub mod gif;
pub mod header;
pub mod heic;
pub mod ico;
pub mod job;
pub mod jpeg;
pub mod jxl;
pub mod limits;
pub mod ops;
pub mod pixels;
pub mod placeholder;
pub mod probe;
pub mod svg;
pub mod tiff;
pub mod transform;
mod tuning;
pub mod video;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use animator::Animator;
pub use budget::Stop;
pub use error::Error;
pub use format::{Capabilities, Format, Sniffed};
pub use job::Assessment;
pub use limits::Limits;
pub use ops::Transform;
pub use pixels::Frame;
use transform::Resizer;
pub use tuning::{misskey_animation, resize_filter};

/// A file of `shared/corpus/` for the unit tests (empty when missing: the test then fails
/// on it).
#[cfg(test)]
pub(crate) fn test_corpus(rel: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/");
    std::fs::read(format!("{path}{rel}")).unwrap_or_default()
}

/// An encoded output image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub format: Format,
}

/// Where a render's time went, summed over the frames of an animation (whose frames are
/// decoded, transformed and encoded one at a time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timings {
    /// Decoding (or rasterising) the source.
    pub decode: Duration,
    /// Resizing, cropping, orienting, colour conversion, padding.
    pub transform: Duration,
    /// Encoding the output.
    pub encode: Duration,
}

/// Runs `f`, adding its time to `slot`.
fn timed<T>(slot: &mut Duration, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    *slot += started.elapsed();
    out
}

/// The encoding a store-mode request asks for. The Misskey transforms have fixed outputs
/// (WebP at the spec's settings, the badge as PNG) and use none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Output {
    /// Lossy WebP, still or animated.
    Webp { quality: u8 },
    /// AVIF through libaom, still or an image sequence; `speed` 0–10.
    Avif { quality: u8, speed: u8 },
    /// Progressive JPEG (first frame; alpha composited over the background).
    Jpeg { quality: u8 },
    /// PNG (first frame: animated PNG output is not written).
    Png,
    /// GIF, animated when the source is.
    Gif,
}

impl Output {
    pub fn format(self) -> Format {
        match self {
            Output::Webp { .. } => Format::Webp,
            Output::Avif { .. } => Format::Avif,
            Output::Jpeg { .. } => Format::Jpeg,
            Output::Png => Format::Png,
            Output::Gif => Format::Gif,
        }
    }

    /// Whether this encoding can carry an animation.
    pub fn animates(self) -> bool {
        !matches!(self, Output::Jpeg { .. } | Output::Png)
    }
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
    prepare(input, format, transform, limits)?.render(input, stop)
}

/// A render whose headers have been read and checked against the limits, before any pixel
/// is decoded: its memory estimate ([`Prepared::cost`]) is known, and [`Prepared::render`]
/// does not read the headers (or parse the SVG) again.
#[derive(Debug)]
pub struct Prepared {
    format: Format,
    transform: Transform,
    limits: Limits,
    header: Header,
    cost: u64,
    output: Option<Output>,
}

#[derive(Debug)]
enum Header {
    /// An SVG is parsed to know its size; the same document is rendered.
    Svg(Box<svg::Svg>),
    Raster(probe::Probe),
    /// Read elsewhere (a sandboxed worker): only what it found; a render here reads the
    /// headers again.
    Assessed(Assessment),
}

/// Reads and checks the headers of `input` (known to be `format`) for `transform`: refuses
/// over-limit inputs and prices the work (see [`budget`]). Never panics: a codec panic
/// becomes [`Error::Panicked`].
pub fn prepare(
    input: &[u8],
    format: Format,
    transform: Transform,
    limits: &Limits,
) -> Result<Prepared, Error> {
    catch_unwind(AssertUnwindSafe(|| {
        prepare_inner(input, format, transform, limits)
    }))
    .unwrap_or(Err(Error::Panicked))
}

fn prepare_inner(
    input: &[u8],
    format: Format,
    transform: Transform,
    limits: &Limits,
) -> Result<Prepared, Error> {
    if !format.capabilities().transform {
        return Err(Error::Unsupported(format.mime()));
    }
    let input_len = input.len() as u64;
    let (header, cost) = if format == Format::Svg {
        let doc = svg::Svg::parse(input, limits)?;
        let (w, h) = doc.size();
        probe::Probe::still(w, h).check(limits)?;
        // Drawn at the size it is shown at (never the document's own when smaller), and
        // priced there: an over-budget render is refused before it can start.
        let drawn = transform.geometry(w, h).decode_size(w, h);
        doc.work(drawn.0, drawn.1)?;
        let cost = budget::svg_cost(input_len, doc.tree_bytes(), drawn, transform.target(w, h));
        (Header::Svg(Box::new(doc)), cost)
    } else {
        let probe = probe::probe(input, format)?;
        probe.check(limits)?;
        let animated = animates(format, transform, &probe);
        let decoder = match format {
            Format::Jpeg => jpeg::decode_buffers(input),
            _ => 0,
        };
        let cost = budget::raster_cost(&probe, format, transform, animated, input_len) + decoder;
        (Header::Raster(probe), cost)
    };
    Ok(Prepared {
        format,
        transform,
        limits: *limits,
        header,
        cost,
        output: None,
    })
}

/// Memory that parsing and pricing an SVG of `input_len` bytes may hold at its peak, before
/// its real tree is known: the text, and a tree of up to `limits.max_svg_elements` nodes.
pub fn svg_parse_cost(input_len: u64, limits: &Limits) -> u64 {
    budget::svg_parse_cost(input_len, limits.max_svg_elements)
}

/// Whether `transform` keeps the frames of this input (an animated GIF, WebP, APNG or
/// JPEG XL).
fn animates(format: Format, transform: Transform, probe: &probe::Probe) -> bool {
    transform.animated()
        && probe.frames > 1
        && matches!(
            format,
            Format::Gif | Format::Webp | Format::Apng | Format::Jxl
        )
}

impl Prepared {
    /// Peak memory the render is expected to hold, in bytes (an upper estimate).
    pub fn cost(&self) -> u64 {
        self.cost
    }

    /// What was found, as data (see [`Assessment`]).
    pub fn assessment(&self) -> Assessment {
        let (width, height) = self.source_size();
        Assessment {
            cost: self.cost,
            animated: self.animated(),
            frames: self.frames(),
            width,
            height,
        }
    }

    /// The render of an input assessed elsewhere (`assessment`, for `format`, `transform` and
    /// `limits`): it admits, chooses and sizes as the prepared one would; rendering it here
    /// reads the headers again.
    pub fn assessed(
        format: Format,
        transform: Transform,
        limits: &Limits,
        assessment: Assessment,
    ) -> Prepared {
        Prepared {
            format,
            transform,
            limits: *limits,
            header: Header::Assessed(assessment),
            cost: assessment.cost,
            output: None,
        }
    }

    /// The source's size as displayed.
    fn source_size(&self) -> (u32, u32) {
        match &self.header {
            Header::Svg(doc) => doc.size(),
            Header::Raster(probe) => probe.oriented(),
            Header::Assessed(a) => (a.width, a.height),
        }
    }

    /// Whether the source has several frames and the transform keeps them (the output will
    /// be animated if its encoding can carry an animation).
    pub fn animated(&self) -> bool {
        match &self.header {
            Header::Svg(_) => false,
            Header::Raster(probe) => animates(self.format, self.transform, probe),
            Header::Assessed(a) => a.animated,
        }
    }

    /// Frames the output will have (1 unless [`Prepared::animated`]; the header's count,
    /// which a broken file may not reach).
    pub fn frames(&self) -> u32 {
        match &self.header {
            Header::Raster(probe) if self.animated() => probe.frames,
            Header::Assessed(a) => a.frames,
            _ => 1,
        }
    }

    /// The output's width and height.
    pub fn size(&self) -> (u32, u32) {
        let (w, h) = self.source_size();
        self.transform.target(w, h)
    }

    /// Encodes with `output` instead of the Misskey default. An AVIF encoder holds a few
    /// copies of the output frame: that is added to the estimate.
    pub fn with_output(mut self, output: Output) -> Prepared {
        if let Output::Avif { .. } = output {
            let (w, h) = self.size();
            self.cost = self.cost.saturating_add(u64::from(w) * u64::from(h) * 8);
        }
        self.output = Some(output);
        self
    }

    /// Decodes, transforms and encodes `input` (the bytes it was prepared from). Never
    /// panics: a codec panic becomes [`Error::Panicked`].
    pub fn render(self, input: &[u8], stop: &Stop) -> Result<Rendered, Error> {
        self.render_timed(input, stop).map(|(rendered, _)| rendered)
    }

    /// [`Prepared::render`], also telling where the time went.
    pub fn render_timed(self, input: &[u8], stop: &Stop) -> Result<(Rendered, Timings), Error> {
        let mut t = Timings::default();
        let rendered = catch_unwind(AssertUnwindSafe(|| self.render_inner(input, stop, &mut t)))
            .unwrap_or(Err(Error::Panicked))?;
        Ok((rendered, t))
    }

    fn render_inner(self, input: &[u8], stop: &Stop, t: &mut Timings) -> Result<Rendered, Error> {
        stop.check()?;
        let Prepared {
            format,
            transform,
            limits,
            header,
            output,
            ..
        } = self;
        let mut resizer = Resizer::new(resize_filter(transform));
        let probe = match header {
            Header::Svg(doc) => {
                let (w, h) = doc.size();
                let g = transform.geometry(w, h);
                let (dw, dh) = g.decode_size(w, h);
                // Priced at this size by `prepare`.
                let frame = timed(&mut t.decode, || doc.draw(dw, dh))?;
                stop.check()?;
                let frame = timed(&mut t.transform, || {
                    shape(frame, &g, (w, h), &mut resizer).map(|f| place(f, &g, transform))
                })?;
                return timed(&mut t.encode, || finish(frame, transform, output));
            }
            Header::Raster(probe) => probe,
            Header::Assessed(_) => {
                // Assessed elsewhere: the headers are read again here, the output kept.
                let again = prepare_inner(input, format, transform, &limits)?;
                return Prepared { output, ..again }.render_inner(input, stop, t);
            }
        };
        let (ow, oh) = probe.oriented();
        let g = transform.geometry(ow, oh);
        if animates(format, transform, &probe) && output.is_none_or(Output::animates) {
            let to_srgb = color::ToSrgb::new(probe.icc.as_deref(), pixels::Channels::Rgba);
            let job = Animation {
                geometry: g,
                source: (probe.width, probe.height),
                to_srgb,
                transform,
                output,
            };
            return animate(input, format, &job, &limits, &mut resizer, stop, t);
        }
        let swap = |(w, h)| {
            if probe::swaps_axes(probe.orientation) {
                (h, w)
            } else {
                (w, h)
            }
        };
        let frame = if g.is_whole(ow, oh) {
            // Sized in the stored orientation: orientation is applied after resizing (cheaper).
            let (sw, sh) = swap(g.size);
            let frame = timed(&mut t.decode, || {
                decode::first_frame(input, format, sw, sh, &limits)
            })?;
            stop.check()?;
            timed(&mut t.transform, || {
                let frame = transform::resize(frame, sw, sh, &mut resizer)?;
                transform::orient(frame, probe.orientation)
            })?
        } else {
            // A crop is defined on the oriented picture: orient the (reduced) decode first.
            let (dw, dh) = swap(g.decode_size(ow, oh));
            let frame = timed(&mut t.decode, || {
                decode::first_frame(input, format, dw, dh, &limits)
            })?;
            stop.check()?;
            timed(&mut t.transform, || {
                let frame = transform::orient(frame, probe.orientation)?;
                shape(frame, &g, (ow, oh), &mut resizer)
            })?
        };
        let frame = timed(&mut t.transform, || {
            let mut frame = frame;
            color::to_srgb(&mut frame, probe.icc.as_deref());
            place(frame, &g, transform)
        });
        timed(&mut t.encode, || finish(frame, transform, output))
    }
}

/// A decoded, upright sRGB picture (a video's frame) sized, placed and encoded as a still
/// for `transform`.
pub(crate) fn still(
    frame: Frame,
    transform: Transform,
    output: Option<Output>,
) -> Result<Rendered, Error> {
    let source = (frame.width, frame.height);
    let g = transform.geometry(source.0, source.1);
    let frame = shape(
        frame,
        &g,
        source,
        &mut Resizer::new(resize_filter(transform)),
    )?;
    finish(place(frame, &g, transform), transform, output)
}

/// Crops and resizes a decoded, oriented picture of a source whose oriented size is
/// `(ow, oh)` (the decode may be smaller: a JPEG at a reduced scale) to `g.size`.
fn shape(
    frame: Frame,
    g: &ops::Geometry,
    (ow, oh): (u32, u32),
    resizer: &mut Resizer,
) -> Result<Frame, Error> {
    let kx = f64::from(frame.width) / f64::from(ow.max(1));
    let ky = f64::from(frame.height) / f64::from(oh.max(1));
    let (left, top, cw, ch) = g.crop;
    let (w, h) = g.size;
    if (left, top, cw, ch) == (0.0, 0.0, f64::from(ow.max(1)), f64::from(oh.max(1))) {
        // The whole picture (padding may follow): no crop box to map.
        return transform::resize(frame, w, h, resizer);
    }
    // Mapped into the decode's pixels, and kept inside them: the scale factors are
    // rounded, and the resizer refuses a box even a hair outside the image.
    let (fw, fh) = (f64::from(frame.width), f64::from(frame.height));
    let (left, top) = ((left * kx).clamp(0.0, fw), (top * ky).clamp(0.0, fh));
    let crop = (left, top, (cw * kx).min(fw - left), (ch * ky).min(fh - top));
    transform::resize_part(frame, Some(crop), w, h, resizer)
}

/// Puts the resized picture on its canvas (padding for `fit=contain`).
fn place(frame: Frame, g: &ops::Geometry, transform: Transform) -> Frame {
    frame.padded(g.canvas, g.offset, background(transform))
}

fn background(transform: Transform) -> [u8; 4] {
    match transform {
        Transform::Resize(r) => r.background,
        _ => [255, 255, 255, 255],
    }
}

/// What an animated render needs besides the input.
struct Animation {
    geometry: ops::Geometry,
    /// The source canvas (animations carry no orientation).
    source: (u32, u32),
    to_srgb: Option<color::ToSrgb>,
    transform: Transform,
    output: Option<Output>,
}

/// Animated input → an animation, one frame at a time: decode, resize, add, drop.
fn animate(
    input: &[u8],
    format: Format,
    job: &Animation,
    limits: &Limits,
    resizer: &mut Resizer,
    stop: &Stop,
    t: &mut Timings,
) -> Result<Rendered, Error> {
    let g = &job.geometry;
    let mut encoder = timed(&mut t.encode, || {
        Animator::new(job.output, job.transform, g.canvas)
    })?;
    let mut frames = timed(&mut t.decode, || decode::frames(input, format, limits))?;
    while let Some(frame) = timed(&mut t.decode, || frames.next()) {
        stop.check()?;
        if encoder.frames() >= limits.max_frames {
            return Err(Error::TooLarge(format!(
                "more than {} frames",
                limits.max_frames
            )));
        }
        let frame = timed(&mut t.transform, || {
            let mut frame = shape(frame?, g, job.source, resizer)?;
            if let Some(to_srgb) = &job.to_srgb {
                to_srgb.apply(&mut frame);
            }
            if frame.delay_ms < MIN_DELAY_MS {
                frame.delay_ms = SHORT_DELAY_SHOWN_MS;
            }
            Ok::<_, Error>(place(frame, g, job.transform))
        })?;
        timed(&mut t.encode, || encoder.add(&frame))?;
    }
    if encoder.frames() == 0 {
        return Err(Error::Invalid("animation without frames".into()));
    }
    timed(&mut t.encode, || encoder.finish())
}

/// The store mode's WebP: its quality, no sharp YUV (see `encode`).
pub(crate) fn store_webp(quality: u8) -> encode::WebpSettings {
    encode::WebpSettings {
        quality: f32::from(quality),
        sharp_yuv: false,
        ..encode::MISSKEY_WEBP
    }
}

fn finish(frame: Frame, transform: Transform, output: Option<Output>) -> Result<Rendered, Error> {
    if transform == Transform::Badge {
        let rgba = badge::badge(&frame)?;
        let side = ops::BADGE_SIZE;
        return Ok(Rendered {
            bytes: encode::png_rgba(side, side, &rgba)?,
            format: Format::Png,
        });
    }
    let Some(output) = output else {
        return Ok(Rendered {
            bytes: encode::webp(&frame, encode::MISSKEY_WEBP)?,
            format: Format::Webp,
        });
    };
    let bytes = match output {
        Output::Webp { quality } => encode::webp(&frame, store_webp(quality))?,
        Output::Jpeg { quality } => {
            let [r, g, b, _] = background(transform);
            encode::jpeg(&frame.flattened([r, g, b]), quality)?
        }
        Output::Png => encode::png(&frame.without_opaque_alpha())?,
        Output::Gif => {
            let mut gif = encode::AnimatedGif::new(frame.width, frame.height)?;
            gif.add(&frame)?;
            gif.finish()?
        }
        Output::Avif { quality, speed } => {
            let frame = frame.without_opaque_alpha();
            let mut avif = avif::Encoder::new(frame.width, frame.height, quality, speed, false)?;
            avif.add(&frame)?;
            avif.finish()?
        }
    };
    Ok(Rendered {
        bytes,
        format: output.format(),
    })
}
