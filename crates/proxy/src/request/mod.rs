//! Raw request parts → a typed [`Plan`]. Input: the path, the raw query string and the few
//! headers that matter (`Range`); output: a [`Route`]. Every default and limit is resolved
//! here, once; later stages never look at the query again. Uses no HTTP framework types.

pub mod misskey;
pub mod range;

pub use misskey::{parse, Plan, Route};
pub use range::RangeSpec;

/// Why a request was refused before anything was fetched. All are the client's fault (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A path other than `/` without `url`.
    #[error("missing `url` parameter")]
    MissingUrl,
    #[error("empty `url` parameter")]
    EmptyUrl,
    #[error("`url` given more than once")]
    RepeatedUrl,
    /// Unparseable, not http(s), or without a host.
    #[error("invalid `url`: {0}")]
    InvalidUrl(String),
}
