//! What every request handler shares: the pipelines, the pool, the fallback image, the
//! counters and the few settings the handlers read. Built by `app` (the wiring), read by the
//! handlers. Plain data; uses the types of the parts it holds.
//!
//! Input: the parts `app` built; output: [`AppState`].

use std::sync::Arc;

use axum::http::HeaderName;
use bytes::Bytes;

use crate::metrics::Metrics;
use crate::pipeline::store::StorePipeline;
use crate::pipeline::Pipeline;
use crate::relay::ClientAddress;
use crate::request::resize::Rules;
use crate::response::store::SuccessCaching;
use crate::response::ErrorCaching;
use crate::workers::Workers;

/// What every request handler shares, behind one shared pointer: axum clones the state for
/// every request, so that is one reference-count increment instead of one per field.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The contents of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    pub pipeline: Pipeline,
    /// The image pool, for `/readyz`.
    pub workers: Workers,
    /// The `fallback` placeholder, drawn once at start-up.
    pub fallback_png: Bytes,
    /// The store mode, when a store is configured.
    pub store: Option<Arc<StoreMode>>,
    /// The counters behind `/metrics`.
    pub metrics: Metrics,
    /// The header that says `HIT`, `MISS` or `COALESCED`; `None`: not sent.
    pub cache_header: Option<HeaderName>,
    /// `remote.signing_keys`: when any, remote URLs must be signed.
    pub remote_keys: Vec<Vec<u8>>,
    /// Where a client's address is read from (`remote.client_address`).
    pub client_address: ClientAddress,
}

/// Everything the store mode needs besides the shared pool.
#[derive(Debug)]
pub struct StoreMode {
    pub pipeline: StorePipeline,
    pub rules: Rules,
    pub success: SuccessCaching,
    pub errors: ErrorCaching,
}
