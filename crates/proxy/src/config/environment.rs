//! The rest of the process environment, read once at start-up next to our own
//! `MEDIA_PROXY__*` settings: what other parts of the platform define — the AWS Lambda
//! runtime's variables, glibc's allocator tunables, `RUST_LOG`, the AWS region. Input: the environment;
//! output: a [`ProcessEnv`] whose parts are handed to `lambda`, `memory` and `telemetry`
//! (none of which reads the environment itself). Uses nothing of ours.
//!
//! One exception stays outside: S3 credentials, which `object_store`'s
//! `AmazonS3Builder::from_env` reads by the standard AWS chain (`source::store`).

/// What the environment says, beyond our settings.
#[derive(Debug, Clone, Default)]
pub struct ProcessEnv {
    pub lambda: LambdaVars,
    pub allocator: AllocatorVars,
    /// `RUST_LOG`: overrides `log.filter` (checked as strictly).
    pub log_filter: Option<String>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`: the S3 client reads them itself; kept here
    /// only to show what an empty `region` setting resolves to (`check-config --resolved`).
    pub aws_region: Option<String>,
}

/// The variables the Lambda service sets for a custom runtime, as found;
/// `lambda::Environment` checks them.
#[derive(Debug, Clone, Default)]
pub struct LambdaVars {
    pub runtime_api: Option<String>,
    pub function_name: Option<String>,
    pub function_version: Option<String>,
    pub memory_size: Option<String>,
    /// `AWS_LAMBDA_MAX_CONCURRENCY` (Lambda Managed Instances).
    pub max_concurrency: Option<String>,
}

/// The operator's own allocator tunables: when set, ours give way (`memory::configure`).
#[derive(Debug, Clone, Default)]
pub struct AllocatorVars {
    /// `MALLOC_ARENA_MAX`, as set (glibc reads it itself).
    pub arena_max: Option<String>,
    /// `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or `GLIBC_TUNABLES` is set.
    pub thresholds_set: bool,
}

impl ProcessEnv {
    /// Reads the process environment.
    pub fn read() -> ProcessEnv {
        let get = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        ProcessEnv {
            lambda: LambdaVars {
                runtime_api: get("AWS_LAMBDA_RUNTIME_API"),
                function_name: get("AWS_LAMBDA_FUNCTION_NAME"),
                function_version: get("AWS_LAMBDA_FUNCTION_VERSION"),
                memory_size: get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
                max_concurrency: get("AWS_LAMBDA_MAX_CONCURRENCY"),
            },
            allocator: AllocatorVars {
                arena_max: get("MALLOC_ARENA_MAX"),
                thresholds_set: [
                    "MALLOC_MMAP_THRESHOLD_",
                    "MALLOC_TRIM_THRESHOLD_",
                    "GLIBC_TUNABLES",
                ]
                .iter()
                .any(|name| get(name).is_some()),
            },
            log_filter: get("RUST_LOG"),
            aws_region: get("AWS_REGION")
                .or_else(|| get("AWS_DEFAULT_REGION"))
                .filter(|r| !r.is_empty()),
        }
    }
}

impl LambdaVars {
    /// Whether the process was started by Lambda (the Runtime API address is set).
    pub fn detected(&self) -> bool {
        self.runtime_api.is_some()
    }
}
