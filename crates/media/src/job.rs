//! A render as data: what another process needs, besides the input bytes, to do the same
//! render — so that the service can hand decoding to a sandboxed worker process and keep no
//! decoder in its own.
//!
//! - [`Job::Image`]: an image's render as [`crate::prepare`] was asked for it (format,
//!   transform, limits, the chosen output); the worker prepares it again from the bytes
//!   (headers only, or the SVG parse) and renders it.
//! - [`Job::Assess`]: [`crate::prepare`] itself (the headers read, the limits checked, the
//!   memory priced), answered as an [`Assessment`]: the service admits from it, so that no
//!   header reader runs in its process either.
//! - [`Job::Video`]: a video frame's render (codec and its parameter sets, rotation, which
//!   decoded picture is the frame, transform, output) from the plan's samples.
//!
//! Input: a job and its payloads; output: [`Done`] (the [`Rendered`] image and its
//! [`Timings`], or the [`Assessment`]). Uses
//! the engine's own entry points and `serde` (the job's wire form).

use serde::{Deserialize, Serialize};

use crate::video::{Codec, Track};
use crate::{Error, Format, Limits, Output, Prepared, Rendered, Stop, Timings, Transform};

/// One render, without its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Job {
    /// The payload is the whole input.
    Image {
        format: Format,
        transform: Transform,
        limits: Limits,
        output: Option<Output>,
    },
    /// The payload is the whole input: its headers are read and priced, nothing decoded.
    Assess {
        format: Format,
        transform: Transform,
        limits: Limits,
    },
    /// The payloads are the plan's samples, in decode order.
    Video {
        codec: Codec,
        width: u32,
        height: u32,
        rotation: u16,
        shown_before: Vec<bool>,
        transform: Transform,
        output: Option<Output>,
    },
}

/// What [`crate::prepare`] found, as data: enough to admit a render, choose its output and say its
/// size, without the parsed headers. A sandboxed worker assesses an input
/// ([`Job::Assess`]); the service admits and decides from this ([`crate::Prepared::assessed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Assessment {
    /// [`crate::Prepared::cost`].
    pub cost: u64,
    /// [`crate::Prepared::animated`].
    pub animated: bool,
    /// [`crate::Prepared::frames`].
    pub frames: u32,
    /// The source's width and height as displayed (after its orientation).
    pub width: u32,
    pub height: u32,
}

/// What a job made.
#[derive(Debug)]
pub enum Done {
    Rendered(Rendered, Timings),
    Assessed(Assessment),
}

impl Job {
    /// The job that renders `prepared` again.
    pub fn image(prepared: &Prepared) -> Job {
        Job::Image {
            format: prepared.format,
            transform: prepared.transform,
            limits: prepared.limits,
            output: prepared.output,
        }
    }

    /// The job that renders a frame of `track` from a plan's samples.
    pub fn video(
        track: &Track,
        shown_before: &[bool],
        transform: Transform,
        output: Option<Output>,
    ) -> Job {
        Job::Video {
            codec: track.codec.clone(),
            width: track.width,
            height: track.height,
            rotation: track.rotation,
            shown_before: shown_before.to_vec(),
            transform,
            output,
        }
    }

    /// Does the job (never panics: a codec panic is [`Error::Panicked`]). `payloads`: the
    /// input (one), or the samples. A video frame's stages are not timed
    /// apart: its [`Timings`] are zero.
    pub fn run(&self, payloads: &[&[u8]], stop: &Stop) -> Result<Done, Error> {
        let rendered = match self {
            Job::Assess {
                format,
                transform,
                limits,
            } => {
                let [input] = payloads else {
                    return Err(Error::Invalid("an assessment takes one input".into()));
                };
                let prepared = crate::prepare(input, *format, *transform, limits)?;
                return Ok(Done::Assessed(prepared.assessment()));
            }
            Job::Image {
                format,
                transform,
                limits,
                output,
            } => {
                let [input] = payloads else {
                    return Err(Error::Invalid("an image job takes one input".into()));
                };
                let prepared = crate::prepare(input, *format, *transform, limits)?;
                let prepared = match output {
                    Some(output) => prepared.with_output(*output),
                    None => prepared,
                };
                prepared.render_timed(input, stop)?
            }
            Job::Video {
                codec,
                width,
                height,
                rotation,
                shown_before,
                transform,
                output,
            } => {
                let track = Track::for_frames(codec.clone(), *width, *height, *rotation);
                let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::video::render(&track, payloads, shown_before, *transform, *output, stop)
                }))
                .unwrap_or(Err(Error::Panicked))?;
                // A frame's stages are not timed apart (as in-process).
                (rendered, Timings::default())
            }
        };
        Ok(Done::Rendered(rendered.0, rendered.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_survives_its_wire_form_and_renders_what_the_engine_renders() {
        let png = crate::test_corpus("png-pngsuite/basn6a08.png");
        assert!(!png.is_empty(), "corpus file");
        let prepared = crate::prepare(&png, Format::Png, Transform::Preview, &Limits::default())
            .unwrap()
            .with_output(Output::Jpeg { quality: 70 });
        let job = Job::image(&prepared);
        let wire = serde_json::to_vec(&job).unwrap();
        let back: Job = serde_json::from_slice(&wire).unwrap();
        assert_eq!(back, job);
        let Done::Rendered(rendered, _) = back.run(&[&png], &Stop::default()).unwrap() else {
            panic!("a render")
        };
        let assess = Job::Assess {
            format: Format::Png,
            transform: Transform::Preview,
            limits: Limits::default(),
        };
        let wire = serde_json::to_vec(&assess).unwrap();
        let back: Job = serde_json::from_slice(&wire).unwrap();
        let Done::Assessed(found) = back.run(&[&png], &Stop::default()).unwrap() else {
            panic!("an assessment")
        };
        assert_eq!(found, prepared.assessment());
        // Rendered from the assessment alone (the headers read again), the same bytes.
        let assessed =
            Prepared::assessed(Format::Png, Transform::Preview, &Limits::default(), found)
                .with_output(Output::Jpeg { quality: 70 });
        assert_eq!(assessed.cost(), prepared.cost());
        assert_eq!(assessed.size(), prepared.size());
        let again = assessed.render(&png, &Stop::default()).unwrap();
        let direct = prepared.render(&png, &Stop::default()).unwrap();
        assert_eq!(rendered, direct);
        assert_eq!(again, direct);
        assert_eq!(rendered.format, Format::Jpeg);
    }
}
