//! What a video's bitstream says of its picture size, read from the samples the server has
//! already fetched and before any decoder sees them: the container's width and height are a
//! claim (a 320×240 track may carry a 4K stream), and admission prices what the decoder will
//! allocate, which the stream decides.
//!
//! Per codec, the coded size (before any cropping: the decoder allocates the whole picture):
//! - H.264: every sequence parameter set, the `avcC` box's and those in the samples
//!   (`h264-reader`). A stream whose sets disagree on the size is refused: OpenH264's error
//!   concealment loops without bound on an in-band size change (cisco/openh264#3925).
//! - AV1: every sequence header OBU in the samples (`max_frame_width` × `max_frame_height`:
//!   no frame of the sequence may be larger).
//! - VP9: every frame header (each frame of a superframe), the sizes it states explicitly
//!   (an inter frame's other sizes are copies of a reference's).
//! - VP8: the key frame's header (only key frames are decoded).
//!
//! Input: the track's codec and the plan's samples; output: the largest coded size stated, or
//! `None` when the samples state none (the decoder then has nothing to decode from), or
//! `Error::Invalid` for a header that cannot be read (the decoder would refuse it too).
//! Pure, safe Rust; uses `Error` and the codec types of [`super`].

use bitstream_io::{BigEndian, BitRead, BitReader};
use h264_reader::nal::sps::SeqParameterSet;

use super::Codec;
use crate::Error;

/// The largest coded size the samples' (and the codec record's) headers state.
pub fn coded_size(codec: &Codec, samples: &[&[u8]]) -> Result<Option<(u32, u32)>, Error> {
    match codec {
        Codec::H264 {
            sps, nal_length, ..
        } => h264(sps, samples, usize::from(*nal_length)),
        Codec::Av1 => largest(samples.iter().map(|s| av1(s))),
        Codec::Vp9 => largest(samples.iter().map(|s| vp9(s))),
        Codec::Vp8 => samples.first().map_or(Ok(None), |s| vp8(s)),
        Codec::Hevc | Codec::Other(_) => Ok(None),
    }
}

/// The per-dimension maximum of the sizes found.
fn largest(
    sizes: impl Iterator<Item = Result<Option<(u32, u32)>, Error>>,
) -> Result<Option<(u32, u32)>, Error> {
    let mut out: Option<(u32, u32)> = None;
    for size in sizes {
        if let Some((w, h)) = size? {
            out = Some(out.map_or((w, h), |(ow, oh)| (ow.max(w), oh.max(h))));
        }
    }
    Ok(out)
}

/// H.264: every SPS must state the same coded size.
fn h264(
    record: &[Vec<u8>],
    samples: &[&[u8]],
    nal_length: usize,
) -> Result<Option<(u32, u32)>, Error> {
    let mut size: Option<(u32, u32)> = None;
    let mut see = |nal: &[u8]| -> Result<(), Error> {
        // nal_unit_type 7: a sequence parameter set.
        if nal.first().is_some_and(|h| h & 0x1f == 7) {
            let this = h264_sps_size(nal)?;
            match size {
                Some(known) if known != this => {
                    return Err(Error::Invalid(format!(
                        "an H.264 stream whose picture size changes ({}×{} then {}×{})",
                        known.0, known.1, this.0, this.1
                    )))
                }
                _ => size = Some(this),
            }
        }
        Ok(())
    };
    for set in record {
        see(set)?;
    }
    for sample in samples {
        for nal in super::h264::nal_units(sample, nal_length) {
            see(nal?)?;
        }
    }
    Ok(size)
}

/// The coded size of one SPS NAL unit (its header byte first): whole macroblocks, both
/// fields of an interlaced frame, before the cropping window.
fn h264_sps_size(nal: &[u8]) -> Result<(u32, u32), Error> {
    let bad = |e: &dyn std::fmt::Debug| Error::Invalid(format!("H.264 SPS: {e:?}"));
    let rbsp = h264_reader::rbsp::decode_nal(nal).map_err(|e| bad(&e))?;
    let sps = SeqParameterSet::from_bits(h264_reader::rbsp::BitReader::new(&rbsp[..]))
        .map_err(|e| bad(&e))?;
    let fields = match sps.frame_mbs_flags {
        h264_reader::nal::sps::FrameMbsFlags::Frames => 1,
        h264_reader::nal::sps::FrameMbsFlags::Fields { .. } => 2,
    };
    let width = sps.pic_width_in_mbs_minus1.checked_add(1);
    let height = sps
        .pic_height_in_map_units_minus1
        .checked_add(1)
        .and_then(|h| h.checked_mul(fields));
    match (
        width.and_then(|w| w.checked_mul(16)),
        height.and_then(|h| h.checked_mul(16)),
    ) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(Error::Invalid("H.264 SPS: an impossible size".into())),
    }
}

/// AV1: the largest `max_frame_width` × `max_frame_height` of the sequence headers in one
/// temporal unit (OBUs, each with its size field as MP4 and WebM require).
fn av1(sample: &[u8]) -> Result<Option<(u32, u32)>, Error> {
    let bad = || Error::Invalid("AV1: an OBU cut short".into());
    let mut sizes = Vec::new();
    let mut rest = sample;
    while let Some((&header, tail)) = rest.split_first() {
        let kind = (header >> 3) & 0x0f;
        let extension = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        let tail = if extension {
            tail.get(1..).ok_or_else(bad)?
        } else {
            tail
        };
        let (payload, after) = if has_size {
            let (len, used) = leb128(tail).ok_or_else(bad)?;
            let body = tail.get(used..).ok_or_else(bad)?;
            let len = usize::try_from(len).map_err(|_| bad())?;
            body.split_at_checked(len).ok_or_else(bad)?
        } else {
            // Without a size field, the OBU is the rest of the unit.
            (tail, &[][..])
        };
        // obu_type 1: OBU_SEQUENCE_HEADER.
        if kind == 1 {
            sizes.push(av1_sequence_size(payload).map_err(|_| {
                Error::Invalid("AV1: a sequence header that cannot be read".into())
            })?);
        }
        rest = after;
    }
    largest(sizes.into_iter().map(|s| Ok(Some(s))))
}

/// An unsigned LEB128 value (at most 8 bytes, as AV1 allows) and the bytes it took.
fn leb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The frame size bound of an AV1 sequence header (AV1 spec §5.5.1), read by hand: no
/// maintained crate parses AV1 headers without decoding (libaom, which does, is the decoder
/// this guards). Only the fields before `max_frame_height_minus_1` are walked.
fn av1_sequence_size(payload: &[u8]) -> std::io::Result<(u32, u32)> {
    let mut r = BitReader::endian(payload, BigEndian);
    let _seq_profile: u8 = r.read::<3, u8>()?;
    let _still_picture = r.read_bit()?;
    let reduced_still_picture_header = r.read_bit()?;
    if reduced_still_picture_header {
        r.skip(5)?; // seq_level_idx[0]
    } else {
        let timing_info_present = r.read_bit()?;
        let mut decoder_model_info_present = false;
        let mut buffer_delay_length = 0u32;
        if timing_info_present {
            r.skip(32 + 32)?; // num_units_in_display_tick, time_scale
            if r.read_bit()? {
                // equal_picture_interval: num_ticks_per_picture_minus_1, uvlc().
                let zeros = r.read_unary::<1>()?;
                if zeros < 32 {
                    r.skip(zeros)?;
                }
            }
            decoder_model_info_present = r.read_bit()?;
            if decoder_model_info_present {
                buffer_delay_length = r.read::<5, u32>()? + 1;
                r.skip(32 + 5 + 5)?; // num_units_in_decoding_tick, two lengths
            }
        }
        let initial_display_delay_present = r.read_bit()?;
        let operating_points = r.read::<5, u32>()? + 1;
        for _ in 0..operating_points {
            r.skip(12)?; // operating_point_idc
            let seq_level_idx = r.read::<5, u8>()?;
            if seq_level_idx > 7 {
                r.skip(1)?; // seq_tier
            }
            if decoder_model_info_present && r.read_bit()? {
                // operating_parameters_info: two delays and low_delay_mode_flag.
                r.skip(2 * buffer_delay_length + 1)?;
            }
            if initial_display_delay_present && r.read_bit()? {
                r.skip(4)?;
            }
        }
    }
    let width_bits = r.read::<4, u32>()? + 1;
    let height_bits = r.read::<4, u32>()? + 1;
    let width = r.read_var::<u32>(width_bits)?.saturating_add(1);
    let height = r.read_var::<u32>(height_bits)?.saturating_add(1);
    Ok((width, height))
}

/// VP9: the largest size any frame header of the packet states (a superframe holds several
/// frames, its index at the end).
fn vp9(packet: &[u8]) -> Result<Option<(u32, u32)>, Error> {
    let none = [(0, 0); 8];
    let mut sizes = Vec::new();
    for frame in vp9_frames(packet) {
        let mut r = rusty_vp9::BitReader::new(frame);
        let header = rusty_vp9::parse_uncompressed_header(&mut r, &none)
            .map_err(|e| Error::Invalid(format!("VP9 frame header: {e}")))?;
        // Sizes copied from a reference read as 0 here: they were stated by an earlier frame.
        if header.width > 0 && header.height > 0 {
            sizes.push(Ok(Some((header.width, header.height))));
        }
    }
    largest(sizes.into_iter())
}

/// The frames of a VP9 packet: those its superframe index lists (VP9 bitstream spec
/// annex B), else the packet itself. By hand: `rusty_vp9` splits superframes but does not
/// export it.
fn vp9_frames(packet: &[u8]) -> Vec<&[u8]> {
    let whole = vec![packet];
    let Some(&marker) = packet.last() else {
        return whole;
    };
    if marker & 0xe0 != 0xc0 {
        return whole;
    }
    let frames = usize::from(marker & 0x07) + 1;
    let width = usize::from((marker >> 3) & 0x03) + 1;
    let index_len = 2 + width * frames;
    let Some(start) = packet.len().checked_sub(index_len) else {
        return whole;
    };
    if packet.get(start) != Some(&marker) {
        return whole;
    }
    let mut out = Vec::with_capacity(frames);
    let mut at = 0usize;
    let sizes = packet.get(start + 1..packet.len() - 1).unwrap_or_default();
    for size in sizes.chunks_exact(width) {
        let size = size
            .iter()
            .rev()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        match packet.get(at..at.saturating_add(size)) {
            Some(frame) if at + size <= start => out.push(frame),
            // An index pointing outside the packet: the decoder refuses it as one frame.
            _ => return whole,
        }
        at += size;
    }
    out
}

/// VP8: a key frame's 14-bit width and height, after its frame tag and start code.
fn vp8(frame: &[u8]) -> Result<Option<(u32, u32)>, Error> {
    let keyframe = frame.first().is_some_and(|b| b & 1 == 0);
    if !keyframe {
        return Ok(None);
    }
    match (frame.get(3..6), frame.get(6..10)) {
        (Some([0x9d, 0x01, 0x2a]), Some(&[w0, w1, h0, h1])) => {
            let w = u32::from(u16::from_le_bytes([w0, w1]) & 0x3fff);
            let h = u32::from(u16::from_le_bytes([h0, h1]) & 0x3fff);
            Ok(Some((w, h)))
        }
        _ => Err(Error::Invalid("VP8: a key frame without its header".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::{corpus, track_in};

    #[test]
    fn the_corpus_streams_state_their_own_sizes() {
        for (name, size) in [
            ("h264_aac_320x240_3s_faststart.mp4", (320, 240)),
            // Coded in whole macroblocks: 1080 rows are 68 of them, cropped by 8.
            ("h264_1920x1080_1s.mp4", (1920, 1088)),
            ("av1_320x240_3s.mp4", (320, 240)),
            ("vp9_opus_320x240_3s.webm", (320, 240)),
            ("vp8_320x240_3s.webm", (320, 240)),
            ("av1_svt_320x240_3s.webm", (320, 240)),
        ] {
            let file = corpus(name);
            let track = track_in(&file).unwrap();
            let samples = crate::video::samples_in(&file, &track, crate::video::MISSKEY_FRAME);
            let coded = coded_size(&track.codec, &samples.unwrap().1).unwrap();
            assert_eq!(coded, Some(size), "{name}");
        }
    }

    #[test]
    fn an_h264_size_change_inside_the_stream_is_refused() {
        let file = corpus("h264_aac_320x240_3s_faststart.mp4");
        let track = track_in(&file).unwrap();
        let Codec::H264 { sps, .. } = &track.codec else {
            panic!("H.264")
        };
        // The same SPS with pic_width_in_mbs_minus1 changed: in a sample, behind a 4-byte
        // length, after the record's own.
        let other = ffmpeg_sps(640, 480);
        let mut sample = (other.len() as u32).to_be_bytes().to_vec();
        sample.extend_from_slice(&other);
        assert_ne!(sps[0], other);
        let err = coded_size(&track.codec, &[&sample]).unwrap_err();
        assert!(err.to_string().contains("changes"), "{err}");
    }

    /// The SPS ffmpeg's x264 writes for a `w`×`h` clip.
    fn ffmpeg_sps(w: u32, h: u32) -> Vec<u8> {
        let dir = tempfile_dir();
        let path = dir.join(format!("sps-{w}x{h}.mp4"));
        let ok = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={w}x{h}:rate=10"))
            .args(["-t", "0.2", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .arg(&path)
            .status()
            .expect("ffmpeg")
            .success();
        assert!(ok);
        let file = std::fs::read(&path).unwrap();
        let track = track_in(&file).unwrap();
        let Codec::H264 { sps, .. } = track.codec else {
            panic!("H.264")
        };
        assert_eq!(h264_sps_size(&sps[0]).unwrap(), (w, h));
        sps[0].clone()
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("media-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_av1_sequence_header_with_timing_and_a_decoder_model_is_read() {
        // seq_profile 0, timing info with equal_picture_interval (uvlc 0), a decoder model
        // (buffer_delay_length 10), one operating point at level 8 (a tier bit) with its
        // parameters, then 12-bit sizes 3839 × 2159.
        let mut bits = String::new();
        bits += "000"; // seq_profile
        bits += "0"; // still_picture
        bits += "0"; // reduced_still_picture_header
        bits += "1"; // timing_info_present_flag
        bits += &"0".repeat(31);
        bits += "1"; // num_units_in_display_tick
        bits += &"0".repeat(31);
        bits += "1"; // time_scale
        bits += "1"; // equal_picture_interval
        bits += "1"; // uvlc: no leading zeros (0)
        bits += "1"; // decoder_model_info_present_flag
        bits += "01001"; // buffer_delay_length_minus_1 = 9
        bits += &"0".repeat(32); // num_units_in_decoding_tick
        bits += "00000"; // buffer_removal_time_length_minus_1
        bits += "00000"; // frame_presentation_time_length_minus_1
        bits += "0"; // initial_display_delay_present_flag
        bits += "00000"; // operating_points_cnt_minus_1
        bits += &"0".repeat(12); // operating_point_idc
        bits += "01000"; // seq_level_idx 8
        bits += "0"; // seq_tier
        bits += "1"; // decoder_model_present_for_this_op
        bits += &"0".repeat(10 + 10 + 1); // delays, low_delay_mode_flag
        bits += "1011"; // frame_width_bits_minus_1 = 11
        bits += "1011"; // frame_height_bits_minus_1 = 11
        bits += &format!("{:012b}", 3839);
        bits += &format!("{:012b}", 2159);
        while !bits.len().is_multiple_of(8) {
            bits += "0";
        }
        let bytes: Vec<u8> = bits
            .as_bytes()
            .chunks(8)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap())
            .collect();
        assert_eq!(av1_sequence_size(&bytes).unwrap(), (3840, 2160));
        // As an OBU with its size field, in a temporal unit after a temporal delimiter.
        let mut unit = vec![0x12, 0x00, 0x0a, bytes.len() as u8];
        unit.extend_from_slice(&bytes);
        assert_eq!(av1(&unit).unwrap(), Some((3840, 2160)));
    }

    #[test]
    fn a_vp9_superframe_is_read_frame_by_frame() {
        // Two frames of 3 and 2 bytes, sizes one byte wide: the marker 0b110_00_001.
        let packet = [1, 2, 3, 4, 5, 0xc1, 3, 2, 0xc1];
        assert_eq!(vp9_frames(&packet), vec![&[1, 2, 3][..], &[4, 5][..]]);
        // A marker whose index does not start with it: one frame.
        let plain = [1, 2, 3, 0xc1];
        assert_eq!(vp9_frames(&plain), vec![&plain[..]]);
    }
}
