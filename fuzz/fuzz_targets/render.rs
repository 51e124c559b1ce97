//! The whole engine (probe, limits, decode, resize, encode) on arbitrary bytes. The input's
//! length picks the transform (so real images stay valid seeds); limits are small so that
//! each run stays fast.
//!
//! `media::render` catches codec panics and answers an error, as the service does (422).
//! libfuzzer-sys installs a panic hook that aborts on *any* panic, caught or not, which would
//! stop every run at the first known codec panic; the target puts the default hook back, so
//! caught panics behave as in production and an uncaught one still fails the run (libFuzzer
//! aborts on a panic that reaches it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::ops::{Fit, Resize};
use media::{Limits, Output, Sniffed, Transform};

static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    DEFAULT_HOOK.call_once(|| {
        let _ = std::panic::take_hook();
    });
    let bytes = data;
    // The length picks the transform, so corpus seeds stay intact.
    let resize = |fit, output| {
        let r = Resize {
            width: Some(96),
            height: Some(64),
            fit,
            enlarge: false,
            background: [0, 0, 255, 128],
            still: false,
            max_side: 4096,
        };
        (Transform::Resize(r), Some(output))
    };
    let (transform, output) = match bytes.len() % 9 {
        0 => (Transform::Emoji { still: false }, None),
        1 => (Transform::Static, None),
        2 => (Transform::Preview, None),
        3 => (Transform::Badge, None),
        4 => (Transform::Avatar { still: true }, None),
        5 => resize(Fit::Cover, Output::Jpeg { quality: 80 }),
        6 => resize(Fit::Contain, Output::Png),
        7 => resize(Fit::Fill, Output::Gif),
        _ => resize(Fit::Inside, Output::Avif { quality: 50, speed: 10 }),
    };
    let Sniffed::Known(format) = media::format::sniff(bytes, true) else {
        return;
    };
    let limits = Limits {
        max_pixels: 4_000_000,
        max_frames: 50,
        max_total_pixels: 8_000_000,
        max_alloc: 64 << 20,
        max_svg_elements: 10_000,
        max_svg_work: 50_000_000,
        max_video_read: 1 << 20,
    };
    if let Ok(prepared) = media::prepare(bytes, format, transform, &limits) {
        let prepared = match output {
            Some(o) => prepared.with_output(o),
            None => prepared,
        };
        let _ = prepared.render(bytes, &media::Stop::default());
    }
});
