//! The flow of a request, as named steps (`docs/pipeline.md`, `docs/architecture.md`).
//! Input: a typed plan from `request`; output: a reply with no HTTP types in it (the routes
//! and `response` turn it into one). Uses `cache` (a passive store), `config`, `error`,
//! `metrics`, `relay`, `request`, `source`, `workers` and the `media` engine.
//!
//! - [`remote`]: the remote (Misskey) mode — variant lookup, coalesced render of a
//!   downloaded URL, or the original passed through as a stream; what it answers is a
//!   [`reply::Reply`].
//! - [`store`]: the store mode — the original's version, variant lookup, revalidation,
//!   coalesced render, or the original streamed.
//! - the steps both share: [`reuse`] (negative cache, variant lookup, coalescing — every
//!   decision about repeated work), [`render`] (prepare, admit, render on the pool),
//!   [`sniff`] (the type from the first bytes), [`names`] (download names), [`video`] (a
//!   video's index and the samples of one frame, read by range); [`flight`] is the
//!   coalescing mechanism.

pub mod flight;
pub mod names;
pub mod remote;
pub mod render;
pub mod reply;
pub mod reuse;
pub mod sniff;
pub mod store;
pub mod video;

pub use remote::{Passthrough, Payload, Pipeline, RelayControls, Reply};
pub use reuse::{CacheStatus, Reuse};
