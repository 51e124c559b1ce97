//! The service's counters, in the Prometheus / OpenMetrics text format at `GET /metrics`.
//! Cheap to clone: every counter is shared.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Every counter the service keeps.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Answers taken from the variant cache (memory, directory or bucket).
    pub cache_hits: Counter,
    /// Requests that found no cached variant and led its render.
    pub cache_misses: Counter,
    /// Requests that waited for an identical render already running and shared its result.
    pub coalesced: Counter,
    /// Entries dropped to keep a tier under its size bound.
    pub cache_evictions: Counter,
    /// Requests answered from the negative cache (a recent 404/410 or undecodable input).
    pub negative_hits: Counter,
    /// Source downloads for transforms (origin or store GETs of a whole original).
    pub source_downloads: Counter,
    /// Renders that joined a download of their source already running.
    pub source_shared: Counter,
    /// Image jobs run by the media engine (decode, transform, encode).
    pub renders: Counter,
    registry: Arc<Registry>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("media_proxy");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let r = &mut registry;
        Metrics {
            cache_hits: counter(r, "cache_hits", "Answers taken from the variant cache"),
            cache_misses: counter(r, "cache_misses", "Variant cache misses that led a render"),
            coalesced: counter(
                r,
                "coalesced",
                "Requests that shared an identical render already running",
            ),
            cache_evictions: counter(
                r,
                "cache_evictions",
                "Variant cache entries evicted by the size bound",
            ),
            negative_hits: counter(
                r,
                "negative_hits",
                "Requests answered from the negative cache",
            ),
            source_downloads: counter(
                r,
                "source_downloads",
                "Whole-source downloads for transforms",
            ),
            source_shared: counter(
                r,
                "source_shared",
                "Renders that shared a source download already running",
            ),
            renders: counter(r, "renders", "Image jobs run by the media engine"),
            registry: Arc::new(registry),
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
