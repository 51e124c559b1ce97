//! AV1 frames through libaom's decoder: the same library (and build) the AVIF encoder and
//! libavif's decoder use (`libaom-sys`, its bundled sources), so AV1 video adds no C code
//! to the build and cross-builds like the rest. 8-bit 4:2:0, 4:2:2 and 4:4:4, 10-bit 4:2:0
//! and 4:2:2; other layouts are refused from the first picture.
//!
//! Input: the samples of a [`super::FramePlan`] (temporal units of OBUs, as MP4 and WebM
//! carry them; keyframe first) and which picture to keep; output: that picture as RGB
//! (`yuvutils-rs`, with the stream's own matrix and range). Uses `pixels`, `Error`, `Stop`;
//! the FFI calls are the only `unsafe` of the video code, each with the invariant it relies
//! on.
#![allow(unsafe_code)]

use std::ptr;

use libaom_sys as aom;

use crate::pixels::Frame;
use crate::{Error, Stop};

/// The picture `picture` (0-based, in presentation order) of decoding `samples`, else the
/// last one the decoder gave. Never panics.
pub fn decode(samples: &[&[u8]], picture: usize, stop: &Stop) -> Result<Frame, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_frames(samples, picture, stop)
    }))
    .unwrap_or(Err(Error::Panicked))
}

/// A decoder context, destroyed when dropped.
struct Decoder(aom::aom_codec_ctx_t);

impl Decoder {
    fn new() -> Result<Decoder, Error> {
        // SAFETY: a zeroed context is what `aom_codec_dec_init_ver` expects to fill in; the
        // configuration outlives the call; the ABI version is the one of these bindings.
        unsafe {
            let mut ctx: aom::aom_codec_ctx_t = std::mem::zeroed();
            let cfg = aom::aom_codec_dec_cfg_t {
                threads: 1,
                w: 0,
                h: 0,
                allow_lowbitdepth: 1,
            };
            let status = aom::aom_codec_dec_init_ver(
                &mut ctx,
                aom::aom_codec_av1_dx(),
                &cfg,
                0,
                aom::AOM_DECODER_ABI_VERSION as i32,
            );
            if status != aom::AOM_CODEC_OK {
                return Err(Error::Invalid("AV1 decoder did not start".into()));
            }
            Ok(Decoder(ctx))
        }
    }

    /// Feeds one temporal unit (`None`: the end of the stream, to flush).
    fn feed(&mut self, data: Option<&[u8]>) -> bool {
        let (ptr, len) = data.map_or((ptr::null(), 0), |d| (d.as_ptr(), d.len()));
        // SAFETY: the context was initialised by `new`; `ptr`/`len` describe a live slice
        // (or are null/0, libaom's flush) that libaom only reads during the call.
        unsafe {
            aom::aom_codec_decode(&mut self.0, ptr, len, ptr::null_mut()) == aom::AOM_CODEC_OK
        }
    }

    /// Hands every picture ready for display to `out`, in presentation order.
    fn drain(&mut self, out: &mut Pictures) -> Result<(), Error> {
        let mut iter: aom::aom_codec_iter_t = ptr::null();
        loop {
            // SAFETY: the context is initialised; `iter` is the iterator storage libaom
            // asks for, started at null. The image it returns stays valid until the next
            // `aom_codec_decode`, and is only read (by `give`) before that.
            let img = unsafe { aom::aom_codec_get_frame(&mut self.0, &mut iter) };
            if img.is_null() {
                return Ok(());
            }
            // SAFETY: non-null, from libaom, valid as said above.
            out.give(unsafe { &*img })?;
        }
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: initialised by `new`, destroyed once.
        unsafe {
            aom::aom_codec_destroy(&mut self.0);
        }
    }
}

fn decode_frames(samples: &[&[u8]], picture: usize, stop: &Stop) -> Result<Frame, Error> {
    let mut decoder = Decoder::new()?;
    let mut out = Pictures {
        given: 0,
        kept: None,
        picture,
    };
    for sample in samples {
        stop.check()?;
        // A damaged temporal unit is skipped; the picture asked for must still come out.
        if decoder.feed(Some(sample)) {
            decoder.drain(&mut out)?;
        }
        if out.given > picture {
            break;
        }
    }
    if out.given <= picture && decoder.feed(None) {
        decoder.drain(&mut out)?;
    }
    out.kept
        .ok_or_else(|| Error::Invalid("AV1: no picture decoded".into()))
}

/// The pictures a decoder gives out, counted; the one asked for (else the last) kept.
struct Pictures {
    given: usize,
    kept: Option<Frame>,
    picture: usize,
}

impl Pictures {
    fn give(&mut self, img: &aom::aom_image) -> Result<(), Error> {
        if self.given <= self.picture {
            self.kept = Some(rgb(img)?);
        }
        self.given += 1;
        Ok(())
    }
}

/// A decoded picture as RGB, by `yuvutils-rs` with the stream's own matrix and range:
/// the layouts of the module doc (monochrome as 4:2:0 with the neutral chroma libaom
/// provides).
fn rgb(img: &aom::aom_image) -> Result<Frame, Error> {
    use yuvutils_rs as yuv;
    let (w, h) = (img.d_w, img.d_h);
    if w == 0 || h == 0 || img.planes.iter().any(|p| p.is_null()) {
        return Err(Error::Invalid("AV1 picture without pixels".into()));
    }
    let high = img.fmt & aom::AOM_IMG_FMT_HIGHBITDEPTH != 0;
    let (xs, ys) = (img.x_chroma_shift, img.y_chroma_shift);
    let chroma = (w.div_ceil(1 << xs), h.div_ceil(1 << ys));
    let range = if img.range == aom::AOM_CR_FULL_RANGE {
        yuv::YuvRange::Full
    } else {
        yuv::YuvRange::Limited
    };
    let matrix = match img.mc {
        aom::AOM_CICP_MC_BT_709 => yuv::YuvStandardMatrix::Bt709,
        aom::AOM_CICP_MC_BT_2020_NCL | aom::AOM_CICP_MC_BT_2020_CL => {
            yuv::YuvStandardMatrix::Bt2020
        }
        aom::AOM_CICP_MC_SMPTE_240 => yuv::YuvStandardMatrix::Smpte240,
        // BT.601, and an unspecified stream as FFmpeg reads it (and as the H.264 frames
        // are converted).
        _ => yuv::YuvStandardMatrix::Bt601,
    };
    let mut data = vec![0u8; w as usize * h as usize * 3];
    let stride = |s: i32| u32::try_from(s).unwrap_or(0);
    let [s0, s1, s2] = img.stride.map(stride);
    let [p0, p1, p2] = img.planes;
    let bad = |e: yuv::YuvError| Error::Invalid(format!("AV1 picture: {e}"));
    if high {
        // Strides are in bytes; the samples are 16-bit.
        let plane = |p: *mut u8, stride: u32, rows: u32| {
            let len = (stride / 2) as usize * rows as usize;
            // SAFETY: libaom's high-bit-depth planes are 16-bit aligned and hold
            // `stride × rows` bytes for the displayed size.
            unsafe { std::slice::from_raw_parts(p.cast::<u16>(), len) }
        };
        let image = yuv::YuvPlanarImage {
            y_plane: plane(p0, s0, h),
            y_stride: s0 / 2,
            u_plane: plane(p1, s1, chroma.1),
            u_stride: s1 / 2,
            v_plane: plane(p2, s2, chroma.1),
            v_stride: s2 / 2,
            width: w,
            height: h,
        };
        if img.bit_depth != 10 {
            return Err(Error::Unsupported("AV1 of 12 bits"));
        }
        match (xs, ys) {
            (1, 1) => yuv::i010_to_rgb(&image, &mut data, w * 3, range, matrix),
            (1, 0) => yuv::i210_to_rgb(&image, &mut data, w * 3, range, matrix),
            _ => return Err(Error::Unsupported("this AV1 chroma layout")),
        }
        .map_err(bad)?;
    } else {
        let plane = |p: *mut u8, stride: u32, rows: u32| {
            let len = stride as usize * rows as usize;
            // SAFETY: libaom's planes hold `stride × rows` bytes for the displayed size.
            unsafe { std::slice::from_raw_parts(p, len) }
        };
        let image = yuv::YuvPlanarImage {
            y_plane: plane(p0, s0, h),
            y_stride: s0,
            u_plane: plane(p1, s1, chroma.1),
            u_stride: s1,
            v_plane: plane(p2, s2, chroma.1),
            v_stride: s2,
            width: w,
            height: h,
        };
        match (xs, ys) {
            (1, 1) => yuv::yuv420_to_rgb(&image, &mut data, w * 3, range, matrix),
            (1, 0) => yuv::yuv422_to_rgb(&image, &mut data, w * 3, range, matrix),
            (0, 0) => yuv::yuv444_to_rgb(&image, &mut data, w * 3, range, matrix),
            _ => return Err(Error::Unsupported("this AV1 chroma layout")),
        }
        .map_err(bad)?;
    }
    Ok(Frame::rgb(w, h, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::mp4::{plan, track_in};
    use crate::video::{At, Codec};

    #[test]
    fn av1_in_mp4_gives_its_frames() {
        let file = crate::video::corpus("av1_320x240_3s.mp4");
        let t = track_in(&file, 16 << 20).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.codec, Codec::Av1);
        for at in [At::Millis(0), At::Millionths(50_000), At::Millis(2_500)] {
            let p = plan(&t, at, 64 << 20).unwrap_or_else(|e| panic!("{e}"));
            let samples: Vec<&[u8]> = p
                .samples
                .iter()
                .filter_map(|s| {
                    file.get(s.offset as usize..(s.offset + u64::from(s.size)) as usize)
                })
                .collect();
            let f =
                decode(&samples, p.picture(), &Stop::default()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((f.width, f.height, f.data.len()), (320, 240, 320 * 240 * 3));
            let mean = f.data.iter().map(|&b| f64::from(b)).sum::<f64>() / f.data.len() as f64;
            assert!(mean > 10.0, "{at:?}: a picture");
        }
    }

    #[test]
    fn garbage_is_refused_not_decoded() {
        let got = decode(
            &[&[0x12, 0, 0x0a, 0x0b, 0, 0, 0, 0x24, 0xff][..]],
            0,
            &Stop::default(),
        );
        assert!(matches!(got, Err(Error::Invalid(_))), "{got:?}");
    }
}
