//! The MP4 container reader on arbitrary bytes: the box walk, the `moov` decode and the
//! frame plan never panic, never loop, and never allocate beyond what the bytes hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::video::mp4::{plan, track_in};
use media::video::At;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = track_in(data, 1 << 20) {
        for at in [At::Fraction(0.05), At::Fraction(1.0), At::Seconds(1e300)] {
            let _ = plan(&t, at, 1 << 24);
        }
    }
});
