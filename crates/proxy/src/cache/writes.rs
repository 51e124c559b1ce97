//! The background write queue: entries are written to the persistent tier after the answer,
//! a few at a time, so a slow or hung cache never holds up a response. Bounded in bytes
//! (`cache.write_queue`): an entry that does not fit is dropped and counted
//! (`cache_writes_dropped`), never waited for. Input: a key and a variant; output: nothing
//! (the write's outcome is the persistent tier's to count). Uses `metrics` and
//! [`Persistent`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use super::persistent::Persistent;
use super::{Variant, VariantKey};
use crate::metrics::Metrics;

/// Writes running at once: enough to keep a healthy bucket busy, few enough that a hung one
/// holds little (each is bounded by `cache.timeout`, and the breaker stops them soon).
const WRITERS: usize = 4;

/// Bytes an entry is counted as in the queue besides its bytes (key, header, bookkeeping).
const QUEUED_OVERHEAD: u64 = 512;

struct Job {
    key: VariantKey,
    variant: Arc<Variant>,
    weight: u64,
}

/// The sending side; the writer task ends when every clone is dropped.
#[derive(Debug, Clone)]
pub(super) struct WriteQueue {
    jobs: mpsc::UnboundedSender<Job>,
    ledger: Ledger,
    limit: u64,
}

/// What the queue holds now, in bytes and in the gauges; shared with the writer task
/// (which must not hold a sender, or the queue would never close).
#[derive(Debug, Clone)]
struct Ledger {
    queued: Arc<AtomicU64>,
    metrics: Metrics,
}

impl Ledger {
    /// An entry of `weight` left the queue (written, failed or never sent).
    fn release(&self, weight: u64) {
        self.queued.fetch_sub(weight, Ordering::Relaxed);
        self.metrics.cache_writes_pending.dec();
        self.metrics
            .cache_write_queue_bytes
            .dec_by(i64::try_from(weight).unwrap_or(i64::MAX));
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("key", &self.key).finish()
    }
}

impl WriteQueue {
    /// Starts the writer task on the current runtime; `None` outside one (writes are then
    /// made in place).
    pub(super) fn start(persistent: Persistent, limit: u64, metrics: Metrics) -> Option<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (jobs, mut next) = mpsc::unbounded_channel::<Job>();
        let ledger = Ledger {
            queued: Arc::default(),
            metrics,
        };
        let queue = WriteQueue {
            jobs,
            ledger: ledger.clone(),
            limit,
        };
        runtime.spawn(async move {
            let writers = Arc::new(Semaphore::new(WRITERS));
            while let Some(job) = next.recv().await {
                let Ok(writer) = writers.clone().acquire_owned().await else {
                    break;
                };
                let (persistent, done) = (persistent.clone(), ledger.clone());
                tokio::spawn(async move {
                    persistent.write(&job.key, &job.variant).await;
                    done.release(job.weight);
                    drop(writer);
                });
            }
        });
        Some(queue)
    }

    /// Queues `variant` for writing under `key`, or drops it when the queue is full.
    pub(super) fn push(&self, key: &VariantKey, variant: &Arc<Variant>) {
        let weight = variant.bytes.len() as u64 + QUEUED_OVERHEAD;
        let (queued, metrics) = (&self.ledger.queued, &self.ledger.metrics);
        let before = queued.fetch_add(weight, Ordering::Relaxed);
        if before + weight > self.limit {
            queued.fetch_sub(weight, Ordering::Relaxed);
            metrics.cache_writes_dropped.inc();
            tracing::debug!(
                key = key.as_str(),
                "variant cache write dropped: the queue is full"
            );
            return;
        }
        // Counted before it is sent, so that an empty queue (pending 0) means every write
        // of an answered request has ended.
        metrics.cache_writes_pending.inc();
        metrics
            .cache_write_queue_bytes
            .inc_by(i64::try_from(weight).unwrap_or(i64::MAX));
        let job = Job {
            key: key.clone(),
            variant: variant.clone(),
            weight,
        };
        if self.jobs.send(job).is_err() {
            // The writer task is gone (the runtime is shutting down): nothing to write with.
            self.ledger.release(weight);
        }
    }
}
