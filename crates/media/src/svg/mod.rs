//! SVG through resvg, with nothing external: no file is read (`<image href="/etc/…">` and
//! relative paths resolve to nothing), no font file is loaded (this build has no text
//! support at all), no network. Only `data:` raster images are decoded (a nested SVG is not). The raster size is chosen by
//! the caller and capped by the transform (≤ 2048 for a plain SVG). What a document may
//! cost is checked before usvg builds its tree and again before resvg draws it
//! ([`cost`]): a render cannot be interrupted, so it must be known to be cheap enough.
//!
//! Input: SVG bytes, an output box and the `Limits`; output: an RGBA [`Frame`]. Uses
//! `cost`, `pixels`, `Error`, `Limits`.

use resvg::tiny_skia;
use resvg::usvg;

pub(crate) mod cost;

use crate::pixels::{Channels, Frame};
use crate::{Error, Limits};

fn options() -> usvg::Options<'static> {
    usvg::Options {
        resources_dir: None,
        image_href_resolver: usvg::ImageHrefResolver {
            resolve_data: Box::new(raster_data),
            // Anything that is not a data: URL (paths, file:, http:) resolves to nothing.
            resolve_string: Box::new(|_, _| None),
        },
        ..usvg::Options::default()
    }
}

/// `data:` images: rasters only (their headers are checked against the limits when the
/// document is priced). A nested SVG resolves to nothing: usvg would parse it with none of
/// the checks above (no `<use>` count, no entity check, `svgz` inflated without bound),
/// once for every `<use>` of the image.
fn raster_data(
    mime: &str,
    data: std::sync::Arc<Vec<u8>>,
    _: &usvg::Options<'_>,
) -> Option<usvg::ImageKind> {
    let format = match mime {
        "image/jpg" | "image/jpeg" => crate::Format::Jpeg,
        "image/png" => crate::Format::Png,
        "image/gif" => crate::Format::Gif,
        "image/webp" => crate::Format::Webp,
        // Sniffed from the bytes, as usvg does for `text/plain`; SVG stays refused.
        "text/plain" => match crate::format::sniff(&data, true) {
            crate::Sniffed::Known(f) => f,
            crate::Sniffed::NeedMore => return None,
        },
        _ => return None,
    };
    match format {
        crate::Format::Jpeg => Some(usvg::ImageKind::JPEG(data)),
        crate::Format::Png => Some(usvg::ImageKind::PNG(data)),
        crate::Format::Gif => Some(usvg::ImageKind::GIF(data)),
        crate::Format::Webp => Some(usvg::ImageKind::WEBP(data)),
        _ => None,
    }
}

/// A parsed SVG document: parsed once, then measured and rendered.
pub struct Svg {
    tree: usvg::Tree,
    limits: Limits,
}

impl std::fmt::Debug for Svg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Svg({:?})", self.size())
    }
}

impl Svg {
    /// Parses `bytes` (UTF-8 text: a compressed `svgz` is refused here, before usvg would
    /// inflate it without bound), refusing documents whose entities or `<use>` references
    /// expand past the limits before usvg builds anything.
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Svg, Error> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Error::Invalid("SVG text is not UTF-8".into()))?;
        if !crate::format::entities_are_bounded(text) {
            return Err(Error::Invalid(
                "SVG entities could expand without bound".into(),
            ));
        }
        let xml = roxmltree::ParsingOptions {
            allow_dtd: true,
            nodes_limit: u32::try_from(limits.max_svg_elements).unwrap_or(u32::MAX),
            ..roxmltree::ParsingOptions::default()
        };
        let doc = roxmltree::Document::parse_with_options(text, xml).map_err(|e| match e {
            roxmltree::Error::NodesLimitReached => {
                Error::TooLarge(format!("SVG over {} nodes", limits.max_svg_elements))
            }
            other => Error::Invalid(other.to_string()),
        })?;
        cost::expanded_elements(&doc, limits.max_svg_elements)?;
        // The checked document itself is converted: the text is parsed once.
        let tree = usvg::Tree::from_xmltree(&doc, &options())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Svg {
            tree,
            limits: *limits,
        })
    }

    /// Pixel operations a render at `w`×`h` needs (see [`cost::work`]); over the limit
    /// (`max_svg_work`) → [`Error::TooLarge`].
    pub fn work(&self, w: u32, h: u32) -> Result<u64, Error> {
        let work = cost::work(&self.tree, w, h, &self.limits)?;
        if work > self.limits.max_svg_work {
            return Err(Error::TooLarge(format!(
                "SVG render of {w}×{h} needs about {} M pixel operations (limit {} M)",
                work / 1_000_000,
                self.limits.max_svg_work / 1_000_000
            )));
        }
        Ok(work)
    }

    /// Memory the parsed tree holds, roughly (its nodes; the caller adds the input).
    pub fn tree_bytes(&self) -> u64 {
        cost::tree_bytes(cost::count_nodes(self.tree.root()))
    }

    /// The document's own size in pixels, rounded (at least 1×1).
    pub fn size(&self) -> (u32, u32) {
        let s = self.tree.size();
        let side = |v: f32| -> u32 {
            // Clamped to u32's range before the cast; NaN becomes 1.
            (v.round().clamp(1.0, u32::MAX as f32)) as u32
        };
        (side(s.width()), side(s.height()))
    }

    /// Renders the document scaled to exactly `w`×`h`, as straight-alpha RGBA. Refused
    /// first when its cost is over the limit: resvg cannot be stopped once started.
    pub fn rasterise(&self, w: u32, h: u32) -> Result<Frame, Error> {
        self.work(w, h)?;
        self.draw(w, h)
    }

    /// [`Svg::rasterise`] for a render already priced at `w`×`h` ([`crate::prepare`] does).
    pub(crate) fn draw(&self, w: u32, h: u32) -> Result<Frame, Error> {
        let mut pixmap = tiny_skia::Pixmap::new(w.max(1), h.max(1))
            .ok_or_else(|| Error::TooLarge(format!("{w}×{h} raster")))?;
        let size = self.tree.size();
        let transform =
            tiny_skia::Transform::from_scale(w as f32 / size.width(), h as f32 / size.height());
        resvg::render(&self.tree, transform, &mut pixmap.as_mut());
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
        Svg::parse(text.as_bytes(), &Limits::default()).unwrap()
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

    /// `levels` nested groups of ten `<use>` of one large translucent circle.
    fn nested_uses(levels: usize) -> String {
        let mut defs = String::from(
            r##"<circle id="l0" cx="1024" cy="1024" r="1000" fill="red" fill-opacity="0.5"/>"##,
        );
        for level in 1..=levels {
            let uses = format!(r##"<use href="#l{}"/>"##, level - 1).repeat(10);
            defs.push_str(&format!(r#"<g id="l{level}">{uses}</g>"#));
        }
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="2048" height="2048"><defs>{defs}</defs><use href="#l{levels}"/></svg>"##
        )
    }

    #[test]
    fn nested_use_expansion_is_counted_before_usvg_builds_it() {
        // Seven levels of ten: ten million circles in 1.3 KB; usvg would build them all.
        let bomb = nested_uses(7);
        assert!(bomb.len() < 2000);
        let started = std::time::Instant::now();
        let r = Svg::parse(bomb.as_bytes(), &Limits::default());
        assert!(matches!(r, Err(Error::TooLarge(_))), "{r:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Three levels (1,000 circles) parse, within the element limit.
        assert!(Svg::parse(nested_uses(3).as_bytes(), &Limits::default()).is_ok());
        let few = Limits {
            max_svg_elements: 500,
            ..Limits::default()
        };
        assert!(matches!(
            Svg::parse(nested_uses(3).as_bytes(), &few),
            Err(Error::TooLarge(_))
        ));
    }

    #[test]
    fn a_use_of_its_own_ancestor_is_not_an_endless_expansion() {
        let cyclic = r##"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">
            <g id="a"><rect width="5" height="5"/><use href="#a"/><g id="b"><use href="#a"/></g></g>
            <use href="#b"/></svg>"##;
        let doc = Svg::parse(cyclic.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(doc.size(), (10, 10));
        doc.rasterise(10, 10).unwrap();
    }

    #[test]
    fn the_render_is_priced_at_its_output_size() {
        // 1,000 translucent circles: ~4 G pixel operations at 2048², refused before resvg
        // starts (it burned ~23 CPU-seconds); at an emoji's 128 px, a cheap render.
        let doc = Svg::parse(nested_uses(3).as_bytes(), &Limits::default()).unwrap();
        assert!(matches!(doc.rasterise(2048, 2048), Err(Error::TooLarge(_))));
        let work = doc.work(128, 128).unwrap();
        assert!(
            work < 50_000_000,
            "{work}: a small fraction of the 300 M budget"
        );
        let frame = doc.rasterise(128, 128).unwrap();
        assert_eq!((frame.width, frame.height), (128, 128));
        // The centre is covered by 1,000 half-opaque red layers: opaque red.
        let centre = (64 * 128 + 64) * 4;
        assert_eq!(&frame.data[centre..centre + 4], &[255, 0, 0, 255]);
    }

    #[test]
    fn filters_are_priced_by_what_their_cost_grows_with() {
        let turbulence = |octaves: u32| {
            format!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="1000" height="1000">
                 <filter id="t"><feTurbulence baseFrequency="0.05" numOctaves="{octaves}"/></filter>
                 <rect width="1000" height="1000" filter="url(#t)"/></svg>"#
            )
        };
        let cheap = Svg::parse(turbulence(1).as_bytes(), &Limits::default()).unwrap();
        assert!(cheap.work(1000, 1000).is_ok());
        let costly = Svg::parse(turbulence(100_000).as_bytes(), &Limits::default()).unwrap();
        assert!(matches!(costly.work(1000, 1000), Err(Error::TooLarge(_))));
        // Embedded rasters pass the image limits from their own header.
        let tiny = Limits {
            max_pixels: 10,
            ..Limits::default()
        };
        let png = {
            let mut out = Vec::new();
            let mut enc = png::Encoder::new(&mut out, 8, 8);
            enc.set_color(png::ColorType::Rgba);
            let mut writer = enc.write_header().unwrap();
            writer.write_image_data(&[0u8; 8 * 8 * 4]).unwrap();
            writer.finish().unwrap();
            out
        };
        let b64 = base64_encode(&png);
        let with_image = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="3" height="3"><image width="3" height="3" href="data:image/png;base64,{b64}"/></svg>"#
        );
        let doc = Svg::parse(with_image.as_bytes(), &tiny).unwrap();
        assert!(matches!(doc.work(3, 3), Err(Error::TooLarge(_))));
        let doc = Svg::parse(with_image.as_bytes(), &Limits::default()).unwrap();
        assert!(doc.work(3, 3).is_ok());
    }

    #[test]
    fn a_nested_svg_image_is_not_parsed() {
        // Inside a data: URL, a `<use>` bomb would be parsed by usvg with none of the checks.
        let inner = base64_encode(nested_uses(7).as_bytes());
        let outer = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><image width="8" height="8" href="data:image/svg+xml;base64,{inner}"/></svg>"#
        );
        let started = std::time::Instant::now();
        let doc = Svg::parse(outer.as_bytes(), &Limits::default()).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let frame = doc.rasterise(8, 8).unwrap();
        assert!(
            frame.data.chunks(4).all(|px| px[3] == 0),
            "drawn as nothing"
        );
    }

    fn base64_encode(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
