//! Request coalescing ("singleflight"): identical work in progress runs once, and everyone
//! who asks for it meanwhile gets the same result, or the same error.
//!
//! The work is a future shared by its waiters (`futures::future::Shared`): any waiter polls
//! it forward, so the first requester leaving does not stop it for the others. The table
//! holds only a weak handle: when the last waiter leaves, the work is dropped, and with it
//! the render it was running (the worker pool cancels a job whose future is dropped), so a
//! burst of abandoned requests does not keep the CPU busy. Finished work removes itself
//! from the table; what it produced is in the variant cache by then.
//!
//! Input: a key and the work to start; output: the work's [`Outcome`] and this caller's
//! [`Role`]. Uses `error` only; which work is coalesced is decided in [`super::reuse`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::{BoxFuture, Shared, WeakShared};
use futures_util::FutureExt;

use crate::error::AppError;

/// A result every waiter gets a copy of: values are cheap clones, errors are shared.
pub type Outcome<V> = Result<V, Arc<AppError>>;

type Work<V> = Shared<BoxFuture<'static, Outcome<V>>>;

/// Who did the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This request started it.
    Leader,
    /// This request joined work already running.
    Follower,
}

/// The work in progress, by key. Cheap to clone.
pub struct Flights<V> {
    table: Arc<Mutex<HashMap<String, Entry<V>>>>,
    next_id: Arc<AtomicU64>,
}

struct Entry<V> {
    id: u64,
    work: WeakShared<BoxFuture<'static, Outcome<V>>>,
}

impl<V> Clone for Flights<V> {
    fn clone(&self) -> Self {
        Flights {
            table: self.table.clone(),
            next_id: self.next_id.clone(),
        }
    }
}

impl<V> std::fmt::Debug for Flights<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights").finish_non_exhaustive()
    }
}

impl<V> Default for Flights<V> {
    fn default() -> Self {
        Flights {
            table: Arc::new(Mutex::new(HashMap::new())),
            next_id: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Removes a flight's table entry when its work ends or is dropped — only its own entry:
/// a newer flight may hold the key by then.
struct Leave<V> {
    table: Arc<Mutex<HashMap<String, Entry<V>>>>,
    key: String,
    id: u64,
}

impl<V> Drop for Leave<V> {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if table.get(&self.key).is_some_and(|e| e.id == self.id) {
            table.remove(&self.key);
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Flights<V> {
    /// Runs `start()`'s future under `key`, or joins the one already running there.
    pub async fn run<F, Fut>(&self, key: &str, start: F) -> (Role, Outcome<V>)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome<V>> + Send + 'static,
    {
        let (role, work) = self.join_or_start(key, start);
        (role, work.await)
    }

    fn join_or_start<F, Fut>(&self, key: &str, start: F) -> (Role, Work<V>)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome<V>> + Send + 'static,
    {
        // std Mutex: held for a map lookup and insert, never across an await.
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(work) = table.get(key).and_then(|e| e.work.upgrade()) {
            return (Role::Follower, work);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let leave = Leave {
            table: self.table.clone(),
            key: key.to_owned(),
            id,
        };
        let future = start();
        let work: Work<V> = async move {
            let _leave = leave;
            future.await
        }
        .boxed()
        .shared();
        if let Some(weak) = work.downgrade() {
            table.insert(key.to_owned(), Entry { id, work: weak });
        }
        (Role::Leader, work)
    }

    /// Keys with work in progress (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run_and_its_error() {
        let flights = Flights::<u32>::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let call = |fail: bool| {
            let flights = flights.clone();
            let runs = runs.clone();
            async move {
                flights
                    .run("k", move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if fail {
                            Err(Arc::new(AppError::Overloaded))
                        } else {
                            Ok(7)
                        }
                    })
                    .await
            }
        };
        let results = futures_util::future::join_all((0..10).map(|_| call(true))).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one run for ten callers");
        let leaders = results.iter().filter(|(r, _)| *r == Role::Leader).count();
        assert_eq!(leaders, 1);
        assert!(results.iter().all(|(_, o)| matches!(
            o.as_ref().map_err(|e| e.as_ref()),
            Err(AppError::Overloaded)
        )));
        assert!(flights.is_empty(), "finished work leaves the table");
        // The error was not kept: the next call runs again.
        let (role, outcome) = call(false).await;
        assert_eq!((role, outcome.ok()), (Role::Leader, Some(7)));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_leader_leaving_does_not_stop_the_work_but_everyone_leaving_does() {
        let flights = Flights::<u32>::default();
        let finished = Arc::new(AtomicUsize::new(0));
        let work = |finished: Arc<AtomicUsize>| {
            move || async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok(1)
            }
        };
        let leader = {
            let (flights, f) = (flights.clone(), finished.clone());
            tokio::spawn(async move { flights.run("k", work(f)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let follower = {
            let (flights, f) = (flights.clone(), finished.clone());
            tokio::spawn(async move { flights.run("k", work(f)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        leader.abort();
        let (role, outcome) = follower.await.unwrap_or((Role::Leader, Ok(0)));
        assert_eq!((role, outcome.ok()), (Role::Follower, Some(1)));
        assert_eq!(finished.load(Ordering::SeqCst), 1);

        let alone = {
            let (flights, f) = (flights.clone(), finished.clone());
            tokio::spawn(async move { flights.run("k2", work(f)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        alone.abort();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "abandoned work was dropped"
        );
        assert!(flights.is_empty(), "and left the table");
    }
}
