//! The one place that turns any failure into a status, a short public body and a
//! `Cache-Control`. The match below is exhaustive on purpose (no `_` arm): a new error
//! variant does not compile until someone decides its status. The full error chain goes to
//! the log once (in the route); clients get a fixed message, except for the store mode's
//! parameter errors, whose one-line reason is our own text about their own URL.
//!
//! Caching of errors differs by mode ([`ErrorCaching`]): the remote mode keeps the Misskey
//! reference's five minutes for client errors; the store mode keeps a 404 and other client
//! errors briefly. Neither ever lets a 5xx be stored: an induced overload or an origin's
//! outage must not be kept by a CDN for a popular avatar.
//!
//! Input: an [`AppError`]; output: an axum `Response`. Uses `error`, `request`, `source`.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::request::{RequestError, ResizeError};
use crate::source::store::StoreError;
use crate::source::{NoRoom, SourceError};

/// Cache-Control of client errors (and of the fallback image standing for one): retry in
/// five minutes, the Misskey reference's choice.
pub const CACHE_SHORT: &str = "max-age=300";

impl AppError {
    /// Status and public message.
    pub fn status(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            AppError::Request(e) => match e {
                RequestError::MissingUrl => (S::BAD_REQUEST, "url parameter is required"),
                RequestError::EmptyUrl => (S::BAD_REQUEST, "url parameter is empty"),
                RequestError::RepeatedUrl => (S::BAD_REQUEST, "url parameter given twice"),
                RequestError::InvalidUrl(_) => (S::BAD_REQUEST, "invalid url"),
                RequestError::Signature(_) => (S::FORBIDDEN, "invalid signature"),
                RequestError::Store(e) => match e {
                    ResizeError::Signature(_) => (S::FORBIDDEN, "invalid signature"),
                    ResizeError::Key(_)
                    | ResizeError::Unknown(_)
                    | ResizeError::Repeated(_)
                    | ResizeError::Value { .. }
                    | ResizeError::Conflict(_)
                    | ResizeError::SizeNotAllowed(_) => (S::BAD_REQUEST, "invalid request"),
                },
            },
            AppError::Store(e) => match e {
                StoreError::NotFound => (S::NOT_FOUND, "not found"),
                StoreError::InvalidKey(_) => (S::BAD_REQUEST, "invalid key"),
                StoreError::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "file too large"),
                StoreError::Timeout => (S::GATEWAY_TIMEOUT, "store timed out"),
                StoreError::Denied(_) => (S::BAD_GATEWAY, "store refused access"),
                StoreError::Unavailable(_) => (S::BAD_GATEWAY, "store unavailable"),
                StoreError::Changed => (S::BAD_GATEWAY, "store object changed"),
                StoreError::Resting { .. } => (S::SERVICE_UNAVAILABLE, "store unavailable"),
                StoreError::NoRoom(n) => no_room(*n),
            },
            AppError::Source(e) => match e {
                SourceError::InvalidUrl(_) => (S::BAD_REQUEST, "invalid url"),
                SourceError::Unresolvable { .. } => (S::NOT_FOUND, "no such host"),
                SourceError::Dns { .. } => (S::BAD_GATEWAY, "DNS lookup failed"),
                SourceError::DnsTimeout { .. } => (S::GATEWAY_TIMEOUT, "DNS lookup timed out"),
                SourceError::Blocked { .. } => (S::FORBIDDEN, "destination not allowed"),
                SourceError::HostNotAllowed { .. } => (S::FORBIDDEN, "origin not allowed"),
                SourceError::Unreachable(_) => (S::BAD_GATEWAY, "origin unreachable"),
                SourceError::Tls(_) => (S::BAD_GATEWAY, "origin TLS failed"),
                SourceError::Redirect(_) => (S::BAD_GATEWAY, "bad redirect"),
                SourceError::Timeout(_) => (S::GATEWAY_TIMEOUT, "origin timed out"),
                SourceError::Status(code) => match StatusCode::from_u16(*code) {
                    Ok(s) if s.is_client_error() => (s, "origin answered with an error"),
                    _ => (S::BAD_GATEWAY, "origin answered with an error"),
                },
                SourceError::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "file too large"),
                SourceError::BodyBroken(_) => (S::BAD_GATEWAY, "origin body broken"),
                SourceError::NoRoom(n) => no_room(*n),
            },
            AppError::Media(e) => match e {
                media::Error::Unsupported(_) => (S::UNPROCESSABLE_ENTITY, "cannot decode image"),
                media::Error::Invalid(_) => (S::UNPROCESSABLE_ENTITY, "cannot decode image"),
                media::Error::TooLarge(_) => (S::UNPROCESSABLE_ENTITY, "image too large"),
                media::Error::Panicked => (S::UNPROCESSABLE_ENTITY, "cannot decode image"),
                media::Error::UniformBadge => (S::NOT_FOUND, "badge image is uniform"),
                media::Error::TimedOut => (S::UNPROCESSABLE_ENTITY, "image took too long"),
                media::Error::Cancelled => (S::SERVICE_UNAVAILABLE, "request cancelled"),
                media::Error::Encode(_) => (S::INTERNAL_SERVER_ERROR, "encoding failed"),
            },
            AppError::Overloaded | AppError::PassthroughFull => {
                (S::SERVICE_UNAVAILABLE, "overloaded, retry shortly")
            }
            AppError::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "too many requests"),
            AppError::NotPassable(_) => (S::FORBIDDEN, "type not allowed"),
            AppError::NotConvertible(_) => (S::NOT_FOUND, "not a convertible image"),
            AppError::RangeNotSatisfiable { .. } => {
                (S::RANGE_NOT_SATISFIABLE, "range not satisfiable")
            }
            AppError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method not allowed"),
            AppError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal error"),
            AppError::Shared(inner) => inner.status(),
        }
    }
}

/// A download the memory budget has no room for: busy now (503, like a full queue), or
/// larger than the whole budget (413: it can never be taken).
fn no_room(n: NoRoom) -> (StatusCode, &'static str) {
    match n {
        NoRoom::Busy => (StatusCode::SERVICE_UNAVAILABLE, "overloaded, retry shortly"),
        NoRoom::OverBudget { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "file too large"),
    }
}

impl AppError {
    /// The body sent to the client: the fixed message, or a store parameter error's reason.
    pub fn public_message(&self) -> Cow<'static, str> {
        match self {
            AppError::Request(RequestError::Store(e)) => Cow::Owned(e.to_string()),
            // A hard cap names itself, so the client knows what to ask for instead.
            AppError::Source(SourceError::TooLarge { limit })
            | AppError::Store(StoreError::TooLarge { limit })
            | AppError::Source(SourceError::NoRoom(NoRoom::OverBudget { budget: limit }))
            | AppError::Store(StoreError::NoRoom(NoRoom::OverBudget { budget: limit })) => {
                Cow::Owned(format!("file too large (limit: {limit} bytes)"))
            }
            AppError::Shared(inner) => inner.public_message(),
            other => Cow::Borrowed(other.status().1),
        }
    }

    /// The error as a response whose `Cache-Control` follows `caching`.
    pub fn into_response_with(self, caching: &ErrorCaching) -> Response {
        let (status, _) = self.status();
        let cache = caching.cache_control(status);
        let mut response = self.into_response();
        if let Ok(v) = HeaderValue::from_str(&cache) {
            response.headers_mut().insert(header::CACHE_CONTROL, v);
        }
        response
    }
}

/// Answers no cache may keep: a 5xx (an induced overload, an origin's outage) and a 429
/// (about one client; a CDN keys by URL and would serve it to everyone).
pub fn never_stored(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// How long error answers may be kept by browsers and CDNs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCaching {
    /// The remote mode: five minutes for client errors (the Misskey reference's
    /// behaviour), `no-store` for server errors.
    Remote,
    /// The store mode: a 404 for `not_found`, other client errors for `client_error`,
    /// server errors (5xx, including 503 overload) never.
    Store {
        not_found: Duration,
        client_error: Duration,
    },
}

impl ErrorCaching {
    pub fn cache_control(&self, status: StatusCode) -> String {
        match self {
            _ if never_stored(status) => "no-store".to_owned(),
            ErrorCaching::Remote => CACHE_SHORT.to_owned(),
            ErrorCaching::Store {
                not_found,
                client_error,
            } => {
                if status == StatusCode::NOT_FOUND {
                    format!("public, max-age={}", not_found.as_secs())
                } else {
                    format!("public, max-age={}", client_error.as_secs())
                }
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, _) = self.status();
        let mut response = (status, self.public_message()).into_response();
        let h = response.headers_mut();
        // Errors are never cached for long, and never as immutable; 5xx not at all.
        if let Ok(v) = HeaderValue::from_str(&ErrorCaching::Remote.cache_control(status)) {
            h.insert(header::CACHE_CONTROL, v);
        }
        self.special_headers(h);
        response
    }
}

impl AppError {
    /// The headers some statuses require (`Content-Range`, `Allow`, `Retry-After`).
    fn special_headers(&self, h: &mut axum::http::HeaderMap) {
        match self {
            AppError::RangeNotSatisfiable { total: Some(t) } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{t}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            AppError::MethodNotAllowed => {
                h.insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
            }
            AppError::RateLimited { retry_after }
            | AppError::Store(StoreError::Resting { retry_after }) => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    h.insert(header::RETRY_AFTER, v);
                }
            }
            AppError::Overloaded
            | AppError::PassthroughFull
            | AppError::Source(SourceError::NoRoom(NoRoom::Busy))
            | AppError::Store(StoreError::NoRoom(NoRoom::Busy)) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            AppError::Shared(inner) => inner.special_headers(h),
            _ => {}
        }
    }
}
