//! A request id for every request: the client's (or the load balancer's) `X-Request-Id`
//! when it is a sane token, else a new UUID. It is echoed in the response, written in the
//! access log line and attached to every log event of the request (a `tracing` span).
//!
//! Input: the request's `X-Request-Id`; output: the [`RequestId`] extension and the
//! response header. Uses nothing of ours.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being handled (a request extension).
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only ASCII tokens are ever stored (see `accept`).
        self.0.to_str().unwrap_or_default()
    }
}

/// At most this many characters of a caller's id are kept; longer ones are replaced.
const MAX_LEN: usize = 128;

/// A caller's id is used when it is 1–128 characters of letters, digits and `-_.:/+=`
/// (UUIDs, AWS trace ids, base64): anything else could forge log lines or headers.
fn accept(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
}

/// Middleware: finds or makes the id, runs the request inside its span, echoes it.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|v| accept(v))
        .cloned()
        .unwrap_or_else(|| {
            let fresh = uuid::Uuid::new_v4().hyphenated().to_string();
            // A hyphenated UUID is always a valid header value.
            HeaderValue::from_str(&fresh).unwrap_or(HeaderValue::from_static("-"))
        });
    let id = RequestId(id);
    let span = tracing::info_span!("request", id = id.as_str());
    request.extensions_mut().insert(id.clone());
    let mut response = next.run(request).instrument(span).await;
    response.headers_mut().insert(X_REQUEST_ID, id.0);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_tokens_are_taken_from_the_caller() {
        for good in [
            "abc",
            "3f2b6c1e-8a4d-4c1b-9f0e-2a7d5e6b8c90",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            "a+b/c=",
        ] {
            assert!(accept(&HeaderValue::from_static(good)), "{good}");
        }
        let long = "a".repeat(129);
        for bad in ["", "a b", "x\"y", "<script>", long.as_str()] {
            assert!(!accept(&HeaderValue::from_str(bad).unwrap()), "{bad:?}");
        }
    }
}
