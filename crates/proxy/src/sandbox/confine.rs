//! What a worker process does to itself before it reads a byte of media: no core dumps, no
//! new privileges, an address-space limit, and a seccomp filter that kills it on any system
//! call outside what decoding needs.
//!
//! The filter allows memory (`mmap`, `munmap`, `mremap`, `mprotect`, `brk`, `madvise`),
//! futexes, reading its input and writing its output (`read`, `write`, `readv`, `writev` and
//! `poll` on the descriptors it has; it cannot open others), clocks, and exiting (`abort`
//! included: `tgkill` of itself). Opening a file fails with `EACCES` (a second filter): libraries ask
//! the system small questions that way — heifer asks `std::thread::available_parallelism`,
//! which reads the cgroup files and falls back when refused — and a refusal opens nothing
//! either. Everything else — `socket`, `execve`, `ptrace`, `clone` (no decoder here starts
//! threads; the worker's one thread is made before the filter) — kills the process with
//! `SIGSYS`. Built with `seccompiler` (the filter library of Firecracker), not hand-written
//! BPF.
//!
//! Input: the memory share; output: a [`Ready`] saying what is in force (a kernel that
//! refuses a part is said so, never silently skipped). Uses `libc`, `seccompiler`.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use super::wire::Ready;

/// The system calls a worker may make once confined (see the module docs).
fn allowed() -> Vec<libc::c_long> {
    let mut calls = vec![
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_close,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_brk,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_getrandom,
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_gettimeofday,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigaction,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        // Waiting for the next job with a timeout (then handing freed memory back).
        libc::SYS_ppoll,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_poll,
        // glibc's `qsort` asks for the memory size (`sysconf(_SC_PHYS_PAGES)`).
        libc::SYS_sysinfo,
        libc::SYS_getpid,
        libc::SYS_gettid,
        // `abort()` signals its own thread.
        libc::SYS_tgkill,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    calls.sort_unstable();
    calls
}

/// The calls that open files: refused with `EACCES`, not killed (see the module docs).
fn refused() -> Vec<libc::c_long> {
    vec![
        libc::SYS_openat,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_open,
    ]
}

/// A compiled filter for this machine's architecture: `calls` get `matched`, every other
/// call `otherwise`.
fn filter(
    calls: Vec<libc::c_long>,
    otherwise: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = calls
        .into_iter()
        // `c_long` is `i64` on both targets (x86-64, arm64).
        .map(|call| (call, Vec::new()))
        .collect();
    let filter = SeccompFilter::new(rules, otherwise, matched, arch).map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// Both filters installed on every thread. The kernel runs all of a process's filters and
/// takes the strictest answer: an open is allowed by the list, refused by the second filter.
fn install() -> Result<(), String> {
    let mut listed = allowed();
    listed.extend(refused());
    let list = filter(listed, SeccompAction::KillProcess, SeccompAction::Allow)?;
    let eacces = SeccompAction::Errno(libc::EACCES as u32);
    let opens = filter(refused(), SeccompAction::Allow, eacces)?;
    // The allow-list last: it forbids the calls that install a filter.
    for program in [opens, list] {
        seccompiler::apply_filter_all_threads(&program).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The process's virtual size now, from `/proc/self/statm` (read before the filter, which
/// forbids opening it).
fn virtual_size() -> Option<u64> {
    virtual_size_in("/proc/self/statm")
}

/// Another process's virtual size (the server reads its workers' before each job).
pub fn virtual_size_of(pid: u32) -> Option<u64> {
    virtual_size_in(&format!("/proc/{pid}/statm"))
}

/// The first field of a `statm` file (the virtual size, in pages) in bytes. `statm` rather
/// than `status`: the kernel writes five numbers instead of fifty lines.
fn virtual_size_in(path: &str) -> Option<u64> {
    let statm = std::fs::read_to_string(path).ok()?;
    let pages = statm.split_whitespace().next()?.parse::<u64>().ok()?;
    Some(pages.saturating_mul(page_size()))
}

/// The size of a memory page.
#[allow(unsafe_code)]
fn page_size() -> u64 {
    // SAFETY: sysconf takes an integer and reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// Soft and hard limit alike (a confined worker cannot raise it again).
fn rlimit(bytes: u64) -> libc::rlimit {
    libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    }
}

/// Confines the calling process (all its threads): see the module docs. `share`: bytes the
/// worker may map beyond what it has mapped now (its code, its stack, its heap so far).
#[allow(unsafe_code)]
pub fn confine(share: u64) -> Ready {
    let mut refused = Vec::new();
    // A hostile file's crash leaves no core file behind.
    // SAFETY (both setrlimit calls): a plain system call on a value we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &rlimit(0)) } != 0 {
        refused.push("RLIMIT_CORE".to_owned());
    }
    let memory_limit = match virtual_size() {
        Some(now)
            if unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit(now.saturating_add(share))) }
                == 0 =>
        {
            now.saturating_add(share)
        }
        _ => {
            refused.push(format!("RLIMIT_AS: {}", std::io::Error::last_os_error()));
            0
        }
    };
    // SAFETY: prctl with constant arguments.
    let no_new_privs = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == 0;
    if !no_new_privs {
        refused.push(format!("no_new_privs: {}", std::io::Error::last_os_error()));
    }
    let seccomp = match install() {
        Ok(()) => true,
        Err(e) => {
            refused.push(format!("seccomp: {e}"));
            false
        }
    };
    Ready {
        no_new_privs,
        seccomp,
        memory_limit,
        refused: (!refused.is_empty()).then(|| refused.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_virtual_size_read_is_the_one_status_reports() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmSize:"))
            .unwrap()
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        let read = super::virtual_size_of(std::process::id()).unwrap();
        // The test's other threads may map or unmap a little between the two reads.
        assert!(
            read.abs_diff(kb * 1024) < 64 << 20,
            "{read} against {kb} kB"
        );
    }
}
