//! Format detection, the header probe and the prepared render (limits, memory estimate) on arbitrary bytes: never a
//! panic, whatever the bytes claim to be.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::{Format, Limits, Sniffed, Transform};

fuzz_target!(|data: &[u8]| {
    let format = match media::format::sniff(data, true) {
        Sniffed::Known(f) => f,
        Sniffed::NeedMore => return,
    };
    if format.capabilities().transform && format != Format::Svg {
        let _ = media::probe::probe(data, format);
    }
    let _ = media::prepare(data, format, Transform::Preview, &Limits::default()).map(|p| p.cost());
});
