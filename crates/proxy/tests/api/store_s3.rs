//! The store mode against a real S3-compatible server: moto (`moto[server]` from PyPI,
//! installed by `./dev tools`), started here on 127.0.0.1. Between the binary and moto sits
//! a recording pass-through, so the tests can count what reaches the store (one GET per
//! request, nothing else). The binary runs as a child process configured the way a
//! deployment is: environment variables only, credentials from the AWS variables.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures_util::StreamExt;
use reqwest::StatusCode;

use crate::store::decode;

pub const BUCKET: &str = "originals-bucket";

/// A well-formed SigV4 header moto accepts without checking: unsigned requests on existing
/// keys count as anonymous there (403).
pub const FAKE_SIGNATURE: &str = "AWS4-HMAC-SHA256 \
    Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

/// A plain HTTP client for loopback (no proxy from the environment; reqwest is built
/// without a default TLS crypto provider).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A port nobody listens on right now (the OS picks it; the listener is closed again).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for(url: &str, what: &str) {
    let client = client();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if client.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not start within 30 s ({url})");
}

pub struct Moto {
    _process: Process,
    pub url: String,
}

pub async fn start_moto() -> Moto {
    let port = free_port();
    // As a module: found wherever pip installed it, with or without its script on PATH.
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start python3 -m moto.server ({e}): `./dev tools` installs moto[server]")
        });
    let moto = Moto {
        _process: Process(child),
        url: format!("http://127.0.0.1:{port}"),
    };
    wait_for(
        &moto.url,
        "moto.server (`./dev tools` installs moto[server])",
    )
    .await;
    let r = client()
        .put(format!("{}/{BUCKET}", moto.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "bucket created: {}", r.status());
    moto
}

impl Moto {
    /// moto's address, for a fault proxy in front of it.
    pub fn addr(&self) -> SocketAddr {
        self.url.trim_start_matches("http://").parse().unwrap()
    }

    /// The keys in `bucket` under `prefix` (one listing page: the tests keep few).
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let listing = client()
            .get(format!("{}/{bucket}?list-type=2&prefix={prefix}", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        listing
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }

    pub async fn create_bucket(&self, bucket: &str) {
        let r = client()
            .put(format!("{}/{bucket}", self.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "bucket created: {}", r.status());
    }

    /// Uploads an object. moto does not verify signatures but treats unsigned requests on
    /// existing keys as anonymous (403), so the PUT carries a well-formed, unchecked one.
    async fn put(&self, key: &str, bytes: &[u8]) {
        let encoded: Vec<String> = key
            .split('/')
            .map(|s| {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            })
            .collect();
        let r = client()
            .put(format!("{}/{BUCKET}/{}", self.url, encoded.join("/")))
            .header("authorization", FAKE_SIGNATURE)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "upload {key}: {status} {text}");
    }
}

/// What the store was asked: method and target.
type Log = Arc<Mutex<Vec<(String, String)>>>;
/// Body bytes the store's answers have had pulled from them, all requests together.
type Sent = Arc<std::sync::atomic::AtomicU64>;
type ProxyState = (String, Log, Sent, reqwest::Client);

/// A pass-through to `target` that records every request and counts the body bytes read.
async fn recording_proxy(target: String) -> (String, Log, Sent) {
    let log: Log = Arc::default();
    let sent: Sent = Arc::default();
    let app = axum::Router::new().fallback(forward).with_state((
        target,
        log.clone(),
        sent.clone(),
        client(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), log, sent)
}

async fn forward(
    State((target, log, sent, client)): State<ProxyState>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    log.lock()
        .unwrap()
        .push((parts.method.to_string(), path.clone()));
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut headers = parts.headers.clone();
    headers.remove(reqwest::header::HOST);
    let upstream = client
        .request(parts.method, format!("{target}{path}"))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let mut response = Response::builder().status(upstream.status());
    for (k, v) in upstream.headers() {
        response = response.header(k, v);
    }
    // Streamed in 16 KiB pieces, 5 ms apart (3 MB/s, as a network would pace them; on
    // loopback the socket buffers would otherwise take megabytes at once), counted as they
    // are pulled: a reader that stops early leaves most of a large body unsent, and a busy
    // machine has 0.7 s before a 4.6 MB body is half sent.
    let bytes = upstream.bytes().await.unwrap();
    let pieces: Vec<bytes::Bytes> = (0..bytes.len())
        .step_by(16 * 1024)
        .map(|i| bytes.slice(i..(i + 16 * 1024).min(bytes.len())))
        .collect();
    let stream = futures_util::stream::iter(pieces).then(move |piece| {
        let sent = sent.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            sent.fetch_add(piece.len() as u64, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::io::Error>(piece)
        }
    });
    response.body(Body::from_stream(stream)).unwrap()
}

pub struct Binary {
    _process: Process,
    pub addr: SocketAddr,
}

/// The real binary, configured by environment variables as on a server or Lambda.
pub async fn start_binary(endpoint: &str, extra: &[(&str, &str)]) -> Binary {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_media-proxy"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MEDIA_PROXY__LISTEN", addr.to_string())
        .env("MEDIA_PROXY__STORE__KIND", "s3")
        .env("MEDIA_PROXY__STORE__BUCKET", BUCKET)
        .env("MEDIA_PROXY__STORE__ENDPOINT", endpoint)
        .env("MEDIA_PROXY__STORE__ALLOW_HTTP", "true")
        .env("MEDIA_PROXY__STORE__REGION", "us-east-1")
        .env("MEDIA_PROXY__STORE__TIMEOUT", "10s")
        // Every request reaches the store unless a test gives the cache a bucket.
        .env("MEDIA_PROXY__CACHE__KIND", "none")
        .env("MEDIA_PROXY__CACHE__MEMORY", "0")
        .env("MEDIA_PROXY__LOG__FILTER", "warn")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Binary::spawned(cmd.spawn().expect("the binary starts"), addr).await
}

impl Binary {
    /// The binary started as `child`, listening on `addr` once it answers `/healthz`.
    pub async fn spawned(child: Child, addr: SocketAddr) -> Binary {
        let binary = Binary {
            _process: Process(child),
            addr,
        };
        wait_for(&format!("http://{addr}/healthz"), "media-proxy").await;
        binary
    }

    /// How many jobs the workers have done of the `assess` (headers) and `decode` stages.
    async fn stage_counts(&self) -> (f64, f64) {
        let text = crate::helpers::metrics_text(self.addr).await;
        let count = |stage: &str| {
            let series = format!(r#"media_proxy_stage_duration_seconds_count{{stage="{stage}"}}"#);
            crate::helpers::metric(&text, &series).unwrap_or(0.0)
        };
        (count("assess"), count("decode"))
    }

    /// `GET` without extra headers, for requests sent together.
    async fn get_owned(&self, path: String) -> crate::store::Answer {
        self.get(&path, &[]).await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> crate::store::Answer {
        let mut req = client().get(format!("http://{}/{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        crate::store::Answer {
            status: r.status(),
            headers: r.headers().clone(),
            body: r.bytes().await.unwrap().to_vec(),
        }
    }
}

/// A 1600×1200 JPEG of noise, about 2 MB: the paced pass-through takes most of a second
/// to send it.
fn noise_jpeg() -> Vec<u8> {
    let mut seed = 12345u32;
    let noise = image::RgbImage::from_fn(1600, 1200, |_, _| {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let b = seed.to_be_bytes();
        image::Rgb([b[0], b[1], b[2]])
    });
    let mut big = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut big, 95)
        .encode_image(&noise)
        .unwrap();
    assert!(big.len() > 1_500_000, "{} bytes", big.len());
    big
}

fn jpeg(w: u32, h: u32, shade: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([shade, x as u8, y as u8]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

#[tokio::test]
async fn s3_originals_with_one_get_and_variants_with_one_head_and_one_get() {
    let moto = start_moto().await;
    let (endpoint, log, _) = recording_proxy(moto.url.clone()).await;
    let app = start_binary(&endpoint, &[("MEDIA_PROXY__STORE__PREFIX", "originals")]).await;
    let photo = jpeg(400, 200, 10);
    moto.put("originals/photo one.jpg", &photo).await;
    moto.put("originals/猫+1.png", &{
        let mut out = Vec::new();
        image::RgbaImage::from_pixel(40, 20, image::Rgba([1, 2, 3, 200]))
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    })
    .await;
    moto.put("elsewhere.jpg", &photo).await;
    let count = |method: &str| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == method)
            .count()
    };
    let gets = || count("GET");
    let heads = || count("HEAD");

    let r = app.get("photo%20one.jpg", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, photo, "the original, byte for byte");
    assert_eq!(r.header("content-type"), "image/jpeg");
    assert_eq!(gets(), 1, "one store request");

    let r = app.get("photo%20one.jpg?w=100", &[("accept", "*/*")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let d = decode(&r.body);
    assert_eq!((d.format, d.width, d.height), ("jpeg", 100, 50));
    assert_eq!(
        (heads(), gets()),
        (1, 2),
        "a variant: one HEAD (the version, for the cache key) and one GET"
    );
    let etag = r.header("etag").to_owned();

    let r = app
        .get(
            "photo%20one.jpg?w=100",
            &[("accept", "*/*"), ("if-none-match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!((heads(), gets()), (2, 3));

    for path in [
        "%E7%8C%AB%2B1.png?w=20&format=png",
        "%E7%8C%AB+1.png?w=20&format=png",
    ] {
        let r = app.get(path, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(decode(&r.body).width, 20, "{path}");
    }

    let r = app.get("missing.jpg?w=100", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("cache-control"), "public, max-age=60");
    // The prefix jails every key: an object outside it does not exist for clients.
    let r = app.get("elsewhere.jpg", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "outside the prefix");

    // A changed object changes the validator (S3's own ETag is the version).
    moto.put("originals/photo one.jpg", &jpeg(400, 200, 200))
        .await;
    let r = app
        .get(
            "photo%20one.jpg?w=100",
            &[("accept", "*/*"), ("if-none-match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "a new version is sent");
    assert_ne!(r.header("etag"), etag);
    // The revalidation's GET, opened to read the head, goes on to feed the render.
    assert_eq!((heads(), gets()), (6, 7));

    let seen = log.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|(method, _)| method == "GET" || method == "HEAD"),
        "only reads reached the store: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|(_, path)| path.starts_with(&format!("/{BUCKET}/originals/"))),
        "every key under the prefix: {seen:?}"
    );
    assert_eq!(seen.len(), 13, "{seen:?}");
}

#[tokio::test]
async fn an_unreachable_store_is_a_502_that_no_cache_keeps() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let app = start_binary(&closed, &[]).await;
    let r = app.get("photo.jpg?w=100", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.header("cache-control"), "no-store");
    let r = app.get("photo.jpg", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a_revalidation_reads_only_the_head_of_a_large_original() {
    let moto = start_moto().await;
    let (endpoint, _, sent) = recording_proxy(moto.url.clone()).await;
    let app = start_binary(&endpoint, &[]).await;
    // About 2 MB of noise: far more than the 64 KiB head.
    let big = noise_jpeg();
    moto.put("big.jpg", &big).await;
    let read = || sent.load(std::sync::atomic::Ordering::SeqCst);

    let first = app
        .get("big.jpg?w=200", &[("accept", "image/avif,image/webp")])
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let etag = first.header("etag").to_owned();
    let before = read();
    let jobs = app.stage_counts().await;
    let r = app
        .get(
            "big.jpg?w=200",
            &[
                ("accept", "image/avif,image/webp"),
                ("if-none-match", &etag),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_MODIFIED,
        "same ETag from the head alone"
    );
    assert_eq!(r.header("etag"), etag);
    // The head's header was read by a worker (one assess job), as every header is, and
    // nothing was decoded.
    let (assessed, decoded) = app.stage_counts().await;
    assert_eq!((assessed - jobs.0, decoded - jobs.1), (1.0, 0.0));
    // Let the abandoned transfer stop before counting (a piece or two may still be pulled
    // after the connection closed).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pulled = read() - before;
    assert!(
        pulled < big.len() as u64 / 2,
        "a 304 pulled {pulled} of {} bytes",
        big.len()
    );
    // Another variant's ETag does not match: the whole original is read and rendered.
    let before = read();
    let r = app
        .get(
            "big.jpg?w=201",
            &[
                ("accept", "image/avif,image/webp"),
                ("if-none-match", &etag),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let pulled = read() - before;
    assert!(
        pulled >= big.len() as u64 && pulled < 2 * big.len() as u64,
        "the whole original, once: {pulled} of {} bytes",
        big.len()
    );
}

#[tokio::test]
async fn twenty_variants_asked_together_read_the_original_once() {
    let moto = start_moto().await;
    let (endpoint, log, _) = recording_proxy(moto.url.clone()).await;
    // A place for each of the twenty renders.
    let app = start_binary(&endpoint, &[("MEDIA_PROXY__WORKERS__QUEUE", "32")]).await;
    moto.put("big.jpg", &noise_jpeg()).await;
    let answers = futures_util::future::join_all(
        (100..120).map(|w| app.get_owned(format!("big.jpg?w={w}&format=jpeg"))),
    )
    .await;
    for (a, w) in answers.iter().zip(100..120) {
        assert_eq!(a.status, StatusCode::OK, "w={w}");
        assert_eq!(decode(&a.body).width, w);
        assert_eq!(a.header("x-cache"), "MISS", "w={w}: a render of its own");
    }
    let seen = log.lock().unwrap().clone();
    let count = |method: &str| seen.iter().filter(|(m, _)| m == method).count();
    assert_eq!(
        count("GET"),
        1,
        "one download for twenty variants: {seen:?}"
    );
    assert_eq!(count("HEAD"), 20, "each looked up its version: {seen:?}");
}

#[tokio::test]
async fn two_instances_share_a_variant_cache_in_a_bucket() {
    let moto = start_moto().await;
    moto.create_bucket("variant-cache").await;
    let (endpoint, log, _) = recording_proxy(moto.url.clone()).await;
    let cache: [(&str, &str); 7] = [
        ("MEDIA_PROXY__CACHE__KIND", "s3"),
        ("MEDIA_PROXY__CACHE__BUCKET", "variant-cache"),
        ("MEDIA_PROXY__CACHE__PREFIX", "variants"),
        ("MEDIA_PROXY__CACHE__ENDPOINT", &endpoint),
        ("MEDIA_PROXY__CACHE__ALLOW_HTTP", "true"),
        ("MEDIA_PROXY__CACHE__REGION", "us-east-1"),
        // No memory tier: every hit below comes from the bucket.
        ("MEDIA_PROXY__CACHE__MEMORY", "0"),
    ];
    let a = start_binary(&endpoint, &cache).await;
    let b = start_binary(&endpoint, &cache).await;
    moto.put("photo.jpg", &jpeg(400, 200, 10)).await;
    let original_gets = || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(m, p)| m == "GET" && p.starts_with(&format!("/{BUCKET}/")))
            .count()
    };
    let first = a.get("photo.jpg?w=100", &[("accept", "*/*")]).await;
    assert_eq!(
        (first.status, first.header("x-cache")),
        (StatusCode::OK, "MISS")
    );
    crate::helpers::writes_settled(a.addr).await;
    let shared = b.get("photo.jpg?w=100", &[("accept", "*/*")]).await;
    assert_eq!(
        shared.header("x-cache"),
        "HIT",
        "the other instance's render"
    );
    assert_eq!(shared.body, first.body);
    assert_eq!(shared.header("etag"), first.header("etag"));
    assert_eq!(
        shared.header("last-modified"),
        first.header("last-modified")
    );
    assert_eq!(original_gets(), 1, "the original was read once");

    // The entry is an object under the prefix, with its facts as metadata.
    let keys = moto.keys("variant-cache", "variants/").await;
    assert_eq!(keys.len(), 1, "one entry under variants/: {keys:?}");
    let key = &keys[0];
    let head = client()
        .head(format!("{}/variant-cache/{key}", moto.url))
        .header("authorization", FAKE_SIGNATURE)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK, "HEAD {key}");
    let meta = |name: &str| {
        head.headers()
            .get(format!("x-amz-meta-{name}"))
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(meta("variant-content-type").as_deref(), Some("image/jpeg"));
    assert_eq!(meta("variant-etag").as_deref(), Some(first.header("etag")));
    let created: u64 = meta("created-at").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        created <= now && now - created < 120,
        "created-at {created}"
    );

    // A new version of the original: a new key for both instances.
    moto.put("photo.jpg", &jpeg(400, 200, 240)).await;
    let fresh = b.get("photo.jpg?w=100", &[("accept", "*/*")]).await;
    assert_eq!(
        fresh.header("x-cache"),
        "MISS",
        "never the old version's variant"
    );
    assert_ne!(fresh.header("etag"), first.header("etag"));
    assert!(decode(&fresh.body).rgb[0] > 200, "the new image");
    crate::helpers::writes_settled(b.addr).await;
    let from_a = a.get("photo.jpg?w=100", &[("accept", "*/*")]).await;
    assert_eq!(from_a.header("x-cache"), "HIT");
    assert_eq!(from_a.body, fresh.body);
    assert_eq!(original_gets(), 2);
}

/// The store mode and the shared S3 variant cache under the Lambda runtime: the function
/// renders from the bucket, its variant lands in the cache bucket, and a server instance
/// sharing that bucket gets it as a hit (same bytes, same ETag).
#[tokio::test]
async fn the_store_mode_and_the_s3_cache_work_the_same_under_lambda() {
    let moto = start_moto().await;
    moto.create_bucket("variant-cache").await;
    moto.put("photo.jpg", &jpeg(400, 200, 10)).await;
    let settings: Vec<(&str, &str)> = vec![
        ("MEDIA_PROXY__STORE__KIND", "s3"),
        ("MEDIA_PROXY__STORE__BUCKET", BUCKET),
        ("MEDIA_PROXY__STORE__ENDPOINT", &moto.url),
        ("MEDIA_PROXY__STORE__ALLOW_HTTP", "true"),
        ("MEDIA_PROXY__STORE__REGION", "us-east-1"),
        ("MEDIA_PROXY__CACHE__KIND", "s3"),
        ("MEDIA_PROXY__CACHE__BUCKET", "variant-cache"),
        ("MEDIA_PROXY__CACHE__PREFIX", "variants"),
        ("MEDIA_PROXY__CACHE__ENDPOINT", &moto.url),
        ("MEDIA_PROXY__CACHE__ALLOW_HTTP", "true"),
        ("MEDIA_PROXY__CACHE__REGION", "us-east-1"),
        ("MEDIA_PROXY__CACHE__MEMORY", "0"),
        // What Lambda gives a function with an execution role.
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_SESSION_TOKEN", "testing"),
    ];
    let function = crate::lambda::Function::start(&settings).await;
    let first = function
        .api
        .get("/photo.jpg?w=100", &[("accept", "image/webp,*/*")])
        .await;
    assert_eq!(
        first.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(first.headers["content-type"], "image/webp");
    assert_eq!(first.headers["x-cache"], "MISS");
    let decoded = crate::store::decode(&first.body);
    assert_eq!((decoded.width, decoded.height), (100, 50));
    let again = function
        .api
        .get("/photo.jpg?w=100", &[("accept", "image/webp,*/*")])
        .await;
    assert_eq!(again.headers["x-cache"], "HIT", "from the cache bucket");
    assert!(again.body == first.body);

    // A server instance sharing the bucket: the function's render is its hit.
    let server = start_binary(
        &moto.url,
        &settings
            .iter()
            .filter(|(k, _)| k.starts_with("MEDIA_PROXY__CACHE__"))
            .copied()
            .collect::<Vec<_>>(),
    )
    .await;
    let shared = server
        .get("photo.jpg?w=100", &[("accept", "image/webp,*/*")])
        .await;
    assert_eq!(shared.header("x-cache"), "HIT");
    assert!(shared.body == first.body);
    assert_eq!(shared.header("etag"), first.headers["etag"]);
    assert_eq!(
        shared.header("cache-control"),
        first.headers["cache-control"]
    );
    // A missing key is the same 404 in both runtimes.
    let missing = function.api.get("/nothing.jpg?w=100", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        server.get("nothing.jpg?w=100", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_video_poster_from_s3_pulls_a_small_part_of_the_object() {
    let moto = start_moto().await;
    let (endpoint, log, sent) = recording_proxy(moto.url.clone()).await;
    let app = start_binary(&endpoint, &[]).await;
    // About 20 MB with its index at the end.
    let video = std::fs::read(crate::video::large_video(false)).unwrap();
    moto.put("clips/large.mp4", &video).await;
    let read = || sent.load(std::sync::atomic::Ordering::SeqCst);

    let r = app.get("clips/large.mp4?w=320&format=webp", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let d = decode(&r.body);
    assert_eq!((d.format, d.width, d.height), ("webp", 320, 180));
    // Let the abandoned first GET stop before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pulled = read();
    eprintln!("{pulled} of {} bytes pulled from S3", video.len());
    assert!(
        pulled < video.len() as u64 / 4,
        "a poster pulled {pulled} of {} bytes",
        video.len()
    );
    let seen = log.lock().unwrap().clone();
    let gets = seen.iter().filter(|(m, _)| m == "GET").count();
    assert!(
        gets <= 8,
        "a GET for the head, ranged reads after it: {seen:?}"
    );
}
