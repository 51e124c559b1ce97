//! The encoders that write animations behind one interface: animated WebP (Misskey's
//! default and the store mode's), GIF and AVIF, chosen from the output. Input: the output,
//! the transform and the canvas size, then frames; output: the [`Rendered`] animation. Uses
//! `encode`, `avif`, `tuning` and the crate's output types.

use crate::pixels::Frame;
use crate::tuning::misskey_animation;
use crate::{avif, encode, store_webp, Error, Format, Output, Rendered, Transform};

/// One of the encoders that write animations.
pub(crate) enum Animator {
    Webp(encode::AnimatedWebp),
    Gif(encode::AnimatedGif),
    Avif(avif::Encoder),
}

impl Animator {
    pub(crate) fn new(
        output: Option<Output>,
        transform: Transform,
        (w, h): (u32, u32),
    ) -> Result<Animator, Error> {
        Ok(match output {
            None => Animator::Webp(encode::AnimatedWebp::new(
                w,
                h,
                misskey_animation(transform),
            )?),
            Some(Output::Webp { quality }) => {
                Animator::Webp(encode::AnimatedWebp::new(w, h, store_webp(quality))?)
            }
            Some(Output::Gif) => Animator::Gif(encode::AnimatedGif::new(w, h)?),
            Some(Output::Avif { quality, speed }) => {
                Animator::Avif(avif::Encoder::new(w, h, quality, speed, true)?)
            }
            Some(Output::Jpeg { .. } | Output::Png) => {
                return Err(Error::Encode("this format cannot animate".into()))
            }
        })
    }

    pub(crate) fn add(&mut self, frame: &Frame) -> Result<(), Error> {
        match self {
            Animator::Webp(e) => e.add(frame),
            Animator::Gif(e) => e.add(frame),
            Animator::Avif(e) => e.add(frame),
        }
    }

    pub(crate) fn frames(&self) -> u32 {
        match self {
            Animator::Webp(e) => e.frames(),
            Animator::Gif(e) => e.frames(),
            Animator::Avif(e) => e.frames(),
        }
    }

    pub(crate) fn finish(self) -> Result<Rendered, Error> {
        Ok(match self {
            Animator::Webp(e) => Rendered {
                bytes: e.finish()?,
                format: Format::Webp,
            },
            Animator::Gif(e) => Rendered {
                bytes: e.finish()?,
                format: Format::Gif,
            },
            Animator::Avif(e) => Rendered {
                bytes: e.finish()?,
                format: Format::Avif,
            },
        })
    }
}
