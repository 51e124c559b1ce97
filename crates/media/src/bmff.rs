//! The nesting bound of ISO BMFF boxes (MP4, MOV, HEIF), checked before a recursive parser
//! sees the bytes.
//!
//! `mp4-atom` decodes every child box of a kind it knows by calling itself, with no depth
//! limit: a 24 KB `moov` whose `stbl` holds an `stbl` 500 levels deep overflows a thread's
//! stack, and a stack overflow aborts the whole process (no panic to catch). A real file
//! nests 6–9 levels (`moov/trak/mdia/minf/stbl/stsd/avc1/avcC`, or
//! `moov/udta/meta/ilst/©too/data`).
//!
//! [`check_nesting`] bounds the depth without knowing which kinds hold children or where in
//! their body the children start (that differs per kind, and mirroring the library's list
//! would miss the kind it adds next): every position whose next 8 bytes read as a box header
//! (a size that fits, a type of letters, digits, spaces or `©` — the bytes every box type
//! the library knows is made of) is taken as a possible box, and no byte may lie inside more
//! than [`MAX_BOX_DEPTH`] of them. Any chain of boxes the parser can recurse through is such
//! a set of possible boxes all holding its innermost one, so the real depth is never more;
//! stray matches inside a box's data only make the count larger, and a real file is far from
//! the limit. Written here rather than taken from a library: none offers a depth check, and
//! it is one sweep over the bytes.
//!
//! Input: the bytes of one box (or a file); output: `Ok` or `Error::Invalid`. Uses `Error`.

use crate::Error;

/// The deepest nesting of boxes accepted. Real files use under ten levels; a parser thread
/// spends a few KB of stack per level (500 levels overflowed a 2 MB stack), so 32 levels
/// keeps well under any thread's stack while leaving room for stray matches in box data.
pub const MAX_BOX_DEPTH: usize = 32;

/// `Err(Invalid)` when some byte of `bytes` lies inside more than [`MAX_BOX_DEPTH`] possible
/// boxes (see the module docs). One pass over the bytes, then a sort of the boxes found.
pub fn check_nesting(bytes: &[u8]) -> Result<(), Error> {
    let depth = deepest_nesting(bytes);
    if depth > MAX_BOX_DEPTH {
        return Err(Error::Invalid(format!(
            "ISO BMFF boxes nested {depth} deep (limit {MAX_BOX_DEPTH})"
        )));
    }
    Ok(())
}

/// A byte of a box type: what every type a parser knows is spelled with.
fn type_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b' ' || b == 0xA9
}

/// The most possible boxes that hold one byte.
fn deepest_nesting(bytes: &[u8]) -> usize {
    let len = bytes.len();
    // +1 where a possible box starts, -1 where it ends.
    let mut edges: Vec<(usize, i32)> = Vec::new();
    for (start, window) in bytes.windows(8).enumerate() {
        let Some((size, kind)) = window.split_first_chunk::<4>() else {
            continue;
        };
        if !kind.iter().all(|&b| type_byte(b)) {
            continue;
        }
        let size = u64::from(u32::from_be_bytes(*size));
        let end = match size {
            // To the end of the enclosing bytes.
            0 => Some(len as u64),
            // A 64-bit size follows the type.
            1 => bytes
                .get(start + 8..start + 16)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .filter(|&s| s >= 16)
                .and_then(|s| (start as u64).checked_add(s)),
            s if s >= 8 => Some(start as u64 + s),
            _ => None,
        };
        if let Some(end) = end.filter(|&e| e <= len as u64) {
            edges.push((start, 1));
            edges.push((end as usize, -1));
        }
    }
    // Ends before starts at the same position: a box that ends where another begins does
    // not hold it.
    edges.sort_unstable();
    let (mut open, mut deepest) = (0i32, 0i32);
    for (_, step) in edges {
        open += step;
        deepest = deepest.max(open);
    }
    deepest as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A box of `kind` around `body`.
    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn nested(kind: &[u8; 4], levels: usize) -> Vec<u8> {
        (0..levels).fold(boxed(b"free", &[0; 8]), |inner, _| boxed(kind, &inner))
    }

    #[test]
    fn real_files_are_far_from_the_bound() {
        for name in [
            "h264_640x360_2s.mp4",
            "h264_320x240_3s_moov_at_end.mp4",
            "h264_320x240_rotate90_metadata.mp4",
        ] {
            let file = crate::video::corpus(name);
            // The `moov` (what the parser is given), from the top-level box headers.
            let mut at = 0;
            let moov = loop {
                let size = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
                if &file[at + 4..at + 8] == b"moov" {
                    break &file[at..at + size];
                }
                at += size;
            };
            let depth = deepest_nesting(moov);
            assert!((5..=16).contains(&depth), "{name}: {depth}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_and_counted_from_the_boxes_alone() {
        // Each level adds exactly one (the innermost `free` is the first).
        assert_eq!(deepest_nesting(&nested(b"stbl", 10)), 11);
        assert!(check_nesting(&nested(b"stbl", MAX_BOX_DEPTH - 1)).is_ok());
        for levels in [MAX_BOX_DEPTH, 500, 5_000] {
            let err = check_nesting(&nested(b"stbl", levels)).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{levels}: {err}");
        }
        // Siblings do not nest, whatever their number; boxes that end where the next
        // starts do not hold it.
        let siblings: Vec<u8> = (0..1000).flat_map(|_| boxed(b"free", &[0; 8])).collect();
        assert_eq!(deepest_nesting(&boxed(b"moov", &siblings)), 2);
        // Sizes that run past the bytes, or are smaller than a header, are no boxes.
        assert_eq!(deepest_nesting(b"\0\0\x10\0stbl\0\0\0\x04stbl"), 0);
    }
}
