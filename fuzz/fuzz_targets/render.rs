//! The whole engine (probe, limits, decode, resize, encode) on arbitrary bytes. The input's
//! length picks the transform (so real images stay valid seeds); limits are small so that
//! each run stays fast. A codec panic is
//! caught by `render` and returned as an error, so only a crash (abort, overflow, sanitizer
//! report) or a panic outside the codecs fails here.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::{Limits, Sniffed, Transform};

fuzz_target!(|data: &[u8]| {
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
    if media::estimate(bytes, format, transform, &limits).is_ok() {
        let _ = media::render(bytes, format, transform, &limits);
    }
});
