//! The in-memory frame passed between decode, transform and encode: 8-bit RGB or RGBA,
//! tightly packed, in the channel layout the source had (no needless RGB → RGBA copies).
//!
//! Input and output: [`Frame`]s (plain data). Uses nothing of ours.

/// Channel layout of a [`Frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    Rgb,
    Rgba,
}

impl Channels {
    pub fn count(self) -> usize {
        match self {
            Channels::Rgb => 3,
            Channels::Rgba => 4,
        }
    }
}

/// One decoded image or animation frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub channels: Channels,
    /// `width * height * channels` bytes, rows top to bottom.
    pub data: Vec<u8>,
    /// How long this frame shows, for animations.
    pub delay_ms: u32,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Frame({}×{} {:?}, {} ms)",
            self.width, self.height, self.channels, self.delay_ms
        )
    }
}

impl Frame {
    /// An 8-bit RGB picture of `width`×`height` (a decoded video frame).
    pub fn rgb(width: u32, height: u32, data: Vec<u8>) -> Frame {
        Frame {
            width,
            height,
            channels: Channels::Rgb,
            data,
            delay_ms: 0,
        }
    }

    /// From an `image` crate picture: RGBA when it has alpha, RGB otherwise; any bit depth,
    /// palette or grey input becomes 8-bit RGB(A).
    pub fn from_dynamic(img: image::DynamicImage) -> Frame {
        let (width, height) = (img.width(), img.height());
        if img.color().has_alpha() {
            Frame {
                width,
                height,
                channels: Channels::Rgba,
                data: img.into_rgba8().into_raw(),
                delay_ms: 0,
            }
        } else {
            Frame {
                width,
                height,
                channels: Channels::Rgb,
                data: img.into_rgb8().into_raw(),
                delay_ms: 0,
            }
        }
    }

    /// Back into an `image` picture (for orientation, which `image` implements).
    pub fn into_dynamic(self) -> Option<image::DynamicImage> {
        match self.channels {
            Channels::Rgb => image::RgbImage::from_raw(self.width, self.height, self.data)
                .map(image::DynamicImage::ImageRgb8),
            Channels::Rgba => image::RgbaImage::from_raw(self.width, self.height, self.data)
                .map(image::DynamicImage::ImageRgba8),
        }
    }

    /// Whether every pixel is fully opaque (always true without an alpha channel).
    pub fn is_opaque(&self) -> bool {
        match self.channels {
            Channels::Rgb => true,
            Channels::Rgba => self.data.chunks_exact(4).all(|p| p.get(3) == Some(&255)),
        }
    }

    /// RGB: an RGBA frame composited over `background`; an RGB frame unchanged.
    pub fn flattened(self, background: [u8; 3]) -> Frame {
        if self.channels == Channels::Rgb {
            return self;
        }
        let mut data = Vec::with_capacity(self.data.len() / 4 * 3);
        for p in self.data.chunks_exact(4) {
            let (rgb, a) = p.split_at(3);
            let a = u16::from(a.first().copied().unwrap_or(255));
            for (c, bg) in rgb.iter().zip(background) {
                // Straight alpha: c·a + bg·(255 − a), rounded.
                let v = (u16::from(*c) * a + u16::from(bg) * (255 - a) + 127) / 255;
                data.push(v as u8);
            }
        }
        Frame {
            channels: Channels::Rgb,
            data,
            ..self
        }
    }

    /// The frame placed at `offset` on a `canvas` filled with `background` (RGBA; the
    /// result keeps alpha when either the frame or the background has any).
    pub fn padded(self, canvas: (u32, u32), offset: (u32, u32), background: [u8; 4]) -> Frame {
        if canvas == (self.width, self.height) {
            return self;
        }
        let channels = if self.channels == Channels::Rgba || background[3] < 255 {
            Channels::Rgba
        } else {
            Channels::Rgb
        };
        let n = channels.count();
        let bg = background.get(..n).unwrap_or(&background);
        let (cw, ch) = (canvas.0 as usize, canvas.1 as usize);
        let mut data = bg.repeat(cw * ch);
        let (ox, oy) = (offset.0 as usize, offset.1 as usize);
        let src_n = self.channels.count();
        let (w, h) = (self.width as usize, self.height as usize);
        for y in 0..h.min(ch.saturating_sub(oy)) {
            let row = self
                .data
                .get(y * w * src_n..(y + 1) * w * src_n)
                .unwrap_or_default();
            let start = ((oy + y) * cw + ox) * n;
            let out = data.get_mut(start..start + w.min(cw.saturating_sub(ox)) * n);
            let Some(out) = out else { continue };
            for (dst, src) in out.chunks_exact_mut(n).zip(row.chunks_exact(src_n)) {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = *s;
                }
                if n == 4 && src_n == 3 {
                    if let Some(a) = dst.get_mut(3) {
                        *a = 255;
                    }
                }
            }
        }
        Frame {
            width: canvas.0,
            height: canvas.1,
            channels,
            data,
            delay_ms: self.delay_ms,
        }
    }

    /// Drops an alpha channel that is opaque everywhere (smaller PNG and AVIF files).
    pub fn without_opaque_alpha(self) -> Frame {
        if self.channels == Channels::Rgba && self.is_opaque() {
            self.flattened([0, 0, 0])
        } else {
            self
        }
    }
}
