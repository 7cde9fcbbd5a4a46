#!/usr/bin/env python3
"""Reference outputs and timings for `cloob::data::transform` against torchvision's PIL backend.

Writes into OUT (default /tmp/transform_parity):
  img_I.png / img_I.jpg  photo-like test pictures (smooth gradients + noise + hard edges), 400-640 px a side;
                         the JPEGs at quality 90 (PIL's default 4:2:0 subsampling)
  jpgdec_I.png           PIL's (libjpeg-turbo's) decoding of img_I.jpg, to compare decoders
  eval_I.png             Resize(S, BICUBIC) + CenterCrop(S) of img_I.png (open_clip's eval transform)
  crop_I_K.png           F.resized_crop(img_I.png, top, left, h, w, [S, S], BICUBIC) on the boxes of the manifest
  manifest.txt           one line per reference: `eval SRC REF` or `crop SRC TOP LEFT H W REF`
  pil_timing.txt         PIL's ms/image on the JPEGs, one thread

Then the Rust side, `cargo run --release --example transform_parity -- OUT` (examples/transform_parity.rs,
written against the scratch crate `transform_scratch::data::transform`; in cloob, `cloob::data::transform`),
runs ours on the same inputs and boxes, prints the max / mean absolute differences in u8 levels, and times
the old and new Rust paths on the same JPEGs.

Usage: python scripts/data/transform_parity.py [--out DIR] [--size 224] [--count 20] [--rounds 5] [--timing-only]

Pillow >= 13 runs the vertical pass first when the height shrinks by more than twice as many pixels as the
width; earlier versions always run the horizontal pass first. Ours follows Pillow 13; against Pillow <= 12
the boxes concerned (tall ones) differ by up to ~10 levels at a few pixels (the first pass rounds to u8).
"""

import argparse
import io
import os
import random
import time

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def photo_like(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Smooth colour gradients, a few hard-edged shapes and stripes, and sensor-like noise: `[h, w, 3]` u8."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.empty((h, w, 3))
    for c in range(3):
        fx, fy, ph = rng.uniform(0.002, 0.02), rng.uniform(0.002, 0.02), rng.uniform(0, 6.3)
        img[..., c] = 128 + 90 * np.sin(fx * x + ph) * np.cos(fy * y - ph) + 30 * (x / w - y / h)
    for _ in range(rng.integers(3, 8)):  # rectangles and discs with hard edges
        colour = rng.uniform(0, 255, 3)
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, min(w, h) / 3)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r if rng.random() < 0.5 else (abs(x - cx) < r) & (abs(y - cy) < r / 2)
        img[mask] = colour
    band = (y > h * 0.7) & (y < h * 0.8)  # fine stripes: the antialiasing's business
    img[band] = np.where(((x[band] // 2) % 2 == 0)[:, None], 230.0, 25.0)
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/transform_parity")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds over all JPEGs (the best is kept)")
    ap.add_argument("--timing-only", action="store_true", help="only re-time PIL on the JPEGs already in OUT")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    pyrng = random.Random(0)
    torch.manual_seed(0)
    S = args.size
    lines = []
    rrc = T.RandomResizedCrop(S, scale=(0.9, 1.0), interpolation=T.InterpolationMode.BICUBIC)
    for i in range(0 if args.timing_only else args.count):
        w, h = int(rng.integers(400, 641)), int(rng.integers(400, 641))
        im = Image.fromarray(photo_like(rng, w, h))
        im.save(f"{args.out}/img_{i}.png")
        im.save(f"{args.out}/img_{i}.jpg", quality=90)
        Image.open(f"{args.out}/img_{i}.jpg").convert("RGB").save(f"{args.out}/jpgdec_{i}.png")
        ev = T.CenterCrop(S)(T.Resize(S, interpolation=T.InterpolationMode.BICUBIC)(im))
        ev.save(f"{args.out}/eval_{i}.png")
        lines.append(f"eval img_{i}.png eval_{i}.png")
        # RandomResizedCrop's own boxes, a small one (upsampling), a sliver, the whole image and a tall box.
        boxes = [rrc.get_params(im, rrc.scale, rrc.ratio) for _ in range(3)]
        sw, sh = pyrng.randint(60, 200), pyrng.randint(60, 200)
        boxes.append((pyrng.randint(0, h - sh), pyrng.randint(0, w - sw), sh, sw))
        boxes.append((pyrng.randint(0, h - 300), pyrng.randint(0, w - 7), 300, 7))
        boxes.append((0, 0, h, w))
        tw = pyrng.randint(240, 300)  # a tall box: Pillow >= 13 resamples it vertically first
        boxes.append((0, pyrng.randint(0, w - tw), h, tw))
        for k, (top, left, bh, bw) in enumerate(boxes):
            out = F.resized_crop(im, top, left, bh, bw, [S, S], T.InterpolationMode.BICUBIC, antialias=True)
            out.save(f"{args.out}/crop_{i}_{k}.png")
            lines.append(f"crop img_{i}.png {top} {left} {bh} {bw} crop_{i}_{k}.png")
    if not args.timing_only:
        with open(f"{args.out}/manifest.txt", "w") as f:
            f.write("\n".join(lines) + "\n")

    # Timing on the JPEGs, one thread: decode, crop + resize (train and eval), ToTensor + Normalize.
    blobs = [open(f"{args.out}/img_{i}.jpg", "rb").read() for i in range(args.count)]
    norm = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    evalt = T.Compose([T.Resize(S, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(S)])
    best = {}
    for _ in range(args.rounds):
        t = {"decode": 0.0, "train crop+resize": 0.0, "eval resize+crop": 0.0, "normalise": 0.0}
        for b in blobs:
            t0 = time.perf_counter()
            im = Image.open(io.BytesIO(b)).convert("RGB")
            t1 = time.perf_counter()
            tr = rrc(im)
            t2 = time.perf_counter()
            evalt(im)
            t3 = time.perf_counter()
            norm(tr)
            t4 = time.perf_counter()
            for k, d in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                t[k] += d
        for k, v in t.items():
            best[k] = min(best.get(k, float("inf")), v / len(blobs) * 1e3)
    report = "".join(f"PIL {k}: {v:.3f} ms/image\n" for k, v in best.items())
    report += f"PIL decode + train + normalise: {best['decode'] + best['train crop+resize'] + best['normalise']:.3f} ms/image\n"
    with open(f"{args.out}/pil_timing.txt", "w") as f:
        f.write(report)
    print(report, end="")
    if not args.timing_only:
        print(f"wrote {len(lines)} references to {args.out}/manifest.txt")


if __name__ == "__main__":
    main()
