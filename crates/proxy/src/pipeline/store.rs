//! The store-mode steps, in order. Input: a [`StorePlan`] and the request's [`Conditions`];
//! output: a [`StoreReply`] (no HTTP types).
//!
//! 1. take a download place (bounds what is read and queued, as in the remote mode);
//! 2. one GET from the store: metadata and body together;
//! 3. no transform: sniff the head, answer `304` if the validators match, else stream the
//!    original as it is (an SVG is rasterised instead: its bytes are never served);
//! 4. a transform: read the whole original, read its headers ([`media::prepare`]), choose the
//!    output ([`choose_output`]: `format`, `Accept`, animation, the AVIF cut-off), derive the
//!    strong ETag, answer `304` if it matches, else render on the worker pool.

use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use media::ops::Resize;
use media::{Format, Output, Rendered, Transform};
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::request::resize::{FormatChoice, StorePlan};
use crate::source::store::{ObjectBody, ObjectMeta, Store, StoreError};
use crate::workers::Workers;

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
    Rendered {
        rendered: Rendered,
        validators: Validators,
        /// Why the output is not the format that was asked for (`X-Image-Fallback`).
        fallback: Option<String>,
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
}

impl StorePipeline {
    pub fn new(
        store: Store,
        workers: Workers,
        limits: media::Limits,
        policy: OutputPolicy,
    ) -> Self {
        StorePipeline {
            store,
            workers,
            limits,
            policy,
        }
    }

    pub async fn run(&self, plan: StorePlan, cond: Conditions) -> Result<StoreReply, AppError> {
        // Held until the answer is decided: bounds what downloads and queued bodies hold.
        let place = self.workers.enter()?;
        let object = self.store.get(&plan.key).await?;
        let Some(transform) = plan.transform.clone() else {
            let mut body = object.body;
            let (format, head, _) = super::sniff_body(&mut body).await?;
            body.unread(head);
            if format == Format::Svg {
                // SVG is never served as is (it can carry script): rasterised at its size.
                let all = body.read_all().await?;
                let t = default_svg_transform();
                return self
                    .render(all, format, &t, &plan, &object.meta, &cond)
                    .await;
            }
            if !format.capabilities().passthrough {
                return Err(AppError::NotPassable(format));
            }
            let validators = validators(&object.meta, "original", None, &plan, false);
            if cond.not_modified(&validators) {
                return Ok(StoreReply::NotModified(validators));
            }
            drop(place);
            return Ok(StoreReply::Original {
                format,
                size: object.meta.size,
                validators,
                body: (!plan.head_only).then(|| OriginalBody(body.into_stream().boxed())),
            });
        };
        let mut body = object.body;
        if cond.is_revalidation() {
            // A cache asking whether its copy is current: the head may be enough to know.
            let (format, head, _) = super::sniff_body(&mut body).await?;
            if let Some(v) =
                self.validators_from_head(&head, format, &transform, &plan, &object.meta, &cond)
            {
                if cond.not_modified(&v) {
                    return Ok(StoreReply::NotModified(v));
                }
            }
            body.unread(head);
        }
        let bytes = body.read_all().await?;
        let format = crate::pipeline::sniff_complete(&bytes);
        if !format.capabilities().transform {
            // 422, not the remote mode's 404: here a 404 means "no such key".
            return Err(media::Error::Unsupported(format.mime()).into());
        }
        self.render(bytes, format, &transform, &plan, &object.meta, &cond)
            .await
    }

    async fn render(
        &self,
        bytes: Bytes,
        format: Format,
        t: &crate::request::resize::StoreTransform,
        plan: &StorePlan,
        meta: &ObjectMeta,
        cond: &Conditions,
    ) -> Result<StoreReply, AppError> {
        // Header-only: refuses over-limit inputs and prices the work before it is admitted.
        let prepared = media::prepare(&bytes, format, Transform::Resize(t.resize), &self.limits)?;
        let (choice, validators) = self.decide(&prepared, format, t, plan, meta, cond);
        if cond.not_modified(&validators) {
            return Ok(StoreReply::NotModified(validators));
        }
        let prepared = prepared.with_output(choice.output);
        let rendered = self
            .workers
            .run(prepared.cost(), move |stop| prepared.render(&bytes, stop))
            .await?;
        Ok(StoreReply::Rendered {
            rendered,
            validators,
            fallback: choice.fallback,
            head_only: plan.head_only,
        })
    }
}

impl StorePipeline {
    /// The output and the validators of a prepared transform: the one place both are
    /// derived, so a `304` decided from the head and a `200` from the whole file agree.
    fn decide(
        &self,
        prepared: &media::Prepared,
        format: Format,
        t: &crate::request::resize::StoreTransform,
        plan: &StorePlan,
        meta: &ObjectMeta,
        cond: &Conditions,
    ) -> (OutputChoice, Validators) {
        let (w, h) = prepared.size();
        let facts = SourceFacts {
            format,
            animated: prepared.animated(),
            pixels: u64::from(w) * u64::from(h) * u64::from(prepared.frames().max(1)),
        };
        let choice = choose_output(&self.policy, t.format, t.quality, &facts, cond.accept);
        let v = validators(
            meta,
            &t.canonical,
            Some(choice.output),
            plan,
            choice.vary_accept,
        );
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
        t: &crate::request::resize::StoreTransform,
        plan: &StorePlan,
        meta: &ObjectMeta,
        cond: &Conditions,
    ) -> Option<Validators> {
        if !matches!(
            format,
            Format::Jpeg | Format::Png | Format::Bmp | Format::Avif
        ) {
            return None;
        }
        let prepared =
            media::prepare(head, format, Transform::Resize(t.resize), &self.limits).ok()?;
        Some(self.decide(&prepared, format, t, plan, meta, cond).1)
    }
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
    plan: &StorePlan,
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
        immutable: plan.immutable,
        vary_accept,
    }
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
