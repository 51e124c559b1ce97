//! The Misskey notification badge: the first frame fitted into 96×96 (contain, centred),
//! greyscale, contrast stretched (normalise: 1st–99th percentile to 0–255), then ×1.75
//! contrast around mid-grey, flattened on black. A result whose histogram has less than 0.1
//! bit of entropy is refused (the client then uses its own icon); otherwise every pixel
//! becomes (v, v, v, v): a grey mask usable as a monochrome icon.
//!
//! Input: the first frame; output: the badge frame. Uses `ops` (the size), `pixels`,
//! `Error`.

use crate::ops::BADGE_SIZE;
use crate::pixels::{Channels, Frame};
use crate::Error;

/// `inner` is the first frame already resized to fit inside 96×96. Returns RGBA 96×96.
pub fn badge(inner: &Frame) -> Result<Vec<u8>, Error> {
    let side = BADGE_SIZE as usize;
    let (iw, ih) = (inner.width as usize, inner.height as usize);
    if iw > side || ih > side {
        return Err(Error::Encode("badge input larger than the canvas".into()));
    }
    let (ox, oy) = ((side - iw) / 2, (side - ih) / 2);
    // Grey and alpha on the transparent black canvas.
    let mut grey = vec![0f32; side * side];
    let mut alpha = vec![0f32; side * side];
    let n = inner.channels.count();
    for (i, px) in inner.data.chunks_exact(n).enumerate() {
        let (x, y) = (i % iw.max(1), i / iw.max(1));
        let at = (oy + y) * side + ox + x;
        let (r, g, b) = match px {
            &[r, g, b] | &[r, g, b, _] => (f32::from(r), f32::from(g), f32::from(b)),
            _ => continue,
        };
        let a = match (inner.channels, px) {
            (Channels::Rgba, [_, _, _, a]) => f32::from(*a),
            _ => 255.0,
        };
        if let (Some(gv), Some(av)) = (grey.get_mut(at), alpha.get_mut(at)) {
            *gv = 0.2126 * r + 0.7152 * g + 0.0722 * b;
            *av = a;
        }
    }
    // Normalise: the 1st and 99th percentiles of the grey histogram become 0 and 255.
    let mut sorted = grey.clone();
    sorted.sort_by(f32::total_cmp);
    let pick = |q: f32| {
        sorted
            .get(((sorted.len() - 1) as f32 * q) as usize)
            .copied()
    };
    let (lo, hi) = (pick(0.01).unwrap_or(0.0), pick(0.99).unwrap_or(255.0));
    let stretch = if hi > lo { 255.0 / (hi - lo) } else { 1.0 };
    let mut values = Vec::with_capacity(side * side);
    let mut histogram = [0u32; 256];
    for (g, a) in grey.iter().zip(&alpha) {
        let normalised = ((g - lo) * stretch).clamp(0.0, 255.0);
        let contrasted = (1.75 * normalised - 0.75 * 128.0).clamp(0.0, 255.0);
        let flattened = contrasted * a / 255.0;
        // Rounded and clamped to 0..=255 before the cast.
        let v = flattened.round().clamp(0.0, 255.0) as u8;
        values.push(v);
        if let Some(h) = histogram.get_mut(usize::from(v)) {
            *h += 1;
        }
    }
    if entropy(&histogram) < 0.1 {
        return Err(Error::UniformBadge);
    }
    Ok(values.iter().flat_map(|&v| [v, v, v, v]).collect())
}

/// Shannon entropy of a histogram, in bits.
fn entropy(histogram: &[u32; 256]) -> f64 {
    let total: f64 = histogram.iter().map(|&c| f64::from(c)).sum();
    if total == 0.0 {
        return 0.0;
    }
    histogram
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Frame {
        let data = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .flat_map(|(x, y)| f(x, y))
            .collect();
        Frame {
            width: w,
            height: h,
            channels: Channels::Rgb,
            data,
            delay_ms: 0,
        }
    }

    #[test]
    fn flat_images_are_refused_and_detailed_ones_are_grey_masks() {
        assert!(matches!(
            badge(&frame(96, 96, |_, _| [200, 30, 30])),
            Err(Error::UniformBadge)
        ));
        let out = badge(&frame(96, 96, |x, y| {
            if (x / 8 + y / 8) % 2 == 0 {
                [250, 250, 250]
            } else {
                [10, 10, 10]
            }
        }))
        .unwrap();
        assert_eq!(out.len(), 96 * 96 * 4);
        assert!(
            out.chunks_exact(4)
                .all(|p| p[0] == p[1] && p[1] == p[2] && p[2] == p[3]),
            "(v,v,v,v)"
        );
        assert!(out.chunks_exact(4).any(|p| p[0] == 255) && out.chunks_exact(4).any(|p| p[0] == 0));
    }

    #[test]
    fn entropy_of_known_histograms() {
        let mut h = [0u32; 256];
        h[0] = 10;
        assert_eq!(entropy(&h), 0.0);
        h[255] = 10;
        assert!((entropy(&h) - 1.0).abs() < 1e-9);
    }
}
