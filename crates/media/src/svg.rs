//! SVG through resvg, with nothing external: no file is read (`<image href="/etc/…">` and
//! relative paths resolve to nothing), no font file is loaded (this build has no text
//! support at all), no network. Only `data:` URLs are decoded. The raster size is chosen by
//! the caller and capped by the transform (≤ 2048 for a plain SVG).

use resvg::tiny_skia;
use resvg::usvg;

use crate::pixels::{Channels, Frame};
use crate::Error;

fn options() -> usvg::Options<'static> {
    usvg::Options {
        resources_dir: None,
        image_href_resolver: usvg::ImageHrefResolver {
            resolve_data: usvg::ImageHrefResolver::default_data_resolver(),
            // Anything that is not a data: URL (paths, file:, http:) resolves to nothing.
            resolve_string: Box::new(|_, _| None),
        },
        ..usvg::Options::default()
    }
}

/// A parsed SVG document: parsed once, then measured and rendered.
pub struct Svg(usvg::Tree);

/// Largest `feMorphology` radius rendered, in output pixels.
const MAX_MORPHOLOGY_PX: f32 = 64.0;

impl std::fmt::Debug for Svg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Svg({:?})", self.size())
    }
}

impl Svg {
    pub fn parse(bytes: &[u8]) -> Result<Svg, Error> {
        // Text that is not UTF-8 is refused by the parser itself.
        if std::str::from_utf8(bytes).is_ok_and(|t| !crate::format::entities_are_bounded(t)) {
            return Err(Error::Invalid(
                "SVG entities could expand without bound".into(),
            ));
        }
        usvg::Tree::from_data(bytes, &options())
            .map(Svg)
            .map_err(|e| Error::Invalid(e.to_string()))
    }

    /// Refuses filters whose cost grows with a parameter rather than with the picture:
    /// resvg's `feMorphology` visits a window of (2·rx+1)×(2·ry+1) pixels around each
    /// pixel, so `radius="9999"` keeps a worker busy for seconds (minutes at 2048 px) in
    /// one call that the deadline cannot interrupt. Radii up to [`MAX_MORPHOLOGY_PX`] at
    /// the output scale (far beyond artistic use) are rendered.
    fn check_filter_cost(&self, w: u32, h: u32) -> Result<(), Error> {
        let size = self.0.size();
        let scale = (w as f32 / size.width()).max(h as f32 / size.height());
        for filter in self.0.filters() {
            for primitive in filter.primitives() {
                if let usvg::filter::Kind::Morphology(m) = primitive.kind() {
                    let r = m.radius_x().get().max(m.radius_y().get()) * scale;
                    if r.is_nan() || r > MAX_MORPHOLOGY_PX {
                        return Err(Error::TooLarge(format!("feMorphology radius of {r:.0} px")));
                    }
                }
            }
        }
        Ok(())
    }

    /// The document's own size in pixels, rounded (at least 1×1).
    pub fn size(&self) -> (u32, u32) {
        let s = self.0.size();
        let side = |v: f32| -> u32 {
            // Clamped to u32's range before the cast; NaN becomes 1.
            (v.round().clamp(1.0, u32::MAX as f32)) as u32
        };
        (side(s.width()), side(s.height()))
    }

    /// Renders the document scaled to exactly `w`×`h`, as straight-alpha RGBA.
    pub fn rasterise(&self, w: u32, h: u32) -> Result<Frame, Error> {
        self.check_filter_cost(w, h)?;
        let mut pixmap = tiny_skia::Pixmap::new(w.max(1), h.max(1))
            .ok_or_else(|| Error::TooLarge(format!("{w}×{h} raster")))?;
        let size = self.0.size();
        let transform =
            tiny_skia::Transform::from_scale(w as f32 / size.width(), h as f32 / size.height());
        resvg::render(&self.0, transform, &mut pixmap.as_mut());
        let mut data = Vec::with_capacity(pixmap.pixels().len() * 4);
        for px in pixmap.pixels() {
            let c = px.demultiply();
            data.extend_from_slice(&[c.red(), c.green(), c.blue(), c.alpha()]);
        }
        Ok(Frame {
            width: pixmap.width(),
            height: pixmap.height(),
            channels: Channels::Rgba,
            data,
            delay_ms: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn morphology(radius: &str) -> Svg {
        let text = format!(
            r#"<svg viewBox="0 0 200 200" xmlns="http://www.w3.org/2000/svg">
                 <filter id="f"><feMorphology radius="{radius}"/></filter>
                 <rect x="20" y="20" width="160" height="160" fill="green" filter="url(#f)"/>
               </svg>"#
        );
        Svg::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_huge_morphology_radius_is_refused_before_rendering() {
        let r = morphology("9999").rasterise(200, 200);
        assert!(matches!(r, Err(Error::TooLarge(_))), "{r:?}");
        // A small radius renders; the limit is in output pixels, so scaling up counts.
        let small = morphology("3").rasterise(200, 200).unwrap();
        assert_eq!((small.width, small.height), (200, 200));
        assert!(matches!(
            morphology("3").rasterise(8000, 8000),
            Err(Error::TooLarge(_))
        ));
    }
}
