//! The negative cache: recent failures that will not change soon (an origin's 404/410, a
//! missing store key, bytes that do not decode), so a burst of requests for a broken avatar
//! costs one origin request. A passive store: input a name and an [`AppError`], output the
//! error while it is fresh. What to remember, and under which name, is the pipeline's
//! decision (`pipeline::reuse`). Uses `error`.

use std::sync::Arc;
use std::time::Duration;

use crate::error::AppError;

/// Recent failures, by name, kept `ttl` in memory (at most [`NEGATIVE_ENTRIES`]). Cheap to
/// clone.
#[derive(Clone)]
pub struct NegativeCache {
    entries: Option<moka::sync::Cache<String, Arc<AppError>>>,
}

impl std::fmt::Debug for NegativeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NegativeCache")
            .field("on", &self.entries.is_some())
            .finish()
    }
}

/// Sources remembered at most (each entry is a key and a small error).
const NEGATIVE_ENTRIES: u64 = 10_000;

impl NegativeCache {
    pub fn new(ttl: Duration) -> NegativeCache {
        NegativeCache {
            entries: (!ttl.is_zero()).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(NEGATIVE_ENTRIES)
                    .time_to_live(ttl)
                    .build()
            }),
        }
    }

    /// A remembered failure under `name` (a source, or a variant key).
    pub fn get(&self, name: &str) -> Option<Arc<AppError>> {
        self.entries.as_ref()?.get(name)
    }

    /// Keeps `error` under `name` for the time to live (nothing when the cache is off).
    /// Which failures are worth keeping, and under which name, the pipeline decides.
    pub fn put(&self, name: &str, error: Arc<AppError>) {
        if let Some(entries) = &self.entries {
            entries.insert(name.to_owned(), error);
        }
    }
}
