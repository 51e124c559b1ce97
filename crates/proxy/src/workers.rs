//! Admission and the bounded pool for image work.
//!
//! CPU-heavy decoding and encoding never runs on the async workers and never as one
//! unbounded blocking task per request. A job is admitted when two things are free:
//!
//! - **memory**: its estimate (from the headers, [`media::prepare`]) is reserved from a
//!   global budget, so the sum of what running jobs may hold stays under it whatever their
//!   count: one 50 MP PNG can take the room of many thumbnails;
//! - **a CPU slot**: at most `threads` jobs run at once, on tokio's blocking threads.
//!
//! Up to `queue` requests wait (FIFO, for at most `queue_wait`); the rest are turned away at
//! once with 503 and `Retry-After`. A job whose estimate exceeds the whole budget could never
//! run and is refused with 422. Once running, a job has `deadline` to finish: it is then
//! told to stop (it checks between stages and frames) and the client gets 422 at once. A
//! client that disconnects cancels its job the same way. A job keeps its memory and its slot
//! until it actually ends, so the bounds hold even for abandoned work.
//!
//! Before any of that, an image request takes one of `threads + queue` places *before it
//! downloads its source* ([`Workers::enter`]): a download's bytes are held until the render
//! ends, so this bounds the memory of requests that are fetching or queued, not only of
//! those running. Without it, 128 clients asking for a 4 MB photo each held their 4 MB
//! while waiting (measured: 307 MB peak RSS).
//!
//! The bytes of those downloads are themselves counted against the memory budget as they
//! arrive ([`Reservation`]): 8 concurrent `emoji` requests for a 100 MB body took 881 MB
//! before; now a download that finds no room is refused (503), one larger than the whole
//! budget is a 413, and the render then reserves only what its estimate adds to the input.
//!
//! Passthrough, `/healthz` and `/readyz` never come here, so they are never queued behind
//! image work.
//!
//! Input: prepared renders and their price; output: the rendered bytes, or 503/504 as an
//! [`AppError`]. Uses `config`, `error`, `memory`, `metrics`, `source` (the `Room` trait).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use bytes::Bytes;

use crate::config::{Isolation, WorkerSettings};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::sandbox::{Sandbox, SandboxSettings};

/// Memory is reserved in units of 64 KiB (a semaphore counts permits in `u32` at a time).
const UNIT: u64 = 64 * 1024;

/// `bytes` in whole units, rounded up.
fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// Handle to the pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Workers {
    /// Image requests between their download and the end of their render.
    places: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    /// Jobs running now; the last one to end hands freed memory back.
    running: Arc<AtomicUsize>,
    memory: Arc<Semaphore>,
    budget_units: u32,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    queue_wait: Duration,
    deadline: Duration,
    /// Queue and render times go to `stage_duration_seconds`.
    metrics: Metrics,
    /// The worker processes renders run in (`workers.isolation = "process"`); `None`:
    /// on this process's blocking threads.
    sandbox: Option<Sandbox>,
}

/// A job's admission: its memory and its CPU slot, released on drop.
type Admitted = (
    tokio::sync::OwnedSemaphorePermit,
    tokio::sync::OwnedSemaphorePermit,
);

/// Renders whose estimate is at least this large hand their memory back when they end.
const RELEASE_AFTER: u64 = 16 << 20;

/// Hands freed memory back once no job has run for [`crate::memory::IDLE_BEFORE_RELEASE`].
/// Called by the job that left the pool idle (on a blocking thread, inside the runtime).
fn release_when_idle(running: Arc<AtomicUsize>) {
    static IDLE_EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let epoch = IDLE_EPOCH.fetch_add(1, Ordering::AcqRel) + 1;
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        crate::memory::release();
        return;
    };
    runtime.spawn(async move {
        tokio::time::sleep(crate::memory::IDLE_BEFORE_RELEASE).await;
        // Still idle, and no later idle moment has its own timer running.
        if running.load(Ordering::Acquire) == 0 && IDLE_EPOCH.load(Ordering::Acquire) == epoch {
            let _ = tokio::task::spawn_blocking(crate::memory::release).await;
        }
    });
}

/// Counts a waiting request; the count drops when the wait ends, however it ends (a client
/// that disconnects while queued drops its future, and with it this guard).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An image request's place (see [`Workers::enter`]); released on drop.
#[derive(Debug)]
pub struct Place(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

/// Cancels the job when the request future is dropped before the job has answered (the
/// client went away). Disarmed once the answer is in.
struct CancelOnDrop(Option<media::Stop>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            stop.cancel();
        }
    }
}

/// Memory of the budget held by a whole-body download, grown as its buffer grows
/// ([`crate::source::Room`]) and given back when the bytes are dropped with it.
#[derive(Debug)]
pub struct Reservation {
    memory: Arc<Semaphore>,
    budget_units: u32,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
    units: u32,
}

impl crate::source::Room for Reservation {
    fn make_room(&mut self, bytes: u64) -> Result<(), crate::source::NoRoom> {
        let want = units(bytes);
        if want <= self.units {
            return Ok(());
        }
        if want > self.budget_units {
            return Err(crate::source::NoRoom::OverBudget {
                budget: u64::from(self.budget_units) * UNIT,
            });
        }
        // Never waits: a download that cannot grow now is refused (503) rather than hold
        // what it has while waiting for others to finish, which could wait in a circle.
        let more = self
            .memory
            .clone()
            .try_acquire_many_owned(want - self.units)
            .map_err(|_| crate::source::NoRoom::Busy)?;
        match self.held.as_mut() {
            Some(held) => held.merge(more),
            None => self.held = Some(more),
        }
        self.units = want;
        Ok(())
    }

    fn shrink_to(&mut self, bytes: u64) {
        let keep = units(bytes);
        if keep >= self.units {
            return;
        }
        if let Some(held) = self.held.as_mut() {
            let surplus = (self.units - keep) as usize;
            // The split-off permits go back to the budget when dropped here.
            drop(held.split(surplus));
            self.units = keep;
        }
    }
}

impl Workers {
    pub fn new(settings: &WorkerSettings, metrics: Metrics) -> Workers {
        let threads = threads(settings);
        let budget = memory_budget(settings);
        let budget_units = u32::try_from((budget / UNIT).max(1)).unwrap_or(u32::MAX);
        let permits = usize::try_from(budget_units)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Workers {
            places: Arc::new(Semaphore::new(threads.saturating_add(settings.queue))),
            slots: Arc::new(Semaphore::new(threads)),
            running: Arc::new(AtomicUsize::new(0)),
            memory: Arc::new(Semaphore::new(permits)),
            budget_units,
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: settings.queue,
            queue_wait: settings.queue_wait,
            deadline: settings.deadline,
            sandbox: (settings.isolation == Isolation::Process).then(|| {
                Sandbox::new(
                    SandboxSettings {
                        program: worker_program(settings),
                        memory_share: worker_memory(settings),
                        keep: threads,
                        max_output: budget,
                    },
                    metrics.clone(),
                )
            }),
            metrics,
        }
    }

    /// The worker processes, when renders run in them.
    pub fn sandbox(&self) -> Option<&Sandbox> {
        self.sandbox.as_ref()
    }

    /// The memory budget in bytes.
    pub fn budget(&self) -> u64 {
        u64::from(self.budget_units) * UNIT
    }

    /// The memory budget and the part of it reserved by running and admitted jobs, bytes.
    pub fn memory(&self) -> (u64, u64) {
        let free = u64::try_from(self.memory.available_permits()).unwrap_or(u64::MAX);
        let budget = self.budget();
        (budget, budget.saturating_sub(free.saturating_mul(UNIT)))
    }

    /// Whether a new image request would be turned away now (for `/readyz`).
    pub fn saturated(&self) -> bool {
        self.places.available_permits() == 0
            || (self.waiting.load(Ordering::Acquire) >= self.max_waiting
                && (self.slots.available_permits() == 0 || self.memory.available_permits() == 0))
    }

    /// An empty reservation of the memory budget for a download to grow into.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            memory: self.memory.clone(),
            budget_units: self.budget_units,
            held: None,
            units: 0,
        }
    }

    /// A place for an image request, taken before its source is downloaded and held until
    /// its render ends; none free → 503 at once, before anything is fetched.
    pub fn enter(&self) -> Result<Place, AppError> {
        self.places
            .clone()
            .try_acquire_owned()
            .map(Place)
            .map_err(|_| AppError::Overloaded)
    }

    /// [`media::prepare`] for `input`. Sandboxed, it runs in a worker (`Job::Assess`: no
    /// header reader, C or not, runs in the server) admitted with [`assess_cost`], and the
    /// server keeps only what it found ([`media::Prepared::assessed`]; a worker a file took
    /// over may answer anything, but its render's worker is held to the estimate it gave).
    /// In-process, a raster's headers are read here (microseconds) and an SVG, whose parse
    /// is real work, on the pool. `held`: bytes of the input a reservation counts already.
    pub async fn prepare(
        &self,
        input: &bytes::Bytes,
        held: u64,
        format: media::Format,
        transform: media::Transform,
        limits: &media::Limits,
    ) -> Result<media::Prepared, AppError> {
        let cost = assess_cost(format, input.len() as u64, limits);
        if self.sandbox.is_some() {
            let job = media::job::Job::Assess {
                format,
                transform,
                limits: *limits,
            };
            return match self.run_done(cost, held, job, vec![input.clone()]).await? {
                media::job::Done::Assessed(found) => {
                    Ok(media::Prepared::assessed(format, transform, limits, found))
                }
                media::job::Done::Rendered(..) => Err(not_what_was_asked()),
            };
        }
        if format != media::Format::Svg {
            return Ok(media::prepare(input, format, transform, limits)?);
        }
        let (input, limits) = (input.clone(), *limits);
        self.run_holding(cost, held, move |_| {
            media::prepare(&input, format, transform, &limits)
        })
        .await
    }

    /// Renders `prepared` from `input` on the pool (see [`Workers::run`]); where the time
    /// went (decode, transform, encode) goes to the stage metrics. `held`: bytes of the
    /// estimate already reserved (the input, by its download's [`Reservation`]).
    pub async fn render(
        &self,
        prepared: media::Prepared,
        input: bytes::Bytes,
        held: u64,
    ) -> Result<media::Rendered, AppError> {
        // In-process, the prepared render is used as it is (no second header read).
        let (rendered, t) = match self.sandbox {
            Some(_) => {
                let job = media::job::Job::image(&prepared);
                self.run_job(prepared.cost(), held, job, vec![input])
                    .await?
            }
            None => {
                self.run_holding(prepared.cost(), held, move |stop| {
                    prepared.render_timed(&input, stop)
                })
                .await?
            }
        };
        for (stage, took) in [
            ("decode", t.decode),
            ("transform", t.transform),
            ("encode", t.encode),
        ] {
            self.metrics.stage(stage, took.as_secs_f64());
        }
        Ok(rendered)
    }

    /// Runs `job` on a blocking thread once `cost` bytes of the budget and a CPU slot are
    /// free. The job gets a [`media::Stop`] that trips at the deadline or when the client
    /// goes away.
    pub async fn run<T, F>(&self, cost: u64, job: F) -> Result<T, AppError>
    where
        F: FnOnce(&media::Stop) -> Result<T, media::Error> + Send + 'static,
        T: Send + 'static,
    {
        self.run_holding(cost, 0, job).await
    }

    /// Runs `job` (its `payloads`: the input, or a video's samples) where renders run: in
    /// a worker process when sandboxed, else on the pool's threads; admitted as
    /// [`Workers::run`] is, `held` bytes of its `cost` reserved already.
    pub async fn run_job(
        &self,
        cost: u64,
        held: u64,
        job: media::job::Job,
        payloads: Vec<Bytes>,
    ) -> Result<(media::Rendered, media::Timings), AppError> {
        match self.run_done(cost, held, job, payloads).await? {
            media::job::Done::Rendered(rendered, timings) => Ok((rendered, timings)),
            media::job::Done::Assessed(_) => Err(not_what_was_asked()),
        }
    }

    /// [`Workers::run_job`] for any job, what it made as it made it.
    async fn run_done(
        &self,
        cost: u64,
        held: u64,
        job: media::job::Job,
        payloads: Vec<Bytes>,
    ) -> Result<media::job::Done, AppError> {
        let Some(sandbox) = &self.sandbox else {
            return self
                .run_holding(cost, held, move |stop| {
                    let inputs: Vec<&[u8]> = payloads.iter().map(|p| p.as_ref()).collect();
                    job.run(&inputs, stop)
                })
                .await;
        };
        // The worker reads its own copy of the payloads: memory the estimate (which counts
        // the input once, the server's) does not hold. Its address space is still bounded by
        // the estimate, which covers the copy it maps.
        let copy: u64 = payloads.iter().map(|p| p.len() as u64).sum();
        let admitted = self.admit(cost.saturating_add(copy), held).await?;
        self.running.fetch_add(1, Ordering::AcqRel);
        let started = Instant::now();
        let stage = match job {
            media::job::Job::Assess { .. } => "assess",
            _ => "render",
        };
        let result = sandbox
            .run(job, &payloads, cost, self.deadline, cost >= RELEASE_AFTER)
            .await;
        self.metrics.stage(stage, started.elapsed().as_secs_f64());
        drop(admitted);
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            release_when_idle(self.running.clone());
        }
        result
    }

    /// [`Workers::run`] for a job `held` bytes of whose `cost` are reserved already: it
    /// waits only for the rest, but is refused when the whole of it exceeds the budget
    /// (otherwise it would wait for room that it holds itself).
    async fn run_holding<T, F>(&self, cost: u64, held: u64, job: F) -> Result<T, AppError>
    where
        F: FnOnce(&media::Stop) -> Result<T, media::Error> + Send + 'static,
        T: Send + 'static,
    {
        let (memory, slot) = self.admit(cost, held).await?;
        let stop = media::Stop::at(Instant::now() + self.deadline);
        let mut cancel = CancelOnDrop(Some(stop.clone()));
        let job_stop = stop.clone();
        let running = self.running.clone();
        let metrics = self.metrics.clone();
        let handle = tokio::task::spawn_blocking(move || {
            running.fetch_add(1, Ordering::AcqRel);
            let started = Instant::now();
            let result = job(&job_stop);
            metrics.stage("render", started.elapsed().as_secs_f64());
            drop((memory, slot));
            if running.fetch_sub(1, Ordering::AcqRel) == 1 {
                release_when_idle(running);
            }
            result
        });
        // The job checks the deadline itself; this bounds the wait when one long codec call
        // keeps it from checking. It then stops at its next check, still holding its permits.
        let answer = tokio::time::timeout(self.deadline, handle).await;
        cancel.0 = None;
        match answer {
            Err(_) => {
                stop.cancel();
                Err(media::Error::TimedOut.into())
            }
            Ok(Err(e)) => Err(AppError::Internal(format!("image worker failed: {e}"))),
            Ok(Ok(result)) => Ok(result?),
        }
    }
    /// Waits until `cost` bytes of the budget (less `held`, reserved already) and a CPU slot
    /// are free; 503 when the queue is full or the wait too long, 422 when the job could
    /// never fit.
    async fn admit(&self, cost: u64, held: u64) -> Result<Admitted, AppError> {
        let asked = Instant::now();
        let total = units(cost).max(1);
        // What the job still has to reserve: its estimate less what it holds already.
        let more = units(cost.saturating_sub(held)).max(1);
        if total > self.budget_units {
            return Err(media::Error::TooLarge(format!(
                "needs about {} MB, over the memory budget of {} MB",
                cost >> 20,
                self.budget() >> 20
            ))
            .into());
        }
        let free_now = self
            .memory
            .clone()
            .try_acquire_many_owned(more)
            .ok()
            .and_then(|memory| Some((memory, self.slots.clone().try_acquire_owned().ok()?)));
        let (memory, slot) = match free_now {
            Some(permits) => permits,
            None => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(AppError::Overloaded);
                }
                let _waiting = Waiting(self.waiting.clone());
                let acquire = async {
                    let memory = self.memory.clone().acquire_many_owned(more).await;
                    let slot = self.slots.clone().acquire_owned().await;
                    memory.and_then(|m| slot.map(|s| (m, s)))
                };
                match tokio::time::timeout(self.queue_wait, acquire).await {
                    Err(_) => return Err(AppError::Overloaded),
                    Ok(Err(_)) => return Err(AppError::Internal("worker pool closed".into())),
                    Ok(Ok(permits)) => permits,
                }
            }
        };
        self.metrics.stage("queue", asked.elapsed().as_secs_f64());
        Ok((memory, slot))
    }
}

/// Image workers: `workers.threads`, where 0 means one per CPU core the process may use.
pub fn threads(settings: &WorkerSettings) -> usize {
    if settings.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        settings.threads
    }
}

/// The program started as a worker: `workers.worker_program`, where empty means this
/// binary itself — run as `/proc/self/exe`, the very file this process runs, so an upgrade
/// that replaces the binary on disk never pairs a server with a worker of another version.
pub fn worker_program(settings: &WorkerSettings) -> std::path::PathBuf {
    if settings.worker_program.as_os_str().is_empty() {
        "/proc/self/exe".into()
    } else {
        settings.worker_program.clone()
    }
}

/// What one worker process may map beyond its start: `workers.worker_memory`, where 0
/// means the whole memory budget.
pub fn worker_memory(settings: &WorkerSettings) -> u64 {
    if settings.worker_memory == 0 {
        memory_budget(settings)
    } else {
        settings.worker_memory
    }
}

/// The memory budget of image work: `workers.memory_budget`, where 0 means half of
/// [`available_memory`].
pub fn memory_budget(settings: &WorkerSettings) -> u64 {
    if settings.memory_budget == 0 {
        available_memory() / 2
    } else {
        settings.memory_budget
    }
}

/// Memory this process may use: the smallest of its cgroup limit (v2, then v1) and the
/// machine's RAM.
pub fn available_memory() -> u64 {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1 << 30, |kb| kb * 1024);
    [
        read("/sys/fs/cgroup/memory.max"),
        read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    ]
    .into_iter()
    .flatten()
    .fold(total, u64::min)
}

/// Memory reading the headers of an input of `len` bytes may hold, the input included
/// (once, as a render counts it; a worker's copy of it is added where it is sent): an
/// SVG's text and tree ([`media::svg_parse_cost`]); a raster's header readers (a JPEG XL's
/// frame table, a HEIC's item data, libavif's parse) and their tables, 4 MiB.
fn assess_cost(format: media::Format, len: u64, limits: &media::Limits) -> u64 {
    if format == media::Format::Svg {
        media::svg_parse_cost(len, limits)
    } else {
        len.saturating_add(4 << 20)
    }
}

/// A worker that answered another kind of job than it was sent: its answer is not used.
fn not_what_was_asked() -> AppError {
    media::Error::Invalid("a worker answered another job than it was sent".into()).into()
}
