//! VP9 frames through `rusty_vp9` (pure Rust; see `Cargo.toml` for why this decoder). 8-bit
//! and 10-bit, 4:2:0, 4:2:2 and 4:4:4; superframes (a hidden alternate reference and the
//! shown frame in one packet) are split by the decoder.
//!
//! Input: the samples of a [`super::FramePlan`] (keyframe first) and which shown picture
//! to keep; output: that picture as RGB (`yuvutils-rs`, BT.601 limited range: VP9 streams
//! rarely signal otherwise, and the decoder does not report it). Alpha (WebM keeps it in a
//! separate stream) is not read: the still is opaque. Uses `pixels`, `Error`, `Stop`.

use rusty_vp9::{DecodedFrame, Vp9Decoder};

use crate::pixels::Frame;
use crate::{Error, Stop};

/// The shown picture `picture` (0-based) of decoding `samples`, else the last one shown.
/// Never panics.
pub fn decode(samples: &[&[u8]], picture: usize, stop: &Stop) -> Result<Frame, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_frames(samples, picture, stop)
    }))
    .unwrap_or(Err(Error::Panicked))
}

fn decode_frames(samples: &[&[u8]], picture: usize, stop: &Stop) -> Result<Frame, Error> {
    let mut decoder = Vp9Decoder::new();
    let mut kept = None;
    let mut given = 0usize;
    for (i, sample) in samples.iter().enumerate() {
        stop.check()?;
        decoder
            .push(sample, Some(i as i64))
            .map_err(|e| Error::Invalid(format!("VP9: {e}")))?;
        loop {
            match decoder.next_frame() {
                Ok(frame) => {
                    if given <= picture {
                        kept = Some(frame);
                    }
                    given += 1;
                }
                Err(rusty_vp9::Error::Again | rusty_vp9::Error::Eof) => break,
                // A damaged picture: the ones before it may still be the answer.
                Err(_) => break,
            }
        }
        if given > picture {
            break;
        }
    }
    let frame = kept.ok_or_else(|| Error::Invalid("VP9: no picture decoded".into()))?;
    rgb(&frame)
}

fn rgb(f: &DecodedFrame) -> Result<Frame, Error> {
    use yuvutils_rs as yuv;
    let (w, h) = (f.width, f.height);
    let (Some(y), Some(u), Some(v)) = (f.planes.first(), f.planes.get(1), f.planes.get(2)) else {
        return Err(bad_layout());
    };
    let (Some(&sy), Some(&su), Some(&sv)) = (f.strides.first(), f.strides.get(1), f.strides.get(2))
    else {
        return Err(bad_layout());
    };
    if w == 0 || h == 0 {
        return Err(bad_layout());
    }
    let stride = |s: usize| u32::try_from(s).map_err(|_| bad_layout());
    let (range, matrix) = (yuv::YuvRange::Limited, yuv::YuvStandardMatrix::Bt601);
    let mut data = vec![0u8; w as usize * h as usize * 3];
    let failed = |e: yuv::YuvError| Error::Invalid(format!("VP9 picture: {e}"));
    let layout = (f.subsampling_x, f.subsampling_y);
    if f.bit_depth == 8 {
        let image = yuv::YuvPlanarImage {
            y_plane: y,
            y_stride: stride(sy)?,
            u_plane: u,
            u_stride: stride(su)?,
            v_plane: v,
            v_stride: stride(sv)?,
            width: w,
            height: h,
        };
        match layout {
            (1, 1) => yuv::yuv420_to_rgb(&image, &mut data, w * 3, range, matrix),
            (1, 0) => yuv::yuv422_to_rgb(&image, &mut data, w * 3, range, matrix),
            (0, 0) => yuv::yuv444_to_rgb(&image, &mut data, w * 3, range, matrix),
            _ => return Err(Error::Unsupported("this VP9 chroma layout")),
        }
        .map_err(failed)?;
    } else if f.bit_depth == 10 {
        // Little-endian 16-bit samples, strides in bytes.
        let words = |p: &[u8]| -> Vec<u16> {
            p.chunks_exact(2)
                .filter_map(|b| b.try_into().ok().map(u16::from_le_bytes))
                .collect()
        };
        let (y, u, v) = (words(y), words(u), words(v));
        let image = yuv::YuvPlanarImage {
            y_plane: &y,
            y_stride: stride(sy / 2)?,
            u_plane: &u,
            u_stride: stride(su / 2)?,
            v_plane: &v,
            v_stride: stride(sv / 2)?,
            width: w,
            height: h,
        };
        match layout {
            (1, 1) => yuv::i010_to_rgb(&image, &mut data, w * 3, range, matrix),
            (1, 0) => yuv::i210_to_rgb(&image, &mut data, w * 3, range, matrix),
            _ => return Err(Error::Unsupported("this VP9 chroma layout")),
        }
        .map_err(failed)?;
    } else {
        return Err(Error::Unsupported("VP9 of 12 bits"));
    }
    Ok(Frame::rgb(w, h, data))
}

fn bad_layout() -> Error {
    Error::Invalid("VP9 picture layout".into())
}
