//! The AWS Lambda runtime: the same router as the standalone server, driven by the Lambda
//! Runtime API through our own small client ([`runtime_api`]; events parsed by
//! `lambda_http`'s types). Function URL events come in; responses go out **streamed**
//! (`InvokeMode: RESPONSE_STREAM`), so bodies above the 6 MB of a buffered Lambda response
//! (video passthrough) work and the first bytes leave before the last are read.
//!
//! What differs from the server is only what Lambda imposes, each answered with a clear
//! status instead of a bare 502 from the Lambda front end:
//!
//! - a streamed response carries at most [`STREAM_LIMIT`] bytes: `max_size` and
//!   `store.max_size` are capped to it, so a larger file is a `413` naming the limit;
//! - an invocation is killed at its deadline: the router's deadline guard
//!   (`routes::deadline`, driven by the [`Deadline`] this adapter puts on each request)
//!   answers `504` shortly before it when the answer is not ready;
//! - only `/tmp` is writable and the memory is the function's: [`Environment::runtime_defaults`]
//!   puts the local cache under `/tmp` and sizes the memory budget and tiers from
//!   `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (settings the user gives still win).
//!
//! Input: the Lambda variables (read by `config`) and [`Settings`]; output: the invocation
//! loop. Uses `app`, `config`, `routes` (the deadline guard).

pub mod runtime_api;

use std::convert::Infallible;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::Request;
use lambda_http::tower::ServiceExt as _;
use lambda_http::RequestExt as _;

use self::runtime_api::{Client, Invocation};

use crate::app;
use crate::config::environment::LambdaVars;
use crate::config::Settings;

pub use crate::routes::deadline::{streamable_bytes, Deadline, STREAM_LIMIT};

/// The variables the Lambda service sets for a custom runtime (all four are required by the
/// runtime library, which would panic without them: checked here first for a clear message).
#[derive(Debug, Clone)]
pub struct Environment {
    pub runtime_api: String,
    pub function_name: String,
    pub function_version: String,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, in MiB.
    pub memory_mib: u64,
    /// Invocations handled at once (`AWS_LAMBDA_MAX_CONCURRENCY`, Lambda Managed
    /// Instances); 1 otherwise.
    pub concurrency: usize,
}

impl Environment {
    /// Checks the Lambda variables (read by `config`); the error names the missing or
    /// malformed one.
    pub fn from_vars(vars: &LambdaVars) -> Result<Environment, String> {
        let var = |name: &str, value: &Option<String>| {
            value.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
                format!("{name} is not set: `media-proxy lambda` runs only inside AWS Lambda (or a Runtime API emulator)")
            })
        };
        let memory = var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", &vars.memory_size)?;
        let memory_mib = memory
            .parse::<u64>()
            .ok()
            .filter(|m| *m > 0 && *m <= i32::MAX as u64)
            .ok_or_else(|| {
                format!("AWS_LAMBDA_FUNCTION_MEMORY_SIZE is not a size in MB: {memory:?}")
            })?;
        Ok(Environment {
            runtime_api: var("AWS_LAMBDA_RUNTIME_API", &vars.runtime_api)?,
            function_name: var("AWS_LAMBDA_FUNCTION_NAME", &vars.function_name)?,
            function_version: var("AWS_LAMBDA_FUNCTION_VERSION", &vars.function_version)?,
            memory_mib,
            concurrency: vars
                .max_concurrency
                .as_deref()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(1)
                .clamp(1, 1024),
        })
    }

    /// A function of `memory_mib` MB as `check-config --lambda` imagines it (no Runtime API
    /// behind it): what its defaults and limits would be.
    pub fn of_size(memory_mib: u64) -> Result<Environment, String> {
        let placeholder = Some("(check-config)".to_owned());
        Environment::from_vars(&LambdaVars {
            runtime_api: placeholder.clone(),
            function_name: placeholder.clone(),
            function_version: placeholder,
            memory_size: Some(memory_mib.to_string()),
            max_concurrency: None,
        })
    }

    /// Defaults for Lambda, layered between the embedded defaults and the user's settings:
    /// JSON logs (CloudWatch), the local variant cache under `/tmp` (the only writable
    /// place; 256 MiB of its default 512 MB; written before the answer, since a function is
    /// frozen after it and a write left for later would resume with its time-out spent),
    /// a small memory tier, half the function's memory
    /// for image work, the largest body a streamed response can carry, and no store (a local
    /// directory of originals makes no sense in a function: `store.kind = "s3"` turns the
    /// store mode on).
    pub fn runtime_defaults(&self) -> String {
        let memory = self.memory_mib << 20;
        format!(
            "max_size = {STREAM_LIMIT}\n\
             [log]\nformat = \"json\"\n\
             [cache]\nroot = \"/tmp/media-proxy/cache\"\nmax_size = {cache}\nmemory = {tier}\n\
             write_behind = false\n\
             [store]\nkind = \"none\"\nmax_size = {STREAM_LIMIT}\n\
             [workers]\nmemory_budget = {budget}\n",
            cache = 256u64 << 20,
            tier = (memory / 16).min(64 << 20),
            budget = memory / 2,
        )
    }

    /// Applies what Lambda imposes whatever the settings say: bodies above [`STREAM_LIMIT`]
    /// cannot be returned, so larger downloads are refused up front (`413`).
    pub fn impose_limits(&self, mut settings: Settings) -> Settings {
        for (key, value) in [
            ("max_size", &mut settings.max_size),
            ("store.max_size", &mut settings.store.max_size),
        ] {
            if *value > STREAM_LIMIT {
                tracing::warn!(
                    key,
                    configured = *value,
                    limit = STREAM_LIMIT,
                    "lowered to the largest response Lambda can stream"
                );
                *value = STREAM_LIMIT;
            }
        }
        settings
    }
}

/// Turns a function URL request into the router's request: the body as is, the
/// invocation's deadline as a [`Deadline`] extension, the caller's `sourceIp` (behind
/// CloudFront: the edge's) as a [`crate::relay::Peer`].
fn into_router_request(request: lambda_http::Request, deadline: SystemTime) -> Request {
    let source_ip = match request.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx
            .http
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok()),
        _ => None,
    };
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(Deadline(deadline));
    if let Some(ip) = source_ip {
        parts.extensions.insert(crate::relay::Peer(ip));
    }
    let body = match body {
        lambda_http::Body::Empty => Body::empty(),
        lambda_http::Body::Text(text) => Body::from(text),
        lambda_http::Body::Binary(bytes) => Body::from(bytes),
        // The enum is non-exhaustive: a later variant's bytes, as they are.
        other => Body::from(other.to_vec()),
    };
    Request::from_parts(parts, body)
}

/// Serves invocations until the Runtime API goes away: `environment.concurrency` poll loops
/// (one on classic Lambda), each on its own connection. A router that cannot be built is
/// reported to `/init/error` before the process stops.
pub async fn run(settings: &Settings, environment: &Environment) -> Result<(), String> {
    let router = match app::router(settings) {
        Ok(router) => router,
        Err(e) => {
            let message = e.to_string();
            let mut client = Client::new(&environment.runtime_api);
            if let Err(report) = client.init_error("Runtime.InitError", &message).await {
                tracing::warn!(error = %report, "cannot report the init error");
            }
            return Err(message);
        }
    };
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..environment.concurrency {
        let (router, addr) = (router.clone(), environment.runtime_api.clone());
        loops.spawn(async move { serve(router, &addr).await });
    }
    match loops.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(format!("an invocation loop stopped: {e}")),
        None => Ok(()),
    }
}

/// One poll loop: next invocation → the router → the streamed answer, until the Runtime
/// API cannot be reached any more.
async fn serve(router: axum::Router, addr: &str) -> Result<(), String> {
    let mut client = Client::new(addr);
    loop {
        let invocation = client
            .next()
            .await
            .map_err(|e| format!("the Lambda runtime stopped: {e}"))?;
        let id = invocation.request_id.clone();
        let outcome = match request_of(invocation) {
            Ok(request) => {
                let response = router
                    .clone()
                    .oneshot(request)
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                client.respond(&id, response).await
            }
            Err(reason) => {
                tracing::warn!(request_id = %id, %reason, "not a function URL event");
                client
                    .invocation_error(&id, "Runtime.InvalidEvent", &reason)
                    .await
            }
        };
        if let Err(e) = outcome {
            // The next poll reconnects; a Runtime API that is gone ends the loop there.
            tracing::warn!(request_id = %id, error = %e, "cannot hand the answer to Lambda");
        }
    }
}

/// The router's request for an invocation: its event parsed as a function URL request.
fn request_of(invocation: Invocation) -> Result<Request, String> {
    let text = std::str::from_utf8(&invocation.event).map_err(|e| e.to_string())?;
    let mut request = lambda_http::request::from_str(text).map_err(|e| e.to_string())?;
    if let Some(trace) = invocation
        .trace_id
        .and_then(|t| axum::http::HeaderValue::from_str(&t).ok())
    {
        request.headers_mut().insert("x-amzn-trace-id", trace);
    }
    Ok(into_router_request(request, invocation.deadline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn env(memory_mib: u64) -> Environment {
        Environment {
            runtime_api: "127.0.0.1:9001".into(),
            function_name: "media-proxy".into(),
            function_version: "$LATEST".into(),
            memory_mib,
            concurrency: 1,
        }
    }

    #[test]
    fn runtime_defaults_fit_the_function_and_yield_to_the_user() {
        let s = Settings::load_over(None, Some(&env(256).runtime_defaults())).unwrap();
        assert_eq!(s.workers.memory_budget, 128 << 20);
        assert_eq!(s.cache.memory, 16 << 20);
        assert!(!s.cache.write_behind);
        assert_eq!(
            s.cache.root,
            std::path::PathBuf::from("/tmp/media-proxy/cache")
        );
        assert_eq!(s.max_size, STREAM_LIMIT);
        assert_eq!(s.store.kind, crate::config::StoreKind::None);
        assert_eq!(s.log.format, crate::config::LogFormat::Json);
        // A file (or the environment) still overrides a runtime default.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[workers]\nmemory_budget = 1000\n").unwrap();
        let s = Settings::load_over(Some(&file), Some(&env(256).runtime_defaults())).unwrap();
        assert_eq!(s.workers.memory_budget, 1000);
    }

    #[test]
    fn streamable_bytes_follow_the_bandwidth_cap() {
        assert_eq!(streamable_bytes(Duration::ZERO), 6_000_000);
        assert_eq!(streamable_bytes(Duration::from_millis(15_500)), 37_000_000);
        assert_eq!(streamable_bytes(Duration::from_secs(900)), STREAM_LIMIT);
    }

    #[test]
    fn limits_lambda_cannot_serve_are_lowered() {
        let mut s = Settings {
            max_size: 10 * STREAM_LIMIT,
            ..Settings::default()
        };
        s.store.max_size = STREAM_LIMIT + 1;
        let s = env(256).impose_limits(s);
        assert_eq!((s.max_size, s.store.max_size), (STREAM_LIMIT, STREAM_LIMIT));
        let s = Settings {
            max_size: 1000,
            ..Settings::default()
        };
        assert_eq!(
            env(256).impose_limits(s).max_size,
            1000,
            "lower limits kept"
        );
    }
}
