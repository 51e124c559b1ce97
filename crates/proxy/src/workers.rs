//! The bounded pool for image work. CPU-heavy decoding and encoding never runs on the async
//! workers and never as one unbounded blocking task per request: at most `threads` jobs run
//! at once (on tokio's blocking threads), at most `queue` more wait, and the rest are turned
//! away at once with 503. A job keeps its slot until it finishes, even if its client left,
//! so the bound holds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::AppError;

/// Handle to the pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Workers {
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

/// Counts a waiting request; the count drops when the wait ends, however it ends (a client
/// that disconnects while queued drops its future, and with it this guard).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Workers {
    /// `threads == 0` means one per available core.
    pub fn new(threads: usize, queue: usize) -> Workers {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        Workers {
            slots: Arc::new(Semaphore::new(threads)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: queue,
        }
    }

    /// Runs `job` on a blocking thread once a slot is free.
    pub async fn run<T, F>(&self, job: F) -> Result<T, AppError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(AppError::Overloaded);
                }
                let _waiting = Waiting(self.waiting.clone());
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| AppError::Internal("worker pool closed".into()))?
            }
        };
        tokio::task::spawn_blocking(move || {
            let _slot = permit;
            job()
        })
        .await
        .map_err(|e| AppError::Internal(format!("image worker failed: {e}")))
    }
}
