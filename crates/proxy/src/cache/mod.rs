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
//! unreachable) is a miss, never an error for the client: the cache only ever saves work.
//!
//! Keys ([`key`]) are SHA-256 digests of what determines the output: the remote mode's URL
//! and transform; the store mode's key, **source version**, canonical transform and output
//! bucket — so a changed original is a new key and its old variants are never served.
//! Failures are kept apart, in the [`NegativeCache`].

mod entry;
mod key;
mod negative;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use media::Format;
use moka::notification::RemovalCause;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutOptions, PutPayload};

use self::entry::{decode_entry, encode_entry};
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
    max_age: Duration,
    timeout: Duration,
    /// Counts entries found damaged (`cache_damaged`).
    damaged: prometheus_client::metrics::counter::Counter,
}

#[derive(Clone)]
struct Persistent {
    store: Arc<dyn ObjectStore>,
    /// A local directory's entries and sizes, for its byte bound (S3 has none: a
    /// lifecycle rule expires entries there).
    index: Option<moka::sync::Cache<String, u32>>,
}

impl std::fmt::Debug for VariantCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VariantCache")
            .field("memory", &self.memory.is_some())
            .field("persistent", &self.persistent.is_some())
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
                let p = Persistent {
                    store,
                    index: Some(index),
                };
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
                Some(Persistent {
                    store: with_prefix(store, &settings.prefix, "cache.prefix")?,
                    index: None,
                })
            }
        };
        Ok(VariantCache {
            memory,
            persistent,
            max_age: settings.max_age,
            timeout: settings.timeout,
            damaged: metrics.cache_damaged.clone(),
        })
    }

    /// The entry under `key`, if a tier has a fresh one. Failures are misses.
    pub async fn get(&self, key: &VariantKey) -> Option<Arc<Variant>> {
        if let Some(v) = self.memory.as_ref().and_then(|m| m.get(key.as_str())) {
            return Some(v);
        }
        let p = self.persistent.as_ref()?;
        let path = key.path();
        let read = async {
            let got = p.store.get(&path).await?;
            got.bytes().await
        };
        let blob = match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(blob)) => blob,
            Ok(Err(object_store::Error::NotFound { .. })) => return None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "variant cache read failed");
                return None;
            }
            Err(_) => {
                tracing::warn!("variant cache read timed out");
                return None;
            }
        };
        let variant = match decode_entry(blob) {
            Some(v) if !self.expired(&v) => Arc::new(v),
            stale_or_bad => {
                if stale_or_bad.is_none() {
                    // Cut short, flipped bytes or not ours: never served, rendered again.
                    tracing::warn!(key = key.as_str(), "damaged variant cache entry removed");
                    self.damaged.inc();
                }
                p.remove(&path, key).await;
                return None;
            }
        };
        if let Some(index) = &p.index {
            // Counts as a use (and indexes an entry the start-up scan has not reached yet).
            if index.get(key.as_str()).is_none() {
                index.insert(key.as_str().to_owned(), entry::weight(&variant));
            }
        }
        if let Some(m) = &self.memory {
            m.insert(key.as_str().to_owned(), variant.clone());
        }
        Some(variant)
    }

    /// Keeps `variant` under `key` in every tier. A failed write is logged and forgotten.
    pub async fn put(&self, key: &VariantKey, variant: &Arc<Variant>) {
        if let Some(m) = &self.memory {
            m.insert(key.as_str().to_owned(), variant.clone());
        }
        let Some(p) = &self.persistent else { return };
        let (blob, attributes) = encode_entry(variant);
        let mut opts = PutOptions::default();
        if p.index.is_none() {
            // S3: the facts as object metadata too, for operators browsing the bucket.
            opts.attributes = attributes;
        }
        let path = key.path();
        let write = p.store.put_opts(&path, PutPayload::from(blob), opts);
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(_)) => {
                if let Some(index) = &p.index {
                    index.insert(key.as_str().to_owned(), entry::weight(variant));
                    // Apply the bound now rather than at moka's next housekeeping.
                    index.run_pending_tasks();
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "variant cache write failed"),
            Err(_) => tracing::warn!("variant cache write timed out"),
        }
    }

    fn expired(&self, v: &Variant) -> bool {
        SystemTime::now()
            .duration_since(v.created)
            .is_ok_and(|age| age > self.max_age)
    }
}

impl Persistent {
    async fn remove(&self, path: &Path, key: &VariantKey) {
        if let Some(index) = &self.index {
            index.invalidate(key.as_str());
        }
        let _ = self.store.delete(path).await;
    }

    /// Indexes a local directory's entries, oldest first, so the bound and the eviction
    /// order survive a restart. Runs once, in the background, at start-up.
    fn scan_in_background(&self) {
        let (Some(index), Ok(runtime)) =
            (self.index.clone(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let store = self.store.clone();
        runtime.spawn(async move {
            use futures_util::TryStreamExt;
            let listed: Result<Vec<_>, _> = store.list(None).try_collect().await;
            let mut entries = match listed {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the variant cache directory");
                    return;
                }
            };
            entries.sort_by_key(|m| m.last_modified);
            let count = entries.len();
            for meta in entries {
                let Some(name) = meta.location.filename() else {
                    continue;
                };
                if name.len() == 64 && index.get(name).is_none() {
                    index.insert(
                        name.to_owned(),
                        u32::try_from(meta.size).unwrap_or(u32::MAX),
                    );
                }
            }
            index.run_pending_tasks();
            tracing::info!(entries = count, "variant cache directory indexed");
        });
    }
}

/// The index of a local cache directory: weights are entry sizes in bytes; evicting an
/// entry deletes its file. The file is deleted right in moka's listener with `std::fs`
/// (the listener is synchronous; one unlink is cheap), not through object_store.
fn local_index(
    max_size: u64,
    root: std::path::PathBuf,
    metrics: Metrics,
) -> moka::sync::Cache<String, u32> {
    moka::sync::Cache::builder()
        .max_capacity(max_size)
        .weigher(|_k: &String, size: &u32| *size)
        .eviction_policy(moka::policy::EvictionPolicy::lru())
        .eviction_listener(move |key: Arc<String>, _size, cause| {
            if cause != RemovalCause::Size {
                return;
            }
            metrics.cache_evictions.inc();
            let dir = key.get(..2).unwrap_or_default();
            if let Err(e) = std::fs::remove_file(root.join(dir).join(key.as_str())) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(error = %e, "cannot delete an evicted cache entry");
                }
            }
        })
        .build()
}
