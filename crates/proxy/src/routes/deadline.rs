//! The invocation deadline guard: a middleware that, when a request carries a [`Deadline`]
//! (the Lambda adapter sets it; the standalone server never does), answers `504` shortly
//! before it if the response is not ready, and `413` when a body of known length could not
//! be streamed before it at Lambda's bandwidth — except a range answer (`206`, what
//! browsers ask for video), which is cut to the part that fits, so the browser asks for the
//! next part. Input: the request and the rest of the router; output: its response or one of
//! those. Uses axum, tokio and futures_util.

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
    let ranged = request.headers().contains_key(header::RANGE);
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
                    if let Some(start) = cuttable(&response, ranged) {
                        return shorten(response, start, can);
                    }
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

/// Where a `206` to a `Range` request starts, and its total: such an answer may be cut
/// ([`shorten`]). `None` for anything else.
fn cuttable(response: &Response, ranged: bool) -> Option<(u64, String)> {
    if !ranged || response.status() != StatusCode::PARTIAL_CONTENT {
        return None;
    }
    response
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(content_range_start)
}

/// A `206` cut to its first `can` bytes (Content-Range and Content-Length rewritten; the
/// rest never read): a client may always be sent less of a range than it asked for, and a
/// media element asks for the rest next.
fn shorten(response: Response, (first, total): (u64, String), can: u64) -> Response {
    let last = first + can.max(1) - 1;
    let (mut parts, body) = response.into_parts();
    if let (Ok(range), Ok(length)) = (
        HeaderValue::from_str(&format!("bytes {first}-{last}/{total}")),
        HeaderValue::from_str(&(last - first + 1).to_string()),
    ) {
        parts.headers.insert(header::CONTENT_RANGE, range);
        parts.headers.insert(header::CONTENT_LENGTH, length);
    }
    tracing::info!(
        first,
        last,
        total,
        "range cut to what streams before the Lambda invocation's deadline"
    );
    use futures_util::StreamExt as _;
    let chunks = body
        .into_data_stream()
        .scan(last - first + 1, |left, chunk| {
            let out = match chunk {
                _ if *left == 0 => None,
                Ok(mut data) => {
                    if data.len() as u64 > *left {
                        data.truncate(*left as usize);
                    }
                    *left -= data.len() as u64;
                    Some(Ok(data))
                }
                Err(e) => Some(Err(e)),
            };
            futures_util::future::ready(out)
        });
    Response::from_parts(parts, axum::body::Body::from_stream(chunks))
}

/// `bytes first-last/total` → (first, total); `total` is kept as written (`*` too).
fn content_range_start(value: &str) -> Option<(u64, String)> {
    let (span, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (first, _) = span.split_once('-')?;
    Some((first.trim().parse().ok()?, total.trim().to_owned()))
}

/// An answer that depends on this invocation's time left: never kept by a cache.
fn uncacheable(status: StatusCode, message: String) -> Response {
    let mut response = (status, message).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
