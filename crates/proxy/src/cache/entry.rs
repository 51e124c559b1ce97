//! The entry format: one object per variant, a small header (content type, validators,
//! created-at, download name) in front of the encoded bytes, so one GET answers a hit from
//! any store. Input: a [`Variant`]; output: the blob and its S3 metadata, and back. Damaged
//! or foreign blobs decode to `None`: the header names the bytes' length and CRC-32, so an
//! entry cut short (a crash mid-write, a full disk) or with flipped bytes is never served.
//! Uses only [`Variant`].

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use media::Format;
use object_store::{Attribute, Attributes};
use serde::{Deserialize, Serialize};

use super::Variant;

/// The bytes an entry is counted as in a directory's bound: its bytes and about what its
/// header adds.
pub(super) fn weight(v: &Variant) -> u32 {
    u32::try_from(v.bytes.len() + HEADER_ALLOWANCE).unwrap_or(u32::MAX)
}

/// About what an entry's header adds to its bytes on disk.
const HEADER_ALLOWANCE: usize = 200;

/// An entry's header, stored as JSON in front of the bytes.
#[derive(Debug, Serialize, Deserialize)]
struct EntryHeader {
    content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<u64>,
    #[serde(default)]
    vary_accept: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fallback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Unix seconds.
    created: u64,
    /// The bytes' length and CRC-32 (IEEE), checked when read.
    length: u64,
    crc32: u32,
}

/// The entry layout: this magic, the header's length (u32, little-endian), the header
/// (JSON), the bytes. Version 2 added the length and checksum: a version 1 entry is not
/// read (a miss, rendered again once).
const MAGIC: &[u8; 4] = b"MPV2";

/// The formats the engine writes: what a cached entry can be.
const OUTPUTS: [Format; 5] = [
    Format::Webp,
    Format::Avif,
    Format::Jpeg,
    Format::Png,
    Format::Gif,
];

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn from_unix(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

pub(super) fn encode_entry(v: &Variant) -> (Bytes, Attributes) {
    let header = EntryHeader {
        content_type: v.format.mime().to_owned(),
        etag: v.etag.clone(),
        last_modified: v.last_modified.map(unix),
        vary_accept: v.vary_accept,
        fallback: v.fallback.clone(),
        name: v.name.clone(),
        created: unix(v.created),
        length: v.bytes.len() as u64,
        crc32: crc32fast::hash(&v.bytes),
    };
    // Serialising plain strings and numbers cannot fail.
    let json = serde_json::to_vec(&header).unwrap_or_default();
    let mut blob = Vec::with_capacity(8 + json.len() + v.bytes.len());
    blob.extend_from_slice(MAGIC);
    blob.extend_from_slice(&u32::try_from(json.len()).unwrap_or(0).to_le_bytes());
    blob.extend_from_slice(&json);
    blob.extend_from_slice(&v.bytes);
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::ContentType,
        "application/vnd.media-proxy.variant".into(),
    );
    attributes.insert(
        Attribute::Metadata("variant-content-type".into()),
        header.content_type.into(),
    );
    attributes.insert(
        Attribute::Metadata("created-at".into()),
        header.created.to_string().into(),
    );
    if let Some(etag) = header.etag {
        attributes.insert(Attribute::Metadata("variant-etag".into()), etag.into());
    }
    (Bytes::from(blob), attributes)
}

pub(super) fn decode_entry(blob: Bytes) -> Option<Variant> {
    let rest = blob.strip_prefix(MAGIC)?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    let json = rest.get(..len)?;
    let header: EntryHeader = serde_json::from_slice(json).ok()?;
    let format = OUTPUTS
        .into_iter()
        .find(|f| f.mime() == header.content_type)?;
    let start = MAGIC.len() + 4 + len;
    let bytes = blob.slice(start..);
    if bytes.len() as u64 != header.length || crc32fast::hash(&bytes) != header.crc32 {
        return None;
    }
    Some(Variant {
        bytes,
        format,
        etag: header.etag,
        last_modified: header.last_modified.map(from_unix),
        vary_accept: header.vary_accept,
        fallback: header.fallback,
        name: header.name,
        created: from_unix(header.created),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Variant {
        Variant {
            bytes: Bytes::from_static(b"RIFF....WEBPVP8 "),
            format: Format::Webp,
            etag: Some("\"abc\"".into()),
            last_modified: Some(from_unix(1_700_000_000)),
            vary_accept: true,
            fallback: Some("avif over 2 pixels; image/webp instead".into()),
            name: Some("cat".into()),
            created: from_unix(1_800_000_000),
        }
    }

    #[test]
    fn entries_round_trip_and_damaged_ones_are_refused() {
        let v = sample();
        let (blob, _) = encode_entry(&v);
        assert_eq!(decode_entry(blob.clone()), Some(v));
        for cut in [0, 3, 7, 20, 9 + 10] {
            assert_eq!(decode_entry(blob.slice(..cut)), None, "cut at {cut}");
        }
        let mut other = blob.to_vec();
        other[0] = b'X';
        assert_eq!(decode_entry(Bytes::from(other)), None);
        // The payload cut short, or one of its bits flipped: refused by length and CRC.
        assert_eq!(decode_entry(blob.slice(..blob.len() - 1)), None);
        let mut flipped = blob.to_vec();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x10;
        assert_eq!(decode_entry(Bytes::from(flipped)), None);
    }
}
