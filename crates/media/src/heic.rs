//! HEIC/HEIF stills through `heifer` (safe Rust: the ISO BMFF container, the HEVC intra
//! decoder and the colour conversion; no libheif or libde265).
//!
//! The header read ([`probe`]) parses the container only: the primary item's size after its
//! clean aperture and rotation (`clap`, `irot`), and for a grid the pixels its tiles add up
//! to, so a grid of many large tiles behind a small declared size is refused before any tile
//! is decoded. What the container declares (`ispe`) is a claim: the HEVC sequence parameter
//! sets the decoder will read (the `hvcC` box's and any in the item's data) state the size
//! it allocates, and the larger decides ([`coded_size`]). The decode ([`first_frame`]) gives the primary item upright (rotation and
//! mirroring applied), with its alpha plane, converted to sRGB from its ICC profile or
//! `nclx` colour information; a colour space `heifer` cannot convert (PQ/HLG HDR) is decoded
//! as coded. One thread: a render is one worker's job.
//!
//! Input: bytes known to be HEIC and the `Limits`; output: a `Probe` or a `Frame`. Uses
//! `header`, `limits`, `pixels`, `Error`.

use heifer::heifer_hevc_dec::nal::NalUnit;
use heifer::heifer_hevc_dec::params::Sps;
use heifer::heifer_isobmff::boxes::{Grid, Property};
use heifer::heifer_isobmff::{HeifFile, ItemId};

use crate::header::Probe;
use crate::limits::Limits;
use crate::pixels::{Channels, Frame};
use crate::Error;

/// A grid's tiles may overhang its declared size (the last row and column are cropped, and a
/// small image may sit in one larger tile), but not by this much: tiles adding up to more
/// than this many times the image, and more than [`TILE_FLOOR`] pixels, are a bomb.
const MAX_TILE_OVERHANG: u64 = 4;
const TILE_FLOOR: u64 = 1 << 22;

/// The primary image's displayed size (upright), with no orientation left to apply: of what
/// is declared and what the decoder will make (a grid's output size, a picture's coded
/// size), the larger.
pub fn probe(bytes: &[u8]) -> Result<Probe, Error> {
    let file = HeifFile::parse(bytes).map_err(invalid)?;
    let id = file.primary_id;
    let item = file.item(id).map_err(invalid)?;
    let (mut w, mut h) = file
        .image_size(id)
        .map_err(invalid)?
        .ok_or_else(|| Error::Invalid("HEIF image without a size (ispe)".into()))?;
    if let Some(coded) = coded_size(&file, id)? {
        (w, h) = believed((w, h), coded);
    }
    if item.item_type.0 == *b"grid" {
        let grid = Grid::parse(&file.item_data(id).map_err(invalid)?).map_err(invalid)?;
        // The decoder makes the grid's own output size, whatever `ispe` says.
        (w, h) = (w.max(grid.output_width), h.max(grid.output_height));
        let tiles: u64 = file
            .referenced_items(id, b"dimg")
            .iter()
            .map(|&tile| {
                let declared = file.image_size(tile).ok().flatten().unwrap_or((0, 0));
                let (tw, th) = match coded_size(&file, tile)? {
                    Some(coded) => believed(declared, coded),
                    None => declared,
                };
                Ok(u64::from(tw) * u64::from(th))
            })
            .sum::<Result<u64, Error>>()?;
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

/// An HEVC picture is coded in whole coding blocks of up to 64 pixels: a declared size is
/// honest when the coded one is at most this much larger on each side.
const CODING_BLOCK: u32 = 64;

/// The size to price an item at: its declared size, unless its stream codes a larger
/// picture than that size rounded up to whole coding blocks; then the stream's.
fn believed(declared: (u32, u32), coded: (u32, u32)) -> (u32, u32) {
    let round = |v: u32| v.div_ceil(CODING_BLOCK).saturating_mul(CODING_BLOCK);
    if coded.0 > round(declared.0) || coded.1 > round(declared.1) {
        (declared.0.max(coded.0), declared.1.max(coded.1))
    } else {
        declared
    }
}

/// The largest picture (`pic_width/height_in_luma_samples`, before the conformance window:
/// what the decoder allocates) any sequence parameter set of an HEVC item states, from its
/// `hvcC` box and from its own data (the decoder reads both). `None`: not an HEVC item.
fn coded_size(file: &HeifFile<'_>, id: ItemId) -> Result<Option<(u32, u32)>, Error> {
    let Some(config) = file.hevc_config(id).map_err(invalid)? else {
        return Ok(None);
    };
    let mut size: Option<(u32, u32)> = None;
    let mut see = |nal: &[u8]| -> Result<(), Error> {
        // nal_unit_type 33: a sequence parameter set.
        if nal.first().is_some_and(|b| (b >> 1) & 0x3f == 33) && nal.len() > 2 {
            let unit = NalUnit::parse(nal).map_err(invalid)?;
            let sps = Sps::parse(&unit.rbsp).map_err(invalid)?;
            let (w, h) = (
                sps.pic_width_in_luma_samples,
                sps.pic_height_in_luma_samples,
            );
            size = Some(size.map_or((w, h), |(sw, sh)| (sw.max(w), sh.max(h))));
        }
        Ok(())
    };
    for nal in &config.nal_units {
        see(nal)?;
    }
    let data = file.item_data(id).map_err(invalid)?;
    let length = usize::from(config.nal_length_size);
    let mut rest = &data[..];
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_at_checked(length) else {
            break;
        };
        let len = len
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let Some((nal, tail)) = tail.split_at_checked(len) else {
            break;
        };
        see(nal)?;
        rest = tail;
    }
    Ok(size)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes` with every `ispe` of `from` (width, height) saying `to` instead.
    fn claiming(bytes: &[u8], from: (u32, u32), to: (u32, u32)) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let old = [from.0.to_be_bytes(), from.1.to_be_bytes()].concat();
        let new = [to.0.to_be_bytes(), to.1.to_be_bytes()].concat();
        let mut at = 0;
        while let Some(found) = out[at..].windows(4).position(|w| w == b"ispe") {
            let field = at + found + 8;
            if out.get(field..field + 8) == Some(&old[..]) {
                out[field..field + 8].copy_from_slice(&new);
            }
            at = field;
        }
        out
    }

    #[test]
    fn a_declared_size_smaller_than_the_stream_is_not_believed() {
        let pug = crate::test_corpus("heic/pillow-heif-other/pug.heic");
        assert_eq!(probe(&pug).unwrap(), Probe::still(4032, 3024));
        let lie = claiming(&pug, (4032, 3024), (64, 64));
        assert_ne!(lie, pug);
        assert_eq!(probe(&lie).unwrap(), Probe::still(4032, 3024));
        // Larger claims stand: the corpus's bomb, tiles declared 65535×65535 in a 29×100 grid.
        let bomb = crate::test_corpus("hostile/bombs/generated/heic_ispe_65535x65535_lie.heic");
        assert!(matches!(probe(&bomb), Err(Error::TooLarge(_))));
    }
}
