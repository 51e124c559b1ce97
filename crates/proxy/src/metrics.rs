//! The service's counters, in the Prometheus / OpenMetrics text format at `GET /metrics`.
//! Cheap to clone: one shared pointer to all the counters.
//!
//! Input: events counted by the rooms; output: the text exposition. Uses nothing of ours.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Why a sandboxed worker failed a job: past the deadline (killed), aborted (an allocation
/// over its memory limit, a stack overflow, a C library's `abort`), crashed (SIGSEGV,
/// SIGBUS, SIGILL, SIGFPE), a system call its filter forbids (SIGSYS), another signal, an
/// exit of its own, an answer that does not parse.
pub const WORKER_FAILURE_CAUSES: [&str; 7] = [
    "deadline",
    "abort",
    "crash",
    "forbidden_call",
    "killed",
    "exited",
    "protocol",
];

/// Label pairs. Values are always from small fixed sets (never a URL or a key).
pub type Labels = Vec<(&'static str, &'static str)>;

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every counter the service keeps, behind one shared pointer: the router state (and so
/// this) is cloned for every request, and one reference-count increment is much cheaper
/// than one per counter (measured: cloning and dropping the counters one by one was ~20% of
/// the CPU of answering `/`).
#[derive(Debug, Clone)]
pub struct Metrics(Arc<MetricSet>);

impl std::ops::Deref for Metrics {
    type Target = MetricSet;
    fn deref(&self) -> &MetricSet {
        &self.0
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics(Arc::new(MetricSet::new()))
    }
}

/// The counters themselves (see [`Metrics`]).
#[derive(Debug)]
pub struct MetricSet {
    /// Answers taken from the variant cache (memory, directory or bucket).
    pub cache_hits: Counter,
    /// Requests that found no cached variant and led its render.
    pub cache_misses: Counter,
    /// Requests that waited for an identical render already running and shared its result.
    pub coalesced: Counter,
    /// Entries dropped to keep a tier under its size bound.
    pub cache_evictions: Counter,
    /// Persistent entries found damaged (cut short, flipped bytes, unreadable): deleted, and
    /// the variant rendered again.
    pub cache_damaged: Counter,
    /// Entries written to the persistent tier.
    pub cache_writes: Counter,
    /// Entries not written because the background queue was full (`cache.write_queue`).
    pub cache_writes_dropped: Counter,
    /// Entries waiting in the background write queue, and their bytes.
    pub cache_writes_pending: Gauge,
    pub cache_write_queue_bytes: Gauge,
    /// Persistent-tier failures by `op` (read, write) and `kind` (timeout, error).
    pub cache_errors: Family<Labels, Counter>,
    /// Persistent-tier reads and writes not tried because their breaker was open, by `op`.
    pub cache_skipped: Family<Labels, Counter>,
    /// 1 while a dependency's circuit breaker is open, by `dependency` (cache_read,
    /// cache_write, store).
    pub breaker_open: Family<Labels, Gauge>,
    /// Requests answered from the negative cache (a recent 404/410 or undecodable input).
    pub negative_hits: Counter,
    /// Source downloads for transforms (origin or store GETs of a whole original).
    pub source_downloads: Counter,
    /// Renders that joined a download of their source already running.
    pub source_shared: Counter,
    /// Image jobs run by the media engine (decode, transform, encode).
    pub renders: Counter,
    /// Requests answered, by `mode` (remote, store, other), `kind` (the remote flag or
    /// `passthrough`; `resize` or `original`; `-`) and `status` class (2xx…5xx).
    pub requests: Family<Labels, Counter>,
    /// Time from the request to the last body byte, by `mode`.
    pub request_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Time spent in one stage of image work, by `stage`: `queue` (waiting for memory and a
    /// worker), `fetch` (a whole source downloaded for a transform), `render` (the whole job
    /// on a worker), and within it `decode`, `transform`, `encode`.
    pub stage_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Response body bytes sent.
    pub bytes_sent: Counter,
    /// Body bytes received from origins and the store.
    pub bytes_received: Counter,
    /// Requests being answered now.
    pub in_flight: Gauge,
    /// Failed origin fetches by `class` (dns, connect, timeout, status, too_large,
    /// blocked, redirect, body, invalid).
    pub origin_errors: Family<Labels, Counter>,
    /// Sandboxed worker processes that failed a job, by `cause` (deadline, abort, crash,
    /// forbidden_call, killed, exited, protocol): each cost one answer and was replaced.
    pub worker_failures: Family<Labels, Counter>,
    /// Worker processes started (the pool's first ones and every replacement).
    pub worker_starts: Counter,
    /// 1 when the last worker started had its seccomp filter and no-new-privileges in
    /// force, 0 when the kernel refused them (see `/readyz`).
    pub worker_confined: Gauge,
    /// The image workers' memory budget and the part of it reserved now (set when scraped).
    pub memory_budget_bytes: Gauge,
    pub memory_reserved_bytes: Gauge,
    registry: Arc<Registry>,
}

impl MetricSet {
    fn new() -> MetricSet {
        let mut registry = Registry::with_prefix("media_proxy");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let r = &mut registry;
        MetricSet {
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
            cache_damaged: counter(
                r,
                "cache_damaged",
                "Variant cache entries found damaged, deleted and rendered again",
            ),
            cache_writes: counter(r, "cache_writes", "Variant cache entries written"),
            cache_writes_dropped: counter(
                r,
                "cache_writes_dropped",
                "Variant cache entries not written: the background queue was full",
            ),
            cache_writes_pending: Gauge::default(),
            cache_write_queue_bytes: Gauge::default(),
            cache_errors: Family::default(),
            cache_skipped: Family::default(),
            breaker_open: Family::default(),
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
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            stage_seconds: Family::new_with_constructor(latency_histogram),
            bytes_sent: counter(r, "sent_bytes", "Response body bytes sent"),
            bytes_received: counter(
                r,
                "received_bytes",
                "Body bytes received from origins and the store",
            ),
            in_flight: Gauge::default(),
            origin_errors: Family::default(),
            worker_failures: Family::default(),
            worker_starts: counter(r, "worker_starts", "Sandboxed worker processes started"),
            worker_confined: Gauge::default(),
            memory_budget_bytes: Gauge::default(),
            memory_reserved_bytes: Gauge::default(),
            registry: Arc::new(Registry::default()),
        }
        .registered(registry)
    }

    /// Registers the metrics that are not plain counters.
    fn registered(mut self, mut registry: Registry) -> MetricSet {
        registry.register(
            "requests",
            "Requests answered, by mode, kind and status class",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request to the last body byte, by mode",
            self.request_seconds.clone(),
        );
        registry.register(
            "stage_duration_seconds",
            "Time spent in one stage of image work (queue, fetch, render; decode, transform, encode)",
            self.stage_seconds.clone(),
        );
        registry.register(
            "in_flight_requests",
            "Requests being answered now",
            self.in_flight.clone(),
        );
        registry.register(
            "origin_errors",
            "Failed origin fetches, by class",
            self.origin_errors.clone(),
        );
        registry.register(
            "worker_failures",
            "Sandboxed workers that failed a job and were replaced, by cause",
            self.worker_failures.clone(),
        );
        registry.register(
            "worker_confined",
            "1 when workers run under their seccomp filter and no-new-privileges",
            self.worker_confined.clone(),
        );
        registry.register(
            "cache_writes_pending",
            "Variant cache entries waiting in the background write queue",
            self.cache_writes_pending.clone(),
        );
        registry.register(
            "cache_write_queue_bytes",
            "Bytes of the entries waiting in the background write queue",
            self.cache_write_queue_bytes.clone(),
        );
        registry.register(
            "cache_errors",
            "Variant cache (persistent tier) failures, by op and kind",
            self.cache_errors.clone(),
        );
        registry.register(
            "cache_skipped",
            "Variant cache reads and writes skipped while their breaker was open, by op",
            self.cache_skipped.clone(),
        );
        registry.register(
            "breaker_open",
            "1 while a dependency's circuit breaker is open, by dependency",
            self.breaker_open.clone(),
        );
        registry.register(
            "memory_budget_bytes",
            "Memory the image workers may reserve",
            self.memory_budget_bytes.clone(),
        );
        registry.register(
            "memory_reserved_bytes",
            "Memory reserved by image work now",
            self.memory_reserved_bytes.clone(),
        );
        self.registry = Arc::new(registry);
        // Series whose labels are a fixed set start at zero, so a dashboard or an alert on
        // their rate sees 0 rather than "no data" until the first failure.
        for op in ["read", "write"] {
            for kind in ["timeout", "error"] {
                let _ = self
                    .cache_errors
                    .get_or_create(&vec![("op", op), ("kind", kind)]);
            }
            let _ = self.cache_skipped.get_or_create(&vec![("op", op)]);
        }
        for cause in WORKER_FAILURE_CAUSES {
            let _ = self.worker_failures.get_or_create(&vec![("cause", cause)]);
        }
        self
    }

    /// One sandboxed worker failure (`cause`: one of [`WORKER_FAILURE_CAUSES`]).
    pub fn worker_failure(&self, cause: &'static str) {
        self.worker_failures
            .get_or_create(&vec![("cause", cause)])
            .inc();
    }

    /// The gauge of `dependency`'s circuit breaker.
    pub fn breaker_gauge(&self, dependency: &'static str) -> Gauge {
        self.breaker_open
            .get_or_create(&vec![("dependency", dependency)])
            .clone()
    }

    /// One persistent-tier failure: `op` read or write, `kind` timeout or error.
    pub fn cache_error(&self, op: &'static str, kind: &'static str) {
        self.cache_errors
            .get_or_create(&vec![("op", op), ("kind", kind)])
            .inc();
    }

    /// Time spent in one stage of image work.
    pub fn stage(&self, stage: &'static str, seconds: f64) {
        self.stage_seconds
            .get_or_create(&vec![("stage", stage)])
            .observe(seconds);
    }

    /// One answered request: its mode, status, duration and body bytes.
    pub fn request_done(
        &self,
        mode: &'static str,
        kind: &'static str,
        status: u16,
        seconds: f64,
        bytes: u64,
    ) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&vec![("mode", mode), ("kind", kind), ("status", class)])
            .inc();
        self.request_seconds
            .get_or_create(&vec![("mode", mode)])
            .observe(seconds);
        self.bytes_sent.inc_by(bytes);
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
