//! The access log: one line per request (target `access`), written when the body has been
//! sent or abandoned, and the request counters. Input: what the handler learnt about the
//! request and its response; output: the response with a counting body. Uses `metrics`,
//! `pipeline` (its `CacheStatus`) and `routes::request_id`.

use std::time::Instant;

use axum::body::Body;
use axum::http::{header, Method};
use axum::response::Response;
use futures_util::StreamExt;

use super::request_id::RequestId;
use crate::metrics::Metrics;
use crate::pipeline::CacheStatus;

/// One access-log line, written on drop: after the last byte, or when the client went away.
pub(super) struct AccessLog {
    pub(super) metrics: Metrics,
    /// `remote`, `store` or `other` (`/`, refused methods, unparsable requests).
    pub(super) mode: &'static str,
    /// What was asked: the remote flag (`emoji`…, `passthrough`), or `resize`/`original`.
    pub(super) kind: &'static str,
    pub(super) request_id: Option<RequestId>,
    pub(super) method: Method,
    pub(super) status: u16,
    pub(super) origin_host: Option<String>,
    /// The store mode's object key.
    pub(super) key: Option<String>,
    pub(super) origin_status: Option<u16>,
    pub(super) error: Option<String>,
    pub(super) bytes: u64,
    pub(super) started: Instant,
    pub(super) head_ms: u128,
    pub(super) finished: bool,
    /// How the variant cache served a transform.
    pub(super) cache: Option<CacheStatus>,
}

impl AccessLog {
    /// A line for a request that started at `started`.
    pub(super) fn new(
        metrics: Metrics,
        request_id: Option<RequestId>,
        method: Method,
        started: Instant,
    ) -> AccessLog {
        metrics.in_flight.inc();
        AccessLog {
            metrics,
            mode: "other",
            kind: "-",
            request_id,
            method,
            status: 0,
            origin_host: None,
            key: None,
            origin_status: None,
            error: None,
            bytes: 0,
            started,
            head_ms: 0,
            finished: false,
            cache: None,
        }
    }

    /// The response with its body counted: the line is written when the body has been
    /// sent, or abandoned by the client.
    pub(super) fn send(mut self, response: Response) -> Response {
        self.status = response.status().as_u16();
        self.head_ms = self.started.elapsed().as_millis();
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
        let expected = if self.method == Method::HEAD {
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
        self.finished = expected == Some(0);
        // Count what is actually sent; the log line is written when the body is done with.
        let counted = futures_util::stream::unfold(
            (body.into_data_stream(), self),
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
            request_id = self.request_id.as_ref().map(RequestId::as_str),
            method = %self.method,
            mode = self.mode,
            kind = self.kind,
            status = self.status,
            origin_host = self.origin_host.as_deref(),
            key = self.key.as_deref(),
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
