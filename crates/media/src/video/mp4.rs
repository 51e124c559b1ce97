//! ISO BMFF (MP4, MOV, M4A): where the index (`moov`) is, what its video track is, and which
//! bytes hold the samples of one frame.
//!
//! - [`Locator`] walks the top-level boxes by their headers alone (16 bytes each), so a
//!   `moov` after a large `mdat` is found with a few small reads, not by reading the media.
//!   Written here rather than with a library: it is the one piece that must work on headers
//!   read by range, and it is a dozen lines of box arithmetic.
//! - [`track`] decodes the `moov` box with `mp4-atom` (its nesting bounded first by
//!   [`crate::bmff`]) and keeps the first video track: codec,
//!   size, rotation, duration and its sample table.
//! - [`plan`] turns a time into the samples to decode: the keyframe at or before it and the
//!   samples up to it. The arithmetic over the tables (`stts`, `stss`, `stsc`, `stco`/`co64`,
//!   `stsz`) is done per table entry, never per claimed sample: an entry claiming four
//!   billion samples costs one step.
//!
//! Input: header bytes, the `moov` bytes; output: [`Step`]s, a [`Track`], a [`FramePlan`].
//! Every count and offset is checked; a damaged or hostile index is an `Error::Invalid`, an
//! index or a frame over the caller's byte limits an `Error::TooLarge`. Uses `Error` and
//! `mp4-atom`.

use std::io::Cursor;

use mp4_atom::{Decode, Moov, StszSamples};

use super::{At, Codec, FramePlan, Sample, Table, Track, MAX_DECODE_AHEAD};
use crate::Error;

/// Bytes to read for one top-level box header (with a 64-bit size).
pub const HEADER_LEN: u64 = 16;

/// How far (in samples) decode order may stray from presentation order: the H.264 limit of
/// reordered pictures.
const REORDER: u32 = 16;

/// Top-level boxes walked at most before the `moov` must have been found.
pub const MAX_TOP_LEVEL_BOXES: u32 = 64;

/// What to read next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A box header: up to [`HEADER_LEN`] bytes at `offset` (fewer at the end of the file).
    Header { offset: u64, len: u64 },
    /// The whole `moov` box, header included: hand it to [`track`].
    Index { offset: u64, len: u64 },
}

/// Finds the `moov` box from the top-level box headers.
#[derive(Debug, Clone)]
pub struct Locator {
    next: u64,
    total: Option<u64>,
    max_index: u64,
    boxes: u32,
}

/// Box types an ISO BMFF file (or a QuickTime movie) may start with.
const FIRST_BOXES: [&[u8; 4]; 8] = [
    b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot",
];

impl Locator {
    /// `total`: the file's length when known; `max_index`: the largest `moov` accepted.
    pub fn new(total: Option<u64>, max_index: u64) -> (Locator, Step) {
        let locator = Locator {
            next: 0,
            total,
            max_index,
            boxes: 0,
        };
        let first = locator.header_at(0);
        (locator, first)
    }

    fn header_at(&self, offset: u64) -> Step {
        let len = self
            .total
            .map_or(HEADER_LEN, |t| HEADER_LEN.min(t.saturating_sub(offset)));
        Step::Header { offset, len }
    }

    /// The bytes read for the last [`Step::Header`] → the next step.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Step, Error> {
        let no_index = || Error::Invalid("MP4 without an index (moov) box".into());
        let Some((size32, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(no_index());
        };
        let size32 = u32::from_be_bytes(*size32);
        let kind = rest.get(..4).ok_or_else(no_index)?;
        if self.boxes == 0 && !FIRST_BOXES.iter().any(|k| &k[..] == kind) {
            return Err(Error::Invalid("not an ISO BMFF file".into()));
        }
        if !kind.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            return Err(Error::Invalid("damaged MP4 box header".into()));
        }
        let (size, header) = match size32 {
            1 => {
                let large = bytes
                    .get(8..16)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .ok_or_else(|| Error::Invalid("truncated MP4 box header".into()))?;
                (u64::from_be_bytes(large), 16)
            }
            // To the end of the file.
            0 => {
                let total = self.total.ok_or_else(no_index)?;
                (total.saturating_sub(self.next), 8)
            }
            n => (u64::from(n), 8),
        };
        if size < header {
            return Err(Error::Invalid("MP4 box smaller than its header".into()));
        }
        if kind == b"moov" {
            if size > self.max_index {
                return Err(Error::TooLarge(format!(
                    "MP4 index of {size} bytes (limit {})",
                    self.max_index
                )));
            }
            return Ok(Step::Index {
                offset: self.next,
                len: size,
            });
        }
        self.boxes += 1;
        if self.boxes >= MAX_TOP_LEVEL_BOXES {
            return Err(no_index());
        }
        self.next = self.next.checked_add(size).ok_or_else(no_index)?;
        if self.total.is_some_and(|t| self.next >= t) {
            return Err(no_index());
        }
        Ok(self.header_at(self.next))
    }
}

/// The sample table of a track, as stored (bounded by the size of the `moov` box).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct SampleTable {
    /// `stts`: runs of (sample count, duration of each).
    times: Vec<(u32, u32)>,
    /// `ctts`: runs of (sample count, presentation minus decode time); empty: none (the
    /// samples are shown in decode order).
    shifts: Vec<(u32, i64)>,
    /// `stss`: 1-based numbers of the sync samples; `None`: every sample is one.
    sync: Option<Vec<u32>>,
    /// `stsc`: runs of (first chunk, 1-based; samples per chunk).
    chunk_runs: Vec<(u32, u32)>,
    /// `stco`/`co64`: where each chunk starts.
    chunks: Vec<u64>,
    sizes: Sizes,
}

#[derive(Debug, Clone, PartialEq)]
enum Sizes {
    Same { count: u32, size: u32 },
    Each(Vec<u32>),
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes::Each(Vec::new())
    }
}

impl SampleTable {
    fn count(&self) -> u32 {
        match &self.sizes {
            Sizes::Same { count, .. } => *count,
            Sizes::Each(sizes) => u32::try_from(sizes.len()).unwrap_or(u32::MAX),
        }
    }

    fn size(&self, index: u32) -> Result<u32, Error> {
        match &self.sizes {
            Sizes::Same { count, size } if index < *count => Ok(*size),
            Sizes::Each(sizes) => sizes
                .get(index as usize)
                .copied()
                .ok_or_else(|| broken("sample size")),
            Sizes::Same { .. } => Err(broken("sample size")),
        }
    }

    /// Sum of the sample durations, in ticks.
    fn duration(&self) -> u64 {
        self.times
            .iter()
            .map(|&(count, delta)| u64::from(count) * u64::from(delta))
            .fold(0, u64::saturating_add)
    }

    /// The last sample (0-based, decode order) starting at or before `time` ticks.
    fn sample_at(&self, time: u64) -> u32 {
        let (mut start, mut first) = (0u64, 0u32);
        for &(count, delta) in &self.times {
            let span = u64::from(count) * u64::from(delta);
            if time < start.saturating_add(span) {
                let within = (time - start) / u64::from(delta.max(1));
                return first.saturating_add(u32::try_from(within).unwrap_or(u32::MAX));
            }
            start = start.saturating_add(span);
            first = first.saturating_add(count);
        }
        first.saturating_sub(1)
    }

    /// Presentation times of samples `first..=last` (decode time plus the `ctts` shift),
    /// in one pass over each table's entries.
    fn presentation(&self, first: u32, last: u32) -> Vec<i64> {
        let n = (last - first + 1) as usize;
        let mut times = Vec::with_capacity(n);
        let (mut index, mut start) = (0u32, 0u64);
        for &(count, delta) in &self.times {
            if times.len() == n {
                break;
            }
            let end = index.saturating_add(count);
            let mut i = index.max(first);
            while i < end && i <= last {
                let dts = start.saturating_add(u64::from(i - index) * u64::from(delta));
                times.push(i64::try_from(dts).unwrap_or(i64::MAX));
                i += 1;
            }
            start = start.saturating_add(u64::from(count) * u64::from(delta));
            index = end;
        }
        // A table shorter than the samples: the rest at its end.
        let tail = times.last().copied().unwrap_or(0);
        times.resize(n, tail);
        let mut index = 0u32;
        for &(count, shift) in &self.shifts {
            let end = index.saturating_add(count);
            for i in index.max(first)..end.min(last.saturating_add(1)) {
                if let Some(t) = times.get_mut((i - first) as usize) {
                    *t = t.saturating_add(shift);
                }
            }
            if end > last {
                break;
            }
            index = end;
        }
        times
    }

    /// The shift of the first sample: where presentation time zero is (an encoder that
    /// reorders delays every picture by it; the edit list usually takes it out again).
    fn first_shift(&self) -> i64 {
        self.shifts
            .first()
            .filter(|&&(count, _)| count > 0)
            .map_or(0, |&(_, shift)| shift)
    }

    /// The sync sample (0-based) decoding must start from to reach `target`: the last one at
    /// or before it, else (a table whose first sync sample comes later) the first one.
    fn keyframe_for(&self, target: u32) -> u32 {
        let Some(sync) = &self.sync else {
            return target;
        };
        let numbers = sync.iter().filter(|&&n| n > 0).map(|&n| n - 1);
        numbers
            .clone()
            .filter(|&n| n <= target)
            .max()
            .or_else(|| numbers.min())
            .unwrap_or(target)
    }

    /// The sync samples among `first..=last` (0-based), in one pass over `stss` (a hostile
    /// table may hold millions of entries: never scanned once per sample). `None`: all are.
    fn syncs_in(&self, first: u32, last: u32) -> Option<Vec<u32>> {
        let sync = self.sync.as_ref()?;
        let mut within: Vec<u32> = sync
            .iter()
            .filter(|&&n| n > first && n <= last.saturating_add(1))
            .map(|&n| n - 1)
            .collect();
        within.sort_unstable();
        Some(within)
    }

    /// Where samples `first..=last` are: the chunk of `first` from the `stsc` runs, then
    /// forward sample by sample (at most [`MAX_DECODE_AHEAD`] + 1 of them).
    fn locate(&self, first: u32, last: u32) -> Result<Vec<Sample>, Error> {
        let chunk_count = u32::try_from(self.chunks.len()).unwrap_or(u32::MAX);
        // The run holding `first`: its chunk (1-based) and the sample's place in it.
        let mut seen = 0u64;
        let mut found = None;
        for (i, &(first_chunk, per_chunk)) in self.chunk_runs.iter().enumerate() {
            let end_chunk = match self.chunk_runs.get(i + 1) {
                Some(&(next, _)) => next,
                None => chunk_count.saturating_add(1),
            };
            if first_chunk == 0 || end_chunk < first_chunk || per_chunk == 0 {
                return Err(broken("sample-to-chunk table"));
            }
            let samples = u64::from(end_chunk - first_chunk) * u64::from(per_chunk);
            if u64::from(first) < seen + samples {
                let into = u64::from(first) - seen;
                let chunk = u64::from(first_chunk) + into / u64::from(per_chunk);
                let place = into % u64::from(per_chunk);
                found = Some((i, chunk, place));
                break;
            }
            seen += samples;
        }
        let (mut run, mut chunk, place) = found.ok_or_else(|| broken("sample-to-chunk table"))?;
        let chunk_start = |chunk: u64| {
            usize::try_from(chunk - 1)
                .ok()
                .and_then(|c| self.chunks.get(c))
                .copied()
                .ok_or_else(|| broken("chunk offset table"))
        };
        // The samples before `first` in its chunk come first.
        let mut offset = chunk_start(chunk)?;
        let before = u32::try_from(place).map_err(|_| broken("sample-to-chunk table"))?;
        for index in first - before..first {
            offset = offset
                .checked_add(u64::from(self.size(index)?))
                .ok_or_else(|| broken("chunk offset table"))?;
        }
        let mut in_chunk = place;
        let syncs = self.syncs_in(first, last);
        let mut samples = Vec::with_capacity((last - first + 1) as usize);
        for index in first..=last {
            let size = self.size(index)?;
            samples.push(Sample {
                index,
                offset,
                size,
                keyframe: syncs
                    .as_ref()
                    .is_none_or(|s| s.binary_search(&index).is_ok()),
            });
            in_chunk += 1;
            let per_chunk = self.chunk_runs.get(run).map_or(1, |r| u64::from(r.1));
            if in_chunk == per_chunk {
                chunk += 1;
                in_chunk = 0;
                if self
                    .chunk_runs
                    .get(run + 1)
                    .is_some_and(|&(next, _)| u64::from(next) == chunk)
                {
                    run += 1;
                }
                if index < last {
                    offset = chunk_start(chunk)?;
                }
            } else {
                offset = offset
                    .checked_add(u64::from(size))
                    .ok_or_else(|| broken("chunk offset table"))?;
            }
        }
        Ok(samples)
    }
}

fn broken(what: &str) -> Error {
    Error::Invalid(format!("damaged MP4 index: {what}"))
}

/// The first video track of a `moov` box (the bytes [`Step::Index`] named).
pub fn track(moov: &[u8]) -> Result<Track, Error> {
    // `mp4-atom` recurses into nested boxes without a depth limit: bounded first.
    crate::bmff::check_nesting(moov)?;
    let moov = Moov::decode(&mut Cursor::new(moov))
        .map_err(|e| Error::Invalid(format!("MP4 index: {e}")))?;
    let trak = moov
        .trak
        .iter()
        .filter(|t| t.mdia.hdlr.handler == b"vide".into())
        // The first enabled one, else the first.
        .min_by_key(|t| !t.tkhd.enabled)
        .ok_or(Error::Unsupported("a file without a video track"))?;
    let stbl = &trak.mdia.minf.stbl;
    let entry = stbl
        .stsd
        .codecs
        .first()
        .ok_or_else(|| broken("no sample description"))?;
    let codec = match entry {
        mp4_atom::Codec::Avc1(a) => h264(&a.avcc),
        mp4_atom::Codec::Avc3(a) => h264(&a.avcc),
        mp4_atom::Codec::Av01(_) => Codec::Av1,
        mp4_atom::Codec::Vp09(_) => Codec::Vp9,
        mp4_atom::Codec::Vp08(_) => Codec::Vp8,
        mp4_atom::Codec::Hev1(_) | mp4_atom::Codec::Hvc1(_) => Codec::Hevc,
        mp4_atom::Codec::Jpeg(_) => Codec::Other("jpeg".into()),
        mp4_atom::Codec::Unknown(kind, _) => Codec::Other(kind.to_string()),
        _ => Codec::Other("a sample entry that is not video".into()),
    };
    let (mut width, mut height) = entry
        .visual()
        .map_or((0, 0), |v| (u32::from(v.width), u32::from(v.height)));
    if width == 0 || height == 0 {
        width = u32::from(trak.tkhd.width.integer());
        height = u32::from(trak.tkhd.height.integer());
    }
    let sizes = match &stbl.stsz.samples {
        StszSamples::Identical { count, size } => Sizes::Same {
            count: *count,
            size: *size,
        },
        StszSamples::Different { sizes } => Sizes::Each(sizes.clone()),
    };
    let chunks = match (&stbl.stco, &stbl.co64) {
        (Some(stco), _) => stco.entries.iter().map(|&o| u64::from(o)).collect(),
        (None, Some(co64)) => co64.entries.clone(),
        (None, None) => Vec::new(),
    };
    let table = SampleTable {
        times: stbl
            .stts
            .entries
            .iter()
            .map(|e| (e.sample_count, e.sample_delta))
            .collect(),
        shifts: stbl.ctts.as_ref().map_or_else(Vec::new, |c| {
            c.entries
                .iter()
                .map(|e| (e.sample_count, e.sample_offset))
                .collect()
        }),
        sync: stbl.stss.as_ref().map(|s| s.entries.clone()),
        chunk_runs: stbl
            .stsc
            .entries
            .iter()
            .map(|e| (e.first_chunk, e.samples_per_chunk))
            .collect(),
        chunks,
        sizes,
    };
    let mdhd = &trak.mdia.mdhd;
    // 0 and all ones (of a version 0 or 1 box) mean "unknown".
    let duration = match mdhd.duration {
        d if d == 0 || d == u64::MAX || d == u64::from(u32::MAX) => table.duration(),
        d => d,
    };
    let m = &trak.tkhd.matrix;
    Ok(Track {
        codec,
        width,
        height,
        rotation: rotation(m.a, m.b),
        timescale: mdhd.timescale,
        duration,
        stream: None,
        table: Table::Mp4(table),
    })
}

fn h264(avcc: &mp4_atom::Avcc) -> Codec {
    Codec::H264 {
        profile: avcc.avc_profile_indication,
        sps: avcc.sequence_parameter_sets.clone(),
        pps: avcc.picture_parameter_sets.clone(),
        nal_length: avcc.length_size,
    }
}

/// Clockwise display rotation from the first row of the track matrix (ISO/IEC 14496-12
/// §8.3.2: a point maps to (a·x + c·y, b·x + d·y), so the x axis goes to (a, b); on a
/// screen whose y axis points down that is `atan2(b, a)` clockwise). Only right angles
/// count; a skewed or scaled matrix is shown unrotated.
fn rotation(a: i32, b: i32) -> u16 {
    match (a.signum(), b.signum()) {
        (0, 1) => 90,
        (-1, 0) => 180,
        (0, -1) => 270,
        _ => 0,
    }
}

/// The track of a whole file in memory (the `convert` command, tests): the same steps as a
/// ranged reader, each read a slice.
pub fn track_in(file: &[u8], max_index: u64) -> Result<Track, Error> {
    let slice = |offset: u64, len: u64| {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = usize::try_from(offset.saturating_add(len)).unwrap_or(usize::MAX);
        file.get(start..end.min(file.len()))
            .ok_or_else(|| broken("a box past the end of the file"))
    };
    let (mut locator, mut step) = Locator::new(Some(file.len() as u64), max_index);
    loop {
        match step {
            Step::Header { offset, len } => step = locator.feed(slice(offset, len)?)?,
            Step::Index { offset, len } => {
                let moov = slice(offset, len)?;
                if moov.len() as u64 != len {
                    return Err(broken("the index runs past the end of the file"));
                }
                return track(moov);
            }
        }
    }
}

/// The samples to decode for the frame at `at` in `track`, at most `max_bytes` of them.
pub fn plan(track: &Track, at: At, max_bytes: u64) -> Result<FramePlan, Error> {
    let Table::Mp4(table) = &track.table else {
        return Err(Error::Unsupported("a WebM track read as MP4"));
    };
    let count = table.count();
    if count == 0 {
        // Also a fragmented MP4, whose samples are described in `moof` boxes.
        return Err(Error::Unsupported("an MP4 without samples in its index"));
    }
    let ticks = match at {
        At::Millionths(m) => track.duration as f64 * f64::from(m.min(1_000_000)) / 1e6,
        At::Millis(ms) => ms as f64 * f64::from(track.timescale) / 1000.0,
    };
    // Saturating float-to-integer cast: a NaN is 0.
    let ticks = ticks as u64;
    // The picture on screen at `ticks`: the one presented last at or before it, among the
    // samples around the one decoded then (pictures are reordered by a few at most).
    let near = table.sample_at(ticks).min(count - 1);
    let (lo, hi) = (
        near.saturating_sub(REORDER),
        near.saturating_add(REORDER).min(count - 1),
    );
    let shown = i64::try_from(ticks)
        .unwrap_or(i64::MAX)
        .saturating_add(table.first_shift());
    let around = table.presentation(lo, hi);
    let on_screen = |(_, &t): &(usize, &i64)| t <= shown;
    let target = around
        .iter()
        .enumerate()
        .filter(on_screen)
        .max_by_key(|&(_, &t)| t)
        .or_else(|| around.iter().enumerate().min_by_key(|&(_, &t)| t))
        .map_or(near, |(i, _)| lo + i as u32);
    let keyframe = table.keyframe_for(target).min(count - 1);
    let (last, keyframe_only) = if target.saturating_sub(keyframe) > MAX_DECODE_AHEAD {
        (keyframe, true)
    } else {
        (target.max(keyframe), false)
    };
    let samples = table.locate(keyframe, last)?;
    // The decoder gives pictures out in presentation order: the target comes after every
    // decoded picture presented before it.
    let times = table.presentation(keyframe, last);
    let at = times.last().copied().unwrap_or(0);
    let before = times.len().saturating_sub(1);
    let shown_before = times
        .iter()
        .enumerate()
        .map(|(i, &t)| i < before && t < at)
        .collect();
    let plan = FramePlan {
        samples,
        keyframe_only,
        shown_before,
    };
    if plan.bytes() > max_bytes {
        return Err(Error::TooLarge(format!(
            "{} bytes to read for one frame (limit {max_bytes})",
            plan.bytes()
        )));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::corpus;

    /// The track, and the bytes of box headers read to find its index (the `moov` itself
    /// excluded), counted by driving the [`Locator`] by hand as a ranged reader does.
    fn index_of(file: &[u8]) -> Result<(Track, u64), Error> {
        let (mut locator, mut step) = Locator::new(Some(file.len() as u64), 16 << 20);
        let mut read = 0;
        while let Step::Header { offset, len } = step {
            let bytes = file
                .get(offset as usize..(offset + len) as usize)
                .unwrap_or_default();
            read += bytes.len() as u64;
            step = locator.feed(bytes)?;
        }
        Ok((track_in(file, 16 << 20)?, read))
    }

    /// Walks the NAL units of a sample by their length prefixes: they must fill it exactly
    /// (a wrong offset or size does not). Returns their types.
    fn nal_types(sample: &[u8], nal_length: u8) -> Option<Vec<u8>> {
        let mut rest = sample;
        let mut types = Vec::new();
        while !rest.is_empty() {
            let n = usize::from(nal_length);
            let len = rest
                .get(..n)?
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            let nal = rest.get(n..n + len)?;
            types.push(nal.first()? & 0x1f);
            rest = &rest[n + len..];
        }
        Some(types)
    }

    #[test]
    fn the_corpus_indexes_give_their_track() {
        let cases: [(&str, u32, u32, u16, &str); 12] = [
            ("h264_640x360_2s.mp4", 640, 360, 0, "h264"),
            ("h264_1920x1080_1s.mp4", 1920, 1080, 0, "h264"),
            ("h264_320x240_3s_moov_at_end.mp4", 320, 240, 0, "h264"),
            ("h264_320x240_rotate90_metadata.mp4", 320, 240, 270, "h264"),
            ("h264_aac_320x240_3s_faststart.mp4", 320, 240, 0, "h264"),
            ("h264_yuv444_odd_321x241.mp4", 321, 241, 0, "h264"),
            ("h264_single_frame.mp4", 320, 240, 0, "h264"),
            ("h264_4096x2160_1s_solid.mp4", 4096, 2160, 0, "h264"),
            ("av1_320x240_3s.mp4", 320, 240, 0, "av1"),
            ("hevc_320x240_3s.mp4", 320, 240, 0, "hevc"),
            ("hevc_main10_320x240.mov", 320, 240, 0, "hevc"),
            ("prores_proxy_320x240_1s.mov", 320, 240, 0, "apco"),
        ];
        for (name, w, h, rotation, codec) in cases {
            let file = corpus(name);
            assert!(!file.is_empty(), "{name} is in the corpus");
            let (t, _) = index_of(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((t.width, t.height, t.rotation), (w, h, rotation), "{name}");
            let kind = match &t.codec {
                Codec::H264 { sps, pps, .. } => {
                    assert!(!sps.is_empty() && !pps.is_empty(), "{name}");
                    "h264".to_owned()
                }
                Codec::Av1 => "av1".into(),
                Codec::Hevc => "hevc".into(),
                Codec::Other(k) => k.clone(),
                other => format!("{other:?}"),
            };
            assert_eq!(kind, codec, "{name}");
            assert!(t.duration > 0 && t.timescale > 0, "{name}");
        }
        for name in ["audio_only_aac.m4a", "audio_only_aac_named.mp4"] {
            assert!(
                matches!(index_of(&corpus(name)), Err(Error::Unsupported(_))),
                "{name}: no video track"
            );
        }
    }

    #[test]
    fn the_frame_at_five_percent_is_its_keyframe_and_the_samples_after_it() {
        // 60 frames over 2 s, one keyframe: 5 % is 0.1 s, the fourth frame shown: a P
        // picture x264 puts second in decode order, before the two B pictures shown ahead
        // of it (which it does not need). It is the second picture out of the decoder.
        let file = corpus("h264_640x360_2s.mp4");
        let (t, _) = index_of(&file).unwrap_or_else(|e| panic!("{e}"));
        let Codec::H264 { nal_length, .. } = t.codec else {
            panic!("h264");
        };
        let p = plan(&t, At::Millionths(50000), 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        assert!(!p.keyframe_only);
        let indexes: Vec<u32> = p.samples.iter().map(|s| s.index).collect();
        assert_eq!((indexes, p.picture()), (vec![0, 1], 1));
        assert!(p.samples[0].keyframe && !p.samples[1].keyframe);
        for s in &p.samples {
            let bytes = &file[s.offset as usize..(s.offset + u64::from(s.size)) as usize];
            let types = nal_types(bytes, nal_length)
                .unwrap_or_else(|| panic!("sample {} is not where the index says", s.index));
            if s.keyframe {
                assert!(
                    types.contains(&5),
                    "an IDR slice in the keyframe: {types:?}"
                );
            } else {
                assert!(types.contains(&1), "a non-IDR slice: {types:?}");
            }
        }
        // The same in seconds; a time past the end is the last frame, decoded from its
        // keyframe (59 samples ahead: within the limit).
        let p = plan(&t, At::Millis(100), 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.samples.last().map(|s| s.index), Some(1));
        // The last picture shown comes out of the decoder after every other one decoded.
        let p = plan(&t, At::Millis(99000), 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        assert!(!p.keyframe_only);
        assert_eq!(p.picture(), p.samples.len() - 1);
        // A frame costing more than the byte limit is refused.
        assert!(matches!(
            plan(&t, At::Millionths(50000), 100),
            Err(Error::TooLarge(_))
        ));
    }

    #[test]
    fn an_index_at_the_end_is_found_from_box_headers_alone() {
        let file = corpus("h264_320x240_3s_moov_at_end.mp4");
        let (t, header_bytes) = index_of(&file).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            header_bytes <= 4 * HEADER_LEN,
            "{header_bytes} bytes of headers"
        );
        let p = plan(&t, At::Millionths(50000), 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            p.bytes() < file.len() as u64 / 4,
            "{} of {}",
            p.bytes(),
            file.len()
        );
        let Codec::H264 { nal_length, .. } = t.codec else {
            panic!("h264");
        };
        for s in &p.samples {
            let bytes = &file[s.offset as usize..(s.offset + u64::from(s.size)) as usize];
            assert!(nal_types(bytes, nal_length).is_some(), "sample {}", s.index);
        }
    }

    /// Decode order I P B B P B B: the picture on screen at a time is found by its
    /// presentation time, and the plan says where it comes out of the decoder.
    #[test]
    fn reordered_pictures_are_chosen_by_presentation_time() {
        let t = Track {
            codec: Codec::Vp9,
            width: 16,
            height: 16,
            rotation: 0,
            timescale: 1000,
            duration: 8,
            stream: None,
            table: Table::Mp4(SampleTable {
                times: vec![(8, 1)],
                // Presentation times 1 4 2 3 7 5 6 8: shown from 1 (the first shift).
                shifts: vec![(1, 1), (1, 3), (2, 0), (1, 3), (2, 0), (1, 1)],
                sync: Some(vec![1]),
                chunk_runs: vec![(1, 8)],
                chunks: vec![0],
                sizes: Sizes::Same { count: 8, size: 1 },
            }),
        };
        // At 2 ms the picture presented at 3 (decoded fourth) is on screen; before it come
        // the ones presented at 1 and 2, so it is the third picture out.
        let p = plan(&t, At::Millis(2), 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        let indexes: Vec<u32> = p.samples.iter().map(|s| s.index).collect();
        assert_eq!((indexes, p.picture()), (vec![0, 1, 2, 3], 2));
        // At 3 ms: the P picture decoded second, after the two B pictures shown before it.
        let p = plan(&t, At::Millis(3), 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        let indexes: Vec<u32> = p.samples.iter().map(|s| s.index).collect();
        assert_eq!((indexes, p.picture()), (vec![0, 1], 1));
        // At 0: the first picture.
        let p = plan(&t, At::Millis(0), 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.samples.len(), p.picture()), (1, 0));
    }

    #[test]
    fn hostile_box_headers_are_refused_at_once() {
        let limit = 1 << 20;
        // Not an MP4; a box smaller than its header; a size running past the file.
        for bytes in [
            &b"\x89PNG\r\n\x1a\n...."[..],
            b"\0\0\0\x04ftyp",
            b"\0\0\x10\0ftypisom",
        ] {
            let (mut l, _) = Locator::new(Some(64), limit);
            assert!(l.feed(bytes).is_err(), "{bytes:?}");
        }
        // An index larger than allowed.
        let (mut l, _) = Locator::new(None, limit);
        let step = l.feed(b"\0\0\0\x10ftypisom\0\0\0\0");
        assert_eq!(
            step.ok(),
            Some(Step::Header {
                offset: 16,
                len: 16
            })
        );
        assert!(matches!(l.feed(b"\x7f\0\0\0moov"), Err(Error::TooLarge(_))));
        // Endless small boxes: bounded.
        let (mut l, _) = Locator::new(None, limit);
        let mut steps = 0;
        while l.feed(b"\0\0\0\x08free").is_ok() {
            steps += 1;
        }
        assert_eq!(steps, MAX_TOP_LEVEL_BOXES - 1);
    }

    #[test]
    fn hostile_sample_tables_cost_one_step_per_entry_and_are_refused_cleanly() {
        let track = |table: SampleTable| Track {
            codec: Codec::Vp9,
            width: 16,
            height: 16,
            rotation: 0,
            timescale: 1000,
            duration: u64::MAX / 2,
            stream: None,
            table: Table::Mp4(table),
        };
        // Four billion samples claimed by one `stts` entry, three sizes: the target is
        // clamped to the samples that exist, at once.
        let t = track(SampleTable {
            times: vec![(u32::MAX, 1)],
            shifts: vec![(u32::MAX, i64::MAX), (u32::MAX, -5)],
            sync: None,
            chunk_runs: vec![(1, 3)],
            chunks: vec![100],
            sizes: Sizes::Each(vec![10, 20, 30]),
        });
        let p = plan(&t, At::Millionths(500000), 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.samples,
            [Sample {
                index: 2,
                offset: 130,
                size: 30,
                keyframe: true
            }]
        );
        // A target further than the decode-ahead limit from its keyframe: the keyframe.
        let t = track(SampleTable {
            times: vec![(200, 1)],
            shifts: vec![],
            sync: Some(vec![1]),
            chunk_runs: vec![(1, 200)],
            chunks: vec![0],
            sizes: Sizes::Same {
                count: 200,
                size: 1,
            },
        });
        let p = plan(&t, At::Millionths(1000000), 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        assert!(p.keyframe_only);
        assert_eq!(
            p.samples,
            [Sample {
                index: 0,
                offset: 0,
                size: 1,
                keyframe: true
            }]
        );
        // Samples per chunk 0, chunks missing, a size table shorter than the count.
        for table in [
            SampleTable {
                times: vec![(3, 1)],
                chunk_runs: vec![(1, 0)],
                chunks: vec![100],
                sizes: Sizes::Same { count: 3, size: 5 },
                ..SampleTable::default()
            },
            SampleTable {
                times: vec![(3, 1)],
                chunk_runs: vec![(1, 1)],
                chunks: vec![],
                sizes: Sizes::Same { count: 3, size: 5 },
                ..SampleTable::default()
            },
            SampleTable {
                times: vec![(3, 1)],
                chunk_runs: vec![(2, 1)],
                chunks: vec![100, 200, 300],
                sizes: Sizes::Same { count: 3, size: 5 },
                ..SampleTable::default()
            },
        ] {
            assert!(
                matches!(
                    plan(&track(table.clone()), At::Millionths(1000000), 1 << 20),
                    Err(Error::Invalid(_))
                ),
                "{table:?}"
            );
        }
        // No samples at all (a fragmented MP4's index).
        assert!(matches!(
            plan(
                &track(SampleTable::default()),
                At::Millionths(50000),
                1 << 20
            ),
            Err(Error::Unsupported(_))
        ));
    }
}
