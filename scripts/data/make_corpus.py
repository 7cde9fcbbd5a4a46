#!/usr/bin/env python3
"""Synthetic image-caption corpus for the data-loader benchmark (scripts/bench-data.sh), in the two layouts
open_clip trains from.

    python3 scripts/data/make_corpus.py --n 3000 --out /tmp/cloob-corpus --seed 0

Needs Python 3 with Pillow and numpy only. Each image is photo-like: a smooth two-colour gradient with soft
low-frequency colour blobs, a few filled shapes with slightly blurred edges, and multi-scale texture whose
strength varies over the picture (smooth "sky" next to busy "foliage"), plus fine sensor grain. Sides are drawn
uniformly from --sizes (so aspect ratios from about 0.6 to 1.6), and each image's texture strength is tuned by a
short search until its encoded size lands near a per-image target inside --kb (the target grows with the pixel
count, jittered), so file sizes spread over that range like a resized web-photo corpus. Captions come from a few
templates x objects x colours x places, so nearly all are distinct.

Writes, for keys 000000000, 000000001, ... (the same pairs in both layouts, the same image bytes):
  OUT/images/<key>.jpg (or .webp)   and OUT/train.csv: open_clip's CSV layout, tab-separated, header
                                    `filepath<TAB>title`, paths relative to the CSV's folder;
  OUT/shards/00000.tar, ...         img2dataset's webdataset layout, --shard-size samples per shard: per sample
                                    <key>.jpg, <key>.json ({"key", "caption", "url", "width", "height",
                                    "status": "success"}) and <key>.txt (the caption). Members are written in
                                    webdataset TarWriter's order, which img2dataset uses: sorted by extension
                                    (so a .webp sample comes after its .json and .txt); mode 0444, owner
                                    bigdata, with a fixed mtime so the tars are byte-reproducible;
  OUT/shards/00000_stats.json, ...  img2dataset's per-shard stats (count, successes, failures, status_dict).

Output is deterministic for a given --seed (and Pillow build). Prints one summary line: count, side range in
px, file-size range in KB and the total in MB.
"""
import argparse
import io
import json
import math
import os
import re
import tarfile
from multiprocessing import Pool

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

TEMPLATES = [
    "a photo of a {colour} {obj} {place}",
    "{colour} {obj} {place} on a {weather} day",
    "close-up of a {colour} {obj} {place}",
    "an old {obj} painted {colour}, {place}",
    "a {colour} {obj} next to a {obj2} {place}",
    "stock photo: {obj} in {colour} {place}, {weather} light",
    "my {colour} {obj} {place}",
    "two {colour} {obj}s {place} at {time}",
]
OBJECTS = [
    "bicycle", "car", "dog", "cat", "chair", "table", "lamp", "boat", "house", "tree", "flower", "vase",
    "umbrella", "backpack", "guitar", "teapot", "bus", "train", "kite", "horse", "bird", "bench", "door",
    "window", "mug", "shoe", "hat", "clock", "book", "sofa", "tent", "truck", "bridge", "fence", "balloon",
    "scooter", "basket", "mailbox", "lighthouse", "tractor",
]
COLOURS = [
    "red", "blue", "green", "yellow", "orange", "purple", "pink", "white", "black", "grey", "brown",
    "turquoise", "beige", "navy", "golden", "silver",
]
PLACES = [
    "on the beach", "in the park", "in a kitchen", "on a city street", "in the snow", "by the lake",
    "in a forest", "on a wooden floor", "in front of a brick wall", "at the market", "in a garden",
    "on a mountain trail", "in the living room", "at the train station", "near the harbour", "in a field",
    "on a rooftop", "in the desert", "under a bridge", "in a museum", "on a farm", "at a campsite",
    "in a parking lot", "on a balcony", "in the rain", "at the airport", "in a classroom", "on a lawn",
    "at the zoo", "in an alley",
]
WEATHERS = ["sunny", "cloudy", "foggy", "rainy", "bright", "grey", "windy"]
TIMES = ["dawn", "noon", "dusk", "night", "sunset"]

TAR_MTIME = 1_700_000_000  # fixed, so that the tars are byte-identical between runs


def caption(rng):
    t = TEMPLATES[rng.integers(len(TEMPLATES))]
    pick = lambda xs: xs[rng.integers(len(xs))]
    text = t.format(colour=pick(COLOURS), obj=pick(OBJECTS), obj2=pick(OBJECTS), place=pick(PLACES),
                    weather=pick(WEATHERS), time=pick(TIMES))
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def upsampled_noise(rng, h, w, cells_h, cells_w, channels):
    """Gaussian noise on a cells_h x cells_w grid, bicubically upsampled to h x w (float32, h x w x channels)."""
    out = np.empty((h, w, channels), np.float32)
    for c in range(channels):
        small = Image.fromarray(rng.standard_normal((cells_h, cells_w)).astype(np.float32))
        out[..., c] = np.asarray(small.resize((w, h), Image.BICUBIC))
    return out


def base_picture(rng, h, w):
    """The smooth part: gradient, colour blobs and soft-edged shapes, as uint8 RGB."""
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    angle = rng.uniform(0, 2 * math.pi)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (x * math.cos(angle) + y * math.sin(angle))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    img += 25 * upsampled_noise(rng, h, w, 3, 3, 3)
    pic = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pic)
    for _ in range(rng.integers(3, 9)):
        fill = tuple(int(v) for v in rng.uniform(0, 255, 3))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.04, 0.3) * w, rng.uniform(0.04, 0.3) * h
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
        kind = rng.integers(4)
        if kind == 0:
            draw.ellipse(box, fill=fill)
        elif kind == 1:
            draw.rectangle(box, fill=fill)
        elif kind == 2:
            pts = [(cx + rx * math.cos(a), cy + ry * math.sin(a))
                   for a in np.sort(rng.uniform(0, 2 * math.pi, rng.integers(3, 7)))]
            draw.polygon(pts, fill=fill)
        else:
            draw.line([(cx - rx, cy - ry), (cx + rx, cy + ry)], fill=fill, width=int(rng.integers(2, 12)))
    return np.asarray(pic.filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.5))), np.float32)


def texture(rng, h, w):
    """Unit-scale texture: octaves from coarse to pixel-level, mostly luminance with some chroma, weighted by a
    smooth mask so that some regions stay nearly flat."""
    tex = np.zeros((h, w, 3), np.float32)
    for cells, weight in ((16, 0.6), (48, 0.8), (w // 6, 1.0), (w // 2, 0.9)):
        cw, ch = max(cells, 2), max(int(cells * h / w), 2)
        lum = upsampled_noise(rng, h, w, ch, cw, 1)
        chroma = upsampled_noise(rng, h, w, ch, cw, 3)
        tex += weight * (lum + 0.35 * chroma)
    tex += 0.5 * rng.standard_normal((h, w, 1)).astype(np.float32)
    mask = np.clip(0.55 + 0.5 * upsampled_noise(rng, h, w, 3, 3, 1), 0.08, 1.0)
    return tex * mask


def encode(pixels, fmt, quality):
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def make_sample(job):
    """One image and caption: returns (key, ext, bytes, caption, width, height)."""
    index, seed, sizes, kb, quality, webp_fraction = job
    rng = np.random.default_rng([seed, index])
    w, h = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
    text = caption(rng)
    fmt, ext = ("WEBP", "webp") if rng.random() < webp_fraction else ("JPEG", "jpg")
    # Target size: log-interpolated over --kb by pixel count, jittered, kept 4 % inside the range.
    area_frac = (w * h - sizes[0] ** 2) / max(sizes[1] ** 2 - sizes[0] ** 2, 1)
    frac = float(np.clip(area_frac + rng.normal(0, 0.18), 0, 1))
    log_target = math.log(kb[0] * 1.04 * 1024) + frac * math.log(kb[1] / kb[0] / 1.04**2)
    base, tex = base_picture(rng, h, w), texture(rng, h, w)
    # Texture strength search: secant steps on log(size) against log(amplitude) (the size grows about as
    # amplitude^0.5, the first step's guess), until within 3 % of the target; 2-4 encodes per image.
    log_amp, last, slope = math.log(8.0), None, 0.5
    for _ in range(12):
        data = encode(np.clip(base + math.exp(log_amp) * tex, 0, 255).astype(np.uint8), fmt, quality)
        log_size = math.log(len(data))
        if abs(log_size - log_target) < 0.03:
            break
        if last is not None and abs(log_amp - last[0]) > 1e-6:
            slope = min(max((log_size - last[1]) / (log_amp - last[0]), 0.05), 2.0)
        last = (log_amp, log_size)
        log_amp = min(max(log_amp + (log_target - log_size) / slope, math.log(0.05)), math.log(1000.0))
    return f"{index:09d}", ext, data, text, w, h


def tar_add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o444
    info.uname = info.gname = "bigdata"
    tar.addfile(info, io.BytesIO(data))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--webp-fraction", type=float, default=0.0)
    ap.add_argument("--sizes", type=int, nargs=2, default=(400, 640), metavar=("MIN", "MAX"))
    ap.add_argument("--kb", type=float, nargs=2, default=(29, 73), metavar=("MIN", "MAX"),
                    help="file-size range the texture search aims into")
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--processes", type=int, default=os.cpu_count())
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out, "images"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "shards"), exist_ok=True)
    jobs = [(i, a.seed, a.sizes, a.kb, a.quality, a.webp_fraction) for i in range(a.n)]
    sizes_px, sizes_b = [], []
    with Pool(a.processes) as pool, open(os.path.join(a.out, "train.csv"), "w") as csv:
        csv.write("filepath\ttitle\n")
        tar = None
        for i, (key, ext, data, text, w, h) in enumerate(pool.imap(make_sample, jobs, chunksize=8)):
            with open(os.path.join(a.out, "images", f"{key}.{ext}"), "wb") as f:
                f.write(data)
            csv.write(f"images/{key}.{ext}\t{text}\n")
            if i % a.shard_size == 0:
                tar = tarfile.open(os.path.join(a.out, "shards", f"{i // a.shard_size:05d}.tar"), "w")
            meta = {"key": key, "caption": text, "url": f"https://images.example.com/{key}.{ext}",
                    "width": w, "height": h, "status": "success"}
            members = {ext: data, "json": json.dumps(meta).encode(), "txt": text.encode()}
            for member_ext in sorted(members):
                tar_add(tar, f"{key}.{member_ext}", members[member_ext])
            if i % a.shard_size == a.shard_size - 1 or i == a.n - 1:
                tar.close()
                count = i % a.shard_size + 1
                stats = {"count": count, "successes": count, "failed_to_download": 0, "failed_to_resize": 0,
                         "status_dict": {"success": count}}
                with open(os.path.join(a.out, "shards", f"{i // a.shard_size:05d}_stats.json"), "w") as f:
                    json.dump(stats, f, indent=4)
            sizes_px.extend((w, h))
            sizes_b.append(len(data))
    print(f"{a.n} images, sides {min(sizes_px)}-{max(sizes_px)} px, files {min(sizes_b) / 1024:.1f}-"
          f"{max(sizes_b) / 1024:.1f} KB (median {np.median(sizes_b) / 1024:.1f}), total "
          f"{sum(sizes_b) / 2**20:.1f} MB, {math.ceil(a.n / a.shard_size)} shards in {a.out}")


if __name__ == "__main__":
    main()
