//! The MP4 container reader on arbitrary bytes: the box walk, the `moov` decode and the
//! frame plan never panic, never loop, and never allocate beyond what the bytes hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::video::mp4::{plan, track, Locator, Step};
use media::video::At;

fuzz_target!(|data: &[u8]| {
    let (mut locator, mut step) = Locator::new(Some(data.len() as u64), 1 << 20);
    loop {
        match step {
            Step::Header { offset, len } => {
                let at = |o: u64| usize::try_from(o).unwrap_or(usize::MAX).min(data.len());
                let bytes = &data[at(offset)..at(offset.saturating_add(len))];
                match locator.feed(bytes) {
                    Ok(next) => step = next,
                    Err(_) => break,
                }
            }
            Step::Index { offset, len } => {
                let at = |o: u64| usize::try_from(o).unwrap_or(usize::MAX).min(data.len());
                let moov = &data[at(offset)..at(offset.saturating_add(len))];
                if let Ok(t) = track(moov) {
                    for at in [At::Fraction(0.05), At::Fraction(1.0), At::Seconds(1e300)] {
                        let _ = plan(&t, at, 1 << 24);
                    }
                }
                break;
            }
        }
    }
});
