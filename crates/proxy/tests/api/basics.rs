//! Routing, fixed answers, common headers, the 501 of the missing engine and `fallback`.

use reqwest::header;
use reqwest::StatusCode;

use crate::helpers::{spawn_app, spawn_app_and_origin};

fn assert_common_headers(r: &reqwest::Response, what: &str) {
    let h = r.headers();
    let expect = [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-headers", "*"),
        ("access-control-allow-methods", "GET, HEAD, OPTIONS"),
        (
            "content-security-policy",
            "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'",
        ),
        ("x-content-type-options", "nosniff"),
    ];
    for (name, value) in expect {
        assert_eq!(
            h.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{what}: header {name}"
        );
    }
}

#[tokio::test]
async fn root_says_hello_world() {
    let app = spawn_app().await;
    let r = app.get(&format!("http://{}/", app.addr)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_common_headers(&r, "GET /");
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "Hello World is plain text"
    );
    assert_eq!(r.text().await.unwrap(), "Hello World!");
}

#[tokio::test]
async fn url_parameter_errors_are_400_and_short_lived() {
    let app = spawn_app().await;
    let cases = [
        "/image.webp",
        "/emoji.webp?emoji=1",
        "/proxy/image.webp?url=",
        "/image.webp?url=http%3A%2F%2Fa%2F1&url=http%3A%2F%2Fa%2F2",
        "/image.webp?url=file%3A%2F%2F%2Fetc%2Fpasswd",
        "/image.webp?url=gopher%3A%2F%2Fexample.com%2F",
        "/image.webp?url=unix%3A%2Frun%2Fdocker.sock",
        "/image.webp?url=not%20a%20url",
    ];
    for path in cases {
        let r = app.get(&format!("http://{}{path}", app.addr)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            r.headers()[header::CACHE_CONTROL],
            "max-age=300",
            "{path}: errors are cached briefly"
        );
        assert_common_headers(&r, path);
    }
}

#[tokio::test]
async fn options_answers_the_preflight_and_other_methods_are_refused() {
    let app = spawn_app().await;
    let url = format!(
        "http://{}/image.webp?url=http%3A%2F%2Fexample.com%2Fa.png",
        app.addr
    );
    let r = app
        .client
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", "https://misskey.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "preflight");
    assert_common_headers(&r, "OPTIONS");

    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let r = app
            .client
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD, OPTIONS", "{method}");
    }
}

#[tokio::test]
async fn transform_flags_on_non_images_are_404() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    for (path, what) in [
        ("/text/plain", "text"),
        ("/text/html", "html"),
        ("/corpus/video/h264_640x360_2s.mp4", "video"),
        ("/corpus/video/audio_only_aac.m4a", "audio"),
    ] {
        let r = app
            .get(&app.proxy_url("x.webp", &origin.url(path), "&static"))
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{what} with static");
    }
}

#[tokio::test]
async fn fallback_answers_a_placeholder_png_for_any_error_after_the_url() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    // The placeholder is kept as long as the error it replaces: five minutes for the
    // origin's or the client's fault, not at all for an outage (a 502 here).
    let cases = [
        (
            origin.url("/status/404"),
            "&fallback",
            "origin 404",
            "max-age=300",
        ),
        (
            origin.url("/status/500"),
            "&fallback&emoji",
            "origin 500",
            "no-store",
        ),
        (
            origin.url("/text/html"),
            "&fallback",
            "not passable",
            "max-age=300",
        ),
        (
            origin.url("/corpus/hostile/bombs/generated/bmp_32bpp_65535x65535_4_bytes.bmp"),
            "&fallback&preview",
            "engine 422",
            "max-age=300",
        ),
        (
            "http://127.0.0.1/".to_owned(),
            "&fallback",
            "blocked address",
            "max-age=300",
        ),
    ];
    for (url, flags, what, cache) in cases {
        let r = app.get(&app.proxy_url("image.webp", &url, flags)).await;
        assert_eq!(r.status(), StatusCode::OK, "{what}");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "image/png", "{what}");
        assert_eq!(r.headers()[header::CACHE_CONTROL], cache, "{what}");
        let body = r.bytes().await.unwrap();
        let mut decoder =
            zune_png::PngDecoder::new(zune_png::zune_core::bytestream::ZCursor::new(&body[..]));
        decoder.decode_raw().expect("placeholder decodes");
        let (w, h) = decoder.dimensions().expect("dimensions");
        assert_eq!((w, h), (64, 64), "{what}: placeholder size");
    }
    // Without a url there is nothing to fall back for: still 400.
    let r = app
        .get(&format!("http://{}/image.webp?fallback=1", app.addr))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn client_headers_are_never_forwarded() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    let r = app
        .client
        .get(app.proxy_url(
            "a.gif",
            &origin.url("/corpus/gif/image-gif/anim-gr.gif"),
            "",
        ))
        .header(header::COOKIE, "session=secret")
        .header(header::AUTHORIZATION, "Bearer secret")
        .header(header::REFERER, "https://misskey.example/notes/1")
        .header("X-Forwarded-For", "203.0.113.7")
        .header("X-Custom", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let hits = origin.hits();
    assert_eq!(hits.len(), 1);
    let leaked: Vec<&String> = hits[0]
        .header_names
        .iter()
        .filter(|n| {
            [
                "cookie",
                "authorization",
                "referer",
                "x-forwarded-for",
                "x-custom",
            ]
            .contains(&n.as_str())
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "client headers reached the origin: {leaked:?}"
    );
}

/// A host name that does not exist is a `404`, like a file that does not exist (kept five
/// minutes, as a client error): the DNS is not in trouble, the URL names nothing. Passing
/// DNS failures are 502/504 and never stored (tests/api/dependencies.rs).
#[tokio::test]
async fn hosts_that_do_not_exist_are_404() {
    let app = spawn_app().await;
    // `.invalid` never resolves (RFC 6761); the resolver answers without asking the network.
    let r = app
        .get(&app.proxy_url("a", "http://no-such-host.invalid/a.png", ""))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["cache-control"], "max-age=300");
}

/// The path form `/<type>/<percent-encoded URL>` (MisskeyIO media-proxy 0.0.25): the URL
/// from the last segment, the flags from the query; with a store configured, object keys
/// stay object keys.
#[tokio::test]
async fn the_path_form_names_the_url_in_the_path() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    let url = origin.url("/corpus/png-pngsuite/basn6a08.png");
    let encoded: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
    let plain = app
        .get(&format!(
            "http://{}/proxy/image.webp?url={encoded}",
            app.addr
        ))
        .await;
    assert_eq!(plain.status(), StatusCode::OK);
    let original = plain.bytes().await.unwrap();
    // Passed through as with `?url=`.
    let r = app
        .get(&format!("http://{}/proxy/image/{encoded}", app.addr))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/png");
    assert_eq!(r.bytes().await.unwrap(), original);
    // The flags still come from the query.
    let r = app
        .get(&format!("http://{}/avatar/{encoded}?avatar=1", app.addr))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/webp");
    // A Misskey path without any URL is still a missing `url`.
    let r = app
        .get(&format!("http://{}/proxy/image.webp", app.addr))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // With a store, a path is an object key unless its last segment is an absolute URL.
    let store = crate::store::spawn_store_app(|s| {
        s.allowed_private_networks = vec!["127.0.0.2/32".parse().unwrap()];
    })
    .await;
    store.put("photos/basn6a08.png", &original);
    let a = store.get("photos/basn6a08.png", "", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, original.as_ref(), "the key, not the path form");
    let a = store.get(&format!("proxy/image/{encoded}"), "", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, original.as_ref(), "the remote URL");
}
