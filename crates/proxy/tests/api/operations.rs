//! What operators read: `/metrics` after real traffic (parsed as the exposition format) and
//! the request id.

use std::collections::HashMap;

use reqwest::StatusCode;

use crate::helpers::{spawn_app_and_origin, TestApp};

/// `/metrics` as `name{labels}` → value (labels as written, in their order).
async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let r = app.get(&format!("http://{}/metrics", app.addr)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("sample: {l}"));
            (
                name.to_owned(),
                value.parse().unwrap_or_else(|_| panic!("value: {l}")),
            )
        })
        .collect()
}

#[tokio::test]
async fn metrics_count_requests_by_mode_and_status_class() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    let png = origin.url("/corpus/png-pngsuite/basn6a08.png");
    for flags in ["&emoji", "&static", ""] {
        let r = app.get(&app.proxy_url("x", &png, flags)).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.bytes().await.unwrap();
    }
    let r = app
        .get(&app.proxy_url("x", &origin.url("/status/404"), "&emoji"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    r.bytes().await.unwrap();
    let r = app.get(&format!("http://{}/", app.addr)).await;
    r.bytes().await.unwrap();
    let m = scrape(&app).await;
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("{k} in {m:#?}"));
    let requests = |mode: &str, kind: &str, status: &str| {
        get(&format!(
            r#"media_proxy_requests_total{{mode="{mode}",kind="{kind}",status="{status}"}}"#
        ))
    };
    assert_eq!(requests("remote", "emoji", "2xx"), 1.0);
    assert_eq!(requests("remote", "static", "2xx"), 1.0);
    assert_eq!(requests("remote", "passthrough", "2xx"), 1.0);
    assert_eq!(requests("remote", "emoji", "4xx"), 1.0);
    assert_eq!(requests("other", "-", "2xx"), 1.0);
    assert_eq!(
        get(r#"media_proxy_request_duration_seconds_count{mode="remote"}"#),
        4.0
    );
    assert!(get(r#"media_proxy_request_duration_seconds_sum{mode="remote"}"#) > 0.0);
    assert_eq!(
        get(r#"media_proxy_request_duration_seconds_bucket{le="+Inf",mode="remote"}"#),
        4.0
    );
    assert_eq!(
        get(r#"media_proxy_origin_errors_total{class="status"}"#),
        1.0
    );
    assert_eq!(get("media_proxy_renders_total"), 2.0);
    // Each render is admitted twice, sandboxed: to read its headers, then to render.
    for (stage, n) in [
        ("queue", 4.0),
        ("fetch", 2.0),
        ("assess", 2.0),
        ("render", 2.0),
        ("decode", 2.0),
        ("transform", 2.0),
        ("encode", 2.0),
    ] {
        let count = format!(r#"media_proxy_stage_duration_seconds_count{{stage="{stage}"}}"#);
        assert_eq!(get(&count), n, "{stage}");
    }
    let sum = |stage: &str| {
        get(&format!(
            r#"media_proxy_stage_duration_seconds_sum{{stage="{stage}"}}"#
        ))
    };
    let parts = sum("decode") + sum("transform") + sum("encode");
    assert!(
        parts > 0.0 && parts <= sum("render"),
        "the parts ({parts}) lie within the renders ({})",
        sum("render")
    );
    assert!(get("media_proxy_sent_bytes_total") > 0.0);
    // Two downloads for the transforms and one streamed: three times the file.
    let png = crate::helpers::corpus_bytes("png-pngsuite/basn6a08.png").len() as f64;
    assert_eq!(get("media_proxy_received_bytes_total"), 3.0 * png);
    assert_eq!(get("media_proxy_in_flight_requests"), 0.0, "all answered");
    assert!(get("media_proxy_memory_budget_bytes") > 0.0);
    assert_eq!(get("media_proxy_memory_reserved_bytes"), 0.0, "idle");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let (app, _origin) = spawn_app_and_origin(|_| {}).await;
    let base = format!("http://{}/", app.addr);
    let id = |r: &reqwest::Response| r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let r = app
        .client
        .get(&base)
        .header("x-request-id", "lb-7f3a:42")
        .send()
        .await
        .unwrap();
    assert_eq!(id(&r), "lb-7f3a:42", "the caller's id is kept");
    let fresh = id(&app.get(&base).await);
    assert_eq!(fresh.len(), 36, "a UUID: {fresh}");
    assert_ne!(fresh, id(&app.get(&base).await), "one per request");
    let r = app
        .client
        .get(&base)
        .header("x-request-id", "<script>")
        .send()
        .await
        .unwrap();
    assert_eq!(id(&r).len(), 36, "an unsafe id is replaced");
    // Errors and the health endpoints too.
    let r = app.get(&format!("http://{}/nowhere", app.addr)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(id(&r).len(), 36);
    assert_eq!(
        id(&app.get(&format!("http://{}/healthz", app.addr)).await).len(),
        36
    );
}

/// The access log's `complete` says whether the whole body went out: it was `false` for
/// every body of known length (hyper stops polling the body after its last byte, so the end
/// of the stream was never seen). Read from the real binary's JSON log.
#[tokio::test]
async fn the_access_log_says_whether_the_whole_body_was_sent() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = crate::helpers::spawn_origin(std::net::Ipv4Addr::new(127, 0, 0, 2)).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_media-proxy"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("MEDIA_PROXY__LOG__FORMAT", "json")
        .env("MEDIA_PROXY__LOG__FILTER", "access=info")
        .env("MEDIA_PROXY__STORE__KIND", "none")
        .env("MEDIA_PROXY__CACHE__KIND", "none")
        .env("MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS", "127.0.0.2/32")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = crate::helpers::loopback_client();
    let base = format!("http://127.0.0.1:{port}");
    crate::helpers::until_serving(&client, &base, "the server").await;
    let encode =
        |u: String| -> String { url::form_urlencoded::byte_serialize(u.as_bytes()).collect() };
    // Whole bodies of known length: a passthrough and a transform.
    let gif = encode(origin.url("/corpus/gif/image-gif/anim-gr.gif"));
    for q in [format!("url={gif}"), format!("url={gif}&emoji")] {
        let r = client.get(format!("{base}/a?{q}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.bytes().await.unwrap();
    }
    // A 20 MB body the client stops reading after its first bytes.
    let big = encode(origin.url("/padded/20000000/gif/image-gif/anim-gr.gif"));
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.write_all(format!("GET /v?url={big} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 1024];
    let n = tcp.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    drop(tcp);
    // The three access lines, in the order the requests ended.
    let stderr = child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut found = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let f = v.get("fields").cloned().unwrap_or(v);
            if f.get("status").is_some() {
                found.push(f);
            }
            if found.len() == 3 {
                break;
            }
        }
        found
    });
    let lines = tokio::time::timeout(std::time::Duration::from_secs(20), lines)
        .await
        .expect("three access lines")
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let complete: Vec<(String, bool)> = lines
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["complete"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        complete,
        [
            ("passthrough".to_owned(), true),
            ("emoji".to_owned(), true),
            ("passthrough".to_owned(), false),
        ],
        "{lines:?}"
    );
}
