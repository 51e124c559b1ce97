//! The store-mode steps, in order. Input: a [`StorePlan`] and the request's [`Conditions`];
//! output: a [`StoreReply`] (no HTTP types).
//!
//! No transform:
//!
//! 1. take a download place (bounds what is read and queued, as in the remote mode);
//! 2. one GET from the store: metadata and body together;
//! 3. sniff the head, answer `304` if the validators match, else stream the original as it
//!    is (an SVG is rasterised instead: its bytes are never served).
//!
//! A transform:
//!
//! 1. a recent 404 or undecodable original of this key (negative cache) → that error;
//! 2. the object's metadata (HEAD): its version is part of the variant key, so a changed
//!    original is never answered with an old variant;
//! 3. the variant cache → the cached variant (or `304`);
//! 4. a revalidation: decided from the original's first bytes when they suffice;
//! 5. the render, once for every identical request meanwhile (coalescing): a place, the
//!    whole original (one GET shared by every variant of it asked for meanwhile), its
//!    headers ([`media::prepare`]), the output ([`choose_output`]: `format`, `Accept`,
//!    animation, the AVIF cut-off), the strong ETag, the render on the worker pool; the
//!    variant is kept in the cache; then `304` or `200` for each request.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use media::ops::Resize;
use media::{Format, Output, Transform};
use sha2::{Digest, Sha256};

use crate::cache::flight::Flights;
use crate::cache::{CacheStatus, Caches, Fresh, Variant, VariantKey};
use crate::error::AppError;
use crate::request::resize::{FormatChoice, StorePlan, StoreTransform};
use crate::source::store::{ObjectBody, ObjectMeta, Store, StoreError, StoreObject};
use crate::workers::{Reservation, Workers};

/// What the client's headers say that matters here.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// `If-None-Match`, as sent.
    pub if_none_match: Option<String>,
    /// `If-Modified-Since`, parsed (ignored when `If-None-Match` is present, as RFC 9110 says).
    pub if_modified_since: Option<SystemTime>,
    /// What `Accept` lists explicitly (wildcards do not count).
    pub accept: Accepted,
}

/// Image types a client's `Accept` names (with a quality above zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted {
    pub avif: bool,
    pub webp: bool,
}

impl Accepted {
    pub fn parse(header: &str) -> Accepted {
        let mut accepted = Accepted::default();
        for item in header.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            match media.as_str() {
                "image/avif" => accepted.avif = !refused,
                "image/webp" => accepted.webp = !refused,
                _ => {}
            }
        }
        accepted
    }
}

/// The store mode's output rules, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct OutputPolicy {
    pub avif: bool,
    pub avif_max_pixels: u64,
    pub avif_speed: u8,
    pub webp_quality: u8,
    pub avif_quality: u8,
    pub jpeg_quality: u8,
}

impl From<&crate::config::ResizeSettings> for OutputPolicy {
    fn from(r: &crate::config::ResizeSettings) -> Self {
        OutputPolicy {
            avif: r.avif,
            avif_max_pixels: r.avif_max_pixels,
            avif_speed: r.avif_speed,
            webp_quality: r.webp_quality,
            avif_quality: r.avif_quality,
            jpeg_quality: r.jpeg_quality,
        }
    }
}

/// The response validators and caching facts of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// A strong ETag, quoted.
    pub etag: String,
    pub last_modified: SystemTime,
    /// The URL is signed or versioned: `immutable`.
    pub immutable: bool,
    /// The answer was chosen by `Accept`.
    pub vary_accept: bool,
}

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

/// The store-mode pipeline. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StorePipeline {
    store: Store,
    workers: Workers,
    limits: media::Limits,
    policy: OutputPolicy,
    caches: Caches,
    /// Whole-original downloads in progress, by key.
    downloads: Flights<(Bytes, ObjectMeta, Arc<Reservation>)>,
}

impl StorePipeline {
    pub fn new(
        store: Store,
        workers: Workers,
        limits: media::Limits,
        policy: OutputPolicy,
        caches: Caches,
    ) -> Self {
        StorePipeline {
            store,
            workers,
            limits,
            policy,
            caches,
            downloads: Flights::default(),
        }
    }

    /// The answer, and for transforms how the variant cache served it.
    pub async fn run(
        &self,
        plan: StorePlan,
        cond: Conditions,
    ) -> (Option<CacheStatus>, Result<StoreReply, AppError>) {
        match plan.transform.clone() {
            None => (None, self.original(plan, cond).await),
            Some(t) => self.transformed(plan, t, cond).await,
        }
    }

    /// No transform: the original as it is (an SVG rasterised instead). Not cached here:
    /// originals stream straight from the store.
    async fn original(&self, plan: StorePlan, cond: Conditions) -> Result<StoreReply, AppError> {
        // Held until the answer is decided: bounds what downloads and queued bodies hold.
        let place = self.workers.enter()?;
        let object = self.store.get(&plan.key).await?;
        let mut body = object.body;
        let mut room = self.workers.reservation();
        let (format, head, _) = super::sniff_body(&mut body, &mut room).await?;
        body.unread(head);
        if format == Format::Svg {
            // SVG is never served as is (it can carry script): rasterised at its size.
            let mut memory = self.workers.reservation();
            let all = body.read_all(&mut memory).await?;
            let t = default_svg_transform();
            let held = all.len() as u64;
            let variant = self
                .encode(all, format, &t, &object.meta, cond.accept, held)
                .await?;
            return Ok(reply(Arc::new(variant), &plan, &cond));
        }
        if !format.capabilities().passthrough {
            return Err(AppError::NotPassable(format));
        }
        let mut validators = validators(&object.meta, "original", None, false);
        validators.immutable = plan.immutable;
        if cond.not_modified(&validators) {
            return Ok(StoreReply::NotModified(validators));
        }
        drop(place);
        Ok(StoreReply::Original {
            format,
            size: object.meta.size,
            validators,
            body: (!plan.head_only).then(|| OriginalBody(body.into_stream().boxed())),
        })
    }

    /// A transform: the variant cache (keyed by the object's current version, from its
    /// metadata), else a render shared with every identical request meanwhile.
    async fn transformed(
        &self,
        plan: StorePlan,
        t: StoreTransform,
        cond: Conditions,
    ) -> (Option<CacheStatus>, Result<StoreReply, AppError>) {
        let source = format!("store\0{}", plan.key);
        if let Some(e) = self.caches.remembered(&[&source]) {
            return (Some(CacheStatus::Hit), Err(e));
        }
        let bucket = output_bucket(&self.policy, t.format, cond.accept);
        let meta = match self.store.head(&plan.key).await {
            Ok(meta) => meta,
            Err(e) => {
                let e = Arc::new(AppError::from(e));
                let key = variant_key(&plan.key, "", &t.canonical, &bucket);
                self.caches.negative.remember(&source, &key, &e);
                return (Some(CacheStatus::Miss), Err(AppError::Shared(e)));
            }
        };
        let key = variant_key(&plan.key, &meta.version, &t.canonical, &bucket);
        // An undecodable original is remembered by this version's key: a fixed one is a new
        // version, served at once.
        if let Some(e) = self.caches.remembered(&[key.as_str()]) {
            return (Some(CacheStatus::Hit), Err(e));
        }
        if let Some(v) = self.caches.cached(&key).await {
            return (Some(CacheStatus::Hit), Ok(reply(v, &plan, &cond)));
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
        let this = self.clone();
        let accept = cond.accept;
        let object_key = plan.key.clone();
        let (status, variant) = self
            .caches
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
        let (format, head, _) = super::sniff_body(&mut object.body, &mut room).await?;
        let fresh = self
            .validators_from_head(&head, format, t, &object.meta, cond.accept)
            .map(|mut v| {
                v.immutable = plan.immutable;
                v
            })
            .filter(|v| cond.not_modified(v));
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
        let (bytes, meta, memory) = self.download(&object_key, opened).await?;
        let format = crate::pipeline::sniff_complete(&bytes);
        if !format.capabilities().transform {
            // 422, not the remote mode's 404: here a 404 means "no such key".
            return Err(media::Error::Unsupported(format.mime()).into());
        }
        // The download's reservation (kept until the render ends) covers the input.
        let held = bytes.len() as u64;
        let variant = self.encode(bytes, format, &t, &meta, accept, held).await?;
        drop(memory);
        let key = if meta.version == looked_up_version {
            looked_up
        } else {
            let bucket = output_bucket(&self.policy, t.format, accept);
            variant_key(&object_key, &meta.version, &t.canonical, &bucket)
        };
        Ok(Fresh { key, variant })
    }

    /// The whole original at `key`, read once for every render that wants it meanwhile
    /// (`opened`: a GET already under way, used if this request starts the download).
    async fn download(
        &self,
        key: &str,
        opened: Option<StoreObject>,
    ) -> Result<(Bytes, ObjectMeta, Arc<Reservation>), AppError> {
        let (store, owned) = (self.store.clone(), key.to_owned());
        let mut memory = self.workers.reservation();
        self.caches
            .download_once(&self.downloads, key, || async move {
                let object = match opened {
                    Some(object) => object,
                    None => store.get(&owned).await?,
                };
                let bytes = object.body.read_all(&mut memory).await?;
                Ok((bytes, object.meta, Arc::new(memory)))
            })
            .await
    }

    /// Reads the original's headers, chooses the output, renders it on the worker pool.
    async fn encode(
        &self,
        bytes: Bytes,
        format: Format,
        t: &StoreTransform,
        meta: &ObjectMeta,
        accept: Accepted,
        held: u64,
    ) -> Result<Variant, AppError> {
        // Header-only: refuses over-limit inputs and prices the work before it is admitted.
        let prepared = self
            .workers
            .prepare(&bytes, format, Transform::Resize(t.resize), &self.limits)
            .await?;
        let (choice, validators) = self.decide(&prepared, format, t, meta, accept);
        let prepared = prepared.with_output(choice.output);
        self.caches.metrics.renders.inc();
        let rendered = self.workers.render(prepared, bytes, held).await?;
        Ok(Variant {
            bytes: crate::cache::exact(rendered.bytes),
            format: rendered.format,
            etag: Some(validators.etag),
            last_modified: Some(validators.last_modified),
            vary_accept: validators.vary_accept,
            fallback: choice.fallback,
            name: None,
            created: SystemTime::now(),
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
    /// their directories at the end; an SVG is only known once complete.)
    fn validators_from_head(
        &self,
        head: &[u8],
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
        let prepared =
            media::prepare(head, format, Transform::Resize(t.resize), &self.limits).ok()?;
        Some(self.decide(&prepared, format, t, meta, accept).1)
    }
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
    if cond.not_modified(&validators) {
        return StoreReply::NotModified(validators);
    }
    StoreReply::Rendered {
        variant,
        validators,
        head_only: plan.head_only,
    }
}

/// What of `Accept` the output depends on: for `format=auto`, whether AVIF (when enabled)
/// and WebP are accepted; nothing for an explicit format. Requests in one bucket get the
/// same output for the same original.
fn output_bucket(policy: &OutputPolicy, choice: FormatChoice, accept: Accepted) -> String {
    match choice {
        FormatChoice::Auto => format!(
            "auto:avif={},webp={}",
            policy.avif && accept.avif,
            accept.webp
        ),
        _ => "explicit".to_owned(),
    }
}

/// The cache key of a store variant: the object key, its version, the canonical transform
/// and the `Accept` bucket. A new version of the object is a new key.
fn variant_key(object_key: &str, version: &str, canonical: &str, bucket: &str) -> VariantKey {
    VariantKey::of(&["store", object_key, version, canonical, bucket])
}

/// An SVG original with no transform: rasterised at its own size (within the output cap),
/// in the negotiated format.
fn default_svg_transform() -> crate::request::resize::StoreTransform {
    crate::request::resize::StoreTransform {
        resize: Resize {
            width: None,
            height: None,
            fit: media::ops::Fit::Inside,
            enlarge: false,
            background: [255, 255, 255, 255],
            still: true,
            max_side: SVG_RASTER_MAX,
        },
        format: FormatChoice::Auto,
        quality: None,
        canonical: "svg-raster".into(),
    }
}

/// The largest side an SVG original is rasterised to (the remote mode's box).
const SVG_RASTER_MAX: u32 = 2048;

impl Conditions {
    /// The request carries a validator: a `304` may be the answer.
    fn is_revalidation(&self) -> bool {
        self.if_none_match.is_some() || self.if_modified_since.is_some()
    }

    /// Whether the client's copy is current (`304`).
    fn not_modified(&self, v: &Validators) -> bool {
        if let Some(inm) = &self.if_none_match {
            return inm
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == v.etag);
        }
        match self.if_modified_since {
            // HTTP dates have whole seconds.
            Some(since) => v
                .last_modified
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .zip(since.duration_since(SystemTime::UNIX_EPOCH).ok())
                .is_some_and(|(modified, since)| modified.as_secs() <= since.as_secs()),
            None => false,
        }
    }
}

impl super::ReadHead for ObjectBody {
    type Error = StoreError;
    fn read_head(
        &mut self,
        n: usize,
    ) -> impl std::future::Future<Output = Result<(Bytes, bool), StoreError>> + Send {
        ObjectBody::read_head(self, n)
    }
}

/// A strong ETag from the source's version, the canonical transform and the output: any
/// change to one of them changes it; the same request for the same object gives the same.
fn validators(
    meta: &ObjectMeta,
    canonical: &str,
    output: Option<Output>,
    vary_accept: bool,
) -> Validators {
    let mut h = Sha256::new();
    for part in [
        env!("CARGO_PKG_VERSION"),
        &meta.version,
        canonical,
        &format!("{output:?}"),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let etag = format!("\"{}\"", hex::encode(digest.get(..16).unwrap_or_default()));
    Validators {
        etag,
        last_modified: meta.last_modified,
        // Set from the request's plan by the caller.
        immutable: false,
        vary_accept,
    }
}

/// [`choose_output`] for a prepared transform (its output size, frames, animation).
pub fn choose_prepared(
    policy: &OutputPolicy,
    prepared: &media::Prepared,
    format: Format,
    t: &StoreTransform,
    accept: Accepted,
) -> OutputChoice {
    let (w, h) = prepared.size();
    let facts = SourceFacts {
        format,
        animated: prepared.animated(),
        pixels: u64::from(w) * u64::from(h) * u64::from(prepared.frames().max(1)),
    };
    choose_output(policy, t.format, t.quality, &facts, accept)
}

/// What the output choice needs to know of the source.
#[derive(Debug, Clone, Copy)]
pub struct SourceFacts {
    pub format: Format,
    /// Several frames that the transform keeps.
    pub animated: bool,
    /// Output pixels, over every frame.
    pub pixels: u64,
}

/// The encoder chosen for a request, and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChoice {
    pub output: Output,
    /// Chosen from `Accept`: the answer needs `Vary: Accept`.
    pub vary_accept: bool,
    /// Why the output differs from what was asked (`X-Image-Fallback`).
    pub fallback: Option<String>,
}

/// `format` + `Accept` + the source → the encoder. `auto`: AVIF if enabled, accepted, still
/// and under the pixel cut-off; else WebP if accepted; else the source's own family. AVIF
/// over the cut-off (explicit or not) becomes WebP, and the answer says so.
pub fn choose_output(
    policy: &OutputPolicy,
    choice: FormatChoice,
    quality: Option<u8>,
    source: &SourceFacts,
    accept: Accepted,
) -> OutputChoice {
    let webp = Output::Webp {
        quality: quality.unwrap_or(policy.webp_quality),
    };
    let avif = Output::Avif {
        quality: quality.unwrap_or(policy.avif_quality),
        speed: policy.avif_speed,
    };
    let family = match source.format {
        Format::Jpeg => Output::Jpeg {
            quality: quality.unwrap_or(policy.jpeg_quality),
        },
        Format::Gif => Output::Gif,
        Format::Webp => webp,
        Format::Avif => avif,
        // PNG, APNG and the formats browsers do not all show (BMP, TIFF, ICO, SVG).
        _ => Output::Png,
    };
    let (wanted, vary_accept) = match choice {
        FormatChoice::Auto => {
            let output = if policy.avif && accept.avif && !source.animated {
                avif
            } else if accept.webp {
                webp
            } else {
                family
            };
            (output, true)
        }
        FormatChoice::Original => (family, false),
        FormatChoice::Webp => (webp, false),
        FormatChoice::Avif => (avif, false),
        FormatChoice::Jpeg => (
            Output::Jpeg {
                quality: quality.unwrap_or(policy.jpeg_quality),
            },
            false,
        ),
        FormatChoice::Png => (Output::Png, false),
        FormatChoice::Gif => (Output::Gif, false),
    };
    if matches!(wanted, Output::Avif { .. }) && source.pixels > policy.avif_max_pixels {
        // The family of an AVIF source is AVIF: fall back to WebP then, whatever `Accept`.
        let instead = if choice == FormatChoice::Auto && !accept.webp && family != avif {
            family
        } else {
            webp
        };
        return OutputChoice {
            output: instead,
            vary_accept,
            fallback: Some(format!(
                "avif over {} pixels; {} instead",
                policy.avif_max_pixels,
                instead.format().name()
            )),
        };
    }
    OutputChoice {
        output: wanted,
        vary_accept,
        fallback: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: OutputPolicy = OutputPolicy {
        avif: true,
        avif_max_pixels: 1_000_000,
        avif_speed: 9,
        webp_quality: 80,
        avif_quality: 60,
        jpeg_quality: 82,
    };

    fn facts(format: Format, animated: bool, pixels: u64) -> SourceFacts {
        SourceFacts {
            format,
            animated,
            pixels,
        }
    }

    #[test]
    fn accept_lists_only_explicit_types_with_a_positive_quality() {
        let a = Accepted::parse("image/avif,image/webp,image/apng,image/*,*/*;q=0.8");
        assert_eq!(
            a,
            Accepted {
                avif: true,
                webp: true
            }
        );
        let a = Accepted::parse("image/webp;q=0, image/*");
        assert_eq!(a, Accepted::default());
        let a = Accepted::parse("IMAGE/WEBP; q=0.5");
        assert_eq!(
            a,
            Accepted {
                avif: false,
                webp: true
            }
        );
        assert_eq!(Accepted::parse("*/*"), Accepted::default());
    }

    #[test]
    fn auto_negotiates_from_accept_and_the_source() {
        let chrome = Accepted {
            avif: true,
            webp: true,
        };
        let old = Accepted::default();
        let webp_only = Accepted {
            avif: false,
            webp: true,
        };
        let jpeg = facts(Format::Jpeg, false, 100_000);
        let cases = [
            (
                chrome,
                jpeg,
                Output::Avif {
                    quality: 60,
                    speed: 9,
                },
            ),
            (webp_only, jpeg, Output::Webp { quality: 80 }),
            (old, jpeg, Output::Jpeg { quality: 82 }),
            (old, facts(Format::Png, false, 10), Output::Png),
            (old, facts(Format::Gif, true, 10), Output::Gif),
            (old, facts(Format::Tiff, false, 10), Output::Png),
            // Animations are not sent as AVIF sequences unless asked for.
            (
                chrome,
                facts(Format::Gif, true, 10),
                Output::Webp { quality: 80 },
            ),
        ];
        for (accept, source, want) in cases {
            let c = choose_output(&POLICY, FormatChoice::Auto, None, &source, accept);
            assert_eq!(c.output, want, "{accept:?} {source:?}");
            assert!(c.vary_accept);
            assert_eq!(c.fallback, None);
        }
        let off = OutputPolicy {
            avif: false,
            ..POLICY
        };
        let c = choose_output(&off, FormatChoice::Auto, None, &jpeg, chrome);
        assert_eq!(c.output, Output::Webp { quality: 80 });
    }

    #[test]
    fn explicit_formats_and_qualities_do_not_vary() {
        let jpeg = facts(Format::Jpeg, false, 100);
        let any = Accepted::default();
        let c = choose_output(&POLICY, FormatChoice::Webp, Some(50), &jpeg, any);
        assert_eq!(c.output, Output::Webp { quality: 50 });
        assert!(!c.vary_accept);
        let png = facts(Format::Png, false, 100);
        let c = choose_output(&POLICY, FormatChoice::Jpeg, None, &png, any);
        assert_eq!(c.output, Output::Jpeg { quality: 82 });
        let c = choose_output(&POLICY, FormatChoice::Original, Some(70), &jpeg, any);
        assert_eq!(c.output, Output::Jpeg { quality: 70 });
        let gif = facts(Format::Gif, true, 100);
        let c = choose_output(&POLICY, FormatChoice::Avif, None, &gif, any);
        assert_eq!(
            c.output,
            Output::Avif {
                quality: 60,
                speed: 9
            },
            "asked for"
        );
    }

    #[test]
    fn avif_over_the_cutoff_becomes_webp_and_says_so() {
        let big = facts(Format::Jpeg, false, 1_000_001);
        let chrome = Accepted {
            avif: true,
            webp: true,
        };
        let c = choose_output(&POLICY, FormatChoice::Auto, None, &big, chrome);
        assert_eq!(c.output, Output::Webp { quality: 80 });
        assert!(c.fallback.as_deref().is_some_and(|f| f.contains("webp")));
        let c = choose_output(
            &POLICY,
            FormatChoice::Avif,
            Some(40),
            &big,
            Accepted::default(),
        );
        assert_eq!(c.output, Output::Webp { quality: 40 });
        assert!(c.fallback.is_some());
    }
}
