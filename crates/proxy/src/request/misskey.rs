//! The Misskey media proxy query:
//! `?url=<remote>&emoji|avatar|thumbnail|static|preview|badge|fallback`.
//!
//! Flags use presence semantics (`emoji`, `emoji=`, `emoji=0` all turn it on), keys are
//! case-sensitive, unknown keys are ignored, and the path is ignored except that `/` with
//! no `url` is the deployment check, and that the path form `/<type>/<percent-encoded URL>`
//! gives the URL when the query has none ([`path_url`]). The precedence of the flags is the
//! spec's table.
//!
//! Input: the raw query (and `Range`); output: a [`Plan`] or a [`RequestError`]. Uses
//! `range`, `signature`, `media::Transform`.

use media::Transform;
use url::Url;

use super::{RangeSpec, RequestError};

/// What a remote-mode request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /` with no `url`: `Hello World!`.
    Hello,
    Proxy(Plan),
}

/// A remote-mode request, fully parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The remote URL: http or https, with a host. Addresses are checked when dialled.
    pub url: Url,
    /// The transform the flags select; `None` means "pass the original through" (or, for
    /// an SVG, rasterise it: decided once the bytes are known).
    pub transform: Option<Transform>,
    /// `thumbnail`: when the source is a video, the still of the frame at this time
    /// (sized by `transform`, `Static`); an image is transformed as usual.
    pub frame: Option<media::video::At>,
    /// Answer errors with a placeholder image instead of an error status.
    pub fallback: bool,
    /// The download name before the extension rule: the last path segment of `url`, as
    /// written (percent-encoded), `""` when the path ends in `/`.
    pub url_filename: String,
    /// `HEAD`: headers only, the body is not downloaded.
    pub head_only: bool,
    /// A single byte range asked for by the client (passthrough only).
    pub range: Option<RangeSpec>,
    /// The client's address, for the fetch rate limit: not in the query, set by the route
    /// from the connection (and a trusted CDN header).
    pub client: Option<std::net::IpAddr>,
}

/// Parses path and raw query (without `?`) of a GET or HEAD request. `signing_keys`: when
/// any, the `url` must come with its `sig` (see [`super::signature`]).
pub fn parse(
    path: &str,
    query: Option<&str>,
    head_only: bool,
    range_header: Option<&str>,
    signing_keys: &[Vec<u8>],
) -> Result<Route, RequestError> {
    parse_with(path, query, head_only, range_header, signing_keys, None)
}

/// The URL of the path form `/<type>/<percent-encoded URL>` (MisskeyIO media-proxy 0.0.25):
/// the last of at least two path segments, percent-decoded, when it is an `http(s)://` URL
/// — or, with `store_on` false, a host and a path (`example.com%2Fa.png`), which then gets
/// `https://` (a path without `url` is no object key then; `/proxy/image.webp` stays a
/// missing `url`). With a store configured, a path whose last segment does not
/// decode to an absolute http(s) URL stays an object key: store keys are never shadowed
/// by a guess.
pub fn path_url(path: &str, store_on: bool) -> Option<String> {
    let mut segments = path.strip_prefix('/')?.split('/');
    let last = segments.next_back()?;
    segments.next()?; // at least the `<type>` segment before it
    let decoded = percent_encoding::percent_decode_str(last)
        .decode_utf8()
        .ok()?
        .into_owned();
    let lower = decoded.get(..8).unwrap_or(&decoded).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Some(decoded);
    }
    let decoded = decoded.trim_start_matches('/');
    if store_on || !decoded.contains('/') || decoded.contains("://") {
        return None;
    }
    Some(format!("https://{decoded}"))
}

/// [`parse`], with the URL of the path form ([`path_url`]) used when the query has none.
pub fn parse_with(
    path: &str,
    query: Option<&str>,
    head_only: bool,
    range_header: Option<&str>,
    signing_keys: &[Vec<u8>],
    path_form: Option<String>,
) -> Result<Route, RequestError> {
    let mut url = None;
    let mut sig = None;
    let mut flags = Flags::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "url" if url.is_some() => return Err(RequestError::RepeatedUrl),
            "url" => url = Some(value),
            "sig" => sig = Some(value),
            "emoji" => flags.emoji = true,
            "avatar" => flags.avatar = true,
            "static" => flags.still = true,
            "thumbnail" => flags.thumbnail = true,
            "preview" => flags.preview = true,
            "badge" => flags.badge = true,
            "fallback" => flags.fallback = true,
            _ => {}
        }
    }
    let Some(raw) = url.or(path_form.map(Into::into)) else {
        return if path == "/" {
            Ok(Route::Hello)
        } else {
            Err(RequestError::MissingUrl)
        };
    };
    if raw.trim().is_empty() {
        return Err(RequestError::EmptyUrl);
    }
    if !signing_keys.is_empty() {
        super::signature::verify_text(signing_keys, &raw, sig.as_deref())
            .map_err(RequestError::Signature)?;
    }
    let url = Url::parse(raw.trim()).map_err(|e| RequestError::InvalidUrl(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RequestError::InvalidUrl(format!(
            "scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(RequestError::InvalidUrl("no host".into()));
    }
    let url_filename = url
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .unwrap_or("")
        .to_owned();
    let (transform, frame) = flags.transform();
    Ok(Route::Proxy(Plan {
        url,
        transform,
        frame,
        fallback: flags.fallback,
        url_filename,
        head_only,
        range: range_header.and_then(RangeSpec::parse),
        client: None,
    }))
}

#[derive(Debug, Default)]
struct Flags {
    emoji: bool,
    avatar: bool,
    still: bool,
    thumbnail: bool,
    preview: bool,
    badge: bool,
    fallback: bool,
}

impl Flags {
    /// The spec's table, first match wins; `thumbnail` (row 1b) also takes a video's frame.
    fn transform(&self) -> (Option<Transform>, Option<media::video::At>) {
        let transform = if self.emoji {
            Some(Transform::Emoji { still: self.still })
        } else if self.avatar {
            Some(Transform::Avatar { still: self.still })
        } else if self.thumbnail {
            return (Some(Transform::Static), Some(media::video::MISSKEY_FRAME));
        } else if self.still {
            Some(Transform::Static)
        } else if self.preview {
            Some(Transform::Preview)
        } else if self.badge {
            Some(Transform::Badge)
        } else {
            None
        };
        (transform, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(query: &str) -> Plan {
        match parse("/image.webp", Some(query), false, None, &[]) {
            Ok(Route::Proxy(p)) => p,
            other => panic!("{query}: expected a plan, got {other:?}"),
        }
    }

    #[test]
    fn root_without_url_is_hello_and_other_paths_are_400() {
        assert_eq!(parse("/", None, false, None, &[]), Ok(Route::Hello));
        assert_eq!(
            parse("/", Some("foo=1"), false, None, &[]),
            Ok(Route::Hello)
        );
        assert_eq!(
            parse("/x.webp", None, false, None, &[]),
            Err(RequestError::MissingUrl)
        );
        assert_eq!(
            parse("/x", Some("url="), false, None, &[]),
            Err(RequestError::EmptyUrl)
        );
        assert_eq!(
            parse(
                "/x",
                Some("url=http://a/1&url=http://a/2"),
                false,
                None,
                &[]
            ),
            Err(RequestError::RepeatedUrl)
        );
    }

    #[test]
    fn bad_urls_are_refused_at_parse() {
        for q in [
            "url=ftp://a/b",
            "url=file:///etc/passwd",
            "url=unix:/run/x.sock",
            "url=nonsense",
            "url=http://",
        ] {
            assert!(
                matches!(
                    parse("/x", Some(q), false, None, &[]),
                    Err(RequestError::InvalidUrl(_))
                ),
                "{q}"
            );
        }
    }

    #[test]
    fn flags_have_presence_semantics_and_precedence() {
        let u = "url=https%3A%2F%2Fexample.com%2Fa.png";
        let cases = [
            ("", None),
            ("&emoji", Some(Transform::Emoji { still: false })),
            ("&emoji=0", Some(Transform::Emoji { still: false })),
            ("&emoji=&static=1", Some(Transform::Emoji { still: true })),
            ("&avatar&emoji", Some(Transform::Emoji { still: false })),
            ("&avatar=1", Some(Transform::Avatar { still: false })),
            ("&avatar&static", Some(Transform::Avatar { still: true })),
            ("&static&preview&badge", Some(Transform::Static)),
            ("&preview&badge", Some(Transform::Preview)),
            ("&badge", Some(Transform::Badge)),
            ("&Emoji&STATIC", None),
            ("&unknown=1", None),
        ];
        for (flags, want) in cases {
            assert_eq!(
                plan(&format!("{u}{flags}")).transform,
                want,
                "flags `{flags}`"
            );
        }
        assert!(plan(&format!("{u}&fallback")).fallback);
        assert!(!plan(u).fallback);
    }

    #[test]
    fn thumbnail_takes_a_frame_after_emoji_and_avatar() {
        let u = "url=https%3A%2F%2Fexample.com%2Fa.mp4";
        let frame = Some(media::video::MISSKEY_FRAME);
        for (flags, want, at) in [
            ("&thumbnail=1", Some(Transform::Static), frame),
            ("&thumbnail&static&preview", Some(Transform::Static), frame),
            ("&preview&thumbnail", Some(Transform::Static), frame),
            (
                "&thumbnail&emoji",
                Some(Transform::Emoji { still: false }),
                None,
            ),
            (
                "&avatar&thumbnail",
                Some(Transform::Avatar { still: false }),
                None,
            ),
            ("&static", Some(Transform::Static), None),
            ("&Thumbnail", None, None),
        ] {
            let p = plan(&format!("{u}{flags}"));
            assert_eq!((p.transform, p.frame), (want, at), "flags `{flags}`");
        }
    }

    #[test]
    fn odd_ipv4_spellings_are_normalised() {
        for (q, host) in [
            ("url=http://2130706433/", "127.0.0.1"),
            ("url=http://0x7f.1/", "127.0.0.1"),
            ("url=http://0177.0.0.1/", "127.0.0.1"),
        ] {
            assert_eq!(plan(q).url.host_str(), Some(host), "{q}");
        }
    }

    #[test]
    fn filename_is_the_raw_last_segment() {
        let cases = [
            ("url=http://a/b/foo.jpg", "foo.jpg"),
            ("url=http://a/b/", ""),
            ("url=http://a", ""),
            ("url=http://a/hello%20world.png", "hello%20world.png"),
            ("url=http://a/x.png?size=1", "x.png"),
        ];
        for (q, want) in cases {
            assert_eq!(plan(q).url_filename, want, "{q}");
        }
    }
}
