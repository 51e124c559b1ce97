//! Sources: where the bytes come from. Input: a checked remote URL (and optionally a byte
//! range), or a store key the request parser has jailed; output: a [`Fetched`] response or
//! a `store::StoreObject`, each with a [`Body`] read under the size and time limits. May use
//! the network and `config`, `relay`; never uses `media`, the pipelines or the routes.
//!
//! - [`body`]: the one body type every source returns (size cap, read-ahead, whole reads
//!   into a memory [`Room`], streams).
//! - [`guard`]: the IP address policy (pure).
//! - [`http`]: the guarded HTTP client (DNS, redirects, timeouts, size cap).
//! - [`store`]: the object store of the store mode (local directory or S3).

pub mod body;
pub mod guard;
pub mod http;
pub mod store;

pub use body::{Body, BodyError};
pub use http::{Fetched, Fetcher};

use std::net::IpAddr;

/// Why a remote fetch failed. Each variant's doc says whose fault it is and the status the
/// service answers with (decided in `error.rs`, not here).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The URL is not http(s), has no host, or does not parse (client; 400).
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The host name does not exist (NXDOMAIN) or has no addresses (client's URL; 404).
    #[error("cannot resolve host {host}")]
    Unresolvable { host: String },
    /// DNS failed for another reason: SERVFAIL, REFUSED, a broken answer (upstream; 502,
    /// never stored: it passes).
    #[error("DNS lookup for {host} failed: {reason}")]
    Dns { host: String, reason: String },
    /// No name server answered in time (upstream; 504, never stored).
    #[error("DNS lookup for {host} timed out")]
    DnsTimeout { host: String },
    /// The destination address is not allowed (client; 403). Nothing was sent.
    #[error("destination address {ip} is not allowed")]
    Blocked { ip: IpAddr },
    /// The host is not on `remote.allow_hosts`, or is on `remote.deny_hosts` (client;
    /// 403). Checked on every hop before DNS; nothing was sent.
    #[error("origin host {host} is not allowed")]
    HostNotAllowed { host: String },
    /// The TLS handshake failed: an untrusted or expired certificate, no common protocol
    /// (upstream; 502).
    #[error("origin TLS failed: {0}")]
    Tls(String),
    /// Connection refused or reset, a malformed response (upstream; 502).
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
    /// The memory budget has no room for the body now (our load; 503), or never will
    /// (the body is larger than the whole budget; 413).
    #[error("no room in the memory budget: {0}")]
    NoRoom(NoRoom),
}

impl From<NoRoom> for SourceError {
    fn from(n: NoRoom) -> Self {
        SourceError::NoRoom(n)
    }
}

impl BodyError for SourceError {
    fn too_large(limit: u64) -> Self {
        SourceError::TooLarge { limit }
    }
}

impl BodyError for store::StoreError {
    fn too_large(limit: u64) -> Self {
        store::StoreError::TooLarge { limit }
    }
}

/// Why a whole-body read was refused memory (see [`Room`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoRoom {
    /// Other work holds the budget now (503, Retry-After).
    #[error("the budget is in use")]
    Busy,
    /// More than the whole budget (413).
    #[error("larger than the whole budget of {budget} bytes")]
    OverBudget { budget: u64 },
}

/// Memory a whole-body read must be given before its buffer grows: the bytes of a
/// download count against the same budget as the renders, as they arrive, so a hundred
/// slow 100 MB bodies cannot be held at once. Implemented by the worker pool's budget.
pub trait Room: Send {
    /// Makes sure `bytes` in all are reserved (never fewer than before).
    fn make_room(&mut self, bytes: u64) -> Result<(), NoRoom>;
    /// Gives back what is reserved beyond `bytes`.
    fn shrink_to(&mut self, bytes: u64);
}

/// The first allocation of a whole-body buffer is at most this, whatever length the
/// sender claims: a claimed 250 MB reserved 250 MB per request up front. Beyond it the
/// buffer grows by half again as data arrives, each step reserved first.
pub const INITIAL_BUFFER: u64 = 4 << 20;

/// One buffer for a whole body whose capacity is always reserved in a [`Room`] before it
/// is allocated.
pub(crate) struct Collector<'r> {
    room: &'r mut dyn Room,
    all: Vec<u8>,
}

impl<'r> Collector<'r> {
    /// `hint`: the announced length, trusted only up to [`INITIAL_BUFFER`].
    pub(crate) fn new(hint: u64, room: &'r mut dyn Room) -> Result<Self, NoRoom> {
        let first = hint.min(INITIAL_BUFFER);
        room.make_room(first)?;
        let all = Vec::with_capacity(usize::try_from(first).unwrap_or(0));
        Ok(Collector { room, all })
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<(), NoRoom> {
        let need = self.all.len().saturating_add(chunk.len());
        if need > self.all.capacity() {
            let cap = self.all.capacity();
            let mut grown = need.max(cap.saturating_add(cap / 2));
            if self.room.make_room(grown as u64).is_err() {
                // Near the end of the budget: exactly what is needed may still fit.
                self.room.make_room(need as u64)?;
                grown = need;
            }
            self.all.reserve_exact(grown - self.all.len());
        }
        self.all.extend_from_slice(chunk);
        Ok(())
    }

    /// The bytes, the buffer cut to their length (a shrinking `realloc`: in place, no
    /// copy) and the reservation with it.
    pub(crate) fn finish(mut self) -> bytes::Bytes {
        if self.all.capacity() > self.all.len() {
            self.all.shrink_to_fit();
        }
        self.room.shrink_to(self.all.len() as u64);
        bytes::Bytes::from(self.all)
    }
}
