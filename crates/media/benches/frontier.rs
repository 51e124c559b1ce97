//! The WebP encoder frontier for the emoji and avatar workloads (issue 24): for each input —
//! a 500×500 RGBA PNG and a 30-frame 320×320 GIF as `emoji` (128 px high), a 12 MP photo as
//! `avatar` (320 px high) — the frames the engine hands the encoder (decoded and resized by
//! the engine's own code), encoded with each combination of quality, method, sharp YUV and,
//! for animations, forced key frames. Per combination: CPU-ms of the encode (the best of
//! three, one thread: wall time of a single-threaded call), bytes, and the mean SSIM of the
//! decoded frames against the encoder's input (R, G and B each, over mid-grey). Prints one Markdown
//! table per input, the Misskey spec's settings marked, then the Pareto frontier (no other
//! row is at once faster, smaller and at least as good).
//!
//!   MEDIA_BENCH_INPUTS=$PWD/bench/.work/engine/in cargo bench -p media --bench frontier
//!
//! SSIM is computed here (8×8 windows, stride 4, the usual constants): a scoring helper for
//! a table, not product code, and the SSIM crates bring image pipelines of their own.

// A benchmark program: a failed expect or index is a failed run, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::Cursor;
use std::time::Instant;

use image::AnimationDecoder as _;
use media::encode::{self, WebpSettings, MISSKEY_WEBP};
use media::pixels::{Channels, Frame};
use media::{Format, Limits, Transform};

fn input(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("MEDIA_BENCH_INPUTS").expect(
        "MEDIA_BENCH_INPUTS=<dir> (bench/make-inputs.py's files, as bench/run.sh leaves them)",
    );
    std::fs::read(std::path::Path::new(&dir).join(name))
        .unwrap_or_else(|e| panic!("{name} in MEDIA_BENCH_INPUTS: {e}"))
}

/// The encoder's input: `bytes` decoded and resized for `transform` by the engine's code.
fn frames(bytes: &[u8], format: Format, transform: Transform) -> Vec<Frame> {
    let limits = Limits::default();
    let mut resizer = media::transform::Resizer::new(media::resize_filter(transform));
    let decoded: Vec<Frame> = if format != Format::Gif {
        let (w, h) = media::probe::probe(bytes, format)
            .map(|p| (p.width, p.height))
            .expect("probe");
        let (tw, th) = transform.target(w, h);
        vec![media::decode::first_frame(bytes, format, tw, th, &limits).expect("decode")]
    } else {
        media::decode::frames(bytes, format, &limits)
            .expect("decode")
            .map(|f| f.expect("frame"))
            .collect()
    };
    decoded
        .into_iter()
        .map(|f| {
            let (w, h) = transform.target(f.width, f.height);
            media::transform::resize(f, w, h, &mut resizer).expect("resize")
        })
        .collect()
}

fn encode(frames: &[Frame], settings: WebpSettings) -> Vec<u8> {
    if frames.len() == 1 {
        return encode::webp(&frames[0], settings).expect("encode");
    }
    let mut anim =
        encode::AnimatedWebp::new(frames[0].width, frames[0].height, settings).expect("encoder");
    for f in frames {
        anim.add(f).expect("add");
    }
    anim.finish().expect("finish")
}

/// Channel `c` (0 R, 1 G, 2 B) of `rgba`-or-`rgb` pixels composited over mid-grey.
fn plane(data: &[u8], channels: usize, c: usize) -> Vec<f64> {
    data.chunks_exact(channels)
        .map(|p| {
            let a = if channels == 4 {
                f64::from(p[3]) / 255.0
            } else {
                1.0
            };
            f64::from(p[c]) * a + 128.0 * (1.0 - a)
        })
        .collect()
}

fn ssim(a: &[f64], b: &[f64], w: usize, h: usize) -> f64 {
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (mut total, mut n) = (0.0, 0usize);
    let win = 8.min(w).min(h);
    let mut y = 0;
    while y + win <= h {
        let mut x = 0;
        while x + win <= w {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for j in y..y + win {
                for i in x..x + win {
                    let (p, q) = (a[j * w + i], b[j * w + i]);
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let k = (win * win) as f64;
            let (ma, mb) = (sa / k, sb / k);
            let (va, vb, cov) = (saa / k - ma * ma, sbb / k - mb * mb, sab / k - ma * mb);
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            n += 1;
            x += 4;
        }
        y += 4;
    }
    total / n.max(1) as f64
}

/// Mean SSIM of the decoded `webp`'s frames against `frames`.
fn score(webp: &[u8], frames: &[Frame]) -> f64 {
    let decoder = image::codecs::webp::WebPDecoder::new(Cursor::new(webp)).expect("a WebP");
    let decoded: Vec<image::RgbaImage> = if frames.len() == 1 {
        vec![image::DynamicImage::from_decoder(decoder)
            .expect("decode")
            .to_rgba8()]
    } else {
        decoder
            .into_frames()
            .map(|f| f.expect("frame").into_buffer())
            .collect()
    };
    assert_eq!(decoded.len(), frames.len(), "every frame comes back");
    let mut sum = 0.0;
    for (d, f) in decoded.iter().zip(frames) {
        let (w, h) = (f.width as usize, f.height as usize);
        let channels = if f.channels == Channels::Rgba { 4 } else { 3 };
        // R, G and B each: chroma errors (what sharp YUV is about) count, not luma alone.
        for c in 0..3 {
            let reference = plane(&f.data, channels, c);
            sum += ssim(&plane(d.as_raw(), 4, c), &reference, w, h) / 3.0;
        }
    }
    sum / frames.len() as f64
}

struct Row {
    label: String,
    cpu_ms: f64,
    bytes: usize,
    ssim: f64,
    /// The Misskey spec's settings.
    spec: bool,
    /// What the engine uses for this input now.
    ours: bool,
}

fn main() {
    let workloads = [
        (
            "500×500 RGBA PNG emoji",
            "rgba500.png",
            Format::Png,
            Transform::Emoji { still: false },
        ),
        (
            "30-frame 320×320 GIF emoji",
            "anim30.gif",
            Format::Gif,
            Transform::Emoji { still: false },
        ),
        (
            "12 MP photo avatar",
            "photo12_baseline.jpg",
            Format::Jpeg,
            Transform::Avatar { still: false },
        ),
    ];
    for (title, name, format, transform) in workloads {
        let frames = frames(&input(name), format, transform);
        let animated = frames.len() > 1;
        let mut rows = Vec::new();
        let keyframes: &[Option<(i32, i32)>] = if animated {
            &[None, Some((1, 1)), Some((3, 5))]
        } else {
            &[None]
        };
        let ours = if animated {
            media::misskey_animation(transform)
        } else {
            MISSKEY_WEBP
        };
        let mut grid = Vec::new();
        for quality in [60.0f32, 70.0, 77.0, 85.0] {
            for method in [0, 1, 2, 4] {
                for sharp_yuv in [true, false] {
                    for &keyframes in keyframes {
                        for segments in [4, 1] {
                            grid.push(WebpSettings {
                                quality,
                                sharp_yuv,
                                method,
                                keyframes,
                                segments,
                            });
                        }
                    }
                }
            }
        }
        if !grid.contains(&ours) {
            grid.push(ours);
        }
        for settings in grid {
            let mut best = f64::MAX;
            let mut out = Vec::new();
            for _ in 0..3 {
                let started = Instant::now();
                out = encode(&frames, settings);
                best = best.min(started.elapsed().as_secs_f64() * 1000.0);
            }
            let keys_label = match settings.keyframes {
                None => String::new(),
                Some((a, b)) => format!(", key frames {a}–{b}"),
            };
            let segments_label = match settings.segments {
                4 => String::new(),
                n => format!(", {n} segment(s)"),
            };
            rows.push(Row {
                label: format!(
                    "q{} m{} sharp YUV {}{keys_label}{segments_label}",
                    settings.quality,
                    settings.method,
                    if settings.sharp_yuv { "on" } else { "off" }
                ),
                cpu_ms: best,
                bytes: out.len(),
                ssim: score(&out, &frames),
                spec: settings == MISSKEY_WEBP,
                ours: settings == ours,
            });
        }
        println!(
            "\n### {title} ({} frame(s), {}×{})\n",
            frames.len(),
            frames[0].width,
            frames[0].height
        );
        println!("| settings | encode ms | bytes | SSIM | |");
        println!("|---|---|---|---|---|");
        let dominated = |r: &Row| {
            rows.iter().any(|o| {
                o.cpu_ms <= r.cpu_ms
                    && o.bytes <= r.bytes
                    && o.ssim >= r.ssim
                    && (o.cpu_ms < r.cpu_ms || o.bytes < r.bytes || o.ssim > r.ssim)
            })
        };
        for r in &rows {
            let mark = match (r.spec, r.ours, dominated(r)) {
                (true, true, _) => "**Misskey spec, ours**",
                (true, false, _) => "**Misskey spec**",
                (false, true, _) => "**ours**",
                (false, false, false) => "frontier",
                (false, false, true) => "",
            };
            if r.spec || r.ours || mark == "frontier" {
                println!(
                    "| {} | {:.2} | {} | {:.4} | {mark} |",
                    r.label, r.cpu_ms, r.bytes, r.ssim
                );
            }
        }
    }
}
