//! EBML, the encoding of WebM/Matroska, as far as the index walk and the cluster plan read
//! it: the element IDs used, variable-length integers, element headers, the children of a
//! body in memory, unsigned integers and floats. Hand-written (see the parent module for
//! why); every read is checked and returns `None` rather than reading past its bytes.
//!
//! Input: bytes; output: numbers, headers, `(id, body)` pairs. Uses nothing of ours.

pub(super) const EBML: u32 = 0x1A45_DFA3;
pub(super) const SEGMENT: u32 = 0x1853_8067;
pub(super) const SEEK_HEAD: u32 = 0x114D_9B74;
pub(super) const SEEK: u32 = 0x4DBB;
pub(super) const SEEK_ID: u32 = 0x53AB;
pub(super) const SEEK_POSITION: u32 = 0x53AC;
pub(super) const INFO: u32 = 0x1549_A966;
pub(super) const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
pub(super) const DURATION: u32 = 0x4489;
pub(super) const TRACKS: u32 = 0x1654_AE6B;
pub(super) const TRACK_ENTRY: u32 = 0xAE;
pub(super) const TRACK_NUMBER: u32 = 0xD7;
pub(super) const TRACK_TYPE: u32 = 0x83;
pub(super) const CODEC_ID: u32 = 0x86;
pub(super) const VIDEO: u32 = 0xE0;
pub(super) const PIXEL_WIDTH: u32 = 0xB0;
pub(super) const PIXEL_HEIGHT: u32 = 0xBA;
pub(super) const CUES: u32 = 0x1C53_BB6B;
pub(super) const CUE_POINT: u32 = 0xBB;
pub(super) const CUE_TIME: u32 = 0xB3;
pub(super) const CUE_TRACK_POSITIONS: u32 = 0xB7;
pub(super) const CUE_TRACK: u32 = 0xF7;
pub(super) const CUE_CLUSTER_POSITION: u32 = 0xF1;
pub(super) const CLUSTER: u32 = 0x1F43_B675;
pub(super) const TIMESTAMP: u32 = 0xE7;
pub(super) const SIMPLE_BLOCK: u32 = 0xA3;
pub(super) const BLOCK_GROUP: u32 = 0xA0;
pub(super) const BLOCK: u32 = 0xA1;
pub(super) const REFERENCE_BLOCK: u32 = 0xFB;

/// A variable-length integer at the start of `bytes`: its value (the length marker kept
/// for IDs, removed for sizes) and its length. `None`: not enough bytes, or no marker.
pub(super) fn vint(bytes: &[u8], keep_marker: bool) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let raw = bytes.get(..len)?;
    let mut value = if keep_marker {
        u64::from(first)
    } else {
        u64::from(first) & (0xFF >> len)
    };
    for &b in raw.get(1..)? {
        value = (value << 8) | u64::from(b);
    }
    Some((value, len))
}

/// An element header: its ID, its body's size (`None`: unknown, all ones) and the header's
/// length.
pub(super) fn header(bytes: &[u8]) -> Option<(u32, Option<u64>, usize)> {
    let (id, id_len) = vint(bytes, true)?;
    if id_len > 4 {
        return None;
    }
    let (size, size_len) = vint(bytes.get(id_len..)?, false)?;
    let unknown = size == (1u64 << (7 * size_len)) - 1;
    Some((
        u32::try_from(id).ok()?,
        (!unknown).then_some(size),
        id_len + size_len,
    ))
}

/// The child elements of a body in memory: (ID, body). Stops at the first damaged or
/// truncated one (an element of unknown size is not allowed inside the bodies read here).
pub(super) fn children(body: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    children_at(body, 0).map(|(id, _, child)| (id, child))
}

/// [`children`], each with where its body starts (`base`: where `body` starts).
pub(super) fn children_at(body: &[u8], base: usize) -> impl Iterator<Item = (u32, usize, &[u8])> {
    let (mut rest, mut at) = (body, base);
    std::iter::from_fn(move || {
        let (id, size, len) = header(rest)?;
        let end = len.checked_add(usize::try_from(size?).ok()?)?;
        let child = rest.get(len..end)?;
        let start = at + len;
        rest = rest.get(end..)?;
        at += end;
        Some((id, start, child))
    })
}

pub(super) fn uint(body: &[u8]) -> Option<u64> {
    (body.len() <= 8).then(|| body.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
}

pub(super) fn float(body: &[u8]) -> Option<f64> {
    match body.len() {
        4 => Some(f64::from(f32::from_be_bytes(body.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(body.try_into().ok()?)),
        _ => None,
    }
}
