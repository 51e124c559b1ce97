//! The steps that avoid repeated work, and every decision about them: a remembered failure
//! (the negative cache: what is worth remembering, under which name), the variant lookup,
//! one render per variant key for everyone who asks meanwhile (coalescing, [`flight`]), one
//! download per source for every render that wants it meanwhile. Input: names, keys and the
//! work to run; output: the variant or the error, and how it was served ([`CacheStatus`]).
//! Uses `cache` (a passive store), `config`, `error`, `metrics`.
//!
//! [`flight`]: super::flight

use std::future::Future;
use std::sync::Arc;

use super::flight::{Flights, Role};
use crate::cache::{NegativeCache, Variant, VariantCache, VariantKey};
use crate::config::CacheSettings;
use crate::error::{AppError, Lasting};
use crate::metrics::Metrics;

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

/// What the pipelines use to avoid repeated work. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reuse {
    variants: VariantCache,
    negative: NegativeCache,
    /// Renders in progress, by variant key.
    renders: Flights<Arc<Variant>>,
    metrics: Metrics,
}

/// A freshly rendered variant and the key to keep it under (the store mode's key names the
/// version actually read, which may be newer than the one the request looked up).
#[derive(Debug)]
pub struct Fresh {
    pub key: VariantKey,
    pub variant: Variant,
}

/// A lookup's answer: a cached variant or a remembered failure.
pub type Found = (CacheStatus, Result<Arc<Variant>, AppError>);

impl Reuse {
    pub fn new(settings: &CacheSettings, metrics: Metrics) -> Result<Reuse, String> {
        Ok(Reuse {
            variants: VariantCache::new(settings, metrics.clone())?,
            negative: NegativeCache::new(settings.negative_ttl),
            renders: Flights::default(),
            metrics,
        })
    }

    /// The counters, for the pipelines' steps.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A recent lasting failure remembered under one of `names` (a source, a variant key).
    pub fn remembered(&self, names: &[&str]) -> Option<AppError> {
        let error = names.iter().find_map(|name| self.negative.get(name))?;
        self.metrics.negative_hits.inc();
        Some(AppError::Shared(error))
    }

    /// The cached variant `key`, if any tier has it.
    pub async fn cached(&self, key: &VariantKey) -> Option<Arc<Variant>> {
        let v = self.variants.get(key).await?;
        self.metrics.cache_hits.inc();
        Some(v)
    }

    /// The variant lookup: a recent lasting failure of `source` or of `key`, else a cached
    /// variant; `None`: it has to be rendered.
    pub async fn lookup(&self, source: &str, key: &VariantKey) -> Option<Found> {
        if let Some(error) = self.remembered(&[source, key.as_str()]) {
            return Some((CacheStatus::Hit, Err(error)));
        }
        let v = self.cached(key).await?;
        Some((CacheStatus::Hit, Ok(v)))
    }

    /// Remembers `error` when it is lasting (see [`AppError::lasting`]): under `source` when
    /// it concerns the whole source, under the variant `key` when it concerns this input
    /// and transform; a passing failure (time-out, overload) is not remembered.
    pub fn remember(&self, source: &str, key: &VariantKey, error: &Arc<AppError>) {
        match error.lasting() {
            Some(Lasting::Source) => self.negative.put(source, error.clone()),
            Some(Lasting::Input) => self.negative.put(key.as_str(), error.clone()),
            None => {}
        }
    }

    /// `render()`, run once for every request asking for `key` meanwhile; its output is
    /// kept in the variant cache, its lasting failure remembered (under `source` or `key`).
    pub async fn render_once<F, Fut>(&self, source: &str, key: &VariantKey, render: F) -> Found
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fresh, AppError>> + Send + 'static,
    {
        let (role, outcome) = self
            .renders
            .run(key.as_str(), || {
                let reuse = self.clone();
                let (source, lookup) = (source.to_owned(), key.clone());
                let work = render();
                async move {
                    match work.await {
                        Ok(Fresh { key, variant }) => {
                            let variant = Arc::new(variant);
                            reuse.variants.put(&key, &variant).await;
                            Ok(variant)
                        }
                        Err(e) => {
                            let e = Arc::new(e);
                            reuse.remember(&source, &lookup, &e);
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
}
