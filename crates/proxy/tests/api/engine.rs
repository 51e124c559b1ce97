//! The media engine through the service: every row of the flag table with its sizes, checked
//! by decoding the output independently (image-webp, zune-png: not the libraries that wrote
//! it); EXIF orientation by content; animations; badge; SVG isolation; limits.

use std::io::Cursor;

use reqwest::header;
use reqwest::StatusCode;

use crate::helpers::{spawn_app_and_origin, Origin, TestApp};

/// What an output decodes to.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    format: &'static str,
    width: u32,
    height: u32,
    frames: u32,
}

fn decode_webp(bytes: &[u8]) -> (Decoded, Vec<u8>, bool, Option<u16>) {
    let mut d = image_webp::WebPDecoder::new(Cursor::new(bytes)).expect("output is WebP");
    let (width, height) = d.dimensions();
    let frames = if d.is_animated() { d.num_frames() } else { 1 };
    let has_alpha = d.has_alpha();
    let loops = match d.loop_count() {
        image_webp::LoopCount::Forever => None,
        image_webp::LoopCount::Times(n) => Some(n.get()),
    };
    let mut buf = vec![0u8; d.output_buffer_size().expect("size")];
    d.read_image(&mut buf).expect("first frame decodes");
    (
        Decoded {
            format: "webp",
            width,
            height,
            frames,
        },
        buf,
        has_alpha,
        loops,
    )
}

async fn fetch(app: &TestApp, origin: &Origin, path: &str, flags: &str) -> reqwest::Response {
    app.get(&app.proxy_url("image.webp", &origin.url(path), flags))
        .await
}

async fn webp_of(
    app: &TestApp,
    origin: &Origin,
    path: &str,
    flags: &str,
) -> (Decoded, Vec<u8>, bool, Option<u16>) {
    let r = fetch(app, origin, path, flags).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}{flags}");
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "image/webp",
        "{path}{flags}"
    );
    assert_eq!(
        r.headers()[header::CACHE_CONTROL],
        "max-age=31536000, immutable",
        "{path}{flags}"
    );
    decode_webp(&r.bytes().await.unwrap())
}

#[tokio::test]
async fn every_flag_gives_the_spec_size_for_every_input_format() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    let e = "&emoji";
    // (corpus file, flags, expected width, height, frames)
    let cases: &[(&str, &str, u32, u32, u32)] = &[
        // 1800×1200 photo.
        (
            "jpeg/exif-orientation-recurser/Landscape_1.jpg",
            e,
            192,
            128,
            1,
        ),
        (
            "jpeg/exif-orientation-recurser/Landscape_1.jpg",
            "&avatar",
            480,
            320,
            1,
        ),
        (
            "jpeg/exif-orientation-recurser/Landscape_1.jpg",
            "&static",
            498,
            332,
            1,
        ),
        (
            "jpeg/exif-orientation-recurser/Landscape_1.jpg",
            "&preview",
            200,
            133,
            1,
        ),
        // 5472×3648 stored, orientation 6: 3648×5472 displayed.
        (
            "jpeg/large/photo_20mp_5472x3648_exif_orientation6.jpg",
            "&static",
            281,
            422,
            1,
        ),
        (
            "jpeg/large/photo_20mp_5472x3648_exif_orientation6.jpg",
            "&preview",
            133,
            200,
            1,
        ),
        (
            "jpeg/large/photo_20mp_5472x3648_exif_orientation6.jpg",
            e,
            85,
            128,
            1,
        ),
        (
            "jpeg/large/photo_20mp_5472x3648_exif_orientation6.jpg",
            "&avatar",
            213,
            320,
            1,
        ),
        // 45 MP progressive: the DC-only shortcut.
        (
            "jpeg/large/photo_45mp_8256x5504_progressive_q80.jpg",
            "&preview",
            200,
            133,
            1,
        ),
        // Stray bytes before a header marker (libjpeg warns; browsers show it).
        ("jpeg/pillow/jpeg_ff00_header.jpg", "&preview", 200, 150, 1),
        // PNG 32×32 RGBA: never enlarged.
        ("png-pngsuite/basn6a08.png", e, 32, 32, 1),
        ("png-pngsuite/basn6a08.png", "&static", 32, 32, 1),
        // 16-bit, palette, grey PNGs.
        ("png-pngsuite/basn6a16.png", "&preview", 32, 32, 1),
        ("png-pngsuite/basn3p08.png", "&preview", 32, 32, 1),
        ("png-pngsuite/basn0g16.png", "&preview", 32, 32, 1),
        // Animations keep their frames under emoji/avatar, lose them otherwise.
        ("gif/image-gif/anim-gr.gif", e, 100, 50, 2),
        (
            "gif/generated/anim_transparent_dispose_bg_24_frames.gif",
            "&avatar",
            0,
            0,
            24,
        ),
        (
            "gif/generated/anim_transparent_dispose_bg_24_frames.gif",
            "&static",
            0,
            0,
            1,
        ),
        (
            "gif/generated/anim_transparent_dispose_bg_24_frames.gif",
            "&emoji&static",
            0,
            0,
            1,
        ),
        ("webp/image-rs/anim.webp", e, 128, 128, 6),
        ("webp/image-rs/anim.webp", "&preview", 200, 200, 1),
        ("apng/image-rs/ball.png", e, 100, 100, 20),
        ("apng/image-rs/ball.png", "&static", 100, 100, 1),
        // BMP, ICO (largest entry), TIFF.
        ("bmp/image-rs/Core_4_Bit.bmp", "&preview", 200, 162, 1),
        ("ico/pillow/hopper_256x256.ico", e, 128, 128, 1),
        // Several entries: the largest one is used.
        ("ico/pillow/python.ico", "&static", 48, 48, 1),
        (
            "ico/generated/multi_size_16_to_256.ico",
            "&static",
            256,
            256,
            1,
        ),
        (
            "tiff/pillow/tiff_strip_planar_lzw.tiff",
            "&static",
            278,
            374,
            1,
        ),
        // AVIF: stored 1920×1080 with a quarter turn (irot), shown 1080×1920.
        (
            "avif/aom-av1-avif/Microsoft/Ronda_rotate90.avif",
            "&static",
            237,
            422,
            1,
        ),
        // A 6400×2880 grid of 20 tiles.
        (
            "avif/aom-av1-avif/Microsoft/Summer_in_Tomsk_720p_5x4_grid.avif",
            "&preview",
            200,
            90,
            1,
        ),
        // 12-bit 4:4:4, 1204×800.
        ("avif/link-u/fox.profile2.12bpc.yuv444.avif", e, 193, 128, 1),
        (
            "avif/link-u/fox.profile0.10bpc.yuv420.avif",
            "&avatar",
            482,
            320,
            1,
        ),
    ];
    for &(rel, flags, w, h, frames) in cases {
        let (d, _, _, loops) = webp_of(&app, &origin, &format!("/corpus/{rel}"), flags).await;
        assert_eq!(d.frames, frames, "{rel}{flags}: frames");
        if w > 0 {
            assert_eq!((d.width, d.height), (w, h), "{rel}{flags}: size");
        }
        if frames > 1 {
            assert_eq!(loops, None, "{rel}{flags}: loops forever");
        }
    }
}

#[tokio::test]
async fn the_spec_size_examples_hold_for_every_input_format() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    // The spec's examples: input → emoji, avatar, static, preview.
    type Size = (u32, u32);
    let examples: [(Size, [Size; 4]); 4] = [
        (
            (1000, 800),
            [(160, 128), (400, 320), (498, 398), (200, 160)],
        ),
        ((2000, 300), [(853, 128), (2000, 300), (498, 75), (200, 30)]),
        ((200, 1000), [(26, 128), (64, 320), (84, 422), (40, 200)]),
        ((64, 48), [(64, 48), (64, 48), (64, 48), (64, 48)]),
    ];
    let flags = ["&emoji", "&avatar", "&static", "&preview"];
    for ext in ["png", "jpg", "gif", "bmp", "tiff", "webp"] {
        for ((w, h), sizes) in examples {
            for (flag, want) in flags.iter().zip(sizes) {
                let path = format!("/generated/{w}x{h}.{ext}");
                let (d, _, _, _) = webp_of(&app, &origin, &path, flag).await;
                assert_eq!((d.width, d.height), want, "{w}×{h} {ext}{flag}");
                assert_eq!(d.frames, 1, "{path}{flag}");
            }
        }
    }
}

#[tokio::test]
async fn alpha_is_kept_only_where_it_is_used() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    // basn6a08: RGBA with varying alpha; basn2c08: RGB; the GIF frame is opaque.
    for (rel, alpha) in [
        ("png-pngsuite/basn6a08.png", true),
        ("png-pngsuite/basn2c08.png", false),
        ("gif/image-gif/anim-gr.gif", false),
        ("avif/pillow/transparency.avif", true),
        ("avif/aom-av1-avif/Microsoft/Mexico.avif", false),
    ] {
        let (_, _, has_alpha, _) =
            webp_of(&app, &origin, &format!("/corpus/{rel}"), "&static").await;
        assert_eq!(has_alpha, alpha, "{rel}");
    }
}

/// Mean absolute difference of two RGB(A) buffers of the same size, per channel value.
fn mean_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.len() as f64
}

#[tokio::test]
async fn exif_orientations_all_display_the_same_picture() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    for (kind, w, h) in [("Landscape", 498, 332), ("Portrait", 281, 422)] {
        for flags in ["&static", "&emoji"] {
            let reference = webp_of(
                &app,
                &origin,
                &format!("/corpus/jpeg/exif-orientation-recurser/{kind}_0.jpg"),
                flags,
            )
            .await;
            if flags == "&static" {
                assert_eq!(
                    (reference.0.width, reference.0.height),
                    (w, h),
                    "{kind}_0 size"
                );
            }
            for n in 1..=8 {
                let path = format!("/corpus/jpeg/exif-orientation-recurser/{kind}_{n}.jpg");
                let (d, pixels, _, _) = webp_of(&app, &origin, &path, flags).await;
                assert_eq!(
                    (d.width, d.height),
                    (reference.0.width, reference.0.height),
                    "{path}{flags}"
                );
                let diff = mean_diff(&pixels, &reference.1);
                assert!(
                    diff < 6.0,
                    "{path}{flags}: looks like {kind}_0 once oriented (mean diff {diff:.1})"
                );
            }
        }
    }
}

#[tokio::test]
async fn avif_rotations_and_mirrors_all_display_the_same_picture() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    // The same photo stored with every irot/imir combination (two of them portrait).
    let reference = webp_of(
        &app,
        &origin,
        "/corpus/avif/pillow/rot0mir0.avif",
        "&static",
    )
    .await;
    assert_eq!((reference.0.width, reference.0.height), (498, 332));
    // The threshold tells pictures apart: the mirror image of the reference is far off.
    let row = 498 * reference.1.len() / (498 * 332);
    let mirrored: Vec<u8> = reference
        .1
        .chunks(row)
        .flat_map(|r| {
            r.chunks(row / 498)
                .rev()
                .flatten()
                .copied()
                .collect::<Vec<u8>>()
        })
        .collect();
    let far = mean_diff(&mirrored, &reference.1);
    assert!(far > 24.0, "mirror of the reference: mean diff {far:.1}");
    for rot in 0..4 {
        for mir in 0..2 {
            let path = format!("/corpus/avif/pillow/rot{rot}mir{mir}.avif");
            let (d, pixels, _, _) = webp_of(&app, &origin, &path, "&static").await;
            assert_eq!((d.width, d.height), (498, 332), "{path}");
            let diff = mean_diff(&pixels, &reference.1);
            // Each file is encoded on its own (lossy): ~8 apart when the same picture.
            assert!(
                diff < 12.0,
                "{path}: looks like rot0mir0 (mean diff {diff:.1})"
            );
        }
    }
}

#[tokio::test]
async fn badge_is_a_grey_mask_or_404_when_flat() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    let r = fetch(
        &app,
        &origin,
        "/corpus/jpeg/exif-orientation-recurser/Landscape_1.jpg",
        "&badge",
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/png");
    let name = r.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(name, "inline; filename=\"Landscape_1.jpg.png\"");
    let body = r.bytes().await.unwrap();
    let mut decoder =
        zune_png::PngDecoder::new(zune_png::zune_core::bytestream::ZCursor::new(&body[..]));
    let pixels = decoder.decode_raw().expect("badge decodes");
    assert_eq!(decoder.dimensions(), Some((96, 96)));
    assert_eq!(pixels.len(), 96 * 96 * 4, "RGBA");
    assert!(
        pixels
            .chunks_exact(4)
            .all(|p| p[0] == p[1] && p[1] == p[2] && p[2] == p[3]),
        "every pixel (v,v,v,v)"
    );
    let distinct: std::collections::BTreeSet<u8> = pixels.iter().copied().collect();
    assert!(
        distinct.len() > 16,
        "a photo gives a detailed mask, got {} levels",
        distinct.len()
    );

    // A flat square image is too uniform: 404, short cache.
    let r = fetch(&app, &origin, "/flat.png", "&badge").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "flat badge");
    assert_eq!(r.headers()[header::CACHE_CONTROL], "max-age=300");
}

#[tokio::test]
async fn svg_is_rasterised_without_anything_external() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    // A local red PNG the SVG points at: it must not be read.
    let dir = std::env::temp_dir().join(format!("media-proxy-svg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let red_path = dir.join("red.png");
    let red = red_png();
    std::fs::write(&red_path, &red).unwrap();
    let data_url = format!("data:image/png;base64,{}", base64(&red));
    let cases = [
        (red_path.display().to_string(), false),
        (format!("file://{}", red_path.display()), false),
        ("red.png".to_owned(), false),
        (
            format!("http://{}/corpus/png-pngsuite/basn2c08.png", origin.addr),
            false,
        ),
        // Control: an inline data: URL is allowed, so the test can see an image drawn.
        (data_url, true),
    ];
    for (href, drawn) in cases {
        let encoded: String = url::form_urlencoded::byte_serialize(href.as_bytes()).collect();
        let before = origin.hits().len();
        let (d, pixels, _, _) = webp_of(
            &app,
            &origin,
            &format!("/svg-with-image?href={encoded}"),
            "",
        )
        .await;
        assert_eq!((d.width, d.height), (100, 100), "{href}");
        let n = if pixels.len() == 100 * 100 * 4 { 4 } else { 3 };
        let centre = &pixels[(50 * 100 + 50) * n..(50 * 100 + 50) * n + 3];
        let red_ish = centre[0] > 200 && centre[2] < 60;
        let blue_ish = centre[2] > 200 && centre[0] < 60;
        if drawn {
            assert!(
                red_ish,
                "{href}: the data: image is drawn, centre {centre:?}"
            );
        } else {
            assert!(
                blue_ish,
                "{href}: nothing external drawn, centre {centre:?}"
            );
        }
        assert_eq!(
            origin.hits().len(),
            before + 1,
            "{href}: the renderer fetched nothing"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);

    // The corpus' hostile references render (or are refused) without reaching anything.
    let r = fetch(
        &app,
        &origin,
        "/corpus/svg/hostile/external-image-refs.svg",
        "",
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "external refs are simply not drawn"
    );
}

#[tokio::test]
async fn over_limit_and_broken_images_are_422() {
    let (app, origin) = spawn_app_and_origin(|s| s.limits.max_frames = 100).await;
    let cases = [
        (
            "hostile/bombs/generated/apng_10000x10000_2000_frames_bomb.png",
            "&emoji",
        ),
        (
            "hostile/bombs/generated/bmp_1bit_100000x100000_16_bytes_data.bmp",
            "&preview",
        ),
        (
            "hostile/bombs/generated/bmp_32bpp_65535x65535_4_bytes.bmp",
            "&static",
        ),
        // 300 frames against a limit of 100.
        ("webp/generated/anim_300_frames_48x48.webp", "&emoji"),
    ];
    for (rel, flags) in cases {
        let r = fetch(&app, &origin, &format!("/corpus/{rel}"), flags).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{rel}{flags}");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "max-age=300", "{rel}");
    }
    // Truncated JPEG: refused, not a 5xx.
    let r = fetch(&app, &origin, "/truncated", "&preview").await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_GATEWAY,
        "a body cut short by the origin is the origin's fault"
    );
    let r = fetch(
        &app,
        &origin,
        "/corpus/hostile/lies/gif_javascript_polyglot.gif",
        "&preview",
    )
    .await;
    assert!(
        r.status().is_success() || r.status() == StatusCode::UNPROCESSABLE_ENTITY,
        "polyglot: {}",
        r.status()
    );
}

/// A 100×100 opaque red PNG.
fn red_png() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, 100, 100);
        enc.set_color(png::ColorType::Rgb);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[255, 0, 0].repeat(100 * 100)).unwrap();
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[tokio::test]
async fn a_full_worker_queue_answers_503_with_retry_after() {
    let (app, origin) = spawn_app_and_origin(|s| {
        s.workers.threads = 1;
        s.workers.queue = 0;
    })
    .await;
    // Heavy enough to overlap: the 24 MP photo, 6 at once, one worker, no queue. Six
    // different URLs: identical requests would share one render.
    let photo = "/corpus/jpeg/large/photo_24mp_6000x4000_baseline_q85.jpg";
    let url = |n: usize| {
        app.proxy_url(
            "image.webp",
            &origin.url(&format!("{photo}?n={n}")),
            "&static",
        )
    };
    let requests = (0..6).map(|n| {
        let (client, url) = (app.client.clone(), url(n));
        tokio::spawn(async move { client.get(&url).send().await.unwrap() })
    });
    let mut ok = 0;
    let mut busy = 0;
    for r in futures_util::future::join_all(requests).await {
        let r = r.unwrap();
        match r.status() {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(r.headers()[header::RETRY_AFTER], "1");
                // An induced overload must not be kept by a CDN.
                assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
            }
            other => panic!("only 200 or 503 expected, got {other}"),
        }
    }
    assert!(ok >= 1, "the one worker served at least one");
    assert!(
        busy >= 1,
        "the others were turned away rather than queued: {ok} ok"
    );
    // Once idle again, requests succeed.
    assert_eq!(app.get(&url(6)).await.status(), StatusCode::OK);
}

/// The RIFF chunk names of a WebP file, in order.
fn webp_chunks(bytes: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        names.push(String::from_utf8_lossy(&bytes[pos..pos + 4]).into_owned());
        let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        pos += 8 + size + (size & 1);
    }
    names
}

#[tokio::test]
async fn animations_keep_their_frame_delays() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    // (file, delays browsers show: a GIF delay of 10 ms or less is shown as 100 ms)
    let cases: [(&str, &[u32]); 2] = [
        (
            "gif/generated/anim_noninterlaced_loop_once_var_delay.gif",
            &[100, 500, 20, 1000, 30, 40, 50, 60, 70, 2000],
        ),
        (
            "apng/pillow-philip-apng-tests/different_durations.png",
            &[4000, 1000],
        ),
    ];
    for (rel, want) in cases {
        let r = fetch(&app, &origin, &format!("/corpus/{rel}"), "&emoji").await;
        assert_eq!(r.status(), StatusCode::OK, "{rel}");
        let bytes = r.bytes().await.unwrap();
        let mut d = image_webp::WebPDecoder::new(Cursor::new(&bytes[..])).unwrap();
        assert!(d.is_animated(), "{rel}: animated");
        let mut buf = vec![0u8; d.output_buffer_size().unwrap()];
        let delays: Vec<u32> = (0..d.num_frames())
            .map(|_| d.read_frame(&mut buf).unwrap())
            .collect();
        assert_eq!(delays, want, "{rel}: frame delays");
    }
}

#[tokio::test]
async fn outputs_carry_no_metadata() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    // A camera-style photo with EXIF (orientation 6) and an animated GIF.
    for (rel, flags) in [
        (
            "jpeg/large/photo_20mp_5472x3648_exif_orientation6.jpg",
            "&static",
        ),
        ("jpeg/exif-orientation-recurser/Landscape_5.jpg", "&avatar"),
        ("gif/image-gif/anim-gr.gif", "&emoji"),
    ] {
        let r = fetch(&app, &origin, &format!("/corpus/{rel}"), flags).await;
        let chunks = webp_chunks(&r.bytes().await.unwrap());
        assert!(!chunks.is_empty(), "{rel}: a WebP");
        for meta in ["EXIF", "ICCP", "XMP "] {
            assert!(
                !chunks.iter().any(|c| c == meta),
                "{rel}{flags}: no {meta} chunk in {chunks:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_codec_panic_is_a_422_and_the_server_keeps_serving() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    // This tiled planar 16-bit TIFF makes the tiff decoder panic (index out of bounds).
    let panicky = "/corpus/tiff/pillow/tiff_tiled_planar_16bit_RGBa.tiff";
    for _ in 0..3 {
        let r = fetch(&app, &origin, panicky, "&static").await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "caught panic");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "max-age=300");
    }
    let (d, _, _, _) = webp_of(
        &app,
        &origin,
        "/corpus/png-pngsuite/basn6a08.png",
        "&static",
    )
    .await;
    assert_eq!(
        (d.width, d.height),
        (32, 32),
        "still serving after the panics"
    );
}
