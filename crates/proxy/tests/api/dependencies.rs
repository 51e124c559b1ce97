//! When the parts we depend on fail: a hung or refusing S3 variant cache, damaged entries
//! in a bucket, a hung or refusing S3 store, a cache directory that cannot be written or is
//! removed, and origins whose DNS, TLS or connection fails. The faults come from
//! [`crate::faults`] (a TCP proxy between the binary and moto or the origin, a refusing
//! port, a loopback DNS server); every bound is asserted as "within the configured budget
//! plus a margin", measured around the request.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use media_proxy::config::CacheKind;
use reqwest::StatusCode;

use crate::faults::{refusing_addr, start_dns, DnsAnswer, Fault, FaultProxy};
use crate::helpers::{
    metric, metrics_text, spawn_app_and_origin, spawn_origin, writes_settled, Origin, TestApp,
};
use crate::store_s3::{free_port, start_binary, start_moto, Binary, Moto, FAKE_SIGNATURE};

/// Slack for a loaded test machine above a configured bound (a 64×64 render is
/// milliseconds; many test binaries share two cores).
const MARGIN: Duration = Duration::from_millis(2500);

/// The binary in remote mode with an S3 variant cache at `endpoint` (and the store on a
/// healthy moto, unused here), allowed to reach the origin on 127.0.0.2.
async fn with_s3_cache(moto: &Moto, endpoint: &str, extra: &[(&str, &str)]) -> Binary {
    let mut env = vec![
        ("MEDIA_PROXY__CACHE__KIND", "s3"),
        ("MEDIA_PROXY__CACHE__BUCKET", "variant-cache"),
        ("MEDIA_PROXY__CACHE__ENDPOINT", endpoint),
        ("MEDIA_PROXY__CACHE__ALLOW_HTTP", "true"),
        ("MEDIA_PROXY__CACHE__REGION", "us-east-1"),
        ("MEDIA_PROXY__CACHE__MEMORY", "0"),
        ("MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS", "127.0.0.2/32"),
    ];
    env.extend_from_slice(extra);
    start_binary(&moto.url, &env).await
}

/// `emoji` of a distinct generated PNG on `origin`: status, `X-Cache`, time taken.
async fn emoji(binary: &Binary, origin: &Origin, n: usize) -> (StatusCode, String, Duration) {
    let url = origin.url(&format!("/generated/64x64.png?n={n}"));
    let encoded: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
    let started = Instant::now();
    let answer = binary
        .get(&format!("emoji.webp?url={encoded}&emoji=1"), &[])
        .await;
    let took = started.elapsed();
    if answer.status == StatusCode::OK {
        let image = image::load_from_memory(&answer.body).expect("a decodable emoji");
        assert!(image.width() > 0 && image.height() > 0);
    }
    (answer.status, answer.header("x-cache").to_owned(), took)
}

/// Asserts each series of `/metrics` at `addr` has its value (`None`: absent).
async fn expect_metrics(addr: std::net::SocketAddr, expected: &[(&str, Option<f64>)]) {
    let m = metrics_text(addr).await;
    for (series, value) in expected {
        assert_eq!(metric(&m, series), *value, "{series} in:\n{m}");
    }
}

async fn value(addr: std::net::SocketAddr, series: &str) -> f64 {
    metric(&metrics_text(addr).await, series).unwrap_or(0.0)
}

/// A hung bucket (it accepts connections and never answers) costs each answer at most the
/// lookup budget, never the write: before, every `emoji` took the lookup's 5 s time-out and
/// then the write's. After `breaker_failures` time-outs the cache is not asked at all.
#[tokio::test]
async fn a_hung_s3_cache_costs_an_answer_no_more_than_its_lookup_budget() {
    let moto = start_moto().await;
    moto.create_bucket("variant-cache").await;
    let hung = FaultProxy::start(moto.addr(), Fault::Stall).await;
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let lookup = Duration::from_millis(300);
    let binary = with_s3_cache(
        &moto,
        &hung.url(),
        &[
            ("MEDIA_PROXY__CACHE__LOOKUP_TIMEOUT", "300ms"),
            // A write waited for would show: 10 s.
            ("MEDIA_PROXY__CACHE__TIMEOUT", "10s"),
            ("MEDIA_PROXY__CACHE__BREAKER_FAILURES", "3"),
            ("MEDIA_PROXY__CACHE__BREAKER_COOLDOWN", "10m"),
        ],
    )
    .await;
    for n in 0..6 {
        let (status, cache, took) = emoji(&binary, &origin, n).await;
        assert_eq!((status, cache.as_str()), (StatusCode::OK, "MISS"), "#{n}");
        assert!(took < lookup + MARGIN, "#{n} took {took:?}");
    }
    // Three lookups timed out, then the breaker opened and the rest were not tried.
    expect_metrics(
        binary.addr,
        &[
            (
                r#"media_proxy_cache_errors_total{op="read",kind="timeout"}"#,
                Some(3.0),
            ),
            (
                r#"media_proxy_breaker_open{dependency="cache_read"}"#,
                Some(1.0),
            ),
            (r#"media_proxy_cache_skipped_total{op="read"}"#, Some(3.0)),
        ],
    )
    .await;
    let ready = binary.get("readyz", &[]).await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "a dead cache is not a reason to stop"
    );
}

/// A slow bucket (every new connection waits 3 s): the lookup is a miss within its budget,
/// the answer goes out while its entry is still being written, and the write then lands.
#[tokio::test]
async fn a_slow_s3_cache_is_written_after_the_answer() {
    let moto = start_moto().await;
    moto.create_bucket("variant-cache").await;
    let slow = FaultProxy::start(moto.addr(), Fault::Delay(Duration::from_secs(3))).await;
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let binary = with_s3_cache(
        &moto,
        &slow.url(),
        &[
            ("MEDIA_PROXY__CACHE__LOOKUP_TIMEOUT", "300ms"),
            ("MEDIA_PROXY__CACHE__TIMEOUT", "20s"),
        ],
    )
    .await;
    let (status, cache, took) = emoji(&binary, &origin, 1).await;
    assert_eq!((status, cache.as_str()), (StatusCode::OK, "MISS"));
    assert!(took < Duration::from_millis(300) + MARGIN, "took {took:?}");
    assert_eq!(
        value(binary.addr, "media_proxy_cache_writes_pending").await,
        1.0,
        "answered before its entry was written"
    );
    writes_settled(binary.addr).await;
    let m = metrics_text(binary.addr).await;
    assert_eq!(
        metric(&m, "media_proxy_cache_writes_total"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"media_proxy_cache_errors_total{op="write",kind="timeout"}"#
        ),
        Some(0.0),
        "no write timed out (the series exists from the start, at zero)"
    );
    only_entry(&moto).await;
}

/// A refusing endpoint: answers at once, failures counted, the breaker open after three.
#[tokio::test]
async fn a_refusing_s3_cache_answers_at_once_and_opens_its_breaker() {
    let moto = start_moto().await;
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let refusing = format!("http://{}", refusing_addr(Ipv4Addr::LOCALHOST));
    let binary = with_s3_cache(
        &moto,
        &refusing,
        &[("MEDIA_PROXY__CACHE__BREAKER_FAILURES", "3")],
    )
    .await;
    for n in 0..5 {
        let (status, _, took) = emoji(&binary, &origin, n).await;
        assert_eq!(status, StatusCode::OK, "#{n}");
        assert!(
            took < Duration::from_millis(300) + MARGIN,
            "#{n} took {took:?}"
        );
    }
    writes_settled(binary.addr).await;
    let m = metrics_text(binary.addr).await;
    let failed = metric(
        &m,
        r#"media_proxy_cache_errors_total{op="read",kind="error"}"#,
    )
    .unwrap_or(0.0)
        + metric(
            &m,
            r#"media_proxy_cache_errors_total{op="read",kind="timeout"}"#,
        )
        .unwrap_or(0.0);
    assert_eq!(failed, 3.0, "{m}");
    assert_eq!(
        metric(&m, r#"media_proxy_breaker_open{dependency="cache_read"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, r#"media_proxy_breaker_open{dependency="cache_write"}"#),
        Some(1.0),
        "{m}"
    );
}

/// After its cooldown the breaker lets one request probe the bucket; once the bucket
/// answers again it closes and entries are written and served from it as before.
#[tokio::test]
async fn the_cache_breaker_probes_and_closes_when_the_bucket_is_back() {
    let moto = start_moto().await;
    moto.create_bucket("variant-cache").await;
    let fault = FaultProxy::start(moto.addr(), Fault::Stall).await;
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let binary = with_s3_cache(
        &moto,
        &fault.url(),
        &[
            // Room for moto on a loaded machine: a slow probe would open it again.
            ("MEDIA_PROXY__CACHE__LOOKUP_TIMEOUT", "1s"),
            ("MEDIA_PROXY__CACHE__TIMEOUT", "2s"),
            ("MEDIA_PROXY__CACHE__BREAKER_FAILURES", "2"),
            ("MEDIA_PROXY__CACHE__BREAKER_COOLDOWN", "500ms"),
        ],
    )
    .await;
    let open = r#"media_proxy_breaker_open{dependency="cache_read"}"#;
    for n in 0..2 {
        assert_eq!(emoji(&binary, &origin, n).await.0, StatusCode::OK);
    }
    assert_eq!(value(binary.addr, open).await, 1.0);
    fault.set(Fault::Pass);
    // Requests until one is the probe that finds the bucket answering (the cooldown is
    // half a second; thirty seconds are far more than it takes).
    let started = Instant::now();
    let mut n = 10;
    while value(binary.addr, open).await != 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the read breaker closed once the bucket answered"
        );
        assert_eq!(emoji(&binary, &origin, n).await.0, StatusCode::OK);
        n += 1;
    }
    // Writes too: an entry written now is served from the bucket.
    let mut hit = false;
    for _ in 0..40 {
        let (_, cache, _) = emoji(&binary, &origin, 99).await;
        if cache == "HIT" {
            hit = true;
            break;
        }
        writes_settled(binary.addr).await;
    }
    assert!(hit, "an entry written after the breaker closed is served");
}

/// The key of the one entry in the cache bucket.
async fn only_entry(moto: &Moto) -> String {
    let keys = moto.keys("variant-cache", "").await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys.into_iter().next().unwrap()
}

async fn object(moto: &Moto, key: &str) -> Vec<u8> {
    let r = crate::store_s3::client()
        .get(format!("{}/variant-cache/{key}", moto.url))
        .header("authorization", FAKE_SIGNATURE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap().to_vec()
}

async fn replace(moto: &Moto, key: &str, bytes: Vec<u8>) {
    let r = crate::store_s3::client()
        .put(format!("{}/variant-cache/{key}", moto.url))
        .header("authorization", FAKE_SIGNATURE)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// Entries in a bucket are verified like those on disk: one cut short and one with a
/// flipped byte are rendered again (a miss), never served, and counted.
#[tokio::test]
async fn damaged_s3_entries_are_rendered_again_never_served() {
    let moto = start_moto().await;
    moto.create_bucket("variant-cache").await;
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let binary = with_s3_cache(&moto, &moto.url, &[]).await;
    assert_eq!(emoji(&binary, &origin, 1).await.1, "MISS");
    writes_settled(binary.addr).await;
    assert_eq!(
        emoji(&binary, &origin, 1).await.1,
        "HIT",
        "the entry serves"
    );
    let key = only_entry(&moto).await;
    let whole = object(&moto, &key).await;

    replace(&moto, &key, whole[..whole.len() / 2].to_vec()).await;
    let (status, cache, _) = emoji(&binary, &origin, 1).await;
    assert_eq!(
        (status, cache.as_str()),
        (StatusCode::OK, "MISS"),
        "cut short"
    );
    writes_settled(binary.addr).await;

    let mut flipped = object(&moto, &key).await;
    assert_eq!(
        crate::helpers::timeless(&flipped),
        crate::helpers::timeless(&whole),
        "rendered and written again: the same picture and facts"
    );
    let last = flipped.len() - 10;
    flipped[last] ^= 0x40;
    replace(&moto, &key, flipped).await;
    let (status, cache, _) = emoji(&binary, &origin, 1).await;
    assert_eq!(
        (status, cache.as_str()),
        (StatusCode::OK, "MISS"),
        "flipped"
    );
    assert_eq!(
        value(binary.addr, "media_proxy_cache_damaged_total").await,
        2.0
    );
}

/// A store that accepts connections and never answers: each request is a `504` no cache
/// keeps, within `store.timeout`; after `breaker_failures` of them the store is not asked
/// and requests are answered `503` at once (with `Retry-After`), `/readyz` says why.
#[tokio::test]
async fn a_hung_store_is_a_504_in_its_time_then_a_503_at_once() {
    let moto = start_moto().await;
    let hung = FaultProxy::start(moto.addr(), Fault::Stall).await;
    let binary = start_binary(
        &hung.url(),
        &[
            ("MEDIA_PROXY__STORE__TIMEOUT", "1s"),
            ("MEDIA_PROXY__STORE__BREAKER_FAILURES", "2"),
            ("MEDIA_PROXY__STORE__BREAKER_COOLDOWN", "10m"),
        ],
    )
    .await;
    for n in 0..2 {
        let started = Instant::now();
        let r = binary.get(&format!("photo{n}.jpg?w=100"), &[]).await;
        let took = started.elapsed();
        assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "#{n}");
        assert_eq!(r.header("cache-control"), "no-store");
        assert!(took < Duration::from_secs(1) + MARGIN, "#{n} took {took:?}");
    }
    let started = Instant::now();
    let r = binary.get("photo9.jpg?w=100", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "not asked: at once"
    );
    assert_eq!(r.header("cache-control"), "no-store");
    let retry: u64 = r.header("retry-after").parse().unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    let ready = binary.get("readyz", &[]).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(String::from_utf8_lossy(&ready.body), "store unavailable");
}

/// A store that refuses connections answers fast (`502`), and its breaker opens too.
#[tokio::test]
async fn a_refusing_store_answers_fast() {
    let refusing = format!("http://{}", refusing_addr(Ipv4Addr::LOCALHOST));
    let binary = start_binary(&refusing, &[("MEDIA_PROXY__STORE__BREAKER_FAILURES", "3")]).await;
    for n in 0..3 {
        let started = Instant::now();
        let r = binary.get(&format!("photo{n}.jpg?w=100"), &[]).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "#{n}");
        assert_eq!(r.header("cache-control"), "no-store");
        assert!(started.elapsed() < MARGIN, "#{n}");
    }
    let r = binary.get("photo.jpg?w=100", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        value(
            binary.addr,
            r#"media_proxy_breaker_open{dependency="store"}"#
        )
        .await,
        1.0
    );
}

async fn local_cache(dir: &std::path::Path) -> (TestApp, Origin) {
    let root = dir.to_path_buf();
    spawn_app_and_origin(move |s| {
        s.cache.kind = CacheKind::Local;
        s.cache.root = root;
    })
    .await
}

async fn emoji_of(app: &TestApp, origin: &Origin, n: usize) -> (StatusCode, String) {
    let url = app.proxy_url(
        "emoji.webp",
        &origin.url(&format!("/generated/64x64.png?n={n}")),
        "&emoji=1",
    );
    let r = app.get(&url).await;
    let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
    (r.status(), cache)
}

/// The binary in remote mode with a local cache at `root`, run as `nobody` when the tests
/// run as root (so that a directory's mode binds it, as it binds a service user).
/// Its log (warnings and above) goes to `log` when given.
async fn binary_with_local_cache(
    root: &std::path::Path,
    extra: &[(&str, &str)],
    log: Option<&std::path::Path>,
) -> Binary {
    use std::os::unix::process::CommandExt;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_media-proxy"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MEDIA_PROXY__LISTEN", addr.to_string())
        .env("MEDIA_PROXY__STORE__KIND", "none")
        .env("MEDIA_PROXY__CACHE__KIND", "local")
        .env("MEDIA_PROXY__CACHE__ROOT", root)
        .env("MEDIA_PROXY__CACHE__MEMORY", "0")
        .env("MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS", "127.0.0.2/32")
        .env("MEDIA_PROXY__LOG__FILTER", "warn")
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .stderr(match log {
            Some(path) => std::process::Stdio::from(std::fs::File::create(path).unwrap()),
            None => std::process::Stdio::null(),
        });
    for (k, v) in extra {
        cmd.env(k, v);
    }
    // `/proc/self` belongs to the effective user.
    let euid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    if euid == 0 {
        cmd.uid(65534).gid(65534);
    }
    Binary::spawned(cmd.spawn().expect("the binary starts"), addr).await
}

/// Writes that fail for good — a read-only cache directory (mode 0555; a full disk,
/// `ENOSPC`, is taken alike) — stop at the first failure, with one warning, and every
/// answer goes on; reads are not affected.
#[tokio::test]
async fn a_cache_directory_that_cannot_be_written_stops_the_writes_not_the_answers() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = parent.path().join("cache");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o555)).unwrap();
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let log = parent.path().join("log.txt");
    let binary = binary_with_local_cache(&root, &[], Some(&log)).await;
    for n in 0..4 {
        let (status, cache, _) = emoji(&binary, &origin, n).await;
        assert_eq!((status, cache.as_str()), (StatusCode::OK, "MISS"), "#{n}");
        writes_settled(binary.addr).await;
    }
    // One failure, then no write was tried; reads go on.
    expect_metrics(
        binary.addr,
        &[
            (
                r#"media_proxy_cache_errors_total{op="write",kind="error"}"#,
                Some(1.0),
            ),
            (
                r#"media_proxy_breaker_open{dependency="cache_write"}"#,
                Some(1.0),
            ),
            (r#"media_proxy_cache_skipped_total{op="write"}"#, Some(3.0)),
            (
                r#"media_proxy_breaker_open{dependency="cache_read"}"#,
                Some(0.0),
            ),
        ],
    )
    .await;
    assert!(walk(&root).is_empty());
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        log.matches("circuit breaker open").count(),
        1,
        "one warning:\n{log}"
    );
}

/// The cache directory removed while the proxy runs is made again by the next write.
#[tokio::test]
async fn a_cache_directory_removed_at_run_time_is_made_again() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("cache");
    let (app, origin) = local_cache(&root).await;
    assert_eq!(emoji_of(&app, &origin, 1).await.1, "MISS");
    app.writes_settled().await;
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(emoji_of(&app, &origin, 2).await.1, "MISS");
    app.writes_settled().await;
    let entries = walk(&root);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(emoji_of(&app, &origin, 2).await.1, "HIT");
    assert_eq!(
        emoji_of(&app, &origin, 1).await.1,
        "MISS",
        "gone with the directory"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Origin failures by class: a name that does not exist is a `404`; a DNS server failing
/// (SERVFAIL) a `502` and one not answering a `504`, neither stored; a TLS handshake that
/// fails, a refused connection and a body reset mid-way are `502`s; each counted under its
/// own class.
#[tokio::test]
async fn origin_failures_are_told_apart_and_counted() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let dns = start_dns(vec![
        ("ok.test", DnsAnswer::Address(Ipv4Addr::new(127, 0, 0, 2))),
        ("gone.test", DnsAnswer::NoSuchName),
        ("broken.test", DnsAnswer::ServerFailure),
        ("silent.test", DnsAnswer::Silence),
    ])
    .await;
    let reset = FaultProxy::start_on(
        Ipv4Addr::new(127, 0, 0, 3),
        origin.addr,
        Fault::ResetAfter(2000),
    )
    .await;
    let refused = refusing_addr(Ipv4Addr::new(127, 0, 0, 3));
    let (app, _) = spawn_app_and_origin(|s| {
        s.allowed_private_networks = vec![
            "127.0.0.2/32".parse().unwrap(),
            "127.0.0.3/32".parse().unwrap(),
        ];
        s.remote.dns_servers = vec![dns];
        s.timeouts.connect = Duration::from_secs(2);
    })
    .await;
    let port = origin.addr.port();
    let cases = [
        (
            format!("http://ok.test:{port}/generated/8x8.png"),
            StatusCode::OK,
            None,
            "resolved by the server set",
        ),
        (
            format!("http://gone.test:{port}/x.png"),
            StatusCode::NOT_FOUND,
            Some("dns_missing"),
            "NXDOMAIN",
        ),
        (
            format!("http://broken.test:{port}/x.png"),
            StatusCode::BAD_GATEWAY,
            Some("dns_failed"),
            "SERVFAIL",
        ),
        (
            format!("http://silent.test:{port}/x.png"),
            StatusCode::GATEWAY_TIMEOUT,
            Some("dns_timeout"),
            "no DNS answer",
        ),
        (
            format!("https://127.0.0.2:{port}/x.png"),
            StatusCode::BAD_GATEWAY,
            Some("tls"),
            "TLS to a plain HTTP port",
        ),
        (
            format!("http://{refused}/x.png"),
            StatusCode::BAD_GATEWAY,
            Some("connect"),
            "refused",
        ),
        (
            format!("http://{}/generated/800x800.png", reset.addr),
            StatusCode::BAD_GATEWAY,
            Some("body"),
            "reset mid-body",
        ),
    ];
    for (url, status, class, why) in &cases {
        let started = Instant::now();
        let r = app.get(&app.proxy_url("x.webp", url, "&static=1")).await;
        let took = started.elapsed();
        assert_eq!(r.status(), *status, "{why}: {url}");
        if status.is_server_error() {
            assert_eq!(r.headers()["cache-control"], "no-store", "{why}");
        }
        assert!(
            took < Duration::from_secs(2) + MARGIN,
            "{why} took {took:?}"
        );
        if let Some(class) = class {
            let series = format!(r#"media_proxy_origin_errors_total{{class="{class}"}}"#);
            assert_eq!(value(app.addr, &series).await, 1.0, "{why}: {series}");
        }
    }
}

/// A crash while entries are being written (the process killed with SIGKILL as the first of
/// 24 answers arrives, the others' renders and writes under way) leaves no half entry under
/// a real name: entries go to a temporary file renamed into place. A new process on the
/// directory serves or re-renders each variant and finds nothing damaged. (The kill lands
/// at an arbitrary moment: a write is a few milliseconds, so most runs kill between writes;
/// the invariant is checked whatever the moment was.)
#[tokio::test]
async fn a_crash_while_writing_leaves_no_half_entry() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = parent.path().join("cache");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let target = |binary: &Binary, n: usize| {
        let url = origin.url(&format!("/generated/900x700.png?n={n}"));
        let encoded: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
        format!("http://{}/s.webp?url={encoded}&static=1", binary.addr)
    };
    let room = [("MEDIA_PROXY__WORKERS__QUEUE", "64")];
    let first = binary_with_local_cache(&root, &room, None).await;
    let client = crate::store_s3::client();
    let mut answers = futures_util::stream::FuturesUnordered::new();
    for n in 0..24 {
        let request = client.get(target(&first, n)).send();
        answers.push(request);
    }
    use futures_util::StreamExt;
    let answered = answers.next().await.unwrap().unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
    drop(first); // SIGKILL, the other renders and writes wherever they are
    drop(answers);

    let second = binary_with_local_cache(&root, &room, None).await;
    for n in 0..24 {
        let r = client.get(target(&second, n)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "#{n}");
        image::load_from_memory(&r.bytes().await.unwrap()).expect("a whole image");
    }
    assert_eq!(
        value(second.addr, "media_proxy_cache_damaged_total").await,
        0.0,
        "no entry under a real name was cut short"
    );
}
