//! The address policy, end to end: every blocked spelling is 403 and the blocked origin never
//! sees a request; the same through a redirect and through a forward proxy.

use std::net::{Ipv4Addr, SocketAddr};

use reqwest::StatusCode;

use crate::helpers::{spawn_app, spawn_app_with, spawn_origin, spawn_origin_on, Origin};

/// The origin that must never be reached, on 127.0.0.1 (and on [::1] where IPv6 exists).
async fn blocked_origins() -> (Origin, Option<Origin>) {
    let v4 = spawn_origin(Ipv4Addr::LOCALHOST).await;
    let v6 = spawn_origin_on(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], v4.addr.port())))
        .await
        .ok();
    (v4, v6)
}

/// URLs that all point at loopback or other non-global space, on the blocked origin's port.
fn hostile_urls(port: u16) -> Vec<String> {
    [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "2130706433",
        "0x7f.1",
        "0177.0.0.1",
        "0.0.0.0",
        "169.254.169.254",
        "100.64.0.1",
        "10.0.0.1",
        "192.168.0.1",
        "[fd00::1]",
        "[fe80::1]",
        "[64:ff9b::7f00:1]",
        "[::127.0.0.1]",
        "[2002:7f00:1::1]",
    ]
    .iter()
    .map(|host| format!("http://{host}:{port}/corpus/gif/image-gif/anim-gr.gif"))
    .collect()
}

fn assert_untouched(v4: &Origin, v6: &Option<Origin>) {
    assert!(
        v4.hits().is_empty(),
        "blocked origin got requests: {:?}",
        v4.hits()
    );
    if let Some(v6) = v6 {
        assert!(
            v6.hits().is_empty(),
            "blocked [::1] origin got requests: {:?}",
            v6.hits()
        );
    }
}

#[tokio::test]
async fn blocked_destinations_are_403_with_default_settings() {
    let (v4, v6) = blocked_origins().await;
    let app = spawn_app().await;
    for url in hostile_urls(v4.addr.port()) {
        for flags in ["", "&static"] {
            let r = app.get(&app.proxy_url("image.webp", &url, flags)).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{url}{flags}");
            assert_eq!(r.headers()["cache-control"], "max-age=300", "{url}");
        }
    }
    assert_untouched(&v4, &v6);
}

#[tokio::test]
async fn redirects_into_blocked_space_are_403() {
    let (v4, v6) = blocked_origins().await;
    let allowed = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let app = spawn_app_with(|s| {
        s.allowed_private_networks = vec!["127.0.0.2/32".parse().unwrap()];
    })
    .await;
    let urls = hostile_urls(v4.addr.port());
    for target in &urls {
        let encoded: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
        let start = allowed.url(&format!("/redirect?to={encoded}"));
        let r = app.get(&app.proxy_url("image.webp", &start, "")).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "redirect to {target}");
    }
    assert_untouched(&v4, &v6);
    assert_eq!(
        allowed.hits().len(),
        urls.len(),
        "the allowed origin saw each first hop"
    );

    // A redirect chain within allowed space is followed (relative Locations included) …
    let r = app
        .get(&app.proxy_url("a", &allowed.url("/chain/10"), ""))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "10 redirects are allowed");
    assert_eq!(r.headers()["content-type"], "image/gif");
    // … up to the limit.
    let r = app
        .get(&app.proxy_url("a", &allowed.url("/chain/11"), ""))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_GATEWAY,
        "11 redirects are too many"
    );
    // A redirect to another scheme is refused.
    let r = app
        .get(&app.proxy_url(
            "a",
            &allowed.url("/redirect?to=file%3A%2F%2F%2Fetc%2Fpasswd"),
            "",
        ))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "redirect to file://");
}

#[tokio::test]
async fn the_policy_also_holds_through_a_forward_proxy() {
    let (v4, v6) = blocked_origins().await;
    // The scripted origin doubles as the forward proxy: it records the absolute-form targets.
    let proxy = spawn_origin(Ipv4Addr::new(127, 0, 0, 3)).await;
    let allowed = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let proxy_url = proxy.url("");
    let app = spawn_app_with(|s| {
        s.allowed_private_networks = vec!["127.0.0.2/32".parse().unwrap()];
        s.proxy = Some(proxy_url.parse().unwrap());
    })
    .await;
    for url in hostile_urls(v4.addr.port()) {
        let r = app.get(&app.proxy_url("image.webp", &url, "")).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{url} through the proxy");
    }
    assert!(
        proxy.hits().is_empty(),
        "the proxy was never asked for a blocked target: {:?}",
        proxy.hits()
    );
    assert_untouched(&v4, &v6);

    let target = allowed.url("/some/thing.gif");
    let r = app.get(&app.proxy_url("image.webp", &target, "")).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "allowed target through the proxy"
    );
    assert_eq!(r.headers()["content-type"], "image/gif");
    let hits = proxy.hits();
    assert_eq!(
        hits.len(),
        1,
        "one request went through the proxy: {hits:?}"
    );
    assert_eq!(hits[0].target, target, "absolute-form request to the proxy");
    assert!(
        allowed.hits().is_empty(),
        "the origin itself was reached only via the proxy"
    );
}

/// Red-team finding: with `proxy = "http://localhost:P"`, a *target* on the proxy's host name
/// (`http://localhost:6379/`, any port) skipped the address check and was forwarded.
#[tokio::test]
async fn a_target_on_the_proxys_own_host_name_is_checked_like_any_other() {
    let proxy = spawn_origin(Ipv4Addr::LOCALHOST).await;
    let internal = spawn_origin(Ipv4Addr::LOCALHOST).await;
    let allowed = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let proxy_url = format!("http://localhost:{}", proxy.addr.port());
    let app = spawn_app_with(|s| {
        s.allowed_private_networks = vec!["127.0.0.2/32".parse().unwrap()];
        s.proxy = Some(proxy_url.parse().unwrap());
    })
    .await;
    for port in [internal.addr.port(), proxy.addr.port()] {
        let url = format!("http://localhost:{port}/corpus/gif/image-gif/anim-gr.gif");
        let r = app.get(&app.proxy_url("image.webp", &url, "")).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{url} through the proxy");
    }
    assert!(
        proxy.hits().is_empty(),
        "the proxy was asked for a target on its own host: {:?}",
        proxy.hits()
    );
    assert!(
        internal.hits().is_empty(),
        "the internal service was reached"
    );
    // The proxy itself is still used for allowed targets.
    let target = allowed.url("/some/thing.gif");
    let r = app.get(&app.proxy_url("image.webp", &target, "")).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "allowed target through the proxy"
    );
    assert_eq!(proxy.hits().len(), 1, "one request through the proxy");
}
