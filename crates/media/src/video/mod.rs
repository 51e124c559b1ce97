//! Video, for thumbnails and posters: what to read of a video, by range, to decode one
//! frame — never the whole file — and the still image of that frame. Containers: ISO BMFF
//! (MP4, MOV, M4A; [`mp4`]) and WebM/Matroska ([`mkv`]); codecs: H.264 ([`h264`]), AV1
//! ([`av1`]), VP9 ([`vp9`]), VP8 key frames ([`vp8`]); the others are refused by [`check`]
//! before any sample is read.
//!
//! The steps, in order: [`mp4::Locator`] (where the index is) → [`mp4::track`] (the video
//! [`Track`]) → [`check`] (a codec this build decodes, a frame within the limits) →
//! [`frame_plan`] (the samples to read) → [`cost`] (memory, for admission) → [`render`]
//! (decode, turn upright, size and encode like a still image). WebM: [`mkv::Locator`] →
//! [`mkv::Locator::track`] → [`check`] → [`mkv::cluster_at`] → [`mkv::cluster_plan`] (on a
//! prefix of the cluster) → [`bounded`] → [`cost`] → [`render`].
//!
//! Input: bytes of the container as the caller reads them (box headers, the index, the
//! samples); output: a [`Track`], a [`FramePlan`], a [`Rendered`] image. Uses `Error`,
//! `Limits`, `Stop`, the still-image steps of the crate root, `transform` (rotation) and the
//! `mp4-atom` box decoder. Synchronous and pure, like the rest of the engine: the service
//! does the reading (ranged GETs through the guarded fetcher or the store).

pub mod av1;
pub mod h264;
pub mod mkv;
pub mod mp4;
pub mod stream;
pub mod vp8;
pub mod vp9;

use image::metadata::Orientation;

use crate::{Error, Limits, Output, Rendered, Stop, Transform};

/// The video codecs a track may carry. Only what a thumbnail needs is kept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Codec {
    /// H.264 / AVC: the parameter sets of the `avcC` box, and the length of the size field
    /// in front of each NAL unit of a sample (1, 2 or 4 bytes).
    H264 {
        /// `profile_idc`: 66 Baseline, 77 Main, 100 High, 110 High 10, 122 High 4:2:2,
        /// 244 High 4:4:4.
        profile: u8,
        sps: Vec<Vec<u8>>,
        pps: Vec<Vec<u8>>,
        nal_length: u8,
    },
    Av1,
    Vp9,
    Vp8,
    Hevc,
    /// Anything else (ProRes, MJPEG…), by its four-character code.
    Other(String),
}

/// The video track of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub codec: Codec,
    /// Coded size, before rotation.
    pub width: u32,
    pub height: u32,
    /// Clockwise degrees the frame is turned for display (0, 90, 180, 270), from the track
    /// header's matrix.
    pub rotation: u16,
    /// Ticks per second of the sample times.
    pub timescale: u32,
    /// In `timescale` ticks (from the media header, else the sum of the sample durations).
    pub duration: u64,
    /// The coded size the bitstream's own headers state, once its samples are read
    /// ([`verified`]): what the decoder allocates, whatever the container claims.
    pub stream: Option<(u32, u32)>,
    pub(crate) table: Table,
}

impl Track {
    /// A track that only renders frames (the samples come with the job): its codec, coded
    /// size and rotation, no sample table.
    pub fn for_frames(codec: Codec, width: u32, height: u32, rotation: u16) -> Track {
        Track {
            codec,
            width,
            height,
            rotation,
            timescale: 1,
            duration: 0,
            stream: None,
            table: Table::Mp4(mp4::SampleTable::default()),
        }
    }

    /// The size decoding is priced and limited at: per dimension, the larger of the
    /// container's claim and the stream's own ([`Track::stream`]).
    pub fn decoded_size(&self) -> (u32, u32) {
        let (sw, sh) = self.stream.unwrap_or((0, 0));
        (self.width.max(sw), self.height.max(sh))
    }
}

/// Where a track's samples are described: an MP4 sample table, or a Matroska index (the
/// cues; the blocks are read from their cluster).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Table {
    Mp4(mp4::SampleTable),
    Matroska(mkv::Index),
}

/// Where in the video the frame is taken (integers, so that a time can be part of a
/// cache key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum At {
    /// Millionths of the duration (Misskey's thumbnails: 50 000, 5 %); over a million is
    /// the end.
    Millionths(u32),
    /// Milliseconds from the start; past the end is the last frame.
    Millis(u64),
}

/// One sample (a coded frame) of the track: where its bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// 0-based, in decode order.
    pub index: u32,
    pub offset: u64,
    pub size: u32,
    /// A sync sample (keyframe): decoding may start here.
    pub keyframe: bool,
}

/// What to read and decode for one frame: from the keyframe at or before the target
/// through the target itself, in decode order. The last decoded frame is the thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramePlan {
    pub samples: Vec<Sample>,
    /// The target was further than [`MAX_DECODE_AHEAD`] samples after its keyframe: the
    /// keyframe alone is decoded (the frame is then up to a GOP early).
    pub keyframe_only: bool,
    /// For each sample, whether its picture is shown before the frame (the last sample's:
    /// `false`). With reordering (B-frames) the last sample decoded is not the last shown:
    /// the frame is the picture the decoder gives out after those ([`FramePlan::picture`]).
    pub shown_before: Vec<bool>,
}

impl FramePlan {
    /// Which of the pictures the decoder gives out (0-based, in presentation order) is the
    /// frame, when every sample is decoded.
    pub fn picture(&self) -> usize {
        picture(&self.shown_before)
    }

    /// Bytes of every sample to read.
    pub fn bytes(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.size)).sum()
    }
}

/// Samples decoded after the keyframe at most to reach the exact frame (a GOP of 2 s at
/// 60 fps). A longer run decodes the keyframe alone: bounded work whatever the encoder did.
pub const MAX_DECODE_AHEAD: u32 = 120;

/// The containers a still can be taken from, by their sniffed format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// MP4, MOV, M4V, 3GP (and M4A, which holds no video): read with [`mp4`].
    IsoBmff,
    /// WebM and Matroska: read with [`mkv`].
    Matroska,
}

/// The container of a sniffed format, when it is one a video may be in.
pub fn container(format: crate::Format) -> Option<Container> {
    use crate::Format as F;
    match format {
        F::QuickTime | F::Mp4Video | F::Mp4Audio | F::M4v | F::M4a | F::ThreeGpp | F::ThreeGpp2 => {
            Some(Container::IsoBmff)
        }
        F::WebmVideo | F::WebmAudio => Some(Container::Matroska),
        _ => None,
    }
}

/// The time of Misskey's own video thumbnails: 5 % of the duration.
pub const MISSKEY_FRAME: At = At::Millionths(50_000);

/// Refuses, before any sample is read, a track this build cannot make a still of: a codec
/// it does not decode (`Error::Unsupported`), no size, or a frame over `limits.max_pixels`
/// (`Error::TooLarge`).
pub fn check(track: &Track, limits: &Limits) -> Result<(), Error> {
    match &track.codec {
        Codec::H264 { profile, .. } => h264::supported(*profile)?,
        Codec::Av1 => {}
        Codec::Vp9 => {}
        Codec::Vp8 => {}
        Codec::Hevc => return Err(Error::Unsupported("HEVC video")),
        Codec::Other(_) => return Err(Error::Unsupported("this video codec")),
    }
    if track.width == 0 || track.height == 0 {
        return Err(Error::Invalid("a video track without a size".into()));
    }
    let (width, height) = track.decoded_size();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(Error::TooLarge(format!(
            "{width}×{height} video frames, over {} pixels",
            limits.max_pixels
        )));
    }
    Ok(())
}

/// The samples to read for the frame at `at` of an MP4 track: [`mp4::plan`], then
/// [`bounded`].
pub fn frame_plan(track: &Track, at: At, limits: &Limits) -> Result<FramePlan, Error> {
    Ok(bounded(mp4::plan(track, at, u64::MAX)?, track, limits))
}

/// A plan decoding at most `limits.max_total_pixels` worth of pictures (beyond it, the
/// keyframe alone), and only the keyframe of a codec decoded from key frames alone (VP8).
pub fn bounded(plan: FramePlan, track: &Track, limits: &Limits) -> FramePlan {
    let (width, height) = track.decoded_size();
    let pixels = u64::from(width) * u64::from(height);
    let keyframes_only = track.codec == Codec::Vp8;
    if !keyframes_only
        && (plan.samples.len() as u64).saturating_mul(pixels) <= limits.max_total_pixels
    {
        return plan;
    }
    FramePlan {
        samples: plan.samples.into_iter().take(1).collect(),
        keyframe_only: true,
        shown_before: vec![false],
    }
}

/// The track and plan as the samples' own headers tell them ([`stream::coded_size`], the
/// larger of it and the container's claim deciding): the frame size checked against the
/// limits again, the plan bounded again (`samples`: the plan's, in its order; keep the first
/// `plan.samples.len()` of them). An H.264 stream whose parameter sets change the picture
/// size is refused here.
pub fn verified(
    mut track: Track,
    plan: FramePlan,
    samples: &[&[u8]],
    limits: &Limits,
) -> Result<(Track, FramePlan), Error> {
    track.stream = stream::coded_size(&track.codec, samples)?;
    check(&track, limits)?;
    let plan = bounded(plan, &track, limits);
    Ok((track, plan))
}

/// Reference pictures an H.264 decoder may hold (the level maximum, 16) and the one being
/// decoded, plus its output copy.
const DECODER_PICTURES: u64 = 18;

/// Peak memory of [`render`] for `track`, in bytes (an upper estimate): the decoder's
/// pictures (4:2:0, 1.5 bytes a pixel), the RGB frame and its upright copy, the output.
pub fn cost(track: &Track, transform: Transform, output: Option<Output>) -> u64 {
    let (width, height) = track.decoded_size();
    let pixels = u64::from(width) * u64::from(height);
    let (w, h) = match track.rotation {
        90 | 270 => (height, width),
        _ => (width, height),
    };
    let (ow, oh) = transform.target(w, h);
    let out = u64::from(ow) * u64::from(oh);
    let avif = if matches!(output, Some(Output::Avif { .. })) {
        out * 8
    } else {
        0
    };
    pixels * 3 / 2 * DECODER_PICTURES + pixels * 3 * 2 + out * 8 + avif
}

/// The displayed size: the coded size turned by the rotation.
pub fn upright(track: &Track) -> (u32, u32) {
    match track.rotation {
        90 | 270 => (track.height, track.width),
        _ => (track.width, track.height),
    }
}

/// The index of the frame among the pictures given out, when samples are decoded whose
/// pictures are `shown_before` the frame or not.
fn picture(shown_before: &[bool]) -> usize {
    shown_before.iter().filter(|&&b| b).count()
}

/// The still image of the frame of a plan: `samples` (the plan's, in its order) decoded,
/// the frame kept (`shown_before`: the plan's), turned upright by the track's rotation, then sized, placed and encoded like
/// the first frame of an image for `transform` (`output`: the store mode's encoding, else
/// the transform's own). Never panics.
pub fn render(
    track: &Track,
    samples: &[&[u8]],
    shown_before: &[bool],
    transform: Transform,
    output: Option<Output>,
    stop: &Stop,
) -> Result<Rendered, Error> {
    let frame = match &track.codec {
        Codec::H264 { .. } => h264::decode(&track.codec, samples, shown_before, stop)?,
        Codec::Av1 => av1::decode(samples, picture(shown_before), stop)?,
        Codec::Vp9 => vp9::decode(samples, picture(shown_before), stop)?,
        Codec::Vp8 => vp8::decode(samples)?,
        _ => return Err(Error::Unsupported("this video codec")),
    };
    stop.check()?;
    let orientation = match track.rotation {
        90 => Orientation::Rotate90,
        180 => Orientation::Rotate180,
        270 => Orientation::Rotate270,
        _ => Orientation::NoTransforms,
    };
    let frame = crate::transform::orient(frame, orientation)?;
    stop.check()?;
    crate::still(frame, transform, output)
}

/// Whether a file starts as WebM/Matroska does (an EBML header).
fn is_matroska(file: &[u8]) -> bool {
    file.starts_with(&[0x1A, 0x45, 0xDF, 0xA3])
}

/// The video track of a whole file in memory, MP4/MOV or WebM/Matroska.
pub fn track_in(file: &[u8]) -> Result<Track, Error> {
    let all = file.len() as u64;
    if is_matroska(file) {
        mkv::track_in(file, all)
    } else {
        mp4::track_in(file, all)
    }
}

/// The still of the frame at `at` of a whole file in memory (the `convert` command): the
/// same steps as a ranged reader, each read a slice.
pub fn render_file(
    file: &[u8],
    at: At,
    transform: Transform,
    output: Option<Output>,
    limits: &Limits,
    stop: &Stop,
) -> Result<Rendered, Error> {
    let track = track_in(file)?;
    check(&track, limits)?;
    let (plan, samples) = samples_in(file, &track, at)?;
    let (track, plan) = verified(track, plan, &samples, limits)?;
    let samples = samples.get(..plan.samples.len()).unwrap_or_default();
    render(&track, samples, &plan.shown_before, transform, output, stop)
}

/// The plan for the frame at `at` of a whole file in memory, and its samples (slices of the
/// file), not yet bounded by the limits.
fn samples_in<'f>(
    file: &'f [u8],
    track: &Track,
    at: At,
) -> Result<(FramePlan, Vec<&'f [u8]>), Error> {
    let plan = if is_matroska(file) {
        mkv::plan_in(file, track, at)?
    } else {
        mp4::plan(track, at, u64::MAX)?
    };
    let samples = plan
        .samples
        .iter()
        .map(|s| {
            let start = usize::try_from(s.offset).unwrap_or(usize::MAX);
            file.get(start..start.saturating_add(s.size as usize))
                .ok_or_else(|| Error::Invalid("a video sample past the end of the file".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((plan, samples))
}

/// A file of `shared/corpus/video/` for the tests of the video modules (empty when missing:
/// the test then fails on it).
#[cfg(test)]
pub(crate) fn corpus(name: &str) -> Vec<u8> {
    crate::test_corpus(&format!("video/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every MP4/MOV/WebM of the corpus: a still of the size its upright frame gives inside
    /// 498×422 (decoded again with `image`'s own WebP decoder), or the refusal the matrix
    /// of `docs/video.md` names.
    #[test]
    fn the_corpus_gives_the_matrix() {
        type Outcome = Result<(u32, u32), &'static str>;
        let still = |w, h| Ok((w, h));
        let unsupported = Err("unsupported");
        let cases: [(&str, Outcome); 19] = [
            ("h264_640x360_2s.mp4", still(498, 280)),
            ("h264_1920x1080_1s.mp4", still(498, 280)),
            ("h264_4096x2160_1s_solid.mp4", still(498, 263)),
            ("h264_320x240_3s_moov_at_end.mp4", still(320, 240)),
            ("h264_aac_320x240_3s_faststart.mp4", still(320, 240)),
            ("h264_320x240_rotate90_metadata.mp4", still(240, 320)),
            ("h264_black_first_second.mp4", still(320, 240)),
            ("h264_single_frame.mp4", still(320, 240)),
            ("h264_high10_320x240.mp4", unsupported),
            ("h264_yuv444_odd_321x241.mp4", unsupported),
            ("hevc_320x240_3s.mp4", unsupported),
            ("hevc_main10_320x240.mov", unsupported),
            ("prores_proxy_320x240_1s.mov", unsupported),
            ("av1_320x240_3s.mp4", still(320, 240)),
            ("av1_svt_320x240_3s.webm", still(320, 240)),
            ("vp9_opus_320x240_3s.webm", still(320, 240)),
            ("vp9_alpha_320x240_2s.webm", still(320, 240)),
            ("vp8_320x240_3s.webm", still(320, 240)),
            ("audio_only_aac_named.mp4", unsupported),
        ];
        for (name, want) in cases {
            let file = corpus(name);
            let got = render_file(
                &file,
                MISSKEY_FRAME,
                Transform::Static,
                None,
                &Limits::default(),
                &Stop::default(),
            );
            let got = match got {
                Ok(r) => {
                    assert_eq!(r.format, crate::Format::Webp, "{name}");
                    let img =
                        image::load_from_memory_with_format(&r.bytes, image::ImageFormat::WebP)
                            .unwrap_or_else(|e| panic!("{name}: {e}"));
                    Ok((img.width(), img.height()))
                }
                Err(Error::Unsupported(_)) => Err("unsupported"),
                Err(e) => panic!("{name}: {e}"),
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn frames_over_the_pixel_limit_are_refused_before_decoding() {
        let file = corpus("h264_4096x2160_1s_solid.mp4");
        let limits = Limits {
            max_pixels: 4096 * 2160 - 1,
            ..Limits::default()
        };
        let got = render_file(
            &file,
            MISSKEY_FRAME,
            Transform::Static,
            None,
            &limits,
            &Stop::default(),
        );
        assert!(matches!(got, Err(Error::TooLarge(_))), "{got:?}");
    }

    #[test]
    fn decoding_ahead_is_bounded_by_the_total_pixel_limit() {
        let track = mp4::track_in(&corpus("h264_black_first_second.mp4"), 1 << 20).unwrap();
        let at = At::Millis(2_000);
        let exact = frame_plan(&track, at, &Limits::default()).unwrap();
        assert!(exact.samples.len() > 1 && !exact.keyframe_only);
        let tight = Limits {
            max_total_pixels: 320 * 240,
            ..Limits::default()
        };
        let bounded = frame_plan(&track, at, &tight).unwrap();
        assert_eq!(bounded.samples.len(), 1);
        assert!(bounded.keyframe_only && bounded.samples[0].keyframe);
    }
}
