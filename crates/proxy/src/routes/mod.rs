//! The one HTTP handler: extract → `request::parse` → `pipeline::run` → `response::build`,
//! the answer sent through the [`access_log`]. Thin on purpose. Input: axum's request parts
//! and the shared [`state`]; output: an axum `Response`. Uses `error`, `metrics`,
//! `pipeline`, `relay`, `request`, `response`, `workers`.

mod access_log;
pub mod deadline;
pub mod request_id;
pub mod state;

use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::pipeline::CacheStatus;
use crate::relay::Peer;
use crate::request::{self, Conditions, Plan, Route, StorePlan};
use crate::response;
use crate::response::ErrorCaching;
use access_log::AccessLog;
use state::{AppState, StoreMode};

/// Liveness: the process answers HTTP. Not in the access log.
pub async fn healthz() -> Response {
    response::plain(axum::http::StatusCode::OK, "ok")
}

/// Readiness: new image work would be admitted now (the queue is not full) and the store,
/// when there is one, is not resting behind its open breaker. The variant cache being down
/// does not count: answers go on without it. Not in the access log; a load balancer polls
/// it. Ready workers that run without part of their sandbox (a kernel that refused the
/// seccomp filter) say so in the body: `ready; workers unconfined: …`.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let unavailable = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    if state.workers.saturated() {
        response::plain(unavailable, "saturated")
    } else if state
        .store
        .as_ref()
        .is_some_and(|s| s.pipeline.store_resting())
    {
        response::plain(unavailable, "store unavailable")
    } else {
        let unconfined = state
            .workers
            .sandbox()
            .and_then(|s| s.confinement())
            .and_then(|c| c.refused);
        match unconfined {
            Some(why) => response::plain(
                axum::http::StatusCode::OK,
                format!("ready; workers unconfined: {why}"),
            ),
            None => response::plain(axum::http::StatusCode::OK, "ready"),
        }
    }
}

/// Handles every other path: the method, [`request::parse`], the mode's pipeline and
/// [`response`], the answer sent through the access log.
pub async fn handle(
    State(state): State<AppState>,
    id: Option<axum::Extension<request_id::RequestId>>,
    peer: Option<axum::Extension<Peer>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let request_id = id.map(|axum::Extension(id)| id);
    let mut log = AccessLog::new(
        state.metrics.clone(),
        request_id,
        method.clone(),
        Instant::now(),
    );
    let response = if method == Method::OPTIONS {
        response::preflight()
    } else if method != Method::GET && method != Method::HEAD {
        log.error = Some(AppError::MethodNotAllowed.to_string());
        AppError::MethodNotAllowed.into_response()
    } else {
        let peer = peer.map(|axum::Extension(Peer(ip))| ip);
        route(
            &state,
            method == Method::HEAD,
            &uri,
            &headers,
            peer,
            &mut log,
        )
        .await
    };
    log.send(response)
}

/// A GET or HEAD: parsed, then answered by its mode.
async fn route(
    state: &AppState,
    head: bool,
    uri: &Uri,
    headers: &HeaderMap,
    peer: Option<std::net::IpAddr>,
    log: &mut AccessLog,
) -> Response {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let rules = state.store.as_deref().map(|s| &s.rules);
    let parsed = request::parse(
        uri.path(),
        uri.query(),
        head,
        range,
        rules,
        &state.remote_keys,
    );
    let (cache, response) = match parsed {
        Err(e) => {
            log.error = Some(e.to_string());
            let caching = state
                .store
                .as_deref()
                .filter(|_| matches!(e, request::RequestError::Store(_)))
                .map_or(ErrorCaching::Remote, |s| s.errors);
            (None, AppError::from(e).into_response_with(&caching))
        }
        Ok(Route::Hello) => (None, response::hello()),
        Ok(Route::Store(plan)) => match state.store.as_deref() {
            Some(store) => {
                log.mode = "store";
                log.key = Some(plan.key.clone());
                log.kind = if plan.transform.is_some() {
                    "resize"
                } else {
                    "original"
                };
                store_request(store, plan, headers, log).await
            }
            // The parser only routes here when a store is configured.
            None => (
                None,
                AppError::Internal("store route without a store".into()).into_response(),
            ),
        },
        Ok(Route::Proxy(mut plan)) => {
            let header = state
                .client_address
                .header()
                .and_then(|name| headers.get(name))
                .and_then(|v| v.to_str().ok());
            plan.client = state.client_address.resolve(peer, header);
            remote_request(state, plan, log).await
        }
    };
    log.cache = cache;
    with_cache_status(response, state.cache_header.as_ref(), cache)
}

/// The remote mode: the pipeline, the response (or the fallback image), the origin's
/// failure counted.
async fn remote_request(
    state: &AppState,
    plan: Plan,
    log: &mut AccessLog,
) -> (Option<CacheStatus>, Response) {
    log.mode = "remote";
    log.kind = match plan.transform {
        None => "passthrough",
        Some(media::Transform::Emoji { .. }) => "emoji",
        Some(media::Transform::Avatar { .. }) => "avatar",
        Some(media::Transform::Static) => "static",
        Some(media::Transform::Preview) => "preview",
        Some(media::Transform::Badge) => "badge",
        Some(media::Transform::Converted | media::Transform::Resize(_)) => "other",
    };
    log.origin_host = plan.url.host_str().map(str::to_owned);
    tracing::debug!(url = %plan.url, "proxying");
    let fallback = plan.fallback;
    let (cache, result) = state.pipeline.run(plan).await;
    let response = match result {
        Ok(reply) => response::build(reply),
        Err(e) => {
            log.origin_status = e.origin_status();
            // A remembered failure (negative cache) did not reach the origin.
            let asked = cache != Some(CacheStatus::Hit);
            if let Some(class) = e.origin_class().filter(|_| asked) {
                state
                    .metrics
                    .origin_errors
                    .get_or_create(&vec![("class", class)])
                    .inc();
            }
            log.error = Some(e.to_string());
            if fallback {
                response::fallback(state.fallback_png.clone(), e.status().0)
            } else {
                e.into_response()
            }
        }
    };
    (cache, response)
}

/// The store mode: conditions from the headers, the pipeline, the response.
async fn store_request(
    store: &StoreMode,
    plan: StorePlan,
    headers: &HeaderMap,
    log: &mut AccessLog,
) -> (Option<CacheStatus>, Response) {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    let conditions = Conditions::parse(
        text(header::IF_NONE_MATCH),
        text(header::IF_MODIFIED_SINCE),
        text(header::ACCEPT),
    );
    tracing::debug!(key = %plan.key, "store request");
    let (cache, result) = store.pipeline.run(plan, conditions).await;
    let response = match result {
        Ok(reply) => response::store::build(reply, &store.success),
        Err(e) => {
            log.error = Some(e.to_string());
            e.into_response_with(&store.errors)
        }
    };
    (cache, response)
}

/// Adds the configured `X-Cache` header to a transform's answer.
fn with_cache_status(
    mut response: Response,
    name: Option<&HeaderName>,
    cache: Option<CacheStatus>,
) -> Response {
    if let (Some(name), Some(cache)) = (name, cache) {
        response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_static(cache.as_str()));
    }
    response
}

/// `GET /metrics`: the counters in the Prometheus text format. Not in the access log.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let (budget, reserved) = state.workers.memory();
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    state.metrics.memory_budget_bytes.set(gauge(budget));
    state.metrics.memory_reserved_bytes.set(gauge(reserved));
    (
        [
            (
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        state.metrics.encode(),
    )
        .into_response()
}
