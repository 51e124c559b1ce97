//! The variant cache: rendered outputs kept between requests, so a CDN miss does not always
//! cost a download and a decode. A passive store — input a [`VariantKey`] and a [`Variant`],
//! output the variant while it is fresh; it decides nothing about coalescing or about which
//! failures to remember (that is `pipeline::reuse`). Uses `config`, `error`, `metrics` and
//! the object-store openers of `source::store`. Tiers, fastest first (see `docs/caching.md`):
//!
//! - an in-memory tier bounded in bytes (least recently used out first);
//! - a persistent tier over the same object store library as the store mode: a local
//!   directory bounded in bytes (least recently used out first; survives restarts) or an
//!   S3 bucket/prefix shared by every replica (expiry by a lifecycle rule).
//!
//! Entries ([`entry`]) older than `max_age` are misses. A cache that fails (disk full, bucket
//! unreachable or hung) is a miss, never an error for the client and never a cost to the
//! answer: lookups have their own short budget (`cache.lookup_timeout`), writes happen
//! after the answer from a bounded queue ([`writes`]), and circuit breakers stop asking a
//! failing tier for a while ([`persistent`]).
//!
//! Keys ([`key`]) are SHA-256 digests of what determines the output: the remote mode's URL
//! and transform; the store mode's key, **source version**, canonical transform and output
//! bucket — so a changed original is a new key and its old variants are never served.
//! Failures are kept apart, in the [`NegativeCache`].

mod entry;
mod key;
mod negative;
mod persistent;
mod writes;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use media::Format;
use moka::notification::RemovalCause;

use self::persistent::{local_index, Persistent};
use self::writes::WriteQueue;
use crate::config::{CacheKind, CacheSettings};
use crate::metrics::Metrics;
use crate::source::store::{open_local, open_s3, with_prefix, S3Location};

pub use self::key::VariantKey;
pub use self::negative::NegativeCache;

/// One rendered output and what its response needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub bytes: Bytes,
    pub format: Format,
    /// Store mode: the strong ETag (quoted).
    pub etag: Option<String>,
    /// Store mode: the original's modification time (whole seconds).
    pub last_modified: Option<SystemTime>,
    /// The output was chosen by `Accept`.
    pub vary_accept: bool,
    /// Why the output is not the format asked for (`X-Image-Fallback`).
    pub fallback: Option<String>,
    /// Remote mode: the download name before the extension rule.
    pub name: Option<String>,
    /// When it was rendered (whole seconds).
    pub created: SystemTime,
}

/// An encoder's output as the bytes a variant keeps: a copy of exactly its length, made on
/// the calling (async) thread. Encoders grow their buffers ahead, and the render threads'
/// allocator arenas are where the large decode buffers come and go: kept there, small
/// long-lived entries pin pages between freed buffers and the memory is never returned.
/// Measured on the full corpus sweep with a 16 MiB memory tier: 76 MB of anonymous RSS
/// afterwards when the encoder's buffer was kept (shrunk in place), 26 MB with this copy.
pub fn exact(bytes: Vec<u8>) -> Bytes {
    Bytes::copy_from_slice(&bytes)
}

/// The variant cache's tiers. Cheap to clone.
#[derive(Clone)]
pub struct VariantCache {
    memory: Option<moka::sync::Cache<String, Arc<Variant>>>,
    persistent: Option<Persistent>,
    /// Writes after the answer (`cache.write_behind`); `None`: written before it.
    writes: Option<WriteQueue>,
    max_age: Duration,
}

impl std::fmt::Debug for VariantCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VariantCache")
            .field("memory", &self.memory.is_some())
            .field("persistent", &self.persistent.is_some())
            .field("write_behind", &self.writes.is_some())
            .finish_non_exhaustive()
    }
}

/// Per-entry overhead counted against the memory bound besides its bytes.
const ENTRY_OVERHEAD: usize = 256;

impl VariantCache {
    /// Opens the tiers the settings describe. A local directory's existing entries are
    /// indexed in the background (oldest first), so they count against the bound.
    pub fn new(settings: &CacheSettings, metrics: Metrics) -> Result<VariantCache, String> {
        let memory = (settings.memory > 0).then(|| {
            let evictions = metrics.cache_evictions.clone();
            moka::sync::Cache::builder()
                .max_capacity(settings.memory)
                .weigher(|_k: &String, v: &Arc<Variant>| {
                    u32::try_from(v.bytes.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .time_to_live(settings.max_age)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .eviction_listener(move |_k, _v, cause| {
                    if cause == RemovalCause::Size {
                        evictions.inc();
                    }
                })
                .build()
        });
        let persistent = match settings.kind {
            CacheKind::None => None,
            CacheKind::Local => {
                let store = open_local(&settings.root, "cache.root")?;
                let store = with_prefix(store, &settings.prefix, "cache.prefix")?;
                let root = std::fs::canonicalize(&settings.root)
                    .map_err(|e| format!("cache.root {}: {e}", settings.root.display()))?
                    .join(settings.prefix.trim_matches('/'));
                let index = local_index(settings.max_size, root, metrics.clone());
                let p = Persistent::new(store, Some(index), settings, metrics.clone());
                p.scan_in_background();
                Some(p)
            }
            CacheKind::S3 => {
                let store = open_s3(&S3Location {
                    bucket: &settings.bucket,
                    endpoint: &settings.endpoint,
                    region: &settings.region,
                    allow_http: settings.allow_http,
                    timeout: settings.timeout,
                })?;
                let store = with_prefix(store, &settings.prefix, "cache.prefix")?;
                Some(Persistent::new(store, None, settings, metrics.clone()))
            }
        };
        let writes = match &persistent {
            Some(p) if settings.write_behind => {
                WriteQueue::start(p.clone(), settings.write_queue, metrics)
            }
            _ => None,
        };
        Ok(VariantCache {
            memory,
            persistent,
            writes,
            max_age: settings.max_age,
        })
    }

    /// The entry under `key`, if a tier has a fresh one. Failures are misses.
    pub async fn get(&self, key: &VariantKey) -> Option<Arc<Variant>> {
        if let Some(v) = self.memory.as_ref().and_then(|m| m.get(key.as_str())) {
            return Some(v);
        }
        let p = self.persistent.as_ref()?;
        let variant = Arc::new(p.read(key, |v| !self.expired(v)).await?);
        if let Some(m) = &self.memory {
            m.insert(key.as_str().to_owned(), variant.clone());
        }
        Some(variant)
    }

    /// Keeps `variant` under `key` in every tier: the memory tier now, the persistent one
    /// from the background queue (or now, without `cache.write_behind`). A failed write is
    /// counted and forgotten.
    pub async fn put(&self, key: &VariantKey, variant: &Arc<Variant>) {
        if let Some(m) = &self.memory {
            m.insert(key.as_str().to_owned(), variant.clone());
        }
        match (&self.writes, &self.persistent) {
            (Some(queue), _) => queue.push(key, variant),
            (None, Some(p)) => p.write(key, variant).await,
            (None, None) => {}
        }
    }

    fn expired(&self, v: &Variant) -> bool {
        SystemTime::now()
            .duration_since(v.created)
            .is_ok_and(|age| age > self.max_age)
    }
}
