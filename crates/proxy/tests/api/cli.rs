//! The binary itself: `--help`, and start-up validation that stops with a clear message.

use std::process::Command;

use crate::helpers::{loopback_client as http, media_proxy, Server};

#[test]
fn help_explains_every_option() {
    let out = media_proxy().args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["--config", "--listen", "MEDIA_PROXY__"] {
        assert!(
            text.contains(needle),
            "serve --help mentions {needle}:\n{text}"
        );
    }
    let out = media_proxy().arg("--help").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("serve"),
        "top-level help lists serve"
    );
}

#[test]
fn bad_settings_stop_the_program_with_a_message_naming_them() {
    let dir = std::env::temp_dir().join(format!("media-proxy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_file = dir.join("bad.toml");
    std::fs::write(&bad_file, "max_size = \"lots\"\n").unwrap();
    // (environment, extra arguments, what the message must name)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<String>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS", "10.0.0.0/33")],
            vec![],
            "10.0.0.0/33",
        ),
        (
            vec![("MEDIA_PROXY__PROXY", "ftp://proxy.example")],
            vec![],
            "proxy",
        ),
        (
            vec![("MEDIA_PROXY__TIMEOUTS__IDLE", "0s")],
            vec![],
            "timeouts.idle",
        ),
        (
            vec![("MEDIA_PROXY__STORE__KIND", "s3")],
            vec![],
            "store.bucket",
        ),
        (
            vec![("MEDIA_PROXY__RESIZE__SIGNING_KEYS", "[\"short\"]")],
            vec![],
            "resize.signing_keys",
        ),
        (
            vec![],
            vec!["--config".into(), bad_file.display().to_string()],
            "max_size",
        ),
        (
            vec![],
            vec![
                "--config".into(),
                dir.join("missing.toml").display().to_string(),
            ],
            "does not exist",
        ),
    ];
    for (env, args, needle) in cases {
        let out = media_proxy()
            .arg("serve")
            .args(&args)
            .args(["--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{env:?} {args:?}: exit code 2; stderr: {stderr}"
        );
        assert!(
            stderr.contains(needle),
            "{env:?} {args:?}: message names `{needle}`: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_prints_the_effective_settings_with_secrets_masked() {
    let out = media_proxy()
        .arg("check-config")
        .env(
            "MEDIA_PROXY__RESIZE__SIGNING_KEYS",
            "[\"0123456789abcdef-secret\"]",
        )
        .env(
            "MEDIA_PROXY__PROXY",
            "http://user:hunter2@egress.internal:3128",
        )
        .env("MEDIA_PROXY__CACHE__MEMORY", "1234")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: toml::Table = toml::from_str(&stdout).expect("the output is TOML");
    assert_eq!(
        parsed["cache"]["memory"].as_integer(),
        Some(1234),
        "env applied"
    );
    assert_eq!(
        parsed["listen"].as_str(),
        Some("127.0.0.1:3003"),
        "defaults shown"
    );
    assert_eq!(parsed["timeouts"]["idle"].as_str(), Some("30s"));
    assert!(
        !stdout.contains("secret") && !stdout.contains("hunter2"),
        "{stdout}"
    );
    assert_eq!(
        parsed["resize"]["signing_keys"][0].as_str(),
        Some("********")
    );
    assert!(stdout.contains("user:********@egress.internal"), "{stdout}");

    let out = media_proxy()
        .arg("check-config")
        .env("MEDIA_PROXY__CACHE__KIND", "s3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cache.bucket"));
}

/// `media-proxy convert INPUT DIR/OUT ARGS…`: whether it succeeded, and what it wrote.
fn convert(input: &std::path::Path, out: &std::path::Path, args: &[&str]) -> (bool, Vec<u8>) {
    let o = media_proxy()
        .arg("convert")
        .arg(input)
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    if !o.status.success() {
        eprintln!("{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    (o.status.success(), std::fs::read(out).unwrap_or_default())
}

#[test]
fn convert_runs_the_engine_on_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = crate::helpers::corpus("png-pngsuite/basn6a08.png");
    let run = |out: &str, args: &[&str]| {
        let (ok, bytes) = convert(&input, &dir.path().join(out), args);
        assert!(ok, "{args:?}");
        bytes
    };
    let d = crate::store::decode(&run("a.webp", &["--emoji"]));
    assert_eq!((d.format, d.width, d.height), ("webp", 32, 32));
    let d = crate::store::decode(&run("b.png", &["--width", "16"]));
    assert_eq!((d.format, d.width, d.height), ("png", 16, 16));
    let d = crate::store::decode(&run(
        "c.out",
        &[
            "--width", "20", "--height", "10", "--fit", "cover", "--format", "jpeg",
        ],
    ));
    assert_eq!((d.format, d.width, d.height), ("jpeg", 20, 10));
    let o = media_proxy()
        .arg("convert")
        .arg(&input)
        .arg(dir.path().join("x.webp"))
        .args(["--emoji", "--width", "10"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "flags and sizes do not mix");
}

/// A Misskey flag writes one format (WebP; PNG for the badge): an output named for another
/// image format is refused, and nothing is written; a name without an image extension is
/// fine.
#[test]
fn convert_refuses_an_output_named_for_another_format() {
    let dir = tempfile::tempdir().unwrap();
    let input = crate::helpers::corpus("png-pngsuite/basn6a08.png");
    let out = dir.path().join("p.png");
    let o = media_proxy()
        .arg("convert")
        .arg(&input)
        .arg(&out)
        .arg("--preview")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("--preview writes image/webp: name the output .webp"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written under a wrong name");
    let (ok, bytes) = convert(&input, &dir.path().join("b.PNG"), &["--badge"]);
    assert!(ok, "the badge is a PNG");
    assert_eq!(crate::store::decode(&bytes).format, "png");
    let (ok, bytes) = convert(&input, &dir.path().join("p.out"), &["--preview"]);
    assert!(ok, "no image extension: written as the flag's format");
    assert_eq!(crate::store::decode(&bytes).format, "webp");
}

#[test]
fn convert_makes_a_videos_thumbnail_or_poster() {
    let dir = tempfile::tempdir().unwrap();
    let input = crate::helpers::corpus("video/h264_black_first_second.mp4");
    let run = |out: &str, args: &[&str]| convert(&input, &dir.path().join(out), args);
    let mean = |rgb: &[u8]| rgb.iter().map(|&b| f64::from(b)).sum::<f64>() / rgb.len() as f64;
    let (ok, bytes) = run("t.webp", &["--thumbnail"]);
    assert!(ok);
    let d = crate::store::decode(&bytes);
    assert_eq!((d.format, d.width, d.height), ("webp", 320, 240));
    let (ok, bytes) = run("p.png", &["--width", "160", "--time", "2"]);
    assert!(ok);
    let d = crate::store::decode(&bytes);
    assert_eq!((d.format, d.width, d.height), ("png", 160, 120));
    assert!(mean(&d.rgb) > 40.0, "the picture after the black second");
    let (ok, bytes) = run("q.jpg", &["--width", "160", "--time", "0.5"]);
    assert!(ok);
    assert!(
        mean(&crate::store::decode(&bytes).rgb) < 20.0,
        "still black at 0.5 s"
    );
    // A flag that is not for videos, and --time on an image, are refused.
    assert!(!run("e.webp", &["--emoji"]).0);
    let png = crate::helpers::corpus("png-pngsuite/basn6a08.png");
    let args = ["--width", "10", "--time", "1"];
    assert!(!convert(&png, &dir.path().join("i.png"), &args).0);
}

/// The same flags give the same bytes offline and over HTTP.
#[tokio::test]
async fn convert_gives_the_bytes_the_server_sends() {
    let (app, origin) = crate::helpers::spawn_app_and_origin(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    for (rel, flags) in [
        ("png-pngsuite/basn6a08.png", "emoji"),
        (
            "gif/generated/anim_transparent_dispose_bg_24_frames.gif",
            "avatar",
        ),
        ("png-pngsuite/basn6a08.png", "static"),
        ("video/h264_320x240_rotate90_metadata.mp4", "thumbnail"),
    ] {
        let url = app.proxy_url(
            "x",
            &origin.url(&format!("/corpus/{rel}")),
            &format!("&{flags}"),
        );
        let served = app.get(&url).await.bytes().await.unwrap();
        let out = dir.path().join("out.webp");
        let o = media_proxy()
            .arg("convert")
            .arg(crate::helpers::corpus(rel))
            .arg(&out)
            .arg(format!("--{flags}"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(std::fs::read(&out).unwrap(), served, "{rel} {flags}");
    }
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_then_exits_zero() {
    let origin = crate::helpers::spawn_origin(std::net::Ipv4Addr::new(127, 0, 0, 2)).await;
    let mut server = Server::start(&[("MEDIA_PROXY__SHUTDOWN_GRACE", "30s")]).await;
    let url = format!(
        "{}/e.webp?url={}&emoji",
        server.base,
        url::form_urlencoded::byte_serialize(
            origin
                .url("/corpus/png-pngsuite/basn6a08.png?delay=1500")
                .as_bytes()
        )
        .collect::<String>()
    );
    let slow = tokio::spawn(async move {
        let r = http().get(url).send().await.unwrap();
        (r.status(), r.bytes().await.unwrap())
    });
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    server.terminate();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        http()
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err(),
        "no new connections after SIGTERM"
    );
    let (status, body) = slow.await.unwrap();
    assert_eq!(
        status,
        reqwest::StatusCode::OK,
        "the request in flight finished"
    );
    assert_eq!(crate::store::decode(&body).format, "webp");
    assert_eq!(server.exit_code(10).await, Some(0));
}

#[tokio::test]
async fn past_the_grace_period_the_process_exits_anyway() {
    let origin = crate::helpers::spawn_origin(std::net::Ipv4Addr::new(127, 0, 0, 2)).await;
    let mut server = Server::start(&[("MEDIA_PROXY__SHUTDOWN_GRACE", "300ms")]).await;
    let stalled = format!(
        "{}/e.webp?url={}&emoji",
        server.base,
        url::form_urlencoded::byte_serialize(origin.url("/stall-head").as_bytes())
            .collect::<String>()
    );
    let waiting = tokio::spawn(async move { http().get(stalled).send().await.is_err() });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let signalled = std::time::Instant::now();
    server.terminate();
    assert_eq!(server.exit_code(10).await, Some(0));
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(3),
        "exited {:?} after SIGTERM",
        signalled.elapsed()
    );
    assert!(waiting.await.unwrap(), "the stalled request was cut off");
}

/// The systemd unit passes `systemd-analyze verify` (pointed at the binary just built).
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/systemd/media-proxy.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/media-proxy serve"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("media-proxy.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/media-proxy", env!("CARGO_BIN_EXE_media-proxy")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package) is installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
