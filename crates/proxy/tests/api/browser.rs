//! A real browser: Debian's Chromium (headless; `./dev tools` installs it) loads a page of
//! `<img>` tags pointing at the running proxy and reports, for each, whether it decoded and
//! its natural size. The proxy's own headers (CSP, `nosniff`, CORS) are on every answer,
//! so this also shows they do not stop images from rendering. Each size is compared with
//! what an independent decoder reads from the same URL (with Chromium's `Accept`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use axum::response::Html;

use crate::helpers::{corpus_bytes, spawn_origin};
use crate::store::{decode, spawn_store_app};

/// What Chromium sends for `<img>`.
const IMG_ACCEPT: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("Chromium is installed (`./dev tools` installs Debian's chromium)")
}

#[tokio::test]
async fn chromium_renders_every_kind_of_answer() {
    let origin = spawn_origin(std::net::Ipv4Addr::new(127, 0, 0, 2)).await;
    let s = spawn_store_app(|s| {
        s.allowed_private_networks = vec!["127.0.0.2/32".parse().unwrap()];
    })
    .await;
    let photo = "jpeg/exif-orientation-recurser/Landscape_5.jpg";
    s.put("photo.jpg", &corpus_bytes(photo));
    let remote = |rel: &str, flags: &str| {
        s.app
            .proxy_url("x.webp", &origin.url(&format!("/corpus/{rel}")), flags)
    };
    let mut cases: Vec<(String, String)> = ["emoji", "avatar", "static", "preview", "badge"]
        .iter()
        .map(|f| (format!("photo {f}"), remote(photo, &format!("&{f}"))))
        .collect();
    cases.extend([
        ("photo passthrough".into(), remote(photo, "")),
        (
            "animated emoji".into(),
            remote(
                "gif/generated/anim_transparent_dispose_bg_24_frames.gif",
                "&emoji",
            ),
        ),
        ("svg".into(), remote("svg/resvg/resources/image.svg", "")),
        (
            "404 with fallback".into(),
            s.app
                .proxy_url("x.webp", &origin.url("/status/404"), "&fallback&emoji"),
        ),
        ("store auto (AVIF)".into(), s.url("photo.jpg", "w=240")),
        (
            "store webp cover".into(),
            s.url("photo.jpg", "d=120x120&format=webp"),
        ),
        ("store jpeg".into(), s.url("photo.jpg", "h=90&format=jpeg")),
        ("store gif".into(), s.url("photo.jpg", "w=64&format=gif")),
    ]);
    // What an independent decoder reads from the same answers.
    let mut expected = Vec::new();
    for (name, url) in &cases {
        let r = s
            .app
            .client
            .get(url)
            .header("accept", IMG_ACCEPT)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{name}: {}", r.status());
        // The headers the browser sees with it, which must not stop it from rendering.
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{name}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("default-src 'none'"),
            "{name}"
        );
        let d = decode(&r.bytes().await.unwrap());
        if name == "photo passthrough" {
            // The original, EXIF orientation 5 (transpose): browsers show it turned, our
            // decoder reads the stored pixels. Every other answer is already upright.
            expected.push((d.format, d.height, d.width));
        } else {
            expected.push((d.format, d.width, d.height));
        }
    }
    assert_eq!(expected[9].0, "avif", "Chromium's Accept gets AVIF");

    // The page, from a server of its own (another origin than the proxy's).
    let imgs: String = cases
        .iter()
        .enumerate()
        .map(|(i, (_, url))| format!("<img id=\"i{i}\" src=\"{}\">\n", url.replace('&', "&amp;")))
        .collect();
    let page = format!(
        "<!doctype html><html><body>{imgs}<script>
window.addEventListener('load', () => {{
  const pre = document.createElement('pre');
  pre.id = 'results';
  pre.textContent = [...document.images]
    .map(i => `${{i.id}} ${{i.complete}} ${{i.naturalWidth}} ${{i.naturalHeight}}`).join('\\n');
  document.body.appendChild(pre);
}});
</script></body></html>"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { Html(page) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });

    let browser = chromium();
    let url = format!("http://{page_addr}/");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-proxy-server",
                "--virtual-time-budget=20000",
                "--dump-dom",
                &url,
            ])
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("Chromium finished within 2 minutes")
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let results = dom
        .split("<pre id=\"results\">")
        .nth(1)
        .and_then(|r| r.split("</pre>").next())
        .unwrap_or_else(|| {
            panic!(
                "no results in the DOM:\n{dom}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let mut table =
        String::from("| image | format | decoded by Chromium | size |\n|---|---|---|---|\n");
    let lines: Vec<&str> = results.lines().collect();
    assert_eq!(lines.len(), cases.len(), "{results}");
    let mut failures = Vec::new();
    for (line, ((name, _), (format, w, h))) in lines.iter().zip(cases.iter().zip(&expected)) {
        let parts: Vec<&str> = line.split(' ').collect();
        let (complete, nw, nh) = (parts[1] == "true", parts[2], parts[3]);
        table.push_str(&format!("| {name} | {format} | {complete} | {nw}×{nh} |\n"));
        if !complete || nw != w.to_string() || nh != h.to_string() {
            failures.push(format!("{name}: browser {line}, decoder {format} {w}×{h}"));
        }
    }
    eprintln!("{table}");
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
}
