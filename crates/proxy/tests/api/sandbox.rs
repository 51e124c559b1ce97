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

/// utime, stime, cutime and cstime of a process in clock ticks (100 per second on Linux);
/// `None` once it is gone.
fn cpu_ticks(pid: u32) -> Option<[u64; 4]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace().skip(11).map(|f| f.parse().ok());
    let mut next = || fields.next().flatten();
    Some([next()?, next()?, next()?, next()?])
}

/// CPU seconds of the server, its reaped children and its live workers. A worker that ends
/// while the tree is read (killed at a deadline, lost, replaced) would be counted by neither
/// its own `/proc` nor the server's reaped time: read again until the reaped part held still.
fn tree_cpu(server: &Server) -> f64 {
    let pid = server.child.id();
    let reaped = || cpu_ticks(pid).map(|t| t[2] + t[3]);
    loop {
        let before = reaped();
        let own = cpu_ticks(pid).map_or(0, |t| t.iter().sum::<u64>());
        let live: u64 = workers_of(server)
            .into_iter()
            .filter_map(cpu_ticks)
            .map(|t| t[0] + t[1])
            .sum();
        if reaped() == before {
            return (own + live) as f64 / 100.0;
        }
    }
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

/// A worker keeps what a large job freed for the next one, and hands it back once no job has
/// come for a second (`memory::IDLE_BEFORE_RELEASE`): trimming after every job made the kernel
/// fault and zero the same pages again each time (2.8× the CPU of a progressive JPEG
/// `preview`). Waiting for the next job with a timeout is a `poll` its filter allows.
#[tokio::test]
async fn a_worker_keeps_freed_memory_while_busy_and_hands_it_back_when_idle() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let mut server = Server::start(&[("MEDIA_PROXY__WORKERS__THREADS", "1")]).await;
    let rss = |pid| {
        status_field(pid, "VmRSS")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let workers = confined_workers(&server, 1).await;
    // The last to be given back is the one the next job takes.
    let before: Vec<u64> = workers.iter().map(|&p| rss(p)).collect();
    // A 2000×2000 picture: 16 MB decoded, a large job.
    let large = still_of_generated(&server, &origin, "2000x2000");
    let status = answered_and_alive(&mut server, &large, "large").await;
    assert_eq!(status, StatusCode::OK);
    let grown: Vec<(u32, u64, u64)> = workers
        .iter()
        .zip(&before)
        .map(|(&p, &b)| (p, b, rss(p)))
        .filter(|&(_, b, now)| now > b + 12_000)
        .collect();
    let [(worker, idle, _)] = grown[..] else {
        panic!("one worker holds the freed picture just after the answer: {workers:?} {before:?} → {grown:?}");
    };
    let started = std::time::Instant::now();
    while rss(worker) > idle + 8_000 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the worker hands its memory back once idle ({} kB, {idle} kB before)",
            rss(worker)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The same worker, still confined: the wait was a call its filter allows.
    assert!(workers_of(&server).contains(&worker));
    assert_eq!(status_field(worker, "Seccomp").as_deref(), Some("2"));
    assert_eq!(worker_failures(&server, "forbidden_call").await, Some(0.0));
    the_next_one_is_served(&mut server, &origin).await;
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
    let after_answer = tree_cpu(&server);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = tree_cpu(&server);
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

/// A clip of `w`×`h` made by ffmpeg with `encoder`, written as `name` in the made directory.
fn clip(name: &str, encoder: &[&str], w: u32, h: u32, seconds: &str) -> Vec<u8> {
    let path = made_dir().join(name);
    let ok = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={w}x{h}:rate=30"))
        .args(["-t", seconds, "-pix_fmt", "yuv420p", "-c:v"])
        .args(encoder)
        .arg(&path)
        .status()
        .expect("ffmpeg (./dev tools installs it)")
        .success();
    assert!(ok, "ffmpeg made {name}");
    std::fs::read(&path).unwrap()
}

/// Where `what` is in `bytes`, from `from` on.
fn find(bytes: &[u8], what: &[u8], from: usize) -> usize {
    from + bytes[from..]
        .windows(what.len())
        .position(|w| w == what)
        .unwrap_or_else(|| panic!("{what:?} in the file"))
}

/// `mp4` claiming `w`×`h` in its sample entry and its track header.
fn mp4_claiming(mp4: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut lie = mp4.to_vec();
    // The first sample entry of `stsd` (after its version, flags, count and the entry's own
    // size): a visual entry's width and height are 24 bytes into its body.
    let entry = find(&lie, b"stsd", 0) + 16;
    lie[entry + 28..entry + 30].copy_from_slice(&w.to_be_bytes());
    lie[entry + 30..entry + 32].copy_from_slice(&h.to_be_bytes());
    // The track header's last 8 bytes: width and height in 16.16.
    let tkhd = find(&lie, b"tkhd", 0);
    let size = u32::from_be_bytes(lie[tkhd - 4..tkhd].try_into().unwrap()) as usize;
    let end = tkhd - 4 + size;
    lie[end - 8..end - 4].copy_from_slice(&(u32::from(w) << 16).to_be_bytes());
    lie[end - 4..end].copy_from_slice(&(u32::from(h) << 16).to_be_bytes());
    lie
}

/// A 640×480 `webm` claiming 320×240: its PixelWidth (`B0`) and PixelHeight (`BA`)
/// elements, two bytes each.
fn webm_claiming_320x240(webm: &[u8]) -> Vec<u8> {
    let mut lie = webm.to_vec();
    let at = find(&lie, &[0xb0, 0x82, 0x02, 0x80], 0);
    lie[at + 2..at + 4].copy_from_slice(&320u16.to_be_bytes());
    let at = find(&lie, &[0xba, 0x82, 0x01, 0xe0], 0);
    lie[at + 2..at + 4].copy_from_slice(&240u16.to_be_bytes());
    lie
}

/// Server and worker RSS together, in bytes.
fn tree_rss(server: &Server) -> u64 {
    let rss = |pid| status_field(pid, "VmRSS").and_then(|v| v.parse::<u64>().ok());
    let pids = std::iter::once(server.child.id()).chain(workers_of(server));
    pids.filter_map(rss).sum::<u64>() * 1024
}

/// The memory budget the hostile tests run at, and how far above it RSS may grow (the
/// server's own buffers, the allocator's slack).
const BUDGET: u64 = 256 << 20;
const RSS_MARGIN: u64 = 64 << 20;

/// Asks `url` as [`answered_and_alive`] does, and checks what the hostile file cost: at most
/// 0.5 CPU-s after the answer (nothing runs on), RSS growth within the budget and a margin.
async fn hostile(server: &mut Server, url: &str, what: &str) -> (StatusCode, String) {
    hostile_within(server, url, what, BUDGET).await
}

/// [`hostile`] for a server of `budget`.
async fn hostile_within(
    server: &mut Server,
    url: &str,
    what: &str,
    budget: u64,
) -> (StatusCode, String) {
    let before = tree_rss(server);
    let client = loopback_client();
    let answer = client
        .get(url)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: no answer ({e})"));
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    let peak = tree_rss(server);
    let after_answer = tree_cpu(server);
    let again = answered_and_alive(server, &server.url("/healthz"), what).await;
    assert_eq!(again, StatusCode::OK, "{what}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let used = tree_cpu(server) - after_answer;
    assert!(used <= 0.5, "{what}: {used:.2} CPU-s after the answer");
    assert!(
        peak.saturating_sub(before) <= budget + RSS_MARGIN,
        "{what}: RSS grew by {} MiB",
        (peak - before) >> 20
    );
    (status, body)
}

/// A server for the hostile tests: one worker, the test's budget and `limits`.
async fn hostile_server(limits: &[(&str, &str)]) -> Server {
    hostile_server_within(limits, BUDGET).await
}

/// [`hostile_server`] with a budget of `budget` bytes.
async fn hostile_server_within(limits: &[(&str, &str)], budget: u64) -> Server {
    let budget = budget.to_string();
    let mut env = vec![
        ("MEDIA_PROXY__WORKERS__THREADS", "1"),
        ("MEDIA_PROXY__WORKERS__MEMORY_BUDGET", budget.as_str()),
    ];
    env.extend_from_slice(limits);
    Server::start(&env).await
}

/// Every copy of a download counts in the budget, a worker's copy of its input too, and a
/// grown buffer leaves nothing behind: six `emoji`s of 60 MiB bodies at once under a 128 MiB
/// budget keep the server and its workers within the budget and 16 MiB, sampled while they
/// run (each is a 1×1 GIF padded with zeros: served, or refused for want of room). With the
/// worker's copy uncounted, two were admitted together: 161–244 MiB; with download buffers
/// grown inside the heaps, what each growth freed stayed resident: 209–217 MiB when two ran.
#[tokio::test]
async fn a_workers_copy_of_its_input_counts_in_the_budget() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let budget: u64 = 128 << 20;
    let mut server = Server::start(&[
        ("MEDIA_PROXY__WORKERS__THREADS", "2"),
        ("MEDIA_PROXY__WORKERS__MEMORY_BUDGET", &budget.to_string()),
    ])
    .await;
    confined_workers(&server, 2).await;
    let before = tree_rss(&server);
    let client = loopback_client();
    let requests = futures_util::future::join_all((0..6).map(|i| {
        let body = origin.url(&format!("/chunked?size=1048576&count=60&n={i}"));
        let url = server.proxy_url("a.webp", &body, "&emoji");
        let client = client.clone();
        async move { client.get(&url).send().await.map(|r| r.status()) }
    }));
    let mut peak = before;
    let sample = async {
        loop {
            peak = peak.max(tree_rss(&server));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let statuses = tokio::select! {
        answers = requests => answers,
        () = sample => unreachable!(),
    };
    for status in statuses {
        // Served (a 1×1 GIF and its padding) or refused for want of room: never a hang.
        let status = status.unwrap();
        assert!(
            [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(&status),
            "{status}"
        );
    }
    // The server's own buffers beside the budget: pipes, connections.
    let margin = 16 << 20;
    assert!(
        peak.saturating_sub(before) <= budget + margin,
        "RSS grew by {} MiB at a budget of {} MiB",
        (peak - before) >> 20,
        budget >> 20
    );
    let healthz = server.url("/healthz");
    let again = answered_and_alive(&mut server, &healthz, "after").await;
    assert_eq!(again, StatusCode::OK);
}

#[tokio::test]
async fn a_video_lying_about_its_size_is_judged_by_its_stream_in_every_container() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let av1 = ["libaom-av1", "-cpu-used", "8", "-row-mt", "0"];
    let cases: [(&str, &[&str]); 5] = [
        ("h264.mp4", &["libx264", "-preset", "ultrafast"]),
        ("av1.mp4", &av1),
        ("vp9.webm", &["libvpx-vp9", "-deadline", "realtime"]),
        ("vp8.webm", &["libvpx", "-deadline", "realtime"]),
        ("av1.webm", &av1),
    ];
    for (name, encoder) in cases {
        let truth = clip(&format!("sandbox-640x480-{name}"), encoder, 640, 480, "0.3");
        let lie = if name.ends_with(".mp4") {
            mp4_claiming(&truth, 320, 240)
        } else {
            webm_claiming_320x240(&truth)
        };
        std::fs::write(made_dir().join(format!("sandbox-lie-{name}")), &lie).unwrap();
    }
    // 320×240 frames pass; the 640×480 the streams hold do not.
    let mut server = hostile_server(&[("MEDIA_PROXY__LIMITS__MAX_PIXELS", "100000")]).await;
    for (name, _) in cases {
        let remote = origin.url(&format!("/made/sandbox-lie-{name}?ranges=1"));
        let url = server.proxy_url("t.webp", &remote, "&thumbnail=1");
        let (status, body) = hostile(&mut server, &url, name).await;
        // Without the stream's size, the claim (76,800 pixels) passes and the frame renders.
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert_eq!(body, "image too large", "{name}");
    }
    let honest = clip("sandbox-320x240.mp4", &["libx264"], 320, 240, "0.3");
    assert!(!honest.is_empty());
    let remote = origin.url("/made/sandbox-320x240.mp4?ranges=1");
    let url = server.proxy_url("t.webp", &remote, "&thumbnail=1");
    assert_eq!(hostile(&mut server, &url, "honest").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_video_lying_about_its_size_is_priced_by_its_stream() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    // A 4K H.264 clip claiming 320×240: priced as 320×240, its worker could not map the 4K
    // pictures its stream needs (its address space is held to twice the estimate + 64 MiB)
    // and the answer would be a 422; priced by its SPS, it renders.
    let encoder = ["libx264", "-preset", "ultrafast", "-movflags", "+faststart"];
    let truth = clip("sandbox-4k.mp4", &encoder, 3840, 2160, "0.3");
    std::fs::write(
        made_dir().join("sandbox-4k-lie.mp4"),
        mp4_claiming(&truth, 320, 240),
    )
    .unwrap();
    // A 4K frame is priced at ~280 MB: a budget that admits one.
    let budget = 512 << 20;
    let mut server = hostile_server_within(&[], budget).await;
    for name in ["sandbox-4k.mp4", "sandbox-4k-lie.mp4"] {
        let remote = origin.url(&format!("/made/{name}?ranges=1"));
        let url = server.proxy_url("t.webp", &remote, "&thumbnail=1");
        let (status, body) = hostile_within(&mut server, &url, name, budget).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }
    assert_eq!(worker_failures(&server, "abort").await, Some(0.0));
}

#[tokio::test]
async fn a_heic_lying_about_its_size_is_judged_by_its_stream() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    // pug.heic is a 4032×3024 grid of tiles; its `ispe` made to say 64×64.
    let truth = crate::helpers::corpus_bytes("heic/pillow-heif-other/pug.heic");
    let mut lie = truth.clone();
    let mut at = 0;
    while let Some(found) = lie[at..].windows(4).position(|w| w == b"ispe") {
        let field = at + found + 8;
        if lie[field..field + 8] == [0, 0, 0x0f, 0xc0, 0, 0, 0x0b, 0xd0] {
            lie[field..field + 8].copy_from_slice(&[0, 0, 0, 64, 0, 0, 0, 64]);
        }
        at = field;
    }
    assert_ne!(lie, truth, "the ispe of 4032×3024 was found");
    std::fs::write(made_dir().join("sandbox-lie.heic"), &lie).unwrap();
    let mut server = hostile_server(&[("MEDIA_PROXY__LIMITS__MAX_PIXELS", "1000000")]).await;
    let url = server.proxy_url("p.webp", &origin.url("/made/sandbox-lie.heic"), "&static=1");
    let (status, body) = hostile(&mut server, &url, "the lying HEIC").await;
    // Refused from the size its grid makes, before decoding (believing 64×64, it decodes).
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body, "image too large");
}

#[tokio::test]
async fn a_jpeg_xl_of_zero_length_frames_is_judged_by_every_frame_it_decodes() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    // 600 frames of no duration, blended into the one frame shown: 601 frames to decode.
    let gif = made_dir().join("sandbox-zero.gif");
    let jxl = made_dir().join("sandbox-zero.jxl");
    let make = r#"
import sys
from PIL import Image
frames = [Image.new("RGB", (64, 64), (i % 256, i * 7 % 256, i * 13 % 256)) for i in range(601)]
frames[0].save(sys.argv[1], save_all=True, append_images=frames[1:], duration=[0] * 600 + [100], loop=0)
"#;
    let ok = std::process::Command::new("python3")
        .args(["-c", make])
        .arg(&gif)
        .status()
        .unwrap()
        .success();
    assert!(ok, "Pillow made the GIF");
    let ok = std::process::Command::new("cjxl")
        .arg(&gif)
        .arg(&jxl)
        .args(["-d", "1", "-e", "1", "--quiet"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "cjxl made the JPEG XL");
    // 601 × 64 × 64 is 2.5 MP; one shown frame is 4,096 pixels.
    let mut server = hostile_server(&[("MEDIA_PROXY__LIMITS__MAX_TOTAL_PIXELS", "1000000")]).await;
    let url = server.proxy_url("p.webp", &origin.url("/made/sandbox-zero.jxl"), "");
    let (status, body) = hostile(&mut server, &url, "zero-length frames").await;
    // Counting the shown frame alone, it renders.
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body, "image too large");
}

#[tokio::test]
async fn headers_are_read_in_a_worker_too_unless_isolation_is_thread() {
    let origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let count = |metrics: &str, stage: &str| {
        let series = format!(r#"media_proxy_stage_duration_seconds_count{{stage="{stage}"}}"#);
        crate::helpers::metric(metrics, &series)
    };
    for (isolation, assessed) in [("process", Some(1.0)), ("thread", None)] {
        let mut server = Server::start(&[
            ("MEDIA_PROXY__WORKERS__THREADS", "1"),
            ("MEDIA_PROXY__WORKERS__ISOLATION", isolation),
        ])
        .await;
        let url = still_of_generated(&server, &origin, "64x48");
        let status = answered_and_alive(&mut server, &url, isolation).await;
        assert_eq!(status, StatusCode::OK, "{isolation}");
        let metrics = metrics_of(&server).await;
        // Sandboxed, the PNG's headers were read by a worker (one job), then rendered by one.
        assert_eq!(count(&metrics, "assess"), assessed, "{isolation}");
        assert_eq!(count(&metrics, "decode"), Some(1.0), "{isolation}");
    }
}
