//! `AppError` and the one place that turns any failure into a status, a short public body
//! and a `Cache-Control`. The match below is exhaustive on purpose (no `_` arm): a new
//! error variant does not compile until someone decides its status. The full error chain
//! goes to the log once (in the route); clients get a fixed message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use media::Format;

use crate::request::RequestError;
use crate::response::CACHE_SHORT;
use crate::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Media(#[from] media::Error),
    /// Passthrough of a type that is not browser-safe, or an empty body (origin's content; 403).
    #[error("type {} is not served", .0.name())]
    NotPassable(Format),
    /// A transform flag on something that is not an image we convert (404).
    #[error("cannot convert {}", .0.name())]
    NotConvertible(Format),
    /// The client's range lies outside the body (416).
    #[error("range not satisfiable")]
    RangeNotSatisfiable { total: Option<u64> },
    /// Every image worker is busy and the queue is full (503, Retry-After).
    #[error("overloaded: the image queue is full")]
    Overloaded,
    /// A method other than GET, HEAD and OPTIONS (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A bug or a lost worker on our side (500).
    #[error("internal error: {0}")]
    Internal(String),
}

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
            },
            AppError::Source(e) => match e {
                SourceError::InvalidUrl(_) => (S::BAD_REQUEST, "invalid url"),
                SourceError::Unresolvable { .. } => (S::BAD_REQUEST, "cannot resolve host"),
                SourceError::Dns { .. } => (S::BAD_GATEWAY, "DNS lookup failed"),
                SourceError::Blocked { .. } => (S::FORBIDDEN, "destination not allowed"),
                SourceError::Unreachable(_) => (S::BAD_GATEWAY, "origin unreachable"),
                SourceError::Redirect(_) => (S::BAD_GATEWAY, "bad redirect"),
                SourceError::Timeout(_) => (S::GATEWAY_TIMEOUT, "origin timed out"),
                SourceError::Status(code) => match StatusCode::from_u16(*code) {
                    Ok(s) if s.is_client_error() => (s, "origin answered with an error"),
                    _ => (S::BAD_GATEWAY, "origin answered with an error"),
                },
                SourceError::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "file too large"),
                SourceError::BodyBroken(_) => (S::BAD_GATEWAY, "origin body broken"),
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
            AppError::Overloaded => (S::SERVICE_UNAVAILABLE, "overloaded, retry shortly"),
            AppError::NotPassable(_) => (S::FORBIDDEN, "type not allowed"),
            AppError::NotConvertible(_) => (S::NOT_FOUND, "not a convertible image"),
            AppError::RangeNotSatisfiable { .. } => {
                (S::RANGE_NOT_SATISFIABLE, "range not satisfiable")
            }
            AppError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method not allowed"),
            AppError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal error"),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = self.status();
        let mut response = (status, message).into_response();
        let h = response.headers_mut();
        // Errors are never cached for long, and never as immutable.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_SHORT));
        match &self {
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
            AppError::Overloaded => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}
