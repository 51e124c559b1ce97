//! Our client of the Lambda Runtime API (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>):
//! the next invocation, its streamed response (the function URL prelude, eight NUL bytes,
//! the body; a body that breaks mid-way ends with the error trailers), an invocation's error
//! and the init error. Input: the Runtime API address and the router's responses; output:
//! the invocations, as events. Uses `hyper` over one keep-alive connection per poll loop.
//!
//! Written here rather than taken from `lambda_runtime`: its client dials the Runtime API
//! without `TCP_NODELAY` and takes no connector we could set it on, and a streamed answer is
//! several small writes (prelude, delimiter, body), so Nagle held each answer's body until
//! the Runtime API's delayed ACK came back — about 40 ms on every invocation
//! (`docs/deploy-aws.md`). The protocol is four requests; event parsing stays with
//! `lambda_http` (its function URL event types).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use tokio::net::TcpStream;

/// Why a Runtime API exchange failed (the loop reconnects and goes on, or stops).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the Runtime API at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("Runtime API exchange failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("Runtime API answered {status} to {what}")]
    Status {
        status: StatusCode,
        what: &'static str,
    },
    #[error("the Runtime API's invocation lacks {0}")]
    Missing(&'static str),
    #[error("cannot build a Runtime API request: {0}")]
    Request(#[from] http::Error),
}

/// One invocation, as the Runtime API handed it over.
#[derive(Debug)]
pub struct Invocation {
    pub request_id: String,
    /// When Lambda kills the invocation (`Lambda-Runtime-Deadline-Ms`).
    pub deadline: SystemTime,
    /// The X-Ray trace header, passed to the request as `x-amzn-trace-id`.
    pub trace_id: Option<String>,
    /// The event (a function URL request, JSON).
    pub event: Bytes,
}

type ApiBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// A Runtime API client: one HTTP/1.1 connection, `TCP_NODELAY`, reconnected when it drops.
pub struct Client {
    addr: String,
    connection: Option<hyper::client::conn::http1::SendRequest<ApiBody>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

const BASE: &str = "/2018-06-01/runtime";

impl Client {
    /// `addr`: `AWS_LAMBDA_RUNTIME_API` (`host:port`).
    pub fn new(addr: &str) -> Client {
        Client {
            addr: addr.to_owned(),
            connection: None,
        }
    }

    async fn send(
        &mut self,
        request: Request<ApiBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, ApiError> {
        let ready = match self.connection.as_mut() {
            Some(c) => c.ready().await.is_ok(),
            None => false,
        };
        if !ready {
            let stream =
                TcpStream::connect(&self.addr)
                    .await
                    .map_err(|source| ApiError::Connect {
                        addr: self.addr.clone(),
                        source,
                    })?;
            // The point of this client: each small write goes out at once.
            stream
                .set_nodelay(true)
                .map_err(|source| ApiError::Connect {
                    addr: self.addr.clone(),
                    source,
                })?;
            let (send, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "Runtime API connection closed");
                }
            });
            self.connection = Some(send);
        }
        let connection = self
            .connection
            .as_mut()
            .ok_or(ApiError::Missing("a connection"))?;
        match connection.send_request(request).await {
            Ok(response) => Ok(response),
            Err(e) => {
                self.connection = None;
                Err(e.into())
            }
        }
    }

    fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.addr)
    }

    /// Long-polls for the next invocation.
    pub async fn next(&mut self) -> Result<Invocation, ApiError> {
        let request = self
            .request(Method::GET, &format!("{BASE}/invocation/next"))
            .body(empty())?;
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(ApiError::Status {
                status: response.status(),
                what: "invocation/next",
            });
        }
        let (parts, body) = response.into_parts();
        let text = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id =
            text("lambda-runtime-aws-request-id").ok_or(ApiError::Missing("its request id"))?;
        let deadline_ms: u64 = text("lambda-runtime-deadline-ms")
            .and_then(|v| v.parse().ok())
            .ok_or(ApiError::Missing("its deadline"))?;
        let event = body.collect().await?.to_bytes();
        Ok(Invocation {
            request_id,
            deadline: UNIX_EPOCH + Duration::from_millis(deadline_ms),
            trace_id: text("lambda-runtime-trace-id"),
            event,
        })
    }

    /// Streams `response` as the answer to invocation `id`: the function URL prelude
    /// (status, headers, cookies), eight NUL bytes, then the body as it comes. A body that
    /// breaks mid-way ends with `Lambda-Runtime-Function-Error-Type`/`-Body` trailers.
    pub async fn respond(
        &mut self,
        id: &str,
        response: http::Response<axum::body::Body>,
    ) -> Result<(), ApiError> {
        let (parts, body) = response.into_parts();
        let lead = [
            Ok(Frame::data(Bytes::from(prelude(
                parts.status,
                &parts.headers,
            )))),
            Ok(Frame::data(Bytes::from_static(&[0u8; 8]))),
        ];
        // The body's chunks; an error becomes the trailers, and nothing follows them.
        let frames = body.into_data_stream().scan(false, |broken, chunk| {
            let frame = match chunk {
                _ if *broken => None,
                Ok(data) => Some(Ok(Frame::data(data))),
                Err(e) => {
                    *broken = true;
                    tracing::warn!(error = %e, "the answer's body broke off while streamed");
                    Some(Ok(Frame::trailers(error_trailers(&e.to_string()))))
                }
            };
            futures_util::future::ready(frame)
        });
        let stream = futures_util::stream::iter(lead).chain(frames);
        let request = self
            .request(Method::POST, &format!("{BASE}/invocation/{id}/response"))
            .header("lambda-runtime-function-response-mode", "streaming")
            .header(
                header::CONTENT_TYPE,
                "application/vnd.awslambda.http-integration-response",
            )
            .header(
                header::TRAILER,
                "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
            )
            .body(StreamBody::new(stream).boxed_unsync())?;
        let answer = self.send(request).await?;
        let status = answer.status();
        // Read to the end, so the connection can carry the next poll.
        let _ = answer.into_body().collect().await;
        if !status.is_success() {
            return Err(ApiError::Status {
                status,
                what: "the response",
            });
        }
        Ok(())
    }

    /// Reports that invocation `id` failed before it had an answer.
    pub async fn invocation_error(
        &mut self,
        id: &str,
        kind: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let path = format!("{BASE}/invocation/{id}/error");
        self.error(path, kind, message).await
    }

    /// Reports that the function could not start (`/init/error`).
    pub async fn init_error(&mut self, kind: &str, message: &str) -> Result<(), ApiError> {
        self.error(format!("{BASE}/init/error"), kind, message)
            .await
    }

    async fn error(&mut self, path: String, kind: &str, message: &str) -> Result<(), ApiError> {
        let body = serde_json::json!({ "errorType": kind, "errorMessage": message }).to_string();
        let request = self
            .request(Method::POST, &path)
            .header("lambda-runtime-function-error-type", kind)
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(body))?;
        let answer = self.send(request).await?;
        let _ = answer.into_body().collect().await;
        Ok(())
    }
}

fn empty() -> ApiBody {
    full(String::new())
}

fn full(text: String) -> ApiBody {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The function URL response prelude: `statusCode`, `headers` (repeated names joined with
/// commas), `cookies` (every `Set-Cookie`); `Content-Type` defaults to octet-stream, as the
/// service would assume.
fn prelude(status: StatusCode, headers: &HeaderMap) -> String {
    let mut map = serde_json::Map::new();
    let mut cookies = Vec::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if name == header::SET_COOKIE {
            cookies.extend(values.iter().map(|v| serde_json::Value::from(*v)));
        } else {
            map.insert(name.as_str().to_owned(), values.join(", ").into());
        }
    }
    map.entry("content-type")
        .or_insert_with(|| "application/octet-stream".into());
    serde_json::json!({
        "statusCode": status.as_u16(),
        "headers": map,
        "cookies": cookies,
    })
    .to_string()
}

/// The trailers that tell Lambda a streamed body broke: the type and the message, base64.
fn error_trailers(message: &str) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert(
        "lambda-runtime-function-error-type",
        HeaderValue::from_static("Runtime.StreamError"),
    );
    let body = base64::engine::general_purpose::STANDARD.encode(message);
    if let Ok(v) = HeaderValue::from_str(&body) {
        trailers.insert("lambda-runtime-function-error-body", v);
    }
    trailers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prelude_joins_repeated_headers_and_lifts_cookies() {
        let mut h = HeaderMap::new();
        h.append(header::VARY, HeaderValue::from_static("Accept"));
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        let v: serde_json::Value =
            serde_json::from_str(&prelude(StatusCode::NOT_FOUND, &h)).unwrap();
        assert_eq!(v["statusCode"], 404);
        assert_eq!(v["headers"]["vary"], "Accept, Origin");
        assert_eq!(v["headers"]["content-type"], "application/octet-stream");
        assert_eq!(v["cookies"], serde_json::json!(["a=1", "b=2"]));
        assert!(v["headers"].get("set-cookie").is_none());
    }
}
