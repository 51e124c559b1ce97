//! The one table of formats this program knows: format ↔ MIME type ↔ extensions ↔ what we may
//! do with it (pass it through to a browser, transform it).
//!
//! Input: the first bytes of a body. Output: a [`Format`]. Detection is by content only
//! (magic numbers through the `file-format` crate, plus the two checks it cannot do for us:
//! APNG anywhere before the first `IDAT`, and SVG by parsing the text). Never from a
//! `Content-Type` header or a URL.
//!
//! Uses nothing of ours.

use file_format::FileFormat;

/// How many bytes [`sniff`] wants to see before it can decide. Bodies shorter than this are
/// sniffed whole. (An SVG needs more: see [`SVG_SNIFF_LIMIT`].)
pub const SNIFF_LEN: usize = 64 * 1024;

/// An SVG is recognised by parsing its text; a document larger than this is not treated as
/// an SVG at all (the spec's 1 MiB rule, which also bounds the parser's work).
pub const SVG_SNIFF_LIMIT: usize = 1024 * 1024;

/// Every format this program distinguishes. `Other` carries the MIME type of anything else
/// the detector recognised (or `application/octet-stream`), so that logs can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Format {
    Jpeg,
    Png,
    Apng,
    Gif,
    Webp,
    Avif,
    Bmp,
    Tiff,
    Ico,
    Svg,
    /// HEIC/HEIF: HEVC-coded stills (an AV1-coded HEIF is [`Format::Avif`]).
    Heic,
    /// JPEG XL, bare codestream or in its container.
    Jxl,
    Opus,
    OggVideo,
    OggAudio,
    Ogg,
    QuickTime,
    Mp4Video,
    Mp4Audio,
    M4v,
    M4a,
    ThreeGpp,
    ThreeGpp2,
    MpegVideo,
    Mp3,
    WebmVideo,
    WebmAudio,
    Aac,
    Flac,
    Wav,
    /// Recognised (or not), but nothing we serve or convert (HEIC, PDF, HTML, text, …).
    #[serde(skip)]
    Other(Foreign),
    /// No bytes at all.
    Empty,
}

/// A format outside our table, kept so that logs can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Foreign(FileFormat);

impl Foreign {
    /// The detector's MIME type for it (for logs; such bytes are never served).
    pub fn media_type(&self) -> &str {
        self.0.media_type()
    }
}

/// What a format may become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Safe to hand to a browser as it is (the spec's passthrough list).
    pub passthrough: bool,
    /// The image engine can decode and convert it.
    pub transform: bool,
}

impl Capabilities {
    /// An image a browser may not show, so that without flags it is converted (the spec's
    /// rows 5 and 5b: SVG, TIFF, HEIC/HEIF, JPEG XL), never passed through.
    pub fn converted(self) -> bool {
        self.transform && !self.passthrough
    }
}

impl Format {
    /// Bytes nothing recognised.
    pub fn unknown() -> Format {
        Format::Other(Foreign(FileFormat::ArbitraryBinaryData))
    }

    /// The MIME type sent as `Content-Type` when the bytes are passed through.
    pub fn mime(self) -> &'static str {
        self.row().0
    }

    /// A name for logs: the MIME type, or the detector's guess for foreign formats.
    pub fn name(&self) -> &str {
        match self {
            Format::Other(foreign) => foreign.media_type(),
            known => known.mime(),
        }
    }

    /// The canonical file extension (no dot), used to name downloads.
    pub fn extension(self) -> &'static str {
        self.row().1
    }

    /// Other spellings of the extension that count as already carrying it
    /// (`.jpeg` for `jpg`, `.tiff` for `tif`).
    pub fn extension_aliases(self) -> &'static [&'static str] {
        match self {
            Format::Jpeg => &["jpeg"],
            Format::Tiff => &["tiff"],
            Format::Heic => &["heif", "hif"],
            Format::Apng => &["apng"],
            _ => &[],
        }
    }

    pub fn capabilities(self) -> Capabilities {
        let (_, _, passthrough, transform) = self.row();
        Capabilities {
            passthrough,
            transform,
        }
    }

    /// (mime, extension, passthrough, transform). One row per format: the table.
    fn row(self) -> (&'static str, &'static str, bool, bool) {
        match self {
            Format::Jpeg => ("image/jpeg", "jpg", true, true),
            Format::Png => ("image/png", "png", true, true),
            // APNG files conventionally keep the .png extension.
            Format::Apng => ("image/apng", "png", true, true),
            Format::Gif => ("image/gif", "gif", true, true),
            Format::Webp => ("image/webp", "webp", true, true),
            Format::Avif => ("image/avif", "avif", true, true),
            Format::Bmp => ("image/bmp", "bmp", true, true),
            Format::Ico => ("image/x-icon", "ico", true, true),
            // Never passed through: formats not every current browser shows are converted
            // (SVG rasterised; TIFF, HEIC and JPEG XL decoded) or refused.
            Format::Svg => ("image/svg+xml", "svg", false, true),
            Format::Tiff => ("image/tiff", "tif", false, true),
            Format::Heic => ("image/heic", "heic", false, true),
            Format::Jxl => ("image/jxl", "jxl", false, true),
            Format::Opus => ("audio/opus", "opus", true, false),
            Format::OggVideo => ("video/ogg", "ogv", true, false),
            Format::OggAudio => ("audio/ogg", "ogg", true, false),
            Format::Ogg => ("application/ogg", "ogg", true, false),
            Format::QuickTime => ("video/quicktime", "mov", true, false),
            Format::Mp4Video => ("video/mp4", "mp4", true, false),
            Format::Mp4Audio => ("audio/mp4", "mp4", true, false),
            Format::M4v => ("video/x-m4v", "m4v", true, false),
            Format::M4a => ("audio/x-m4a", "m4a", true, false),
            Format::ThreeGpp => ("video/3gpp", "3gp", true, false),
            Format::ThreeGpp2 => ("video/3gpp2", "3g2", true, false),
            Format::MpegVideo => ("video/mpeg", "mpg", true, false),
            Format::Mp3 => ("audio/mpeg", "mp3", true, false),
            Format::WebmVideo => ("video/webm", "webm", true, false),
            Format::WebmAudio => ("audio/webm", "webm", true, false),
            Format::Aac => ("audio/aac", "aac", true, false),
            Format::Flac => ("audio/flac", "flac", true, false),
            Format::Wav => ("audio/wav", "wav", true, false),
            Format::Other(_) => ("application/octet-stream", "bin", false, false),
            Format::Empty => ("application/octet-stream", "bin", false, false),
        }
    }
}

/// What the head of a body says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Known(Format),
    /// The head is text that may be an SVG, but the decision needs more bytes (up to
    /// [`SVG_SNIFF_LIMIT`]). Call [`sniff`] again with more, or with all there is.
    NeedMore,
}

/// Decides the format from the first bytes of a body. `complete` says whether `head` is the
/// whole body (then a short body is judged as it is, never `NeedMore`).
pub fn sniff(head: &[u8], complete: bool) -> Sniffed {
    if head.is_empty() {
        return Sniffed::Known(Format::Empty);
    }
    let detected = FileFormat::from_bytes(head);
    if let Some(format) = heif_brand(head) {
        return Sniffed::Known(format);
    }
    if let Some(format) = from_detected(detected) {
        return Sniffed::Known(refine_png(format, head));
    }
    if is_bmp(head) {
        return Sniffed::Known(Format::Bmp);
    }
    if looks_like_xml_text(head) {
        return sniff_svg(head, complete);
    }
    Sniffed::Known(Format::Other(Foreign(detected)))
}

/// Largest text that internal XML entities may expand to (a bound, not a measurement).
const MAX_ENTITY_EXPANSION: u64 = 1 << 20;

/// Whether the document's internal entities cannot blow up when expanded. XML parsers expand
/// `<!ENTITY a "…50 KB…">` at each `&a;`: a few kilobytes of text become gigabytes
/// ("quadratic blowup"), and entities that reference entities grow exponentially ("billion
/// laughs"). No parser we use bounds the expanded size, so this scan (hand-written: it only
/// needs the declarations' values, which no XML crate exposes before expanding them) refuses
/// entity values that contain references, and any document where (declared value bytes) ×
/// (references) could exceed [`MAX_ENTITY_EXPANSION`]. Ordinary SVGs declare no entities,
/// or a few short namespace names (Illustrator), and pass.
pub(crate) fn entities_are_bounded(text: &str) -> bool {
    let mut declared: u64 = 0;
    let mut rest = text;
    while let Some(at) = rest.find("<!ENTITY") {
        rest = rest.get(at + 8..).unwrap_or_default();
        let Some(open) = rest.find(['"', '\'']) else {
            return false;
        };
        let quote = rest.get(open..=open).unwrap_or("\"");
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(len) = after.find(quote) else {
            return false;
        };
        let value = after.get(..len).unwrap_or_default();
        if value.contains('&') || value.contains('%') {
            return false;
        }
        declared += value.len() as u64;
        rest = after.get(len..).unwrap_or_default();
    }
    if declared == 0 {
        return true;
    }
    let references = text.matches('&').count() as u64;
    declared.saturating_mul(references) <= MAX_ENTITY_EXPANSION
}

fn from_detected(f: FileFormat) -> Option<Format> {
    use FileFormat as F;
    Some(match f {
        F::JointPhotographicExpertsGroup => Format::Jpeg,
        F::PortableNetworkGraphics => Format::Png,
        F::AnimatedPortableNetworkGraphics => Format::Apng,
        F::GraphicsInterchangeFormat => Format::Gif,
        F::Webp => Format::Webp,
        F::Av1ImageFileFormat | F::Av1ImageFileFormatSequence => Format::Avif,
        F::WindowsBitmap => Format::Bmp,
        F::TagImageFileFormat => Format::Tiff,
        F::WindowsIcon => Format::Ico,
        F::JpegXl => Format::Jxl,
        F::OggOpus => Format::Opus,
        F::OggTheora | F::OggMedia => Format::OggVideo,
        F::OggVorbis | F::OggFlac | F::OggSpeex => Format::OggAudio,
        F::OggMultiplexedMedia => Format::Ogg,
        F::AppleQuicktime => Format::QuickTime,
        F::Mpeg4Part14 | F::Mpeg4Part14Video => Format::Mp4Video,
        F::Mpeg4Part14Audio => Format::Mp4Audio,
        F::AppleItunesVideo => Format::M4v,
        F::AppleItunesAudio => Format::M4a,
        F::ThirdGenerationPartnershipProject => Format::ThreeGpp,
        F::ThirdGenerationPartnershipProject2 => Format::ThreeGpp2,
        F::Mpeg12Video => Format::MpegVideo,
        F::Mpeg12AudioLayer3 => Format::Mp3,
        F::Webm => Format::WebmVideo,
        F::AdvancedAudioCoding => Format::Aac,
        F::FreeLosslessAudioCodec => Format::Flac,
        F::WaveformAudio => Format::Wav,
        _ => return None,
    })
}

/// A HEIF file (ISO BMFF `ftyp` with a HEIF brand) by the codec its brands name: AVIF
/// (`avif`, `avis`) or HEVC (`heic`, `heix`, `hevc`, `hevx`, `heim`, `heis`). The detector
/// decides from the major brand alone and calls a `mif1` file with AVIF inside "HEIF".
/// Hand-written: it is the `ftyp` box's brand list, a few lines.
fn heif_brand(head: &[u8]) -> Option<Format> {
    if head.get(4..8) != Some(b"ftyp") {
        return None;
    }
    let size = head
        .get(..4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_be_bytes)?;
    let ftyp = head.get(8..(size as usize).min(head.len()))?;
    // The major brand, the minor version (skipped), then the compatible brands.
    let brands = ftyp
        .get(..4)
        .into_iter()
        .chain(ftyp.get(8..).unwrap_or_default().chunks_exact(4));
    let mut heif = None;
    for brand in brands {
        match brand {
            b"avif" | b"avis" => return Some(Format::Avif),
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" => heif = Some(Format::Heic),
            _ => {}
        }
    }
    heif
}

/// The detector recognises APNG only when `acTL` directly follows `IHDR`; the PNG spec
/// allows other chunks (gAMA, iCCP, …) in between, so walk the chunk list up to the first
/// `IDAT`. Hand-written because it is a dozen lines over the PNG chunk layout
/// (length, type, data, CRC) and no detector crate does it.
fn refine_png(format: Format, head: &[u8]) -> Format {
    if format != Format::Png {
        return format;
    }
    for (kind, _) in png_chunks(head) {
        match kind {
            b"acTL" => return Format::Apng,
            b"IDAT" | b"IEND" => return Format::Png,
            _ => {}
        }
    }
    Format::Png
}

/// The chunks of a PNG, after its signature: (type, data). The data is cut short where the
/// bytes end; the walk stops at the first header that does not fit or overflows.
pub(crate) fn png_chunks(png: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut pos = Some(8usize); // after the signature
    std::iter::from_fn(move || {
        let at = pos?;
        let header = png.get(at..at.checked_add(8)?)?;
        let (len_bytes, kind) = header.split_at(4);
        let len = u32::from_be_bytes(<[u8; 4]>::try_from(len_bytes).ok()?) as usize;
        let data = png.get(at + 8..).unwrap_or_default();
        let data = data.get(..len.min(data.len())).unwrap_or_default();
        // length + type + data + crc
        pos = at.checked_add(12).and_then(|p| p.checked_add(len));
        Some((kind, data))
    })
}

/// `BM` followed, at offset 14, by one of the DIB header sizes BMP readers accept (the
/// detector knows only the Windows ones, not OS/2 1.x and 2.x headers).
fn is_bmp(head: &[u8]) -> bool {
    let Some(&[b'B', b'M']) = head.get(..2) else {
        return false;
    };
    let Some(size) = head
        .get(14..18)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
    else {
        return false;
    };
    matches!(size, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124)
}

/// Could this be XML or SVG text? Skips a UTF-8 BOM and leading white space and looks for
/// `<`. Cheap, so that binary junk never reaches the XML parser.
fn looks_like_xml_text(head: &[u8]) -> bool {
    let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'<')
}

fn sniff_svg(head: &[u8], complete: bool) -> Sniffed {
    if head.len() > SVG_SNIFF_LIMIT {
        // Larger than the limit: by the spec's rule, not an SVG.
        return Sniffed::Known(Format::Other(Foreign(FileFormat::ExtensibleMarkupLanguage)));
    }
    if !complete {
        return Sniffed::NeedMore;
    }
    if is_svg_document(head) {
        Sniffed::Known(Format::Svg)
    } else {
        Sniffed::Known(Format::Other(Foreign(FileFormat::PlainText)))
    }
}

/// A complete document is an SVG when it parses as XML and its root element is `svg` (in the
/// SVG namespace, or with none, as browsers accept). roxmltree refuses external entities,
/// and [`entities_are_bounded`] refuses internal ones that could expand to a huge text
/// before the parser sees them, so hostile XML cannot make this step expensive.
fn is_svg_document(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)) else {
        return false;
    };
    if !entities_are_bounded(text) {
        return false;
    }
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        nodes_limit: 200_000,
        ..roxmltree::ParsingOptions::default()
    };
    match roxmltree::Document::parse_with_options(text, options) {
        Ok(doc) => {
            let root = doc.root_element();
            root.tag_name().name() == "svg"
                && matches!(
                    root.tag_name().namespace(),
                    None | Some("http://www.w3.org/2000/svg")
                )
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_bombs_are_not_svgs_but_plain_entities_are() {
        let big = "A".repeat(50_000);
        let refs = "&a;".repeat(2_000);
        let quadratic = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE svg [<!ENTITY a \"{big}\">]>\
             <svg xmlns=\"http://www.w3.org/2000/svg\"><desc>{refs}</desc></svg>"
        );
        assert!(!entities_are_bounded(&quadratic));
        assert_eq!(
            sniff(quadratic.as_bytes(), true),
            Sniffed::Known(Format::Other(Foreign(FileFormat::PlainText)))
        );
        let laughs = "<!DOCTYPE svg [<!ENTITY a \"lol\"><!ENTITY b \"&a;&a;&a;&a;\">]>\
             <svg xmlns=\"http://www.w3.org/2000/svg\"><desc>&b;</desc></svg>";
        assert!(!entities_are_bounded(laughs));
        let illustrator = "<!DOCTYPE svg [<!ENTITY ns_svg \"http://www.w3.org/2000/svg\">]>\
             <svg xmlns=\"&ns_svg;\" width=\"4\" height=\"4\"/>";
        assert!(entities_are_bounded(illustrator));
        assert_eq!(
            sniff(illustrator.as_bytes(), true),
            Sniffed::Known(Format::Svg)
        );
    }

    fn png_with_chunks(chunks: &[&[u8; 4]]) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        // IHDR with 13 bytes of data, then the named empty chunks.
        v.extend_from_slice(&13u32.to_be_bytes());
        v.extend_from_slice(b"IHDR");
        v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0]);
        v.extend_from_slice(&[0; 4]);
        for c in chunks {
            v.extend_from_slice(&0u32.to_be_bytes());
            v.extend_from_slice(*c);
            v.extend_from_slice(&[0; 4]);
        }
        v
    }

    #[test]
    fn apng_found_after_other_chunks_but_not_after_idat() {
        let late = png_with_chunks(&[b"gAMA", b"acTL", b"IDAT"]);
        assert_eq!(sniff(&late, true), Sniffed::Known(Format::Apng));
        let after_idat = png_with_chunks(&[b"IDAT", b"acTL"]);
        assert_eq!(sniff(&after_idat, true), Sniffed::Known(Format::Png));
        let plain = png_with_chunks(&[b"IDAT", b"IEND"]);
        assert_eq!(sniff(&plain, true), Sniffed::Known(Format::Png));
    }

    #[test]
    fn svg_needs_the_whole_text_and_a_svg_root() {
        let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>"#;
        assert_eq!(sniff(svg, false), Sniffed::NeedMore);
        assert_eq!(sniff(svg, true), Sniffed::Known(Format::Svg));
        let html = b"<!doctype html><html><body>hi</body></html>";
        assert!(matches!(
            sniff(html, true),
            Sniffed::Known(Format::Other(_))
        ));
        let other_ns = br#"<svg xmlns="http://example.com/not-svg"/>"#;
        assert!(matches!(
            sniff(other_ns, true),
            Sniffed::Known(Format::Other(_))
        ));
    }

    #[test]
    fn svg_over_the_limit_is_not_svg() {
        let mut big = br#"<svg xmlns="http://www.w3.org/2000/svg">"#.to_vec();
        big.resize(SVG_SNIFF_LIMIT + 10, b' ');
        big.extend_from_slice(b"</svg>");
        assert!(matches!(
            sniff(&big, true),
            Sniffed::Known(Format::Other(_))
        ));
        assert!(matches!(
            sniff(&big, false),
            Sniffed::Known(Format::Other(_))
        ));
    }

    #[test]
    fn table_matches_the_spec_for_common_types() {
        let cases: &[(&[u8], Format, &str)] = &[
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF\0", Format::Jpeg, "image/jpeg"),
            (b"GIF89a\x01\0\x01\0\0\0\0", Format::Gif, "image/gif"),
            (b"RIFF\0\0\0\0WEBPVP8 ", Format::Webp, "image/webp"),
            (b"fLaC\0\0\0\x22", Format::Flac, "audio/flac"),
        ];
        for (bytes, want, mime) in cases {
            assert_eq!(sniff(bytes, true), Sniffed::Known(*want), "{mime}");
            assert_eq!(want.mime(), *mime);
            assert!(want.capabilities().passthrough, "{mime} is browser-safe");
        }
        let os2_bmp = b"BM\xa8\x2f\x01\x00\x00\x00\x00\x00\x4a\x00\x00\x00\x0c\x00\x00\x00";
        assert_eq!(
            sniff(os2_bmp, true),
            Sniffed::Known(Format::Bmp),
            "OS/2 core header"
        );
        assert_eq!(sniff(b"", true), Sniffed::Known(Format::Empty));
        assert!(!Format::Empty.capabilities().passthrough);
        assert!(!Format::Svg.capabilities().passthrough);
        assert!(Format::Svg.capabilities().transform);
        let exe = sniff(b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xFF\xFF", true);
        assert!(
            matches!(exe, Sniffed::Known(Format::Other(_))),
            "an executable is not media: {exe:?}"
        );
    }
}
