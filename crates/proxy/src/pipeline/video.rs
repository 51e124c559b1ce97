//! The video step: the still of one frame of a video, read by range — never the whole file.
//! Input: a [`Reader`] on the video (an origin's ranges, the store's ranges, or a body read
//! forward when the origin has no ranges), the time and the transform; output: the
//! [`VideoFrame`] to render (the track and the bytes of the samples its frame needs). Uses
//! `media::video` (the container and codec steps, pure), `source`, `workers`, `error`.
//!
//! The steps ([`read_frame`]), MP4/MOV: the box headers, walked by
//! `media::video::mp4::Locator` (a few 16-byte reads, served from the sniffed head when
//! they fall in it) → the index (`moov`, one read) → the track, decoded on the worker pool
//! (a large index is real work) → `video::check` (codec, size) before any sample is read →
//! the frame plan → the samples, neighbours read together (one range for a keyframe and the
//! pictures after it). WebM/Matroska: the element headers and the index parts
//! (`media::video::mkv::Locator`) → the track, on the pool → `video::check` → the cue's
//! cluster, read from its start only as far as the frame.
//!
//! Every byte read counts against `limits.max_video_read` (413 beyond) and is held in the
//! memory budget as it arrives; all the reads share one origin exchange's time (504
//! beyond). Ranged reads go through the same guarded fetcher as every fetch (address
//! checks, redirects, size cap), each conditional on the first answer's validator
//! (`If-Range`; the store: the object's version): an object that changes between reads is
//! never spliced.

use bytes::Bytes;
use media::video::{self, mkv, mp4, At, Container, Sample, Track};

use crate::error::AppError;
use crate::source::http::OriginRange;
use crate::source::store::{Store, StoreError};
use crate::source::{Body, Fetcher, Room, SourceError};
use crate::workers::{Reservation, Workers};

/// Samples this close together are read as one range (the bytes between them count as
/// read): the pictures after a keyframe are usually contiguous, interleaved with audio.
const MERGE_GAP: u64 = 64 * 1024;

/// Where a video's bytes come from.
pub(crate) enum Ranges {
    /// A source read by range.
    Ranged(Ranged),
    /// An origin without ranges: its one body, read forward only as far as needed and
    /// kept from its start.
    Forward(Body<SourceError>),
}

/// A source read by range.
pub(crate) enum Ranged {
    /// An origin that answered a range with 206: each read is one more ranged GET.
    Remote {
        fetcher: Fetcher,
        url: url::Url,
        /// The first answer's strong validator, sent as `If-Range` with every read.
        validator: Option<String>,
    },
    /// An object of the store, read by range (S3: a ranged GET; a directory: a seek).
    Store {
        store: Store,
        key: String,
        /// The version every read must find (`ObjectMeta::version`).
        version: String,
    },
}

/// Reads of one video, under the byte limit and the memory budget.
pub(crate) struct Reader {
    ranges: Ranges,
    total: Option<u64>,
    /// The bytes from offset 0 read so far: the sniffed head (for `Forward`, everything).
    prefix: Vec<u8>,
    /// Bytes taken from the source for this video, and the most it may take.
    read: u64,
    limit: u64,
    workers: Workers,
    /// When every read must be done: one origin exchange's time (`timeouts.total`, or
    /// `store.timeout`) for all of them, so many slow reads cannot add up.
    deadline: tokio::time::Instant,
    /// The memory of the prefix, and of the other bytes read.
    prefix_room: Reservation,
    rooms: Vec<Reservation>,
}

impl Reader {
    /// `head`: the first bytes, already read (kept as the prefix, counted in the budget
    /// here); `total`: the file's length when known; `deadline`: when every read must be
    /// done (the head's included: from when it was asked for).
    pub(crate) fn new(
        ranges: Ranges,
        total: Option<u64>,
        head: &[u8],
        limit: u64,
        deadline: tokio::time::Instant,
        workers: Workers,
    ) -> Result<Reader, AppError> {
        let mut prefix_room = workers.reservation();
        prefix_room
            .make_room(head.len() as u64)
            .map_err(SourceError::from)?;
        Ok(Reader {
            ranges,
            total,
            read: head.len() as u64,
            prefix: head.to_vec(),
            limit,
            workers,
            deadline,
            prefix_room,
            rooms: Vec::new(),
        })
    }

    /// Up to `len` bytes at `offset` (fewer at the end of the file).
    async fn read(&mut self, offset: u64, len: u64) -> Result<Bytes, AppError> {
        let mut end = offset.saturating_add(len);
        if let Some(total) = self.total {
            end = end.min(total);
        }
        if end <= offset {
            return Ok(Bytes::new());
        }
        if let Ranges::Forward(_) = self.ranges {
            self.read_forward_to(end).await?;
            let end = end.min(self.prefix.len() as u64);
            return self.copy(offset, end);
        }
        if let Some(held) = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(a, b)| self.prefix.get(a..b))
        {
            // Within the sniffed head (at most 64 KiB, already counted).
            return Ok(Bytes::copy_from_slice(held));
        }
        self.count(end - offset)?;
        let mut room = self.workers.reservation();
        let Ranges::Ranged(source) = &self.ranges else {
            return Err(AppError::Internal("a forward body read by range".into()));
        };
        let fetch = ranged(source, offset, end, &mut room);
        let bytes = match tokio::time::timeout_at(self.deadline, fetch).await {
            Ok(bytes) => bytes?,
            // Every read of one video within one origin exchange's time.
            Err(_) => return Err(self.timed_out()),
        };
        self.rooms.push(room);
        Ok(bytes)
    }

    /// All `len` bytes at `offset`, or an error naming what was cut off.
    async fn read_exact(&mut self, offset: u64, len: u64, what: &str) -> Result<Bytes, AppError> {
        let bytes = self.read(offset, len).await?;
        if (bytes.len() as u64) < len {
            return Err(media::Error::Invalid(format!("the video ends inside {what}")).into());
        }
        Ok(bytes)
    }

    /// A copy of `offset..end` of the prefix (empty when it does not reach `offset`),
    /// counted in the budget.
    fn copy(&mut self, offset: u64, end: u64) -> Result<Bytes, AppError> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = usize::try_from(end).unwrap_or(usize::MAX);
        let Some(part) = self.prefix.get(start..end) else {
            return Ok(Bytes::new());
        };
        let mut room = self.workers.reservation();
        room.make_room(part.len() as u64)
            .map_err(SourceError::from)?;
        let bytes = Bytes::copy_from_slice(part);
        self.rooms.push(room);
        Ok(bytes)
    }

    /// Reads the forward body until the prefix reaches `end` or the body ends.
    async fn read_forward_to(&mut self, end: u64) -> Result<(), AppError> {
        while (self.prefix.len() as u64) < end {
            let Ranges::Forward(body) = &mut self.ranges else {
                return Ok(());
            };
            let Some(chunk) = body.chunk().await? else {
                return Ok(());
            };
            self.count(chunk.len() as u64)?;
            let need = self.prefix.len() + chunk.len();
            if need > self.prefix.capacity() {
                let grown = need
                    .max(self.prefix.capacity() * 3 / 2)
                    .min(self.limit as usize);
                let grown = grown.max(need);
                self.prefix_room
                    .make_room(grown as u64)
                    .map_err(SourceError::from)?;
                self.prefix.reserve_exact(grown - self.prefix.len());
            }
            self.prefix.extend_from_slice(&chunk);
        }
        Ok(())
    }

    /// The answer when the reads took longer than their time: the source's own timeout.
    fn timed_out(&self) -> AppError {
        match self.ranges {
            Ranges::Ranged(Ranged::Store { .. }) => StoreError::Timeout.into(),
            _ => SourceError::Timeout("total").into(),
        }
    }

    /// Counts `n` more bytes taken from the source: over the limit → 413, before they are.
    fn count(&mut self, n: u64) -> Result<(), AppError> {
        self.read = self.read.saturating_add(n);
        if self.read > self.limit {
            return Err(SourceError::TooLarge { limit: self.limit }.into());
        }
        Ok(())
    }
}

/// One ranged read of `offset..end`: a GET with `Range` (and `If-Range`) from the origin,
/// or a ranged GET of the store's object, read whole into `room`.
async fn ranged(
    source: &Ranged,
    offset: u64,
    end: u64,
    room: &mut Reservation,
) -> Result<Bytes, AppError> {
    match source {
        Ranged::Remote {
            fetcher,
            url,
            validator,
        } => {
            let want = OriginRange {
                first: offset,
                last: Some(end - 1),
            };
            let fetched = fetcher.fetch(url, Some(want), validator.as_deref()).await?;
            match fetched.partial {
                Some(got) if got.first == offset && got.last < end => {
                    Ok(fetched.body.read_all(room).await?)
                }
                // If-Range failed (the file changed) or the origin stopped serving ranges.
                _ => Err(SourceError::Unreachable(
                    "the video changed, or its origin stopped serving ranges".into(),
                )
                .into()),
            }
        }
        Ranged::Store {
            store,
            key,
            version,
        } => {
            let object = store.get_range(key, offset..end, version).await?;
            Ok(object.body.read_all(room).await?)
        }
    }
}

/// A frame ready to render: its track and the bytes of the samples of its plan, in order.
/// Holds their memory until dropped.
pub(crate) struct VideoFrame {
    pub track: Track,
    pub samples: Vec<Bytes>,
    /// Which of their pictures are shown before the frame (`FramePlan::shown_before`).
    pub shown_before: Vec<bool>,
    _reader: Reader,
}

/// The index and the samples of the frame at `at` of a video in `container`, read through
/// `reader` (see the module docs for the steps).
pub(crate) async fn read_frame(
    reader: Reader,
    container: Container,
    at: At,
    limits: &media::Limits,
) -> Result<VideoFrame, AppError> {
    match container {
        Container::IsoBmff => read_mp4(reader, at, limits).await,
        Container::Matroska => read_webm(reader, at, limits).await,
    }
}

/// First read of a cluster's prefix; each further read is half as large again as the last
/// (what is read past the frame stays under half of what was needed).
const CLUSTER_READ: u64 = 128 * 1024;

/// WebM/Matroska: the index parts (found from element headers and the SeekHead), the
/// track, then the prefix of the cue's cluster up to the frame.
async fn read_webm(
    mut reader: Reader,
    at: At,
    limits: &media::Limits,
) -> Result<VideoFrame, AppError> {
    let (mut locator, mut step) = mkv::Locator::new(reader.total, reader.limit);
    while let mkv::Step::Read { offset, len } = step {
        let bytes = reader.read(offset, len).await?;
        step = locator.feed(&bytes)?;
    }
    // The cues of a long video are real work to decode: on the pool, as a moov is.
    let track = reader
        .workers
        .run(INDEX_COST, move |_| locator.track())
        .await?;
    video::check(&track, limits)?;
    let offset = mkv::cluster_at(&track, at)?;
    let mut cluster: Vec<u8> = Vec::new();
    let mut room = reader.workers.reservation();
    let mut chunk = CLUSTER_READ;
    let plan = loop {
        let more = reader.read(offset + cluster.len() as u64, chunk).await?;
        let ended = (more.len() as u64) < chunk;
        room.make_room((cluster.len() + more.len()) as u64)
            .map_err(SourceError::from)?;
        cluster.extend_from_slice(&more);
        drop(more);
        match mkv::cluster_plan(&track, at, offset, &cluster)? {
            Some(plan) => break plan,
            None if ended => {
                return Err(media::Error::Invalid("the video ends inside a cluster".into()).into())
            }
            None => chunk = chunk.saturating_add(chunk / 2),
        }
    };
    let plan = video::bounded(plan, &track, limits);
    let cluster = Bytes::from(cluster);
    let samples = plan
        .samples
        .iter()
        .map(|s| {
            let at = usize::try_from(s.offset - offset).unwrap_or(usize::MAX);
            at.checked_add(s.size as usize)
                .filter(|&e| e <= cluster.len())
                .map(|e| cluster.slice(at..e))
                .ok_or_else(|| media::Error::Invalid("a frame outside its cluster".into()).into())
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    reader.rooms.push(room);
    verified(reader, track, plan, samples, limits)
}

/// Memory of decoding an index on the pool beyond the bytes read (which are counted).
const INDEX_COST: u64 = 1 << 20;

/// MP4/MOV: the `moov` (found from box headers), the track, the samples of the plan.
async fn read_mp4(
    mut reader: Reader,
    at: At,
    limits: &media::Limits,
) -> Result<VideoFrame, AppError> {
    let moov = read_index(&mut reader).await?;
    // mp4-atom holds the tables as vectors: about twice the bytes of the box, and the box.
    let cost = (moov.len() as u64)
        .saturating_mul(4)
        .saturating_add(INDEX_COST);
    let track = reader.workers.run(cost, move |_| mp4::track(&moov)).await?;
    video::check(&track, limits)?;
    let plan = video::frame_plan(&track, at, limits)?;
    let samples = read_samples(&mut reader, &plan.samples).await?;
    verified(reader, track, plan, samples, limits)
}

/// The frame to render once its samples are read: the track's size as the samples' own
/// headers state it (`video::verified`: the larger of it and the container's claim is
/// checked and priced), the plan bounded again by it.
fn verified(
    reader: Reader,
    track: Track,
    plan: video::FramePlan,
    mut samples: Vec<Bytes>,
    limits: &media::Limits,
) -> Result<VideoFrame, AppError> {
    let slices: Vec<&[u8]> = samples.iter().map(|s| &s[..]).collect();
    let (track, plan) = video::verified(track, plan, &slices, limits)?;
    samples.truncate(plan.samples.len());
    Ok(VideoFrame {
        track,
        samples,
        shown_before: plan.shown_before,
        _reader: reader,
    })
}

/// The `moov` box: found from the top-level box headers, then read whole.
async fn read_index(reader: &mut Reader) -> Result<Bytes, AppError> {
    let (mut locator, mut step) = mp4::Locator::new(reader.total, reader.limit);
    loop {
        match step {
            mp4::Step::Header { offset, len } => {
                let header = reader.read(offset, len).await?;
                step = locator.feed(&header)?;
            }
            mp4::Step::Index { offset, len } => {
                return reader.read_exact(offset, len, "its index").await;
            }
        }
    }
}

/// The bytes of each sample, neighbours read as one range.
async fn read_samples(reader: &mut Reader, samples: &[Sample]) -> Result<Vec<Bytes>, AppError> {
    let mut out = Vec::with_capacity(samples.len());
    for span in spans(samples) {
        let run = samples.get(span).unwrap_or_default();
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        let end = last.offset.saturating_add(u64::from(last.size));
        let bytes = reader
            .read_exact(first.offset, end - first.offset, "a frame")
            .await?;
        for s in run {
            // Within the span by construction; `get` keeps a mistake from panicking.
            let at = usize::try_from(s.offset - first.offset).unwrap_or(usize::MAX);
            let part = at
                .checked_add(s.size as usize)
                .filter(|&e| e <= bytes.len())
                .map(|e| bytes.slice(at..e))
                .ok_or_else(|| media::Error::Invalid("a video sample outside its read".into()))?;
            out.push(part);
        }
    }
    Ok(out)
}

/// Runs of consecutive samples that lie in file order, each within [`MERGE_GAP`] of the
/// one before: one read each.
fn spans(samples: &[Sample]) -> Vec<std::ops::Range<usize>> {
    let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
    let mut end = 0u64;
    for (i, s) in samples.iter().enumerate() {
        match spans.last_mut() {
            Some(span) if s.offset >= end && s.offset - end <= MERGE_GAP => span.end = i + 1,
            _ => spans.push(i..i + 1),
        }
        end = s.offset.saturating_add(u64::from(s.size));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(offset: u64, size: u32) -> Sample {
        Sample {
            index: 0,
            offset,
            size,
            keyframe: false,
        }
    }

    #[test]
    fn neighbouring_samples_are_read_together() {
        let s = [
            sample(1000, 10),
            sample(1010, 10),
            sample(1020 + MERGE_GAP, 5),
            sample(1025 + 2 * MERGE_GAP + 1, 5),
            // Before the one ahead of it: a read of its own.
            sample(500, 5),
        ];
        assert_eq!(spans(&s), vec![0..3, 3..4, 4..5]);
    }
}
