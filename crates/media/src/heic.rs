//! HEIC/HEIF stills through `heifer` (safe Rust: the ISO BMFF container, the HEVC intra
//! decoder and the colour conversion; no libheif or libde265).
//!
//! The header read ([`probe`]) parses the container only: the primary item's size after its
//! clean aperture and rotation (`clap`, `irot`), and for a grid the pixels its tiles add up
//! to, so a grid of many large tiles behind a small declared size is refused before any tile
//! is decoded. The decode ([`first_frame`]) gives the primary item upright (rotation and
//! mirroring applied), with its alpha plane, converted to sRGB from its ICC profile or
//! `nclx` colour information; a colour space `heifer` cannot convert (PQ/HLG HDR) is decoded
//! as coded. One thread: a render is one worker's job.
//!
//! Input: bytes known to be HEIC and the `Limits`; output: a `Probe` or a `Frame`. Uses
//! `header`, `limits`, `pixels`, `Error`.

use heifer::heifer_isobmff::boxes::{Grid, Property};
use heifer::heifer_isobmff::HeifFile;

use crate::header::Probe;
use crate::limits::Limits;
use crate::pixels::{Channels, Frame};
use crate::Error;

/// A grid's tiles may overhang its declared size (the last row and column are cropped, and a
/// small image may sit in one larger tile), but not by this much: tiles adding up to more
/// than this many times the image, and more than [`TILE_FLOOR`] pixels, are a bomb.
const MAX_TILE_OVERHANG: u64 = 4;
const TILE_FLOOR: u64 = 1 << 22;

/// The primary image's displayed size (upright), with no orientation left to apply.
pub fn probe(bytes: &[u8]) -> Result<Probe, Error> {
    let file = HeifFile::parse(bytes).map_err(invalid)?;
    let id = file.primary_id;
    let item = file.item(id).map_err(invalid)?;
    let (mut w, mut h) = file
        .image_size(id)
        .map_err(invalid)?
        .ok_or_else(|| Error::Invalid("HEIF image without a size (ispe)".into()))?;
    if item.item_type.0 == *b"grid" {
        let grid = Grid::parse(&file.item_data(id).map_err(invalid)?).map_err(invalid)?;
        let tiles: u64 = file
            .referenced_items(id, b"dimg")
            .iter()
            .map(|&tile| match file.image_size(tile) {
                Ok(Some((tw, th))) => u64::from(tw) * u64::from(th),
                _ => 0,
            })
            .sum();
        let declared = u64::from(grid.output_width) * u64::from(grid.output_height);
        if tiles > declared.saturating_mul(MAX_TILE_OVERHANG).max(TILE_FLOOR) {
            return Err(Error::TooLarge(format!(
                "a {}×{} grid whose tiles hold {tiles} pixels",
                grid.output_width, grid.output_height
            )));
        }
    }
    for property in file.item_properties(id).map_err(invalid)? {
        match property {
            Property::CleanAperture { width, height, .. } => {
                let side = |(num, den): (u32, u32), whole: u32| {
                    let v = f64::from(num) / f64::from(den.max(1));
                    (v.round() as u32).clamp(1, whole.max(1))
                };
                (w, h) = (side(*width, w), side(*height, h));
            }
            Property::Rotation(q) if q % 2 == 1 => (w, h) = (h, w),
            _ => {}
        }
    }
    // No ICC profile in the probe: the decode converts to sRGB itself.
    Ok(Probe::still(w, h))
}

/// The primary image, upright, in sRGB where its colour space allows, at 8 bits.
pub fn first_frame(bytes: &[u8], limits: &Limits) -> Result<Frame, Error> {
    let options = heifer::Options {
        max_threads: 1,
        max_pixels: limits.max_pixels.max(1),
    };
    let image = match heifer::decode_srgb_rgba8(bytes, &options) {
        Err(heifer::Error::Unsupported(_)) => heifer::decode_rgba8(bytes, &options),
        other => other,
    }
    .map_err(decode_error)?;
    Ok(Frame {
        width: image.width,
        height: image.height,
        channels: Channels::Rgba,
        data: image.data,
        delay_ms: 0,
    })
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("HEIF: {e}"))
}

fn decode_error(e: heifer::Error) -> Error {
    match e {
        heifer::Error::Unsupported(what) => Error::Invalid(format!("HEIF: unsupported {what}")),
        other => invalid(other),
    }
}
