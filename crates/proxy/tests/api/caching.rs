//! The variant cache, the negative cache and request coalescing, against the scripted
//! origin (remote mode) and a local directory store. Work is counted where it happens: the
//! origin records every request it receives, and `/metrics` counts the engine's renders.
//! (The shared S3 cache is tested against a real S3 server in `store_s3.rs`.)

use std::path::Path;
use std::time::Duration;

use futures_util::future::join_all;
use media_proxy::config::CacheKind;
use media_proxy::Settings;
use reqwest::StatusCode;

use crate::helpers::{spawn_app_and_origin, spawn_app_with, Origin, TestApp};
use crate::store::{decode, spawn_store_app, Answer};

const EMOJI: &str = "/corpus/png-pngsuite/basn6a08.png";
/// The tiff decoder panics on this file: a 422 for `static`, every time.
const PANICKY: &str = "/corpus/tiff/pillow/tiff_tiled_planar_16bit_RGBa.tiff";

/// Caching on: the memory tier only, unless `configure` adds a persistent one.
fn cached(s: &mut Settings) {
    s.cache.memory = 64 << 20;
    s.cache.negative_ttl = Duration::from_secs(60);
}

async fn answer(app: &TestApp, url: &str) -> Answer {
    let r = app.get(url).await;
    Answer {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

/// A counter from `/metrics` (`media_proxy_<name>_total`).
pub async fn counter(app: &TestApp, name: &str) -> u64 {
    let text = app
        .get(&format!("http://{}/metrics", app.addr))
        .await
        .text()
        .await
        .unwrap();
    let metric = format!("media_proxy_{name}_total ");
    text.lines()
        .find_map(|l| l.strip_prefix(&metric))
        .unwrap_or_else(|| panic!("{metric} in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Requests the origin received for `path` (its path, without the query).
fn origin_requests(origin: &Origin, path: &str) -> usize {
    origin
        .hits()
        .iter()
        .filter(|h| h.target.split('?').next() == Some(path))
        .count()
}

#[tokio::test]
async fn a_hundred_identical_requests_cost_one_download_and_one_render() {
    let (app, origin) = spawn_app_and_origin(cached).await;
    // The origin takes 1 s to answer: every request arrives while the first is in progress.
    let url = app.proxy_url(
        "e.webp",
        &origin.url(&format!("{EMOJI}?delay=1000")),
        "&emoji",
    );
    let answers = join_all((0..100).map(|_| answer(&app, &url))).await;
    assert_eq!(origin_requests(&origin, EMOJI), 1, "one download");
    assert_eq!(counter(&app, "renders").await, 1, "one render");
    let first = &answers[0];
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, first.body, "every answer is the same image");
        assert_eq!(a.header("content-type"), "image/webp");
    }
    let d = decode(&first.body);
    assert_eq!((d.format, d.width, d.height), ("webp", 32, 32));
    let count = |v: &str| answers.iter().filter(|a| a.header("x-cache") == v).count();
    assert_eq!(count("MISS"), 1, "one request led the render");
    assert!(count("COALESCED") >= 1, "others shared it");
    assert_eq!(count("MISS") + count("COALESCED") + count("HIT"), 100);
    assert_eq!(counter(&app, "coalesced").await, count("COALESCED") as u64);
    // Later requests are cache hits: no download, no render.
    let again = answer(&app, &url).await;
    assert_eq!(again.header("x-cache"), "HIT");
    assert_eq!(again.body, first.body);
    assert_eq!(origin_requests(&origin, EMOJI), 1);
    assert_eq!(counter(&app, "renders").await, 1);
    assert!(counter(&app, "cache_hits").await >= 1);
    assert_eq!(counter(&app, "cache_misses").await, 1);
}

#[tokio::test]
async fn the_first_client_leaving_does_not_cancel_the_work_for_the_others() {
    let (app, origin) = spawn_app_and_origin(cached).await;
    let url = app.proxy_url(
        "e.webp",
        &origin.url(&format!("{EMOJI}?delay=600")),
        "&avatar",
    );
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let leader = tokio::spawn({
        let url = url.clone();
        async move { impatient.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let follower = answer(&app, &url).await;
    assert!(leader.await.unwrap().is_err(), "the first client gave up");
    assert_eq!(follower.status, StatusCode::OK);
    assert_eq!(
        follower.header("x-cache"),
        "COALESCED",
        "it joined the first one's work"
    );
    assert_eq!(decode(&follower.body).format, "webp");
    assert_eq!(origin_requests(&origin, EMOJI), 1);
    assert_eq!(counter(&app, "renders").await, 1);
}

#[tokio::test]
async fn different_variants_of_one_source_share_its_download() {
    let (app, origin) = spawn_app_and_origin(cached).await;
    let source = origin.url(&format!("{EMOJI}?delay=1000"));
    let flags = [
        "&emoji",
        "&emoji&static",
        "&avatar",
        "&avatar&static",
        "&static",
        "&preview",
        "&badge",
    ];
    let urls: Vec<String> = flags
        .iter()
        .map(|f| app.proxy_url("x", &source, f))
        .collect();
    let answers = join_all(urls.iter().map(|u| answer(&app, u))).await;
    for (a, f) in answers.iter().zip(flags) {
        assert!(
            a.status == StatusCode::OK || (f == "&badge" && a.status == StatusCode::NOT_FOUND),
            "{f}: {}",
            a.status
        );
        assert_eq!(
            a.header("x-cache"),
            "MISS",
            "{f}: each variant is its own render"
        );
    }
    assert_eq!(origin_requests(&origin, EMOJI), 1, "one download for all");
    assert_eq!(counter(&app, "source_downloads").await, 1);
    assert_eq!(counter(&app, "source_shared").await, flags.len() as u64 - 1);
}

#[tokio::test]
async fn a_failed_leader_fails_its_followers_and_the_next_request_tries_again() {
    let (app, origin) = spawn_app_and_origin(cached).await;
    // A 500 says nothing lasting about the source: not remembered.
    let url = app.proxy_url("x", &origin.url("/status/500?delay=500"), "&emoji");
    let answers = join_all((0..10).map(|_| answer(&app, &url))).await;
    for a in &answers {
        assert_eq!(a.status, StatusCode::BAD_GATEWAY);
        assert_eq!(a.body, b"origin answered with an error");
        assert_eq!(a.header("cache-control"), "no-store");
    }
    assert_eq!(origin_requests(&origin, "/status/500"), 1);
    let again = answer(&app, &url).await;
    assert_eq!(again.status, StatusCode::BAD_GATEWAY);
    assert_eq!(again.header("x-cache"), "MISS");
    assert_eq!(origin_requests(&origin, "/status/500"), 2, "retried");
}

#[tokio::test]
async fn lasting_failures_are_remembered_briefly() {
    let (app, origin) = spawn_app_and_origin(|s| {
        cached(s);
        s.cache.negative_ttl = Duration::from_secs(2);
    })
    .await;
    // An origin 404 concerns the source: every variant of it is answered from memory.
    let gone = origin.url("/status/404");
    let a = answer(&app, &app.proxy_url("x", &gone, "&emoji")).await;
    assert_eq!(
        (a.status, a.header("x-cache")),
        (StatusCode::NOT_FOUND, "MISS")
    );
    for flags in ["&emoji", "&avatar", "&static"] {
        let a = answer(&app, &app.proxy_url("x", &gone, flags)).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{flags}");
        assert_eq!(a.header("x-cache"), "HIT", "{flags}");
    }
    assert_eq!(origin_requests(&origin, "/status/404"), 1);
    assert_eq!(counter(&app, "negative_hits").await, 3);
    let metrics = app
        .get(&format!("http://{}/metrics", app.addr))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("media_proxy_origin_errors_total{class=\"status\"} 1\n"),
        "one origin error, not four: {metrics}"
    );
    // With `fallback`, a remembered failure is the placeholder, as a fresh one is.
    let a = answer(&app, &app.proxy_url("x", &gone, "&emoji&fallback")).await;
    assert_eq!(
        (a.status, a.header("content-type")),
        (StatusCode::OK, "image/png")
    );

    // Bytes that do not decode concern that variant: `static` is remembered, `preview`
    // of the same bytes is tried on its own.
    let broken = origin.url(PANICKY);
    for _ in 0..3 {
        let a = answer(&app, &app.proxy_url("x", &broken, "&static")).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(origin_requests(&origin, PANICKY), 1);
    let a = answer(&app, &app.proxy_url("x", &broken, "&preview")).await;
    assert_eq!(a.header("x-cache"), "MISS");
    assert_eq!(origin_requests(&origin, PANICKY), 2);

    // Past the TTL the origin is asked again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let a = answer(&app, &app.proxy_url("x", &gone, "&emoji")).await;
    assert_eq!(
        (a.status, a.header("x-cache")),
        (StatusCode::NOT_FOUND, "MISS")
    );
    assert_eq!(origin_requests(&origin, "/status/404"), 2);
}

/// Bytes of the entries under a cache directory.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn on_disk(dir: &Path, max_size: u64) -> impl FnOnce(&mut Settings) {
    let dir = dir.to_owned();
    move |s: &mut Settings| {
        cached(s);
        s.cache.memory = 0;
        s.cache.kind = CacheKind::Local;
        s.cache.root = dir;
        s.cache.max_size = max_size;
    }
}

/// Another app instance with a cache in `dir`, allowed to reach the scripted origins.
async fn app_on(dir: &Path, max_size: u64) -> TestApp {
    let configure = on_disk(dir, max_size);
    spawn_app_with(|s| {
        configure(s);
        s.allowed_private_networks = vec!["127.0.0.2/32".parse().unwrap()];
    })
    .await
}

#[tokio::test]
async fn a_local_cache_survives_a_restart_and_stays_under_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (app, origin) = spawn_app_and_origin(on_disk(dir.path(), 1 << 30)).await;
    let url = |app: &TestApp, n: usize| {
        app.proxy_url("x", &origin.url(&format!("{EMOJI}?n={n}")), "&avatar")
    };
    let first = answer(&app, &url(&app, 0)).await;
    assert_eq!(
        (first.status, first.header("x-cache")),
        (StatusCode::OK, "MISS")
    );
    app.writes_settled().await;
    let entry_size = dir_bytes(dir.path());
    assert!(
        entry_size > first.body.len() as u64,
        "one entry: {entry_size} bytes"
    );
    drop(app);

    // A new instance on the same directory: a hit, same bytes, nothing downloaded.
    let app = app_on(dir.path(), 1 << 30).await;
    let again = answer(&app, &url(&app, 0)).await;
    assert_eq!(again.header("x-cache"), "HIT");
    assert_eq!(again.body, first.body);
    assert_eq!(origin_requests(&origin, EMOJI), 1);

    // Bounded to about three entries: ten more sources leave at most three on disk, the
    // oldest evicted first.
    let bound = entry_size * 3 + entry_size / 2;
    let app = app_on(dir.path(), bound).await;
    for n in 1..=10 {
        let a = answer(&app, &url(&app, n)).await;
        assert_eq!(a.status, StatusCode::OK);
        app.writes_settled().await;
        assert!(
            dir_bytes(dir.path()) <= bound,
            "after {n}: {} bytes on disk, bound {bound}",
            dir_bytes(dir.path())
        );
    }
    assert!(counter(&app, "cache_evictions").await >= 7);
    let newest = answer(&app, &url(&app, 10)).await;
    assert_eq!(
        newest.header("x-cache"),
        "HIT",
        "the most recent entry stays"
    );
    let oldest = answer(&app, &url(&app, 1)).await;
    assert_eq!(
        oldest.header("x-cache"),
        "MISS",
        "the least recent was evicted"
    );
}

#[tokio::test]
async fn a_restart_with_a_smaller_bound_trims_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (app, origin) = spawn_app_and_origin(on_disk(dir.path(), 1 << 30)).await;
    for n in 0..6 {
        let url = app.proxy_url("x", &origin.url(&format!("{EMOJI}?n={n}")), "&emoji");
        assert_eq!(answer(&app, &url).await.status, StatusCode::OK);
    }
    app.writes_settled().await;
    let full = dir_bytes(dir.path());
    let bound = full / 2;
    let app = app_on(dir.path(), bound).await;
    // The start-up scan runs in the background.
    for _ in 0..100 {
        if dir_bytes(dir.path()) <= bound {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        dir_bytes(dir.path()) <= bound,
        "{} bytes after the restart, bound {bound} (was {full})",
        dir_bytes(dir.path())
    );
    assert!(counter(&app, "cache_evictions").await >= 1);
}

#[tokio::test]
async fn a_changed_original_is_never_answered_with_an_old_variant() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().to_owned();
    let s = spawn_store_app(move |s| {
        on_disk(&dir, 1 << 30)(s);
        s.cache.memory = 64 << 20;
    })
    .await;
    let png = |w: u32, shade: u8| {
        let mut out = Vec::new();
        image::RgbImage::from_pixel(w, 40, image::Rgb([shade, 0, 0]))
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    };
    s.put("a.png", &png(80, 10));
    let first = s.get("a.png", "w=40&format=png", &[]).await;
    assert_eq!(first.header("x-cache"), "MISS");
    let hit = s.get("a.png", "w=40&format=png", &[]).await;
    assert_eq!(hit.header("x-cache"), "HIT");
    assert_eq!(
        (hit.body.clone(), hit.header("etag")),
        (first.body.clone(), first.header("etag"))
    );
    // A new original under the same key (another shade and width): a new version.
    s.put("a.png", &png(120, 250));
    let after = s.get("a.png", "w=40&format=png", &[]).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(
        after.header("x-cache"),
        "MISS",
        "the old variant is not served"
    );
    assert_ne!(after.header("etag"), first.header("etag"));
    let d = decode(&after.body);
    assert_eq!((d.width, d.height), (40, 13));
    assert!(d.rgb[0] > 200, "the new image: red {}", d.rgb[0]);
    // Different `Accept` buckets of `format=auto` are different entries.
    let webp = s.get("a.png", "w=40", &[("accept", "image/webp")]).await;
    let png_out = s.get("a.png", "w=40", &[("accept", "*/*")]).await;
    assert_eq!(
        (webp.header("x-cache"), png_out.header("x-cache")),
        ("MISS", "MISS")
    );
    assert_eq!(decode(&webp.body).format, "webp");
    assert_eq!(decode(&png_out.body).format, "png");
    let webp_again = s
        .get("a.png", "w=40", &[("accept", "image/avif;q=0,image/webp")])
        .await;
    assert_eq!(webp_again.header("x-cache"), "HIT", "same bucket");
    assert_eq!(webp_again.header("vary"), "Accept");
    // A cached variant answers revalidations too.
    let etag = webp.header("etag").to_owned();
    let r = s
        .get(
            "a.png",
            "w=40",
            &[("accept", "image/webp"), ("if-none-match", &etag)],
        )
        .await;
    assert_eq!(
        (r.status, r.header("x-cache")),
        (StatusCode::NOT_MODIFIED, "HIT")
    );
    // A missing key is remembered (briefly) like an origin's 404.
    let missing = s.get("nope.png", "w=40", &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    s.put("nope.png", &png(80, 10));
    let still = s.get("nope.png", "w=40", &[]).await;
    assert_eq!(
        (still.status, still.header("x-cache")),
        (StatusCode::NOT_FOUND, "HIT")
    );
}

#[tokio::test]
async fn the_cache_header_can_be_renamed_or_left_out() {
    let (app, origin) = spawn_app_and_origin(|s| {
        cached(s);
        s.cache.header = "CDN-Cache-Origin".into();
    })
    .await;
    let url = app.proxy_url("x", &origin.url(EMOJI), "&emoji");
    let a = answer(&app, &url).await;
    assert_eq!(a.header("cdn-cache-origin"), "MISS");
    assert_eq!(a.header("x-cache"), "");
    let a = answer(&app, &url).await;
    assert_eq!(a.header("cdn-cache-origin"), "HIT");
    // Passthrough is not cached here: no header.
    let a = answer(&app, &app.proxy_url("x", &origin.url(EMOJI), "")).await;
    assert_eq!(a.header("cdn-cache-origin"), "");

    let (app, origin) = spawn_app_and_origin(|s| s.cache.header = String::new()).await;
    let a = answer(&app, &app.proxy_url("x", &origin.url(EMOJI), "&emoji")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("x-cache"), "", "{:?}", a.headers);
}

/// Something done to an entry file's bytes.
type Damage = Box<dyn Fn(&mut Vec<u8>)>;

/// Every file under `dir` (the entries of a local cache).
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn damaged_entries_are_never_served_but_rendered_again() {
    let dir = tempfile::tempdir().unwrap();
    let (app, origin) = spawn_app_and_origin(on_disk(dir.path(), 1 << 30)).await;
    let first = answer(&app, &app.proxy_url("x", &origin.url(EMOJI), "&avatar")).await;
    assert_eq!(first.header("x-cache"), "MISS");
    app.writes_settled().await;
    drop(app);
    let on_disk = files(dir.path());
    assert_eq!(on_disk.len(), 1, "one entry on disk: {on_disk:?}");
    let entry = on_disk[0].clone();
    let whole = std::fs::read(&entry).unwrap();
    // Cut to half (a crash mid-write, a full disk), then one payload bit flipped.
    let damages: [Damage; 2] = [
        Box::new(|b: &mut Vec<u8>| b.truncate(b.len() / 2)),
        Box::new(|b: &mut Vec<u8>| {
            let at = b.len() - 10;
            b[at] ^= 0x04;
        }),
    ];
    for (n, damage) in damages.iter().enumerate() {
        let mut bytes = whole.clone();
        damage(&mut bytes);
        std::fs::write(&entry, &bytes).unwrap();
        // A fresh instance on the directory (no memory tier holds the good copy).
        let app = app_on(dir.path(), 1 << 30).await;
        let url = app.proxy_url("x", &origin.url(EMOJI), "&avatar");
        let again = answer(&app, &url).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.header("x-cache"), "MISS", "damage {n} was served");
        assert_eq!(again.body, first.body, "rendered again, the same bytes");
        app.writes_settled().await;
        assert_eq!(
            counter(&app, "cache_damaged").await,
            1,
            "damage {n} counted"
        );
        assert_eq!(
            crate::helpers::timeless(&std::fs::read(&entry).unwrap()),
            crate::helpers::timeless(&whole),
            "the entry is written anew"
        );
        let hit = answer(&app, &url).await;
        assert_eq!(hit.header("x-cache"), "HIT");
    }
    assert_eq!(origin_requests(&origin, EMOJI), 3);
}
