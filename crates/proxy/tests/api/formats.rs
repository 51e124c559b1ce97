//! Formats browsers cannot all show, and favicons of every kind (issue 21): ICO entries (PNG
//! of any colour type, BMP at 1/8/24/32 bits with their mask, several sizes), TIFF layouts
//! (palette, CMYK, YCbCr JPEG, 16-bit, float, Lab, planar), HEIC (grids, alpha, 10-bit,
//! overlays, collections), JPEG XL stills and animations. Without flags TIFF, HEIC and
//! JPEG XL come back as WebP at their own size; ICO passes through.
//!
//! Every output is decoded (`image-webp`) and compared, pixel by pixel, with what an
//! independent decoder makes of the same file: Pillow (libtiff, and libheif through
//! pillow-heif) for ICO, TIFF and HEIC, libjxl's `djxl` for JPEG XL. The test files are made
//! here, by Pillow, pillow-heif and `cjxl` (`./dev tools` installs them), or taken from the
//! corpus. A palette or CMYK file that came out inverted or grey fails the colour check.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::header;
use reqwest::StatusCode;

use crate::helpers::{corpus, made_dir, spawn_app_and_origin, Origin, TestApp};

/// Makes the test files with Pillow and pillow-heif: a colourful 64×48 picture (a red
/// gradient across, green down, a blue square, a transparent corner where alpha exists) in
/// each layout.
const MAKE: &str = r#"
import sys, os
from PIL import Image, ImageDraw
import pillow_heif
pillow_heif.register_heif_opener()
out = sys.argv[1]
def picture(w=64, h=48):
    im = Image.new("RGBA", (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = (x * 255 // (w - 1), y * 255 // (h - 1), 60, 255)
    d = ImageDraw.Draw(im)
    d.rectangle([w // 2, h // 4, w // 2 + w // 5, h // 4 + h // 3], fill=(20, 40, 230, 255))
    d.rectangle([0, 0, w // 6, h // 6], fill=(0, 0, 0, 0))
    return im
p = picture()
rgb = p.convert("RGB")
def path(name): return os.path.join(out, "fmt-" + name)
# ICO: PNG entries of several colour types, BMP entries at 1, 8, 24 and 32 bits.
rgb.save(path("png-rgb.ico"), sizes=[(64, 48)])
rgb.quantize(64).save(path("png-palette.ico"), sizes=[(64, 48)])
p.convert("LA").save(path("png-grey-alpha.ico"), sizes=[(64, 48)])
for mode, name in [("1", "bmp-1.ico"), ("P", "bmp-8.ico"), ("RGB", "bmp-24.ico"), ("RGBA", "bmp-32.ico")]:
    src = rgb.quantize(256) if mode == "P" else (p if mode == "RGBA" else rgb.convert(mode))
    src.save(path(name), sizes=[(64, 48)], bitmap_format="bmp")
p.resize((48, 48)).save(path("sizes.ico"), sizes=[(16, 16), (32, 32), (48, 48)])
# TIFF layouts.
rgb.quantize(32).save(path("palette.tif"))
rgb.convert("CMYK").save(path("cmyk.tif"))
rgb.save(path("ycbcr-jpeg.tif"), compression="jpeg")
rgb.convert("LAB").save(path("lab.tif"))
rgb.convert("L").convert("I;16").point(lambda v: v * 257).save(path("grey16.tif"))
rgb.convert("L").convert("F").point(lambda v: v / 255.0).save(path("float.tif"))
p.save(path("rgba-deflate.tif"), compression="tiff_deflate")
# HEIC: 8-bit RGB, RGBA, 10-bit.
pillow_heif.options.QUALITY = 95
rgb.save(path("rgb.heic"), quality=95)
p.save(path("rgba.heic"), quality=95)
# GIF for the animated JPEG XL (cjxl reads it).
frames = [picture().rotate(0), picture().transpose(Image.FLIP_LEFT_RIGHT), picture().transpose(Image.FLIP_TOP_BOTTOM)]
frames = [f.convert("RGB") for f in frames]
frames[0].save(path("anim.gif"), save_all=True, append_images=frames[1:], duration=[100, 200, 300], loop=0)
rgb.save(path("still.png"))
"#;

/// The RGBA pixels Pillow (with pillow-heif) decodes from `file`, upright, resized (Lanczos)
/// to `w`×`h` when that differs; frame `frame` of an animation.
const ORACLE: &str = r#"
import sys
from PIL import Image, ImageOps
import pillow_heif
pillow_heif.register_heif_opener()
Image.MAX_IMAGE_PIXELS = None
path, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
im = Image.open(path)
im = ImageOps.exif_transpose(im)
if im.mode.startswith("I;16"):
    im = im.point(lambda v: v / 257).convert("L")
elif im.mode == "F":
    im = im.point(lambda v: v * 255).convert("L")
im = im.convert("RGBA")
if im.size != (w, h):
    im = im.resize((w, h), Image.LANCZOS)
sys.stdout.buffer.write(im.tobytes())
"#;

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} runs (./dev tools installs it): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The made files (`fmt-<name>` in the origin's `/made/` directory), made once per run.
struct Made(PathBuf);

impl Made {
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(format!("fmt-{name}"))
    }
}

fn made() -> Made {
    static MADE: std::sync::Once = std::sync::Once::new();
    let made = Made(made_dir());
    MADE.call_once(|| {
        run(Command::new("python3").args(["-c", MAKE]).arg(&made.0));
        for (from, to) in [("still.png", "still.jxl"), ("anim.gif", "anim.jxl")] {
            run(Command::new("cjxl")
                .arg(made.join(from))
                .arg(made.join(to))
                .args(["-d", "1", "--quiet"]));
        }
    });
    made
}

fn oracle(file: &Path, w: u32, h: u32) -> Vec<u8> {
    let out = run(Command::new("python3")
        .args(["-c", ORACLE])
        .arg(file)
        .args([w.to_string(), h.to_string()]));
    assert_eq!(out.len(), (w * h * 4) as usize, "oracle size for {file:?}");
    out
}

/// A decoded WebP: size, frames (RGBA each) and delays.
struct Decoded {
    w: u32,
    h: u32,
    frames: Vec<(Vec<u8>, u32)>,
}

fn decode_webp(bytes: &[u8]) -> Decoded {
    let mut d = image_webp::WebPDecoder::new(Cursor::new(bytes)).expect("output is WebP");
    let (w, h) = d.dimensions();
    let n = if d.is_animated() { d.num_frames() } else { 1 };
    let mut frames = Vec::new();
    for _ in 0..n {
        let mut buf = vec![0u8; d.output_buffer_size().expect("size")];
        let delay = if d.is_animated() {
            d.read_frame(&mut buf).expect("frame")
        } else {
            d.read_image(&mut buf).expect("decodes");
            0
        };
        if !d.has_alpha() {
            buf = buf
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 255])
                .collect();
        }
        frames.push((buf, delay));
    }
    Decoded { w, h, frames }
}

/// Mean absolute difference of two RGBA pictures, colour weighted by alpha (the colour of
/// a transparent pixel does not matter), and the alpha difference, 0–255.
fn difference(a: &[u8], b: &[u8]) -> (f64, f64) {
    let (mut colour, mut alpha, mut n) = (0.0, 0.0, 0.0);
    for (p, q) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        let (pa, qa) = (f64::from(p[3]) / 255.0, f64::from(q[3]) / 255.0);
        for c in 0..3 {
            colour += (f64::from(p[c]) * pa - f64::from(q[c]) * qa).abs();
        }
        alpha += (f64::from(p[3]) - f64::from(q[3])).abs();
        n += 1.0;
    }
    (colour / n / 3.0, alpha / n)
}

/// Asks for `file` (served by the origin from `dir`) with `flags`; the WebP answer decoded.
async fn webp_of(app: &TestApp, origin: &Origin, route: &str, flags: &str) -> Decoded {
    let r = app
        .get(&app.proxy_url("image.webp", &origin.url(route), flags))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{route}{flags}");
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/webp", "{route}");
    let cache = r.headers()[header::CACHE_CONTROL].to_str().unwrap();
    assert!(cache.contains("immutable"), "{route}: {cache}");
    decode_webp(&r.bytes().await.unwrap())
}

/// Our answer for `file` looks like the oracle's decode: same size, colours within
/// `tolerance` (lossy WebP at quality 77 differs by a few levels), alpha likewise.
fn assert_like_oracle(label: &str, file: &Path, out: &Decoded, size: (u32, u32), tolerance: f64) {
    assert_eq!((out.w, out.h), size, "{label}: size");
    let want = oracle(file, out.w, out.h);
    let (colour, alpha) = difference(&out.frames[0].0, &want);
    assert!(
        colour < tolerance && alpha < tolerance,
        "{label}: differs from the independent decode by {colour:.1} (colour), {alpha:.1} (alpha)"
    );
}

/// The origin's route to a made file.
fn made_route(name: &str) -> String {
    made();
    format!("/made/fmt-{name}")
}

#[tokio::test]
async fn favicons_of_every_entry_kind_are_converted_with_their_colours_and_masks() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    let dir = made();
    for name in [
        "png-rgb.ico",
        "png-palette.ico",
        "png-grey-alpha.ico",
        "bmp-1.ico",
        "bmp-8.ico",
        "bmp-24.ico",
        "bmp-32.ico",
    ] {
        let out = webp_of(&app, &origin, &made_route(name), "&static").await;
        assert_like_oracle(name, &dir.join(name), &out, (64, 48), 6.0);
    }
    // Several sizes: the largest entry.
    let out = webp_of(&app, &origin, &made_route("sizes.ico"), "&static").await;
    assert_like_oracle("sizes.ico", &dir.join("sizes.ico"), &out, (48, 48), 6.0);
    // A 24-bit entry whose transparency is its AND mask; favicons the image crate refused:
    // an RGB and a grey PNG entry, a truncated mask.
    for (rel, size) in [
        ("ico/image-rs/bmp-24bpp-mask.ico", (32, 32)),
        ("ico/image-rs/png_rgb8.ico", (32, 32)),
        ("ico/image-rs/png_l8.ico", (32, 32)),
        ("ico/image-rs/truncated_mask_32bpp.ico", (64, 64)),
    ] {
        let out = webp_of(&app, &origin, &format!("/corpus/{rel}"), "&static").await;
        assert_like_oracle(rel, &corpus(rel), &out, size, 10.0);
    }
    // Without flags an ICO is browser-safe: passed through as it is.
    let r = app
        .get(&app.proxy_url("x.ico", &origin.url(&made_route("bmp-8.ico")), ""))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/x-icon");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        std::fs::read(dir.join("bmp-8.ico")).unwrap()
    );
}

#[tokio::test]
async fn tiffs_are_converted_to_webp_without_flags_in_every_layout() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    let dir = made();
    for name in [
        "palette.tif",
        "cmyk.tif",
        "ycbcr-jpeg.tif",
        "lab.tif",
        "grey16.tif",
        "float.tif",
        "rgba-deflate.tif",
    ] {
        let out = webp_of(&app, &origin, &made_route(name), "").await;
        assert_like_oracle(name, &dir.join(name), &out, (64, 48), 6.0);
    }
    // Corpus layouts: planar strips, YCbCr JPEG with 2×2 chroma, CCITT G4 with
    // orientation 6, a 4-bit palette, CIELab.
    for (rel, size) in [
        ("tiff/pillow/tiff_strip_planar_lzw.tiff", (278, 374)),
        (
            "tiff/pillow/tiff_strip_ycbcr_jpeg_2x2_sampling.tif",
            (480, 360),
        ),
        ("tiff/pillow/g4_orientation_6.tif", (590, 88)),
        ("tiff/image-tiff/palette-1c-4b.tiff", (157, 151)),
        ("tiff/pillow/hopper.Lab.tif", (128, 128)),
    ] {
        // Lossy WebP of dithered or noisy art differs more than of the smooth test picture;
        // a wrong palette, inverted or grey colours differ by 40 and more.
        let out = webp_of(&app, &origin, &format!("/corpus/{rel}"), "").await;
        assert_like_oracle(rel, &corpus(rel), &out, size, 12.0);
    }
    // With a flag, the transform's own size.
    let out = webp_of(&app, &origin, &made_route("cmyk.tif"), "&preview").await;
    assert_like_oracle(
        "cmyk.tif preview",
        &dir.join("cmyk.tif"),
        &out,
        (64, 48),
        6.0,
    );
}

#[tokio::test]
async fn heic_photos_are_converted_upright_with_alpha_grids_and_overlays() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    let dir = made();
    for name in ["rgb.heic", "rgba.heic"] {
        let out = webp_of(&app, &origin, &made_route(name), "").await;
        assert_like_oracle(name, &dir.join(name), &out, (64, 48), 6.0);
    }
    for (rel, flags, size) in [
        // A phone photo in 512×512 tiles (a grid), shown inside 2048×2048.
        ("heic/pillow-heif-other/pug.heic", "", (2048, 1536)),
        ("heic/pillow-heif-other/xiaomi.heic", "&static", (498, 374)),
        // An overlay (`iovl`) with an alpha plane.
        ("heic/nokia/alpha.heic", "", (1440, 960)),
        // 10-bit with alpha; a collection (its primary image).
        (
            "heic/pillow-heif-synthetic/RGBA_10__29x100.heif",
            "",
            (29, 100),
        ),
        ("heic/pillow-heif-synthetic/zPug_3.heic", "&emoji", (64, 64)),
    ] {
        let out = webp_of(&app, &origin, &format!("/corpus/{rel}"), flags).await;
        assert_eq!(out.frames.len(), 1, "{rel}: a still");
        assert_like_oracle(rel, &corpus(rel), &out, size, 8.0);
    }
}

#[tokio::test]
async fn jpeg_xl_stills_and_animations_are_converted() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    let dir = made();
    // The independent decode: libjxl's djxl, to PNG, read by Pillow at our size.
    let decoded = |name: &str| {
        let png = dir.join(&format!("{name}.djxl.png"));
        run(Command::new("djxl")
            .arg(dir.join(name))
            .arg(&png)
            .arg("--quiet"));
        png
    };
    let out = webp_of(&app, &origin, &made_route("still.jxl"), "").await;
    assert_like_oracle("still.jxl", &decoded("still.jxl"), &out, (64, 48), 6.0);
    // Animated: emoji keeps the three frames and their delays; static takes the first.
    let out = webp_of(&app, &origin, &made_route("anim.jxl"), "&emoji").await;
    assert_eq!((out.w, out.h), (64, 48));
    let delays: Vec<u32> = out.frames.iter().map(|f| f.1).collect();
    assert_eq!(delays, [100, 200, 300], "frames and delays kept");
    // Frame 2 is frame 1 mirrored: compare each with the GIF the JPEG XL was made from.
    let gif = dir.join("anim.gif");
    let first = oracle(&gif, 64, 48);
    let (colour, _) = difference(&out.frames[0].0, &first);
    assert!(colour < 8.0, "first frame: {colour:.1}");
    let (colour, _) = difference(&out.frames[1].0, &first);
    assert!(
        colour > 20.0,
        "the second frame is another picture: {colour:.1}"
    );
    let out = webp_of(&app, &origin, &made_route("anim.jxl"), "&static").await;
    assert_eq!(out.frames.len(), 1);
}

#[tokio::test]
async fn bombs_in_the_new_formats_are_refused_from_their_headers() {
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    for (rel, flags) in [
        // 200 MP in tiles; 65535×65535 declared; a grid whose tiles far exceed its size.
        ("hostile/bombs/upstream/pillow-heif_200MP.heic", ""),
        (
            "hostile/bombs/generated/heic_ispe_65535x65535_lie.heic",
            "&static",
        ),
        (
            "hostile/bombs/generated/tiff_65535x65535_rgb_8_bytes.tif",
            "",
        ),
        (
            "hostile/bombs/generated/ico_embedded_png_65535x65535_lie.ico",
            "&static",
        ),
        (
            "hostile/bombs/generated/ico_embedded_bmp_1000000x1000000_lie.ico",
            "&static",
        ),
    ] {
        let r = app
            .get(&app.proxy_url("x.webp", &origin.url(&format!("/corpus/{rel}")), flags))
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{rel}");
    }
    // JPEG XL: the header's size and frame count against the limits (set low here, so that
    // the test files are the bombs): refused before any frame is rendered.
    let (strict, origin) = spawn_app_and_origin(|s| {
        s.limits.max_pixels = 1000;
    })
    .await;
    let r = strict
        .get(&strict.proxy_url("x.webp", &origin.url(&made_route("still.jxl")), ""))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "JPEG XL over max_pixels"
    );
    let (strict, origin) = spawn_app_and_origin(|s| {
        s.limits.max_frames = 2;
    })
    .await;
    let r = strict
        .get(&strict.proxy_url("x.webp", &origin.url(&made_route("anim.jxl")), "&emoji"))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "3 frames over max_frames"
    );
    drop(origin);
}

#[tokio::test]
async fn store_originals_browsers_cannot_show_are_converted_into_what_the_client_accepts() {
    let store = crate::store::spawn_store_app(|_| {}).await;
    let made = made();
    for name in ["cmyk.tif", "rgb.heic", "still.jxl"] {
        store.put(name, &std::fs::read(made.join(name)).unwrap());
        // No parameters: converted at its size, WebP for a browser that lists it…
        let a = store.get(name, "", &[("accept", "image/webp,*/*")]).await;
        assert_eq!(a.status, StatusCode::OK, "{name}");
        assert_eq!(a.header("content-type"), "image/webp", "{name}");
        let d = crate::store::decode(&a.body);
        assert_eq!((d.format, d.width, d.height), ("webp", 64, 48), "{name}");
        // …PNG for one that lists neither AVIF nor WebP: never the original's own type.
        for accept in ["*/*", "image/png,image/jpeg"] {
            let a = store.get(name, "", &[("accept", accept)]).await;
            assert_eq!(a.header("content-type"), "image/png", "{name} for {accept}");
            assert!(a.header("vary").contains("Accept"), "{name}");
        }
        // With a size, format=auto likewise.
        let a = store.get(name, "w=32", &[("accept", "*/*")]).await;
        let d = crate::store::decode(&a.body);
        assert_eq!(
            (d.format, d.width, d.height),
            ("png", 32, 24),
            "{name} w=32"
        );
    }
}
