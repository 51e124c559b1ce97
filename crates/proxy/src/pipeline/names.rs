//! Download names: which name, which extension, and the `Content-Disposition` value.
//! Input: the URL's last segment and the origin's header; output: plain strings (the
//! response puts the header on). Uses `media::Format` and `percent-encoding` only.
//!
//! The rules are the Misskey reference's: the last path segment of the requested URL, replaced
//! by the origin's `Content-Disposition` filename when that parses (`filename*` preferred);
//! then the output extension appended unless already there (`.jpeg` counts for `jpg`,
//! `.tiff` for `tif`). The header carries an ASCII-safe `filename` and, when different, the
//! exact name as RFC 5987 `filename*`.
//!
//! The origin's header is parsed by hand: RFC 6266 parameters are a few lines over
//! `;`-separated, optionally quoted values, and the crates that do it are unmaintained.

use media::Format;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// RFC 5987 `attr-char` is ALPHA / DIGIT / "!#$&+-.^_`|~"; everything else is encoded.
const ATTR_CHAR_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// Longest download name kept, in characters (before the extension rule). An origin's
/// 8 KB `filename` was echoed whole: every answer then carried 16 KB of its text (the name
/// twice, plain and encoded), enough to break CDNs' and proxies' header limits.
pub const MAX_NAME_CHARS: usize = 128;

/// The name before the extension rule: the origin's, when it gave one that parses, cut to
/// [`MAX_NAME_CHARS`] (keeping a short extension at the end).
pub fn source_name(url_filename: &str, content_disposition: &Option<String>) -> String {
    let name = content_disposition
        .as_deref()
        .and_then(parse_filename)
        .unwrap_or_else(|| url_filename.to_owned());
    shorten(name)
}

/// `name` cut to [`MAX_NAME_CHARS`] characters; an extension of up to 10 characters stays.
fn shorten(name: String) -> String {
    if name.chars().count() <= MAX_NAME_CHARS {
        return name;
    }
    let ext = name
        .rfind('.')
        .map(|dot| name.get(dot..).unwrap_or_default())
        .filter(|ext| ext.chars().count() <= 10)
        .unwrap_or_default();
    let keep = MAX_NAME_CHARS - ext.chars().count();
    let mut short: String = name.chars().take(keep).collect();
    short.push_str(ext);
    short
}

/// Appends `.ext` for `format` unless `name` already ends with it (or an alias).
pub fn with_extension(name: &str, format: Format) -> String {
    let lower = name.to_ascii_lowercase();
    let has = std::iter::once(format.extension())
        .chain(format.extension_aliases().iter().copied())
        .any(|ext| lower.ends_with(&format!(".{ext}")));
    if has {
        name.to_owned()
    } else {
        format!("{name}.{}", format.extension())
    }
}

/// `inline; filename="<safe>"` plus `; filename*=UTF-8''<encoded>` when the two differ.
pub fn header_value(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe == name {
        format!("inline; filename=\"{safe}\"")
    } else {
        let encoded = utf8_percent_encode(name, ATTR_CHAR_ENCODE);
        format!("inline; filename=\"{safe}\"; filename*=UTF-8''{encoded}")
    }
}

/// The filename in a `Content-Disposition` value, `filename*` winning over `filename`.
fn parse_filename(value: &str) -> Option<String> {
    let mut plain = None;
    let mut extended = None;
    for (key, val) in params(value) {
        match key.to_ascii_lowercase().as_str() {
            "filename*" => extended = extended.or_else(|| decode_ext_value(&val)),
            "filename" => plain = plain.or(Some(val)),
            _ => {}
        }
    }
    extended.or(plain).filter(|name| !name.is_empty())
}

/// `charset'lang'pct-encoded` (RFC 5987). UTF-8 and ISO-8859-1 are the charsets defined.
fn decode_ext_value(v: &str) -> Option<String> {
    let mut parts = v.splitn(3, '\'');
    let charset = parts.next()?.to_ascii_lowercase();
    let _language = parts.next()?;
    let encoded = parts.next()?;
    let bytes: Vec<u8> = percent_decode_str(encoded).collect();
    match charset.as_str() {
        "utf-8" => String::from_utf8(bytes).ok(),
        "iso-8859-1" => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

/// Splits `type; k=v; k="quoted \"v\""` into (k, v) pairs, skipping the disposition type.
fn params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    // Skip the disposition type.
    for c in chars.by_ref() {
        if c == ';' {
            break;
        }
    }
    loop {
        let key: String = chars
            .by_ref()
            .take_while(|&c| c != '=')
            .collect::<String>()
            .trim()
            .to_owned();
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
            // Drop anything up to the next separator.
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
            }
        } else {
            val = chars
                .by_ref()
                .take_while(|&c| c != ';')
                .collect::<String>()
                .trim()
                .to_owned();
        }
        out.push((key, val));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origins_huge_filename_is_cut_keeping_its_extension() {
        let huge = format!("attachment; filename=\"{}.png\"", "a".repeat(8192));
        let name = source_name("x", &Some(huge));
        assert_eq!(name.chars().count(), MAX_NAME_CHARS);
        assert!(name.ends_with("a.png"), "{name}");
        let wide = "é".repeat(4000);
        let name = source_name(&wide, &None);
        assert_eq!(name.chars().count(), MAX_NAME_CHARS, "cut on characters");
        assert!(header_value(&name).len() < 2048);
        assert_eq!(source_name("short.gif", &None), "short.gif");
    }

    #[test]
    fn extension_rule_matches_the_spec_examples() {
        let cases = [
            ("foo.jpg", Format::Png, "foo.jpg.png"),
            ("foo.jpg", Format::Webp, "foo.jpg.webp"),
            ("noext", Format::Png, "noext.png"),
            ("a.jpeg", Format::Jpeg, "a.jpeg"),
            ("a.JPG", Format::Jpeg, "a.JPG"),
            ("scan.tiff", Format::Tiff, "scan.tiff"),
            ("scan.tif", Format::Tiff, "scan.tif"),
            ("", Format::Gif, ".gif"),
            ("clip.mp4", Format::Mp4Video, "clip.mp4"),
        ];
        for (name, format, want) in cases {
            assert_eq!(with_extension(name, format), want, "{name} as {format:?}");
        }
    }

    #[test]
    fn header_value_matches_the_spec_example() {
        assert_eq!(
            header_value("hello world.png"),
            "inline; filename=\"hello_world.png\"; filename*=UTF-8''hello%20world.png"
        );
        assert_eq!(
            header_value("plain-name_1.png"),
            "inline; filename=\"plain-name_1.png\""
        );
        assert_eq!(
            header_value("絵文字.png"),
            "inline; filename=\"___.png\"; filename*=UTF-8''%E7%B5%B5%E6%96%87%E5%AD%97.png"
        );
        assert_eq!(
            header_value("a\"b;c.png"),
            "inline; filename=\"a_b_c.png\"; filename*=UTF-8''a%22b%3Bc.png"
        );
    }

    #[test]
    fn origin_disposition_replaces_the_url_name() {
        let cd = |s: &str| Some(s.to_owned());
        let cases = [
            (cd("attachment; filename=\"cat.gif\""), "cat.gif"),
            (cd("inline; filename=dog.png"), "dog.png"),
            (
                cd("attachment; filename=\"a \\\"q\\\".png\""),
                "a \"q\".png",
            ),
            (
                cd("attachment; filename=\"fallback.png\"; filename*=UTF-8''%E7%8C%AB.png"),
                "猫.png",
            ),
            (
                cd("attachment; filename*=iso-8859-1'en'caf%E9.png"),
                "café.png",
            ),
            (cd("attachment"), "url.bin"),
            (cd("attachment; filename=\"\""), "url.bin"),
            (cd("attachment; filename*=UTF-8''%FF%FE"), "url.bin"),
            (None, "url.bin"),
        ];
        for (header, want) in cases {
            assert_eq!(source_name("url.bin", &header), want, "{header:?}");
        }
    }
}
