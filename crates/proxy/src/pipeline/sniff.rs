//! The sniff step: a body's type from its first bytes, never from headers or the name.
//! Input: a source [`Body`] (any source) and a memory [`Room`]; output: the [`Format`], the
//! bytes read (to be put back) and whether they are the whole body; and whether a sniffed
//! type may be served as it is ([`passable`]). Uses `error`, `source` and `media::format`.

use bytes::Bytes;
use media::format::{sniff, Sniffed, SNIFF_LEN, SVG_SNIFF_LIMIT};
use media::Format;

use crate::error::AppError;
use crate::source::{Body, BodyError, Room};

/// Reads enough of `body` to decide its format: [`SNIFF_LEN`] bytes, or up to
/// [`SVG_SNIFF_LIMIT`] when the head is text that may be an SVG (that much reserved in
/// `room` first). Returns the format, the bytes read, and whether they are the whole body.
pub(crate) async fn sniff_body<E: BodyError>(
    body: &mut Body<E>,
    room: &mut dyn Room,
) -> Result<(Format, Bytes, bool), E> {
    let (head, ended) = body.read_head(SNIFF_LEN).await?;
    if let Sniffed::Known(format) = sniff(&head, ended) {
        return Ok((format, head, ended));
    }
    // The read-ahead buffer and the joined copy below, both up to the limit.
    room.make_room(2 * SVG_SNIFF_LIMIT as u64 + SNIFF_LEN as u64)?;
    let (more, ended) = body.read_head(SVG_SNIFF_LIMIT + 1 - head.len()).await?;
    let mut all = Vec::with_capacity(head.len() + more.len());
    all.extend_from_slice(&head);
    all.extend_from_slice(&more);
    let format = match sniff(&all, ended) {
        Sniffed::Known(f) => f,
        // Cannot happen (more than the limit was read, or all of it), but never guess.
        Sniffed::NeedMore => Format::unknown(),
    };
    Ok((format, Bytes::from(all), ended))
}

/// The format of a whole body.
pub(crate) fn sniff_complete(bytes: &[u8]) -> Format {
    match sniff(bytes, true) {
        Sniffed::Known(f) => f,
        Sniffed::NeedMore => Format::unknown(),
    }
}

/// Whether a sniffed type may be sent to a browser as it is (both modes): the formats
/// table's `passthrough` capability, else `NotPassable`.
pub(crate) fn passable(format: Format) -> Result<(), AppError> {
    if format.capabilities().passthrough {
        Ok(())
    } else {
        Err(AppError::NotPassable(format))
    }
}
