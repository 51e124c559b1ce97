//! The test harness: `spawn_app()` runs the real application (real `Settings`, real router,
//! real fetcher) on 127.0.0.1:0; `spawn_origin()` is one scripted origin server on a chosen
//! loopback address that serves the shared corpus and misbehaves on request, recording every
//! request it receives.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use media_proxy::{Application, Settings};
use serde::Deserialize;

/// The shared corpus, used in place (never copied into the repository).
pub fn corpus(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(rel)
}

pub fn corpus_bytes(rel: &str) -> Vec<u8> {
    std::fs::read(corpus(rel)).unwrap_or_else(|e| panic!("corpus file {rel}: {e}"))
}

/// A file of this repository (`docs/…`, `deploy/…`), by its path from the root.
pub fn repo(rel: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
        .canonicalize()
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The text of a file of this repository.
pub fn repo_text(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// An image encoded by the `image` crate (an encoder independent of ours).
pub fn encode(img: impl Into<image::DynamicImage>, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.into().write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// The binary, with nothing from the test's environment that configures it: no
/// `MEDIA_PROXY__` variable, `RUST_LOG` or `AWS_` variable leaks in.
pub fn media_proxy() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_media-proxy"));
    for (key, _) in std::env::vars() {
        if key.starts_with("MEDIA_PROXY__") || key == "RUST_LOG" || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// The `/metrics` listener, when `server.metrics` gives it its own address.
    pub metrics_addr: Option<SocketAddr>,
}

impl TestApp {
    /// `GET /<path>?url=<url><extra>` with the URL percent-encoded.
    pub fn proxy_url(&self, path: &str, url: &str, extra: &str) -> String {
        let encoded: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
        format!("http://{}/{path}?url={encoded}{extra}", self.addr)
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }
}

/// Default settings except for the listen address (port 0) and what `configure` changes.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Settings::default()
    };
    // Tests run many apps at once on a small machine: a render may take far longer than
    // in production. Behaviour is under test, not speed (the deadline has its own test).
    settings.workers.deadline = Duration::from_secs(120);
    settings.workers.queue_wait = Duration::from_secs(120);
    // The remote-mode tests check the Misskey contract exactly (a path without `url` is a
    // 400), and no test may create a `media/` directory in the source tree: the store mode
    // is off unless a test turns it on (tests/api/store.rs).
    settings.store.kind = media_proxy::config::StoreKind::None;
    // Every request renders unless a test turns caching on (tests/api/caching.rs): the
    // other tests are about what one render does. (Coalescing is always on.)
    settings.cache.kind = media_proxy::config::CacheKind::None;
    settings.cache.memory = 0;
    settings.cache.negative_ttl = Duration::ZERO;
    // Renders run in worker processes of the built binary (this test harness is no
    // media-proxy binary to start as one).
    settings.workers.worker_program = env!("CARGO_BIN_EXE_media-proxy").into();
    configure(&mut settings);
    let settings = settings.validate().expect("test settings are valid");
    let app = Application::build(&settings).await.expect("app builds");
    let addr = app.local_addr().expect("bound");
    let metrics_addr = app.metrics_addr();
    tokio::spawn(app.run_until_stopped());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("test client");
    TestApp {
        addr,
        client,
        metrics_addr,
    }
}

/// One sample from a `/metrics` text: `series` is the name with its labels as printed
/// (`media_proxy_breaker_open{dependency="store"}`); `None` when it is not there.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let value = l.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// The `/metrics` text of the server at `addr`.
pub async fn metrics_text(addr: SocketAddr) -> String {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits (observing `/metrics`, at most 30 s) until the background cache writes of every
/// answered request have ended: an answer is sent after its write was queued and counted.
pub async fn writes_settled(addr: SocketAddr) {
    let started = std::time::Instant::now();
    loop {
        let text = metrics_text(addr).await;
        if metric(&text, "media_proxy_cache_writes_pending") == Some(0.0) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "cache writes still pending after 30 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestApp {
    /// See [`writes_settled`].
    pub async fn writes_settled(&self) {
        writes_settled(self.addr).await;
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The usual pair: the scripted origin on 127.0.0.2, and the app allowed to reach exactly
/// that address (plus whatever `configure` changes).
pub async fn spawn_app_and_origin(configure: impl FnOnce(&mut Settings)) -> (TestApp, Origin) {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let app = spawn_app_with(|s| {
        s.allowed_private_networks = vec!["127.0.0.2/32".parse().expect("cidr")];
        configure(s);
    })
    .await;
    (app, origin)
}

/// One request as the origin saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The request target as sent: origin-form `/path?q`, or absolute-form through a proxy.
    pub target: String,
    pub range: Option<String>,
    pub user_agent: Option<String>,
    pub accept_encoding: Option<String>,
    /// Names of every request header, lower-case.
    pub header_names: Vec<String>,
}

#[derive(Clone)]
pub struct Origin {
    pub addr: SocketAddr,
    pub hits: Arc<Mutex<Vec<Hit>>>,
}

impl Origin {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("hits lock").clone()
    }
}

/// Starts the scripted origin on `ip` (any 127.x address works on Linux).
pub async fn spawn_origin(ip: Ipv4Addr) -> Origin {
    spawn_origin_on(SocketAddr::new(IpAddr::V4(ip), 0))
        .await
        .expect("origin binds")
}

pub async fn spawn_origin_on(addr: SocketAddr) -> std::io::Result<Origin> {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new()
        .route("/corpus/{*rel}", get(corpus_file))
        .route("/status/{code}", get(status))
        .route("/redirect", get(redirect))
        .route("/chain/{n}", get(chain))
        .route("/text/{kind}", get(text))
        .route("/chunked", get(chunked))
        .route("/stall-head", get(stall_head))
        .route("/stall-body", get(stall_body))
        .route("/truncated", get(truncated))
        .route("/huge-length", get(huge_length))
        .route("/gzip/{*rel}", get(gzip_file))
        .route("/svg-with-image", get(svg_with_image))
        .route("/flat.png", get(flat_png))
        .route("/echo", get(echo))
        .route("/generated/{spec}", get(generated))
        .route("/padded/{size}/{*rel}", get(padded))
        .route("/made/{name}", get(made_file))
        .fallback(get(corpus_file_by_any_path))
        .with_state(hits.clone())
        .layer(axum::middleware::from_fn_with_state(hits.clone(), record));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(Origin { addr, hits })
}

type Hits = Arc<Mutex<Vec<Hit>>>;

async fn record(
    State(hits): State<Hits>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let text = |h: &HeaderMap, name| {
        h.get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    hits.lock().expect("hits lock").push(Hit {
        target: request.uri().to_string(),
        range: text(request.headers(), header::RANGE),
        user_agent: text(request.headers(), header::USER_AGENT),
        accept_encoding: text(request.headers(), header::ACCEPT_ENCODING),
        header_names: request
            .headers()
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect(),
    });
    next.run(request).await
}

#[derive(Debug, Deserialize, Default)]
struct FileOptions {
    /// Present: serve single byte ranges (otherwise `Range` is ignored, as many origins do).
    ranges: Option<String>,
    /// Milliseconds to wait before answering (a slow origin: requests pile up meanwhile).
    delay: Option<u64>,
    /// A lying Content-Type to send.
    #[serde(rename = "type")]
    content_type: Option<String>,
    /// A Content-Disposition header to send.
    cd: Option<String>,
}

async fn corpus_file(
    Path(rel): Path<String>,
    Query(opts): Query<FileOptions>,
    headers: HeaderMap,
) -> Response {
    if let Some(ms) = opts.delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let Ok(bytes) = std::fs::read(corpus(&rel)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    serve_bytes(bytes, &opts, &headers)
}

/// Where tests put the files they make (videos made with ffmpeg): served at `/made/<name>`.
pub fn made_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("media-proxy-tests-made");
    std::fs::create_dir_all(&dir).expect("made dir");
    dir
}

async fn made_file(
    Path(name): Path<String>,
    Query(opts): Query<FileOptions>,
    headers: HeaderMap,
) -> Response {
    if name.contains('/') || name.starts_with('.') {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(ms) = opts.delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match std::fs::read(made_dir().join(name)) {
        Ok(bytes) => serve_bytes(bytes, &opts, &headers),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `/padded/{bytes}/{rel}`: the corpus file, then zeros up to `bytes` in all (a large "video"
/// whose head still sniffs as what it is).
async fn padded(
    Path((size, rel)): Path<(usize, String)>,
    Query(opts): Query<FileOptions>,
    headers: HeaderMap,
) -> Response {
    let Ok(mut bytes) = std::fs::read(corpus(&rel)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    bytes.resize(size.max(bytes.len()), 0);
    serve_bytes(bytes, &opts, &headers)
}

/// `/anything/else/<rel>` is not routed: used as the proxy-mode target (absolute-form).
async fn corpus_file_by_any_path() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "image/gif")],
        tiny_gif(),
    )
        .into_response()
}

fn serve_bytes(bytes: Vec<u8>, opts: &FileOptions, headers: &HeaderMap) -> Response {
    let mut extra = HeaderMap::new();
    if let Some(t) = &opts.content_type {
        extra.insert(header::CONTENT_TYPE, t.parse().expect("type header"));
    }
    if let Some(cd) = &opts.cd {
        extra.insert(header::CONTENT_DISPOSITION, cd.parse().expect("cd header"));
    }
    extra.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'));
    if let (true, Some((a, b))) = (opts.ranges.is_some(), range) {
        let total = bytes.len();
        let first: usize = a.parse().unwrap_or(0);
        let last: usize = b.parse().unwrap_or(total - 1).min(total - 1);
        if first > last {
            return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        }
        extra.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        extra.insert(
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{total}")
                .parse()
                .expect("range"),
        );
        return (
            StatusCode::PARTIAL_CONTENT,
            extra,
            bytes[first..=last].to_vec(),
        )
            .into_response();
    }
    (StatusCode::OK, extra, bytes).into_response()
}

async fn gzip_file(Path(rel): Path<String>) -> Response {
    use std::io::Write;
    let bytes = std::fs::read(corpus(&rel)).expect("gzip source");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&bytes).expect("gzip");
    let gz = enc.finish().expect("gzip");
    (
        [
            (header::CONTENT_ENCODING, "gzip"),
            (header::CONTENT_TYPE, "image/gif"),
        ],
        gz,
    )
        .into_response()
}

async fn status(Path(code): Path<u16>, Query(opts): Query<FileOptions>) -> Response {
    if let Some(ms) = opts.delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    StatusCode::from_u16(code)
        .expect("status code")
        .into_response()
}

#[derive(Deserialize)]
struct To {
    to: String,
}

async fn redirect(Query(To { to }): Query<To>) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

/// `/chain/n` redirects to `/chain/n-1` (relative Location); `/chain/0` is a GIF.
async fn chain(Path(n): Path<u32>) -> Response {
    if n == 0 {
        return ([(header::CONTENT_TYPE, "image/gif")], tiny_gif()).into_response();
    }
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, format!("{}", n - 1))],
    )
        .into_response()
}

async fn text(Path(kind): Path<String>) -> Response {
    let (body, ctype): (&[u8], &str) = match kind.as_str() {
        "html" => (b"<!doctype html><html><body>hello</body></html>", "image/png"),
        "plain" => (b"just some text, not an image", "image/jpeg"),
        "empty" => (b"", "image/png"),
        "svg" => (
            br#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>"#,
            "image/svg+xml",
        ),
        "big-svg" => {
            // A valid SVG just over the 1 MiB sniffing limit: by the spec, not an SVG.
            let mut svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">"#.to_vec();
            svg.extend(std::iter::repeat_n(b' ', 1024 * 1024));
            svg.extend_from_slice(b"</svg>");
            return ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response();
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, ctype)], body.to_vec()).into_response()
}

#[derive(Deserialize)]
struct ChunkedOptions {
    /// Bytes per chunk.
    size: usize,
    /// Number of chunks.
    count: usize,
    /// Pause before each chunk, in milliseconds.
    #[serde(default)]
    delay_ms: u64,
}

/// A chunked body (no Content-Length) starting like a GIF, then zeros.
async fn chunked(Query(o): Query<ChunkedOptions>) -> Response {
    let stream = futures_util::stream::unfold(0usize, move |i| async move {
        if i >= o.count {
            return None;
        }
        if o.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(o.delay_ms)).await;
        }
        let mut chunk = vec![0u8; o.size];
        if i == 0 {
            let gif = tiny_gif();
            let n = gif.len().min(o.size);
            chunk[..n].copy_from_slice(&gif[..n]);
        }
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), i + 1))
    });
    (
        [(header::CONTENT_TYPE, "image/gif")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn stall_head() -> Response {
    tokio::time::sleep(Duration::from_secs(60)).await;
    StatusCode::OK.into_response()
}

/// Sends a GIF head, then nothing more for a minute.
async fn stall_body() -> Response {
    ([(header::CONTENT_TYPE, "image/gif")], gif_then_stall()).into_response()
}

/// A body that sends a GIF head and then goes silent for a minute.
fn gif_then_stall() -> Body {
    Body::from_stream(futures_util::stream::unfold(0u8, |i| async move {
        match i {
            0 => Some((Ok::<_, std::io::Error>(bytes::Bytes::from(tiny_gif())), 1)),
            _ => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                None
            }
        }
    }))
}

/// Announces 100 000 bytes, sends a GIF head and ends the stream early.
async fn truncated() -> Response {
    let stream =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(tiny_gif()))]);
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CONTENT_LENGTH, "100000"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Announces a body far larger than any limit, sends a GIF head, then stalls.
async fn huge_length() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CONTENT_LENGTH, "10000000000"),
        ],
        gif_then_stall(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Href {
    href: String,
}

/// A 100×100 blue SVG with an `<image>` covering it, pointing wherever the test says.
async fn svg_with_image(Query(Href { href }): Query<Href>) -> Response {
    let svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="100" height="100"><rect width="100" height="100" fill="#0000ff"/><image x="0" y="0" width="100" height="100" href="{href}" xlink:href="{href}"/></svg>"##
    );
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

/// `/generated/{w}x{h}.{ext}`: a picture of that size in that format (png, jpg, gif, bmp,
/// tiff, webp), with enough detail to survive any conversion.
async fn generated(Path(spec): Path<String>) -> Response {
    let Some((size, ext)) = spec.split_once('.') else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some((w, h)) = size.split_once('x') else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (w, h): (u32, u32) = (w.parse().expect("width"), h.parse().expect("height"));
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x ^ y) & 0xFF) as u8,
        ])
    });
    let format = match ext {
        "png" => image::ImageFormat::Png,
        "jpg" => image::ImageFormat::Jpeg,
        "gif" => image::ImageFormat::Gif,
        "bmp" => image::ImageFormat::Bmp,
        "tiff" => image::ImageFormat::Tiff,
        "webp" => image::ImageFormat::WebP,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    encode(img, format).into_response()
}

#[derive(Deserialize)]
struct Echo {
    #[serde(rename = "type")]
    content_type: String,
    body: String,
}

/// `/echo?type=T&body=B`: the body the test wrote, with that Content-Type.
async fn echo(Query(e): Query<Echo>) -> Response {
    ([(header::CONTENT_TYPE, e.content_type)], e.body).into_response()
}

/// A 64×64 PNG of one flat colour.
async fn flat_png() -> Response {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, 64, 64);
        enc.set_color(png::ColorType::Rgb);
        let mut w = enc.write_header().expect("png header");
        w.write_image_data(&[90, 140, 200].repeat(64 * 64))
            .expect("png data");
    }
    ([(header::CONTENT_TYPE, "image/png")], out).into_response()
}

/// A valid 1×1 GIF (written out by hand; 35 bytes).
pub fn tiny_gif() -> Vec<u8> {
    vec![
        0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00,
        0x00, 0xff, 0xff, 0xff, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
        0x02, 0x44, 0x01, 0x00, 0x3b,
    ]
}

/// An AVIF's width, height and frame count, read independently of libavif: a still image
/// through avif-parse (container and AV1 sequence header); an image sequence (`avis`, which
/// avif-parse does not read) from its track header (`tkhd`, 16.16 fixed width and height)
/// and sample table (`stsz` count).
pub fn avif_info(bytes: &[u8]) -> Result<(u32, u32, u32), String> {
    match bytes.get(4..12) {
        Some(b"ftypavif") => {
            let data = avif_parse::read_avif(&mut std::io::Cursor::new(bytes))
                .map_err(|e| format!("AVIF does not parse: {e:?}"))?;
            let meta = data
                .primary_item_metadata()
                .map_err(|e| format!("AVIF without an AV1 header: {e:?}"))?;
            Ok((meta.max_frame_width.get(), meta.max_frame_height.get(), 1))
        }
        Some(b"ftypavis") => {
            let tkhd = find_box(bytes, b"tkhd").ok_or("no tkhd")?;
            let at = if tkhd.first() == Some(&1) { 88 } else { 76 };
            let word = |b: &[u8], i: usize| -> Result<u32, String> {
                b.get(i..i + 4)
                    .and_then(|w| w.try_into().ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| "short box".to_owned())
            };
            let stsz = find_box(bytes, b"stsz").ok_or("no stsz")?;
            Ok((
                word(tkhd, at)? >> 16,
                word(tkhd, at + 4)? >> 16,
                word(stsz, 8)?,
            ))
        }
        other => Err(format!("not an AVIF: {other:?}")),
    }
}

/// The payload of the first box of type `kind`, walking into the boxes that only hold boxes.
fn find_box<'a>(bytes: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let mut pos = 0usize;
    while pos + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes.get(pos..pos + 4)?.try_into().ok()?) as usize;
        let name = bytes.get(pos + 4..pos + 8)?;
        let end = if size == 0 { bytes.len() } else { pos + size };
        let payload = bytes.get(pos + 8..end)?;
        if name == kind {
            return Some(payload);
        }
        if matches!(name, b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl") {
            if let Some(found) = find_box(payload, kind) {
                return Some(found);
            }
        }
        pos = end.max(pos + 8);
    }
    None
}

/// An SVG of `levels` nested groups of ten `<use>` of one large translucent circle on a
/// 2048² canvas (10^levels circles in about 200 bytes a level): the red-team's CPU bomb.
pub fn nested_uses(levels: usize) -> String {
    let mut defs = String::from(
        r##"<circle id="l0" cx="1024" cy="1024" r="1000" fill="red" fill-opacity="0.5"/>"##,
    );
    for level in 1..=levels {
        let uses = format!(r##"<use href="#l{}"/>"##, level - 1).repeat(10);
        defs.push_str(&format!(r#"<g id="l{level}">{uses}</g>"#));
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="2048" height="2048"><defs>{defs}</defs><use href="#l{levels}"/></svg>"##
    )
}

/// A client for servers on loopback (no proxy from the environment, redirects followed).
pub fn loopback_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Waits (at most 20 s) until a server started as a process answers `/healthz` at `base`
/// (`http://host:port`); panics naming `what` otherwise.
pub async fn until_serving(client: &reqwest::Client, base: &str, what: &str) {
    let started = std::time::Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what} starts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A variant cache entry as kept on disk or in a bucket (`MPV2`, the header's length, the
/// JSON header, the variant's bytes), without the header's `created` second: a render made
/// again in a later second is otherwise the same entry.
pub fn timeless(blob: &[u8]) -> (serde_json::Value, &[u8]) {
    let rest = blob
        .strip_prefix(b"MPV2")
        .expect("an entry starts with its magic");
    let (len, rest) = rest.split_at(4);
    let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
    let (header, bytes) = rest.split_at(len);
    let mut header: serde_json::Value = serde_json::from_slice(header).unwrap();
    let created = header.as_object_mut().unwrap().remove("created");
    assert!(created.is_some_and(|c| c.is_u64()), "a creation time");
    (header, bytes)
}

/// The binary serving on a free port of 127.0.0.1 (remote mode, 127.0.0.2 allowed as an
/// origin, no store, no cache, errors only in its log, unless `env` says otherwise); killed
/// on drop.
pub struct Server {
    pub child: std::process::Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Started with these `MEDIA_PROXY__…` variables over the defaults above; returns once
    /// it answers `/healthz`.
    pub async fn start(env: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut cmd = media_proxy();
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS", "127.0.0.2/32")
            .env("MEDIA_PROXY__STORE__KIND", "none")
            .env("MEDIA_PROXY__CACHE__KIND", "none")
            .env("MEDIA_PROXY__LOG__FILTER", "error")
            .stderr(std::process::Stdio::null());
        for (key, value) in env {
            cmd.env(key, value);
        }
        let server = Server {
            child: cmd.spawn().unwrap(),
            base: format!("http://127.0.0.1:{port}"),
        };
        until_serving(&loopback_client(), &server.base, "the server").await;
        server
    }

    /// `GET` of `path_and_query` on the server.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// The remote-mode URL of `path` with `url` percent-encoded and `extra` after it.
    pub fn proxy_url(&self, path: &str, url: &str, extra: &str) -> String {
        let encoded: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
        format!("{}/{path}?url={encoded}{extra}", self.base)
    }

    pub fn terminate(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
    }

    /// The exit code, waiting at most `secs`.
    pub async fn exit_code(&mut self, secs: u64) -> Option<i32> {
        for _ in 0..secs * 50 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("still running after {secs} s");
    }

    /// Still running (not exited, not killed by a signal).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}
