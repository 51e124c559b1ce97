//! Sources: where the bytes come from. Input: a checked remote URL (and optionally a byte
//! range); output: a [`Fetched`] response whose body is read under the size and time
//! limits. May use the network; never uses `media` or the routes.
//!
//! - [`guard`]: the IP address policy (pure).
//! - [`http`]: the guarded HTTP client (DNS, redirects, timeouts, size cap).
//! - [`store`]: the object store of the store mode (local directory or S3).

pub mod guard;
pub mod http;
pub mod store;

pub use http::{Body, Fetched, Fetcher};

use std::net::IpAddr;

/// Why a remote fetch failed. Each variant's doc says whose fault it is and the status the
/// service answers with (decided in `error.rs`, not here).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The URL is not http(s), has no host, or does not parse (client; 400).
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The host name does not exist or has no addresses (client; 400).
    #[error("cannot resolve host {host}")]
    Unresolvable { host: String },
    /// DNS failed for another reason (upstream; 502).
    #[error("DNS lookup for {host} failed: {reason}")]
    Dns { host: String, reason: String },
    /// The destination address is not allowed (client; 403). Nothing was sent.
    #[error("destination address {ip} is not allowed")]
    Blocked { ip: IpAddr },
    /// Connection refused, reset, TLS failure, malformed response (upstream; 502).
    #[error("origin unreachable: {0}")]
    Unreachable(String),
    /// Too many redirects, or a redirect without a usable Location (upstream; 502).
    #[error("redirect error: {0}")]
    Redirect(String),
    /// Connect, idle or total timeout (upstream; 504).
    #[error("origin timed out ({0})")]
    Timeout(&'static str),
    /// The origin answered with an error status (4xx: relayed as is; 5xx: 502).
    #[error("origin answered {0}")]
    Status(u16),
    /// The body exceeds `max_size` (client's URL points at something too big; 413).
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The body broke off mid-way (upstream; 502).
    #[error("origin body broken: {0}")]
    BodyBroken(String),
}
