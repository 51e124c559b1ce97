//! The store mode's response headers: type and length, `Cache-Control` (public, a
//! configurable max-age, `immutable` for signed or versioned URLs), the strong `ETag` and
//! `Last-Modified`, `Vary: Accept` when the format was negotiated, and `X-Image-Fallback`
//! when the output is not the format that was asked for. Input: a [`StoreReply`].
//!
//! Input: a [`StoreReply`]; output: an axum `Response`. Uses `pipeline::store`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

use crate::pipeline::store::{StoreReply, Validators};

/// Why the output format differs from the one asked for.
pub const X_IMAGE_FALLBACK: HeaderName = HeaderName::from_static("x-image-fallback");

/// How long successful answers may be kept.
#[derive(Debug, Clone, Copy)]
pub struct SuccessCaching {
    pub max_age: Duration,
}

pub fn build(reply: StoreReply, caching: &SuccessCaching) -> Response {
    match reply {
        StoreReply::NotModified(v) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            validators(response.headers_mut(), &v, caching);
            response
        }
        StoreReply::Original {
            format,
            size,
            validators: v,
            body,
        } => {
            let mut response = match body {
                Some(stream) => Response::new(Body::from_stream(stream.0)),
                None => Response::new(Body::empty()),
            };
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.mime()),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            // `Range` is not served from the store (RFC 9110 lets us answer 200): say so.
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
            validators(h, &v, caching);
            response
        }
        StoreReply::Rendered {
            variant,
            validators: v,
            head_only,
        } => {
            let len = variant.bytes.len();
            let mut response = if head_only {
                Response::new(Body::empty())
            } else {
                Response::new(Body::from(variant.bytes.clone()))
            };
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(variant.format.mime()),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            validators(h, &v, caching);
            let fallback = variant.fallback.as_deref();
            if let Some(v) = fallback.and_then(|f| HeaderValue::from_str(f).ok()) {
                h.insert(X_IMAGE_FALLBACK, v);
            }
            response
        }
    }
}

fn validators(h: &mut HeaderMap, v: &Validators, caching: &SuccessCaching) {
    let mut cache = format!("public, max-age={}", caching.max_age.as_secs());
    if v.immutable {
        cache.push_str(", immutable");
    }
    if let Ok(value) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, value);
    }
    if let Ok(value) = HeaderValue::from_str(&v.etag) {
        h.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(v.last_modified)) {
        h.insert(header::LAST_MODIFIED, value);
    }
    if v.vary_accept {
        h.insert(header::VARY, HeaderValue::from_static("Accept"));
    }
}
