//! The MP4 container reader on arbitrary bytes: the box walk, the `moov` decode and the
//! frame plan never panic, never loop, and never allocate beyond what the bytes hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::video::mp4::{plan, track_in};
use media::video::At;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = track_in(data, 1 << 20) {
        for at in [At::Millionths(50000), At::Millionths(1000000), At::Millis(u64::MAX)] {
            let _ = plan(&t, at, 1 << 24);
        }
    }
});
