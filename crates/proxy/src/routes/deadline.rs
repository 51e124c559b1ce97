//! The invocation deadline guard: a middleware that, when a request carries a [`Deadline`]
//! (the Lambda adapter sets it; the standalone server never does), answers `504` shortly
//! before it if the response is not ready, and `413` when a body of known length could not
//! be streamed before it at Lambda's bandwidth. Input: the request and the rest of the
//! router; output: its response or one of those. Uses axum and tokio only.

use std::time::{Duration, SystemTime};

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The most a streamed function URL response may carry (AWS: 200 MB per response).
pub const STREAM_LIMIT: u64 = 200_000_000;

/// Kept back from an invocation's deadline to send the `504` before Lambda stops the function.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// A streamed response's first 6 MB leave at full speed; the rest at most 2 MB/s (AWS's
/// documented bandwidth cap for response streaming). Decimal megabytes: the safe reading.
const UNCAPPED_BYTES: u64 = 6_000_000;
const CAPPED_BYTES_PER_SEC: u64 = 2_000_000;

/// The most a streamed body can carry when `time` is left before the deadline.
pub fn streamable_bytes(time: Duration) -> u64 {
    let capped = CAPPED_BYTES_PER_SEC.saturating_mul(time.as_millis() as u64) / 1000;
    UNCAPPED_BYTES.saturating_add(capped).min(STREAM_LIMIT)
}

/// When the current invocation must have answered by (a request extension set by the
/// Lambda adapter; absent under the standalone server).
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub SystemTime);

/// Middleware: under Lambda, answers `504` just before the invocation's deadline when the
/// response has not started, instead of letting Lambda cut the function off; and `413` when
/// a body of known length could not be streamed before the deadline at Lambda's bandwidth
/// (a truncated video is worse than a clear refusal). Dropping the handler's response
/// cancels its work (downloads, renders nobody else waits for).
pub async fn enforce_deadline(request: Request, next: Next) -> Response {
    let Some(Deadline(at)) = request.extensions().get::<Deadline>().copied() else {
        return next.run(request).await;
    };
    let head = request.method() == axum::http::Method::HEAD;
    let left = || {
        at.duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(DEADLINE_MARGIN)
    };
    match tokio::time::timeout(left(), next.run(request)).await {
        Ok(response) => {
            let length = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let can = streamable_bytes(left());
            match length {
                Some(length) if length > can && !head => {
                    tracing::warn!(
                        length,
                        can,
                        "body too large to stream before the Lambda invocation's deadline: answering 413"
                    );
                    drop(response);
                    uncacheable(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "file too large to stream within the function's time limit (limit: {can} bytes)"
                        ),
                    )
                }
                _ => response,
            }
        }
        Err(_) => {
            tracing::warn!("the Lambda invocation's time limit ran out: answering 504");
            uncacheable(
                StatusCode::GATEWAY_TIMEOUT,
                "the function's time limit ran out before the answer was ready".to_owned(),
            )
        }
    }
}

/// An answer that depends on this invocation's time left: never kept by a cache.
fn uncacheable(status: StatusCode, message: String) -> Response {
    let mut response = (status, message).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
