//! What rendering an SVG will cost, known before resvg starts: resvg cannot be interrupted,
//! so a document that would keep a worker busy for minutes must be refused up front. A
//! 725-byte SVG (three nested levels of ten `<use>` of one large translucent circle: 1,000
//! circles on a 2048² canvas) burned ~23 CPU-seconds; 100,000 circles fit in 1.1 KB.
//!
//! Two checks, each against a limit in [`crate::Limits`]:
//!
//! 1. [`expanded_elements`], on the XML before usvg sees it: the number of elements once
//!    every `<use>` is replaced by what it references (usvg copies the referenced subtree for
//!    each `<use>`, so nested references grow exponentially: seven levels of ten are ten
//!    million nodes, which usvg would build before we could count them). Over
//!    `max_svg_elements` → refused.
//! 2. [`work`], on the parsed tree at the output size: an upper estimate of the pixels
//!    touched, in "pixel operations": every painted path's clipped area (fill and stroke),
//!    every layer a group needs (opacity, clip path, mask, filter, blend mode) allocated and
//!    composited, each filter primitive priced by what its cost grows with (blur passes,
//!    `feMorphology`'s window, `feTurbulence`'s octaves, `feConvolveMatrix`'s kernel), masks
//!    and clip paths and patterns rendered as the subtrees they are, embedded rasters decoded
//!    at their real size. Over `max_svg_work` → refused.
//!
//! Written by hand: no crate prices a usvg tree. The weights are measured (`cargo bench -p
//! media --bench engine -- svg`: translucent fills, opacity layers, blurs, many small paths):
//! on the 2-core x86-64 machine of `docs/benchmarks.md` one operation costs 1.6–2.3 ns, so
//! the default budget of 300 M operations is at most ~0.7 s of one core, well inside the
//! default 10 s deadline, while emoji and icons cost a few million.
//!
//! Input: the SVG text (before parsing) and the parsed tree at the output size; output: its
//! element count and work in pixel operations, or `Error::TooLarge`. Uses `Error`.

use std::collections::HashMap;

use resvg::usvg;
use usvg::filter::Kind;

use crate::Error;

/// Elements of the document once every `<use>` is expanded (with usvg's rules: a `<use>`
/// that refers to itself or to an ancestor is skipped). Stops counting past `max`.
/// Iterative (no recursion): documents may nest deeper than a thread's stack.
pub(crate) fn expanded_elements(doc: &roxmltree::Document<'_>, max: u64) -> Result<u64, Error> {
    let ids: HashMap<&str, roxmltree::NodeId> = doc
        .descendants()
        .filter(roxmltree::Node::is_element)
        .filter_map(|n| n.attribute("id").map(|id| (id, n.id())))
        .collect();
    let target = |n: roxmltree::Node<'_, '_>| -> Option<roxmltree::Node<'_, '_>> {
        if n.tag_name().name() != "use" {
            return None;
        }
        let href = n
            .attributes()
            .find(|a| a.name() == "href")
            .map(|a| a.value())?;
        let id = href.trim().strip_prefix('#')?;
        ids.get(id).and_then(|&nid| doc.get_node(nid))
    };
    // Count per node: None = not visited, Some(None) = in progress, Some(Some(n)) = done.
    let size = doc.descendants().count();
    let mut count: Vec<Option<Option<u64>>> = vec![None; size + 1];
    let index = |n: roxmltree::Node<'_, '_>| n.id().get_usize();
    let root = doc.root_element();
    let mut stack = vec![(root, false)];
    while let Some((node, expanded)) = stack.pop() {
        let deps = node
            .children()
            .filter(roxmltree::Node::is_element)
            .chain(target(node));
        if !expanded {
            if count.get(index(node)).copied().flatten().is_some() {
                continue;
            }
            if let Some(slot) = count.get_mut(index(node)) {
                *slot = Some(None);
            }
            stack.push((node, true));
            for dep in deps {
                if count.get(index(dep)).copied().flatten().is_none() {
                    stack.push((dep, false));
                }
            }
            continue;
        }
        // A dependency still in progress is a cycle: usvg skips such a `<use>`; so do we.
        let total = deps.fold(1u64, |sum, dep| {
            let n = count.get(index(dep)).copied().flatten().flatten();
            sum.saturating_add(n.unwrap_or(0))
        });
        if total > max {
            return Err(Error::TooLarge(format!(
                "SVG expands to more than {max} elements"
            )));
        }
        if let Some(slot) = count.get_mut(index(node)) {
            *slot = Some(Some(total));
        }
    }
    Ok(count
        .get(index(root))
        .copied()
        .flatten()
        .flatten()
        .unwrap_or(0))
}

/// Fixed cost of drawing one path, in pixel operations: flattening its curves, building
/// and sorting its anti-aliased edges (measured: ~50 µs for a small circle, whatever its
/// area; `svg` group of the criterion bench).
const PER_PATH: u64 = 12_000;
/// Per point of a path's outline (edge building and sorting).
const PER_POINT: u64 = 8;

/// The render of `tree` at `w`×`h` output pixels, as pixel operations (see the module doc).
pub(crate) fn work(
    tree: &usvg::Tree,
    w: u32,
    h: u32,
    limits: &crate::Limits,
) -> Result<u64, Error> {
    let size = tree.size();
    let pricer = Pricer {
        sx: w as f32 / size.width(),
        sy: h as f32 / size.height(),
        w: w as f32,
        h: h as f32,
        limits,
        pattern_nodes: std::cell::RefCell::default(),
    };
    pricer.group(tree.root())
}

struct Pricer<'a> {
    sx: f32,
    sy: f32,
    w: f32,
    h: f32,
    limits: &'a crate::Limits,
    /// Nodes of each pattern already counted, by its address: a pattern painted by many
    /// paths is walked once, not once per path.
    pattern_nodes: std::cell::RefCell<HashMap<*const usvg::Pattern, u64>>,
}

impl Pricer<'_> {
    /// Output pixels covered by `r` (in the document's root coordinates), clipped to the
    /// canvas: work outside it is culled by the rasteriser.
    fn area(&self, r: usvg::Rect) -> u64 {
        let x0 = (r.left() * self.sx).clamp(0.0, self.w);
        let x1 = (r.right() * self.sx).clamp(0.0, self.w);
        let y0 = (r.top() * self.sy).clamp(0.0, self.h);
        let y1 = (r.bottom() * self.sy).clamp(0.0, self.h);
        let a = ((x1 - x0).max(0.0) + 1.0) * ((y1 - y0).max(0.0) + 1.0);
        if a.is_finite() {
            a as u64
        } else {
            // NaN or infinite coordinates: price it as the whole canvas.
            (self.w * self.h) as u64
        }
    }

    fn group(&self, g: &usvg::Group) -> Result<u64, Error> {
        let mut sum = 0u64;
        if g.should_isolate() {
            let layer = self.area(g.abs_layer_bounding_box().to_rect());
            // Allocated, cleared and composited back.
            sum = sum.saturating_add(layer.saturating_mul(3));
            if let Some(clip) = g.clip_path() {
                sum = sum.saturating_add(self.clip(clip, layer)?);
            }
            if let Some(mask) = g.mask() {
                sum = sum.saturating_add(self.mask(mask, layer)?);
            }
            for filter in g.filters() {
                sum = sum.saturating_add(self.filter(filter, layer)?);
            }
        }
        for child in g.children() {
            sum = sum.saturating_add(self.node(child)?);
        }
        Ok(sum)
    }

    fn node(&self, node: &usvg::Node) -> Result<u64, Error> {
        match node {
            usvg::Node::Group(g) => self.group(g),
            usvg::Node::Path(p) => self.path(p),
            usvg::Node::Image(i) => self.image(i),
            // This build has no text support: usvg keeps text nodes, resvg draws nothing.
            usvg::Node::Text(_) => Ok(PER_PATH),
        }
    }

    fn path(&self, p: &usvg::Path) -> Result<u64, Error> {
        if !p.is_visible() {
            return Ok(0);
        }
        let outline = (p.data().len() as u64).saturating_mul(PER_POINT);
        let mut sum = PER_PATH.saturating_add(outline);
        if let Some(fill) = p.fill() {
            let area = self.area(p.abs_bounding_box());
            sum = sum.saturating_add(area.saturating_add(self.paint(fill.paint(), area)?));
        }
        if let Some(stroke) = p.stroke() {
            let area = self.area(p.abs_stroke_bounding_box());
            // A dashed stroke is many short paths: its outline grows with the dashes.
            let dashes = stroke.dasharray().map_or(1, |d| d.len().max(1) as u64);
            sum = sum
                .saturating_add(area.saturating_mul(2))
                .saturating_add(outline.saturating_mul(dashes))
                .saturating_add(self.paint(stroke.paint(), area)?);
        }
        Ok(sum)
    }

    /// A pattern is its own subtree, rendered into a tile for every path painted with it;
    /// priced as that subtree drawn over the painted area (an upper bound).
    fn paint(&self, paint: &usvg::Paint, area: u64) -> Result<u64, Error> {
        match paint {
            usvg::Paint::Pattern(pattern) => {
                let nodes = *self
                    .pattern_nodes
                    .borrow_mut()
                    .entry(std::sync::Arc::as_ptr(pattern))
                    .or_insert_with(|| count_nodes(pattern.root()));
                Ok(nodes.saturating_mul(area.max(1)))
            }
            _ => Ok(0),
        }
    }

    fn clip(&self, clip: &usvg::ClipPath, layer: u64) -> Result<u64, Error> {
        let mut sum = layer
            .saturating_mul(2)
            .saturating_add(self.group(clip.root())?);
        if let Some(inner) = clip.clip_path() {
            sum = sum.saturating_add(self.clip(inner, layer)?);
        }
        Ok(sum)
    }

    fn mask(&self, mask: &usvg::Mask, layer: u64) -> Result<u64, Error> {
        let mut sum = layer
            .saturating_mul(3)
            .saturating_add(self.group(mask.root())?);
        if let Some(inner) = mask.mask() {
            sum = sum.saturating_add(self.mask(inner, layer)?);
        }
        Ok(sum)
    }

    fn filter(&self, filter: &usvg::filter::Filter, layer: u64) -> Result<u64, Error> {
        let scale = self.sx.max(self.sy);
        let mut sum = 0u64;
        for primitive in filter.primitives() {
            let factor: u64 = match primitive.kind() {
                // Three box blurs in each direction (or an IIR pass for a small deviation),
                // over four channels, with copies in and out (measured, as above).
                Kind::GaussianBlur(_) => 30,
                Kind::DropShadow(_) => 34,
                Kind::Morphology(m) => {
                    let (rx, ry) = (m.radius_x().get() * scale, m.radius_y().get() * scale);
                    if !(rx.is_finite() && ry.is_finite()) {
                        return Err(Error::TooLarge("feMorphology radius".into()));
                    }
                    // resvg visits the whole (2rx+1)×(2ry+1) window around each pixel.
                    let side = |r: f32| (2.0 * r.min(1e6) + 1.0) as u64;
                    side(rx).saturating_mul(side(ry))
                }
                Kind::ConvolveMatrix(c) => u64::from(c.matrix().columns())
                    .saturating_mul(u64::from(c.matrix().rows()))
                    .max(1),
                Kind::Turbulence(t) => u64::from(t.num_octaves()).saturating_mul(40).max(40),
                Kind::DiffuseLighting(_) | Kind::SpecularLighting(_) => 40,
                Kind::Image(i) => {
                    sum = sum.saturating_add(self.group(i.root())?);
                    2
                }
                Kind::DisplacementMap(_) | Kind::Tile(_) | Kind::ComponentTransfer(_) => 4,
                Kind::Blend(_)
                | Kind::ColorMatrix(_)
                | Kind::Composite(_)
                | Kind::Flood(_)
                | Kind::Merge(_)
                | Kind::Offset(_) => 2,
            };
            // Each primitive also allocates its own result over the region.
            sum = sum.saturating_add(layer.saturating_mul(factor.saturating_add(1)));
        }
        Ok(sum)
    }

    fn image(&self, image: &usvg::Image) -> Result<u64, Error> {
        if !image.is_visible() {
            return Ok(0);
        }
        let drawn = self.area(image.abs_bounding_box());
        let decoded = match image.kind() {
            usvg::ImageKind::SVG(tree) => {
                // Every node of the nested document drawn over the image's box (an upper
                // bound: its own coordinates are not the outer document's).
                count_nodes(tree.root()).saturating_mul(drawn.max(1))
            }
            usvg::ImageKind::PNG(data) => self.raster(data, crate::Format::Png)?,
            usvg::ImageKind::JPEG(data) => self.raster(data, crate::Format::Jpeg)?,
            usvg::ImageKind::GIF(data) => self.raster(data, crate::Format::Gif)?,
            usvg::ImageKind::WEBP(data) => self.raster(data, crate::Format::Webp)?,
        };
        Ok(drawn.saturating_mul(4).saturating_add(decoded))
    }

    /// An embedded raster is decoded whole at its own size, whatever size it is drawn at:
    /// its header must pass the same limits as any image (a `data:` PNG can be a bomb).
    fn raster(&self, data: &[u8], format: crate::Format) -> Result<u64, Error> {
        let probe = crate::probe::probe(data, format)?;
        probe.check(self.limits)?;
        Ok(probe.width as u64 * probe.height as u64 * 2)
    }
}

/// Nodes in `g` and below, masks, clip paths, patterns and filters' subtrees included.
pub(crate) fn count_nodes(g: &usvg::Group) -> u64 {
    let mut n = 1u64;
    let mut stack: Vec<&usvg::Group> = vec![g];
    while let Some(g) = stack.pop() {
        for child in g.children() {
            n = n.saturating_add(1);
            if let usvg::Node::Group(inner) = child {
                stack.push(inner);
            }
            child.subroots(|sub| n = n.saturating_add(count_nodes(sub)));
        }
    }
    n
}

/// Memory the parsed tree holds, roughly: usvg nodes are a few hundred bytes each (paths
/// carry their outline as well, counted from the input's size by the caller).
pub(crate) fn tree_bytes(nodes: u64) -> u64 {
    nodes.saturating_mul(512)
}
