//! The corpus sweep: files of `../shared/corpus/manifest.tsv`, served by the scripted origin
//! and requested as passthrough and with `static`, `emoji`, `preview` and `badge`, through
//! the real binary (a child process, so its memory can be read). Each answer is judged by
//! the row's expected outcome; outputs are decoded with independent decoders (`image` for
//! WebP and PNG, `image-webp` for frame counts).
//!
//! A second sweep sends the same files through the store mode (the server's store root is
//! the corpus itself) with store-mode requests in every output format: crops, padding,
//! stretching, AVIF, GIF, JPEG, PNG, WebP.
//!
//! CI runs a fixed sample (every hostile file and every 8th other row);
//! `MEDIA_PROXY_CORPUS=full cargo test --test corpus` runs every row, and
//! `MEDIA_PROXY_BIN=target/release/media-proxy` sweeps a release build instead.

use std::io::Cursor;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;

use crate::helpers::{corpus, nested_uses, spawn_origin, Origin};

const FLAGS: [&str; 5] = ["", "&static", "&emoji", "&preview", "&badge"];
/// The servers' `workers.deadline` (the default, set here so that [`PROMPT`] follows it).
const DEADLINE: Duration = Duration::from_secs(10);
/// Every answer, however hostile the input, comes within this: the deadline stops the work,
/// and the `422` that says so is sent within a second of it. (Not the deadline itself: a
/// render that runs into it, which three sweeps sharing two cores can make of a priced
/// cheap one, is answered just after it.)
const PROMPT: Duration = DEADLINE.saturating_add(Duration::from_secs(1));

/// Valid files our decoders refuse (a clean 422), by cause: a path (every transform) or a
/// path with one flag. The sweep checks that each is still refused cleanly, so this list
/// stays true; a fix must remove its entries.
const KNOWN_GAPS: &[&str] = &[
    // TIFF layouts the `tiff` crate does not decompress or unpack: 12-bit grey, CCITT
    // Group 3 fax, LZMA, old-style JPEG with subsampled chroma, pre-1992 "compatible" LZW,
    // a photometric interpretation outside TIFF 6, 65,537 strips (over its own limits).
    "tiff/image-tiff/12bit.cropped.tiff",
    "tiff/image-tiff/hpredict-1c-12b.tiff",
    "tiff/image-tiff/seq/seq-1c-12b-47c39b31.tiff",
    "tiff/image-tiff/seq/seq-1c-12b-hpredict-47c39b31.tiff",
    "tiff/pillow/12bit.cropped.tif",
    "tiff/image-tiff/seq/seq-1c-1b-fax3-71f6a21a.tiff",
    "tiff/image-tiff/seq/seq-1c-1b-fax3-fillbits-71f6a21a.tiff",
    "tiff/image-tiff/seq/seq-1c-1b-fax3-lsb-71f6a21a.tiff",
    "tiff/pillow/hopper_lzma.tif",
    "tiff/pillow/old-style-jpeg-compression.tif",
    "tiff/image-tiff/quad-lzw-compat.tiff",
    "tiff/pillow/10ct_32bit_128.tiff",
    "tiff/image-tiff/big_g4.tif",
    // Planar 16-bit tiles: the `tiff` crate's planar tile readout trips its own assertion
    // (caught: a 422).
    "tiff/pillow/tiff_tiled_planar_16bit_RGBa.tiff",
];

/// Valid files we read differently from Pillow on purpose: the path and the size we show.
const READ_DIFFERENTLY: &[(&str, (u32, u32))] = &[
    // Its primary item (`pitm`) is a 1197×1227 grid that another item claims as its
    // thumbnail; libheif then shows that other item. We show the declared primary item.
    ("heic/pillow-heif-other/invalid_id.heic", (1197, 1227)),
];

struct Row {
    path: String,
    format: String,
    outcome: String,
    size: Option<(u32, u32)>,
    frames: Option<u32>,
    /// Pillow or the format's reference tool decoded it.
    mainstream_ok: bool,
}

fn manifest() -> Vec<Row> {
    let text = std::fs::read_to_string(corpus("manifest.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let c: Vec<&str> = line.split('\t').collect();
            let num = |i: usize| c.get(i).and_then(|v| v.parse::<u32>().ok());
            Row {
                path: c[0].to_owned(),
                format: c[1].to_owned(),
                outcome: c[2].to_owned(),
                size: num(3).zip(num(4)),
                frames: num(5),
                mainstream_ok: c.get(7) == Some(&"ok")
                    || c.get(8).is_some_and(|v| v.contains(":ok")),
            }
        })
        .collect()
}

fn is_image(format: &str) -> bool {
    matches!(
        format,
        "png"
            | "apng"
            | "jpeg"
            | "gif"
            | "webp"
            | "avif"
            | "avifs"
            | "bmp"
            | "tiff"
            | "ico"
            | "svg"
            | "heic"
            | "jxl"
    )
}

/// Formats not every browser shows: converted to WebP without flags, never passed through.
fn converted(format: &str) -> bool {
    matches!(format, "svg" | "tiff" | "heic" | "jxl")
}

/// The `Content-Type` a passthrough of this content must carry (`None`: must be refused).
fn passthrough_type(format: &str) -> Option<&'static [&'static str]> {
    Some(match format {
        "png" => &["image/png"],
        "apng" => &["image/apng"],
        "jpeg" => &["image/jpeg"],
        "gif" => &["image/gif"],
        "webp" => &["image/webp"],
        "avif" | "avifs" => &["image/avif"],
        "bmp" => &["image/bmp"],
        "ico" => &["image/x-icon"],
        "mp4" => &["video/mp4", "audio/mp4", "video/x-m4v"],
        "m4a" => &["audio/mp4", "audio/x-m4a"],
        "mov" => &["video/quicktime"],
        "webm" => &["video/webm", "audio/webm"],
        _ => return None,
    })
}

/// Size a transform gives a `w`×`h` picture (the spec's table, written out independently).
fn expected_size(flag: &str, w: u32, h: u32) -> (u32, u32) {
    let fit = |bw: u32, bh: u32| {
        let scale = (f64::from(bw) / f64::from(w))
            .min(f64::from(bh) / f64::from(h))
            .min(1.0);
        if scale >= 1.0 {
            (w, h)
        } else if f64::from(bw) / f64::from(w) <= f64::from(bh) / f64::from(h) {
            (bw, ((f64::from(h) * scale).round() as u32).max(1))
        } else {
            (((f64::from(w) * scale).round() as u32).max(1), bh)
        }
    };
    match flag {
        "&emoji" if h > 128 => (
            ((f64::from(w) * 128.0 / f64::from(h)).round() as u32).max(1),
            128,
        ),
        "&emoji" => (w, h),
        "&static" => fit(498, 422),
        "&preview" => fit(200, 200),
        "&badge" => (96, 96),
        "&converted" => fit(2048, 2048),
        _ => (w, h),
    }
}

/// A free loopback port (bound, read, released: the child binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Anonymous resident memory (heap and stacks; not the binary's code pages).
    fn heap_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

/// The binary on a free port; `store_root`: the store mode reads that directory (else off).
async fn start_server(client: &reqwest::Client, store_root: Option<&std::path::Path>) -> Server {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // MEDIA_PROXY_BIN: sweep another build (e.g. target/release/media-proxy, much faster).
    let bin = std::env::var("MEDIA_PROXY_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_media-proxy").to_owned());
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars() {
        if key.starts_with("MEDIA_PROXY__") {
            cmd.env_remove(key);
        }
    }
    // No cache directory in the source tree; a small memory tier, within the RSS bound
    // checked at the end (the negative cache and coalescing work as deployed).
    cmd.env("MEDIA_PROXY__CACHE__KIND", "none")
        .env("MEDIA_PROXY__CACHE__MEMORY", "16777216");
    match store_root {
        Some(root) => cmd.env("MEDIA_PROXY__STORE__ROOT", root),
        // No `media/` store directory in the source tree.
        None => cmd.env("MEDIA_PROXY__STORE__KIND", "none"),
    };
    let child = cmd
        .args(["serve", "--listen", &addr.to_string()])
        .env("MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS", "127.0.0.2/32")
        .env("MEDIA_PROXY__LOG__FILTER", "error")
        .env("MEDIA_PROXY__WORKERS__QUEUE_WAIT", "60s")
        .env(
            "MEDIA_PROXY__WORKERS__DEADLINE",
            format!("{}s", DEADLINE.as_secs()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, addr };
    crate::helpers::until_serving(client, &format!("http://{addr}"), "the server").await;
    server
}

/// What went wrong with one request, if anything.
fn judge(
    row: &Row,
    flag: &str,
    status: StatusCode,
    ctype: &str,
    body: &[u8],
) -> Result<(), String> {
    if status.is_server_error() {
        return Err(format!("{status}"));
    }
    let listed = KNOWN_GAPS.contains(&row.path.as_str())
        || KNOWN_GAPS.contains(&format!("{}{flag}", row.path).as_str());
    let gap = listed;
    if flag.is_empty() {
        return judge_passthrough(row, status, ctype, body);
    }
    if !is_image(&row.format) {
        return if status.is_client_error() {
            Ok(())
        } else {
            Err(format!(
                "{status} for a transform of {} content",
                row.format
            ))
        };
    }
    let decoded = if status == StatusCode::OK {
        Some(decode_output(flag, ctype, body)?)
    } else {
        None
    };
    match (row.outcome.as_str(), decoded) {
        ("valid", Some((w, h, frames))) => {
            if listed {
                return Err("a known gap now decodes: remove it from KNOWN_GAPS".into());
            }
            check_geometry(row, flag, w, h, frames)
        }
        ("valid", None) if flag == "&badge" && status == StatusCode::NOT_FOUND => Ok(()),
        ("valid", None) if gap && status == StatusCode::UNPROCESSABLE_ENTITY => Ok(()),
        ("valid", None) => Err(format!("{status} for a valid file")),
        ("invalid", Some(_)) if !row.mainstream_ok => {
            Err("a broken file that no mainstream decoder reads was served as an image".into())
        }
        ("invalid", Some(_)) => Ok(()), // recovered, as Pillow or the reference tool does
        (_, _) => Ok(()),               // edge, bomb, lie, unsafe: a decoded image or a clean 4xx
    }
}

fn judge_passthrough(
    row: &Row,
    status: StatusCode,
    ctype: &str,
    body: &[u8],
) -> Result<(), String> {
    if converted(&row.format) {
        // Never served as it is: converted to WebP at its own size (inside 2048×2048), or
        // refused; a valid file that is not a known gap must convert.
        let gap = KNOWN_GAPS.contains(&row.path.as_str());
        return match status {
            StatusCode::OK if ctype == "image/webp" => {
                let (w, h, frames) = decode_output("", ctype, body)?;
                if row.outcome == "valid" && gap {
                    return Err("a known gap now decodes: remove it from KNOWN_GAPS".into());
                }
                if row.outcome == "valid" && row.format != "svg" {
                    check_geometry(row, "&converted", w, h, frames)?;
                }
                Ok(())
            }
            s if s.is_client_error() && (row.outcome != "valid" || gap) => Ok(()),
            s => Err(format!("{} answered {s} {ctype}", row.format)),
        };
    }
    match (status, passthrough_type(&row.format)) {
        (StatusCode::OK, Some(types)) => {
            if !types.contains(&ctype) {
                return Err(format!("{} content served as {ctype}", row.format));
            }
            if body != std::fs::read(corpus(&row.path)).unwrap() {
                return Err("passthrough altered the bytes".into());
            }
            Ok(())
        }
        (StatusCode::OK, None) => Err(format!("{} content served as {ctype}", row.format)),
        (s, None) if s == StatusCode::FORBIDDEN => Ok(()),
        (s, _) if s.is_client_error() && row.outcome != "valid" => Ok(()),
        (s, _) => Err(format!("passthrough answered {s}")),
    }
}

/// (width, height, frames) of an output, decoded independently.
fn decode_output(flag: &str, ctype: &str, body: &[u8]) -> Result<(u32, u32, u32), String> {
    let want = if flag == "&badge" {
        "image/png"
    } else {
        "image/webp"
    };
    if ctype != want {
        return Err(format!("output is {ctype}, not {want}"));
    }
    let img = image::load_from_memory(body).map_err(|e| format!("output does not decode: {e}"))?;
    let frames = if want == "image/webp" {
        let d = image_webp::WebPDecoder::new(Cursor::new(body)).map_err(|e| e.to_string())?;
        if d.is_animated() {
            d.num_frames()
        } else {
            1
        }
    } else {
        1
    };
    Ok((img.width(), img.height(), frames))
}

fn check_geometry(row: &Row, flag: &str, w: u32, h: u32, frames: u32) -> Result<(), String> {
    if !matches!(flag, "&emoji" | "&converted") && frames != 1 {
        return Err(format!("{frames} frames under {flag}"));
    }
    if let Some(n) = row.frames {
        if frames > n.max(1) {
            return Err(format!("{frames} frames from a {n}-frame input"));
        }
    }
    if row.format == "svg" {
        return Ok(()); // intrinsic SVG sizes depend on units and viewBox; decoded is enough
    }
    let Some((sw, sh)) = READ_DIFFERENTLY
        .iter()
        .find(|(path, _)| *path == row.path)
        .map(|&(_, size)| size)
        .or(row.size)
    else {
        return Ok(());
    };
    // The header's stored size, shown as is or turned a quarter (EXIF, irot).
    let upright = expected_size(flag, sw, sh);
    let turned = expected_size(flag, sh, sw);
    if (w, h) == upright || (w, h) == turned {
        Ok(())
    } else {
        Err(format!(
            "{w}×{h}, expected {upright:?} or {turned:?} from {sw}×{sh}"
        ))
    }
}

fn encode_path(rel: &str) -> String {
    rel.split('/')
        .map(|seg| {
            percent_encoding::utf8_percent_encode(seg, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The rows swept: all with `MEDIA_PROXY_CORPUS=full`, else every hostile file and every
/// 8th other row.
fn sample() -> Vec<Row> {
    let full = std::env::var("MEDIA_PROXY_CORPUS").is_ok_and(|v| v == "full");
    manifest()
        .into_iter()
        .enumerate()
        .filter(|(i, r)| full || r.path.starts_with("hostile/") || i % 8 == 0)
        .map(|(_, r)| r)
        .filter(|r| corpus(&r.path).is_file())
        .collect()
}

/// The sweeps' HTTP client: loopback only (no proxy from the environment), patient.
fn sweep_client() -> reqwest::Client {
    // reqwest is built without a default TLS crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Judges one answer: status, content type, body.
type Judge<'a> = Box<dyn Fn(StatusCode, &str, &[u8]) -> Result<(), String> + Send + 'a>;

/// One request of a sweep: its URL, `Accept`, how to name it in a failure, and its judge.
struct Probe<'a> {
    url: String,
    accept: &'static str,
    label: String,
    judge: Judge<'a>,
}

/// Sends every probe, two at a time; the failures, each named by its label. An answer that
/// takes longer than [`PROMPT`] is a failure too.
async fn run_probes<'a>(
    client: &reqwest::Client,
    probes: impl Iterator<Item = Probe<'a>>,
) -> Vec<String> {
    futures_util::stream::iter(probes)
        .map(|p| {
            let client = client.clone();
            async move {
                let started = Instant::now();
                let result = match client.get(&p.url).header("accept", p.accept).send().await {
                    Err(e) => Err(format!("request failed: {e}")),
                    Ok(r) => {
                        let status = r.status();
                        let ctype = r
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        match r.bytes().await {
                            Err(e) => Err(format!("body failed: {e}")),
                            Ok(body) => (p.judge)(status, &ctype, &body),
                        }
                    }
                };
                let took = started.elapsed();
                let result = result.and_then(|()| {
                    (took <= PROMPT)
                        .then_some(())
                        .ok_or(format!("took {took:?}"))
                });
                result.err().map(|e| format!("{}: {e}", p.label))
            }
        })
        .buffer_unordered(2)
        .filter_map(|f| async move { f })
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_file_gets_a_prompt_clean_answer_and_the_process_stays_healthy() {
    let rows = sample();
    let origin: Origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let client = sweep_client();
    let server = start_server(&client, None).await;
    let idle = server.heap_kb();
    let base = format!("http://{}", server.addr);
    let probes = rows.iter().flat_map(|row| {
        let (base, origin) = (&base, &origin);
        FLAGS.iter().map(move |flag| {
            let origin_url = origin.url(&format!("/corpus/{}", encode_path(&row.path)));
            let encoded: String =
                url::form_urlencoded::byte_serialize(origin_url.as_bytes()).collect();
            Probe {
                url: format!("{base}/x.webp?url={encoded}{flag}"),
                accept: "*/*",
                label: format!("{} [{}] {}{flag}", row.outcome, row.format, row.path),
                judge: Box::new(move |status, ctype, body| judge(row, flag, status, ctype, body)),
            }
        })
    });
    let failures = run_probes(&client, probes).await;
    // Healthy afterwards: alive, ready, and memory back near where it started.
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Idle blocking threads exit after 10 s, and their stacks and caches with them.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let after = server.heap_kb();
    eprintln!(
        "corpus sweep: {} files × {} flags, {} failures; anonymous RSS idle {idle} kB, after {after} kB",
        rows.len(),
        FLAGS.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        after < idle + 64 * 1024,
        "anonymous RSS {after} kB after the sweep, {idle} kB idle"
    );
}

/// Store-mode requests: query, `Accept`, the box no output side may exceed.
const STORE_REQUESTS: [(&str, &str, (u32, u32)); 5] = [
    ("d=120x90&format=avif", "*/*", (120, 90)),
    ("d=120x90&format=gif", "*/*", (120, 90)),
    ("w=300", "image/avif,image/webp,*/*", (300, 16384)),
    (
        "d=64x64&fit=contain&bg=00000080&format=png",
        "*/*",
        (64, 64),
    ),
    ("d=200x20&fit=fill&format=jpeg&q=40", "*/*", (200, 20)),
];

/// A store answer: never a 5xx; a valid image (not a known gap) is a 200; every 200 decodes
/// (independently of our encoders) within its box.
fn judge_store(
    row: &Row,
    query: &str,
    bounds: (u32, u32),
    status: StatusCode,
    body: &[u8],
) -> Result<(), String> {
    if status.is_server_error() {
        return Err(format!("{status}"));
    }
    let gap = KNOWN_GAPS.contains(&row.path.as_str())
        || KNOWN_GAPS
            .iter()
            .any(|g| g.starts_with(&row.path) && g.contains('&'));
    let must_work = row.outcome == "valid" && is_image(&row.format) && !gap;
    if status != StatusCode::OK {
        return if must_work {
            Err(format!("a valid image answered {status}"))
        } else {
            Ok(())
        };
    }
    let (w, h) = if body.get(4..8) == Some(b"ftyp") {
        let (w, h, _) = crate::helpers::avif_info(body)?;
        (w, h)
    } else {
        let img =
            image::load_from_memory(body).map_err(|e| format!("output does not decode: {e}"))?;
        (img.width(), img.height())
    };
    if w == 0 || h == 0 || w > bounds.0 || h > bounds.1 {
        return Err(format!("{w}×{h} outside {bounds:?} for {query}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_file_through_the_store_mode_gets_a_prompt_clean_answer() {
    let rows = sample();
    let client = sweep_client();
    let server = start_server(&client, Some(&corpus(""))).await;
    let base = format!("http://{}", server.addr);
    let probes = rows.iter().flat_map(|row| {
        let base = &base;
        STORE_REQUESTS
            .iter()
            .map(move |&(query, accept, bounds)| Probe {
                url: format!("{base}/{}?{query}", encode_path(&row.path)),
                accept,
                label: format!("{} [{}] {}?{query}", row.outcome, row.format, row.path),
                judge: Box::new(move |status, _, body| {
                    judge_store(row, query, bounds, status, body)
                }),
            })
    });
    let failures = run_probes(&client, probes).await;
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    eprintln!(
        "store-mode corpus sweep: {} files × {} requests, {} failures",
        rows.len(),
        STORE_REQUESTS.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// CPU time the child has used so far (user + system), from `/proc/<pid>/stat`.
fn cpu_seconds(server: &Server) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id())).unwrap();
    // Fields after the `(comm)`; utime and stime are the 14th and 15th of the whole line.
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

/// SVGs made to cost CPU or memory out of all proportion to their size (issue 18), written
/// here rather than kept as files: each is a few lines of text.
fn costly_svgs() -> Vec<(&'static str, String)> {
    let svg = |w: u32, body: &str| {
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{w}">{body}</svg>"#)
    };
    let layers: String = (0..400)
        .map(|i| format!(r#"<g opacity="0.5"><rect x="{i}" width="2048" height="2048"/></g>"#))
        .collect();
    vec![
        ("1,000 circles by nested use", nested_uses(3)),
        ("10 million circles by nested use", nested_uses(7)),
        (
            "turbulence with 100,000 octaves",
            svg(
                2048,
                r#"<filter id="t"><feTurbulence baseFrequency="0.01" numOctaves="100000"/></filter><rect width="2048" height="2048" filter="url(#t)"/>"#,
            ),
        ),
        (
            "morphology radius 500",
            svg(
                2048,
                r#"<filter id="m"><feMorphology radius="500"/></filter><rect width="2048" height="2048" filter="url(#m)"/>"#,
            ),
        ),
        ("400 full-canvas translucent layers", svg(2048, &layers)),
        (
            "a mask chain over the canvas",
            svg(
                2048,
                &(0..200)
                    .map(|i| format!(r#"<mask id="k{i}"><rect width="2048" height="2048" fill="white" mask="url(#k{})"/></mask>"#, i + 1))
                    .collect::<String>(),
            ) .replace("</svg>", r#"<rect width="2048" height="2048" mask="url(#k0)"/></svg>"#),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_svgs_are_refused_or_cheap_and_cpu_stays_bounded() {
    let origin: Origin = spawn_origin(Ipv4Addr::new(127, 0, 0, 2)).await;
    let client = sweep_client();
    let server = start_server(&client, None).await;
    let base = format!("http://{}", server.addr);
    let before = cpu_seconds(&server);
    let cases = costly_svgs();
    let probes = cases.iter().flat_map(|(name, text)| {
        let (base, origin) = (&base, &origin);
        FLAGS.iter().map(move |flag| {
            let body: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
            let origin_url = origin.url(&format!("/echo?type=image/svg%2Bxml&body={body}"));
            let encoded: String =
                url::form_urlencoded::byte_serialize(origin_url.as_bytes()).collect();
            Probe {
                url: format!("{base}/x.webp?url={encoded}{flag}"),
                accept: "*/*",
                label: format!("{name}{flag}"),
                judge: Box::new(move |status: StatusCode, ctype: &str, body: &[u8]| {
                    match status.as_u16() {
                        // Cheap enough at this output size: a real picture.
                        200 => decode_output(flag, ctype, body).map(|_| ()),
                        404 if *flag == "&badge" => Ok(()),
                        422 => Ok(()),
                        other => Err(format!("status {other}")),
                    }
                }),
            }
        })
    });
    let failures = run_probes(&client, probes).await;
    let used = cpu_seconds(&server) - before;
    eprintln!(
        "costly SVGs: {} × {} flags, {} failures, {used:.1} CPU-seconds",
        cases.len(),
        FLAGS.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Each of the first alone burned ~23 CPU-seconds at 2048² before it was priced.
    assert!(used < 30.0, "{used:.1} CPU-seconds for the whole batch");
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
