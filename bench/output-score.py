#!/usr/bin/env python3
"""Helper of bench/run.sh: how good an output picture is, by an independent decoder.

    output-score.py SOURCE OUTPUT   → "<frames>\t<mean SSIM>\t<lowest frame SSIM>"

Every frame of OUTPUT (decoded by Pillow, i.e. libwebp) is compared with the same frame of
SOURCE downscaled to the output's size with Pillow's Lanczos filter (no reducing gap: the
high-quality downscale the issue asks the score to be against), both composited over
mid-grey, by SSIM over R, G and B (scikit-image, data range 255). The same score for ours
and the reference, so their outputs are compared on one scale.
"""
import sys

import numpy as np
from PIL import Image, ImageSequence
from skimage.metrics import structural_similarity


def frames(path):
    return [f.convert("RGBA").copy() for f in ImageSequence.Iterator(Image.open(path))]


def on_grey(im):
    bg = Image.new("RGBA", im.size, (128, 128, 128, 255))
    bg.alpha_composite(im)
    return np.asarray(bg.convert("RGB"))


source, output = frames(sys.argv[1]), frames(sys.argv[2])
if len(source) != len(output):
    sys.exit(f"{sys.argv[2]}: {len(output)} frames, the source has {len(source)}")
size = output[0].size
scores = [
    structural_similarity(on_grey(s.resize(size, Image.LANCZOS, reducing_gap=None)),
                          on_grey(o), channel_axis=2, data_range=255)
    for s, o in zip(source, output)
]
print(f"{len(output)}\t{np.mean(scores):.4f}\t{np.min(scores):.4f}")
