//! Hostile files cost one answer, never the server: each test runs the binary as a process
//! (a crash in-process would take the test harness down with it, proving nothing about the
//! server) and checks that it stays up and answers `/healthz` after the hostile request.

use std::net::Ipv4Addr;
use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{loopback_client, made_dir, spawn_origin, Server};

/// An ISO BMFF box of `kind` around `body`.
fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len() + 8)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

/// An MP4 whose `moov` holds a `stbl` that holds itself `levels` deep (the red team's file:
/// 500 levels aborted the process through the recursive box parser).
fn self_nesting_mp4(levels: usize) -> Vec<u8> {
    let stbl = (0..levels).fold(Vec::new(), |inner, _| boxed(b"stbl", &inner));
    let mut file = boxed(b"ftyp", b"isom\0\0\x02\0isomiso2avc1mp41");
    file.extend(boxed(b"moov", &stbl));
    file
}

/// Asks `url` and checks the server answered with a 4xx, is still running and answers
/// `/healthz` at once.
async fn answered_and_alive(server: &mut Server, url: &str, what: &str) -> StatusCode {
    let client = loopback_client();
    let status = match client
        .get(url)
        .timeout(Duration::from_secs(60))
        .send()
        .await
    {
        Ok(r) => r.status(),
        Err(e) => panic!(
            "{what}: no answer ({e}); server running: {}",
            server.running()
        ),
    };
    assert!(server.running(), "{what}: the server is still running");
    let health = client
        .get(server.url("/healthz"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: /healthz after it: {e}"));
    assert_eq!(health.status(), StatusCode::OK, "{what}: /healthz");
    status
}

#[tokio::test]
async fn a_self_nesting_mp4_is_a_422_and_the_server_stays_up() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let store = tempfile::tempdir().unwrap();
    for levels in [500, 5_000] {
        let file = self_nesting_mp4(levels);
        std::fs::write(made_dir().join(format!("nested-{levels}.mp4")), &file).unwrap();
        std::fs::write(store.path().join(format!("nested-{levels}.mp4")), &file).unwrap();
    }
    let root = store.path().to_str().unwrap();
    let mut server = Server::start(&[
        ("MEDIA_PROXY__STORE__KIND", "local"),
        ("MEDIA_PROXY__STORE__ROOT", root),
    ])
    .await;
    for levels in [500, 5_000] {
        // Misskey's thumbnail of a remote video, and the store mode's poster.
        let remote = origin.url(&format!("/made/nested-{levels}.mp4?ranges=1"));
        let url = server.proxy_url("thumbnail.webp", &remote, "&thumbnail=1");
        let status = answered_and_alive(&mut server, &url, "remote thumbnail").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{levels} levels");
        let url = server.url(&format!("/nested-{levels}.mp4?w=100"));
        let status = answered_and_alive(&mut server, &url, "store poster").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{levels} levels");
    }
}

/// The server's `/metrics` text.
async fn metrics_of(server: &Server) -> String {
    let metrics = loopback_client().get(server.url("/metrics")).send().await;
    metrics.unwrap().text().await.unwrap()
}

/// The remote-mode `static` still of a PNG the origin draws at `size` (`WxH`).
fn still_of_generated(server: &Server, origin: &crate::helpers::Origin, size: &str) -> String {
    let png = origin.url(&format!("/generated/{size}.png"));
    server.proxy_url("p.webp", &png, "&static=1")
}

/// Workers lost for `cause`, from the server's `/metrics`.
async fn worker_failures(server: &Server, cause: &str) -> Option<f64> {
    let series = format!(r#"media_proxy_worker_failures_total{{cause="{cause}"}}"#);
    crate::helpers::metric(&metrics_of(server).await, &series)
}

/// After a lost worker: the next request gets a new one and is served.
async fn the_next_one_is_served(server: &mut Server, origin: &crate::helpers::Origin) {
    let small = still_of_generated(server, origin, "64x48");
    let status = answered_and_alive(server, &small, "the next one").await;
    assert_eq!(status, StatusCode::OK);
}

/// The worker processes of `server` (its children), by `/proc`.
fn workers_of(server: &Server) -> Vec<u32> {
    let parent = server.child.id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the name may hold spaces, so read after its `)`.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(parent) {
            pids.push(pid);
        }
    }
    pids
}

/// A field of `/proc/<pid>/status` (`VmRSS`, `Seccomp`…), without its unit.
fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let value = l.strip_prefix(field)?.strip_prefix(':')?;
        Some(value.trim().trim_end_matches(" kB").to_owned())
    })
}

/// Waits (at most 20 s) until the server has `n` workers that have confined themselves.
async fn confined_workers(server: &Server, n: usize) -> Vec<u32> {
    let started = std::time::Instant::now();
    loop {
        let pids: Vec<u32> = workers_of(server)
            .into_iter()
            .filter(|&pid| status_field(pid, "Seccomp").as_deref() == Some("2"))
            .collect();
        if pids.len() >= n {
            return pids;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{n} confined workers within 20 s (have {pids:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// User + system CPU seconds of a process and of its reaped children.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().unwrap())
        .collect();
    // utime, stime, cutime, cstime in clock ticks (100 per second on Linux).
    fields.iter().sum::<u64>() as f64 / 100.0
}

#[tokio::test]
async fn workers_run_confined_and_check_config_says_so() {
    let server = Server::start(&[("MEDIA_PROXY__WORKERS__THREADS", "2")]).await;
    for pid in confined_workers(&server, 2).await {
        assert_eq!(
            status_field(pid, "NoNewPrivs").as_deref(),
            Some("1"),
            "{pid}"
        );
        assert_eq!(status_field(pid, "Seccomp").as_deref(), Some("2"), "{pid}");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            cmdline.split(|&b| b == 0).any(|a| a == b"worker"),
            "{pid} is a worker"
        );
    }
    let metrics = metrics_of(&server).await;
    assert_eq!(
        crate::helpers::metric(&metrics, "media_proxy_worker_confined"),
        Some(1.0)
    );
    let ready = loopback_client()
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.text().await.unwrap(), "ready");
    // `check-config --resolved` starts one worker and reports what it said.
    let out = crate::helpers::media_proxy()
        .args(["check-config", "--resolved"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "workers.isolation = \"process\": confined: seccomp filter, no new privileges"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_worker_over_its_memory_share_costs_one_answer() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    // 32 MiB of address space beyond its start: a 3000×3000 PNG decodes into 36 MB.
    let mut server = Server::start(&[
        ("MEDIA_PROXY__WORKERS__THREADS", "1"),
        ("MEDIA_PROXY__WORKERS__WORKER_MEMORY", "33554432"),
    ])
    .await;
    let big = still_of_generated(&server, &origin, "3000x3000");
    let status = answered_and_alive(&mut server, &big, "over its share").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(worker_failures(&server, "abort").await, Some(1.0));
    the_next_one_is_served(&mut server, &origin).await;
}

#[tokio::test]
async fn a_render_past_its_deadline_is_killed_then_and_the_next_is_served() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let mut server = Server::start(&[
        ("MEDIA_PROXY__WORKERS__THREADS", "1"),
        ("MEDIA_PROXY__WORKERS__DEADLINE", "300ms"),
    ])
    .await;
    // 49 MP to decode and resize: seconds of work, far past 300 ms.
    let slow = still_of_generated(&server, &origin, "7000x7000");
    let client = loopback_client();
    let answer = client.get(&slow).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.text().await.unwrap(), "image took too long");
    // No process of the server's keeps burning CPU after the answer: the worker was killed
    // (and reaped) before it was sent.
    let pid = server.child.id();
    let tree = |pids: &[u32]| pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let after_answer = tree(&[pid]) + tree(&workers_of(&server));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = tree(&[pid]) + tree(&workers_of(&server));
    assert!(
        later - after_answer <= 0.5,
        "{:.2} CPU-s after the answer",
        later - after_answer
    );
    assert_eq!(worker_failures(&server, "deadline").await, Some(1.0));
    the_next_one_is_served(&mut server, &origin).await;
}

#[tokio::test]
async fn a_worker_killed_mid_render_costs_that_request_only() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let mut server = Server::start(&[
        ("MEDIA_PROXY__WORKERS__THREADS", "1"),
        ("MEDIA_PROXY__WORKERS__DEADLINE", "120s"),
    ])
    .await;
    let idle = confined_workers(&server, 1).await;
    let slow = still_of_generated(&server, &origin, "7000x7000");
    let client = loopback_client();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get(&slow).send().await.map(|r| r.status()) }
    });
    // The worker is busy once it holds the decoded picture (idle ones hold a few MB).
    let started = std::time::Instant::now();
    let busy = loop {
        let rss = |pid| status_field(pid, "VmRSS").and_then(|v| v.parse::<u64>().ok());
        if let Some(&pid) = idle.iter().find(|&&p| rss(p).is_some_and(|kb| kb > 60_000)) {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the render starts"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &busy.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = in_flight.await.unwrap().unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(server.running());
    the_next_one_is_served(&mut server, &origin).await;
}

/// A 4K H.264 clip made by ffmpeg, and the same file with its sample entry (`avc1`) and
/// track header claiming 320×240.
fn four_k_and_its_lie() -> (Vec<u8>, Vec<u8>) {
    let path = made_dir().join("sandbox-4k.mp4");
    let ok = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=3840x2160:rate=30",
        ])
        .args([
            "-t",
            "0.3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-movflags", "+faststart"])
        .arg(&path)
        .status()
        .expect("ffmpeg (./dev tools installs it)")
        .success();
    assert!(ok, "ffmpeg made the clip");
    let truth = std::fs::read(&path).unwrap();
    let mut lie = truth.clone();
    let find = |bytes: &[u8], what: &[u8], from: usize| {
        from + bytes[from..]
            .windows(what.len())
            .position(|w| w == what)
            .unwrap()
    };
    // The sample entry after `stsd` (the brand list of `ftyp` names avc1 too): its width
    // and height are 24 bytes into its body.
    let entry = find(&lie, b"avc1", find(&lie, b"stsd", 0));
    lie[entry + 28..entry + 30].copy_from_slice(&320u16.to_be_bytes());
    lie[entry + 30..entry + 32].copy_from_slice(&240u16.to_be_bytes());
    // The track header's last 8 bytes: width and height in 16.16.
    let tkhd = find(&lie, b"tkhd", 0);
    let size = u32::from_be_bytes(lie[tkhd - 4..tkhd].try_into().unwrap()) as usize;
    let end = tkhd - 4 + size;
    lie[end - 8..end - 4].copy_from_slice(&(320u32 << 16).to_be_bytes());
    lie[end - 4..end].copy_from_slice(&(240u32 << 16).to_be_bytes());
    (truth, lie)
}

#[tokio::test]
async fn a_video_lying_about_its_size_is_stopped_at_what_its_claim_admitted() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let (truth, lie) = four_k_and_its_lie();
    std::fs::write(made_dir().join("sandbox-4k-truth.mp4"), &truth).unwrap();
    std::fs::write(made_dir().join("sandbox-4k-lie.mp4"), &lie).unwrap();
    let mut server = Server::start(&[("MEDIA_PROXY__WORKERS__THREADS", "1")]).await;
    // Told the truth, the frame's estimate admits the ~150 MB its decoder needs.
    let url = server.proxy_url(
        "t.webp",
        &origin.url("/made/sandbox-4k-truth.mp4?ranges=1"),
        "&thumbnail=1",
    );
    let status = answered_and_alive(&mut server, &url, "the truthful 4K clip").await;
    assert_eq!(status, StatusCode::OK);
    // Claiming 320×240, it is admitted for a small frame, and its worker may not map the
    // 4K pictures its stream needs.
    let url = server.proxy_url(
        "t.webp",
        &origin.url("/made/sandbox-4k-lie.mp4?ranges=1"),
        "&thumbnail=1",
    );
    let status = answered_and_alive(&mut server, &url, "the lying clip").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    the_next_one_is_served(&mut server, &origin).await;
}
