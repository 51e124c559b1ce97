#!/usr/bin/env python3
"""Deterministic benchmark inputs (needs Pillow). Writes into the directory given:
  photo12_baseline.jpg     4000×3000 photo-like JPEG, q90, baseline (4:2:0)
  photo12_progressive.jpg  the same pixels, progressive
  photo2_baseline.jpg      1600×1200, q90, baseline
  rgba500.png              500×500 RGBA with soft alpha
  anim30.gif               30 frames, 320×320
The photo is the corpus' recurser Landscape_1.jpg upscaled with Lanczos plus seeded grain,
so it has realistic entropy; everything is seeded, so reruns give identical files."""
import os, random, sys
from PIL import Image, ImageDraw, ImageFilter

out = sys.argv[1]
corpus = sys.argv[2]
os.makedirs(out, exist_ok=True)
rng = random.Random(20261121)

src = Image.open(os.path.join(corpus, "jpeg/exif-orientation-recurser/Landscape_1.jpg")).convert("RGB")
photo = src.resize((4000, 3000), Image.LANCZOS)
noise = Image.effect_noise((4000, 3000), 24).convert("RGB")
photo = Image.blend(photo, noise, 0.08)
photo.save(os.path.join(out, "photo12_baseline.jpg"), quality=90, subsampling=2)
photo.save(os.path.join(out, "photo12_progressive.jpg"), quality=90, subsampling=2, progressive=True)
photo.resize((1600, 1200), Image.LANCZOS).save(os.path.join(out, "photo2_baseline.jpg"), quality=90)

rgba = Image.new("RGBA", (500, 500), (0, 0, 0, 0))
d = ImageDraw.Draw(rgba)
for _ in range(60):
    x, y, r = rng.randrange(500), rng.randrange(500), rng.randrange(10, 90)
    d.ellipse((x - r, y - r, x + r, y + r), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256), rng.randrange(80, 256)))
rgba = rgba.filter(ImageFilter.GaussianBlur(2))
rgba.save(os.path.join(out, "rgba500.png"))

frames = []
for i in range(30):
    f = Image.new("RGB", (320, 320), (20, 20, 40))
    d = ImageDraw.Draw(f)
    for k in range(12):
        a = (i * 12 + k * 30) % 320
        d.ellipse((a - 20, (k * 27) % 320 - 20, a + 20, (k * 27) % 320 + 20), fill=((k * 20) % 256, (i * 8) % 256, 200))
    frames.append(f.convert("P", palette=Image.ADAPTIVE, colors=64))
frames[0].save(os.path.join(out, "anim30.gif"), save_all=True, append_images=frames[1:], duration=40, loop=0)
print("inputs written to", out)
