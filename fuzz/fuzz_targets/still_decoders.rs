//! The still-image decoders that read the least common formats, on arbitrary bytes: HEIC
//! (heifer: ISO BMFF items, the HEVC intra decoder), JPEG XL (jxl-oxide), TIFF (the `tiff`
//! crate) and ICO (our directory reader, then PNG/BMP). Only inputs that sniff as one of them
//! go on (the `render` target spreads its time over every format), through the probe, the
//! limits and the render. Seeded with `../shared/corpus` (`heic/`, `tiff/`, `ico/`) and the
//! JPEG XL files `fuzz/run.sh` makes with `cjxl`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::{Format, Limits, Sniffed, Stop, Transform};

static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    DEFAULT_HOOK.call_once(|| {
        let _ = std::panic::take_hook();
    });
    let Sniffed::Known(format) = media::format::sniff(data, true) else {
        return;
    };
    if !matches!(format, Format::Heic | Format::Jxl | Format::Tiff | Format::Ico) {
        return;
    }
    let limits = Limits {
        max_pixels: 4_000_000,
        max_frames: 50,
        max_total_pixels: 8_000_000,
        max_alloc: 64 << 20,
        ..Limits::default()
    };
    let transform = if data.len() % 2 == 0 {
        Transform::Static
    } else {
        Transform::Emoji { still: false }
    };
    if let Ok(prepared) = media::prepare(data, format, transform, &limits) {
        let _ = prepared.render(data, &Stop::default());
    }
});
