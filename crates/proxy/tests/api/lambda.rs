//! The binary in Lambda mode against a local implementation of the Lambda Runtime API, fed
//! with function URL events: it must answer like the standalone server, streamed.
//!
//! The emulator follows the documented custom-runtime protocol
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html> and the response
//! streaming section of <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-custom.html>):
//! `GET /2018-06-01/runtime/invocation/next` long-polls for the next event and carries the
//! request id and deadline as headers; the function posts to `…/{id}/response` (buffered
//! JSON, or with `Lambda-Runtime-Function-Response-Mode: streaming` a chunked body made of a
//! JSON prelude, eight NUL bytes and the payload, with errors in trailers), `…/{id}/error`
//! or `/init/error`. It applies the service's size rules: 6 MB for a buffered response,
//! 200 MB for a streamed one.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::helpers::{corpus_bytes, spawn_origin, Origin};

/// The largest buffered response the Lambda service accepts.
const BUFFERED_LIMIT: usize = 6 * 1024 * 1024;
/// The largest streamed response a function URL returns.
const STREAMED_LIMIT: usize = 200_000_000;
/// A streamed response's first 6 MB are uncapped; the rest goes at most 2 MB/s.
const UNCAPPED: usize = 6 * 1024 * 1024;
const CAPPED_PER_SEC: usize = 2 * 1024 * 1024;

/// What the function sent back for one invocation.
#[derive(Debug)]
enum Outcome {
    /// An HTTP response (function URL integration format).
    Http(HttpReply),
    /// `/error`, or a response the service refuses (`Function.ResponseSizeTooLarge`).
    Error { kind: String, body: String },
}

#[derive(Debug)]
pub(crate) struct HttpReply {
    pub(crate) streamed: bool,
    pub(crate) status: u16,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Vec<u8>,
    /// Body chunks as they arrived (a streamed answer arrives in many).
    chunks: usize,
    /// `Lambda-Runtime-Function-Error-Type` from the trailers: the stream broke.
    error_trailer: Option<String>,
}

struct Invocation {
    id: String,
    event: Value,
    deadline_ms: u128,
    reply: oneshot::Sender<Outcome>,
}

struct ApiState {
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    /// When the function first asked for work: its initialisation is over.
    first_poll: OnceLock<Instant>,
    init_errors: Mutex<Vec<String>>,
}

pub(crate) struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<ApiState>,
    queue: mpsc::UnboundedSender<Invocation>,
    serial: Mutex<u64>,
}

impl RuntimeApi {
    async fn start() -> RuntimeApi {
        let (queue, receiver) = mpsc::unbounded_channel();
        let state = Arc::new(ApiState {
            queue: tokio::sync::Mutex::new(receiver),
            pending: Mutex::new(HashMap::new()),
            first_poll: OnceLock::new(),
            init_errors: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The real Runtime API server (Go) sends with TCP_NODELAY, as Go does by default;
        // without it, Nagle's algorithm against the client's delayed ACKs adds ~40 ms here.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, router).await });
        RuntimeApi {
            addr,
            state,
            queue,
            serial: Mutex::new(0),
        }
    }

    /// Delivers `event` to the function with `timeout` as the function's time limit and
    /// waits for its answer (bounded).
    async fn invoke(&self, event: Value, timeout: Duration) -> Outcome {
        let id = {
            let mut n = self.serial.lock().unwrap();
            *n += 1;
            format!("8476a536-e9f4-11e8-9739-{:012x}", *n)
        };
        let deadline_ms = (SystemTime::now() + timeout)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Invocation {
                id,
                event,
                deadline_ms,
                reply,
            })
            .unwrap_or_else(|_| panic!("emulator gone"));
        // As the service does: an invocation not finished by its deadline (streaming
        // included) is stopped and reported as a time-out; the client sees a 502.
        match tokio::time::timeout(timeout, answer).await {
            Ok(outcome) => outcome.expect("the emulator records the answer"),
            Err(_) => Outcome::Error {
                kind: "Sandbox.Timedout".into(),
                body: format!("Task timed out after {:.2} seconds", timeout.as_secs_f64()),
            },
        }
    }

    /// `method target` with `timeout` as the function's limit; an HTTP answer is expected
    /// (an invocation error or time-out fails the test).
    async fn invoke_http(&self, method: &str, target: &str, timeout: Duration) -> HttpReply {
        match self.invoke(url_event(method, target, &[]), timeout).await {
            Outcome::Http(r) => r,
            other => panic!("{method} {target}: an HTTP answer, not {other:?}"),
        }
    }

    pub(crate) async fn get(&self, target: &str, headers: &[(&str, &str)]) -> HttpReply {
        match self
            .invoke(url_event("GET", target, headers), Duration::from_secs(16))
            .await
        {
            Outcome::Http(r) => r,
            Outcome::Error { kind, body } => panic!("{target}: invocation error {kind}: {body}"),
        }
    }
}

async fn next(State(state): State<Arc<ApiState>>) -> Response {
    state.first_poll.get_or_init(Instant::now);
    let Some(invocation) = state.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    state
        .pending
        .lock()
        .unwrap()
        .insert(invocation.id.clone(), invocation.reply);
    (
        [
            ("Lambda-Runtime-Aws-Request-Id", invocation.id.clone()),
            (
                "Lambda-Runtime-Deadline-Ms",
                invocation.deadline_ms.to_string(),
            ),
            (
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:123456789012:function:media-proxy".to_owned(),
            ),
            (
                "Lambda-Runtime-Trace-Id",
                "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
                    .to_owned(),
            ),
            ("Content-Type", "application/json".to_owned()),
        ],
        invocation.event.to_string(),
    )
        .into_response()
}

async fn respond(
    State(state): State<Arc<ApiState>>,
    UrlPath(id): UrlPath<String>,
    request: Request,
) -> Response {
    let Some(reply) = state.pending.lock().unwrap().remove(&id) else {
        return (StatusCode::BAD_REQUEST, "unknown or answered invocation").into_response();
    };
    let streamed = request
        .headers()
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|v| v == "streaming");
    let mut body = request.into_body();
    let mut bytes = Vec::new();
    let mut chunks = 0;
    let mut trailers = HeaderMap::new();
    let mut capped_since: Option<Instant> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the function's response body arrives whole");
        match frame.into_data() {
            Ok(data) => {
                chunks += 1;
                bytes.extend_from_slice(&data);
                // The service's bandwidth cap: past the first 6 MB, at most 2 MB/s (read
                // no faster, so the function feels the back-pressure).
                if streamed && bytes.len() > UNCAPPED {
                    let since = *capped_since.get_or_insert_with(Instant::now);
                    let due = Duration::from_secs_f64(
                        (bytes.len() - UNCAPPED) as f64 / CAPPED_PER_SEC as f64,
                    );
                    if let Some(wait) = due.checked_sub(since.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers.extend(t);
                }
            }
        }
    }
    let outcome = if streamed {
        streamed_reply(&bytes, chunks, &trailers)
    } else {
        buffered_reply(&bytes)
    };
    let _ = reply.send(outcome);
    (StatusCode::ACCEPTED, "{\"status\":\"OK\"}").into_response()
}

/// Prelude (JSON), eight NUL bytes, payload.
fn streamed_reply(bytes: &[u8], chunks: usize, trailers: &HeaderMap) -> Outcome {
    let Some(split) = bytes.windows(8).position(|w| w == [0u8; 8]) else {
        return Outcome::Error {
            kind: "Runtime.InvalidStream".into(),
            body: "no prelude delimiter".into(),
        };
    };
    let prelude: Value = serde_json::from_slice(&bytes[..split]).expect("prelude is JSON");
    let body = bytes[split + 8..].to_vec();
    if body.len() > STREAMED_LIMIT {
        return Outcome::Error {
            kind: "Function.ResponseSizeTooLarge".into(),
            body: format!("{} bytes streamed", body.len()),
        };
    }
    Outcome::Http(HttpReply {
        streamed: true,
        status: prelude["statusCode"].as_u64().unwrap_or(200) as u16,
        headers: string_map(&prelude["headers"]),
        body,
        chunks,
        error_trailer: trailers
            .get("lambda-runtime-function-error-type")
            .map(|v| v.to_str().unwrap().to_owned()),
    })
}

/// `{"statusCode", "headers", "body", "isBase64Encoded"}`, at most 6 MB.
fn buffered_reply(bytes: &[u8]) -> Outcome {
    if bytes.len() > BUFFERED_LIMIT {
        return Outcome::Error {
            kind: "Function.ResponseSizeTooLarge".into(),
            body: format!("{} bytes buffered", bytes.len()),
        };
    }
    let v: Value = serde_json::from_slice(bytes).expect("a buffered response is JSON");
    let text = v["body"].as_str().unwrap_or_default();
    let body = if v["isBase64Encoded"].as_bool().unwrap_or(false) {
        panic!("base64 bodies are not expected from this function")
    } else {
        text.as_bytes().to_vec()
    };
    Outcome::Http(HttpReply {
        streamed: false,
        status: v["statusCode"].as_u64().unwrap_or(200) as u16,
        headers: string_map(&v["headers"]),
        body,
        chunks: 1,
        error_trailer: None,
    })
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

async fn fail(
    State(state): State<Arc<ApiState>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(reply) = state.pending.lock().unwrap().remove(&id) {
        let kind = headers
            .get("lambda-runtime-function-error-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let _ = reply.send(Outcome::Error { kind, body });
    }
    (StatusCode::ACCEPTED, "{\"status\":\"OK\"}").into_response()
}

async fn init_error(State(state): State<Arc<ApiState>>, body: String) -> Response {
    state.init_errors.lock().unwrap().push(body);
    (StatusCode::ACCEPTED, "{\"status\":\"OK\"}").into_response()
}

/// A function URL event (payload format 2.0) for `method target`.
fn url_event(method: &str, target: &str, headers: &[(&str, &str)]) -> Value {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let host = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws";
    let mut map = serde_json::Map::new();
    map.insert("host".into(), host.into());
    map.insert("x-forwarded-proto".into(), "https".into());
    map.insert("x-forwarded-for".into(), "198.51.100.7".into());
    for (k, v) in headers {
        map.insert(k.to_ascii_lowercase(), (*v).into());
    }
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": map,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefghijklmnopqrstuvwxyz012345",
            "domainName": host,
            "domainPrefix": "abcdefghijklmnopqrstuvwxyz012345",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": "test"
            },
            "requestId": "c0ffee00-0000-4000-8000-000000000000",
            "routeKey": "$default",
            "stage": "$default",
            "time": "28/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1_795_867_200_000u64
        },
        "isBase64Encoded": false
    })
}

/// A child process killed when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary under test: this build's, or `MEDIA_PROXY_LAMBDA_BIN` (a command line, e.g.
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu target/lambda/media-proxy/bootstrap` to run
/// these tests against the arm64 Lambda build).
fn media_proxy(env: &[(&str, &str)], log: &Path) -> Command {
    let mut cmd = match std::env::var("MEDIA_PROXY_LAMBDA_BIN") {
        Ok(line) if !line.trim().is_empty() => {
            let mut words = line.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap());
            cmd.args(words);
            cmd
        }
        _ => Command::new(env!("CARGO_BIN_EXE_media-proxy")),
    };
    for (key, _) in std::env::vars() {
        if key.starts_with("MEDIA_PROXY__") || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied())
        .env("MEDIA_PROXY__LOG__FILTER", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    cmd
}

/// The function's environment as the Lambda service sets it for a custom runtime.
fn lambda_env(api: &RuntimeApi) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", api.addr.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "media-proxy".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("_HANDLER", "bootstrap".into()),
    ]
}

pub(crate) struct Function {
    pub(crate) api: RuntimeApi,
    _process: Process,
    started: Instant,
    dir: tempfile::TempDir,
}

impl Function {
    /// Starts the binary the way Lambda does (no arguments, the Runtime API in the
    /// environment) with `settings` as extra variables.
    pub(crate) async fn start(settings: &[(&str, &str)]) -> Function {
        let api = RuntimeApi::start().await;
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let mut env: Vec<(&str, String)> = lambda_env(&api);
        env.push(("MEDIA_PROXY__CACHE__ROOT", cache.display().to_string()));
        env.extend(settings.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let started = Instant::now();
        let child = media_proxy(&env, &dir.path().join("stderr.log"))
            .spawn()
            .unwrap();
        Function {
            api,
            _process: Process(child),
            started,
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

/// The same binary as a standalone server with the same settings.
struct Server {
    _process: Process,
    base: String,
    _dir: tempfile::TempDir,
}

async fn start_server(settings: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::store_s3::free_port();
    let cache = dir.path().join("cache");
    let mut env: Vec<(&str, String)> = vec![
        ("MEDIA_PROXY__CACHE__ROOT", cache.display().to_string()),
        ("MEDIA_PROXY__LISTEN", format!("127.0.0.1:{port}")),
    ];
    env.extend(settings.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let process = Process(
        media_proxy(&env, &dir.path().join("stderr.log"))
            .arg("serve")
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = client();
    for _ in 0..500 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return Server {
                _process: process,
                base,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server did not start");
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Headers that differ between any two answers (dates, ids) or belong to the transport
/// (the function URL front end frames a streamed body itself).
const PER_ANSWER: [&str; 4] = [
    "date",
    "x-request-id",
    "content-length",
    "transfer-encoding",
];

fn comparable(headers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(k, _)| !PER_ANSWER.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn server_get(server: &Server, target: &str) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let r = client()
        .get(format!("{}{target}", server.base))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

fn proxied(origin: &Origin, name: &str, path: &str, flags: &str) -> String {
    let url: String = form_urlencoded::byte_serialize(origin.url(path).as_bytes()).collect();
    format!("/{name}?url={url}{flags}")
}

const ORIGIN_ALLOWED: (&str, &str) = ("MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS", "127.0.0.2/32");

#[tokio::test]
async fn lambda_mode_answers_like_the_server_and_streams() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let settings = [ORIGIN_ALLOWED];
    let function = Function::start(&settings).await;
    let server = start_server(&settings).await;

    // The seed's check of a fresh deployment, and the cold start it costs.
    let hello = function.api.get("/", &[]).await;
    let answered = function.started.elapsed();
    let ready = *function
        .api
        .state
        .first_poll
        .get()
        .expect("the function polled for work")
        - function.started;
    eprintln!(
        "lambda cold start: first poll of the Runtime API after {ready:?}, first answer after {answered:?}"
    );
    assert_eq!(
        (hello.status, hello.body.as_slice()),
        (200, &b"Hello World!"[..])
    );
    assert!(hello.streamed, "answers use the streaming response mode");
    assert!(function.api.state.init_errors.lock().unwrap().is_empty());

    let big = 9_000_000;
    let cases = [
        ("/".to_owned(), "hello"),
        (
            proxied(
                &origin,
                "photo.jpg",
                "/corpus/jpeg/exif-orientation-pillow/hopper_orientation_1_none.jpg",
                "",
            ),
            "passthrough",
        ),
        (
            proxied(
                &origin,
                "anim.webp",
                "/corpus/gif/image-gif/anim-gr.gif",
                "&emoji=1",
            ),
            "emoji",
        ),
        (
            proxied(
                &origin,
                "clip.mp4",
                &format!("/padded/{big}/video/h264_640x360_2s.mp4"),
                "",
            ),
            "video",
        ),
        (
            proxied(&origin, "gone.png", "/status/404", "&static=1"),
            "origin 404",
        ),
        (
            "/?url=ftp%3A%2F%2Fexample.com%2Fa.png".to_owned(),
            "bad url",
        ),
    ];
    for (target, what) in &cases {
        let lambda = function
            .api
            .get(target, &[("accept", "image/webp,*/*")])
            .await;
        let (status, headers, body) = server_get(&server, target).await;
        assert!(lambda.streamed, "{what}: streamed");
        assert_eq!(lambda.error_trailer, None, "{what}: stream complete");
        assert_eq!(lambda.status, status, "{what}: status");
        assert_eq!(
            comparable(&lambda.headers),
            comparable(&headers),
            "{what}: headers"
        );
        assert!(
            lambda.headers.contains_key("x-request-id"),
            "{what}: request id"
        );
        assert_eq!(lambda.body.len(), body.len(), "{what}: body length");
        assert!(lambda.body == body, "{what}: body bytes");
        match *what {
            "passthrough" => assert_eq!(
                lambda.body,
                corpus_bytes("jpeg/exif-orientation-pillow/hopper_orientation_1_none.jpg")
            ),
            "emoji" => {
                let d = image_webp::WebPDecoder::new(Cursor::new(&lambda.body)).unwrap();
                assert!(d.is_animated(), "emoji of an animated GIF stays animated");
                // 100×50: inside the emoji box (height 128), never enlarged.
                assert_eq!(d.dimensions(), (100, 50));
                assert_eq!(lambda.headers["content-type"], "image/webp");
            }
            "video" => {
                // Above the 6 MB a buffered Lambda response may carry, and it left the
                // function in pieces, not as one buffered blob.
                assert_eq!(lambda.body.len(), big);
                assert!(lambda.body.len() > BUFFERED_LIMIT);
                let mut expected = corpus_bytes("video/h264_640x360_2s.mp4");
                expected.resize(big, 0);
                assert!(lambda.body == expected, "video bytes intact");
                assert!(
                    lambda.chunks > 10,
                    "streamed in chunks, got {}",
                    lambda.chunks
                );
                assert_eq!(lambda.headers["content-type"], "video/mp4");
            }
            _ => {}
        }
    }
    let log = function.log();
    assert!(!log.contains("panicked"), "no panic in the function: {log}");
}

/// A body that breaks mid-way (a 3 MB BMP passed through, its connection reset after
/// 200 kB) ends the streamed answer with the error trailers, not as a complete answer; the
/// function then serves the next invocation.
#[tokio::test]
async fn a_body_broken_mid_stream_ends_with_the_error_trailers() {
    use crate::faults::{Fault, FaultProxy};
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let reset = FaultProxy::start_on(
        Ipv4Addr::new(127, 0, 0, 2),
        origin.addr,
        Fault::ResetAfter(200_000),
    )
    .await;
    let function = Function::start(&[ORIGIN_ALLOWED]).await;
    let url: String = form_urlencoded::byte_serialize(
        format!("http://{}/generated/1000x1000.bmp", reset.addr).as_bytes(),
    )
    .collect();
    let broken = function.api.get(&format!("/b.bmp?url={url}"), &[]).await;
    assert_eq!(broken.status, 200, "the head went out first");
    assert_eq!(
        broken.error_trailer.as_deref(),
        Some("Runtime.StreamError"),
        "{:?}",
        broken.headers
    );
    assert_eq!(function.api.get("/", &[]).await.status, 200);
}

/// An event that is not a function URL request is that invocation's error
/// (`/invocation/{id}/error`), and the function goes on.
#[tokio::test]
async fn an_event_that_is_not_a_request_is_an_invocation_error() {
    let function = Function::start(&[]).await;
    match function
        .api
        .invoke(json!(["not", "an", "event"]), Duration::from_secs(10))
        .await
    {
        Outcome::Error { kind, .. } => assert_eq!(kind, "Runtime.InvalidEvent"),
        other => panic!("an invocation error, not {other:?}"),
    }
    assert_eq!(function.api.get("/", &[]).await.status, 200);
}

/// A function that cannot start (its cache directory cannot be made) says why to
/// `/init/error` and stops.
#[tokio::test]
async fn a_function_that_cannot_start_reports_an_init_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let root = file.join("cache");
    let mut function =
        Function::start(&[("MEDIA_PROXY__CACHE__ROOT", root.to_str().unwrap())]).await;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = function._process.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the function stops"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success());
    let errors = function.api.state.init_errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}\n{}", function.log());
    assert!(errors[0].contains("cache.root"), "{}", errors[0]);
    assert!(errors[0].contains("Runtime.InitError"), "{}", errors[0]);
}

#[tokio::test]
async fn an_invocation_near_its_deadline_gets_a_clear_504() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let function = Function::start(&[ORIGIN_ALLOWED]).await;
    let target = proxied(
        &origin,
        "slow.webp",
        "/corpus/gif/image-gif/anim-gr.gif?delay=6000",
        "&emoji=1",
    );
    let started = Instant::now();
    let reply = function
        .api
        .invoke_http("GET", &target, Duration::from_millis(2000))
        .await;
    let took = started.elapsed();
    assert_eq!(reply.status, 504);
    assert_eq!(
        String::from_utf8_lossy(&reply.body),
        "the function's time limit ran out before the answer was ready"
    );
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert!(reply.headers.contains_key("x-request-id"));
    assert!(
        took < Duration::from_millis(2000),
        "answered before the deadline ({took:?})"
    );
    // The function is still healthy: the next invocation is answered.
    let hello = function.api.get("/", &[]).await;
    assert_eq!(hello.status, 200);
}

#[tokio::test]
async fn files_larger_than_a_streamed_response_get_413_naming_the_limit() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    // Even when the settings allow more than Lambda can return.
    let function =
        Function::start(&[ORIGIN_ALLOWED, ("MEDIA_PROXY__MAX_SIZE", "100000000000")]).await;
    let reply = function
        .api
        .get(&proxied(&origin, "huge.gif", "/huge-length", ""), &[])
        .await;
    assert_eq!(reply.status, 413);
    assert_eq!(
        String::from_utf8_lossy(&reply.body),
        "file too large (limit: 200000000 bytes)"
    );
    assert!(function
        .log()
        .contains("lowered to the largest response Lambda can stream"));
}

#[tokio::test]
async fn a_body_too_large_to_stream_in_time_gets_413_not_a_truncated_answer() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let function = Function::start(&[ORIGIN_ALLOWED]).await;
    // 20 MB with 3 s left: 6 MB uncapped + 2 MB/s × ~2.5 s cannot carry it.
    let target = proxied(
        &origin,
        "long.mp4",
        "/padded/20000000/video/h264_640x360_2s.mp4",
        "",
    );
    let reply = function
        .api
        .invoke_http("GET", &target, Duration::from_secs(3))
        .await;
    assert_eq!(reply.status, 413);
    let text = String::from_utf8_lossy(&reply.body);
    assert!(
        text.starts_with("file too large to stream within the function's time limit (limit: "),
        "{text}"
    );
    assert_eq!(reply.headers["cache-control"], "no-store");
    // A HEAD streams no body: answered as usual.
    let head = function
        .api
        .invoke_http("HEAD", &target, Duration::from_secs(3))
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-length"], "20000000");
    // With the seed's 16 s the same file streams whole (in ~7 s at the capped rate).
    let full = function
        .api
        .invoke_http("GET", &target, Duration::from_secs(16))
        .await;
    assert_eq!((full.status, full.body.len()), (200, 20_000_000));
}

/// A long video asked for by range, as browsers ask (`bytes=N-`), whose rest cannot be
/// streamed before the deadline: a 206 of the part that fits, then the next part from
/// where it ended — the bytes are the file's, not a 413.
#[tokio::test]
async fn a_long_video_by_range_gets_the_part_that_fits() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let function = Function::start(&[ORIGIN_ALLOWED]).await;
    let target = proxied(
        &origin,
        "long.mp4",
        "/padded/20000000/video/h264_640x360_2s.mp4?ranges=1",
        "",
    );
    let mut file = corpus_bytes("video/h264_640x360_2s.mp4");
    file.resize(20_000_000, 0);
    let mut at = 0usize;
    let mut parts = 0;
    while at < file.len() {
        assert!(parts < 5, "20 MB in at most five parts");
        let event = url_event("GET", &target, &[("range", &format!("bytes={at}-"))]);
        let reply = match function.api.invoke(event, Duration::from_secs(3)).await {
            Outcome::Http(r) => r,
            other => panic!("part {parts}: {other:?}"),
        };
        assert_eq!(reply.status, 206, "part {parts}");
        let n = reply.body.len();
        assert!(
            n >= 6_000_000 || at + n == file.len(),
            "part {parts}: {n} bytes, at least the uncapped 6 MB"
        );
        assert_eq!(
            reply.headers["content-range"],
            format!("bytes {at}-{}/20000000", at + n - 1)
        );
        assert_eq!(reply.headers["content-length"], n.to_string());
        assert!(
            reply.body == file[at..at + n],
            "part {parts}: the file's bytes"
        );
        at += n;
        parts += 1;
    }
    assert!(parts >= 2, "the first part was cut to what fits");
}

#[test]
fn lambda_mode_outside_lambda_stops_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let status = media_proxy(&[], &log).arg("lambda").status().unwrap();
    assert_eq!(status.code(), Some(2));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("AWS_LAMBDA_FUNCTION_MEMORY_SIZE is not set")
            || text.contains("AWS_LAMBDA_RUNTIME_API is not set"),
        "{text}"
    );
    let status = media_proxy(
        &[
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
            ("AWS_LAMBDA_FUNCTION_NAME", "f"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "1"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots"),
        ],
        &log,
    )
    .status()
    .unwrap();
    assert_eq!(status.code(), Some(2), "detected from the environment");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("AWS_LAMBDA_FUNCTION_MEMORY_SIZE is not a size"),
        "{text}"
    );
}

/// Peak resident memory of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// Figures for docs/deploy-aws.md, not assertions of speed: `bash bench/lambda-figures.sh`
/// (a release build). Cold start = process start to the first answered invocation; peak RSS
/// of 12 MP JPEG `preview`s in a 256 MB function.
#[tokio::test]
#[ignore = "figures: run by bench/lambda-figures.sh"]
async fn figures() {
    let mut polls = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..15 {
        let function = Function::start(&[ORIGIN_ALLOWED]).await;
        let hello = function.api.get("/", &[]).await;
        assert_eq!(hello.status, 200);
        answers.push(function.started.elapsed().as_secs_f64() * 1000.0);
        polls.push(
            (*function.api.state.first_poll.get().unwrap() - function.started).as_secs_f64()
                * 1000.0,
        );
    }
    polls.sort_by(f64::total_cmp);
    answers.sort_by(f64::total_cmp);
    let med = |v: &[f64]| v[v.len() / 2];
    println!(
        "cold start (15 runs): first Runtime API poll median {:.1} ms (min {:.1}, max {:.1}); first answered invocation median {:.1} ms (min {:.1}, max {:.1})",
        med(&polls), polls[0], polls[polls.len() - 1],
        med(&answers), answers[0], answers[answers.len() - 1]
    );

    let function = Function::start(&[ORIGIN_ALLOWED]).await;
    let pid = function._process.0.id();
    let idle = {
        let hello = function.api.get("/", &[]).await;
        assert_eq!(hello.status, 200);
        peak_rss_mib(pid)
    };
    let mut warm = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(function.api.get("/", &[]).await.status, 200);
        warm.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    warm.sort_by(f64::total_cmp);
    println!(
        "warm invocation of / (20): median {:.2} ms (min {:.2}, max {:.2}), event queued to answer recorded",
        med(&warm),
        warm[0],
        warm[warm.len() - 1]
    );
    // The benchmark inputs (bench/make-inputs.py: photo-like 12 MP JPEGs), served as files.
    let inputs = std::path::PathBuf::from(
        std::env::var("MEDIA_PROXY_BENCH_INPUTS")
            .expect("MEDIA_PROXY_BENCH_INPUTS (bench/lambda-figures.sh sets it)"),
    );
    let files = Router::new().route(
        "/{name}",
        get(move |UrlPath(name): UrlPath<String>| {
            let path = inputs.join(name);
            async move { std::fs::read(path).map_err(|_| StatusCode::NOT_FOUND) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let files_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, files).await });
    // The bench/run.sh workloads, each URL new (`?n=`: no cache answers), median of five
    // invocations: what a function bills (docs/deploy-aws.md, "What it costs").
    for (name, flag) in [
        ("photo12_baseline.jpg", "preview"),
        ("photo12_progressive.jpg", "preview"),
        ("photo12_baseline.jpg", "static"),
        ("rgba500.png", "emoji"),
        ("anim30.gif", "emoji"),
    ] {
        let mut took = Vec::new();
        let mut size = (0, 0);
        for n in 0..5 {
            let url: String = form_urlencoded::byte_serialize(
                format!("http://{files_addr}/{name}?n={n}").as_bytes(),
            )
            .collect();
            let started = Instant::now();
            let reply = function
                .api
                .get(&format!("/x.webp?url={url}&{flag}=1"), &[])
                .await;
            took.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(reply.status, 200, "{name} {flag}");
            let d = image_webp::WebPDecoder::new(Cursor::new(&reply.body)).unwrap();
            size = d.dimensions();
        }
        took.sort_by(f64::total_cmp);
        println!(
            "{name} {flag} under the Lambda runtime: {}x{} WebP, median {:.0} ms end to end (min {:.0}, max {:.0}); peak RSS so far {:.1} MiB (idle {:.1} MiB), function memory 256 MB",
            size.0,
            size.1,
            med(&took),
            took[0],
            took[took.len() - 1],
            peak_rss_mib(pid),
            idle
        );
    }
    // Video thumbnails, when bench/video-figures.sh runs its origin (nginx, ranges).
    if let Ok(origin) = std::env::var("MEDIA_PROXY_BENCH_VIDEO_ORIGIN") {
        for name in ["h264_720p.mp4", "h264_1080p_faststart.mp4", "vp9_720p.webm"] {
            let url: String =
                form_urlencoded::byte_serialize(format!("{origin}/{name}?lambda").as_bytes())
                    .collect();
            let started = Instant::now();
            let reply = function
                .api
                .get(&format!("/t.webp?url={url}&thumbnail=1"), &[])
                .await;
            let took = started.elapsed();
            assert_eq!(reply.status, 200, "{name}");
            let d = image_webp::WebPDecoder::new(Cursor::new(&reply.body)).unwrap();
            println!(
                "video {name} → thumbnail under the Lambda runtime: {}x{} WebP, {:.0} ms end to end; peak RSS so far {:.1} MiB, function memory 256 MB",
                d.dimensions().0,
                d.dimensions().1,
                took.as_secs_f64() * 1000.0,
                peak_rss_mib(pid),
            );
        }
    }
}
