//! The engine without the HTTP stack: decode + resize + encode for the workloads the service
//! benchmark measures (group `engine`), and each stage on its own (group `stages`), on inputs
//! generated here (deterministic, nothing to download) or the service benchmark's files; and
//! the SVG cost estimate against real renders (group `svg`).
//!
//!     cargo bench -p media --bench engine
//!     MEDIA_BENCH_INPUTS=$PWD/bench/.work/engine/in cargo bench -p media --bench engine

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

use media::{prepare, render, Format, Limits, Stop, Timings, Transform};

/// A photo-like RGB picture: smooth gradients plus seeded grain (realistic entropy).
fn photo(w: usize, h: usize) -> Vec<u8> {
    let mut seed = 0x2026_1121_u32;
    let mut px = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let grain = (seed % 24) as i32 - 12;
            let r = (x * 255 / w) as i32 + grain;
            let g = ((x + y) * 255 / (w + h)) as i32 + grain;
            let b = (y * 255 / h) as i32 + grain;
            px.extend([r, g, b].map(|v| v.clamp(0, 255) as u8));
        }
    }
    px
}

fn jpeg(w: usize, h: usize, progressive: bool) -> Vec<u8> {
    let px = photo(w, h);
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_quality(90).unwrap();
    c.set_subsamp(turbojpeg::Subsamp::Sub2x2).unwrap();
    c.set_progressive(progressive).unwrap();
    let image = turbojpeg::Image {
        pixels: px.as_slice(),
        width: w,
        pitch: w * 3,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    };
    c.compress_to_vec(image).unwrap()
}

fn rgba_png(side: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity((side * side * 4) as usize);
    for y in 0..side {
        for x in 0..side {
            let d = ((x as i32 - 250).pow(2) + (y as i32 - 250).pow(2)) as f32;
            data.extend([
                (x % 256) as u8,
                (y % 256) as u8,
                128,
                (255.0 - d.sqrt()).clamp(0.0, 255.0) as u8,
            ]);
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side, side);
    enc.set_color(png::ColorType::Rgba);
    enc.write_header().unwrap().write_image_data(&data).unwrap();
    out
}

fn gif_anim(side: u16, frames: u16) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let palette: Vec<u8> = (0..=255u8).flat_map(|i| [i, 255 - i, i / 2]).collect();
        let mut enc = gif::Encoder::new(&mut out, side, side, &palette).unwrap();
        enc.set_repeat(gif::Repeat::Infinite).unwrap();
        for f in 0..frames {
            let pixels: Vec<u8> = (0..u32::from(side) * u32::from(side))
                .map(|i| {
                    ((i % u32::from(side) + i / u32::from(side) + u32::from(f) * 8) % 256) as u8
                })
                .collect();
            let mut frame = gif::Frame::from_indexed_pixels(side, side, pixels, None);
            frame.delay = 4;
            enc.write_frame(&frame).unwrap();
        }
    }
    out
}

/// `MEDIA_BENCH_INPUTS=<dir>`: the service benchmark's own files (bench/make-inputs.py,
/// as `bash bench/run.sh` leaves them in bench/.work/engine/in), so the two compare on the
/// same bytes; otherwise inputs of the same kind generated here.
fn input(name: &str, generate: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    match std::env::var_os("MEDIA_BENCH_INPUTS") {
        Some(dir) => std::fs::read(std::path::Path::new(&dir).join(name))
            .unwrap_or_else(|e| panic!("{name} in MEDIA_BENCH_INPUTS: {e}")),
        None => generate(),
    }
}

fn engine(c: &mut Criterion) {
    let limits = Limits::default();
    let baseline = input("photo12_baseline.jpg", || jpeg(4000, 3000, false));
    let progressive = input("photo12_progressive.jpg", || jpeg(4000, 3000, true));
    let png = input("rgba500.png", || rgba_png(500));
    let gif = input("anim30.gif", || gif_anim(320, 30));
    let mut g = c.benchmark_group("engine");
    g.sample_size(20);
    g.bench_function("12MP baseline JPEG preview", |b| {
        b.iter(|| render(&baseline, Format::Jpeg, Transform::Preview, &limits).unwrap())
    });
    g.bench_function("12MP progressive JPEG preview", |b| {
        b.iter(|| render(&progressive, Format::Jpeg, Transform::Preview, &limits).unwrap())
    });
    g.bench_function("500x500 RGBA PNG emoji", |b| {
        b.iter(|| {
            render(
                &png,
                Format::Png,
                Transform::Emoji { still: false },
                &limits,
            )
            .unwrap()
        })
    });
    g.bench_function("30-frame 320x320 GIF emoji", |b| {
        b.iter(|| {
            render(
                &gif,
                Format::Gif,
                Transform::Emoji { still: false },
                &limits,
            )
            .unwrap()
        })
    });
    g.finish();
}

/// Picks one stage's time out of a render's timings.
type Stage = fn(&Timings) -> Duration;

/// Each stage of the same renders on its own: decode, resize (every transform step) and
/// encode, from the engine's own timings (`Prepared::render_timed`), so a regression points at
/// its stage. Each iteration runs the whole render and counts only its stage's time.
fn stages(c: &mut Criterion) {
    let limits = Limits::default();
    let workloads = [
        (
            "12MP baseline JPEG preview",
            input("photo12_baseline.jpg", || jpeg(4000, 3000, false)),
            Format::Jpeg,
            Transform::Preview,
        ),
        (
            "12MP progressive JPEG preview",
            input("photo12_progressive.jpg", || jpeg(4000, 3000, true)),
            Format::Jpeg,
            Transform::Preview,
        ),
        (
            "500x500 RGBA PNG emoji",
            input("rgba500.png", || rgba_png(500)),
            Format::Png,
            Transform::Emoji { still: false },
        ),
        (
            "30-frame 320x320 GIF emoji",
            input("anim30.gif", || gif_anim(320, 30)),
            Format::Gif,
            Transform::Emoji { still: false },
        ),
    ];
    let picks: [(&str, Stage); 3] = [
        ("decode", |t| t.decode),
        ("resize", |t| t.transform),
        ("encode", |t| t.encode),
    ];
    let mut g = c.benchmark_group("stages");
    g.sample_size(10);
    for (name, bytes, format, transform) in &workloads {
        for (stage, pick) in picks {
            g.bench_function(format!("{name} / {stage}"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let prepared = prepare(bytes, *format, *transform, &limits).unwrap();
                        let (_, timings) = prepared.render_timed(bytes, &Stop::default()).unwrap();
                        total += pick(&timings);
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

/// The SVG cost estimate against the real render: documents of several kinds whose
/// estimates (`Svg::work`, printed) are near the default budget; the time of
/// `Svg::rasterise` divided by the estimate is what one "pixel operation" costs, and so what
/// the budget (`limits.max_svg_work`) allows in CPU time.
fn svg(c: &mut Criterion) {
    use media::svg::Svg;
    let limits = Limits::default();
    let doc = |w: u32, body: String| {
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{w}">{body}</svg>"#)
    };
    let circles = |n: usize, r: u32| {
        (0..n)
            .map(|i| {
                format!(
                    r#"<circle cx="{}" cy="{}" r="{r}" fill="rgb({},40,90)" fill-opacity="0.5"/>"#,
                    500 + i % 24,
                    500 + i % 17,
                    i % 256
                )
            })
            .collect::<String>()
    };
    let layers = |n: usize| {
        (0..n)
            .map(|i| format!(r#"<g opacity="0.5"><rect x="{i}" width="1024" height="1024"/></g>"#))
            .collect::<String>()
    };
    let blur = r#"<filter id="b"><feGaussianBlur stdDeviation="12"/></filter>
        <rect x="100" y="100" width="800" height="800" fill="teal" filter="url(#b)"/>"#;
    let cases = [
        ("translucent circles", doc(1024, circles(80, 480)), 1024),
        ("opacity layers", doc(1024, layers(24)), 1024),
        ("gaussian blur", doc(1024, blur.repeat(4)), 1024),
        ("circles at emoji size", doc(1024, circles(2000, 480)), 128),
    ];
    let mut g = c.benchmark_group("svg");
    g.sample_size(10);
    for (name, text, side) in &cases {
        let svg = Svg::parse(text.as_bytes(), &limits).unwrap();
        let work = svg.work(*side, *side).unwrap();
        eprintln!(
            "svg / {name}: estimate {:.1} M pixel operations at {side}²",
            work as f64 / 1e6
        );
        g.bench_function(
            format!("{name} {side}px ({} M ops)", work / 1_000_000),
            |b| b.iter(|| svg.rasterise(*side, *side).unwrap()),
        );
    }
    g.finish();
}

criterion_group!(benches, engine, stages, svg);
criterion_main!(benches);
