//! The WebM/Matroska reader on arbitrary bytes: the element walk, the index decode and the
//! cluster plan never panic, never loop, and never allocate beyond what the bytes hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::video::mkv::{plan_in, track_in};
use media::video::At;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = track_in(data, 1 << 20) {
        for at in [At::Millionths(50000), At::Millionths(1000000), At::Millis(u64::MAX)] {
            let _ = plan_in(data, &t, at);
        }
    }
});
