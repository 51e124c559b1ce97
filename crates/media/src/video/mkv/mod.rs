//! WebM and Matroska: where the index is, what the video track is, and which bytes hold the
//! frames of one time.
//!
//! - [`Locator`] walks the EBML header, the `Segment` and its top-level elements by their
//!   headers, following the `SeekHead`, and asks for the bodies of `Info`, `Tracks` and
//!   `Cues` only — wherever they are (`Cues` usually after the media). [`Locator::track`]
//!   decodes them: the first video track (codec, size), the duration, the cue points.
//! - [`cluster_at`] names the `Cluster` holding the keyframe at or before a time (from the
//!   cues; without cues, the first cluster); [`cluster_plan`] reads the blocks of a prefix
//!   of that cluster and gives the [`FramePlan`]: the keyframe before the time and the
//!   frames up to it, as byte ranges of the file.
//!
//! Written here rather than with a demuxer crate: the Matroska crates read from a
//! `Read + Seek` and seek to the first block at or after a time (not the keyframe before
//! it), and read every top-level element on open; this must work on pieces read by range
//! and stop at the first element it does not need. The EBML it reads is small: variable
//! length integers, unsigned integers, floats, strings and block headers.
//!
//! Input: element headers, element bodies, a cluster prefix; output: [`Step`]s, a [`Track`],
//! a [`FramePlan`]. Every size and offset is checked; a damaged or hostile file is an
//! `Error::Invalid`, an index over the caller's limit an `Error::TooLarge`. Uses `Error`.

mod ebml;

use self::ebml::*;
use super::{At, Codec, FramePlan, Sample, Table, Track, MAX_DECODE_AHEAD};
use crate::Error;

/// Bytes to read for one element header: a 4-byte ID and an 8-byte size at most.
pub const HEADER_LEN: u64 = 12;

/// Top-level elements walked at most (headers read) before the index must be complete.
const MAX_ELEMENTS: u32 = 256;

fn broken(what: &str) -> Error {
    Error::Invalid(format!("damaged WebM: {what}"))
}

/// What to read next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Up to `len` bytes at `offset` (fewer at the end of the file): hand them to
    /// [`Locator::feed`].
    Read { offset: u64, len: u64 },
    /// The index is complete: call [`Locator::track`].
    Done,
}

/// The parts of the index a still needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    SeekHead,
    Info,
    Tracks,
    Cues,
}

impl Part {
    fn of(id: u32) -> Option<Part> {
        match id {
            SEEK_HEAD => Some(Part::SeekHead),
            INFO => Some(Part::Info),
            TRACKS => Some(Part::Tracks),
            CUES => Some(Part::Cues),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The EBML header at 0, then the `Segment` header after it.
    Ebml,
    Segment(u64),
    /// A top-level element header at this offset (walking, or where the SeekHead points).
    Header(u64),
    /// The body of a part.
    Body(Part),
    Finished,
}

/// Finds and reads the index of a WebM/Matroska file.
#[derive(Debug, Clone)]
pub struct Locator {
    total: Option<u64>,
    max_index: u64,
    read: u64,
    elements: u32,
    pending: Pending,
    /// Where the segment's data starts: every position in the file is relative to it.
    segment: u64,
    /// The next top-level element of the linear walk; `None` once it reached a cluster.
    walk: Option<u64>,
    first_cluster: Option<u64>,
    /// Where the SeekHead says each part is (absolute).
    seek: Vec<(Part, u64)>,
    seek_head: bool,
    info: Option<Vec<u8>>,
    tracks: Option<Vec<u8>>,
    cues: Option<Vec<u8>>,
}

impl Locator {
    /// `total`: the file's length when known; `max_index`: the most bytes of index bodies
    /// accepted.
    pub fn new(total: Option<u64>, max_index: u64) -> (Locator, Step) {
        let locator = Locator {
            total,
            max_index,
            read: 0,
            elements: 0,
            pending: Pending::Ebml,
            segment: 0,
            walk: None,
            first_cluster: None,
            seek: Vec::new(),
            seek_head: false,
            info: None,
            tracks: None,
            cues: None,
        };
        (
            locator,
            Step::Read {
                offset: 0,
                len: HEADER_LEN,
            },
        )
    }

    fn header_at(&mut self, offset: u64, pending: fn(u64) -> Pending) -> Result<Step, Error> {
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return Err(broken("too many top-level elements before the index"));
        }
        if self.total.is_some_and(|t| offset >= t) {
            return self.next_or_done(true);
        }
        self.pending = pending(offset);
        Ok(Step::Read {
            offset,
            len: HEADER_LEN,
        })
    }

    /// The bytes read for the last [`Step::Read`] → the next step.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Step, Error> {
        match self.pending {
            Pending::Ebml => {
                let (id, size, len) = header(bytes).ok_or_else(|| broken("EBML header"))?;
                let size = size.ok_or_else(|| broken("EBML header size"))?;
                if id != EBML {
                    return Err(Error::Invalid("not a WebM or Matroska file".into()));
                }
                let next = (len as u64).saturating_add(size);
                self.header_at(next, Pending::Segment)
            }
            Pending::Segment(at) => {
                let (id, _, len) = header(bytes).ok_or_else(|| broken("segment header"))?;
                if id != SEGMENT {
                    return Err(broken("no segment after the EBML header"));
                }
                self.segment = at + len as u64;
                self.walk = Some(self.segment);
                self.header_at(self.segment, Pending::Header)
            }
            Pending::Header(at) => {
                let Some((id, size, len)) = header(bytes) else {
                    // The end of the file (or of what exists of it).
                    return self.next_or_done(true);
                };
                let linear = self.walk == Some(at);
                if id == CLUSTER {
                    self.first_cluster.get_or_insert(at);
                    if linear {
                        self.walk = None;
                    }
                    return self.next_or_done(false);
                }
                let size = size.ok_or_else(|| broken("a top-level element of unknown size"))?;
                let body = at + len as u64;
                if linear {
                    self.walk = Some(body.saturating_add(size));
                }
                match Part::of(id) {
                    Some(part) if !self.has(part) => {
                        self.read = self.read.saturating_add(size);
                        if self.read > self.max_index {
                            return Err(Error::TooLarge(format!(
                                "a WebM index over {} bytes",
                                self.max_index
                            )));
                        }
                        self.pending = Pending::Body(part);
                        Ok(Step::Read {
                            offset: body,
                            len: size,
                        })
                    }
                    _ => self.next_or_done(false),
                }
            }
            Pending::Body(part) => {
                let body = bytes.to_vec();
                match part {
                    Part::SeekHead => {
                        self.seek_head = true;
                        self.seek_entries(&body);
                    }
                    Part::Info => self.info = Some(body),
                    Part::Tracks => self.tracks = Some(body),
                    Part::Cues => self.cues = Some(body),
                }
                self.next_or_done(false)
            }
            Pending::Finished => Ok(Step::Done),
        }
    }

    fn has(&self, part: Part) -> bool {
        match part {
            Part::SeekHead => self.seek_head,
            Part::Info => self.info.is_some(),
            Part::Tracks => self.tracks.is_some(),
            Part::Cues => self.cues.is_some(),
        }
    }

    fn seek_entries(&mut self, body: &[u8]) {
        for (id, seek) in children(body) {
            if id != SEEK {
                continue;
            }
            let (mut target, mut position) = (None, None);
            for (child, value) in children(seek) {
                match child {
                    SEEK_ID => target = uint(value).and_then(|v| u32::try_from(v).ok()),
                    SEEK_POSITION => position = uint(value),
                    _ => {}
                }
            }
            if let (Some(part), Some(p)) = (target.and_then(Part::of), position) {
                self.seek.push((part, self.segment.saturating_add(p)));
            }
        }
    }

    /// The next header to read: a part the SeekHead locates, else the linear walk (until
    /// a cluster), else done. `ended`: the walk reached the end of the file.
    fn next_or_done(&mut self, ended: bool) -> Result<Step, Error> {
        if ended {
            self.walk = None;
        }
        let wanted = self
            .seek
            .iter()
            .find(|(part, _)| *part != Part::SeekHead && !self.has(*part))
            .map(|&(_, at)| at);
        if let Some(at) = wanted {
            // Each is visited once: forget it whatever it turns out to be.
            self.seek.retain(|&(_, p)| p != at);
            return self.header_at(at, Pending::Header);
        }
        let complete = self.info.is_some() && self.tracks.is_some();
        match self.walk {
            Some(next) if !(complete && self.cues.is_some()) => {
                self.header_at(next, Pending::Header)
            }
            _ => {
                self.pending = Pending::Finished;
                Ok(Step::Done)
            }
        }
    }

    /// The first video track of the index read.
    pub fn track(self) -> Result<Track, Error> {
        let info = self.info.ok_or_else(|| broken("no segment info"))?;
        let tracks = self.tracks.ok_or_else(|| broken("no tracks"))?;
        let mut scale = 1_000_000u64;
        let mut duration = None;
        for (id, body) in children(&info) {
            match id {
                TIMESTAMP_SCALE => scale = uint(body).filter(|&s| s > 0).unwrap_or(scale),
                DURATION => duration = float(body),
                _ => {}
            }
        }
        let video = children(&tracks)
            .filter(|(id, _)| *id == TRACK_ENTRY)
            .map(|(_, entry)| entry)
            .find(|entry| {
                children(entry).any(|(id, body)| id == TRACK_TYPE && uint(body) == Some(1))
            })
            .ok_or(Error::Unsupported("a file without a video track"))?;
        let (mut number, mut codec, mut width, mut height) = (None, String::new(), 0, 0);
        for (id, body) in children(video) {
            match id {
                TRACK_NUMBER => number = uint(body),
                CODEC_ID => codec = String::from_utf8_lossy(body).into_owned(),
                VIDEO => {
                    for (id, body) in children(body) {
                        let v = || uint(body).and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
                        match id {
                            PIXEL_WIDTH => width = v(),
                            PIXEL_HEIGHT => height = v(),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let number = number.ok_or_else(|| broken("a track without a number"))?;
        let cues = self
            .cues
            .as_deref()
            .map(|c| cue_points(c, number, self.segment))
            .unwrap_or_default();
        // Block times are in `scale` nanoseconds; the track counts milliseconds.
        let to_ms = |t: f64| t * scale as f64 / 1e6;
        let duration = duration
            .filter(|d| d.is_finite() && *d >= 0.0)
            .map_or(0, |d| to_ms(d) as u64);
        let codec = match codec.as_str() {
            "V_VP9" => Codec::Vp9,
            "V_VP8" => Codec::Vp8,
            "V_AV1" => Codec::Av1,
            "V_MPEGH/ISO/HEVC" => Codec::Hevc,
            other => Codec::Other(other.to_owned()),
        };
        Ok(Track {
            codec,
            width,
            height,
            rotation: 0,
            timescale: 1000,
            duration,
            stream: None,
            table: Table::Matroska(Index {
                track: number,
                scale,
                cues,
                first_cluster: self.first_cluster,
            }),
        })
    }
}

/// The cue points of track `number`: (time in the segment's scale, cluster offset).
fn cue_points(cues: &[u8], number: u64, segment: u64) -> Vec<(u64, u64)> {
    let mut points = Vec::new();
    for (id, point) in children(cues) {
        if id != CUE_POINT {
            continue;
        }
        let mut time = None;
        for (id, body) in children(point) {
            match id {
                CUE_TIME => time = uint(body),
                CUE_TRACK_POSITIONS => {
                    let (mut track, mut cluster) = (None, None);
                    for (id, body) in children(body) {
                        match id {
                            CUE_TRACK => track = uint(body),
                            CUE_CLUSTER_POSITION => cluster = uint(body),
                            _ => {}
                        }
                    }
                    if let (Some(t), Some(c), Some(time)) = (track, cluster, time) {
                        if t == number {
                            points.push((time, segment.saturating_add(c)));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    points.sort_unstable();
    points
}

/// The index of a Matroska track: enough to find the cluster of a time.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Index {
    /// The video track's number (blocks name it).
    track: u64,
    /// Nanoseconds per timestamp unit.
    scale: u64,
    /// Cue points of the video track: (time, absolute cluster offset), by time.
    cues: Vec<(u64, u64)>,
    first_cluster: Option<u64>,
}

fn index(track: &Track) -> Result<&Index, Error> {
    match &track.table {
        Table::Matroska(index) => Ok(index),
        Table::Mp4(_) => Err(Error::Unsupported("an MP4 track read as WebM")),
    }
}

/// The time `at` in the track's timestamp units.
fn units(track: &Track, index: &Index, at: At) -> u64 {
    let ms = match at {
        At::Millionths(m) => track.duration as f64 * f64::from(m.min(1_000_000)) / 1e6,
        At::Millis(ms) => ms as f64,
    };
    (ms * 1e6 / index.scale as f64) as u64
}

/// Where the cluster to read starts: the one of the last cue point at or before `at`
/// (cue points sit on keyframes), else the first cluster.
pub fn cluster_at(track: &Track, at: At) -> Result<u64, Error> {
    let index = index(track)?;
    let t = units(track, index, at);
    index
        .cues
        .iter()
        .rev()
        .find(|(time, _)| *time <= t)
        .or(index.cues.first())
        .map(|&(_, offset)| offset)
        .or(index.first_cluster)
        .ok_or(Error::Unsupported("a WebM without clusters"))
}

/// The frame plan for `at` from the start of a cluster: `bytes` are the file's bytes from
/// `offset` (the cluster's header first), possibly only a prefix of it. `Ok(None)`: the
/// prefix ends before the frame at `at` was found; read more and ask again.
pub fn cluster_plan(
    track: &Track,
    at: At,
    offset: u64,
    bytes: &[u8],
) -> Result<Option<FramePlan>, Error> {
    let index = index(track)?;
    let t = i64::try_from(units(track, index, at)).unwrap_or(i64::MAX);
    let (id, size, len) = header(bytes).ok_or_else(|| broken("cluster header"))?;
    if id != CLUSTER {
        return Err(broken("the cue does not point at a cluster"));
    }
    let end = size
        .and_then(|s| usize::try_from(s).ok())
        .and_then(|s| s.checked_add(len))
        .unwrap_or(usize::MAX);
    let complete = end <= bytes.len();
    let body = bytes.get(len..end.min(bytes.len())).unwrap_or_default();
    let mut cluster_time = 0i64;
    let mut frames: Vec<Block> = Vec::new();
    let mut passed = false;
    for (id, start, element) in children_at(body, len) {
        let found = match id {
            TIMESTAMP => {
                cluster_time = uint(element)
                    .and_then(|v| i64::try_from(v).ok())
                    .unwrap_or(0);
                None
            }
            SIMPLE_BLOCK => block(element, start, index.track, None)?,
            BLOCK_GROUP => {
                let referenced = children(element).any(|(id, _)| id == REFERENCE_BLOCK);
                match children_at(element, start).find(|(id, _, _)| *id == BLOCK) {
                    Some((_, at, body)) => block(body, at, index.track, Some(!referenced))?,
                    None => None,
                }
            }
            _ => None,
        };
        if let Some(mut frame) = found {
            frame.time = frame.time.saturating_add(cluster_time);
            let after = frame.time > t;
            frames.push(frame);
            if after {
                passed = true;
                break;
            }
        }
    }
    if !passed && !complete {
        return Ok(None);
    }
    // Blocks are in decode order, which for these codecs is presentation order.
    let target = frames.iter().rposition(|f| f.time <= t).unwrap_or(0);
    let keyframe = frames
        .get(..=target)
        .and_then(|before| before.iter().rposition(|f| f.key))
        .unwrap_or(0);
    let keyframe_only = target - keyframe > MAX_DECODE_AHEAD as usize;
    let last = if keyframe_only { keyframe } else { target };
    let samples: Vec<Sample> = frames
        .get(keyframe..=last)
        .ok_or_else(|| broken("a cluster without frames of its track"))?
        .iter()
        .zip(keyframe..)
        .map(|(f, i)| Sample {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            offset: offset.saturating_add(f.start as u64),
            size: f.size,
            keyframe: f.key,
        })
        .collect();
    // Every frame decoded before the last is shown before it.
    let mut shown_before = vec![true; samples.len()];
    if let Some(last) = shown_before.last_mut() {
        *last = false;
    }
    Ok(Some(FramePlan {
        samples,
        keyframe_only,
        shown_before,
    }))
}

/// A frame of the video track in a cluster: its time relative to the cluster's, whether
/// it is a keyframe, and where its bytes are (in the bytes handed to [`cluster_plan`]).
struct Block {
    time: i64,
    key: bool,
    start: usize,
    size: u32,
}

/// The frame of a `SimpleBlock` or `Block` body starting at `start`, if it is of `track`.
/// `key`: a `Block`'s keyframe flag (from its group); a `SimpleBlock` carries its own.
fn block(body: &[u8], start: usize, track: u64, key: Option<bool>) -> Result<Option<Block>, Error> {
    let (number, n) = vint(body, false).ok_or_else(|| broken("block header"))?;
    if number != track {
        return Ok(None);
    }
    let Some(&[hi, lo, flags]) = body.get(n..n + 3) else {
        return Err(broken("block header"));
    };
    if flags & 0x06 != 0 {
        return Err(Error::Unsupported("laced video blocks"));
    }
    let size = u32::try_from(body.len() - (n + 3)).map_err(|_| broken("block size"))?;
    Ok(Some(Block {
        time: i64::from(i16::from_be_bytes([hi, lo])),
        key: key.unwrap_or(flags & 0x80 != 0),
        start: start + n + 3,
        size,
    }))
}

/// The track of a whole file in memory (the `convert` command, tests): the same steps as a
/// ranged reader, each read a slice.
pub fn track_in(file: &[u8], max_index: u64) -> Result<Track, Error> {
    let (mut locator, mut step) = Locator::new(Some(file.len() as u64), max_index);
    while let Step::Read { offset, len } = step {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(file.len());
        let end = usize::try_from(offset.saturating_add(len))
            .unwrap_or(usize::MAX)
            .min(file.len());
        step = locator.feed(file.get(start..end).unwrap_or_default())?;
    }
    locator.track()
}

/// The frame plan for `at` of a whole file in memory.
pub fn plan_in(file: &[u8], track: &Track, at: At) -> Result<FramePlan, Error> {
    let offset = cluster_at(track, at)?;
    let from = file
        .get(usize::try_from(offset).unwrap_or(usize::MAX)..)
        .ok_or_else(|| broken("a cue past the end of the file"))?;
    cluster_plan(track, at, offset, from)?.ok_or_else(|| broken("a cluster cut off"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::corpus;

    #[test]
    fn the_corpus_webm_files_give_their_track_and_plan() {
        for (name, codec) in [
            ("vp9_opus_320x240_3s.webm", Codec::Vp9),
            ("vp8_320x240_3s.webm", Codec::Vp8),
            ("vp9_alpha_320x240_2s.webm", Codec::Vp9),
            ("av1_svt_320x240_3s.webm", Codec::Av1),
        ] {
            let file = corpus(name);
            let t = track_in(&file, 1 << 20).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                (t.codec.clone(), t.width, t.height),
                (codec, 320, 240),
                "{name}"
            );
            assert!(
                t.duration >= 1900 && t.duration <= 3100,
                "{name}: {} ms",
                t.duration
            );
            let p = plan_in(&file, &t, At::Millionths(50_000))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                p.samples[0].keyframe,
                "{name}: decoding starts at a keyframe"
            );
            // 5 % of 3 s at 25 fps: the fourth frame, decoded from the first.
            assert!(
                p.samples.len() >= 3 && p.samples.len() <= 5,
                "{name}: {}",
                p.samples.len()
            );
            for s in &p.samples {
                assert!(s.offset + u64::from(s.size) <= file.len() as u64, "{name}");
            }
            let late =
                plan_in(&file, &t, At::Millis(2_500)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(late.samples.last().map(|s| s.index) > p.samples.last().map(|s| s.index));
        }
    }

    /// Thousands of damaged copies of the corpus files (bytes changed in the index and the
    /// first cluster, cut at any length): every one is read or refused, none panics (a
    /// panic fails the test). The fuzz target `mkv_index` does the same at length.
    #[test]
    fn damaged_files_are_refused_without_panicking() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for name in ["vp9_opus_320x240_3s.webm", "av1_svt_320x240_3s.webm"] {
            let file = corpus(name);
            for round in 0..1500 {
                let mut bytes = file.clone();
                let span = bytes.len().min(8192) as u64;
                for _ in 0..(1 + next() % 4) {
                    let at = (next() % span) as usize;
                    bytes[at] = next() as u8;
                }
                if round % 3 == 0 {
                    bytes.truncate((next() % bytes.len() as u64) as usize);
                }
                if let Ok(t) = track_in(&bytes, 1 << 20) {
                    let _ = plan_in(&bytes, &t, At::Millionths(50_000));
                    let _ = plan_in(&bytes, &t, At::Millis(u64::MAX));
                }
            }
        }
    }

    #[test]
    fn hostile_headers_are_refused_at_once() {
        // Not EBML; an EBML header without a segment; a segment of endless voids.
        assert!(track_in(b"\x89PNG\r\n\x1a\n0000", 1 << 20).is_err());
        assert!(track_in(b"\x1a\x45\xdf\xa3\x80\x42\x86\x81\x01", 1 << 20).is_err());
        let mut voids =
            b"\x1a\x45\xdf\xa3\x80\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff".to_vec();
        for _ in 0..10_000 {
            voids.extend_from_slice(b"\xec\x80");
        }
        assert!(matches!(track_in(&voids, 1 << 20), Err(Error::Invalid(_))));
        // An index body claiming more than the limit.
        let mut big =
            b"\x1a\x45\xdf\xa3\x80\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff".to_vec();
        big.extend_from_slice(b"\x15\x49\xa9\x66\x01\x00\x00\x00\x10\x00\x00\x00");
        assert!(matches!(track_in(&big, 1 << 20), Err(Error::TooLarge(_))));
    }
}
