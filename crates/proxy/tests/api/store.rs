//! The store mode against a local directory store: every parameter and its sizes, every
//! error with its status and caching, `Accept` negotiation, validators and 304, EXIF
//! orientation 1–8, CMYK, animation, odd keys, signing. Outputs are decoded independently of
//! the encoders that wrote them: zune-jpeg, zune-png, image-webp, the gif crate's decoder,
//! avif-parse (container and AV1 sequence header). The S3 side is in `store_s3.rs`.

use std::io::Cursor;
use std::path::Path;
use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;

use crate::helpers::{corpus_bytes, spawn_app_with, TestApp};
use media_proxy::config::StoreKind;
use media_proxy::Settings;

pub struct StoreApp {
    pub app: TestApp,
    pub root: tempfile::TempDir,
}

impl StoreApp {
    /// Writes an original into the store.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let path = self.root.path().join(key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, bytes).unwrap();
    }

    /// `http://app/<path>?<query>`; `path` as it goes on the wire (already encoded).
    pub fn url(&self, path: &str, query: &str) -> String {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        format!("http://{}/{path}{q}", self.app.addr)
    }

    pub async fn get(&self, path: &str, query: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = self.app.client.get(self.url(path, query));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        Answer {
            status: r.status(),
            headers: r.headers().clone(),
            body: r.bytes().await.unwrap().to_vec(),
        }
    }
}

/// A response, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or(""))
    }
}

/// The app with a local directory store in a fresh temporary directory.
pub async fn spawn_store_app(configure: impl FnOnce(&mut Settings)) -> StoreApp {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_owned();
    let app = spawn_app_with(move |s| {
        s.store.kind = StoreKind::Local;
        s.store.root = dir;
        configure(s);
    })
    .await;
    StoreApp { app, root }
}

/// What an output decodes to, by its own decoder.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    /// The first frame as RGB (AVIF: empty, only its headers are read).
    pub rgb: Vec<u8>,
}

pub fn decode(bytes: &[u8]) -> Decoded {
    match bytes {
        [0xFF, 0xD8, ..] => {
            let options = zune_core::options::DecoderOptions::default()
                .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB);
            let mut d = zune_jpeg::JpegDecoder::new_with_options(
                zune_core::bytestream::ZCursor::new(bytes),
                options,
            );
            let rgb = d.decode().expect("output JPEG decodes");
            let info = d.info().expect("JPEG info");
            Decoded {
                format: "jpeg",
                width: u32::from(info.width),
                height: u32::from(info.height),
                frames: 1,
                rgb,
            }
        }
        [0x89, b'P', b'N', b'G', ..] => {
            let mut d = zune_png::PngDecoder::new(zune_core::bytestream::ZCursor::new(bytes));
            let raw = d.decode_raw().expect("output PNG decodes");
            let (w, h) = d.dimensions().expect("PNG dimensions");
            let channels = raw.len() / (w * h);
            let rgb = raw
                .chunks_exact(channels)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect();
            Decoded {
                format: "png",
                width: w as u32,
                height: h as u32,
                frames: 1,
                rgb,
            }
        }
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => {
            let mut d = image_webp::WebPDecoder::new(Cursor::new(bytes)).expect("output WebP");
            let (width, height) = d.dimensions();
            let frames = if d.is_animated() { d.num_frames() } else { 1 };
            let mut buf = vec![0u8; d.output_buffer_size().expect("size")];
            d.read_image(&mut buf).expect("WebP decodes");
            let channels = buf.len() / (width as usize * height as usize);
            let rgb = buf
                .chunks_exact(channels)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect();
            Decoded {
                format: "webp",
                width,
                height,
                frames,
                rgb,
            }
        }
        [b'G', b'I', b'F', ..] => {
            let mut options = gif::DecodeOptions::new();
            options.set_color_output(gif::ColorOutput::RGBA);
            let mut d = options.read_info(Cursor::new(bytes)).expect("output GIF");
            let (width, height) = (u32::from(d.width()), u32::from(d.height()));
            let mut frames = 0;
            let mut rgb = Vec::new();
            while let Some(frame) = d.read_next_frame().expect("GIF frame decodes") {
                if frames == 0 && u32::from(frame.width) == width {
                    rgb = frame
                        .buffer
                        .chunks_exact(4)
                        .flat_map(|p| [p[0], p[1], p[2]])
                        .collect();
                }
                frames += 1;
            }
            Decoded {
                format: "gif",
                width,
                height,
                frames,
                rgb,
            }
        }
        _ if bytes.get(4..8) == Some(b"ftyp") => {
            let (width, height, frames) = crate::helpers::avif_info(bytes).expect("output AVIF");
            Decoded {
                format: "avif",
                width,
                height,
                frames,
                rgb: Vec::new(),
            }
        }
        _ => panic!("not an image: {:?}", bytes.get(..16)),
    }
}

/// A `w`×`h` JPEG: green in a centred square of side `h`, red on both sides (so a centred
/// cover crop is all green).
fn bands_jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, _| {
        let side = (w - h) / 2;
        if x >= side && x < side + h {
            image::Rgb([0, 200, 0])
        } else {
            image::Rgb([220, 0, 0])
        }
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)
        .encode_image(&img)
        .unwrap();
    out
}

fn rgba_png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([x as u8, y as u8, 90, 160]));
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn mean_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "same size");
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.len() as f64
}

fn pixel(d: &Decoded, x: u32, y: u32) -> [u8; 3] {
    let i = ((y * d.width + x) * 3) as usize;
    [d.rgb[i], d.rgb[i + 1], d.rgb[i + 2]]
}

/// Request headers, name and value.
type Headers<'a> = &'a [(&'a str, &'a str)];

const NO_ACCEPT: Headers = &[("accept", "*/*")];
const CHROME: Headers = &[(
    "accept",
    "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
)];

#[tokio::test]
async fn originals_are_served_as_they_are_with_validators() {
    let s = spawn_store_app(|_| {}).await;
    let jpeg = bands_jpeg(300, 100);
    s.put("photo.jpg", &jpeg);
    s.put("no-extension", &rgba_png(4, 4));
    s.put("notes.txt", b"just some text, not an image");

    let r = s.get("photo.jpg", "", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, jpeg, "the original, byte for byte");
    assert_eq!(r.header("content-type"), "image/jpeg");
    assert_eq!(r.header("content-length"), jpeg.len().to_string());
    assert_eq!(r.header("cache-control"), "public, max-age=86400");
    assert!(
        r.header("etag").starts_with('"'),
        "strong ETag: {}",
        r.header("etag")
    );
    assert!(!r.header("last-modified").is_empty());
    assert_eq!(r.header("vary"), "", "nothing negotiated");

    let head = s
        .app
        .client
        .head(s.url("photo.jpg", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()[header::ETAG], r.header("etag"));
    assert_eq!(head.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert!(head.bytes().await.unwrap().is_empty());

    assert_eq!(
        r.header("accept-ranges"),
        "none",
        "ranges are not served from the store"
    );
    let ranged = s.get("photo.jpg", "", &[("range", "bytes=0-9")]).await;
    assert_eq!(
        ranged.status,
        StatusCode::OK,
        "a Range is answered with the whole body"
    );
    assert_eq!(ranged.body, jpeg);

    // HEAD of a variant: the headers of the GET, no body.
    let get = s.get("photo.jpg", "w=100", CHROME).await;
    let head = s
        .app
        .client
        .head(s.url("photo.jpg", "w=100"))
        .header("accept", CHROME[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    for name in [
        "content-type",
        "content-length",
        "etag",
        "vary",
        "cache-control",
    ] {
        assert_eq!(
            head.headers()[name].to_str().unwrap(),
            get.header(name),
            "HEAD {name}"
        );
    }
    assert!(head.bytes().await.unwrap().is_empty());

    let r = s.get("no-extension", "", &[]).await;
    assert_eq!(r.header("content-type"), "image/png", "type from the bytes");

    let r = s.get("notes.txt", "", &[]).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "not an image type we serve"
    );
    let r = s.get("notes.txt", "w=10", &[]).await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "exists, but no image"
    );
    let video = corpus_bytes("video/h264_320x240_3s_moov_at_end.mp4");
    s.put("clip.mp4", &video);
    let r = s.get("clip.mp4", "", &[]).await;
    assert_eq!(
        (r.status, r.body == video),
        (StatusCode::OK, true),
        "a video as it is"
    );
    assert_eq!(r.header("content-type"), "video/mp4");
    // A transform gives its poster (tests/api/video.rs has the rest).
    let r = s.get("clip.mp4", "w=10", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "a video's poster");
    assert_eq!((decode(&r.body).width, decode(&r.body).height), (10, 8));

    let r = s.get("missing.jpg", "w=100", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("cache-control"), "public, max-age=60");
}

#[tokio::test]
async fn every_size_parameter_gives_its_size() {
    let s = spawn_store_app(|_| {}).await;
    s.put("wide.jpg", &bands_jpeg(1000, 500));
    let cases: &[(&str, (u32, u32))] = &[
        ("d=100x100", (100, 100)),
        ("d=100", (100, 50)),
        ("d=100x", (100, 50)),
        ("d=x100", (200, 100)),
        ("w=300", (300, 150)),
        ("h=100", (200, 100)),
        ("w=300&h=300", (300, 150)),
        ("w=300&h=300&fit=inside", (300, 150)),
        ("w=300&h=300&fit=cover", (300, 300)),
        ("w=300&h=300&fit=fill", (300, 300)),
        ("w=300&h=300&fit=contain", (300, 300)),
        // Never enlarged unless asked: the requested aspect at the largest size possible.
        ("w=2000", (1000, 500)),
        ("d=2000x2000", (500, 500)),
        ("w=2000&enlarge=1", (2000, 1000)),
        ("d=2000x2000&enlarge=1", (2000, 2000)),
        ("static", (1000, 500)),
        ("q=40", (1000, 500)),
    ];
    for (query, size) in cases {
        let r = s.get("wide.jpg", query, NO_ACCEPT).await;
        assert_eq!(r.status, StatusCode::OK, "{query}");
        let d = decode(&r.body);
        assert_eq!(d.format, "jpeg", "{query}: a JPEG stays JPEG");
        assert_eq!((d.width, d.height), *size, "{query}");
        assert_eq!(r.header("content-type"), "image/jpeg", "{query}");
    }
    let formats = [
        ("w=100&format=png", "png", "image/png"),
        ("w=100&format=webp", "webp", "image/webp"),
        ("w=100&format=avif", "avif", "image/avif"),
        ("w=100&format=gif", "gif", "image/gif"),
        ("w=100&format=jpeg", "jpeg", "image/jpeg"),
        ("w=100&format=jpg", "jpeg", "image/jpeg"),
        ("w=100&format=original", "jpeg", "image/jpeg"),
    ];
    for (query, format, mime) in formats {
        let r = s.get("wide.jpg", query, CHROME).await;
        assert_eq!(r.status, StatusCode::OK, "{query}");
        let d = decode(&r.body);
        assert_eq!((d.format, d.width, d.height), (format, 100, 50), "{query}");
        assert_eq!(r.header("content-type"), mime, "{query}");
        assert_eq!(r.header("vary"), "", "{query}: explicit format, no Vary");
    }
    // Quality changes the bytes.
    let lo = s.get("wide.jpg", "w=500&q=20", NO_ACCEPT).await;
    let hi = s.get("wide.jpg", "w=500&q=95", NO_ACCEPT).await;
    assert!(lo.body.len() < hi.body.len(), "q=20 is smaller than q=95");
}

#[tokio::test]
async fn cover_crops_the_centre_and_contain_pads_with_the_background() {
    let s = spawn_store_app(|_| {}).await;
    s.put("bands.jpg", &bands_jpeg(1000, 500));
    let d = decode(&s.get("bands.jpg", "d=100x100&format=png", &[]).await.body);
    for (x, y) in [(2, 2), (97, 2), (50, 50), (2, 97), (97, 97)] {
        let [r, g, _] = pixel(&d, x, y);
        assert!(
            g > 150 && r < 60,
            "cover keeps the green centre: ({x},{y}) = {r},{g}"
        );
    }
    let d = decode(
        &s.get(
            "bands.jpg",
            "w=300&h=300&fit=contain&bg=0000ff&format=png",
            &[],
        )
        .await
        .body,
    );
    assert_eq!((d.width, d.height), (300, 300));
    assert_eq!(pixel(&d, 150, 10), [0, 0, 255], "padding above");
    // A JPEG decoded at a reduced scale, padded: the whole-picture box must map inside the
    // decode (found by the corpus sweep: 300×225 at 2/8 is 75×57, and 225 × 57/225 > 57).
    s.put("odd.jpg", &bands_jpeg(300, 225));
    let r = s
        .get("odd.jpg", "d=64x64&fit=contain&format=png", &[])
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!((decode(&r.body).width, decode(&r.body).height), (64, 64));
    assert_eq!(pixel(&d, 150, 290), [0, 0, 255], "padding below");
    let [r, g, b] = pixel(&d, 5, 150);
    assert!(
        r > 180 && g < 60 && b < 60,
        "the image itself (red side): {r},{g},{b}"
    );
    // Fill stretches: the red sides stay visible in a square.
    let d = decode(
        &s.get("bands.jpg", "d=100x100&fit=fill&format=png", &[])
            .await
            .body,
    );
    let [r, _, _] = pixel(&d, 2, 50);
    assert!(r > 180, "fill keeps the red side: {r}");
}

#[tokio::test]
async fn format_auto_follows_accept_and_says_vary() {
    let s = spawn_store_app(|_| {}).await;
    s.put("p.jpg", &bands_jpeg(400, 200));
    s.put("a.png", &rgba_png(200, 100));
    let cases: &[(&str, Headers, &str)] = &[
        ("p.jpg", CHROME, "image/avif"),
        ("p.jpg", &[("accept", "image/webp,*/*")], "image/webp"),
        ("p.jpg", NO_ACCEPT, "image/jpeg"),
        ("p.jpg", &[], "image/jpeg"),
        (
            "p.jpg",
            &[("accept", "image/avif;q=0,image/webp")],
            "image/webp",
        ),
        ("a.png", NO_ACCEPT, "image/png"),
        ("a.png", &[("accept", "image/webp")], "image/webp"),
    ];
    for (key, accept, mime) in cases {
        let r = s.get(key, "w=100", accept).await;
        assert_eq!(r.status, StatusCode::OK, "{key} {accept:?}");
        assert_eq!(r.header("content-type"), *mime, "{key} {accept:?}");
        assert_eq!(r.header("vary"), "Accept", "{key} {accept:?}");
        let d = decode(&r.body);
        assert_eq!(format!("image/{}", d.format), *mime);
        assert_eq!(d.width, 100);
    }
    // Alpha survives into formats that have it.
    let r = s.get("a.png", "w=100&format=png", &[]).await;
    let mut png = zune_png::PngDecoder::new(zune_core::bytestream::ZCursor::new(&r.body[..]));
    let raw = png.decode_raw().unwrap();
    assert_eq!(raw.len(), 100 * 50 * 4, "RGBA kept");
    assert!((150..=170).contains(&raw[3]), "alpha 160 kept: {}", raw[3]);
}

#[tokio::test]
async fn avif_over_the_cutoff_is_webp_and_says_so() {
    let s = spawn_store_app(|s| s.resize.avif_max_pixels = 10_000).await;
    s.put("p.jpg", &bands_jpeg(400, 200));
    let r = s.get("p.jpg", "w=100", CHROME).await;
    assert_eq!(r.header("content-type"), "image/avif", "5000 pixels: AVIF");
    assert_eq!(r.header("x-image-fallback"), "");
    let r = s.get("p.jpg", "w=200", CHROME).await;
    assert_eq!(r.header("content-type"), "image/webp", "20000 pixels: WebP");
    assert!(
        r.header("x-image-fallback").contains("avif"),
        "{:?}",
        r.headers
    );
    assert_eq!(decode(&r.body).format, "webp");
}

#[tokio::test]
async fn validators_answer_304_and_follow_the_original() {
    let s = spawn_store_app(|_| {}).await;
    s.put("p.jpg", &bands_jpeg(400, 200));
    let first = s.get("p.jpg", "w=100", CHROME).await;
    let etag = first.header("etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let last_modified = first.header("last-modified").to_owned();

    let r = s
        .get("p.jpg", "w=100", &[CHROME[0], ("if-none-match", &etag)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), etag);
    assert_eq!(r.header("vary"), "Accept");
    assert_eq!(r.header("cache-control"), "public, max-age=86400");
    let weak = format!("W/{etag}");
    let r = s
        .get("p.jpg", "w=100", &[CHROME[0], ("if-none-match", &weak)])
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_MODIFIED,
        "weak comparison for GET"
    );
    let list = format!("\"nope\", {etag}");
    let r = s
        .get("p.jpg", "w=100", &[CHROME[0], ("if-none-match", &list)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED, "a list");

    // Another variant has another ETag: the same If-None-Match does not match it.
    for (query, accept) in [
        ("w=100", NO_ACCEPT),
        ("w=101", CHROME),
        ("w=100&q=50", CHROME),
    ] {
        let r = s
            .get("p.jpg", query, &[accept[0], ("if-none-match", &etag)])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{query} {accept:?}");
        assert_ne!(r.header("etag"), etag, "{query} {accept:?}");
    }
    // The same variant spelled differently is the same variant.
    let r = s.get("p.jpg", "w=100&format=auto", CHROME).await;
    assert_eq!(r.header("etag"), etag);

    let r = s
        .get(
            "p.jpg",
            "w=100",
            &[CHROME[0], ("if-modified-since", &last_modified)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED, "If-Modified-Since");
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(86_400));
    let r = s
        .get("p.jpg", "w=100", &[CHROME[0], ("if-modified-since", &past)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "modified since yesterday");
    let r = s.get("p.jpg", "", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::OK, "the original has its own ETag");
    let original_etag = r.header("etag").to_owned();
    let r = s
        .get("p.jpg", "", &[("if-none-match", &original_etag)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED, "original 304");

    // A changed original never matches an old validator.
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.put("p.jpg", &bands_jpeg(402, 200));
    let r = s
        .get("p.jpg", "w=100", &[CHROME[0], ("if-none-match", &etag)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "changed original");
    assert_ne!(r.header("etag"), etag);
    let r = s
        .get("p.jpg", "", &[("if-none-match", &original_etag)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "changed original, as is");
}

#[tokio::test]
async fn exif_orientations_1_to_8_display_the_same_picture() {
    let s = spawn_store_app(|_| {}).await;
    for kind in ["Landscape", "Portrait"] {
        for n in 0..=8 {
            let name = format!("{kind}_{n}.jpg");
            let rel = format!("jpeg/exif-orientation-recurser/{name}");
            s.put(&name, &corpus_bytes(&rel));
        }
    }
    // Inside (resized before orienting) and cover (cropped after orienting).
    for (kind, query, size) in [
        ("Landscape", "w=300&format=png", (300, 200)),
        ("Portrait", "w=300&format=png", (300, 450)),
        ("Landscape", "d=120x120&format=png", (120, 120)),
        ("Portrait", "d=160x90&format=png", (160, 90)),
    ] {
        let reference = decode(&s.get(&format!("{kind}_0.jpg"), query, &[]).await.body);
        assert_eq!(
            (reference.width, reference.height),
            size,
            "{kind}_0 {query}"
        );
        for n in 1..=8 {
            let key = format!("{kind}_{n}.jpg");
            let d = decode(&s.get(&key, query, &[]).await.body);
            assert_eq!((d.width, d.height), size, "{key} {query}");
            let diff = mean_diff(&d.rgb, &reference.rgb);
            assert!(
                diff < 8.0,
                "{key} {query}: same picture once oriented ({diff:.1})"
            );
        }
    }
}

#[tokio::test]
async fn outputs_carry_no_metadata_and_no_gps() {
    let s = spawn_store_app(|_| {}).await;
    // EXIF with GPS tags and an orientation.
    let original = corpus_bytes("jpeg/exif-orientation-recurser/Landscape_7.jpg");
    assert!(
        original.windows(3).any(|w| w == b"GPS"),
        "the source has GPS data"
    );
    s.put("gps.jpg", &original);
    for format in ["jpeg", "png", "webp", "avif", "gif"] {
        let r = s
            .get("gps.jpg", &format!("w=300&format={format}"), &[])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{format}");
        for marker in [
            &b"Exif"[..],
            b"GPS",
            b"eXIf",
            b"iCCP",
            b"ICC_PROFILE",
            b"XMP",
            b"<x:xmpmeta",
        ] {
            assert!(
                !r.body.windows(marker.len()).any(|w| w == marker),
                "{format} output carries {}",
                String::from_utf8_lossy(marker)
            );
        }
    }
}

#[tokio::test]
async fn cmyk_jpegs_are_converted_to_rgb() {
    let s = spawn_store_app(|_| {}).await;
    for rel in [
        "jpeg/jpeg-decoder-reftest/mozilla/jpg-cmyk-2.jpg",
        "jpeg/pillow/pil_sample_cmyk.jpg",
    ] {
        let original = corpus_bytes(rel);
        s.put("cmyk.jpg", &original);
        let r = s.get("cmyk.jpg", "format=png", &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{rel}");
        let ours = decode(&r.body);
        // zune-jpeg's own CMYK → RGB conversion of the same file, at the same size.
        let theirs = decode(&original);
        assert_eq!((ours.width, ours.height), (theirs.width, theirs.height));
        let diff = mean_diff(&ours.rgb, &theirs.rgb);
        assert!(
            diff < 10.0,
            "{rel}: colours as another decoder sees them ({diff:.1})"
        );
    }
}

#[tokio::test]
async fn animations_stay_animated_unless_static() {
    let s = spawn_store_app(|_| {}).await;
    let rel = "gif/generated/anim_transparent_dispose_bg_24_frames.gif";
    s.put("anim.gif", &corpus_bytes(rel));
    let cases: &[(&str, Headers, &str, u32)] = &[
        ("w=60", CHROME, "webp", 24),
        ("w=60", &[("accept", "image/webp")], "webp", 24),
        ("w=60", NO_ACCEPT, "gif", 24),
        ("w=60&format=original", CHROME, "gif", 24),
        ("w=60&static", NO_ACCEPT, "gif", 1),
        ("w=60&static", CHROME, "avif", 1),
        ("w=60&format=jpeg", CHROME, "jpeg", 1),
        ("w=60&format=png", CHROME, "png", 1),
        ("w=60&format=avif", CHROME, "avif", 24),
    ];
    for (query, accept, format, frames) in cases {
        let r = s.get("anim.gif", query, accept).await;
        assert_eq!(r.status, StatusCode::OK, "{query} {accept:?}");
        let d = decode(&r.body);
        assert_eq!(
            (d.format, d.width, d.height, d.frames),
            (*format, 60, 45, *frames),
            "{query} {accept:?}"
        );
    }
}

#[tokio::test]
async fn keys_with_spaces_and_non_ascii_characters() {
    let s = spawn_store_app(|_| {}).await;
    let png = rgba_png(40, 20);
    s.put("dir/with space/猫 photo+1.png", &png);
    for path in [
        "dir/with%20space/%E7%8C%AB%20photo%2B1.png",
        "dir/with%20space/%E7%8C%AB%20photo+1.png",
    ] {
        let r = s.get(path, "", &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.body, png, "{path}");
        let r = s.get(path, "w=20&format=png", &[]).await;
        assert_eq!(decode(&r.body).width, 20, "{path}");
    }
    let r = s.get("dir/with%20space/other.png", "", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_requests_are_400_with_a_reason_and_short_caching() {
    let s = spawn_store_app(|_| {}).await;
    s.put("p.jpg", &bands_jpeg(100, 50));
    std::fs::write(s.root.path().parent().unwrap().join("outside.jpg"), b"x").ok();
    let cases = [
        ("p.jpg", "d=0x10", "invalid `d`"),
        ("p.jpg", "w=5000", "invalid `w`"),
        ("p.jpg", "w=10&w=20", "more than once"),
        ("p.jpg", "width=10", "unknown parameter `width`"),
        ("p.jpg", "fit=cover", "needs a size"),
        ("p.jpg", "q=0", "invalid `q`"),
        ("p.jpg", "format=tiff", "invalid `format`"),
        ("p.jpg", "sig=00", "signing is not enabled"),
        ("a%5C..%5Coutside.jpg", "", "invalid key"),
        ("a%00.jpg", "", "invalid key"),
    ];
    for (path, query, reason) in cases {
        let r = s.get(path, query, &[]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}?{query}");
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.contains(reason),
            "{path}?{query}: `{body}` names `{reason}`"
        );
        assert!(!body.contains('\n'), "one line: {body}");
        assert_eq!(
            r.header("cache-control"),
            "public, max-age=60",
            "{path}?{query}"
        );
    }
    // HTTP clients remove dot segments before sending; a hostile one does not.
    for target in [
        "/../outside.jpg",
        "/a/%2E%2E/%2e%2e/outside.jpg",
        "/a/../../outside.jpg",
    ] {
        let raw = raw_get(&s, target).await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{target}: {raw}");
        assert!(raw.contains("invalid key"), "{target}: {raw}");
    }
}

/// `GET <target>` sent as written, over a plain TCP connection.
async fn raw_get(s: &StoreApp, target: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(s.app.addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn operator_limits_sizes_and_dimensions() {
    let s = spawn_store_app(|s| {
        s.resize.allowed_sizes = vec![100, 200];
        s.resize.max_output_dimension = 300;
    })
    .await;
    s.put("p.jpg", &bands_jpeg(400, 200));
    assert_eq!(s.get("p.jpg", "w=100", &[]).await.status, StatusCode::OK);
    assert_eq!(
        s.get("p.jpg", "d=200x100", &[]).await.status,
        StatusCode::OK
    );
    let r = s.get("p.jpg", "w=150", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&r.body).contains("allowed sizes"));
    let r = s.get("p.jpg", "h=301", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // No size given: the output is still capped.
    let d = decode(&s.get("p.jpg", "format=png", &[]).await.body);
    assert_eq!(
        (d.width, d.height),
        (300, 150),
        "capped at max_output_dimension"
    );

    let small = spawn_store_app(|s| s.store.max_size = 1000).await;
    small.put("big.jpg", &bands_jpeg(400, 200));
    let r = small.get("big.jpg", "w=100", &[]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// The signature as the docs tell users to make it: `openssl dgst -sha256 -hmac`.
pub fn openssl_sign(secret: &str, message: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().last().unwrap().to_owned()
}

#[tokio::test]
async fn signed_urls_with_key_rotation() {
    let (old, new) = ("old-secret-0123456789", "new-secret-0123456789");
    let s = spawn_store_app(|s| {
        s.resize.signing_keys = vec![old.into(), new.into()];
    })
    .await;
    s.put("猫.jpg", &bands_jpeg(400, 200));
    let path = "%E7%8C%AB.jpg";
    let r = s.get(path, "w=100", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&r.body).contains("missing `sig`"));
    assert_eq!(r.header("cache-control"), "public, max-age=60");
    for secret in [old, new] {
        // Sorted parameters, decoded key.
        let sig = openssl_sign(secret, "/猫.jpg?format=webp&w=100");
        let r = s
            .get(path, &format!("w=100&format=webp&sig={sig}"), &[])
            .await;
        assert_eq!(r.status, StatusCode::OK, "signed with {secret}");
        assert_eq!(
            r.header("cache-control"),
            "public, max-age=86400, immutable",
            "a signed URL never changes"
        );
        let r = s
            .get(path, &format!("w=200&format=webp&sig={sig}"), &[])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "tampered width");
    }
    let sig = openssl_sign("another-secret-0123456789", "/猫.jpg?w=100");
    assert_eq!(
        s.get(path, &format!("w=100&sig={sig}"), &[]).await.status,
        StatusCode::FORBIDDEN
    );
    // The original needs a signature too.
    assert_eq!(s.get(path, "", &[]).await.status, StatusCode::FORBIDDEN);
    let sig = openssl_sign(new, "/猫.jpg?");
    assert_eq!(
        s.get(path, &format!("sig={sig}"), &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn versioned_urls_are_immutable_and_svg_is_never_served_as_is() {
    let s = spawn_store_app(|_| {}).await;
    s.put("p.jpg", &bands_jpeg(400, 200));
    let r = s.get("p.jpg", "w=100&v=2024-06-01", &[]).await;
    assert_eq!(
        r.header("cache-control"),
        "public, max-age=86400, immutable"
    );
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="80" height="40"><script>alert(1)</script><rect width="80" height="40" fill="red"/></svg>"#;
    s.put("drawing.svg", svg);
    for query in ["", "w=40"] {
        let r = s.get("drawing.svg", query, NO_ACCEPT).await;
        assert_eq!(r.status, StatusCode::OK, "{query}");
        assert_ne!(r.header("content-type"), "image/svg+xml", "{query}");
        let d = decode(&r.body);
        assert_eq!(d.format, "png", "{query}");
        assert_eq!(d.width, if query.is_empty() { 80 } else { 40 }, "{query}");
    }
}

#[tokio::test]
async fn hostile_originals_get_a_clean_4xx() {
    let s = spawn_store_app(|_| {}).await;
    let manifest = std::fs::read_to_string(crate::helpers::corpus("manifest.tsv")).unwrap();
    let mut tried = 0;
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (path, outcome) = (cols[0], cols[2]);
        if !path.starts_with("hostile/") || tried >= 40 || !matches!(outcome, "bomb" | "invalid") {
            continue;
        }
        tried += 1;
        let key = Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        s.put(&key, &corpus_bytes(path));
        let encoded: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
        let r = s.get(&encoded.replace('+', "%20"), "w=100", CHROME).await;
        assert!(
            r.status == StatusCode::OK || r.status.is_client_error(),
            "{path}: {}",
            r.status
        );
        if r.status == StatusCode::OK {
            let d = decode(&r.body);
            assert!(d.width <= 100, "{path}");
        } else {
            assert!(r.header("cache-control").starts_with("public, max-age="));
        }
    }
    assert!(tried >= 20, "corpus sample: {tried}");
}

#[tokio::test]
async fn the_default_configuration_serves_the_store_mode() {
    let settings = Settings::default().validate().unwrap();
    assert_eq!(
        settings.store.kind,
        StoreKind::Local,
        "the embedded default"
    );
    assert_eq!(settings.store.root, Path::new("media"));
}
