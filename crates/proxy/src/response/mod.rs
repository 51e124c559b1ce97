//! Every response header this program sends, in one place. Input: a pipeline [`Reply`] (or
//! one of the fixed answers); output: an axum `Response`. The headers common to every
//! response (CORS, CSP, nosniff) are added by [`add_common_headers`], which wraps the whole
//! router so that errors carry them too.
//!
//! Uses `config` and `pipeline` (its replies and download names); [`error`] maps `AppError`.

pub mod error;
pub mod store;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::config::HeaderSettings;
use crate::pipeline::names;
use crate::pipeline::{Passthrough, Payload, Reply};

/// Cache-Control for everything that succeeded: the URL names the content forever.
pub const CACHE_IMMUTABLE: &str = "max-age=31536000, immutable";
/// Cache-Control for client errors and the fallback image standing for one: retry in five
/// minutes (decided with the errors, in [`error`]).
pub use self::error::{never_stored, ErrorCaching, CACHE_SHORT};

/// The configured headers put on every response, parsed once at start-up.
#[derive(Debug, Clone)]
pub struct CommonHeaders(Vec<(HeaderName, HeaderValue)>);

impl CommonHeaders {
    /// Builds the list; empty settings leave their header out. Values were validated when
    /// the configuration was loaded, so a value that still fails to parse is skipped.
    pub fn new(h: &HeaderSettings) -> Self {
        let pairs = [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, &h.cors_allow_origin),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, &h.cors_allow_headers),
            (header::ACCESS_CONTROL_ALLOW_METHODS, &h.cors_allow_methods),
            (header::CONTENT_SECURITY_POLICY, &h.content_security_policy),
            (header::X_CONTENT_TYPE_OPTIONS, &h.content_type_options),
        ];
        CommonHeaders(
            pairs
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .filter_map(|(k, v)| HeaderValue::from_str(v).ok().map(|v| (k, v)))
                .collect(),
        )
    }
}

/// Middleware: adds the common headers to every response, errors included.
pub async fn add_common_headers(
    State(common): State<Arc<CommonHeaders>>,
    mut response: Response,
) -> Response {
    let headers = response.headers_mut();
    for (name, value) in &common.0 {
        headers.insert(name.clone(), value.clone());
    }
    response
}

/// `GET /`: how operators check a fresh deployment.
pub fn hello() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Hello World!",
    )
        .into_response()
}

/// A short plain-text answer that no cache keeps (health endpoints).
pub fn plain(status: StatusCode, text: impl Into<axum::body::Body>) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text.into(),
    )
        .into_response()
}

/// `OPTIONS`: the CORS preflight (the CORS headers themselves come from the middleware).
pub fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

/// The placeholder answered instead of an error when the request had `fallback`. It is
/// kept as briefly as the error it stands for: five minutes for the origin's or the
/// client's fault, not at all for ours (`failed` a 5xx: overload, outage, time-out) or
/// for one client's rate limit (a 429: a CDN would serve it to everyone).
pub fn fallback(png: Bytes, failed: StatusCode) -> Response {
    let cache = if never_stored(failed) {
        "no-store"
    } else {
        CACHE_SHORT
    };
    (
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, cache),
        ],
        png,
    )
        .into_response()
}

/// A pipeline reply as an HTTP response.
pub fn build(reply: Reply) -> Response {
    match reply {
        Reply::Passthrough(p) => passthrough(p),
        Reply::Transformed { variant, name } => {
            let name = names::with_extension(&name, variant.format);
            let mut response = Response::new(Body::from(variant.bytes.clone()));
            let h = response.headers_mut();
            insert_type_forever(h, variant.format);
            insert_disposition(h, &name);
            response
        }
    }
}

/// The type of a remote-mode answer, and that it may be kept for a year: the URL names
/// the content forever.
fn insert_type_forever(h: &mut axum::http::HeaderMap, format: media::Format) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.mime()),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_IMMUTABLE),
    );
}

fn passthrough(p: Passthrough) -> Response {
    let name = names::with_extension(&p.name, p.format);
    let (status, length) = match p.range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, Some(r.len())),
        None => (StatusCode::OK, p.total),
    };
    let body = match p.payload {
        Payload::Nothing => Body::empty(),
        Payload::Bytes(b) => Body::from(b),
        Payload::Stream(s) => Body::from_stream(s),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    insert_type_forever(h, p.format);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(len) = length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Some(r) = p.range {
        let total = p.total.map_or_else(|| "*".to_owned(), |t| t.to_string());
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{total}", r.first, r.last)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    insert_disposition(h, &name);
    response
}

fn insert_disposition(h: &mut axum::http::HeaderMap, name: &str) {
    // header_value only emits ASCII (the name is sanitised and percent-encoded).
    if let Ok(v) = HeaderValue::from_str(&names::header_value(name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
}
