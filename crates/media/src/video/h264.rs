//! H.264 frames through OpenH264 (Cisco's decoder, BSD-2-Clause, compiled from the sources
//! bundled in `openh264-sys2`: nothing from the system, and it cross-builds for arm64 with
//! the Lambda toolchain). It decodes 8-bit 4:2:0 — Constrained Baseline, Main and High, what
//! phones and the fediverse send; High 10, 4:2:2 and 4:4:4 are refused from the profile in
//! the `avcC` box before anything is decoded.
//!
//! Input: the track's [`Codec::H264`], the bytes of the samples of a [`super::FramePlan`]
//! (keyframe first) and which picture to keep; output: that picture, as RGB. The samples are
//! converted from the MP4 form (each NAL unit behind a 1-, 2- or 4-byte length) to the
//! start-code form the decoder reads, the parameter sets in front of the first. The decoder
//! gives pictures out in presentation order, reordered ones (B-frames) held until later
//! samples or the flush at the end: the plan says which of them is the frame. Uses
//! `pixels`, `Error`, `Stop`.

use openh264::decoder::{Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

use super::Codec;
use crate::pixels::Frame;
use crate::{Error, Stop};

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The last frame of decoding `samples` (decode order, keyframe first) of an H.264 track.
/// Never panics: a panic in the decoder or the conversion becomes [`Error::Panicked`].
/// `stop` is checked before each sample: up to [`super::MAX_DECODE_AHEAD`] pictures of a 4K
/// stream are seconds of a core.
///
/// Pictures no other picture refers to (`nal_ref_idc` 0: most B-frames) are not decoded
/// unless they are the frame itself: skipping them changes nothing for the others, and saves
/// a third of the work of a typical x264 stream. `shown_before` (the plan's) says which
/// pictures come out of the decoder before the frame, so the frame is still found.
pub fn decode(
    codec: &Codec,
    samples: &[&[u8]],
    shown_before: &[bool],
    stop: &Stop,
) -> Result<Frame, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_frames(codec, samples, shown_before, stop)
    }))
    .unwrap_or(Err(Error::Panicked))
}

fn decode_frames(
    codec: &Codec,
    samples: &[&[u8]],
    shown_before: &[bool],
    stop: &Stop,
) -> Result<Frame, Error> {
    let Codec::H264 {
        profile,
        sps,
        pps,
        nal_length,
    } = codec
    else {
        return Err(Error::Unsupported("this video codec"));
    };
    supported(*profile)?;
    if !matches!(nal_length, 1 | 2 | 4) {
        return Err(Error::Invalid(format!(
            "H.264 NAL length of {nal_length} bytes"
        )));
    }
    // No flush after each picture: with B-frames the decoder must keep its reordering
    // buffer (flushing it after every sample broke the stream at the first B-frames: every
    // x264 file of the corpus failed from its tenth sample). What it holds is flushed once,
    // at the end.
    let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
    let mut decoder = Decoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|e| Error::Invalid(format!("H.264 decoder: {e}")))?;
    // Pictures come out in presentation order; only the one kept is converted (the others
    // are references). A damaged stream may give fewer: the last one given is kept then.
    let last = samples.len().saturating_sub(1);
    let length = usize::from(*nal_length);
    let skipped = |i: usize, sample: &[u8]| i != 0 && i != last && !referenced(sample, length);
    // The frame comes out after the decoded pictures shown before it.
    let picture = samples
        .iter()
        .zip(shown_before)
        .enumerate()
        .filter(|&(i, (sample, &before))| before && !skipped(i, sample))
        .count();
    let mut out = Pictures {
        given: 0,
        kept: None,
        picture,
    };
    for (i, sample) in samples.iter().enumerate() {
        stop.check()?;
        if skipped(i, sample) {
            continue;
        }
        let mut packet = Vec::with_capacity(sample.len() + 64);
        if i == 0 {
            for set in sps.iter().chain(pps) {
                packet.extend_from_slice(&START_CODE);
                packet.extend_from_slice(set);
            }
        }
        annex_b(sample, length, &mut packet)?;
        // The decoder may refuse a damaged picture and go on.
        if let Ok(Some(yuv)) = decoder.decode(&packet) {
            out.give(&yuv);
        }
        if out.done() {
            break;
        }
    }
    if !out.done() {
        let held = decoder
            .flush_remaining()
            .map_err(|e| Error::Invalid(format!("H.264: {e}")))?;
        for yuv in &held {
            out.give(yuv);
        }
    }
    out.kept
        .ok_or_else(|| Error::Invalid("H.264: no picture decoded".into()))
}

/// The pictures a decoder gives out, counted; the one asked for (else the last) kept.
struct Pictures {
    given: usize,
    kept: Option<Frame>,
    picture: usize,
}

impl Pictures {
    fn give(&mut self, yuv: &openh264::decoder::DecodedYUV<'_>) {
        if self.given <= self.picture {
            self.kept = Some(rgb(yuv));
        }
        self.given += 1;
    }

    fn done(&self) -> bool {
        self.given > self.picture
    }
}

/// Refuses the profiles OpenH264 does not decode (from the `avcC` box, before any sample is
/// read): High 10 (110), High 4:2:2 (122), High 4:4:4 (244) and CAVLC 4:4:4 (44).
pub fn supported(profile: u8) -> Result<(), Error> {
    if matches!(profile, 110 | 122 | 244 | 44) {
        return Err(Error::Unsupported("H.264 High 10, 4:2:2 or 4:4:4"));
    }
    Ok(())
}

/// Whether a sample's picture may be referred to by others: any of its slices has a
/// non-zero `nal_ref_idc`, or it has no slice at all (kept: it may carry parameter sets).
/// A sample that cannot be walked is kept too (the decoder then judges it).
fn referenced(sample: &[u8], nal_length: usize) -> bool {
    let mut rest = sample;
    let mut slices = false;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_at_checked(nal_length) else {
            return true;
        };
        let len = len
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let Some((nal, tail)) = tail.split_at_checked(len) else {
            return true;
        };
        if let Some(&header) = nal.first() {
            // Slice types 1 (non-IDR) and 5 (IDR); bits 5–6 are nal_ref_idc.
            if matches!(header & 0x1f, 1 | 5) {
                slices = true;
                if header & 0x60 != 0 {
                    return true;
                }
            }
        }
        rest = tail;
    }
    !slices
}

/// The NAL units of one MP4 sample, each behind a `nal_length`-byte big-endian length; a
/// cut length or a unit longer than the sample ends the walk with an error.
pub(crate) fn nal_units(
    sample: &[u8],
    nal_length: usize,
) -> impl Iterator<Item = Result<&[u8], Error>> {
    let mut rest = sample;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let unit = (|| {
            let (len, tail) = rest
                .split_at_checked(nal_length)
                .ok_or_else(|| Error::Invalid("H.264 sample cut inside a NAL length".into()))?;
            let len = len
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            tail.split_at_checked(len)
                .ok_or_else(|| Error::Invalid("H.264 NAL unit longer than its sample".into()))
        })();
        match unit {
            Ok((nal, tail)) => {
                rest = tail;
                Some(Ok(nal))
            }
            Err(e) => {
                rest = &[];
                Some(Err(e))
            }
        }
    })
}

/// One MP4 sample (length-prefixed NAL units) appended to `out` with start codes.
fn annex_b(sample: &[u8], nal_length: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    for nal in nal_units(sample, nal_length) {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal?);
    }
    Ok(())
}

fn rgb(yuv: &openh264::decoder::DecodedYUV<'_>) -> Frame {
    let (w, h) = yuv.dimensions();
    let mut data = vec![0; w * h * 3];
    yuv.write_rgb8(&mut data);
    let side = |v: usize| u32::try_from(v).unwrap_or(0);
    Frame::rgb(side(w), side(h), data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::mp4::{plan, track_in};
    use crate::video::At;

    /// The frame at `at` of a corpus file: its index, its plan, the planned samples.
    fn frame_of(name: &str, at: At) -> Result<Frame, Error> {
        let file = crate::video::corpus(name);
        let t = track_in(&file, 16 << 20)?;
        let p = plan(&t, at, 64 << 20)?;
        let samples: Vec<&[u8]> = p
            .samples
            .iter()
            .map(|s| {
                file.get(s.offset as usize..(s.offset + u64::from(s.size)) as usize)
                    .ok_or_else(|| Error::Invalid("past the end".into()))
            })
            .collect::<Result<_, _>>()?;
        decode(&t.codec, &samples, &p.shown_before, &Stop::default())
    }

    fn mean(frame: &Frame) -> f64 {
        frame.data.iter().map(|&b| f64::from(b)).sum::<f64>() / frame.data.len().max(1) as f64
    }

    #[test]
    fn h264_frames_come_out_at_their_size() {
        for (name, w, h) in [
            ("h264_640x360_2s.mp4", 640, 360),
            ("h264_1920x1080_1s.mp4", 1920, 1080),
            ("h264_320x240_3s_moov_at_end.mp4", 320, 240),
            ("h264_aac_320x240_3s_faststart.mp4", 320, 240),
            ("h264_single_frame.mp4", 320, 240),
        ] {
            let f = frame_of(name, At::Millionths(50000)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                (f.width, f.height, f.data.len()),
                (w, h, (w * h * 3) as usize),
                "{name}"
            );
            assert!(mean(&f) > 10.0, "{name}: a picture, not black");
        }
    }

    #[test]
    fn pictures_nothing_refers_to_are_found_and_not_decoded() {
        // The whole 2 s of an x264 file (B-frames): a sample in three or so is a picture
        // no other refers to; the keyframe and the P-frames are references.
        let file = crate::video::corpus("h264_640x360_2s.mp4");
        let t = track_in(&file, 16 << 20).unwrap_or_else(|e| panic!("{e}"));
        let Codec::H264 { nal_length, .. } = t.codec else {
            panic!("h264")
        };
        let p = plan(&t, At::Millis(99_000), 64 << 20).unwrap_or_else(|e| panic!("{e}"));
        let unreferenced = p
            .samples
            .iter()
            .filter(|s| {
                let bytes = &file[s.offset as usize..(s.offset + u64::from(s.size)) as usize];
                !referenced(bytes, usize::from(nal_length))
            })
            .count();
        assert!(p.samples[0].keyframe);
        assert!(
            unreferenced > p.samples.len() / 5 && unreferenced < p.samples.len() / 2,
            "{unreferenced} of {}",
            p.samples.len()
        );
    }

    #[test]
    fn the_frame_is_the_one_at_the_time_asked_for() {
        // Black for its first second, then a picture: the first frame and 0.5 s are black,
        // 2 s is not (a decoder that always gave the first frame fails here).
        let name = "h264_black_first_second.mp4";
        let at = |s| frame_of(name, At::Millis(s)).unwrap_or_else(|e| panic!("{e}"));
        assert!(mean(&at(0)) < 20.0);
        assert!(mean(&at(500)) < 20.0);
        assert!(mean(&at(2000)) > 40.0, "{}", mean(&at(2000)));
    }

    #[test]
    fn profiles_it_cannot_decode_are_refused_cleanly() {
        for name in ["h264_high10_320x240.mp4", "h264_yuv444_odd_321x241.mp4"] {
            assert!(
                matches!(
                    frame_of(name, At::Millionths(50000)),
                    Err(Error::Unsupported(_))
                ),
                "{name}"
            );
        }
        // A sample whose NAL length runs past its end.
        let codec = Codec::H264 {
            profile: 100,
            sps: vec![],
            pps: vec![],
            nal_length: 4,
        };
        assert!(matches!(
            decode(&codec, &[&[0, 0, 1, 0, 5, 5]], &[false], &Stop::default()),
            Err(Error::Invalid(_))
        ));
    }
}
