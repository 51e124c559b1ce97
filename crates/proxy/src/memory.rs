//! How the process allocates: few malloc arenas, and freed memory handed back when idle.
//!
//! Image work allocates and frees tens of megabytes per request on several threads. glibc
//! gives each thread that contends for the heap an arena of its own (up to 8 per core) and
//! keeps what those arenas freed: after a burst of concurrent renders the process stayed at
//! ~115 MB RSS (measured: the corpus sample at 4 concurrent requests), and `malloc_trim`
//! gave almost nothing back (the arenas are fragmented, not free). Two arenas per four cores
//! (at least two) brought the same burst down to ~37 MB with no measurable CPU cost: the
//! work is dominated by decoding, and small allocations still come from per-thread caches.
//! An operator's `MALLOC_ARENA_MAX` wins.
//!
//! When the last running image job ends, [`release`] asks glibc to return the free pages
//! inside its heaps (`malloc_trim`): a heap only shrinks from its top, and one long-lived
//! allocation above a freed 30 MB canvas would otherwise pin it (measured: 54 → 36 MB after
//! a burst of previews). Doing it only when the pool has been idle for a second keeps it off
//! the busy path, sequential traffic included (`workers::release_when_idle`).

/// Limits glibc's malloc arenas. Call first thing in `main`, before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn configure() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from((cores / 2).clamp(2, 8)).unwrap_or(2);
    // SAFETY: mallopt only sets a glibc tunable; it is called before any other thread
    // exists, and an unsupported parameter is reported by its return value, not UB.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure() {}

/// Returns free heap pages to the system (glibc only; elsewhere nothing to do).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release() {
    // SAFETY: malloc_trim takes a plain integer, works on glibc's own allocator state under
    // its locks, and may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release() {}
