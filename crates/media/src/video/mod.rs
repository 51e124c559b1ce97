//! Video, for thumbnails (issue 19, under way): what to read of a video, by range, to decode
//! one frame — never the whole file — and the frame. So far: ISO BMFF (MP4, MOV, M4A)
//! indexes ([`mp4`]) and H.264 ([`h264`]); WebM/Matroska and AV1/VP9 follow the same shape.
//!
//! Input: bytes of the container as the caller reads them (box headers, then the index);
//! output: the video [`Track`] (codec, size, rotation, duration) and a [`FramePlan`] — the
//! byte ranges of the samples to decode for the frame at a time. Uses `Error` and the
//! `mp4-atom` box decoder. Synchronous and pure, like the rest of the engine: the service
//! does the reading (ranged GETs through the guarded fetcher or the store).

pub mod h264;
pub mod mp4;

/// The video codecs a track may carry. Only what a thumbnail needs is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub(crate) table: mp4::SampleTable,
}

/// Where in the video the frame is taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum At {
    /// A fraction of the duration (Misskey's thumbnails: 0.05).
    Fraction(f64),
    Seconds(f64),
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
}

impl FramePlan {
    /// Bytes of every sample to read.
    pub fn bytes(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.size)).sum()
    }
}

/// Samples decoded after the keyframe at most to reach the exact frame (a GOP of 2 s at
/// 60 fps). A longer run decodes the keyframe alone: bounded work whatever the encoder did.
pub const MAX_DECODE_AHEAD: u32 = 120;
