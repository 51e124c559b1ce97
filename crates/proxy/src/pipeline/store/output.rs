//! Output negotiation for the store mode: `format`, `Accept`, the source's animation and the
//! AVIF pixel cut-off → the encoder, whether the answer varies by `Accept`, and why it is
//! not what was asked (`X-Image-Fallback`). Input: the [`OutputPolicy`] (settings), the
//! request's format choice and [`Accepted`], the prepared source's facts; output: an
//! [`OutputChoice`] and the `Accept` bucket of the variant key. Pure; uses `config` (the
//! policy's source) and `request`.

use media::{Format, Output};

use crate::request::resize::{FormatChoice, StoreTransform};
use crate::request::Accepted;

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

/// What of `Accept` the output depends on: for `format=auto`, whether AVIF (when enabled)
/// and WebP are accepted; nothing for an explicit format. Requests in one bucket get the
/// same output for the same original.
pub(super) fn output_bucket(
    policy: &OutputPolicy,
    choice: FormatChoice,
    accept: Accepted,
) -> String {
    match choice {
        FormatChoice::Auto => format!(
            "auto:avif={},webp={}",
            policy.avif && accept.avif,
            accept.webp
        ),
        _ => "explicit".to_owned(),
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
