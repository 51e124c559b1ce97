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
use media::{Limits, Sniffed, Transform};

static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    DEFAULT_HOOK.call_once(|| {
        let _ = std::panic::take_hook();
    });
    let bytes = data;
    let transform = match bytes.len() % 5 {
        0 => Transform::Emoji { still: false },
        1 => Transform::Static,
        2 => Transform::Preview,
        3 => Transform::Badge,
        _ => Transform::Avatar { still: true },
    };
    let Sniffed::Known(format) = media::format::sniff(bytes, true) else {
        return;
    };
    let limits = Limits {
        max_pixels: 4_000_000,
        max_frames: 50,
        max_total_pixels: 8_000_000,
        max_alloc: 64 << 20,
    };
    if let Ok(prepared) = media::prepare(bytes, format, transform, &limits) {
        let _ = prepared.render(bytes, &media::Stop::default());
    }
});
