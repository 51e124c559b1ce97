//! Passthrough: type from the bytes, bytes intact, the cache and download headers, streaming,
//! HEAD without downloading, Range with and without origin support.

use reqwest::header;
use reqwest::StatusCode;

use crate::helpers::{corpus_bytes, spawn_app_and_origin, Origin, TestApp};

async fn setup() -> (TestApp, Origin) {
    spawn_app_and_origin(|_| {}).await
}

#[tokio::test]
async fn browser_safe_types_pass_through_byte_for_byte() {
    let (app, origin) = setup().await;
    // (corpus file, type the bytes must be served as, expected download name)
    let cases = [
        ("gif/image-gif/anim-gr.gif", "image/gif", "anim-gr.gif"),
        ("png-pngsuite/basn6a08.png", "image/png", "basn6a08.png"),
        (
            "jpeg/exif-orientation-pillow/hopper_orientation_5.jpg",
            "image/jpeg",
            "hopper_orientation_5.jpg",
        ),
        ("apng/image-rs/ball.png", "image/apng", "ball.png"),
        (
            "video/h264_640x360_2s.mp4",
            "video/mp4",
            "h264_640x360_2s.mp4",
        ),
        (
            "video/vp9_opus_320x240_3s.webm",
            "video/webm",
            "vp9_opus_320x240_3s.webm",
        ),
        (
            "video/hevc_main10_320x240.mov",
            "video/quicktime",
            "hevc_main10_320x240.mov",
        ),
        (
            "video/audio_only_aac.m4a",
            "audio/x-m4a",
            "audio_only_aac.m4a",
        ),
        // Content decides: a GIF named .mp4 is a GIF, and gets the .gif extension appended.
        (
            "hostile/lies/gif_named.mp4",
            "image/gif",
            "gif_named.mp4.gif",
        ),
        (
            "hostile/lies/avif_named.jpg",
            "image/avif",
            "avif_named.jpg.avif",
        ),
    ];
    for (rel, mime, name) in cases {
        let r = app
            .get(&app.proxy_url("image.webp", &origin.url(&format!("/corpus/{rel}")), ""))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{rel}");
        let h = r.headers().clone();
        assert_eq!(h[header::CONTENT_TYPE], mime, "{rel}: type from the bytes");
        assert_eq!(
            h[header::CACHE_CONTROL],
            "max-age=31536000, immutable",
            "{rel}"
        );
        assert_eq!(h[header::ACCEPT_RANGES], "bytes", "{rel}");
        assert_eq!(
            h[header::CONTENT_DISPOSITION],
            format!("inline; filename=\"{name}\"").as_str(),
            "{rel}: download name"
        );
        let expected = corpus_bytes(rel);
        assert_eq!(
            h[header::CONTENT_LENGTH],
            expected.len().to_string().as_str(),
            "{rel}: length"
        );
        let body = r.bytes().await.unwrap();
        assert!(
            body[..] == expected[..],
            "{rel}: bytes intact ({} vs {})",
            body.len(),
            expected.len()
        );
    }
}

#[tokio::test]
async fn the_origin_content_type_is_ignored_in_both_directions() {
    let (app, origin) = setup().await;
    // GIF bytes labelled text/html: served as image/gif.
    let r = app
        .get(&app.proxy_url(
            "a",
            &origin.url("/corpus/gif/image-gif/anim-gr.gif?type=text/html"),
            "",
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/gif");
    // HEIC named .jpg: converted to WebP by its bytes, never passed through as a JPEG.
    let r = app
        .get(&app.proxy_url(
            "image.png",
            &origin.url("/corpus/hostile/lies/heic_named.jpg"),
            "",
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/webp");
    let body = r.bytes().await.unwrap();
    assert_eq!(&body[8..12], b"WEBP", "a WebP, not the HEIC bytes");
    // HTML, text and empty bodies labelled as images, executables: refused.
    for path in [
        "/text/html",
        "/text/plain",
        "/text/empty",
        "/corpus/hostile/lies/html_named.gif",
        "/corpus/hostile/lies/elf_stub_named.png",
    ] {
        let r = app
            .get(&app.proxy_url("image.png", &origin.url(path), ""))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "{path} must not be passed through"
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "max-age=300", "{path}");
        let ctype = r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            ctype.starts_with("text/plain"),
            "{path}: our own short error body, got {ctype}"
        );
    }
}

#[tokio::test]
async fn download_names_follow_the_spec() {
    let (app, origin) = setup().await;
    let png = "/corpus/png-pngsuite/basn6a08.png";
    let cases = [
        // Origin Content-Disposition wins; the extension rule still applies.
        (format!("{png}?cd=attachment%3B%20filename%3D%22foo.jpg%22"), "inline; filename=\"foo.jpg.png\""),
        (format!("{png}?cd=attachment%3B%20filename%3Dnoext"), "inline; filename=\"noext.png\""),
        (
            format!("{png}?cd=attachment%3B%20filename%3D%22hello%20world.png%22"),
            "inline; filename=\"hello_world.png\"; filename*=UTF-8''hello%20world.png",
        ),
        (
            format!("{png}?cd=attachment%3B%20filename%3D%22x.png%22%3B%20filename*%3DUTF-8''%25E7%258C%25AB.png"),
            "inline; filename=\"_.png\"; filename*=UTF-8''%E7%8C%AB.png",
        ),
    ];
    for (path, want) in cases {
        let r = app
            .get(&app.proxy_url("image.webp", &origin.url(&path), ""))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[header::CONTENT_DISPOSITION], want, "{path}");
    }
    // JPEG served under a .jpeg name keeps it.
    let jpeg = "/corpus/jpeg/exif-orientation-pillow/hopper_orientation_5.jpg?cd=inline%3B%20filename%3Da.jpeg";
    let r = app.get(&app.proxy_url("x", &origin.url(jpeg), "")).await;
    assert_eq!(
        r.headers()[header::CONTENT_DISPOSITION],
        "inline; filename=\"a.jpeg\""
    );
}

#[tokio::test]
async fn any_path_works_and_compressed_bodies_are_decoded() {
    let (app, origin) = setup().await;
    let rel = "gif/image-gif/anim-gr.gif";
    for path in ["image.webp", "proxy/image.webp", "a/b/c.webp", "emoji.png"] {
        let r = app
            .get(&app.proxy_url(path, &origin.url(&format!("/gzip/{rel}")), ""))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "/{path}");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "image/gif",
            "/{path}: sniffed after gunzip"
        );
        assert!(
            r.headers().get(header::CONTENT_ENCODING).is_none(),
            "/{path}: sent decoded"
        );
        assert!(
            r.bytes().await.unwrap()[..] == corpus_bytes(rel)[..],
            "/{path}: bytes"
        );
    }
    let hits = origin.hits();
    assert!(
        hits.iter().all(|h| h
            .user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("media-proxy/"))),
        "our User-Agent: {hits:?}"
    );
}

#[tokio::test]
async fn head_reports_type_and_length_without_downloading_the_body() {
    let (app, origin) = setup().await;
    let rel = "hostile/lies/gif_named.webp"; // 171 355 bytes, a GIF
    let total = corpus_bytes(rel).len();
    for ranges in [true, false] {
        let path = format!("/corpus/{rel}{}", if ranges { "?ranges=1" } else { "" });
        let r = app
            .client
            .head(app.proxy_url("image.webp", &origin.url(&path), ""))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "image/gif", "{path}");
        assert_eq!(
            r.headers()[header::CONTENT_LENGTH],
            total.to_string().as_str(),
            "{path}"
        );
        assert!(
            r.bytes().await.unwrap().is_empty(),
            "{path}: HEAD has no body"
        );
    }
    let hits = origin.hits();
    assert!(
        hits.iter()
            .all(|h| h.range.as_deref() == Some("bytes=0-65535")),
        "HEAD asks the origin for the sniffing window only: {hits:?}"
    );
}

#[tokio::test]
async fn ranges_are_served_with_and_without_origin_support() {
    let (app, origin) = setup().await;
    let rel = "hostile/lies/gif_named.webp";
    let bytes = corpus_bytes(rel);
    let total = bytes.len();
    let cases: [(&str, usize, usize); 5] = [
        ("bytes=0-1", 0, 1),                       // Safari's probe
        ("bytes=10-99", 10, 99),                   // inside the sniffed head
        ("bytes=100000-100999", 100_000, 100_999), // beyond it
        ("bytes=170000-", 170_000, total - 1),
        ("bytes=-500", total - 500, total - 1),
    ];
    for ranges in [true, false] {
        for (range, first, last) in cases {
            let path = format!("/corpus/{rel}{}", if ranges { "?ranges=1" } else { "" });
            let r = app
                .client
                .get(app.proxy_url("image.webp", &origin.url(&path), ""))
                .header(header::RANGE, range)
                .send()
                .await
                .unwrap();
            let what = format!("{range} (origin ranges: {ranges})");
            if !ranges && first >= 64 * 1024 {
                // Beyond the sniffed head of an origin that ignores ranges: the whole body
                // as a 200, never a download up to the offset to send the tail.
                assert_eq!(r.status(), StatusCode::OK, "{what}");
                assert!(r.headers().get(header::CONTENT_RANGE).is_none(), "{what}");
                assert!(
                    r.bytes().await.unwrap()[..] == bytes[..],
                    "{what}: all of it"
                );
                continue;
            }
            assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{what}");
            assert_eq!(
                r.headers()[header::CONTENT_RANGE],
                format!("bytes {first}-{last}/{total}").as_str(),
                "{what}"
            );
            assert_eq!(r.headers()[header::CONTENT_TYPE], "image/gif", "{what}");
            assert_eq!(
                r.headers()[header::CACHE_CONTROL],
                "max-age=31536000, immutable",
                "{what}"
            );
            let body = r.bytes().await.unwrap();
            assert!(body[..] == bytes[first..=last], "{what}: the right bytes");
        }
    }
    // With range support the origin was asked for the far range itself.
    assert!(
        origin
            .hits()
            .iter()
            .any(|h| h.range.as_deref() == Some("bytes=100000-100999")),
        "origin asked for the client's range"
    );

    for ranges in [true, false] {
        let path = format!("/corpus/{rel}{}", if ranges { "?ranges=1" } else { "" });
        let r = app
            .client
            .get(app.proxy_url("image.webp", &origin.url(&path), ""))
            .header(header::RANGE, format!("bytes={total}-"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "past the end (ranges: {ranges})"
        );
        assert_eq!(
            r.headers()[header::CONTENT_RANGE],
            format!("bytes */{total}").as_str()
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "max-age=300");
    }

    // Several ranges: answered with the whole body (allowed by RFC 9110).
    let r = app
        .client
        .get(app.proxy_url(
            "image.webp",
            &origin.url(&format!("/corpus/{rel}?ranges=1")),
            "",
        ))
        .header(header::RANGE, "bytes=0-1,5-6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), total);
}

#[tokio::test]
async fn url_names_ending_in_a_slash_get_only_the_extension() {
    let (app, origin) = setup().await;
    let r = app
        .get(&app.proxy_url("a", &origin.url("/some/dir/"), ""))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()[header::CONTENT_DISPOSITION],
        "inline; filename=\".gif\""
    );
}

#[tokio::test]
async fn svg_over_the_sniffing_limit_is_not_treated_as_svg() {
    let (app, origin) = setup().await;
    let r = app
        .get(&app.proxy_url("a", &origin.url("/text/big-svg"), ""))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a 1 MiB+ SVG is neither rasterised nor passed"
    );
    let r = app
        .get(&app.proxy_url("a", &origin.url("/text/big-svg"), "&static"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "and not convertible");
}

#[tokio::test]
async fn ranged_origin_requests_ask_for_the_identity_encoding() {
    let (app, origin) = setup().await;
    let r = app
        .client
        .get(app.proxy_url(
            "a",
            &origin.url("/corpus/hostile/lies/gif_named.webp?ranges=1"),
            "",
        ))
        .header(header::RANGE, "bytes=100000-100009")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let hits = origin.hits();
    assert_eq!(hits.len(), 2, "head, then the range: {hits:?}");
    assert!(
        hits.iter()
            .all(|h| h.accept_encoding.as_deref() == Some("identity")),
        "byte ranges of the file itself, never of a compressed form: {hits:?}"
    );
}
