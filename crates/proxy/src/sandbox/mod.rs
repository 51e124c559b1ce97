//! Sandboxed decoding: every render of untrusted media runs in a worker process of our own
//! binary (`media-proxy worker`), confined by the kernel, never in the server.
//!
//! - The server keeps the network, the cache, admission and the answers; a worker gets one
//!   [`media::job::Job`] and its bytes through a pipe ([`wire`]) and answers with the
//!   output's bytes.
//! - A worker confines itself before it reads a byte ([`confine`]): no core dumps, no new
//!   privileges, an address-space limit (its share of the memory budget), a seccomp filter.
//! - **Failure costs one answer.** A worker that aborts, crashes, overflows its stack, makes a
//!   forbidden call, runs out of its memory or past the deadline (then it is killed with
//!   `SIGKILL`: its CPU stops at the deadline, not when the codec returns) is replaced by a
//!   new one; its request gets a 422, counted by cause in `worker_failures`. A worker that
//!   cannot be started is a 503 with `Retry-After`.
//! - Idle workers wait in the pool; the pool holds at most one per CPU slot (`threads`):
//!   admission (the `workers` room, which calls this one) lets no more jobs run at once.
//!
//! Input: a job, its payloads, the deadline; output: the rendered bytes or an [`AppError`].
//! Uses `error`, `metrics`, `wire`; `worker` and `confine` are the worker process's side.

pub mod confine;
pub mod wire;
pub mod worker;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::error::AppError;
use crate::metrics::Metrics;
use wire::{Answer, Ready, Request};

/// How a [`Sandbox`] starts its workers.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// The program to run as `PROGRAM worker --memory BYTES`: this binary.
    pub program: PathBuf,
    /// Bytes each worker may map beyond what it maps when it starts.
    pub memory_share: u64,
    /// Idle workers kept (one per CPU slot).
    pub keep: usize,
    /// Largest output accepted from a worker, in bytes.
    pub max_output: u64,
}

/// The pool of worker processes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: SandboxSettings,
    idle: Mutex<Vec<Worker>>,
    /// What the last worker started said of its confinement.
    confinement: Mutex<Option<Ready>>,
    metrics: Metrics,
}

/// One worker process and its pipes. Killed when dropped (a request whose client left
/// drops its worker mid-job).
#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Its hard address-space limit (0: none could be set); each job lowers the soft one.
    memory_limit: u64,
}

/// Address space a job may map beyond what its worker maps when the job starts: twice its
/// admitted estimate (the estimate counts what is live at the peak; growth by doubling and
/// the allocator's own reserve map more than that) and 64 MiB for the codec's tables, the
/// output and the job's frames in flight. A file whose headers lie about its size — a
/// 320×240 track holding a 4K stream, a 64×64 `ispe` over a 7000×7000 image — is admitted
/// by the estimate of what it claims, and its worker dies at this limit (`abort`, 422)
/// instead of holding memory that no budget counted.
fn allowance(cost: u64) -> u64 {
    cost.saturating_mul(2).saturating_add(64 << 20)
}

/// Why a job did not come back from its worker.
enum Lost {
    Deadline,
    /// The pipe broke or the answer did not parse.
    Pipe(std::io::Error),
}

impl Sandbox {
    pub fn new(settings: SandboxSettings, metrics: Metrics) -> Sandbox {
        Sandbox {
            inner: Arc::new(Inner {
                settings,
                idle: Mutex::new(Vec::new()),
                confinement: Mutex::new(None),
                metrics,
            }),
        }
    }

    /// Starts the pool's workers ahead of the first request (called once the runtime runs;
    /// a failure here is retried by the first request that needs a worker).
    pub async fn fill(&self) {
        for _ in 0..self.inner.settings.keep {
            match self.start().await {
                Ok(worker) => self.give_back(worker),
                Err(e) => {
                    tracing::warn!(error = %e, "image worker could not be started");
                    return;
                }
            }
        }
    }

    /// What the workers run under, as the last one started said (`None` before any).
    pub fn confinement(&self) -> Option<Ready> {
        self.inner.confinement.lock().map_or(None, |c| c.clone())
    }

    /// Runs `job` with `payloads` on an idle worker (or a new one), its address space held
    /// to [`allowance`] of its admitted `cost`, and waits at most `deadline` for its answer.
    /// `release_after`: the worker hands freed memory back after it (a large job) once it
    /// has had no request for [`crate::memory::IDLE_BEFORE_RELEASE`].
    pub async fn run(
        &self,
        job: media::job::Job,
        payloads: &[Bytes],
        cost: u64,
        deadline: Duration,
        release_after: bool,
    ) -> Result<media::job::Done, AppError> {
        let taken = self.inner.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut worker = match taken {
            Some(worker) => worker,
            None => self.start().await.map_err(|e| {
                tracing::error!(error = %e, "image worker could not be started");
                AppError::Overloaded
            })?,
        };
        worker.limit_memory(allowance(cost));
        let request = Request {
            job,
            deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            release_after,
        };
        let max_output = self.inner.settings.max_output;
        let exchange = worker.exchange(&request, payloads, max_output);
        let outcome = match tokio::time::timeout(deadline, exchange).await {
            Err(_) => Err(Lost::Deadline),
            Ok(Err(e)) => Err(Lost::Pipe(e)),
            Ok(Ok(answer)) => Ok(answer),
        };
        match outcome {
            Ok((Answer::Rendered { format, timings }, bytes)) => {
                self.give_back(worker);
                let rendered = media::Rendered { bytes, format };
                Ok(media::job::Done::Rendered(rendered, timings))
            }
            Ok((Answer::Assessed(found), _)) => {
                self.give_back(worker);
                Ok(media::job::Done::Assessed(found))
            }
            Ok((Answer::Failed(failure), _)) => {
                self.give_back(worker);
                Err(media::Error::from(failure).into())
            }
            Err(lost) => Err(self.lost(worker, lost).await),
        }
    }

    /// A worker that did not answer: killed (it may still run), its end read, counted.
    async fn lost(&self, mut worker: Worker, lost: Lost) -> AppError {
        let _ = worker.child.start_kill();
        let status = worker.child.wait().await.ok();
        let cause = match (&lost, status.and_then(|s| s.signal())) {
            (Lost::Deadline, _) => "deadline",
            (_, Some(libc::SIGABRT)) => "abort",
            (_, Some(libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE)) => "crash",
            (_, Some(libc::SIGSYS)) => "forbidden_call",
            // Ours: it was alive but its answer did not parse.
            (Lost::Pipe(e), Some(libc::SIGKILL)) if e.kind() == std::io::ErrorKind::InvalidData => {
                "protocol"
            }
            (_, Some(_)) => "killed",
            (_, None) => "exited",
        };
        self.inner.metrics.worker_failure(cause);
        if let Lost::Pipe(e) = &lost {
            tracing::warn!(cause, status = ?status, error = %e, "image worker lost; replaced");
        }
        match lost {
            Lost::Deadline => media::Error::TimedOut.into(),
            Lost::Pipe(_) => media::Error::Invalid(format!(
                "the decoder failed on this file (its worker: {cause})"
            ))
            .into(),
        }
    }

    fn give_back(&self, worker: Worker) {
        if let Ok(mut idle) = self.inner.idle.lock() {
            if idle.len() < self.inner.settings.keep.max(1) {
                idle.push(worker);
            }
        }
    }

    /// A new worker, once it has said it is ready.
    async fn start(&self) -> std::io::Result<Worker> {
        let s = &self.inner.settings;
        let mut child = Command::from(worker_command(&s.program, s.memory_share))
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("worker pipes"));
        };
        widen(&stdin);
        widen(&stdout);
        let mut worker = Worker {
            child,
            stdin,
            stdout: BufReader::with_capacity(1 << 16, stdout),
            memory_limit: 0,
        };
        let (ready, _): (Ready, _) =
            tokio::time::timeout(Duration::from_secs(10), worker.receive(0))
                .await
                .map_err(|_| std::io::Error::other("worker did not start within 10 s"))??;
        worker.memory_limit = ready.memory_limit;
        self.inner.metrics.worker_starts.inc();
        let confined = ready.seccomp && ready.no_new_privs;
        self.inner.metrics.worker_confined.set(i64::from(confined));
        if let Ok(mut last) = self.inner.confinement.lock() {
            let first = last.is_none();
            if first || !confined {
                match &ready.refused {
                    Some(why) => {
                        tracing::warn!(refused = %why, "image workers run without part of their confinement")
                    }
                    None if first => tracing::info!(
                        memory_limit = ready.memory_limit,
                        "image workers confined (seccomp, no new privileges, address-space limit)"
                    ),
                    None => {}
                }
            }
            *last = Some(ready);
        }
        Ok(worker)
    }
}

/// What a pipe to a worker may hold before its writer waits: 1 MiB (Linux's default ceiling
/// for unprivileged processes, `fs.pipe-max-size`) rather than 64 KiB. A 4 MB photo crossed
/// in 64 handoffs each way, each a wake-up of the other side: +13 ms at the median of a 12 MP
/// `preview` and cores left idle between them (`docs/benchmarks.md`).
const PIPE_SIZE: libc::c_int = 1 << 20;

/// Widens the pipe behind `end` to [`PIPE_SIZE`]; where the kernel refuses (a lower
/// ceiling, the user's pipe quota spent), it stays as it was, only slower.
#[allow(unsafe_code)]
fn widen(end: &impl std::os::fd::AsRawFd) {
    // SAFETY: fcntl on a descriptor we own, with an integer argument; it changes only the
    // pipe's capacity.
    let set = unsafe { libc::fcntl(end.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    if set < 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "worker pipe not widened");
    }
}

/// How a worker is started: `PROGRAM worker --memory BYTES`, its job and answer on pipes,
/// its messages on our stderr, no backtrace capture (it would open files).
fn worker_command(program: &std::path::Path, memory_share: u64) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command
        .arg("worker")
        .arg("--memory")
        .arg(memory_share.to_string())
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// Starts one worker the way the pool does, reads what it says of its confinement, and lets
/// it end (`check-config --resolved`; no runtime needed).
pub fn probe(program: &std::path::Path, memory_share: u64) -> Result<Ready, String> {
    let mut child = worker_command(program, memory_share)
        .spawn()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let said = child
        .stdout
        .take()
        .ok_or_else(|| "no pipe".to_owned())
        .and_then(|mut out| wire::read_blocking::<Ready>(&mut out, 0).map_err(|e| e.to_string()));
    // Its input closed: it ends by itself.
    drop(child.stdin.take());
    let _ = child.wait();
    said?
        .map(|(ready, _)| ready)
        .ok_or_else(|| "the worker ended before saying it was ready".to_owned())
}

impl Worker {
    /// Sets the worker's soft address-space limit to what it maps now plus `allowance`
    /// (never above its hard limit, which it set itself). Done from the server: the worker
    /// may make no such call, and may not raise a limit the next job needs higher.
    #[allow(unsafe_code)]
    fn limit_memory(&self, allowance: u64) {
        let (Some(pid), true) = (self.child.id(), self.memory_limit > 0) else {
            return;
        };
        let Some(now) = confine::virtual_size_of(pid) else {
            return;
        };
        let limit = libc::rlimit {
            rlim_cur: now.saturating_add(allowance).min(self.memory_limit),
            rlim_max: self.memory_limit,
        };
        // SAFETY: prlimit on our own child with a value we own; a failure leaves the hard
        // limit, which still bounds the worker.
        let set = unsafe {
            libc::prlimit(
                pid as libc::pid_t,
                libc::RLIMIT_AS,
                &limit,
                std::ptr::null_mut(),
            )
        };
        if set != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "worker memory limit not lowered");
        }
    }

    /// Sends a request and its payloads, reads the answer and its payload.
    async fn exchange(
        &mut self,
        request: &Request,
        payloads: &[Bytes],
        max_output: u64,
    ) -> std::io::Result<(Answer, Vec<u8>)> {
        let slices: Vec<&[u8]> = payloads.iter().map(|p| p.as_ref()).collect();
        self.stdin.write_all(&wire::head(request, &slices)?).await?;
        for p in &slices {
            self.stdin.write_all(p).await?;
        }
        self.stdin.flush().await?;
        let (answer, mut outputs) = self.receive(max_output).await?;
        Ok((answer, outputs.pop().unwrap_or_default()))
    }

    /// One frame from the worker, its payloads at most `max_total` bytes in all.
    async fn receive<H: serde::de::DeserializeOwned>(
        &mut self,
        max_total: u64,
    ) -> std::io::Result<(H, Vec<Vec<u8>>)> {
        let r = &mut self.stdout;
        let mut fixed = [0u8; 8];
        r.read_exact(&mut fixed).await?;
        let mut json = vec![0; wire::header_len(fixed)?];
        r.read_exact(&mut json).await?;
        let mut count = [0u8; 4];
        r.read_exact(&mut count).await?;
        let mut lens = vec![0; wire::payload_count(count)? * 8];
        r.read_exact(&mut lens).await?;
        let mut payloads = Vec::new();
        for len in wire::payload_lens(&lens, max_total)? {
            let mut p = vec![0; len];
            r.read_exact(&mut p).await?;
            payloads.push(p);
        }
        Ok((wire::parse(&json)?, payloads))
    }
}
