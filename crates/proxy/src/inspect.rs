//! What `check-config --resolved` adds to the settings: the values that `0` or an empty
//! setting stands for, worked out the way the server will at start-up (`workers`' own
//! functions, the S3 client's region order), on this machine or, with `--lambda MIB`, in a
//! Lambda function of that size.
//!
//! Input: loaded [`Settings`], the region variables (read by `config`), an optional Lambda
//! [`Environment`]; output: the settings with those values filled in, and one line per value
//! saying where it came from; with sandboxed workers, one worker is started to say what
//! confines it. Uses `config`, `workers`, `lambda`, `sandbox`.

use crate::config::{CacheKind, Isolation, Settings, StoreKind};
use crate::lambda::Environment;
use crate::workers;

const MIB: u64 = 1 << 20;

/// Fills in what the zero and empty settings resolve to; returns how each was found.
pub fn resolve(
    settings: &mut Settings,
    aws_region: Option<&str>,
    lambda: Option<&Environment>,
) -> Vec<String> {
    let mut how = Vec::new();
    let w = &mut settings.workers;
    if w.threads == 0 {
        match lambda {
            // The function's vCPUs are only known inside it: Lambda gives one per 1,769 MB
            // (fractions below), up to 6 at 10,240 MB.
            Some(env) => {
                let vcpus = (env.memory_mib as f64 / 1769.0).min(6.0);
                how.push(format!(
                    "workers.threads = 0: one per vCPU the function is shown, known only inside it ({} MB buys about {vcpus:.2} vCPU of CPU time)",
                    env.memory_mib
                ));
            }
            None => {
                w.threads = workers::threads(w);
                how.push(format!(
                    "workers.threads = {}: 0 means one per CPU core this process may use",
                    w.threads
                ));
            }
        }
    }
    if w.memory_budget == 0 {
        let available = workers::available_memory();
        w.memory_budget = workers::memory_budget(w);
        how.push(format!(
            "workers.memory_budget = {} ({} MiB): 0 means half of the {} MiB this process may use",
            w.memory_budget,
            w.memory_budget / MIB,
            available / MIB
        ));
    } else if let Some(env) = lambda {
        how.push(format!(
            "workers.memory_budget = {} ({} MiB): half of the function's {} MB, unless set",
            w.memory_budget,
            w.memory_budget / MIB,
            env.memory_mib
        ));
    }
    if w.isolation == Isolation::Process {
        if w.worker_memory == 0 {
            w.worker_memory = workers::worker_memory(w);
            how.push(format!(
                "workers.worker_memory = {} ({} MiB): 0 means the whole memory budget",
                w.worker_memory,
                w.worker_memory / MIB
            ));
        }
        if w.worker_program.as_os_str().is_empty() {
            w.worker_program = workers::worker_program(w);
            how.push(format!(
                "workers.worker_program = {:?}: empty means this binary (the file this process runs)",
                w.worker_program
            ));
        }
        // One worker started here, as the server starts them, says what confines it.
        let said = match crate::sandbox::probe(&w.worker_program, w.worker_memory) {
            Ok(ready) => match ready.refused {
                None => format!(
                    "confined: seccomp filter, no new privileges, address space limited to {} MiB",
                    ready.memory_limit / MIB
                ),
                Some(why) => format!("NOT fully confined on this machine: {why}"),
            },
            Err(e) => format!("a worker could not be started: {e}"),
        };
        how.push(format!("workers.isolation = \"process\": {said}"));
    }
    let region = match (lambda, aws_region) {
        (Some(_), _) => ("the function's region", None),
        (None, Some(r)) => ("AWS_REGION or AWS_DEFAULT_REGION", Some(r.to_owned())),
        (None, None) => ("the S3 client's default", Some("us-east-1".to_owned())),
    };
    for (key, used, value) in [
        (
            "store.region",
            settings.store.kind == StoreKind::S3,
            &mut settings.store.region,
        ),
        (
            "cache.region",
            settings.cache.kind == CacheKind::S3,
            &mut settings.cache.region,
        ),
    ] {
        if !used || !value.is_empty() {
            continue;
        }
        match &region.1 {
            Some(r) => {
                value.clone_from(r);
                how.push(format!("{key} = {r:?}: from {}", region.0));
            }
            None => how.push(format!("{key}: {} (AWS_REGION, set by Lambda)", region.0)),
        }
    }
    how
}
