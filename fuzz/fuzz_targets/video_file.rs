//! A video's whole still path on arbitrary bytes: the container (MP4/MOV or WebM), the
//! stream's own headers (`video::stream`: H.264 SPS, AV1 sequence header, VP9/VP8 frame
//! headers), then the frame decoders (OpenH264, libaom, rusty_vp9, the VP8 key frame),
//! rotation, resize and encode. Seeded with `../shared/corpus/video`, so mutations land in
//! real samples and reach the decoders. The limits are small so each input stays fast; a
//! decoder panic is caught (an error, as the service answers 422), an abort or a sanitizer
//! report fails the run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::video::{render_file, MISSKEY_FRAME};
use media::{Limits, Stop, Transform};

static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    DEFAULT_HOOK.call_once(|| {
        // libfuzzer-sys aborts on every panic, caught or not: caught ones are answers here.
        let _ = std::panic::take_hook();
    });
    let limits = Limits {
        max_pixels: 2_000_000,
        max_total_pixels: 8_000_000,
        max_video_read: 1 << 20,
        ..Limits::default()
    };
    let _ = render_file(data, MISSKEY_FRAME, Transform::Preview, None, &limits, &Stop::default());
});
