//! `media-proxy convert`: the engine on local files, for debugging and benchmarks. The
//! options go through the same parsers as HTTP requests — the Misskey flags through
//! [`request::misskey::parse`], sizes and formats through the store mode's
//! [`request::resize::parse`] — so a conversion gives the bytes the server would send.
//!
//! Input: a file's bytes, the output name and the options; output: the rendered bytes. Uses
//! `config`, `pipeline::store` (output negotiation), `request`.

use media::format::{sniff, Sniffed};
use media::{Format, Rendered, Transform};

use crate::config::Settings;
use crate::pipeline::store::{choose_prepared, OutputPolicy};
use crate::request::Accepted;
use crate::request::{self, misskey, resize};

/// What to do to the input.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Misskey flags, as in the query (`emoji`, `avatar`, `static`, `preview`, `badge`).
    pub flags: Vec<&'static str>,
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
    let format = match sniff(input, true) {
        Sniffed::Known(f) if f.capabilities().transform => f,
        Sniffed::Known(f) => return Err(format!("cannot convert {}", f.name())),
        Sniffed::NeedMore => return Err("unrecognised input".into()),
    };
    let limits = settings.limits.into();
    let stop = media::Stop::default();
    if !options.flags.is_empty() {
        let resize_options = options.width.is_some()
            || options.height.is_some()
            || options.fit.is_some()
            || options.format.is_some()
            || options.quality.is_some();
        if resize_options {
            return Err("the Misskey flags take no size, fit, format or quality".into());
        }
        let query = format!("url=http%3A%2F%2Flocalhost%2F&{}", options.flags.join("&"));
        let transform = match misskey::parse("/", Some(&query), false, None, &[]) {
            Ok(misskey::Route::Proxy(plan)) => plan.transform,
            Ok(misskey::Route::Hello) => None,
            Err(e) => return Err(e.to_string()),
        }
        .ok_or("no transform selected")?;
        let prepared = media::prepare(input, format, transform, &limits).map_err(text)?;
        return prepared.render(input, &stop).map_err(text);
    }
    let (t, prepared) = resize_transform(input, format, output_name, options, settings)?;
    // Whatever `auto` may pick: the file has no `Accept`.
    let all = Accepted {
        avif: true,
        webp: true,
    };
    let policy = OutputPolicy::from(&settings.resize);
    let choice = choose_prepared(&policy, &prepared, format, &t, all);
    if let Some(why) = &choice.fallback {
        eprintln!("media-proxy: {why}");
    }
    prepared
        .with_output(choice.output)
        .render(input, &stop)
        .map_err(text)
}

fn resize_transform(
    input: &[u8],
    format: Format,
    output_name: &str,
    options: &Options,
    settings: &Settings,
) -> Result<(resize::StoreTransform, media::Prepared), String> {
    let extension = output_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let by_extension = match extension.as_str() {
        "webp" | "avif" | "png" | "gif" | "jpeg" => extension.as_str(),
        "jpg" => "jpeg",
        _ => "original",
    };
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
    let rules = resize::Rules {
        max_side: settings.resize.max_output_dimension,
        allowed_sizes: Vec::new(),
        signing_keys: Vec::new(),
    };
    let plan = request::resize::parse("/file", Some(&query.join("&")), false, None, &rules)
        .map_err(|e| e.to_string())?;
    let t = plan.transform.ok_or("nothing to do")?;
    let prepared = media::prepare(
        input,
        format,
        Transform::Resize(t.resize),
        &settings.limits.into(),
    )
    .map_err(text)?;
    Ok((t, prepared))
}

fn text(e: media::Error) -> String {
    e.to_string()
}
