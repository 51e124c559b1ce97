//! The Misskey transforms and their geometry: which size each one produces. Values here are
//! already valid; sizes follow the spec's rounding (the limiting side gets the box size,
//! the other side is rounded to the nearest integer, never below 1).
//!
//! Input: a transform and a source size; output: the output size. Uses nothing of ours.

/// The Misskey transforms, in the spec's order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Transform {
    /// Height ≤ 128 (emoji) or ≤ 320 (avatar), animation kept unless `still`.
    Emoji {
        still: bool,
    },
    Avatar {
        still: bool,
    },
    /// First frame inside 498×422.
    Static,
    /// First frame inside 200×200.
    Preview,
    /// 96×96 greyscale notification badge.
    Badge,
    /// No flags, and an image browsers may not show (SVG, TIFF, HEIC/HEIF, JPEG XL):
    /// converted at its own size, inside 2048×2048, never enlarged; an animation (JPEG XL)
    /// keeps its frames.
    Converted,
    /// The store mode's resize (`w`, `h`, `d`, `fit`, `enlarge`, `static`).
    Resize(Resize),
}

/// How the source fills a requested `w`×`h` box (store mode `fit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Fit {
    /// The whole image inside the box, aspect kept (the result may be smaller on one side).
    Inside,
    /// The box filled, aspect kept, the overflow cropped around the centre.
    Cover,
    /// Stretched to the box: the aspect ratio is not kept.
    Fill,
    /// The whole image inside the box, padded to the box with the background.
    Contain,
}

/// A store-mode resize, already valid: sides are at least 1 and at most `max_side`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resize {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fit: Fit,
    /// Allow an output larger than the source. Without it the result keeps the requested
    /// aspect ratio at the largest size the source allows.
    pub enlarge: bool,
    /// RGBA padding for [`Fit::Contain`] (and the backdrop of alpha in JPEG output).
    pub background: [u8; 4],
    /// First frame only.
    pub still: bool,
    /// No output side may exceed this (a side computed from the aspect ratio included).
    pub max_side: u32,
}

/// Where the pixels of an output come from and where they go. Coordinates are those of the
/// oriented source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// The part of the source that is shown: left, top, width, height (fractional).
    pub crop: (f64, f64, f64, f64),
    /// The size that part is resized to.
    pub size: (u32, u32),
    /// The output canvas (larger than `size` only when padding).
    pub canvas: (u32, u32),
    /// Where the resized part sits on the canvas.
    pub offset: (u32, u32),
}

impl Geometry {
    /// The whole source resized to `size`, nothing cropped or padded.
    fn whole(w: u32, h: u32, size: (u32, u32)) -> Geometry {
        Geometry {
            crop: (0.0, 0.0, f64::from(w.max(1)), f64::from(h.max(1))),
            size,
            canvas: size,
            offset: (0, 0),
        }
    }

    /// Whether the whole source is shown on a canvas of its resized size.
    pub fn is_whole(&self, w: u32, h: u32) -> bool {
        *self == Geometry::whole(w, h, self.size)
    }

    /// The smallest decode of a `w`×`h` source that still gives the shown part at least
    /// `size` pixels (what a JPEG's reduced DCT scale must reach).
    pub fn decode_size(&self, w: u32, h: u32) -> (u32, u32) {
        let (_, _, cw, ch) = self.crop;
        let need = |side: u32, out: u32, crop: f64| -> u32 {
            let v = (f64::from(side) * f64::from(out) / crop.max(1e-9)).ceil();
            (v.min(f64::from(side)) as u32).max(1)
        };
        (need(w, self.size.0, cw), need(h, self.size.1, ch))
    }
}

impl Resize {
    /// The geometry for an (oriented) source of `w`×`h`.
    pub fn geometry(&self, w: u32, h: u32) -> Geometry {
        let (sw, sh) = (f64::from(w.max(1)), f64::from(h.max(1)));
        let max = f64::from(self.max_side.max(1));
        // Rounds a computed side, never below 1 nor above the maximum.
        let side = |v: f64| v.round().clamp(1.0, max) as u32;
        let (bw, bh) = match (self.width, self.height) {
            (Some(bw), Some(bh)) => (f64::from(bw), f64::from(bh)),
            (one_w, one_h) => {
                // One side: the aspect ratio is kept whatever the fit.
                let mut scale = match (one_w, one_h) {
                    (Some(bw), _) => f64::from(bw) / sw,
                    (_, Some(bh)) => f64::from(bh) / sh,
                    _ => 1.0,
                };
                if !self.enlarge {
                    scale = scale.min(1.0);
                }
                // The computed side may not pass the maximum either.
                scale = scale.min(max / sw).min(max / sh);
                return Geometry::whole(w, h, (side(sw * scale), side(sh * scale)));
            }
        };
        match self.fit {
            Fit::Inside => {
                let mut scale = (bw / sw).min(bh / sh);
                if !self.enlarge {
                    scale = scale.min(1.0);
                }
                Geometry::whole(w, h, (side(sw * scale), side(sh * scale)))
            }
            Fit::Fill => {
                // Without enlarging, the box shrinks (aspect kept) until it fits the source.
                let f = if self.enlarge {
                    1.0
                } else {
                    (sw / bw).min(sh / bh).min(1.0)
                };
                Geometry::whole(w, h, (side(bw * f), side(bh * f)))
            }
            Fit::Cover => {
                let mut scale = (bw / sw).max(bh / sh);
                let (mut ow, mut oh) = (bw, bh);
                if !self.enlarge && scale > 1.0 {
                    // The box at the largest size the source covers, shown at scale 1.
                    ow = bw / scale;
                    oh = bh / scale;
                    scale = 1.0;
                }
                let (out_w, out_h) = (side(ow), side(oh));
                let (cw, ch) = (
                    (f64::from(out_w) / scale).min(sw),
                    (f64::from(out_h) / scale).min(sh),
                );
                Geometry {
                    crop: ((sw - cw) / 2.0, (sh - ch) / 2.0, cw, ch),
                    size: (out_w, out_h),
                    canvas: (out_w, out_h),
                    offset: (0, 0),
                }
            }
            Fit::Contain => {
                let mut scale = (bw / sw).min(bh / sh);
                let (mut cw, mut ch) = (bw, bh);
                if !self.enlarge && scale > 1.0 {
                    // The box shrinks, aspect kept, until the source touches it at scale 1.
                    let f = (sw / bw).max(sh / bh);
                    cw = bw * f;
                    ch = bh * f;
                    scale = 1.0;
                }
                let canvas = (side(cw), side(ch));
                let size = (
                    side(sw * scale).min(canvas.0),
                    side(sh * scale).min(canvas.1),
                );
                Geometry {
                    crop: (0.0, 0.0, sw, sh),
                    size,
                    canvas,
                    offset: ((canvas.0 - size.0) / 2, (canvas.1 - size.1) / 2),
                }
            }
        }
    }
}

/// Side of the square notification badge.
pub const BADGE_SIZE: u32 = 96;

impl Transform {
    /// Whether the output keeps every frame of an animated input.
    pub fn animated(self) -> bool {
        match self {
            Transform::Emoji { still } | Transform::Avatar { still } => !still,
            Transform::Resize(r) => !r.still,
            Transform::Converted => true,
            Transform::Static | Transform::Preview | Transform::Badge => false,
        }
    }

    /// Which part of an (oriented) `w`×`h` source is shown, at which size, on which canvas.
    pub fn geometry(self, w: u32, h: u32) -> Geometry {
        match self {
            Transform::Resize(r) => r.geometry(w, h),
            other => Geometry::whole(w, h, other.target(w, h)),
        }
    }

    /// Output size for an (already oriented) input of `w`×`h`. For the badge this is the
    /// size of the image inside the 96×96 canvas; for a resize, its canvas.
    pub fn target(self, w: u32, h: u32) -> (u32, u32) {
        match self {
            Transform::Resize(r) => r.geometry(w, h).canvas,
            Transform::Emoji { .. } => max_height(w, h, 128),
            Transform::Avatar { .. } => max_height(w, h, 320),
            Transform::Static => fit_inside(w, h, 498, 422, false),
            Transform::Preview => fit_inside(w, h, 200, 200, false),
            Transform::Badge => fit_inside(w, h, BADGE_SIZE, BADGE_SIZE, true),
            Transform::Converted => fit_inside(w, h, 2048, 2048, false),
        }
    }
}

fn scaled(side: u32, num: u32, den: u32) -> u32 {
    let v = (f64::from(side) * f64::from(num) / f64::from(den.max(1))).round();
    // Bounded by side * num / den, which fits in u32 for any box we use.
    (v as u32).max(1)
}

/// Height capped at `max`, width by aspect ratio, never enlarged.
fn max_height(w: u32, h: u32, max: u32) -> (u32, u32) {
    if h <= max {
        (w.max(1), h.max(1))
    } else {
        (scaled(w, max, h), max)
    }
}

/// Fit inside `bw`×`bh` keeping the aspect ratio; enlarge only if `enlarge`.
fn fit_inside(w: u32, h: u32, bw: u32, bh: u32, enlarge: bool) -> (u32, u32) {
    let (w, h) = (w.max(1), h.max(1));
    if !enlarge && w <= bw && h <= bh {
        return (w, h);
    }
    // Compare bw/w with bh/h without floating point: bw*h vs bh*w.
    if u64::from(bw) * u64::from(h) <= u64::from(bh) * u64::from(w) {
        (bw, scaled(h, bw, w).min(bh))
    } else {
        (scaled(w, bh, h).min(bw), bh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_size_examples() {
        let e = Transform::Emoji { still: false };
        let a = Transform::Avatar { still: false };
        let (s, p) = (Transform::Static, Transform::Preview);
        let cases = [
            ((1000, 800), e, (160, 128)),
            ((1000, 800), a, (400, 320)),
            ((1000, 800), s, (498, 398)),
            ((1000, 800), p, (200, 160)),
            ((2000, 300), e, (853, 128)),
            ((2000, 300), s, (498, 75)),
            ((200, 1000), a, (64, 320)),
            ((200, 1000), s, (84, 422)),
            ((64, 48), e, (64, 48)),
            ((64, 48), a, (64, 48)),
            ((64, 48), s, (64, 48)),
            ((64, 48), p, (64, 48)),
            // A 3000×2000 photo with orientation 6 is 2000×3000 once oriented.
            ((2000, 3000), s, (281, 422)),
            ((2000, 3000), p, (133, 200)),
            ((2000, 3000), e, (85, 128)),
            ((2000, 3000), a, (213, 320)),
            ((64, 48), Transform::Badge, (96, 72)),
            ((3000, 100), Transform::Badge, (96, 3)),
            ((10000, 1), e, (10000, 1)),
            ((1, 10000), e, (1, 128)),
            ((5000, 1000), Transform::Converted, (2048, 410)),
        ];
        for ((w, h), t, want) in cases {
            assert_eq!(t.target(w, h), want, "{w}×{h} {t:?}");
        }
    }

    fn resize(width: Option<u32>, height: Option<u32>, fit: Fit, enlarge: bool) -> Resize {
        Resize {
            width,
            height,
            fit,
            enlarge,
            background: [255, 255, 255, 255],
            still: false,
            max_side: 4096,
        }
    }

    #[test]
    fn resize_sizes_for_every_fit() {
        use Fit::*;
        let cases = [
            // source, w, h, fit, enlarge → size, canvas
            (
                (1000, 800),
                Some(500),
                None,
                Inside,
                false,
                (500, 400),
                (500, 400),
            ),
            (
                (1000, 800),
                None,
                Some(400),
                Cover,
                false,
                (500, 400),
                (500, 400),
            ),
            (
                (100, 80),
                Some(500),
                None,
                Inside,
                false,
                (100, 80),
                (100, 80),
            ),
            (
                (100, 80),
                Some(500),
                None,
                Inside,
                true,
                (500, 400),
                (500, 400),
            ),
            (
                (1000, 800),
                Some(300),
                Some(300),
                Inside,
                false,
                (300, 240),
                (300, 240),
            ),
            (
                (100, 80),
                Some(300),
                Some(300),
                Inside,
                false,
                (100, 80),
                (100, 80),
            ),
            (
                (100, 80),
                Some(300),
                Some(300),
                Inside,
                true,
                (300, 240),
                (300, 240),
            ),
            (
                (1000, 800),
                Some(100),
                Some(100),
                Cover,
                false,
                (100, 100),
                (100, 100),
            ),
            // Too small to cover 200×200: the largest square the source allows.
            (
                (100, 80),
                Some(200),
                Some(200),
                Cover,
                false,
                (80, 80),
                (80, 80),
            ),
            (
                (100, 80),
                Some(200),
                Some(200),
                Cover,
                true,
                (200, 200),
                (200, 200),
            ),
            (
                (1000, 800),
                Some(300),
                Some(100),
                Fill,
                false,
                (300, 100),
                (300, 100),
            ),
            (
                (1000, 800),
                Some(2000),
                Some(100),
                Fill,
                false,
                (1000, 50),
                (1000, 50),
            ),
            (
                (1000, 800),
                Some(2000),
                Some(100),
                Fill,
                true,
                (2000, 100),
                (2000, 100),
            ),
            (
                (1000, 800),
                Some(300),
                Some(300),
                Contain,
                false,
                (300, 240),
                (300, 300),
            ),
            (
                (100, 80),
                Some(200),
                Some(200),
                Contain,
                false,
                (100, 80),
                (100, 100),
            ),
            (
                (100, 80),
                Some(200),
                Some(200),
                Contain,
                true,
                (200, 160),
                (200, 200),
            ),
            // The side computed from the aspect ratio is capped too.
            (
                (1, 4000),
                Some(4000),
                None,
                Inside,
                true,
                (1, 4096),
                (1, 4096),
            ),
        ];
        for ((sw, sh), w, h, fit, enlarge, size, canvas) in cases {
            let g = resize(w, h, fit, enlarge).geometry(sw, sh);
            let label = format!("{sw}×{sh} w={w:?} h={h:?} {fit:?} enlarge={enlarge}");
            assert_eq!(g.size, size, "size of {label}");
            assert_eq!(g.canvas, canvas, "canvas of {label}");
        }
    }

    #[test]
    fn cover_crops_around_the_centre_and_contain_centres_the_image() {
        let g = resize(Some(100), Some(100), Fit::Cover, false).geometry(1000, 800);
        assert_eq!(g.crop, (100.0, 0.0, 800.0, 800.0));
        // A JPEG need only be decoded large enough for the cropped part: 125×100.
        assert_eq!(g.decode_size(1000, 800), (125, 100));
        let g = resize(Some(100), Some(80), Fit::Cover, false).geometry(1000, 1000);
        assert_eq!(g.crop, (0.0, 100.0, 1000.0, 800.0));
        let g = resize(Some(300), Some(300), Fit::Contain, false).geometry(1000, 800);
        assert_eq!(g.offset, (0, 30));
        assert_eq!(g.crop, (0.0, 0.0, 1000.0, 800.0));
        let g = resize(Some(300), None, Fit::Inside, false).geometry(1000, 800);
        assert!(g.is_whole(1000, 800), "{g:?}");
        assert_eq!(g.decode_size(1000, 800), (300, 240));
    }
}
