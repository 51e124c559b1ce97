//! Admission by memory, the processing deadline, cancellation on disconnect, and the health
//! endpoints. Heavy work is real work: a 500-frame animation made into an animated emoji.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{spawn_app_and_origin, Origin, TestApp};

/// 500 frames of 64×64: several hundred milliseconds of encoding, even in release builds.
const HEAVY: &str = "/corpus/gif/generated/anim_500_frames_64x64_interlaced.gif";
const LIGHT: &str = "/corpus/png-pngsuite/basn6a08.png";
const PHOTO: &str = "/corpus/jpeg/large/photo_24mp_6000x4000_baseline_q85.jpg";

fn url(app: &TestApp, origin: &Origin, path: &str, flags: &str) -> String {
    app.proxy_url("x.webp", &origin.url(path), flags)
}

/// Sends `GET url` in the background; the handle gives its status.
fn in_background(app: &TestApp, url: String) -> tokio::task::JoinHandle<StatusCode> {
    let client = app.client.clone();
    tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
}

/// `n` simultaneous heavy `avatar` requests for `n` different URLs (identical requests
/// would share one render); their statuses, in order.
async fn burst(app: &TestApp, origin: &Origin, n: usize) -> Vec<StatusCode> {
    let requests: Vec<_> = (0..n)
        .map(|i| in_background(app, url(app, origin, &format!("{HEAVY}?n={i}"), "&avatar")))
        .collect();
    let mut statuses = Vec::new();
    for r in requests {
        statuses.push(r.await.unwrap());
    }
    statuses
}

async fn wait_until_ready(app: &TestApp, ready: bool) {
    for _ in 0..400 {
        let r = app.get(&format!("http://{}/readyz", app.addr)).await;
        if (r.status() == StatusCode::OK) == ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "/readyz never became {}",
        if ready { "ready" } else { "saturated" }
    );
}

#[tokio::test]
async fn health_endpoints_answer_and_readyz_follows_saturation() {
    let (app, origin) = spawn_app_and_origin(|s| {
        s.workers.threads = 1;
        s.workers.queue = 0;
    })
    .await;
    let r = app.get(&format!("http://{}/healthz", app.addr)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.text().await.unwrap(), "ok");
    let r = app.get(&format!("http://{}/readyz", app.addr)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "ready");

    // One heavy request fills the only worker (and the queue holds none): not ready.
    let heavy = in_background(&app, url(&app, &origin, HEAVY, "&emoji"));
    wait_until_ready(&app, false).await;
    // Light requests are not stuck behind it: liveness and passthrough answer at once...
    let started = Instant::now();
    let r = app.get(&format!("http://{}/healthz", app.addr)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.get(&url(&app, &origin, LIGHT, "")).await;
    assert_eq!(r.status(), StatusCode::OK, "passthrough while saturated");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "light requests wait"
    );
    // ...and more image work is turned away with 503 and Retry-After.
    let r = app.get(&url(&app, &origin, LIGHT, "&static")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        r.headers()["cache-control"],
        "no-store",
        "an overload is not cached"
    );
    assert_eq!(heavy.await.unwrap(), StatusCode::OK);
    wait_until_ready(&app, true).await;
}

#[tokio::test]
async fn work_over_the_whole_memory_budget_is_refused_before_decoding() {
    // A 24 MP photo (7.4 MB) → static decodes at 1/8 scale (750×500): the estimate (the
    // input, fixed codec overhead, the canvases) is ~13 MB, over a 10 MiB budget that the
    // download alone fits in, so it is refused without decoding.
    let (app, origin) = spawn_app_and_origin(|s| s.workers.memory_budget = 10 << 20).await;
    let r = app.get(&url(&app, &origin, PHOTO, "&static")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.text().await.unwrap(), "image too large");
    // With a budget smaller than the download itself, the download is refused: 413.
    let (app, origin) = spawn_app_and_origin(|s| s.workers.memory_budget = 1 << 20).await;
    let r = app.get(&url(&app, &origin, PHOTO, "&static")).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (app, origin) = spawn_app_and_origin(|s| s.workers.memory_budget = 64 << 20).await;
    let r = app.get(&url(&app, &origin, PHOTO, "&static")).await;
    assert_eq!(r.status(), StatusCode::OK, "fits a 64 MB budget");
}

#[tokio::test]
async fn requests_wait_for_memory_not_for_a_count() {
    // Four CPU slots, but memory for two of these renders at a time (each is estimated at
    // about 5 MB: 4 MB of fixed codec overhead, the 160 KB input, small canvases); nobody
    // may queue, so a burst of four cannot all be admitted.
    let (app, origin) = spawn_app_and_origin(|s| {
        s.workers.threads = 4;
        s.workers.queue = 0;
        s.workers.memory_budget = 12 << 20;
    })
    .await;
    let statuses = burst(&app, &origin, 4).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let busy = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(ok + busy, 4, "{statuses:?}");
    assert!(ok >= 1 && busy >= 1, "not all four fit: {statuses:?}");
    // With a queue, the same burst waits its turn and every request succeeds.
    let (app, origin) = spawn_app_and_origin(|s| {
        s.workers.threads = 4;
        s.workers.queue = 8;
        s.workers.memory_budget = 12 << 20;
        s.workers.queue_wait = Duration::from_secs(60);
    })
    .await;
    for status in burst(&app, &origin, 4).await {
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_render_past_its_deadline_is_abandoned_with_422() {
    let (app, origin) = spawn_app_and_origin(|s| {
        s.workers.threads = 1;
        s.workers.deadline = Duration::from_millis(20);
    })
    .await;
    let started = Instant::now();
    let r = app.get(&url(&app, &origin, HEAVY, "&emoji")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.headers()["cache-control"], "max-age=300");
    assert_eq!(r.text().await.unwrap(), "image took too long");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The abandoned work let go of the only worker: the next image is served.
    let r = app.get(&url(&app, &origin, LIGHT, "&static")).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_leaves_cancels_its_render() {
    let (app, origin) = spawn_app_and_origin(|s| {
        s.workers.threads = 1;
        s.workers.queue = 4;
        s.workers.queue_wait = Duration::from_secs(60);
    })
    .await;
    // How long the heavy render takes when someone waits for it.
    let started = Instant::now();
    let r = app.get(&url(&app, &origin, HEAVY, "&emoji")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let full = started.elapsed();
    // Now a client asks for it (uncached: another flag) and gives up after 50 ms.
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let gone = impatient
        .get(url(&app, &origin, HEAVY, "&avatar"))
        .send()
        .await;
    assert!(gone.is_err(), "the client timed out");
    // The only worker is free again long before that render would have finished.
    let started = Instant::now();
    let r = app.get(&url(&app, &origin, LIGHT, "&static")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let waited = started.elapsed();
    assert!(
        waited < full / 2,
        "waited {waited:?} for the worker; the full render takes {full:?}"
    );
}
