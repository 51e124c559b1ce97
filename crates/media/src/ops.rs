//! The Misskey transforms and their geometry: which size each one produces. Values here are
//! already valid; sizes follow the spec's rounding (the limiting side gets the box size,
//! the other side is rounded to the nearest integer, never below 1).

/// The Misskey transforms, in the spec's order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// An SVG with no flags, rasterised inside 2048×2048.
    SvgRaster,
}

/// Side of the square notification badge.
pub const BADGE_SIZE: u32 = 96;

impl Transform {
    /// Whether the output keeps every frame of an animated input.
    pub fn animated(self) -> bool {
        matches!(
            self,
            Transform::Emoji { still: false } | Transform::Avatar { still: false }
        )
    }

    /// Output size for an (already oriented) input of `w`×`h`. For the badge this is the
    /// size of the image inside the 96×96 canvas.
    pub fn target(self, w: u32, h: u32) -> (u32, u32) {
        match self {
            Transform::Emoji { .. } => max_height(w, h, 128),
            Transform::Avatar { .. } => max_height(w, h, 320),
            Transform::Static => fit_inside(w, h, 498, 422, false),
            Transform::Preview => fit_inside(w, h, 200, 200, false),
            Transform::Badge => fit_inside(w, h, BADGE_SIZE, BADGE_SIZE, true),
            Transform::SvgRaster => fit_inside(w, h, 2048, 2048, false),
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
            ((5000, 1000), Transform::SvgRaster, (2048, 410)),
        ];
        for ((w, h), t, want) in cases {
            assert_eq!(t.target(w, h), want, "{w}×{h} {t:?}");
        }
    }
}
