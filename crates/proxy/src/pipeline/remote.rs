//! The remote-mode steps, in order. Input: a [`Plan`]; output: a [`Reply`] (no HTTP types).
//!
//! A transform ([`Pipeline::transformed`]):
//!
//! 1. variant lookup ([`Reuse::lookup`]): a remembered lasting failure, else a cached
//!    variant;
//! 2. coalesce ([`Reuse::render_once`]): one render per variant key for everyone asking;
//!    the leader then: takes a place, is admitted by the client's fetch rate, downloads
//!    the URL (once for every transform of it asked for meanwhile), sniffs it, prepares
//!    and renders it on the pool ([`Renderer`]); the variant is kept, a lasting failure
//!    remembered.
//!
//! No transform ([`Pipeline::original`]): the fetch rate, a passthrough place, then the
//! original passed through as a stream — the sniffed head first, then the rest as it
//! arrives (no whole-body buffer, no temporary file). An image browsers may not show (SVG,
//! TIFF, HEIC/HEIF, JPEG XL) is converted to WebP instead, as a cached variant. `Range` is answered from the origin's own range support when it has it,
//! else cut out of the stream when it starts within the head already read, else with the
//! whole body as a 200 (never by reading up to a far offset: that made us download 200 MB
//! to send one byte).
//!
//! Everything that can fail becomes an [`AppError`]; its mapping to statuses lives in
//! `error.rs`.

use bytes::Bytes;
use futures_util::StreamExt;
use media::format::{sniff, Sniffed, SNIFF_LEN};
use media::video::At;
use media::{Format, Transform};
use std::sync::Arc;

use super::flight::Flights;
use super::names;
use super::render::{Input, Renderer};
use super::reuse::{CacheStatus, Found, Fresh, Reuse};
use super::sniff::{passable, sniff_body, sniff_complete};
use super::video::{self, Ranged, Ranges, Reader};
use crate::cache::{Variant, VariantKey};
use crate::error::AppError;
use crate::request::Plan;
use crate::source::http::OriginRange;
use crate::source::Room;
use crate::source::{Fetched, Fetcher, SourceError};
use crate::workers::{Reservation, Workers};

pub use super::reply::{Passthrough, Payload, Reply};

/// The open-relay controls the remote pipeline applies (`[remote]`; all off by default).
#[derive(Debug, Clone, Default)]
pub struct RelayControls {
    /// Origin fetches per client (`remote.rate_limit`).
    pub limiter: Option<Arc<crate::relay::FetchLimiter>>,
    /// Passthrough streams at once (`remote.passthrough_max_concurrent`).
    pub passthrough: Option<Arc<tokio::sync::Semaphore>>,
    /// Largest original passed through (`remote.passthrough_max_size`); 0: no cap of its own.
    pub passthrough_max_size: u64,
}

/// The remote-mode pipeline. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pipeline {
    fetcher: Fetcher,
    workers: Workers,
    renderer: Renderer,
    reuse: Reuse,
    relay: RelayControls,
    /// Whole-source downloads in progress, by URL: several transforms of one URL asked
    /// for together download it once.
    downloads: Flights<Downloaded>,
}

/// A remote source read whole, shared by the renders that asked for it together; its
/// bytes stay counted in the memory budget until the last of them lets go.
#[derive(Debug, Clone)]
struct Downloaded {
    bytes: Bytes,
    content_disposition: Option<String>,
    /// Held, never read: the budget gets the bytes back when the last clone is dropped.
    _memory: Arc<Reservation>,
}

impl Pipeline {
    pub fn new(
        fetcher: Fetcher,
        workers: Workers,
        limits: media::Limits,
        reuse: Reuse,
        relay: RelayControls,
    ) -> Self {
        Pipeline {
            fetcher,
            renderer: Renderer::new(workers.clone(), limits, reuse.metrics().clone()),
            workers,
            reuse,
            relay,
            downloads: Flights::default(),
        }
    }

    /// The answer, and for transforms how the variant cache served it.
    pub async fn run(&self, plan: Plan) -> (Option<CacheStatus>, Result<Reply, AppError>) {
        match plan.transform {
            Some(transform) => {
                let (source, key) = remote_variant(&plan.url, transform, plan.frame);
                let (status, variant) = self
                    .transformed(&source, &key, move |this, key| {
                        this.render_url(plan, transform, key)
                    })
                    .await;
                let reply = variant.map(|variant| Reply::Transformed {
                    name: variant.name.clone().unwrap_or_default(),
                    variant,
                });
                (Some(status), reply)
            }
            None => (None, self.original(plan).await),
        }
    }

    /// A variant of `source`: looked up (a remembered failure, a cached variant), else
    /// rendered by `render` once for every request asking for `key` meanwhile.
    async fn transformed<F, Fut>(&self, source: &str, key: &VariantKey, render: F) -> Found
    where
        F: FnOnce(Pipeline, VariantKey) -> Fut,
        Fut: std::future::Future<Output = Result<Fresh, AppError>> + Send + 'static,
    {
        if let Some(found) = self.reuse.lookup(source, key).await {
            return found;
        }
        let (this, owned) = (self.clone(), key.clone());
        self.reuse
            .render_once(source, key, move || render(this, owned))
            .await
    }

    /// No transform: admitted by the client's fetch rate and a passthrough place, the
    /// original passed through.
    async fn original(&self, plan: Plan) -> Result<Reply, AppError> {
        self.admit_fetch(plan.client)?;
        let place = self.passthrough_place()?;
        self.passthrough(plan, place).await
    }

    /// Counts one origin fetch against the client's rate (`remote.rate_limit`).
    fn admit_fetch(&self, client: Option<std::net::IpAddr>) -> Result<(), AppError> {
        match &self.relay.limiter {
            Some(limiter) => limiter.check(client).map_err(|l| AppError::RateLimited {
                retry_after: l.retry_after,
            }),
            None => Ok(()),
        }
    }

    /// A passthrough place (`remote.passthrough_max_concurrent`), held until the body has
    /// been streamed; none free → 503 at once.
    fn passthrough_place(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, AppError> {
        match &self.relay.passthrough {
            Some(places) => places
                .clone()
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| AppError::PassthroughFull),
            None => Ok(None),
        }
    }

    /// The leader's work for a transform of a remote URL: a place, the fetch rate, the
    /// download, the sniff, the render.
    async fn render_url(
        self,
        plan: Plan,
        transform: Transform,
        key: VariantKey,
    ) -> Result<Fresh, AppError> {
        // Held until the render ends: bounds what downloads and queued bodies hold.
        let _place = self.workers.enter()?;
        self.admit_fetch(plan.client)?;
        if let Some(at) = plan.frame {
            return self.thumbnail(plan, at, transform, key).await;
        }
        let source = self.download(&plan.url).await?;
        self.render_image(&plan, source, transform, key).await
    }

    /// A downloaded source rendered as an image (anything else: 404).
    async fn render_image(
        &self,
        plan: &Plan,
        source: Downloaded,
        transform: Transform,
        key: VariantKey,
    ) -> Result<Fresh, AppError> {
        let name = names::source_name(&plan.url_filename, &source.content_disposition);
        let format = sniff_complete(&source.bytes);
        if !format.capabilities().transform {
            return Err(AppError::NotConvertible(format));
        }
        let input = Input {
            bytes: source.bytes.clone(),
            format,
            // The download's reservation (kept until the render ends) covers the input.
            held: source.bytes.len() as u64,
        };
        let variant = self.render(input, transform, name).await?;
        drop(source);
        Ok(Fresh { key, variant })
    }

    /// `thumbnail`: the origin is asked for the head by range. A video is then read by
    /// range (an origin without ranges: its one body, forward, only as far as needed) and
    /// the still of its frame at `at` rendered; an image is rendered like `static`.
    async fn thumbnail(
        &self,
        plan: Plan,
        at: At,
        transform: Transform,
        key: VariantKey,
    ) -> Result<Fresh, AppError> {
        // Every read of the video, this one included, within one exchange's time.
        let deadline = tokio::time::Instant::now() + self.fetcher.total_timeout();
        let mut first = self.fetch_head(&plan.url).await?;
        let name = names::source_name(&plan.url_filename, &first.content_disposition);
        let mut room = self.workers.reservation();
        let (format, head, total) = match first.partial {
            Some(granted) => {
                room.make_room(SNIFF_LEN as u64)
                    .map_err(SourceError::from)?;
                let (head, _) = first.body.read_head(SNIFF_LEN).await?;
                let complete = granted.total == Some(head.len() as u64);
                let format = match sniff(&head, complete) {
                    Sniffed::Known(f) => f,
                    Sniffed::NeedMore => Format::unknown(),
                };
                (format, head, granted.total)
            }
            None => {
                let (format, head, ended) = sniff_body(&mut first.body, &mut room).await?;
                let total = if ended {
                    Some(head.len() as u64)
                } else {
                    first.content_length
                };
                (format, head, total)
            }
        };
        let container = match media::video::container(format) {
            Some(container) => container,
            None if first.partial.is_some() => {
                // An image behind an origin with ranges: read whole, like any transform.
                drop((first, head, room));
                let source = self.download(&plan.url).await?;
                return self.render_image(&plan, source, transform, key).await;
            }
            None => {
                let mut body = first.body;
                body.unread(head);
                let mut memory = room;
                let bytes = body.read_all(&mut memory).await?;
                let source = Downloaded {
                    bytes,
                    content_disposition: first.content_disposition,
                    _memory: Arc::new(memory),
                };
                return self.render_image(&plan, source, transform, key).await;
            }
        };
        let limit = self.renderer.limits().max_video_read;
        let (ranges, head) = match first.partial {
            Some(_) => (
                Ranges::Ranged(Ranged::Remote {
                    fetcher: self.fetcher.clone(),
                    url: plan.url.clone(),
                    validator: first.validator.clone(),
                }),
                head,
            ),
            None => {
                let mut body = first.body;
                body.unread(head);
                (Ranges::Forward(body), Bytes::new())
            }
        };
        let reader = Reader::new(ranges, total, &head, limit, deadline, self.workers.clone())?;
        drop((head, room));
        let frame = video::read_frame(reader, container, at, self.renderer.limits()).await?;
        let variant = self.renderer.render_video(frame, transform, None).await?;
        Ok(Fresh {
            key,
            variant: Variant {
                name: Some(name),
                ..variant
            },
        })
    }

    /// No flags, and an image browsers may not show (SVG, TIFF, HEIC/HEIF, JPEG XL): its
    /// conversion is a variant like any transform (cached, coalesced, and a refusal — too
    /// costly, past the deadline — remembered, so it cannot be repeated at will), answered
    /// as a WebP. `room` counts `bytes` until the render ends.
    async fn convert(
        &self,
        name: String,
        format: Format,
        bytes: Bytes,
        room: Reservation,
        url: &url::Url,
    ) -> Result<Reply, AppError> {
        let (source, key) = remote_variant(url, Transform::Converted, None);
        // A place like any image request: bounds the conversions being decoded.
        let _place = self.workers.enter()?;
        let output_name = name.clone();
        let (_, variant) = self
            .transformed(&source, &key, move |this, key| async move {
                let input = Input {
                    held: bytes.len() as u64,
                    bytes,
                    format,
                };
                let variant = this
                    .render(input, Transform::Converted, output_name)
                    .await?;
                drop(room);
                Ok(Fresh { key, variant })
            })
            .await;
        Ok(Reply::Transformed {
            variant: variant?,
            name,
        })
    }

    /// The whole body of `url`, downloaded once for every render that wants it meanwhile.
    async fn download(&self, url: &url::Url) -> Result<Downloaded, AppError> {
        let (fetcher, owned) = (self.fetcher.clone(), url.clone());
        let mut memory = self.workers.reservation();
        self.reuse
            .download_once(&self.downloads, url.as_str(), || async move {
                let fetched = fetcher.fetch(&owned, None, None).await?;
                let content_disposition = fetched.content_disposition;
                let bytes = fetched.body.read_all(&mut memory).await?;
                Ok(Downloaded {
                    bytes,
                    content_disposition,
                    _memory: Arc::new(memory),
                })
            })
            .await
    }

    /// An original passed through (or an SVG rasterised), holding `place` until its body
    /// has been streamed.
    async fn passthrough(
        &self,
        plan: Plan,
        place: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Reply, AppError> {
        let reply = if plan.head_only || plan.range.is_some() {
            self.ranged(plan).await?
        } else {
            let fetched = self.fetcher.fetch(&plan.url, None, None).await?;
            self.serve_body(plan, fetched).await?
        };
        Ok(match (reply, place) {
            (Reply::Passthrough(mut pass), Some(place)) => {
                if let Payload::Stream(stream) = pass.payload {
                    // The place goes with the stream: released when it ends or is dropped.
                    pass.payload = Payload::Stream(
                        stream
                            .map(move |chunk| {
                                let _held = &place;
                                chunk
                            })
                            .boxed(),
                    );
                }
                Reply::Passthrough(pass)
            }
            (reply, _) => reply,
        })
    }

    /// The origin asked for the first [`SNIFF_LEN`] bytes only: a 206 (with the total
    /// length) from an origin with ranges, else its whole body as a 200, not read yet.
    async fn fetch_head(&self, url: &url::Url) -> Result<Fetched, SourceError> {
        let head = OriginRange {
            first: 0,
            last: Some(SNIFF_LEN as u64 - 1),
        };
        self.fetcher.fetch(url, Some(head), None).await
    }

    /// `HEAD` and `Range`: first ask the origin for just the head. A 206 tells us the total
    /// length and that the origin can serve ranges; a 200 means it cannot, and the answer
    /// is cut out of that stream instead.
    async fn ranged(&self, plan: Plan) -> Result<Reply, AppError> {
        let mut first = self.fetch_head(&plan.url).await?;
        let Some(granted) = first.partial else {
            return self.serve_body(plan, first).await;
        };
        let total = granted.total;
        let (head, _) = first.body.read_head(SNIFF_LEN).await?;
        let complete = total == Some(head.len() as u64);
        let format = match sniff(&head, complete) {
            // A converted format (SVG, TIFF, HEIC, JPEG XL) is never served as a range: take
            // the ordinary path.
            Sniffed::NeedMore => return self.whole(plan).await,
            Sniffed::Known(f) if f.capabilities().converted() => return self.whole(plan).await,
            Sniffed::Known(f) => f,
        };
        self.check_passthrough(format, total)?;
        let name = names::source_name(&plan.url_filename, &first.content_disposition);
        let reply = |range, payload| {
            Ok(Reply::Passthrough(Passthrough {
                format,
                name: name.clone(),
                total,
                range,
                payload,
            }))
        };
        let (Some(spec), false) = (plan.range, plan.head_only) else {
            return reply(None, Payload::Nothing);
        };
        let Some(total_len) = total else {
            // Length unknown: answer the whole body rather than guess.
            return self.whole(plan).await;
        };
        let Some(wanted) = spec.resolve(total_len) else {
            return Err(AppError::RangeNotSatisfiable { total });
        };
        if let Some(slice) = usize::try_from(wanted.first)
            .ok()
            .zip(usize::try_from(wanted.last).ok())
            .and_then(|(a, b)| head.get(a..=b))
        {
            return reply(Some(wanted), Payload::Bytes(head.slice_ref(slice)));
        }
        let want = OriginRange {
            first: wanted.first,
            last: Some(wanted.last),
        };
        let second = self
            .fetcher
            .fetch(&plan.url, Some(want), first.validator.as_deref())
            .await?;
        match second.partial {
            Some(got) if got.first == wanted.first && got.last == wanted.last => {
                let stream = second.body.into_stream(Some(wanted.len())).boxed();
                reply(Some(wanted), Payload::Stream(stream))
            }
            // The object changed (If-Range failed) or the origin ignored the range this time.
            None => self.serve_body(plan, second).await,
            Some(_) => Err(SourceError::Unreachable("origin sent a different range".into()).into()),
        }
    }

    /// The passthrough decision, made once: a type browsers may be shown as it is
    /// ([`passable`]), no larger than `remote.passthrough_max_size` (413).
    fn check_passthrough(&self, format: Format, total: Option<u64>) -> Result<(), AppError> {
        passable(format)?;
        let limit = self.relay.passthrough_max_size;
        if limit > 0 && total.is_some_and(|t| t > limit) {
            return Err(SourceError::TooLarge { limit }.into());
        }
        Ok(())
    }

    /// The render step with the transform's own output; the variant carries the name.
    async fn render(
        &self,
        input: Input,
        transform: Transform,
        name: String,
    ) -> Result<Variant, AppError> {
        let prepared = self.renderer.prepare(&input, transform).await?;
        let variant = self.renderer.render(prepared, input).await?;
        Ok(Variant {
            name: Some(name),
            ..variant
        })
    }

    /// The ordinary path for a plan that wants the whole original.
    async fn whole(&self, plan: Plan) -> Result<Reply, AppError> {
        let plan = Plan {
            range: None,
            ..plan
        };
        let fetched = self.fetcher.fetch(&plan.url, None, None).await?;
        self.serve_body(plan, fetched).await
    }

    /// A full (200) origin body: sniff it, then stream all of it, or the requested range.
    async fn serve_body(&self, plan: Plan, fetched: Fetched) -> Result<Reply, AppError> {
        let Fetched {
            content_length,
            content_disposition,
            mut body,
            ..
        } = fetched;
        let name = names::source_name(&plan.url_filename, &content_disposition);
        // The sniff may read up to 1 MiB of text that might be an SVG: counted in the memory
        // budget for as long as it is held (200 stalled connections held 243 MB).
        let mut room = self.workers.reservation();
        let (format, head, ended) = sniff_body(&mut body, &mut room).await?;
        if format.capabilities().converted() {
            // sniff only says Svg for a complete document, so `head` is all of it; any other
            // converted format is read whole, counted in the same reservation.
            let bytes = if format == Format::Svg {
                head
            } else {
                body.unread(head);
                body.read_all(&mut room).await?
            };
            return self.convert(name, format, bytes, room, &plan.url).await;
        }
        drop(room);
        let total = if ended {
            Some(head.len() as u64)
        } else {
            content_length
        };
        self.check_passthrough(format, total)?;
        if self.relay.passthrough_max_size > 0 {
            body.limit_to(self.relay.passthrough_max_size);
        }
        let mut pass = Passthrough {
            format,
            name,
            total,
            range: None,
            payload: Payload::Nothing,
        };
        if plan.head_only {
            return Ok(Reply::Passthrough(pass));
        }
        let in_head = head.len() as u64;
        body.unread(head);
        match (plan.range, total) {
            (Some(spec), Some(total_len)) => {
                let wanted = spec
                    .resolve(total_len)
                    .ok_or(AppError::RangeNotSatisfiable { total })?;
                if wanted.first > in_head {
                    // The origin ignored the range and the bytes before it are not read
                    // yet: reading 200 MB to send one byte is an amplifier. The whole body
                    // as a 200 is what the origin itself offers (RFC 9110 allows ignoring
                    // Range), and costs no more than the client receives.
                    pass.payload = Payload::Stream(body.into_stream(None).boxed());
                    return Ok(Reply::Passthrough(pass));
                }
                if !body.skip(wanted.first).await? {
                    return Err(SourceError::BodyBroken("shorter than announced".into()).into());
                }
                pass.range = Some(wanted);
                pass.payload = Payload::Stream(body.into_stream(Some(wanted.len())).boxed());
            }
            // No range, or a length we cannot know before streaming: the whole body.
            _ => pass.payload = Payload::Stream(body.into_stream(None).boxed()),
        }
        Ok(Reply::Passthrough(pass))
    }
}

/// The negative-cache name of a remote source and the key of one of its variants: one
/// source (the URL) → one variant per transform; nothing else varies.
fn remote_variant(url: &url::Url, transform: Transform, frame: Option<At>) -> (String, VariantKey) {
    let mut variant = format!("{transform:?}");
    if let Some(at) = frame {
        // A video's frame (`thumbnail`); images give the same as `static` under this key.
        variant.push_str(&format!(" frame {at:?}"));
    }
    (
        format!("remote\0{url}"),
        VariantKey::of(&["remote", url.as_str(), &variant]),
    )
}
