//! Video thumbnails (`thumbnail`, Misskey's `videoThumbnailGenerator`) and store-mode
//! posters: every corpus video gives its still or a clean 4xx; frames are checked against
//! FFmpeg's own decode of the same time (and against its first frame, which a wrong time
//! would give); the bytes the origin served are counted; origins without ranges, the read
//! limit, images and fallback; posters with `t`, output negotiation and validators. The S3
//! side (bytes pulled from a real S3 server) is in `store_s3.rs`.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::header;
use reqwest::StatusCode;

use crate::helpers::{made_dir, spawn_app_and_origin, Origin, TestApp};

/// A thumbnail request for `url` as Misskey writes it.
async fn thumbnail(app: &TestApp, url: &str, extra: &str) -> reqwest::Response {
    app.get(&app.proxy_url("thumbnail.webp", url, &format!("&thumbnail=1{extra}")))
        .await
}

/// The RGB pixels and size of a WebP, decoded by image-webp (not the encoder's library).
fn rgb_of_webp(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut d = image_webp::WebPDecoder::new(Cursor::new(bytes)).expect("output is WebP");
    assert!(!d.is_animated(), "a still");
    let (w, h) = d.dimensions();
    let mut buf = vec![0u8; d.output_buffer_size().expect("size")];
    d.read_image(&mut buf).expect("decodes");
    if d.has_alpha() {
        buf = buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
    }
    (w, h, buf)
}

/// A successful thumbnail: WebP, immutable for a year, decoded.
async fn still_of(app: &TestApp, url: &str) -> (u32, u32, Vec<u8>) {
    let r = thumbnail(app, url, "").await;
    assert_eq!(r.status(), StatusCode::OK, "{url}");
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/webp", "{url}");
    let cache = r.headers()[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cache.contains("immutable"), "{url}: {cache}");
    rgb_of_webp(&r.bytes().await.unwrap())
}

fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin"])
        .args(args)
        .output()
        .expect("ffmpeg runs (./dev tools installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A property of the video stream (`stream=…`) or of the file (`format=…`), by ffprobe.
fn probe(path: &Path, entry: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args([entry, "-of", "default=nw=1:nk=1"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// When the frame shown at 5 % of the video's duration starts, in seconds. (`ffmpeg -ss t`
/// gives the first frame starting at or after `t`: the next one when `t` falls inside a
/// frame; the frame on screen at `t` is the one asked for here.)
fn five_percent_frame(path: &Path) -> f64 {
    // WebM gives no stream duration: the file's, then.
    let duration: f64 = probe(path, "stream=duration")
        .parse()
        .or_else(|_| probe(path, "format=duration").parse())
        .expect("a duration");
    let rate = probe(path, "stream=r_frame_rate");
    let (n, d) = rate.split_once('/').expect("a rate");
    let fps = n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap();
    // Just before the frame's start: ffmpeg's comparison then cannot round past it.
    ((duration * 0.05 * fps).floor() / fps - 0.001).max(0.0)
}

/// FFmpeg's frame at `seconds` (rotation applied, as players do), scaled to `w`×`h`, RGB.
fn ffmpeg_frame(path: &Path, seconds: f64, w: u32, h: u32) -> Vec<u8> {
    let (t, scale) = (
        format!("{seconds:.3}"),
        format!("scale={w}:{h}:flags=lanczos"),
    );
    let input = path.to_str().unwrap();
    let args = ["-ss", &t, "-i", input, "-frames:v", "1", "-vf", &scale];
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]);
    let rgb = ffmpeg(&all);
    assert_eq!(rgb.len(), (w * h * 3) as usize, "ffmpeg's frame size");
    rgb
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
}

/// A video made once per test run with ffmpeg (`args`: inputs, filters, codec options),
/// written under a temporary name and renamed, so parallel tests never see half a file.
fn made(name: &str, args: &[&str]) -> PathBuf {
    // One maker at a time: two tests may want the same file.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let path = made_dir().join(name);
    if path.exists() {
        return path;
    }
    // The name ends as the target does: ffmpeg picks the container by it.
    let partial = made_dir().join(format!(".partial-{}-{name}", std::process::id()));
    let mut all: Vec<&str> = vec!["-y"];
    all.extend(args);
    all.push(partial.to_str().unwrap());
    ffmpeg(&all);
    std::fs::rename(&partial, &path).expect("rename");
    path
}

/// 10 s at 25 fps, a keyframe every 2 s, B-frames: black for its first 0.3 s, then
/// FFmpeg's moving test pattern. 5 % is 0.5 s: twelve pictures after a black keyframe.
fn late_picture_video() -> PathBuf {
    made(
        "late-picture.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x240:r=25:d=10",
            "-vf",
            "drawbox=c=black:t=fill:enable='lt(t,0.3)'",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
        ],
    )
}

/// Bytes the origin sent for `path`: the ranges asked for, a request without one whole.
fn served(origin: &Origin, path: &str, total: u64) -> u64 {
    origin
        .hits()
        .iter()
        .filter(|h| h.target.starts_with(path))
        .map(
            |h| match h.range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
                Some(r) => {
                    let (a, b) = r.split_once('-').unwrap();
                    let a: u64 = a.parse().unwrap();
                    let b: u64 = b.parse().unwrap_or(total - 1).min(total - 1);
                    b + 1 - a
                }
                None => total,
            },
        )
        .sum()
}

#[tokio::test]
async fn every_corpus_video_gives_its_still_or_a_clean_4xx() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    let still = |w, h| Ok::<(u32, u32), u16>((w, h));
    let cases = [
        ("h264_640x360_2s.mp4", still(498, 280)),
        ("h264_1920x1080_1s.mp4", still(498, 280)),
        ("h264_4096x2160_1s_solid.mp4", still(498, 263)),
        ("h264_320x240_3s_moov_at_end.mp4", still(320, 240)),
        ("h264_aac_320x240_3s_faststart.mp4", still(320, 240)),
        ("h264_320x240_rotate90_metadata.mp4", still(240, 320)),
        ("h264_black_first_second.mp4", still(320, 240)),
        ("h264_single_frame.mp4", still(320, 240)),
        ("av1_320x240_3s.mp4", still(320, 240)),
        ("av1_svt_320x240_3s.webm", still(320, 240)),
        ("vp9_opus_320x240_3s.webm", still(320, 240)),
        ("vp9_alpha_320x240_2s.webm", still(320, 240)),
        ("vp8_320x240_3s.webm", still(320, 240)),
        // Decoders this build does not have: refused from the index, before any sample.
        ("h264_high10_320x240.mp4", Err(422)),
        ("h264_yuv444_odd_321x241.mp4", Err(422)),
        ("hevc_320x240_3s.mp4", Err(422)),
        ("hevc_main10_320x240.mov", Err(422)),
        ("prores_proxy_320x240_1s.mov", Err(422)),
        // No video track.
        ("audio_only_aac.m4a", Err(422)),
        ("audio_only_aac_named.mp4", Err(422)),
        // Not a container we read (AVI): not convertible.
        ("mjpeg_320x240_3s.avi", Err(404)),
    ];
    for (name, want) in cases {
        let url = origin.url(&format!("/corpus/video/{name}?ranges"));
        let r = thumbnail(&app, &url, "").await;
        let status = r.status();
        let cache = r.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .to_owned();
        let got = if status == StatusCode::OK {
            assert_eq!(r.headers()[header::CONTENT_TYPE], "image/webp", "{name}");
            assert!(cache.contains("immutable"), "{name}: {cache}");
            let (w, h, _) = rgb_of_webp(&r.bytes().await.unwrap());
            Ok((w, h))
        } else {
            assert_eq!(
                cache, "max-age=300",
                "{name}: a refusal is kept five minutes"
            );
            Err(status.as_u16())
        };
        assert_eq!(got, want, "{name}");
    }
}

#[tokio::test]
async fn the_still_is_ffmpegs_frame_at_five_percent_not_the_first() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    let late = late_picture_video();
    let corpus = |name: &str| crate::helpers::corpus(&format!("video/{name}"));
    let cases = [
        (late.clone(), origin.url("/made/late-picture.mp4?ranges")),
        (
            corpus("h264_640x360_2s.mp4"),
            origin.url("/corpus/video/h264_640x360_2s.mp4?ranges"),
        ),
        (
            corpus("h264_320x240_rotate90_metadata.mp4"),
            origin.url("/corpus/video/h264_320x240_rotate90_metadata.mp4?ranges"),
        ),
        (
            corpus("h264_320x240_3s_moov_at_end.mp4"),
            origin.url("/corpus/video/h264_320x240_3s_moov_at_end.mp4?ranges"),
        ),
        (
            corpus("h264_1920x1080_1s.mp4"),
            origin.url("/corpus/video/h264_1920x1080_1s.mp4?ranges"),
        ),
        (
            corpus("av1_320x240_3s.mp4"),
            origin.url("/corpus/video/av1_320x240_3s.mp4?ranges"),
        ),
        (
            corpus("vp9_opus_320x240_3s.webm"),
            origin.url("/corpus/video/vp9_opus_320x240_3s.webm?ranges"),
        ),
        (
            corpus("av1_svt_320x240_3s.webm"),
            origin.url("/corpus/video/av1_svt_320x240_3s.webm?ranges"),
        ),
    ];
    for (path, url) in &cases {
        let (w, h, ours) = still_of(&app, url).await;
        let at = five_percent_frame(path);
        let theirs = ffmpeg_frame(path, at, w, h);
        let same = psnr(&ours, &theirs);
        eprintln!(
            "{}: {w}×{h}, PSNR {same:.1} dB against ffmpeg at {at:.3} s",
            path.display()
        );
        assert!(same > 28.0, "{}: PSNR {same:.1} dB", path.display());
    }
    // VP8: its key frame at or before 5 % (only key frames are decoded), here the first.
    let vp8 = corpus("vp8_320x240_3s.webm");
    let (w, h, ours) = still_of(
        &app,
        &origin.url("/corpus/video/vp8_320x240_3s.webm?ranges"),
    )
    .await;
    let same = psnr(&ours, &ffmpeg_frame(&vp8, 0.0, w, h));
    let later = psnr(&ours, &ffmpeg_frame(&vp8, five_percent_frame(&vp8), w, h));
    eprintln!("VP8 key frame: PSNR {same:.1} dB; against the frame at 5 %: {later:.1} dB");
    // The WebP decoder's YUV conversion is not FFmpeg's: a dB or two lower than the others.
    assert!(
        same > 25.0 && same > later + 6.0,
        "{same:.1} / {later:.1} dB"
    );
    // The first frame of the late picture is black; the still is the pattern at 0.5 s.
    let (w, h, ours) = still_of(&app, &cases[0].1).await;
    let first = ffmpeg_frame(&late, 0.0, w, h);
    let apart = psnr(&ours, &first);
    assert!(
        apart < 15.0,
        "the still looks like the first frame: {apart:.1} dB"
    );
}

/// A 720p video of about 20 MB, a keyframe every second, with its index at the start or
/// the end.
pub fn large_video(faststart: bool) -> PathBuf {
    let name = if faststart {
        "large-faststart.mp4"
    } else {
        "large-moov-at-end.mp4"
    };
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=1280x720:r=30:d=20",
        "-vf",
        "noise=alls=12:allf=t",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
        "-b:v",
        "8M",
        "-pix_fmt",
        "yuv420p",
    ];
    if faststart {
        args.extend(["-movflags", "+faststart"]);
    }
    made(name, &args)
}

#[tokio::test]
async fn a_large_video_is_thumbnailed_from_a_small_part_of_it() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    for faststart in [true, false] {
        let path = large_video(faststart);
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let total = std::fs::metadata(&path).unwrap().len();
        assert!(
            total > 12 << 20,
            "{name}: {total} bytes, meant to be ~20 MB"
        );
        let at = format!("/made/{name}");
        let (w, h, ours) = still_of(&app, &origin.url(&format!("{at}?ranges"))).await;
        assert_eq!((w, h), (498, 280), "{name}");
        let theirs = ffmpeg_frame(&path, five_percent_frame(&path), w, h);
        assert!(psnr(&ours, &theirs) > 25.0, "{name}");
        let read = served(&origin, &at, total);
        eprintln!("{name}: {read} of {total} bytes read");
        assert!(read < total / 4, "{name}: read {read} of {total} bytes");
    }
}

/// A 640×360 VP9 WebM of about 5 MB, 10 s, a keyframe every 2 s, its cues after the media
/// (where FFmpeg's muxer puts them).
fn large_webm() -> PathBuf {
    made(
        "large.webm",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=640x360:r=30:d=10",
            "-vf",
            "noise=alls=10:allf=t",
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "4M",
            "-g",
            "60",
        ],
    )
}

#[tokio::test]
async fn a_webm_is_thumbnailed_from_its_cues_and_one_cluster() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    let path = large_webm();
    let total = std::fs::metadata(&path).unwrap().len();
    assert!(total > 3 << 20, "{total} bytes, meant to be ~5 MB");
    let (w, h, ours) = still_of(&app, &origin.url("/made/large.webm?ranges")).await;
    assert_eq!((w, h), (498, 280));
    let theirs = ffmpeg_frame(&path, five_percent_frame(&path), w, h);
    let same = psnr(&ours, &theirs);
    assert!(same > 25.0, "PSNR {same:.1} dB");
    let read = served(&origin, "/made/large.webm", total);
    eprintln!("large.webm: {read} of {total} bytes read, PSNR {same:.1} dB");
    assert!(read < total / 4, "read {read} of {total} bytes");
}

#[tokio::test]
async fn without_ranges_a_video_is_read_forward_only_as_far_as_its_limit() {
    let (app, origin) = spawn_app_and_origin(|s| s.limits.max_video_read = 2 << 20).await;
    // Its index first: the head of the body is enough.
    let (w, h, _) = still_of(
        &app,
        &origin.url("/corpus/video/h264_aac_320x240_3s_faststart.mp4"),
    )
    .await;
    assert_eq!((w, h), (320, 240));
    // Its index at the end of 20 MB that cannot be skipped: over the limit, 413.
    large_video(false);
    let r = thumbnail(&app, &origin.url("/made/large-moov-at-end.mp4"), "").await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The same file with ranges needs far less than the limit.
    let r = thumbnail(&app, &origin.url("/made/large-moov-at-end.mp4?ranges"), "").await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_bytes_read_for_one_still_are_limited_by_a_setting() {
    let (app, origin) = spawn_app_and_origin(|s| s.limits.max_video_read = 100 << 10).await;
    large_video(true);
    let r = thumbnail(&app, &origin.url("/made/large-faststart.mp4?ranges"), "").await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A small video still fits.
    let r = thumbnail(
        &app,
        &origin.url("/corpus/video/h264_640x360_2s.mp4?ranges"),
        "",
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn thumbnail_of_an_image_is_static_and_refusals_take_the_fallback() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    for ranges in ["", "?ranges"] {
        let url = origin.url(&format!(
            "/corpus/jpeg/exif-orientation-recurser/Landscape_6.jpg{ranges}"
        ));
        let r = thumbnail(&app, &url, "").await;
        assert_eq!(r.status(), StatusCode::OK, "{ranges}");
        let thumb = rgb_of_webp(&r.bytes().await.unwrap());
        let r = app
            .get(&app.proxy_url("static.webp", &url, "&static"))
            .await;
        let fixed = rgb_of_webp(&r.bytes().await.unwrap());
        assert_eq!((thumb.0, thumb.1), (fixed.0, fixed.1), "{ranges}");
    }
    let url = origin.url("/corpus/video/hevc_320x240_3s.mp4?ranges");
    let r = thumbnail(&app, &url, "&fallback").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/png");
    assert_eq!(r.headers()[header::CACHE_CONTROL], "max-age=300");
}

#[tokio::test]
async fn store_posters_take_t_and_the_output_negotiation() {
    let s = crate::store::spawn_store_app(|_| {}).await;
    let corpus = |name: &str| crate::helpers::corpus_bytes(&format!("video/{name}"));
    s.put("clips/black.mp4", &corpus("h264_black_first_second.mp4"));
    s.put(
        "clips/turned.mp4",
        &corpus("h264_320x240_rotate90_metadata.mp4"),
    );
    s.put("clips/hevc.mp4", &corpus("hevc_320x240_3s.mp4"));
    let mean = |rgb: &[u8]| rgb.iter().map(|&b| f64::from(b)).sum::<f64>() / rgb.len() as f64;

    // Any size parameter: the poster, in the source family (a video's is JPEG) without an
    // Accept that asks for more.
    let r = s.get("clips/turned.mp4", "h=120", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let d = crate::store::decode(&r.body);
    assert_eq!((d.format, d.width, d.height), ("jpeg", 90, 120));
    let etag = r.header("etag").to_owned();
    assert!(!etag.is_empty());
    let r = s
        .get("clips/turned.mp4", "h=120", &[("if-none-match", &etag)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = s
        .get(
            "clips/turned.mp4",
            "h=120&format=auto",
            &[("accept", "image/webp")],
        )
        .await;
    assert_eq!(crate::store::decode(&r.body).format, "webp");
    assert!(r.header("vary").to_ascii_lowercase().contains("accept"));

    // `t`: black for its first second, a picture after it.
    for (t, dark) in [("0", true), ("0.5", true), ("2", false), ("80%", false)] {
        let r = s
            .get("clips/black.mp4", &format!("w=160&t={t}&format=png"), &[])
            .await;
        assert_eq!(r.status, StatusCode::OK, "t={t}");
        let d = crate::store::decode(&r.body);
        assert_eq!((d.width, d.height), (160, 120), "t={t}");
        assert_eq!(mean(&d.rgb) < 20.0, dark, "t={t}: mean {}", mean(&d.rgb));
    }
    // A poster of 2 s and of 0.5 s are different variants.
    let a = s.get("clips/black.mp4", "w=160&t=2", &[]).await;
    let b = s.get("clips/black.mp4", "w=160&t=0.5", &[]).await;
    assert_ne!(a.header("etag"), b.header("etag"));

    // What cannot be decoded: 422, kept five minutes; a bad `t`: 400.
    let r = s.get("clips/hevc.mp4", "w=160", &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = s.get("clips/black.mp4", "w=160&t=soon", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // No parameter: the video itself, as it is.
    let r = s.get("clips/black.mp4", "", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, corpus("h264_black_first_second.mp4"));
}

#[tokio::test]
async fn all_the_reads_of_one_video_share_one_origin_exchange_time() {
    // Each answer of this origin takes 300 ms; a thumbnail of a file with its index at the
    // end takes four reads (head, the index's header, the index, the frame): within
    // `timeouts.total` each, not all together.
    let (app, origin) = spawn_app_and_origin(|s| {
        s.timeouts.total = std::time::Duration::from_secs(1);
    })
    .await;
    large_video(false);
    let file = "/made/large-moov-at-end.mp4";
    let r = thumbnail(&app, &origin.url(&format!("{file}?ranges&delay=300")), "").await;
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let reads = origin
        .hits()
        .iter()
        .filter(|h| h.target.starts_with(file))
        .count();
    assert!(reads >= 3, "stopped after {reads} reads, at the time limit");
    // The same file from a prompt origin.
    let r = thumbnail(&app, &origin.url(&format!("{file}?ranges")), "").await;
    assert_eq!(r.status(), StatusCode::OK);
}
