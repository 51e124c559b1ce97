//! Raw request parts → a typed plan. Input: the path, the raw query string and the few
//! headers that matter (`Range`; for the store mode the validators and `Accept`, in
//! [`conditions`]); output: a [`Route`] (and [`Conditions`]). Every default and limit is resolved
//! here, once; later stages never look at the query again. Uses no HTTP framework types.
//!
//! A query with `url` is the remote (Misskey) mode ([`misskey`]), and so is the path form
//! `/<type>/<percent-encoded URL>` ([`misskey::path_url`]: its last segment decodes to an
//! `http(s)://` URL, or, with no store, to anything, which gets `https://`); `/` without
//! `url` is the deployment check; any other path is an object key of the store mode
//! ([`resize`]) when a store is configured, else a 400.

pub mod conditions;
pub mod misskey;
pub mod range;
pub mod resize;
pub mod signature;

pub use conditions::{Accepted, Conditions};
pub use misskey::Plan;
pub use range::RangeSpec;
pub use resize::{ResizeError, StorePlan};

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /` with no `url`: `Hello World!`.
    Hello,
    /// The remote mode.
    Proxy(Plan),
    /// The store mode.
    Store(StorePlan),
}

/// Parses path and raw query (without `?`) of a GET or HEAD request. `store`: the store
/// mode's rules, `None` when no store is configured; `remote_keys`: the remote mode's
/// signing keys (empty: unsigned URLs, the Misskey contract).
pub fn parse(
    path: &str,
    query: Option<&str>,
    head_only: bool,
    range_header: Option<&str>,
    store: Option<&resize::Rules>,
    remote_keys: &[Vec<u8>],
) -> Result<Route, RequestError> {
    let has_url = form_urlencoded::parse(query.unwrap_or("").as_bytes()).any(|(k, _)| k == "url");
    let path_form = (!has_url)
        .then(|| misskey::path_url(path, store.is_some()))
        .flatten();
    if let (false, None, true, Some(rules)) = (has_url, &path_form, path != "/", store) {
        return Ok(Route::Store(resize::parse(
            path,
            query,
            head_only,
            range_header,
            rules,
        )?));
    }
    Ok(
        match misskey::parse_with(path, query, head_only, range_header, remote_keys, path_form)? {
            misskey::Route::Hello => Route::Hello,
            misskey::Route::Proxy(plan) => Route::Proxy(plan),
        },
    )
}

/// Why a request was refused before anything was fetched. The client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A path other than `/` without `url`, with no store configured (400).
    #[error("missing `url` parameter")]
    MissingUrl,
    /// (400)
    #[error("empty `url` parameter")]
    EmptyUrl,
    /// (400)
    #[error("`url` given more than once")]
    RepeatedUrl,
    /// Unparseable, not http(s), or without a host (400).
    #[error("invalid `url`: {0}")]
    InvalidUrl(String),
    /// A store-mode request that does not parse (400), or is not signed right (403).
    #[error(transparent)]
    Store(#[from] ResizeError),
    /// A remote-mode URL without its valid `sig` where signing is on (403).
    #[error(transparent)]
    Signature(signature::SignatureError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_picks_the_remote_mode_and_other_paths_the_store() {
        let rules = resize::Rules {
            max_side: 4096,
            ..resize::Rules::default()
        };
        let store = Some(&rules);
        assert_eq!(parse("/", None, false, None, store, &[]), Ok(Route::Hello));
        assert_eq!(
            parse("/", Some("w=1"), false, None, store, &[]),
            Ok(Route::Hello)
        );
        assert!(matches!(
            parse("/a.jpg", Some("w=10"), false, None, store, &[]),
            Ok(Route::Store(p)) if p.key == "a.jpg"
        ));
        assert!(matches!(
            parse(
                "/a.jpg",
                Some("url=http://x/y.png&emoji"),
                false,
                None,
                store,
                &[]
            ),
            Ok(Route::Proxy(_))
        ));
        // Without a store, the Misskey contract: a path without `url` is a 400.
        assert_eq!(
            parse("/a.jpg", Some("w=10"), false, None, None, &[]),
            Err(RequestError::MissingUrl)
        );
    }

    #[test]
    fn the_path_form_gives_the_url_without_shadowing_store_keys() {
        let rules = resize::Rules {
            max_side: 4096,
            ..resize::Rules::default()
        };
        let url_of = |path: &str, query: Option<&str>, store| match parse(
            path,
            query,
            false,
            None,
            store,
            &[],
        ) {
            Ok(Route::Proxy(p)) => Some((p.url.to_string(), p.transform)),
            _ => None,
        };
        let encoded = "/proxy/image/https%3A%2F%2Fexample.com%2Fa%20b.png";
        for store in [None, Some(&rules)] {
            assert_eq!(
                url_of(encoded, None, store),
                Some(("https://example.com/a%20b.png".into(), None))
            );
            assert_eq!(
                url_of(
                    "/avatar/HTTP%3A%2F%2Fexample.com%2Fu.png",
                    Some("avatar=1"),
                    store
                ),
                Some((
                    "http://example.com/u.png".into(),
                    Some(media::Transform::Avatar { still: false })
                ))
            );
        }
        // No scheme: `https://`, unless a store is on (then it is an object key).
        assert_eq!(
            url_of("/proxy/example.com%2Fa.png", Some("static"), None),
            Some((
                "https://example.com/a.png".into(),
                Some(media::Transform::Static)
            ))
        );
        assert!(matches!(
            parse("/photos/cat.jpg", Some("w=10"), false, None, Some(&rules), &[]),
            Ok(Route::Store(p)) if p.key == "photos/cat.jpg"
        ));
        // A Misskey path without `url` is still that.
        assert_eq!(
            parse("/proxy/image.webp", None, false, None, None, &[]),
            Err(RequestError::MissingUrl)
        );
        // One segment is never the path form; `url` in the query wins over the path.
        assert_eq!(
            parse(
                "/https%3A%2F%2Fexample.com%2Fa.png",
                None,
                false,
                None,
                None,
                &[]
            ),
            Err(RequestError::MissingUrl)
        );
        assert_eq!(
            url_of(encoded, Some("url=http://other.example/b.png"), None).map(|u| u.0),
            Some("http://other.example/b.png".into())
        );
    }
}
