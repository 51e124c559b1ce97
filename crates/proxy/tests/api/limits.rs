//! Origin failures and limits: statuses relayed or mapped, size cap from Content-Length and
//! while streaming (413 promptly, never a hang), stalled and broken origins.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{spawn_app_and_origin, Origin, TestApp};

async fn setup(configure: impl FnOnce(&mut media_proxy::Settings)) -> (TestApp, Origin) {
    spawn_app_and_origin(configure).await
}

#[tokio::test]
async fn origin_statuses_are_relayed_or_mapped() {
    let (app, origin) = setup(|_| {}).await;
    let cases = [
        (400, 400),
        (401, 401),
        (403, 403),
        (404, 404),
        (410, 410),
        (451, 451),
        (500, 502),
        (502, 502),
        (503, 502),
    ];
    for (origin_status, want) in cases {
        for flags in ["", "&emoji"] {
            let url = origin.url(&format!("/status/{origin_status}"));
            let r = app.get(&app.proxy_url("image.webp", &url, flags)).await;
            assert_eq!(r.status().as_u16(), want, "origin {origin_status}{flags}");
            // A 4xx is the origin's lasting word; a 5xx (an outage) must not be stored.
            let cache = if want >= 500 {
                "no-store"
            } else {
                "max-age=300"
            };
            assert_eq!(
                r.headers()["cache-control"],
                cache,
                "origin {origin_status}"
            );
        }
    }
}

#[tokio::test]
async fn unreachable_origins_are_502() {
    let (app, origin) = setup(|_| {}).await;
    // Nothing listens on port 9 of the allowed address: connection refused.
    let r = app
        .get(&app.proxy_url("a", "http://127.0.0.2:9/x.png", ""))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "connection refused");
    // A body that ends before its Content-Length.
    let r = app
        .get(&app.proxy_url("a", &origin.url("/truncated"), ""))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "truncated body");
    let r = app
        .get(&app.proxy_url("a", &origin.url("/truncated"), "&preview"))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_GATEWAY,
        "truncated body, transform"
    );
}

#[tokio::test]
async fn stalled_origins_time_out_with_504() {
    let (app, origin) = setup(|s| {
        s.timeouts.idle = Duration::from_millis(500);
        s.timeouts.total = Duration::from_secs(5);
    })
    .await;
    for path in ["/stall-head", "/stall-body"] {
        for flags in ["", "&static"] {
            let started = Instant::now();
            let r = app.get(&app.proxy_url("a", &origin.url(path), flags)).await;
            assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT, "{path}{flags}");
            assert_eq!(r.headers()["cache-control"], "no-store", "{path}{flags}");
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "{path}{flags}: answered after the idle timeout, not the origin's minute"
            );
        }
    }
}

#[tokio::test]
async fn total_timeout_bounds_a_slow_drip() {
    let (app, origin) = setup(|s| {
        s.timeouts.idle = Duration::from_secs(5);
        s.timeouts.total = Duration::from_secs(1);
    })
    .await;
    // 100 chunks of 1 KiB, one every 100 ms: never idle, but 10 s in all.
    let url = origin.url("/chunked?size=1024&count=100&delay_ms=100");
    let started = Instant::now();
    let r = app.get(&app.proxy_url("a", &url, "&emoji")).await;
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the total timeout"
    );
}

#[tokio::test]
async fn oversized_bodies_are_413_promptly() {
    let (app, origin) = setup(|s| s.max_size = 40_000).await;
    // Announced too large: refused from the header, without reading the (stalling) body.
    for flags in ["", "&emoji"] {
        let started = Instant::now();
        let r = app
            .get(&app.proxy_url("a", &origin.url("/huge-length"), flags))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "Content-Length{flags}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "from the header at once"
        );
    }
    // Chunked with no length: 10 KiB every 100 ms crosses 40 000 bytes after ~400 ms; the
    // origin would go on for 50 s. The 413 must come within a second of the crossing.
    for flags in ["", "&emoji"] {
        let url = origin.url("/chunked?size=10240&count=500&delay_ms=100");
        let started = Instant::now();
        let r = app.get(&app.proxy_url("a", &url, flags)).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "chunked{flags}");
        assert!(
            started.elapsed() < Duration::from_millis(1_500),
            "chunked{flags}: 413 within a second of crossing the limit, took {:?}",
            started.elapsed()
        );
        assert_eq!(r.headers()["cache-control"], "max-age=300");
    }
    // Just under the limit is fine.
    let url = origin.url("/chunked?size=10000&count=4");
    let r = app.get(&app.proxy_url("a", &url, "")).await;
    assert_eq!(r.status(), StatusCode::OK, "40 000 bytes exactly");
    assert_eq!(r.bytes().await.unwrap().len(), 40_000);
}
