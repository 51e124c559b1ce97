//! The in-memory frame passed between decode, transform and encode: 8-bit RGB or RGBA,
//! tightly packed, in the channel layout the source had (no needless RGB → RGBA copies).

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
}
