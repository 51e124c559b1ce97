//! `media-proxy convert`: the engine on local files, for debugging and benchmarks. The
//! options go through the same parsers as HTTP requests — the Misskey flags through
//! [`request::misskey::parse`], sizes and formats through the store mode's
//! [`request::resize::parse`] — so a conversion gives the bytes the server would send.
//!
//! A video (MP4/MOV, WebM) gives the still of one frame, as a `thumbnail` or a store poster
//! does.
//!
//! Input: a file's bytes, the output name and the options; output: the rendered bytes. Uses
//! `config`, `pipeline::store` (output negotiation), `request`.

use media::format::{sniff, Sniffed};
use media::video::At;
use media::{Format, Rendered, Transform};

use crate::config::Settings;
use crate::pipeline::store::{choose_output, choose_prepared, OutputPolicy, SourceFacts};
use crate::request::Accepted;
use crate::request::{self, misskey, resize};

/// What to do to the input.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Misskey flags, as in the query (`emoji`, `avatar`, `thumbnail`, `static`, `preview`,
    /// `badge`).
    pub flags: Vec<&'static str>,
    /// A video's poster time, as the store mode's `t` (`2.5`, `10%`).
    pub time: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// `inside`, `cover`, `fill`, `contain`.
    pub fit: Option<String>,
    /// `auto`, `webp`, `avif`, `jpeg`, `png`, `gif`, `original`; `None`: from the output
    /// file's extension.
    pub format: Option<String>,
    pub quality: Option<u8>,
}

/// Converts `input`; `output_name` (the output file's name) picks the format when
/// `options.format` does not.
pub fn convert(
    input: &[u8],
    output_name: &str,
    options: &Options,
    settings: &Settings,
) -> Result<Rendered, String> {
    let sniffed = match sniff(input, true) {
        Sniffed::Known(f) => f,
        Sniffed::NeedMore => return Err("unrecognised input".into()),
    };
    if media::video::container(sniffed).is_some() {
        return video(input, output_name, options, settings);
    }
    let format = match sniff(input, true) {
        Sniffed::Known(f) if f.capabilities().transform => f,
        Sniffed::Known(f) => return Err(format!("cannot convert {}", f.name())),
        Sniffed::NeedMore => return Err("unrecognised input".into()),
    };
    let limits = settings.limits.into();
    let stop = media::Stop::default();
    if options.time.is_some() {
        return Err("--time is for videos".into());
    }
    if !options.flags.is_empty() {
        let resize_options = options.width.is_some()
            || options.height.is_some()
            || options.fit.is_some()
            || options.format.is_some()
            || options.quality.is_some();
        if resize_options {
            return Err("the Misskey flags take no size, fit, format or quality".into());
        }
        let (transform, _) = misskey_transform(options)?;
        let prepared = media::prepare(input, format, transform, &limits).map_err(text)?;
        let rendered = prepared.render(input, &stop).map_err(text)?;
        return named_as_written(rendered, output_name, options);
    }
    let (t, prepared) = resize_transform(input, format, output_name, options, settings)?;
    let policy = OutputPolicy::from(&settings.resize);
    let choice = choose_prepared(&policy, &prepared, format, &t, ALL);
    if let Some(why) = &choice.fallback {
        eprintln!("media-proxy: {why}");
    }
    prepared
        .with_output(choice.output)
        .render(input, &stop)
        .map_err(text)
}

/// The transform (and, for `thumbnail`, the frame time) the Misskey flags select.
fn misskey_transform(options: &Options) -> Result<(Transform, Option<At>), String> {
    let query = format!("url=http%3A%2F%2Flocalhost%2F&{}", options.flags.join("&"));
    let plan = match misskey::parse("/", Some(&query), false, None, &[]) {
        Ok(misskey::Route::Proxy(plan)) => plan,
        Ok(misskey::Route::Hello) => return Err("no transform selected".into()),
        Err(e) => return Err(e.to_string()),
    };
    let transform = plan.transform.ok_or("no transform selected")?;
    Ok((transform, plan.frame))
}

/// The still of a video's frame: `thumbnail` (Misskey's), or the store mode's poster with
/// its sizes, `--time` and output negotiation.
fn video(
    input: &[u8],
    output_name: &str,
    options: &Options,
    settings: &Settings,
) -> Result<Rendered, String> {
    let limits: media::Limits = settings.limits.into();
    let stop = media::Stop::default();
    if !options.flags.is_empty() {
        let (transform, frame) = misskey_transform(options)?;
        let at = frame.ok_or("a video takes --thumbnail (or the store mode's options)")?;
        if options.time.is_some() {
            return Err("--time is a store-mode option; --thumbnail takes 5 %".into());
        }
        let rendered =
            media::video::render_file(input, at, transform, None, &limits, &stop).map_err(text)?;
        return named_as_written(rendered, output_name, options);
    }
    let t = store_transform(output_name, options, settings)?;
    let track = media::video::track_in(input).map_err(text)?;
    let (w, h) = media::video::upright(&track);
    let transform = Transform::Resize(t.resize);
    let (ow, oh) = transform.target(w, h);
    let facts = SourceFacts {
        format: Format::Jpeg,
        animated: false,
        pixels: u64::from(ow) * u64::from(oh),
    };
    let policy = OutputPolicy::from(&settings.resize);
    let choice = choose_output(&policy, t.format, t.quality, &facts, ALL);
    media::video::render_file(
        input,
        t.frame,
        transform,
        Some(choice.output),
        &limits,
        &stop,
    )
    .map_err(text)
}

/// Whatever `auto` may pick: the file has no `Accept`.
const ALL: Accepted = Accepted {
    avif: true,
    webp: true,
};

fn resize_transform(
    input: &[u8],
    format: Format,
    output_name: &str,
    options: &Options,
    settings: &Settings,
) -> Result<(resize::StoreTransform, media::Prepared), String> {
    let t = store_transform(output_name, options, settings)?;
    let prepared = media::prepare(
        input,
        format,
        Transform::Resize(t.resize),
        &settings.limits.into(),
    )
    .map_err(text)?;
    Ok((t, prepared))
}

/// The store mode's transform for the options (the output file's extension picks the
/// format when `--format` does not).
fn store_transform(
    output_name: &str,
    options: &Options,
    settings: &Settings,
) -> Result<resize::StoreTransform, String> {
    let by_extension = output_format(output_name).unwrap_or("original");
    let mut query = vec![format!(
        "format={}",
        options.format.as_deref().unwrap_or(by_extension)
    )];
    for (name, value) in [("w", options.width), ("h", options.height)] {
        if let Some(v) = value {
            query.push(format!("{name}={v}"));
        }
    }
    if let Some(fit) = &options.fit {
        query.push(format!("fit={fit}"));
    }
    if let Some(q) = options.quality {
        query.push(format!("q={q}"));
    }
    if let Some(t) = &options.time {
        let encoded: String = url::form_urlencoded::byte_serialize(t.as_bytes()).collect();
        query.push(format!("t={encoded}"));
    }
    let rules = resize::Rules {
        max_side: settings.resize.max_output_dimension,
        allowed_sizes: Vec::new(),
        signing_keys: Vec::new(),
    };
    let plan = request::resize::parse("/file", Some(&query.join("&")), false, None, &rules)
        .map_err(|e| e.to_string())?;
    plan.transform.ok_or_else(|| "nothing to do".into())
}

/// The output format the file name's extension names (`webp`, `avif`, `png`, `gif`,
/// `jpeg`), as the store mode's `format` spells it.
fn output_format(output_name: &str) -> Option<&'static str> {
    let extension = output_name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match extension.as_str() {
        "webp" => "webp",
        "avif" => "avif",
        "png" => "png",
        "gif" => "gif",
        "jpg" | "jpeg" => "jpeg",
        _ => return None,
    })
}

/// A Misskey flag's output has one format (WebP; PNG for the badge): an output file named
/// for another image format is refused rather than written with bytes it does not name.
fn named_as_written(
    rendered: Rendered,
    output_name: &str,
    options: &Options,
) -> Result<Rendered, String> {
    let written = match rendered.format {
        Format::Jpeg => "jpeg",
        other => other.extension(),
    };
    match output_format(output_name) {
        Some(named) if named != written => Err(format!(
            "--{} writes {}: name the output .{}",
            options.flags.join(" --"),
            rendered.format.mime(),
            rendered.format.extension()
        )),
        _ => Ok(rendered),
    }
}

fn text(e: media::Error) -> String {
    e.to_string()
}
