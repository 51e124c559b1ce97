//! How the process allocates: few malloc arenas, freed memory reused while busy and handed
//! back when idle.
//!
//! Image work allocates and frees tens of megabytes per request on several threads. glibc
//! gives each thread that contends for the heap an arena of its own (up to 8 per core) and
//! keeps what those arenas freed: after a burst of concurrent renders the process stayed at
//! ~115 MB RSS (measured: the corpus sample at 4 concurrent requests), and `malloc_trim`
//! gave almost nothing back (the arenas are fragmented, not free). One arena per two cores
//! brought the same burst down to ~37 MB with no measurable CPU cost: the work is dominated
//! by decoding, and small allocations still come from per-thread caches. On two cores that
//! is a single arena, which also did best under the side-by-side benchmark (progressive
//! `preview` 15.7 → 13.1 CPU-ms, peak RSS 170 → 123 MB; the other scenarios unchanged).
//! An operator's `MALLOC_ARENA_MAX` wins.
//!
//! Freed memory stays in the heaps while work goes on: glibc's defaults map every large
//! block afresh (`mmap` above a threshold that starts at 128 KiB) and cut a heap's free top
//! as soon as it passes twice that, so each request paid page faults and the kernel zeroing
//! the same few megabytes again (a fixed 1 MiB hash table in libwebp's alpha encoder, the
//! decoded canvas): 15 % of the CPU of a PNG `emoji` under load, measured with perf. Blocks
//! up to 32 MiB now come from the heaps (glibc's ceiling for the setting): 6.4 → 5.3 CPU-ms
//! per PNG `emoji` (`docs/benchmarks.md`). How much free top a heap keeps depends on the
//! arenas: `malloc_trim` shrinks only the main arena's top, never another arena's, so with
//! one arena the top may grow to 64 MiB (the idle release takes it back), and with several
//! it is cut past 8 MiB, which bounds what each of them holds when idle (64 MiB there left
//! 69 MB behind after the corpus sweep, 8 MiB 13 MB; 64 MiB with one arena, 9 MB).
//! An operator's `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or `GLIBC_TUNABLES` wins.
//!
//! When the last running image job ends, [`release`] asks glibc to return the free pages
//! inside its heaps (`malloc_trim`): a heap only shrinks from its top, and one long-lived
//! allocation above a freed 30 MB canvas would otherwise pin it (measured: 54 → 36 MB after
//! a burst of previews). Doing it only when the pool has been idle for a second keeps it off
//! the busy path, sequential traffic included (`workers::release_when_idle`).
//!
//! A server whose renders run in worker processes decodes nothing itself; its large blocks
//! are download buffers, mapped on their own ([`decoding_elsewhere`]) so that what the
//! memory budget counts is what is resident.
//!
//! Input: the operator's allocator variables (read by `config`); output: glibc's settings.
//! Uses `config` only.

use crate::config::environment::AllocatorVars;

/// Blocks this large and larger are mapped on their own (glibc's maximum for the setting).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// A heap's free top is handed back while working only past this: with the main arena
/// alone (trimmed whole when idle) …
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD_ONE_ARENA: libc::c_int = 64 << 20;
/// … and with several (the others keep up to this much each when idle).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD_ARENAS: libc::c_int = 8 << 20;

/// Limits glibc's malloc arenas and keeps freed memory for reuse while busy. Call first
/// thing in `main`, before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn configure(operator: &AllocatorVars) {
    let arenas = match &operator.arena_max {
        // glibc reads it itself; 0 or nonsense means its default (many).
        Some(value) => value.trim().parse().unwrap_or(0),
        None => {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let arenas = libc::c_int::try_from((cores / 2).clamp(1, 8)).unwrap_or(1);
            // SAFETY: mallopt only sets a glibc tunable; it is called before any other
            // thread exists, and an unsupported parameter is reported by its return value.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, arenas);
            }
            arenas
        }
    };
    if !operator.thresholds_set {
        let trim = if arenas == 1 {
            TRIM_THRESHOLD_ONE_ARENA
        } else {
            TRIM_THRESHOLD_ARENAS
        };
        // SAFETY: as above.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, trim);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure(_operator: &AllocatorVars) {}

/// Blocks this large and larger are mapped on their own in a server whose decoding runs in
/// worker processes (see [`decoding_elsewhere`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const SERVER_MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// For a server whose renders run in worker processes (`workers.isolation = "process"`):
/// its large blocks are then download buffers, not a decoder's scratch used again and
/// again, so each one above [`SERVER_MMAP_THRESHOLD`] is mapped on its own. A buffer that
/// grows is moved by `mremap` (no copy, nothing left behind) and a freed one goes back to
/// the system at once. From the heaps, each growth left the smaller buffer free inside them,
/// resident and counted by no budget: six 60 MiB downloads at a 128 MiB budget grew RSS by
/// 209–217 MiB when two renders ran, and by 126–131 MiB mapped (the sandbox test
/// `a_workers_copy_of_its_input_counts_in_the_budget`). The workers keep [`configure`]'s
/// settings. An operator's allocator variables win.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn decoding_elsewhere(operator: &AllocatorVars) {
    if operator.thresholds_set {
        return;
    }
    // SAFETY: mallopt only sets a glibc tunable; the mmap threshold may change at any time
    // (it applies to the blocks allocated after it).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, SERVER_MMAP_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn decoding_elsewhere(_operator: &AllocatorVars) {}

/// How long image work must have stopped before freed memory is handed back ([`release`]):
/// the server's pool in-process (`workers::release_when_idle`), a worker process after a
/// large job (`sandbox::worker`). Trimming at once after every job made sequential traffic
/// pay for it each time (`malloc_trim` walking the heaps, then page faults to take the
/// memory back: ~1.4 ms of a 25 ms 12 MP preview in-process, measured with one connection;
/// in a worker, 67 % of its CPU went to the kernel's page faults and unmapping, and a
/// progressive 12 MP `preview` took 51 CPU-ms instead of 18); a burst's end is still
/// followed by the trim a second later.
pub const IDLE_BEFORE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);

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
