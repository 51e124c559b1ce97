//! The store mode's request: `GET /<key>?d=WxH|w|h|fit|format|q|enlarge|static|bg|v|sig`
//! (contract: `shared/spec/resize.md`, documented in `docs/store-mode.md`).
//!
//! Parsing is strict: a malformed, repeated, out-of-range or unknown parameter is refused
//! with a one-line reason (400), never ignored and never answered with the original. Input:
//! the raw path and query and the operator's [`Rules`]; output: a [`StorePlan`] whose values
//! are already valid. Uses no HTTP framework types.

use media::ops::{Fit, Resize};

use super::signature::{self, SignatureError};
use super::RangeSpec;

/// Longest key accepted, in bytes (S3's own limit).
const MAX_KEY_BYTES: usize = 1024;
/// Longest `v` (version token).
const MAX_VERSION_LEN: usize = 64;

/// The operator's rules for store requests, from the settings.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub max_side: u32,
    /// Empty: any size up to `max_side`.
    pub allowed_sizes: Vec<u32>,
    /// Empty: signing is off.
    pub signing_keys: Vec<Vec<u8>>,
}

/// A store-mode request, fully parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePlan {
    /// The object key: percent-decoded, without the leading `/`, no `.`/`..`/empty
    /// segments, no control characters or backslashes.
    pub key: String,
    /// `None`: serve the original as it is.
    pub transform: Option<StoreTransform>,
    /// The URL is signed or carries a version (`v`): its content never changes.
    pub immutable: bool,
    pub head_only: bool,
    /// A byte range of the original (ignored when transforming).
    pub range: Option<RangeSpec>,
}

/// What to make of the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreTransform {
    pub resize: Resize,
    pub format: FormatChoice,
    /// `q`; `None`: the format's default.
    pub quality: Option<u8>,
    /// `t`: a video original's poster time (default 5 %, as Misskey's thumbnails); images
    /// ignore it.
    pub frame: media::video::At,
    /// The transform in one canonical text (every default spelled out), for validators
    /// and cache keys: two URLs that mean the same thing give the same text.
    pub canonical: String,
}

/// `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatChoice {
    /// From `Accept`: AVIF (if enabled), else WebP, else the source's own family.
    Auto,
    /// The source's own family (JPEG stays JPEG, PNG stays PNG, GIF stays GIF).
    Original,
    Webp,
    Avif,
    Jpeg,
    Png,
    Gif,
}

impl FormatChoice {
    fn parse(v: &str) -> Option<FormatChoice> {
        Some(match v {
            "auto" => FormatChoice::Auto,
            "original" => FormatChoice::Original,
            "webp" => FormatChoice::Webp,
            "avif" => FormatChoice::Avif,
            "jpeg" | "jpg" => FormatChoice::Jpeg,
            "png" => FormatChoice::Png,
            "gif" => FormatChoice::Gif,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            FormatChoice::Auto => "auto",
            FormatChoice::Original => "original",
            FormatChoice::Webp => "webp",
            FormatChoice::Avif => "avif",
            FormatChoice::Jpeg => "jpeg",
            FormatChoice::Png => "png",
            FormatChoice::Gif => "gif",
        }
    }
}

/// Why a store request was refused before the store was asked. The message is the public
/// one-line reason: it names the parameter, never echoes more than a short value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResizeError {
    /// A bad key: `..`, NUL, backslash, control characters, empty segments, not UTF-8 (400).
    #[error("invalid key: {0}")]
    Key(&'static str),
    /// (400)
    #[error("unknown parameter `{0}`")]
    Unknown(String),
    /// (400)
    #[error("parameter `{0}` given more than once")]
    Repeated(&'static str),
    /// A value that does not parse or is out of range (400).
    #[error("invalid `{param}`: {reason}")]
    Value { param: &'static str, reason: String },
    /// Parameters that do not make sense together (400).
    #[error("{0}")]
    Conflict(&'static str),
    /// A size outside the operator's `allowed_sizes` (400).
    #[error("size {0} is not one of the allowed sizes")]
    SizeNotAllowed(u32),
    /// Missing or wrong `sig` while signing is on (403).
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

const PARAMS: [&str; 12] = [
    "d", "w", "h", "fit", "format", "q", "enlarge", "static", "bg", "t", "v", "sig",
];

/// Parses a store request: `path` as received (percent-encoded), `query` without `?`.
pub fn parse(
    path: &str,
    query: Option<&str>,
    head_only: bool,
    range_header: Option<&str>,
    rules: &Rules,
) -> Result<StorePlan, ResizeError> {
    let key = parse_key(path)?;
    let mut params = Params::default();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let Some(i) = PARAMS.iter().position(|p| *p == name) else {
            return Err(ResizeError::Unknown(name.chars().take(32).collect()));
        };
        let (Some(slot), Some(param)) = (params.0.get_mut(i), PARAMS.get(i)) else {
            continue;
        };
        if slot.is_some() {
            return Err(ResizeError::Repeated(param));
        }
        *slot = Some(value.into_owned());
    }
    let get = |name: &str| params.get(name);
    if !rules.signing_keys.is_empty() {
        let pairs: Vec<(&str, &str)> = PARAMS
            .iter()
            .zip(params.0.iter())
            .filter(|(name, _)| **name != "sig")
            .filter_map(|(name, v)| v.as_deref().map(|v| (*name, v)))
            .collect();
        signature::verify(&rules.signing_keys, &key, &pairs, get("sig"))?;
    } else if get("sig").is_some() {
        return Err(ResizeError::Conflict(
            "`sig` given but signing is not enabled",
        ));
    }
    let version = get("v").map(parse_version).transpose()?;
    let transform = parse_transform(&params, rules)?;
    Ok(StorePlan {
        key,
        transform,
        immutable: version.is_some() || !rules.signing_keys.is_empty(),
        head_only,
        range: range_header.and_then(RangeSpec::parse),
    })
}

/// The value of each known parameter, in [`PARAMS`] order.
#[derive(Debug, Default)]
struct Params([Option<String>; PARAMS.len()]);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        PARAMS
            .iter()
            .position(|p| *p == name)
            .and_then(|i| self.0.get(i))
            .and_then(|v| v.as_deref())
    }
}

fn parse_transform(params: &Params, rules: &Rules) -> Result<Option<StoreTransform>, ResizeError> {
    let get = |name: &str| params.get(name);
    let format = get("format")
        .map(|v| {
            FormatChoice::parse(v).ok_or_else(|| ResizeError::Value {
                param: "format",
                reason: "expected auto, webp, avif, jpeg, png, gif or original".into(),
            })
        })
        .transpose()?;
    let (mut width, mut height) = (None, None);
    if let Some(d) = get("d") {
        if get("w").is_some() || get("h").is_some() {
            return Err(ResizeError::Conflict("use either `d` or `w`/`h`, not both"));
        }
        (width, height) = parse_d(d, rules)?;
    }
    if let Some(w) = get("w") {
        width = Some(side("w", w, rules)?);
    }
    if let Some(h) = get("h") {
        height = Some(side("h", h, rules)?);
    }
    let sized = width.is_some() || height.is_some();
    let fit = match get("fit") {
        None if width.is_some() && height.is_some() && get("d").is_some() => Fit::Cover,
        None => Fit::Inside,
        Some(v) => {
            let fit = match v {
                "inside" => Fit::Inside,
                "cover" => Fit::Cover,
                "fill" => Fit::Fill,
                "contain" => Fit::Contain,
                _ => {
                    return Err(ResizeError::Value {
                        param: "fit",
                        reason: "expected inside, cover, fill or contain".into(),
                    })
                }
            };
            if !sized {
                return Err(ResizeError::Conflict(
                    "`fit` needs a size (`d`, `w` or `h`)",
                ));
            }
            if fit != Fit::Inside && (width.is_none() || height.is_none()) {
                return Err(ResizeError::Conflict(
                    "`fit` other than inside needs both a width and a height",
                ));
            }
            fit
        }
    };
    let enlarge = match get("enlarge") {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => {
            return Err(ResizeError::Value {
                param: "enlarge",
                reason: "expected 1 or 0".into(),
            })
        }
    };
    if get("enlarge").is_some() && !sized {
        return Err(ResizeError::Conflict(
            "`enlarge` needs a size (`d`, `w` or `h`)",
        ));
    }
    let still = match get("static") {
        None | Some("0") => false,
        Some("" | "1") => true,
        Some(_) => {
            return Err(ResizeError::Value {
                param: "static",
                reason: "expected no value, 1 or 0".into(),
            })
        }
    };
    let quality = get("q").map(parse_quality).transpose()?;
    if quality.is_some() && matches!(format, Some(FormatChoice::Png | FormatChoice::Gif)) {
        return Err(ResizeError::Conflict("`q` does not apply to png or gif"));
    }
    let background = get("bg").map(parse_colour).transpose()?;
    let frame = get("t").map(parse_time).transpose()?;
    let transforms = sized
        || get("static").is_some()
        || frame.is_some()
        || quality.is_some()
        || background.is_some()
        || matches!(format, Some(f) if f != FormatChoice::Original);
    if !transforms {
        // Nothing to do (`format=original` alone included): the original as it is.
        return Ok(None);
    }
    let background = background.unwrap_or([255, 255, 255, 255]);
    let format = format.unwrap_or(FormatChoice::Auto);
    let resize = Resize {
        width,
        height,
        fit,
        enlarge,
        background,
        still,
        max_side: rules.max_side,
    };
    let opt = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let mut canonical = format!(
        "w={};h={};fit={fit:?};enlarge={};static={};bg={:02x}{:02x}{:02x}{:02x};format={};q={}",
        opt(width),
        opt(height),
        u8::from(enlarge),
        u8::from(still),
        background[0],
        background[1],
        background[2],
        background[3],
        format.name(),
        opt(quality.map(u32::from)),
    );
    if let Some(at) = frame {
        // Only when given: the text (and every validator) of a URL without `t` stays as is.
        canonical.push_str(&match at {
            media::video::At::Millis(ms) => format!(";t={ms}ms"),
            media::video::At::Millionths(m) => format!(";t={m}ppm"),
        });
    }
    Ok(Some(StoreTransform {
        resize,
        format,
        quality,
        frame: frame.unwrap_or(media::video::MISSKEY_FRAME),
        canonical,
    }))
}

/// `d=WxH`, `d=W`, `d=Wx`, `d=xH`.
fn parse_d(d: &str, rules: &Rules) -> Result<(Option<u32>, Option<u32>), ResizeError> {
    let (w, h) = d.split_once('x').unwrap_or((d, ""));
    let w = (!w.is_empty()).then(|| side("d", w, rules)).transpose()?;
    let h = (!h.is_empty()).then(|| side("d", h, rules)).transpose()?;
    if w.is_none() && h.is_none() {
        return Err(ResizeError::Value {
            param: "d",
            reason: "expected WxH, W, Wx or xH".into(),
        });
    }
    Ok((w, h))
}

/// One side: digits only, 1 to `max_side`, and listed when an allow-list is set.
fn side(param: &'static str, v: &str, rules: &Rules) -> Result<u32, ResizeError> {
    let out_of_range = || ResizeError::Value {
        param,
        reason: format!("must be a whole number from 1 to {}", rules.max_side),
    };
    if v.is_empty() || v.len() > 6 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(out_of_range());
    }
    let n: u32 = v.parse().map_err(|_| out_of_range())?;
    if n == 0 || n > rules.max_side {
        return Err(out_of_range());
    }
    if !rules.allowed_sizes.is_empty() && !rules.allowed_sizes.contains(&n) {
        return Err(ResizeError::SizeNotAllowed(n));
    }
    Ok(n)
}

/// `t`: seconds (`2.5`, up to a day, to the millisecond) or a percentage of the duration
/// (`10%`, up to `100%`).
fn parse_time(v: &str) -> Result<media::video::At, ResizeError> {
    let bad = || ResizeError::Value {
        param: "t",
        reason: "expected seconds (2.5) or a percentage (10%)".into(),
    };
    let (number, percent) = match v.strip_suffix('%') {
        Some(n) => (n, true),
        None => (v, false),
    };
    let plain = !number.is_empty()
        && number.len() <= 12
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().filter(|&b| b == b'.').count() <= 1;
    let value: f64 = if plain {
        number.parse().map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    match (percent, value) {
        (true, p) if p <= 100.0 => Ok(media::video::At::Millionths((p * 10_000.0).round() as u32)),
        (false, s) if s <= 86_400.0 => Ok(media::video::At::Millis((s * 1000.0).round() as u64)),
        _ => Err(bad()),
    }
}

fn parse_quality(v: &str) -> Result<u8, ResizeError> {
    let bad = || ResizeError::Value {
        param: "q",
        reason: "must be a whole number from 1 to 100".into(),
    };
    if v.is_empty() || v.len() > 3 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match v.parse::<u8>() {
        Ok(q @ 1..=100) => Ok(q),
        _ => Err(bad()),
    }
}

/// `bg`: `RGB`, `RRGGBB` or `RRGGBBAA` in hex, with or without a leading `#`.
fn parse_colour(v: &str) -> Result<[u8; 4], ResizeError> {
    let bad = || ResizeError::Value {
        param: "bg",
        reason: "expected a hex colour: RGB, RRGGBB or RRGGBBAA".into(),
    };
    let hex = v.strip_prefix('#').unwrap_or(v);
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let digit = |i: usize| -> Result<u8, ResizeError> {
        hex.get(i..=i)
            .and_then(|d| u8::from_str_radix(d, 16).ok())
            .ok_or_else(bad)
    };
    let byte = |i: usize| -> Result<u8, ResizeError> { Ok(digit(i)? * 16 + digit(i + 1)?) };
    match hex.len() {
        3 => Ok([digit(0)? * 17, digit(1)? * 17, digit(2)? * 17, 255]),
        6 => Ok([byte(0)?, byte(2)?, byte(4)?, 255]),
        8 => Ok([byte(0)?, byte(2)?, byte(4)?, byte(6)?]),
        _ => Err(bad()),
    }
}

fn parse_version(v: &str) -> Result<String, ResizeError> {
    let ok = !v.is_empty()
        && v.len() <= MAX_VERSION_LEN
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ResizeError::Value {
            param: "v",
            reason: format!("expected 1 to {MAX_VERSION_LEN} of A-Z a-z 0-9 . _ -"),
        })
    }
}

/// The key from the raw path: percent-decoded, jailed to the store's root or prefix.
fn parse_key(path: &str) -> Result<String, ResizeError> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| ResizeError::Key("not UTF-8"))?;
    let key = decoded.strip_prefix('/').unwrap_or(&decoded);
    if key.is_empty() {
        return Err(ResizeError::Key("empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ResizeError::Key("longer than 1024 bytes"));
    }
    if key.contains('\\') {
        return Err(ResizeError::Key("backslash"));
    }
    if key.chars().any(char::is_control) {
        return Err(ResizeError::Key("control character"));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(ResizeError::Key("empty path segment")),
            "." | ".." => return Err(ResizeError::Key("`.` or `..` segment")),
            _ => {}
        }
    }
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            max_side: 4096,
            ..Rules::default()
        }
    }

    #[test]
    fn t_is_seconds_or_a_percentage_and_part_of_the_canonical_text() {
        use media::video::At;
        let t = |q: &str| plan("/v.mp4", q).map(|p| p.transform.map(|t| (t.frame, t.canonical)));
        let frame = |q: &str| t(q).ok().flatten().map(|(f, _)| f);
        assert_eq!(frame("d=100x100"), Some(At::Millionths(50_000)));
        assert_eq!(frame("d=100x100&t=2.5"), Some(At::Millis(2500)));
        assert_eq!(frame("t=0"), Some(At::Millis(0)));
        assert_eq!(frame("d=100&t=10%"), Some(At::Millionths(100_000)));
        assert_eq!(frame("d=100&t=100%"), Some(At::Millionths(1_000_000)));
        for bad in [
            "t=", "t=-1", "t=1e3", "t=101%", "t=NaN", "t=1.2.3", "t=%", "t=90000",
        ] {
            assert!(
                matches!(
                    t(&format!("d=100&{bad}")),
                    Err(ResizeError::Value { param: "t", .. })
                ),
                "{bad}"
            );
        }
        let text = |q: &str| t(q).ok().flatten().map(|(_, c)| c).unwrap_or_default();
        assert!(!text("d=100").contains(";t="));
        assert_ne!(text("d=100&t=1"), text("d=100&t=2"));
        assert_ne!(text("d=100&t=1"), text("d=100&t=1%"));
        assert_eq!(text("d=100&t=1"), text("d=100&t=1.000"));
    }

    fn plan(path: &str, query: &str) -> Result<StorePlan, ResizeError> {
        parse(path, Some(query), false, None, &rules())
    }

    fn resize(query: &str) -> Resize {
        match plan("/a.jpg", query) {
            Ok(StorePlan {
                transform: Some(t), ..
            }) => t.resize,
            other => panic!("{query}: expected a transform, got {other:?}"),
        }
    }

    #[test]
    fn the_seed_syntax_and_its_one_sided_forms() {
        let r = resize("d=100x80");
        assert_eq!(
            (r.width, r.height, r.fit),
            (Some(100), Some(80), Fit::Cover)
        );
        let r = resize("d=100");
        assert_eq!((r.width, r.height, r.fit), (Some(100), None, Fit::Inside));
        let r = resize("d=100x");
        assert_eq!((r.width, r.height), (Some(100), None));
        let r = resize("d=x80");
        assert_eq!((r.width, r.height), (None, Some(80)));
        let r = resize("w=100&h=80");
        assert_eq!(r.fit, Fit::Inside, "w/h default to inside");
        let r = resize("d=100x80&fit=contain&bg=%23ff000080");
        assert_eq!((r.fit, r.background), (Fit::Contain, [255, 0, 0, 128]));
        assert!(resize("w=10&enlarge=1").enlarge);
        assert!(resize("static").still);
        assert!(resize("static=1").still);
    }

    #[test]
    fn no_transform_parameters_mean_the_original() {
        for q in ["", "format=original", "v=abc"] {
            let p = plan("/a.jpg", q).unwrap();
            assert_eq!(p.transform, None, "{q}");
        }
        assert!(plan("/a.jpg", "v=abc").unwrap().immutable);
        assert!(!plan("/a.jpg", "").unwrap().immutable);
        // A format alone converts at the same size.
        let p = plan("/a.jpg", "format=webp").unwrap();
        assert_eq!(p.transform.map(|t| t.format), Some(FormatChoice::Webp));
    }

    #[test]
    fn every_malformed_value_is_a_400_with_a_reason() {
        let cases = [
            ("d=0x100", "`d`"),
            ("d=-5", "`d`"),
            ("d=x", "`d`"),
            ("d=100x100x1", "`d`"),
            ("d=4097", "4096"),
            ("w=abc", "`w`"),
            ("w=+5", "`w`"),
            ("w=1.5", "`w`"),
            ("h=99999999999", "`h`"),
            ("w=10&d=10", "either"),
            ("fit=cover", "needs a size"),
            ("w=10&fit=cover", "both"),
            ("w=10&fit=stretch", "`fit`"),
            ("format=bmp", "`format`"),
            ("q=0", "`q`"),
            ("q=101", "`q`"),
            ("q=80&format=png", "png"),
            ("enlarge=yes&w=1", "`enlarge`"),
            ("enlarge=1", "needs a size"),
            ("static=2", "`static`"),
            ("bg=zzz&w=1", "`bg`"),
            ("bg=ffff&w=1", "`bg`"),
            ("v=a%20b", "`v`"),
            ("width=100", "unknown parameter `width`"),
            ("W=100", "unknown parameter `W`"),
            ("w=10&w=20", "more than once"),
            ("sig=abc", "signing is not enabled"),
        ];
        for (q, needle) in cases {
            match plan("/a.jpg", q) {
                Ok(p) => panic!("`{q}` should be refused, got {p:?}"),
                Err(e) => assert!(
                    e.to_string().contains(needle),
                    "`{q}`: `{e}` should mention `{needle}`"
                ),
            }
        }
    }

    #[test]
    fn keys_are_decoded_and_jailed() {
        let ok = [
            ("/a.jpg", "a.jpg"),
            ("/dir/sub/a.jpg", "dir/sub/a.jpg"),
            ("/with%20space.png", "with space.png"),
            ("/caf%C3%A9/%E7%8C%AB.jpg", "café/猫.jpg"),
            ("/a+b.jpg", "a+b.jpg"),
            ("/..a/b..", "..a/b.."),
        ];
        for (path, key) in ok {
            assert_eq!(plan(path, "").map(|p| p.key), Ok(key.to_owned()), "{path}");
        }
        let bad = [
            "/../etc/passwd",
            "/a/../../b",
            "/a/%2e%2e/b",
            "/%2E%2E",
            "/a/./b",
            "/a//b",
            "/a/",
            "/a%00b",
            "/a%5Cb",
            "/a\\b",
            "/a%0Ab",
            "/%FF",
        ];
        for path in bad {
            assert!(
                matches!(plan(path, ""), Err(ResizeError::Key(_))),
                "{path}: {:?}",
                plan(path, "")
            );
        }
    }

    #[test]
    fn allowed_sizes_restrict_every_side() {
        let rules = Rules {
            max_side: 4096,
            allowed_sizes: vec![100, 200],
            ..Rules::default()
        };
        let p = |q: &str| parse("/a.jpg", Some(q), false, None, &rules);
        assert!(p("d=100x200").is_ok());
        assert!(p("w=200").is_ok());
        assert_eq!(p("d=100x150"), Err(ResizeError::SizeNotAllowed(150)));
        assert_eq!(p("h=101"), Err(ResizeError::SizeNotAllowed(101)));
    }

    #[test]
    fn the_canonical_text_ignores_spelling() {
        let canon = |q: &str| match plan("/a.jpg", q) {
            Ok(StorePlan {
                transform: Some(t), ..
            }) => t.canonical,
            other => panic!("{q}: {other:?}"),
        };
        assert_eq!(canon("d=100x80"), canon("h=80&w=100&fit=cover"));
        assert_eq!(canon("w=100&format=jpg"), canon("format=jpeg&w=100"));
        assert_eq!(canon("w=100&bg=fff"), canon("w=100"));
        assert_ne!(canon("w=100"), canon("w=100&q=50"));
        assert_ne!(canon("w=100"), canon("w=100&static"));
    }
}
