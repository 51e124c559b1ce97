//! The render step both pipelines share: the input's headers read and the work priced
//! (`media::prepare`, on the worker pool; over-limit inputs refused there), then — once the
//! caller has chosen the output — the render admitted by its memory estimate and run on the
//! pool under the deadline. Input: the bytes and their sniffed format, a [`media::Transform`];
//! output: a [`Variant`] (bytes, format, created-at; the caller adds its validators and
//! name). A video's frame ([`Renderer::render_video`]) is admitted by the estimate of its
//! track and rendered the same way. Uses `cache` (the `Variant` type), `error`, `metrics`,
//! `workers`, the video step's [`VideoFrame`].

use std::time::SystemTime;

use bytes::Bytes;
use media::{Format, Prepared, Transform};

use super::video::VideoFrame;
use crate::cache::{exact, Variant};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::workers::Workers;

/// A whole input, ready for the engine.
#[derive(Debug)]
pub(crate) struct Input {
    pub bytes: Bytes,
    pub format: Format,
    /// How many of its bytes a reservation the caller holds already counts in the memory
    /// budget (a download's), so the render does not count them twice.
    pub held: u64,
}

/// The engine on the bounded worker pool. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Renderer {
    workers: Workers,
    limits: media::Limits,
    metrics: Metrics,
}

impl Renderer {
    pub(crate) fn new(workers: Workers, limits: media::Limits, metrics: Metrics) -> Self {
        Renderer {
            workers,
            limits,
            metrics,
        }
    }

    /// Headers only: refuses over-limit inputs and prices the work before it is admitted.
    pub(crate) async fn prepare(
        &self,
        input: &Input,
        transform: Transform,
    ) -> Result<Prepared, AppError> {
        self.workers
            .prepare(
                &input.bytes,
                input.held,
                input.format,
                transform,
                &self.limits,
            )
            .await
    }

    /// The render of `prepared` (its output chosen, or the transform's own), finished
    /// before any header is sent.
    pub(crate) async fn render(
        &self,
        prepared: Prepared,
        input: Input,
    ) -> Result<Variant, AppError> {
        self.metrics.renders.inc();
        let rendered = self
            .workers
            .render(prepared, input.bytes, input.held)
            .await?;
        Ok(fresh(rendered))
    }

    /// The still of a video's frame for `transform` (`output`: the store mode's encoding),
    /// admitted by [`media::video::cost`] of its track, on the pool under the deadline.
    pub(crate) async fn render_video(
        &self,
        frame: VideoFrame,
        transform: Transform,
        output: Option<media::Output>,
    ) -> Result<Variant, AppError> {
        self.metrics.renders.inc();
        let cost = media::video::cost(&frame.track, transform, output);
        let job = media::job::Job::video(&frame.track, &frame.shown_before, transform, output);
        let (rendered, _) = self.workers.run_job(cost, 0, job, frame.samples).await?;
        Ok(fresh(rendered))
    }

    /// The limits inputs are checked against (a video's container is read with them).
    pub(crate) fn limits(&self) -> &media::Limits {
        &self.limits
    }
}

/// A variant of freshly rendered bytes (the caller adds validators and the name).
fn fresh(rendered: media::Rendered) -> Variant {
    {
        Variant {
            bytes: exact(rendered.bytes),
            format: rendered.format,
            etag: None,
            last_modified: None,
            vary_accept: false,
            fallback: None,
            name: None,
            created: SystemTime::now(),
        }
    }
}
