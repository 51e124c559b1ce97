//! The variant cache: rendered outputs kept between requests, so a CDN miss does not always
//! cost a download and a decode. Layers, fastest first (see `docs/caching.md`):
//!
//! - an in-memory tier bounded in bytes (least recently used out first);
//! - a persistent tier over the same object store library as the store mode: a local
//!   directory bounded in bytes (least recently used out first; survives restarts) or an
//!   S3 bucket/prefix shared by every replica (expiry by a lifecycle rule).
//!
//! An entry is one object: a small header (content type, validators, created-at, download
//! name) and the encoded bytes, so one GET answers a hit from any store. Entries older than
//! `max_age` are misses. A cache that fails (disk full, bucket unreachable) is a miss, never
//! an error for the client: the cache only ever saves work.
//!
//! Keys are SHA-256 digests of what determines the output: the remote mode's URL and
//! transform; the store mode's key, **source version**, canonical transform and output
//! bucket — so a changed original is a new key and its old variants are never served.
//!
//! Also here: [`flight`] (request coalescing) and [`NegativeCache`].

pub mod flight;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use media::Format;
use moka::notification::RemovalCause;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use self::flight::{Flights, Role};
use crate::config::{CacheKind, CacheSettings};
use crate::error::{AppError, Lasting};
use crate::metrics::Metrics;
use crate::source::store::{open_local, open_s3, with_prefix, S3Location};

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

/// A cache key: the hex SHA-256 of the parts that determine an output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VariantKey(String);

impl VariantKey {
    pub fn of(parts: &[&str]) -> VariantKey {
        let mut h = Sha256::new();
        // The entry layout and the program's version: a release may render differently (as
        // the store mode's ETags say), so it starts a key space of its own; during a rolling
        // upgrade, old and new replicas sharing a bucket do not overwrite each other.
        h.update(b"v1");
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        for part in parts {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        VariantKey(hex::encode(h.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the entry lives in a directory or bucket: 256 subdirectories by the first byte.
    fn path(&self) -> Path {
        let (dir, _) = self.0.split_at(2.min(self.0.len()));
        Path::from_iter([dir, self.0.as_str()])
    }
}

/// How a request was answered, for the `X-Cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// From the variant cache (or the negative cache).
    Hit,
    /// Rendered for this request.
    Miss,
    /// Rendered once for this request and others that asked at the same time.
    Coalesced,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Coalesced => "COALESCED",
        }
    }
}

/// The variant cache's tiers. Cheap to clone.
#[derive(Clone)]
pub struct VariantCache {
    memory: Option<moka::sync::Cache<String, Arc<Variant>>>,
    persistent: Option<Persistent>,
    max_age: Duration,
    timeout: Duration,
    metrics: Metrics,
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
            metrics,
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
                    tracing::warn!(key = key.as_str(), "unreadable variant cache entry");
                }
                p.remove(&path, key).await;
                return None;
            }
        };
        if let Some(index) = &p.index {
            // Counts as a use (and indexes an entry the start-up scan has not reached yet).
            if index.get(key.as_str()).is_none() {
                index.insert(key.as_str().to_owned(), entry_weight(&variant));
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
                    index.insert(key.as_str().to_owned(), entry_weight(variant));
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

    /// Counters, for the pipelines.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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

fn entry_weight(v: &Variant) -> u32 {
    u32::try_from(v.bytes.len() + HEADER_ALLOWANCE).unwrap_or(u32::MAX)
}

/// About what an entry's header adds to its bytes on disk.
const HEADER_ALLOWANCE: usize = 200;

/// An entry's header, stored as JSON in front of the bytes.
#[derive(Debug, Serialize, Deserialize)]
struct EntryHeader {
    content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<u64>,
    #[serde(default)]
    vary_accept: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fallback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Unix seconds.
    created: u64,
}

/// The entry layout: this magic, the header's length (u32, little-endian), the header
/// (JSON), the bytes.
const MAGIC: &[u8; 4] = b"MPV1";

/// The formats the engine writes: what a cached entry can be.
const OUTPUTS: [Format; 5] = [
    Format::Webp,
    Format::Avif,
    Format::Jpeg,
    Format::Png,
    Format::Gif,
];

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn from_unix(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn encode_entry(v: &Variant) -> (Bytes, Attributes) {
    let header = EntryHeader {
        content_type: v.format.mime().to_owned(),
        etag: v.etag.clone(),
        last_modified: v.last_modified.map(unix),
        vary_accept: v.vary_accept,
        fallback: v.fallback.clone(),
        name: v.name.clone(),
        created: unix(v.created),
    };
    // Serialising plain strings and numbers cannot fail.
    let json = serde_json::to_vec(&header).unwrap_or_default();
    let mut blob = Vec::with_capacity(8 + json.len() + v.bytes.len());
    blob.extend_from_slice(MAGIC);
    blob.extend_from_slice(&u32::try_from(json.len()).unwrap_or(0).to_le_bytes());
    blob.extend_from_slice(&json);
    blob.extend_from_slice(&v.bytes);
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::ContentType,
        "application/vnd.media-proxy.variant".into(),
    );
    attributes.insert(
        Attribute::Metadata("variant-content-type".into()),
        header.content_type.into(),
    );
    attributes.insert(
        Attribute::Metadata("created-at".into()),
        header.created.to_string().into(),
    );
    if let Some(etag) = header.etag {
        attributes.insert(Attribute::Metadata("variant-etag".into()), etag.into());
    }
    (Bytes::from(blob), attributes)
}

fn decode_entry(blob: Bytes) -> Option<Variant> {
    let rest = blob.strip_prefix(MAGIC)?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    let json = rest.get(..len)?;
    let header: EntryHeader = serde_json::from_slice(json).ok()?;
    let format = OUTPUTS
        .into_iter()
        .find(|f| f.mime() == header.content_type)?;
    let start = MAGIC.len() + 4 + len;
    Some(Variant {
        bytes: blob.slice(start..),
        format,
        etag: header.etag,
        last_modified: header.last_modified.map(from_unix),
        vary_accept: header.vary_accept,
        fallback: header.fallback,
        name: header.name,
        created: from_unix(header.created),
    })
}

/// Everything the pipelines use to avoid repeated work. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Caches {
    pub variants: VariantCache,
    pub negative: NegativeCache,
    /// Renders in progress, by variant key.
    pub renders: Flights<Arc<Variant>>,
    pub metrics: Metrics,
}

/// A freshly rendered variant and the key to keep it under (the store mode's key names the
/// version actually read, which may be newer than the one the request looked up).
#[derive(Debug)]
pub struct Fresh {
    pub key: VariantKey,
    pub variant: Variant,
}

impl Caches {
    pub fn new(settings: &CacheSettings, metrics: Metrics) -> Result<Caches, String> {
        Ok(Caches {
            variants: VariantCache::new(settings, metrics.clone())?,
            negative: NegativeCache::new(settings.negative_ttl),
            renders: Flights::default(),
            metrics,
        })
    }

    /// A recent lasting failure remembered under one of `names` (a source, a variant key).
    pub fn remembered(&self, names: &[&str]) -> Option<AppError> {
        let error = names.iter().find_map(|name| self.negative.get(name))?;
        self.metrics.negative_hits.inc();
        Some(AppError::Shared(error))
    }

    /// The variant `key` of `source`: a recent lasting failure of the source, else the
    /// cache, else [`Caches::render_once`].
    pub async fn variant<F, Fut>(
        &self,
        source: &str,
        key: &VariantKey,
        render: F,
    ) -> (CacheStatus, Result<Arc<Variant>, AppError>)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fresh, AppError>> + Send + 'static,
    {
        if let Some(error) = self.remembered(&[source, key.as_str()]) {
            return (CacheStatus::Hit, Err(error));
        }
        if let Some(v) = self.cached(key).await {
            return (CacheStatus::Hit, Ok(v));
        }
        self.render_once(source, key, render).await
    }

    /// A whole source, downloaded by `fetch` once for every render that asks for `key`
    /// meanwhile (`downloads`: the mode's own table): counted, timed (the `fetch` stage)
    /// and shared.
    pub async fn download_once<V, F, Fut>(
        &self,
        downloads: &Flights<V>,
        key: &str,
        fetch: F,
    ) -> Result<V, AppError>
    where
        V: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, AppError>> + Send + 'static,
    {
        let (role, outcome) = downloads
            .run(key, || {
                let metrics = self.metrics.clone();
                metrics.source_downloads.inc();
                let work = fetch();
                async move {
                    let started = std::time::Instant::now();
                    let fetched = work.await.map_err(Arc::new)?;
                    metrics.stage("fetch", started.elapsed().as_secs_f64());
                    Ok(fetched)
                }
            })
            .await;
        if role == Role::Follower {
            self.metrics.source_shared.inc();
        }
        outcome.map_err(AppError::Shared)
    }

    /// The cached variant `key`, if any tier has it.
    pub async fn cached(&self, key: &VariantKey) -> Option<Arc<Variant>> {
        let v = self.variants.get(key).await?;
        self.metrics.cache_hits.inc();
        Some(v)
    }

    /// `render()`, run once for every request asking for `key` meanwhile; its output is
    /// kept in the cache, its lasting failure in the negative cache (under `source`).
    pub async fn render_once<F, Fut>(
        &self,
        source: &str,
        key: &VariantKey,
        render: F,
    ) -> (CacheStatus, Result<Arc<Variant>, AppError>)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fresh, AppError>> + Send + 'static,
    {
        let (role, outcome) = self
            .renders
            .run(key.as_str(), || {
                let caches = self.clone();
                let (source, lookup) = (source.to_owned(), key.clone());
                let work = render();
                async move {
                    match work.await {
                        Ok(Fresh { key, variant }) => {
                            let variant = Arc::new(variant);
                            caches.variants.put(&key, &variant).await;
                            Ok(variant)
                        }
                        Err(e) => {
                            let e = Arc::new(e);
                            caches.negative.remember(&source, &lookup, &e);
                            Err(e)
                        }
                    }
                }
            })
            .await;
        let status = match role {
            Role::Leader => {
                self.metrics.cache_misses.inc();
                CacheStatus::Miss
            }
            Role::Follower => {
                self.metrics.coalesced.inc();
                CacheStatus::Coalesced
            }
        };
        (status, outcome.map_err(AppError::Shared))
    }
}

/// Recent failures that will not change soon: an origin's 404/410 or a missing store key
/// (by source), bytes that do not decode (by variant). Kept `ttl` in memory, so a burst of
/// requests for a broken avatar costs one origin request. Cheap to clone.
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

    /// Remembers `error` when it is lasting (see [`AppError::lasting`]): under `source` when
    /// it concerns the whole source, under the variant `key` when it concerns this input
    /// and transform.
    pub fn remember(&self, source: &str, key: &VariantKey, error: &Arc<AppError>) {
        let Some(entries) = &self.entries else { return };
        match error.lasting() {
            Some(Lasting::Source) => entries.insert(source.to_owned(), error.clone()),
            Some(Lasting::Input) => entries.insert(key.as_str().to_owned(), error.clone()),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Variant {
        Variant {
            bytes: Bytes::from_static(b"RIFF....WEBPVP8 "),
            format: Format::Webp,
            etag: Some("\"abc\"".into()),
            last_modified: Some(from_unix(1_700_000_000)),
            vary_accept: true,
            fallback: Some("avif over 2 pixels; image/webp instead".into()),
            name: Some("cat".into()),
            created: from_unix(1_800_000_000),
        }
    }

    #[test]
    fn entries_round_trip_and_damaged_ones_are_refused() {
        let v = sample();
        let (blob, _) = encode_entry(&v);
        assert_eq!(decode_entry(blob.clone()), Some(v));
        for cut in [0, 3, 7, 20, 9 + 10] {
            assert_eq!(decode_entry(blob.slice(..cut)), None, "cut at {cut}");
        }
        let mut other = blob.to_vec();
        other[0] = b'X';
        assert_eq!(decode_entry(Bytes::from(other)), None);
    }

    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(VariantKey::of(&["ab", "c"]), VariantKey::of(&["a", "bc"]));
        assert_eq!(VariantKey::of(&["a"]), VariantKey::of(&["a"]));
        let k = VariantKey::of(&["a"]);
        assert_eq!(k.as_str().len(), 64);
        assert_eq!(
            k.path().as_ref(),
            format!("{}/{}", &k.as_str()[..2], k.as_str())
        );
    }
}
