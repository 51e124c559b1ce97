//! `AppError`: every way a request can fail, as a domain type — what the request parser,
//! the sources, the engine, admission, the cache and the pipelines return — and the facts
//! the pipelines need about it (is it lasting? what did the origin say?). No HTTP here: its
//! status, body and `Cache-Control` are decided in one place of the HTTP face,
//! `response::error`. Uses `request`, `source` and `media`'s error types.
//!
//! Input: the rooms' own errors; output: an [`AppError`].

use media::Format;

use crate::request::RequestError;
use crate::source::store::StoreError;
use crate::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// Every passthrough place (`remote.passthrough_max_concurrent`) is taken (503,
    /// Retry-After).
    #[error("overloaded: too many passthrough streams")]
    PassthroughFull,
    /// This client caused more origin fetches than `remote.rate_limit` allows (429,
    /// Retry-After, never cached: a CDN keys by URL, not by client).
    #[error("rate limited: retry after {retry_after:?}")]
    RateLimited { retry_after: std::time::Duration },
    /// A method other than GET, HEAD and OPTIONS (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A bug or a lost worker on our side (500).
    #[error("internal error: {0}")]
    Internal(String),
    /// The error of work shared by several requests (coalesced, or remembered by the
    /// negative cache): answered exactly as the original error.
    #[error(transparent)]
    Shared(std::sync::Arc<AppError>),
}

impl AppError {
    /// The origin's status, when the origin answered with an error.
    pub fn origin_status(&self) -> Option<u16> {
        match self {
            AppError::Source(SourceError::Status(code)) => Some(*code),
            AppError::Shared(inner) => inner.origin_status(),
            _ => None,
        }
    }

    /// The kind of origin failure, for the `origin_errors` metric; `None` when the origin
    /// is not at fault.
    pub fn origin_class(&self) -> Option<&'static str> {
        match self {
            AppError::Source(e) => Some(match e {
                SourceError::InvalidUrl(_) => "invalid",
                SourceError::Unresolvable { .. } => "dns_missing",
                SourceError::Dns { .. } => "dns_failed",
                SourceError::DnsTimeout { .. } => "dns_timeout",
                SourceError::Blocked { .. } | SourceError::HostNotAllowed { .. } => "blocked",
                SourceError::Unreachable(_) => "connect",
                SourceError::Tls(_) => "tls",
                SourceError::Redirect(_) => "redirect",
                SourceError::Timeout(_) => "timeout",
                SourceError::Status(_) => "status",
                SourceError::TooLarge { .. } => "too_large",
                SourceError::BodyBroken(_) => "body",
                SourceError::NoRoom(_) => return None,
            }),
            AppError::Shared(inner) => inner.origin_class(),
            _ => None,
        }
    }

    /// Whether the error says something lasting, and about what: the source itself (an
    /// origin's 404 or 410, a missing store key) or this input for this transform (bytes
    /// that do not decode: a first-frame `static` may still succeed where the whole
    /// animation fails), over-limit inputs included, and a render that ran past its
    /// deadline: an attacker's costly file must not be rendered again at will (a heavy
    /// image on a loaded machine is refused for `cache.negative_ttl` too, the price of
    /// that). `None` for what depends on the moment: load, origin time-outs, the network.
    /// The negative cache keeps only the lasting ones.
    pub fn lasting(&self) -> Option<Lasting> {
        match self {
            AppError::Source(SourceError::Status(404 | 410))
            | AppError::Store(StoreError::NotFound) => Some(Lasting::Source),
            AppError::Media(
                media::Error::Unsupported(_)
                | media::Error::Invalid(_)
                | media::Error::Panicked
                | media::Error::TooLarge(_)
                | media::Error::TimedOut,
            )
            | AppError::NotConvertible(_) => Some(Lasting::Input),
            AppError::Shared(inner) => inner.lasting(),
            _ => None,
        }
    }
}

/// What a lasting error is about (see [`AppError::lasting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lasting {
    /// Every variant of the source fails alike.
    Source,
    /// This variant of this input fails.
    Input,
}
