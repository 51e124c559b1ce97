//! The store-mode steps, in order. Input: a [`StorePlan`] and the request's [`Conditions`];
//! output: a [`StoreReply`] (no HTTP types).
//!
//! No transform ([`StorePipeline::original`]):
//!
//! 1. take a download place (bounds what is read and queued, as in the remote mode);
//! 2. one GET from the store: metadata and body together;
//! 3. sniff the head, answer `304` if the validators match, else stream the original as it
//!    is (an SVG is rasterised instead: its bytes are never served).
//!
//! A transform ([`StorePipeline::transformed`]):
//!
//! 1. the original's version ([`StorePipeline::version`]): a remembered 404 of the key,
//!    else its metadata (one HEAD) — the version is part of the variant key, so a changed
//!    original is never answered with an old variant;
//! 2. variant lookup ([`Reuse::lookup`]): a remembered failure of this version, else the
//!    cached variant (or `304`);
//! 3. a revalidation ([`StorePipeline::revalidate`]): decided from the original's first
//!    bytes when they suffice;
//! 4. coalesce ([`Reuse::render_once`]): the leader takes a place, reads the whole original
//!    (one GET shared by every variant of it asked for meanwhile), prepares it, chooses the
//!    output ([`output`]: `format`, `Accept`, animation, the AVIF cut-off) and its strong
//!    ETag ([`validators`]), renders on the worker pool ([`Renderer`]); the variant is kept
//!    in the cache; then `304` or `200` for each request.
//!
//! Uses `cache`, `error`, `request`, `source`, `workers` and the shared steps of
//! `pipeline`.

mod output;
mod validators;

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use media::ops::Resize;
use media::{Format, Transform};

use self::output::output_bucket;
use self::validators::{not_modified, validators};
use super::flight::Flights;
use super::render::{Input, Renderer};
use super::reuse::{CacheStatus, Fresh, Reuse};
use super::sniff::{passable, sniff_body, sniff_complete};
use super::video::{self, Ranged, Ranges, Reader};
use crate::cache::{Variant, VariantKey};
use crate::error::AppError;
use crate::request::resize::{FormatChoice, StorePlan, StoreTransform};
use crate::request::{Accepted, Conditions};
use crate::source::store::{ObjectMeta, Store, StoreError, StoreObject};
use crate::workers::{Reservation, Workers};

pub use self::output::{choose_output, choose_prepared, OutputChoice, OutputPolicy, SourceFacts};
pub use self::validators::Validators;

/// What to answer, before it becomes an HTTP response.
#[derive(Debug)]
pub enum StoreReply {
    NotModified(Validators),
    /// The original, as it is.
    Original {
        format: Format,
        size: u64,
        validators: Validators,
        /// `None` for `HEAD`.
        body: Option<OriginalBody>,
    },
    /// A rendered variant, fresh or cached (its `fallback` says why the output is not the
    /// format asked for: `X-Image-Fallback`).
    Rendered {
        variant: Arc<Variant>,
        validators: Validators,
        head_only: bool,
    },
}

/// The rest of an original, streamed from the store.
pub struct OriginalBody(pub BoxStream<'static, Result<Bytes, StoreError>>);

impl std::fmt::Debug for OriginalBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OriginalBody")
    }
}

/// How a transform's answer went, for `X-Cache`, and the answer.
type Answer = (Option<CacheStatus>, Result<StoreReply, AppError>);

/// The store-mode pipeline. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StorePipeline {
    store: Store,
    workers: Workers,
    renderer: Renderer,
    policy: OutputPolicy,
    reuse: Reuse,
    /// Original downloads in progress (whole, or a video's head), by key.
    downloads: Flights<Original>,
}

impl StorePipeline {
    /// Whether the store is resting behind its open breaker (it kept failing), for
    /// `/readyz`.
    pub fn store_resting(&self) -> bool {
        self.store.resting()
    }

    pub fn new(
        store: Store,
        workers: Workers,
        limits: media::Limits,
        policy: OutputPolicy,
        reuse: Reuse,
    ) -> Self {
        StorePipeline {
            store,
            renderer: Renderer::new(workers.clone(), limits, reuse.metrics().clone()),
            workers,
            policy,
            reuse,
            downloads: Flights::default(),
        }
    }

    /// The answer, and for transforms how the variant cache served it.
    pub async fn run(&self, plan: StorePlan, cond: Conditions) -> Answer {
        match plan.transform.clone() {
            None => (None, self.original(plan, cond).await),
            Some(t) => self.transformed(plan, t, cond).await,
        }
    }

    /// No transform: the original as it is (an SVG, TIFF, HEIC or JPEG XL converted
    /// instead). Not cached here: originals stream straight from the store.
    async fn original(&self, plan: StorePlan, cond: Conditions) -> Result<StoreReply, AppError> {
        // Held until the answer is decided: bounds what downloads and queued bodies hold.
        let place = self.workers.enter()?;
        let object = self.store.get(&plan.key).await?;
        let mut body = object.body;
        let mut room = self.workers.reservation();
        let (format, head, _) = sniff_body(&mut body, &mut room).await?;
        body.unread(head);
        if format.capabilities().converted() {
            // Never served as is: an SVG can carry script, and not every browser shows TIFF,
            // HEIC or JPEG XL. Converted at its size.
            let mut memory = self.workers.reservation();
            let bytes = body.read_all(&mut memory).await?;
            let held = bytes.len() as u64;
            let input = Input {
                bytes,
                format,
                held,
            };
            let t = converted_transform();
            let variant = self.render(input, &t, &object.meta, cond.accept).await?;
            return Ok(reply(Arc::new(variant), &plan, &cond));
        }
        passable(format)?;
        let mut validators = validators(&object.meta, "original", None, false);
        validators.immutable = plan.immutable;
        if not_modified(&cond, &validators) {
            return Ok(StoreReply::NotModified(validators));
        }
        drop(place);
        Ok(StoreReply::Original {
            format,
            size: object.meta.size,
            validators,
            body: (!plan.head_only).then(|| OriginalBody(body.into_stream(None).boxed())),
        })
    }

    /// A transform, in the steps of the module doc.
    async fn transformed(&self, plan: StorePlan, t: StoreTransform, cond: Conditions) -> Answer {
        let source = format!("store\0{}", plan.key);
        let bucket = output_bucket(&self.policy, t.format, cond.accept);
        let meta = match self.version(&source, &plan.key, &t, &bucket).await {
            Ok(meta) => meta,
            Err((status, e)) => return (Some(status), Err(e)),
        };
        let key = variant_key(&plan.key, &meta.version, &t.canonical, &bucket);
        // An undecodable original is remembered by this version's key: a fixed one is a new
        // version, served at once.
        if let Some((status, found)) = self.reuse.lookup(&source, &key).await {
            return (Some(status), found.map(|v| reply(v, &plan, &cond)));
        }
        // A cache asking whether its copy is current: the head may be enough to know.
        let mut opened = None;
        if cond.is_revalidation() {
            match self.revalidate(&plan, &t, &cond).await {
                Ok(Revalidated::NotModified(v)) => {
                    return (Some(CacheStatus::Miss), Ok(StoreReply::NotModified(v)));
                }
                Ok(Revalidated::Opened(object)) => opened = Some(object),
                Err(e) => return (Some(CacheStatus::Miss), Err(e)),
            }
        }
        let (this, accept, object_key) = (self.clone(), cond.accept, plan.key.clone());
        let (status, variant) = self
            .reuse
            .render_once(&source, &key, || {
                let key = key.clone();
                async move {
                    this.render_object(object_key, t, accept, key, meta.version, opened)
                        .await
                }
            })
            .await;
        (Some(status), variant.map(|v| reply(v, &plan, &cond)))
    }

    /// The original's current version, from its metadata (one HEAD) — unless a recent
    /// lasting failure of the key is remembered. A lasting failure of the HEAD (no such key)
    /// is remembered in turn.
    async fn version(
        &self,
        source: &str,
        object_key: &str,
        t: &StoreTransform,
        bucket: &str,
    ) -> Result<ObjectMeta, (CacheStatus, AppError)> {
        if let Some(e) = self.reuse.remembered(&[source]) {
            return Err((CacheStatus::Hit, e));
        }
        self.store.head(object_key).await.map_err(|e| {
            let e = Arc::new(AppError::from(e));
            let key = variant_key(object_key, "", &t.canonical, bucket);
            self.reuse.remember(source, &key, &e);
            (CacheStatus::Miss, AppError::Shared(e))
        })
    }

    /// A revalidation decided from the first bytes of the original when they suffice (see
    /// [`StorePipeline::validators_from_head`]); otherwise the opened original, for the
    /// render to go on reading (one GET either way).
    async fn revalidate(
        &self,
        plan: &StorePlan,
        t: &StoreTransform,
        cond: &Conditions,
    ) -> Result<Revalidated, AppError> {
        let _place = self.workers.enter()?;
        let mut object = self.store.get(&plan.key).await?;
        let mut room = self.workers.reservation();
        let (format, head, _) = sniff_body(&mut object.body, &mut room).await?;
        let fresh = self
            .validators_from_head(&head, format, t, &object.meta, cond.accept)
            .await
            .map(|mut v| {
                v.immutable = plan.immutable;
                v
            })
            .filter(|v| not_modified(cond, v));
        if let Some(v) = fresh {
            return Ok(Revalidated::NotModified(v));
        }
        object.body.unread(head);
        Ok(Revalidated::Opened(object))
    }

    /// The leader's work for one variant: the original (downloaded once for every variant
    /// asked for meanwhile), the output choice, the render. Kept under the key of the
    /// version actually read (`looked_up` unless the object changed in between).
    async fn render_object(
        &self,
        object_key: String,
        t: StoreTransform,
        accept: Accepted,
        looked_up: VariantKey,
        looked_up_version: String,
        opened: Option<StoreObject>,
    ) -> Result<Fresh, AppError> {
        // Held until the render ends: bounds what downloads and queued bodies hold.
        let _place = self.workers.enter()?;
        let (bytes, meta, memory) = match self.download(&object_key, opened).await? {
            Original::Whole {
                bytes,
                meta,
                memory,
            } => (bytes, meta, memory),
            Original::Video { head, meta, format } => {
                let variant = self
                    .render_video(&object_key, &head, &meta, format, &t, accept)
                    .await?;
                let key = self.key_read(
                    &object_key,
                    &t,
                    accept,
                    &meta,
                    looked_up,
                    &looked_up_version,
                );
                return Ok(Fresh { key, variant });
            }
        };
        let format = sniff_complete(&bytes);
        if !format.capabilities().transform {
            // 422, not the remote mode's 404: here a 404 means "no such key".
            return Err(media::Error::Unsupported(format.mime()).into());
        }
        let input = Input {
            held: bytes.len() as u64,
            bytes,
            format,
        };
        // The download's reservation (kept until the render ends) covers the input.
        let variant = self.render(input, &t, &meta, accept).await?;
        drop(memory);
        let key = self.key_read(
            &object_key,
            &t,
            accept,
            &meta,
            looked_up,
            &looked_up_version,
        );
        Ok(Fresh { key, variant })
    }

    /// The variant key of the version actually read: `looked_up` unless the object
    /// changed between the HEAD and the GET.
    fn key_read(
        &self,
        object_key: &str,
        t: &StoreTransform,
        accept: Accepted,
        meta: &ObjectMeta,
        looked_up: VariantKey,
        looked_up_version: &str,
    ) -> VariantKey {
        if meta.version == looked_up_version {
            looked_up
        } else {
            let bucket = output_bucket(&self.policy, t.format, accept);
            variant_key(object_key, &meta.version, &t.canonical, &bucket)
        }
    }

    /// The original at `key`, read once for every render that wants it meanwhile
    /// (`opened`: a GET already under way, used if this request starts the download): the
    /// whole of it, or — a video — only its head: a video is read by range, never whole.
    async fn download(&self, key: &str, opened: Option<StoreObject>) -> Result<Original, AppError> {
        let (store, owned) = (self.store.clone(), key.to_owned());
        let mut memory = self.workers.reservation();
        self.reuse
            .download_once(&self.downloads, key, || async move {
                let mut object = match opened {
                    Some(object) => object,
                    None => store.get(&owned).await?,
                };
                let (format, head, _) = sniff_body(&mut object.body, &mut memory).await?;
                if media::video::container(format).is_some() {
                    // The rest of the GET is dropped unread.
                    let meta = object.meta;
                    return Ok(Original::Video { head, meta, format });
                }
                object.body.unread(head);
                let bytes = object.body.read_all(&mut memory).await?;
                Ok(Original::Whole {
                    bytes,
                    meta: object.meta,
                    memory: Arc::new(memory),
                })
            })
            .await
    }

    /// A video original's poster: the frame at `t.frame` read by range (the head already
    /// read), in the negotiated output (a video's own family is JPEG), its validators from
    /// the version read.
    async fn render_video(
        &self,
        object_key: &str,
        head: &[u8],
        meta: &ObjectMeta,
        format: Format,
        t: &StoreTransform,
        accept: Accepted,
    ) -> Result<Variant, AppError> {
        let container =
            media::video::container(format).ok_or(media::Error::Unsupported("this container"))?;
        let ranges = Ranges::Ranged(Ranged::Store {
            store: self.store.clone(),
            key: object_key.to_owned(),
            version: meta.version.clone(),
        });
        let limits = self.renderer.limits();
        let reader = Reader::new(
            ranges,
            Some(meta.size),
            head,
            limits.max_video_read,
            tokio::time::Instant::now() + self.store.timeout(),
            self.workers.clone(),
        )?;
        let frame = video::read_frame(reader, container, t.frame, limits).await?;
        let transform = Transform::Resize(t.resize);
        let (w, h) = media::video::upright(&frame.track);
        let (ow, oh) = transform.target(w, h);
        let facts = SourceFacts {
            format: Format::Jpeg,
            animated: false,
            pixels: u64::from(ow) * u64::from(oh),
        };
        let choice = choose_output(&self.policy, t.format, t.quality, &facts, accept);
        let v = validators(meta, &t.canonical, Some(choice.output), choice.vary_accept);
        let variant = self
            .renderer
            .render_video(frame, transform, Some(choice.output))
            .await?;
        Ok(Variant {
            etag: Some(v.etag),
            last_modified: Some(v.last_modified),
            vary_accept: v.vary_accept,
            fallback: choice.fallback,
            ..variant
        })
    }

    /// The render step with the negotiated output: prepared, the output and its validators
    /// decided, rendered on the worker pool.
    async fn render(
        &self,
        input: Input,
        t: &StoreTransform,
        meta: &ObjectMeta,
        accept: Accepted,
    ) -> Result<Variant, AppError> {
        let prepared = self
            .renderer
            .prepare(&input, Transform::Resize(t.resize))
            .await?;
        let (choice, validators) = self.decide(&prepared, input.format, t, meta, accept);
        let prepared = prepared.with_output(choice.output);
        let variant = self.renderer.render(prepared, input).await?;
        Ok(Variant {
            etag: Some(validators.etag),
            last_modified: Some(validators.last_modified),
            vary_accept: validators.vary_accept,
            fallback: choice.fallback,
            ..variant
        })
    }

    /// The output and the validators of a prepared transform: the one place both are
    /// derived, so a `304` decided from the head and a `200` from the whole file agree.
    fn decide(
        &self,
        prepared: &media::Prepared,
        format: Format,
        t: &StoreTransform,
        meta: &ObjectMeta,
        accept: Accepted,
    ) -> (OutputChoice, Validators) {
        let choice = choose_prepared(&self.policy, prepared, format, t, accept);
        let v = validators(meta, &t.canonical, Some(choice.output), choice.vary_accept);
        (choice, v)
    }

    /// The validators a transform would have, from the first bytes of the original alone,
    /// when they suffice: a still format whose header, all of it inside `head`, says
    /// everything the output depends on (format, size, orientation). `None`: read it all.
    /// (GIF, WebP and APNG count their frames over the whole file; TIFF and ICO may keep
    /// their directories at the end; an SVG is only known once complete.) The header is
    /// read where every other one is ([`Renderer::prepare`]: in a worker, sandboxed).
    async fn validators_from_head(
        &self,
        head: &Bytes,
        format: Format,
        t: &StoreTransform,
        meta: &ObjectMeta,
        accept: Accepted,
    ) -> Option<Validators> {
        if !matches!(
            format,
            Format::Jpeg | Format::Png | Format::Bmp | Format::Avif
        ) {
            return None;
        }
        let input = Input {
            bytes: head.clone(),
            format,
            held: 0,
        };
        let prepared = self
            .renderer
            .prepare(&input, Transform::Resize(t.resize))
            .await
            .ok()?;
        Some(self.decide(&prepared, format, t, meta, accept).1)
    }
}

/// An original as the renders of it share it.
#[derive(Debug, Clone)]
enum Original {
    /// An image, read whole; its bytes stay counted in the budget until the last render
    /// of them lets go.
    Whole {
        bytes: Bytes,
        meta: ObjectMeta,
        memory: Arc<Reservation>,
    },
    /// A video: only its head was read.
    Video {
        head: Bytes,
        meta: ObjectMeta,
        format: Format,
    },
}

/// What a revalidation found out from the head of the original.
enum Revalidated {
    NotModified(Validators),
    /// Not decided (or not current): the original, its head put back.
    Opened(StoreObject),
}

/// A variant as this request's answer: `304` when the client's copy is current.
fn reply(variant: Arc<Variant>, plan: &StorePlan, cond: &Conditions) -> StoreReply {
    let validators = Validators {
        etag: variant.etag.clone().unwrap_or_default(),
        last_modified: variant.last_modified.unwrap_or(SystemTime::UNIX_EPOCH),
        immutable: plan.immutable,
        vary_accept: variant.vary_accept,
    };
    if not_modified(cond, &validators) {
        return StoreReply::NotModified(validators);
    }
    StoreReply::Rendered {
        variant,
        validators,
        head_only: plan.head_only,
    }
}

/// The cache key of a store variant: the object key, its version, the canonical transform
/// and the `Accept` bucket. A new version of the object is a new key.
fn variant_key(object_key: &str, version: &str, canonical: &str, bucket: &str) -> VariantKey {
    VariantKey::of(&["store", object_key, version, canonical, bucket])
}

/// An original browsers may not show (SVG, TIFF, HEIC/HEIF, JPEG XL) with no transform:
/// converted at its own size (within the output cap), in the negotiated format (never one
/// the client did not accept: AVIF or WebP when listed, else PNG).
fn converted_transform() -> StoreTransform {
    StoreTransform {
        resize: Resize {
            width: None,
            height: None,
            fit: media::ops::Fit::Inside,
            enlarge: false,
            background: [255, 255, 255, 255],
            still: true,
            max_side: CONVERTED_MAX,
        },
        format: FormatChoice::Auto,
        quality: None,
        frame: media::video::MISSKEY_FRAME,
        // The canonical text of SVG rasters since before other formats were converted: kept,
        // so that their ETags do not change.
        canonical: "svg-raster".into(),
    }
}

/// The largest side a converted original is given (the remote mode's box).
const CONVERTED_MAX: u32 = 2048;
