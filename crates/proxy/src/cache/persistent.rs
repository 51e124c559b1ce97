//! The persistent tier: entries in a local directory or an S3 bucket, read and written with
//! their own time budgets and behind two circuit breakers (reads and writes apart: a full disk
//! stops the writes, not the reads). Input: a [`VariantKey`] and a [`Variant`]; output: the
//! verified entry or nothing — every failure is a miss or a write given up, counted
//! (`cache_errors`, `cache_skipped`, `cache_damaged`) and never the client's problem. Uses
//! `breaker`, `metrics`, the entry format and the object-store openers.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutOptions, PutPayload};

use super::entry::{self, decode_entry, encode_entry};
use super::{Variant, VariantKey};
use crate::breaker::Breaker;
use crate::config::CacheSettings;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub(super) struct Persistent {
    store: Arc<dyn ObjectStore>,
    /// A local directory's entries and sizes, for its byte bound (S3 has none: a
    /// lifecycle rule expires entries there).
    index: Option<moka::sync::Cache<String, u32>>,
    reads: Breaker,
    writes: Breaker,
    lookup_timeout: Duration,
    write_timeout: Duration,
    metrics: Metrics,
}

impl Persistent {
    /// `index`: a local directory's (see [`local_index`]); `None` for a bucket.
    pub(super) fn new(
        store: Arc<dyn ObjectStore>,
        index: Option<moka::sync::Cache<String, u32>>,
        settings: &CacheSettings,
        metrics: Metrics,
    ) -> Persistent {
        let breaker = |name| {
            Breaker::new(
                name,
                settings.breaker_failures,
                settings.breaker_cooldown,
                metrics.breaker_gauge(name),
            )
        };
        Persistent {
            store,
            index,
            reads: breaker("cache_read"),
            writes: breaker("cache_write"),
            lookup_timeout: settings.lookup_timeout,
            write_timeout: settings.timeout,
            metrics,
        }
    }

    fn skipped(&self, op: &'static str) {
        self.metrics
            .cache_skipped
            .get_or_create(&vec![("op", op)])
            .inc();
    }

    /// The verified entry under `key`, within `cache.lookup_timeout`. A damaged entry is
    /// deleted and counted; an expired one deleted.
    pub(super) async fn read(
        &self,
        key: &VariantKey,
        fresh: impl Fn(&Variant) -> bool,
    ) -> Option<Variant> {
        if !self.reads.allow() {
            self.skipped("read");
            return None;
        }
        let path = key.path();
        let read = async {
            let got = self.store.get(&path).await?;
            got.bytes().await
        };
        let blob = match tokio::time::timeout(self.lookup_timeout, read).await {
            Ok(Ok(blob)) => blob,
            Ok(Err(object_store::Error::NotFound { .. })) => {
                self.reads.success();
                return None;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "variant cache read failed");
                self.metrics.cache_error("read", "error");
                self.reads.failure(&e);
                return None;
            }
            Err(_) => {
                self.metrics.cache_error("read", "timeout");
                self.reads.failure(&"no answer within cache.lookup_timeout");
                return None;
            }
        };
        self.reads.success();
        let variant = match decode_entry(blob) {
            Some(v) if fresh(&v) => v,
            stale_or_bad => {
                if stale_or_bad.is_none() {
                    // Cut short, flipped bytes or not ours: never served, rendered again.
                    tracing::warn!(key = key.as_str(), "damaged variant cache entry removed");
                    self.metrics.cache_damaged.inc();
                }
                self.remove(&path, key).await;
                return None;
            }
        };
        if let Some(index) = &self.index {
            // Counts as a use (and indexes an entry the start-up scan has not reached yet).
            if index.get(key.as_str()).is_none() {
                index.insert(key.as_str().to_owned(), entry::weight(&variant));
            }
        }
        Some(variant)
    }

    /// Writes `variant` under `key` within `cache.timeout`. A failure is counted and given
    /// to the write breaker; a full or read-only disk opens it at once.
    pub(super) async fn write(&self, key: &VariantKey, variant: &Variant) {
        if !self.writes.allow() {
            self.skipped("write");
            return;
        }
        let (blob, attributes) = encode_entry(variant);
        let mut opts = PutOptions::default();
        if self.index.is_none() {
            // S3: the facts as object metadata too, for operators browsing the bucket.
            opts.attributes = attributes;
        }
        let path = key.path();
        let write = self.store.put_opts(&path, PutPayload::from(blob), opts);
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(_)) => {
                self.writes.success();
                self.metrics.cache_writes.inc();
                if let Some(index) = &self.index {
                    index.insert(key.as_str().to_owned(), entry::weight(variant));
                    // Apply the bound now rather than at moka's next housekeeping.
                    index.run_pending_tasks();
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "variant cache write failed");
                self.metrics.cache_error("write", "error");
                if disk_trouble(&e) {
                    self.writes.trip(&e);
                } else {
                    self.writes.failure(&e);
                }
            }
            Err(_) => {
                self.metrics.cache_error("write", "timeout");
                self.writes.failure(&"no answer within cache.timeout");
            }
        }
    }

    /// Deletes an entry not to be served, within the lookup budget again (a hung bucket
    /// cannot hold the answer longer). Done before the render, so the render's new entry
    /// is never deleted by it.
    async fn remove(&self, path: &Path, key: &VariantKey) {
        if let Some(index) = &self.index {
            index.invalidate(key.as_str());
        }
        let _ = tokio::time::timeout(self.lookup_timeout, self.store.delete(path)).await;
    }

    /// Indexes a local directory's entries, oldest first, so the bound and the eviction
    /// order survive a restart. Runs once, in the background, at start-up.
    pub(super) fn scan_in_background(&self) {
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

/// A write failure that will not pass by itself: the disk is full, read-only or not ours
/// to write. Writes stop for a cooldown at once (one warning), answers go on.
fn disk_trouble(e: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.raw_os_error(),
                Some(libc::ENOSPC | libc::EROFS | libc::EDQUOT | libc::EACCES | libc::EPERM)
            ) {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// The index of a local cache directory: weights are entry sizes in bytes; evicting an
/// entry deletes its file. The file is deleted right in moka's listener with `std::fs`
/// (the listener is synchronous; one unlink is cheap), not through object_store.
pub(super) fn local_index(
    max_size: u64,
    root: std::path::PathBuf,
    metrics: Metrics,
) -> moka::sync::Cache<String, u32> {
    moka::sync::Cache::builder()
        .max_capacity(max_size)
        .weigher(|_k: &String, size: &u32| *size)
        .eviction_policy(moka::policy::EvictionPolicy::lru())
        .eviction_listener(move |key: Arc<String>, _size, cause| {
            if cause != moka::notification::RemovalCause::Size {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_or_read_only_disk_is_trouble_that_stays() {
        let io = |code| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from_raw_os_error(code)),
        };
        assert!(disk_trouble(&io(libc::ENOSPC)));
        assert!(disk_trouble(&io(libc::EROFS)));
        assert!(!disk_trouble(&io(libc::ECONNRESET)));
        let not_found = object_store::Error::NotFound {
            path: "x".into(),
            source: Box::new(std::io::Error::from(std::io::ErrorKind::NotFound)),
        };
        assert!(!disk_trouble(&not_found));
    }
}
