//! The one HTTP handler: extract → `request::parse` → `pipeline::run` → `response::build`.
//! Thin on purpose; it also writes the access log line (one per request, when the body has
//! been sent or abandoned).

pub mod deadline;
pub mod request_id;
pub mod state;

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::cache::CacheStatus;
use crate::error::{AppError, ErrorCaching};
use crate::pipeline::store::{Accepted, Conditions};
use crate::relay::Peer;
use crate::request::{self, Route, StorePlan};
use crate::response;
use state::{AppState, StoreMode};

/// Liveness: the process answers HTTP. Not in the access log.
pub async fn healthz() -> Response {
    response::plain(axum::http::StatusCode::OK, "ok")
}

/// Readiness: new image work would be admitted now (the queue is not full). Not in the
/// access log; a load balancer polls it.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.workers.saturated() {
        response::plain(axum::http::StatusCode::SERVICE_UNAVAILABLE, "saturated")
    } else {
        response::plain(axum::http::StatusCode::OK, "ready")
    }
}

/// Handles every other path: the remote mode ignores the path except for `/`.
pub async fn handle(
    State(state): State<AppState>,
    id: Option<axum::Extension<request_id::RequestId>>,
    peer: Option<axum::Extension<Peer>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    state.metrics.in_flight.inc();
    let mut log = AccessLog {
        metrics: state.metrics.clone(),
        mode: "other",
        kind: "-",
        request_id: id.map(|axum::Extension(id)| id),
        method: method.clone(),
        status: 0,
        origin_host: None,
        origin_status: None,
        error: None,
        bytes: 0,
        started,
        head_ms: 0,
        finished: false,
        cache: None,
    };
    let response = if method == Method::OPTIONS {
        response::preflight()
    } else if method != Method::GET && method != Method::HEAD {
        log.error = Some(AppError::MethodNotAllowed.to_string());
        AppError::MethodNotAllowed.into_response()
    } else {
        let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
        let rules = state.store.as_deref().map(|s| &s.rules);
        let head = method == Method::HEAD;
        match request::parse(
            uri.path(),
            uri.query(),
            head,
            range,
            rules,
            &state.remote_keys,
        ) {
            Err(e) => {
                log.error = Some(e.to_string());
                let caching = state
                    .store
                    .as_deref()
                    .filter(|_| matches!(e, request::RequestError::Store(_)))
                    .map_or(ErrorCaching::Remote, |s| s.errors);
                AppError::from(e).into_response_with(&caching)
            }
            Ok(Route::Hello) => response::hello(),
            Ok(Route::Store(plan)) => match state.store.as_deref() {
                Some(store) => {
                    log.mode = "store";
                    log.kind = if plan.transform.is_some() {
                        "resize"
                    } else {
                        "original"
                    };
                    let (cache, response) = store_request(store, plan, &headers, &mut log).await;
                    log.cache = cache;
                    with_cache_status(response, state.cache_header.as_ref(), cache)
                }
                // The parser only routes here when a store is configured.
                None => AppError::Internal("store route without a store".into()).into_response(),
            },
            Ok(Route::Proxy(mut plan)) => {
                let header = state
                    .client_address
                    .header()
                    .and_then(|name| headers.get(name))
                    .and_then(|v| v.to_str().ok());
                plan.client = state
                    .client_address
                    .resolve(peer.map(|axum::Extension(Peer(ip))| ip), header);
                log.mode = "remote";
                log.kind = match plan.transform {
                    None => "passthrough",
                    Some(media::Transform::Emoji { .. }) => "emoji",
                    Some(media::Transform::Avatar { .. }) => "avatar",
                    Some(media::Transform::Static) => "static",
                    Some(media::Transform::Preview) => "preview",
                    Some(media::Transform::Badge) => "badge",
                    Some(media::Transform::SvgRaster | media::Transform::Resize(_)) => "other",
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
                log.cache = cache;
                with_cache_status(response, state.cache_header.as_ref(), cache)
            }
        }
    };
    log.status = response.status().as_u16();
    log.head_ms = started.elapsed().as_millis();
    let (mut parts, body) = response.into_parts();
    // The counting wrapper below hides the body's size; keep an exact one as Content-Length.
    let exact = axum::body::HttpBody::size_hint(&body).exact();
    if let Some(len) = exact {
        parts
            .headers
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| len.into());
    }
    // A body of known length (exactly, or by the Content-Length a passthrough announces)
    // is complete at its last byte: hyper stops polling it there, so the end of the stream
    // is never seen for it. A HEAD answer sends no body at all.
    let expected = if log.method == Method::HEAD {
        Some(0)
    } else {
        exact.or_else(|| {
            parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        })
    };
    log.finished = expected == Some(0);
    // Count what is actually sent; the log line is written when the body is done with.
    let counted = futures_util::stream::unfold(
        (body.into_data_stream(), log),
        move |(mut stream, mut log)| async move {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    log.bytes += chunk.len() as u64;
                    if expected == Some(log.bytes) {
                        log.finished = true;
                    }
                    Some((Ok(chunk), (stream, log)))
                }
                Some(Err(e)) => {
                    log.error = Some(format!("body aborted: {e}"));
                    Some((Err(e), (stream, log)))
                }
                None => {
                    log.finish();
                    None
                }
            }
        },
    );
    Response::from_parts(parts, Body::from_stream(counted))
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
    let conditions = Conditions {
        if_none_match: text(header::IF_NONE_MATCH).map(str::to_owned),
        if_modified_since: text(header::IF_MODIFIED_SINCE)
            .and_then(|d| httpdate::parse_http_date(d).ok()),
        accept: text(header::ACCEPT)
            .map(Accepted::parse)
            .unwrap_or_default(),
    };
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

/// One access-log line, written on drop: after the last byte, or when the client went away.
struct AccessLog {
    metrics: crate::metrics::Metrics,
    /// `remote`, `store` or `other` (`/`, refused methods, unparsable requests).
    mode: &'static str,
    /// What was asked: the remote flag (`emoji`…, `passthrough`), or `resize`/`original`.
    kind: &'static str,
    request_id: Option<request_id::RequestId>,
    method: Method,
    status: u16,
    origin_host: Option<String>,
    origin_status: Option<u16>,
    error: Option<String>,
    bytes: u64,
    started: Instant,
    head_ms: u128,
    finished: bool,
    /// How the variant cache served a transform.
    cache: Option<CacheStatus>,
}

impl AccessLog {
    /// The body was sent to the end: write the line now.
    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
        self.metrics.request_done(
            self.mode,
            self.kind,
            self.status,
            self.started.elapsed().as_secs_f64(),
            self.bytes,
        );
        tracing::info!(
            target: "access",
            request_id = self.request_id.as_ref().map(request_id::RequestId::as_str),
            method = %self.method,
            mode = self.mode,
            kind = self.kind,
            status = self.status,
            origin_host = self.origin_host.as_deref(),
            origin_status = self.origin_status,
            bytes = self.bytes,
            head_ms = self.head_ms as u64,
            total_ms = self.started.elapsed().as_millis() as u64,
            complete = self.finished,
            cache = self.cache.map(CacheStatus::as_str),
            error = self.error.as_deref(),
        );
    }
}
