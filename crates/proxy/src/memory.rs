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
//! Freed memory also stays in the heaps while work goes on: glibc's defaults map every large
//! block afresh (`mmap` above a threshold that starts at 128 KiB) and cut a heap's free top
//! as soon as it passes twice that, so each request paid page faults and the kernel zeroing
//! the same few megabytes again (a fixed 1 MiB hash table in libwebp's alpha encoder, the
//! decoded canvas): 15 % of the CPU of a PNG `emoji` under load, measured with perf. Blocks
//! up to 32 MiB now come from the heaps (glibc's ceiling for the setting) and a heap's top is
//! only cut past 64 MiB free: 6.4 → 5.4 CPU-ms per PNG `emoji`, peak RSS 28 → 31 MB
//! (`docs/benchmarks.md`). Nothing is kept for good: the idle release below returns it all.
//! An operator's `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or `GLIBC_TUNABLES` wins.
//!
//! When the last running image job ends, [`release`] asks glibc to return the free pages
//! inside its heaps (`malloc_trim`): a heap only shrinks from its top, and one long-lived
//! allocation above a freed 30 MB canvas would otherwise pin it (measured: 54 → 36 MB after
//! a burst of previews). Doing it only when the pool has been idle for a second keeps it off
//! the busy path, sequential traffic included (`workers::release_when_idle`).

/// Blocks this large and larger are mapped on their own (glibc's maximum for the setting).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// A heap's free top is handed back while working only past this.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 64 << 20;

/// Limits glibc's malloc arenas and keeps freed memory for reuse while busy. Call first
/// thing in `main`, before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn configure() {
    let set = |name: &str| std::env::var_os(name).is_some();
    if !set("MALLOC_ARENA_MAX") {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from((cores / 2).clamp(2, 8)).unwrap_or(2);
        // SAFETY: mallopt only sets a glibc tunable; it is called before any other thread
        // exists, and an unsupported parameter is reported by its return value, not UB.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
    if !set("MALLOC_MMAP_THRESHOLD_") && !set("MALLOC_TRIM_THRESHOLD_") && !set("GLIBC_TUNABLES") {
        // SAFETY: as above.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
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
