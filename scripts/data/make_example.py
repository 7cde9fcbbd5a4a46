#!/usr/bin/env python3
"""The 20-image example corpus of the README's "Train on your own images" walk-through, in data/example/.

    python3 scripts/data/make_example.py [--out data/example]

Needs Python 3 with Pillow only. Writes 20 JPEGs of 64x64 px (a few KB each): a filled shape (circle, square,
triangle, diamond) of one of five colours on a light, slightly noisy background, placed left, centre or right;
and three text files:
  train.csv    open_clip's CSV layout (tab-separated, header `filepath<TAB>title`, paths relative to the CSV's
               folder), one caption per image ("a red circle on the left", ...);
  labels.csv   the same images with each image's colour in the `title` column (for `cloob-eval --classes`);
  classes.txt  the five colour names, one a line.
Deterministic for a given --seed (and Pillow build).
"""
import argparse
import os
import random

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 50), "blue": (40, 80, 230), "yellow": (235, 215, 30),
           "purple": (150, 40, 200)}
SHAPES = ["circle", "square", "triangle", "diamond"]
PLACES = {"on the left": 16, "in the centre": 32, "on the right": 48}


def draw(shape, rgb, cx, cy, r, rng):
    bg = tuple(rng.randint(200, 245) for _ in range(3))
    img = Image.new("RGB", (64, 64), bg)
    px = img.load()
    for y in range(64):
        for x in range(64):
            n = rng.randint(-8, 8)
            px[x, y] = tuple(max(0, min(255, c + n)) for c in bg)
    d = ImageDraw.Draw(img)
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        d.ellipse(box, fill=rgb)
    elif shape == "square":
        d.rectangle(box, fill=rgb)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=rgb)
    else:
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=rgb)
    return img


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/example")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(os.path.join(a.out, "images"), exist_ok=True)
    train, labels = ["filepath\ttitle"], ["filepath\ttitle"]
    colours = list(COLOURS)
    for i in range(20):
        colour, shape = colours[i % 5], SHAPES[(i // 5 + i) % 4]
        place = list(PLACES)[rng.randrange(3)]
        r = rng.randint(9, 14)
        img = draw(shape, COLOURS[colour], PLACES[place] + rng.randint(-2, 2), 32 + rng.randint(-12, 12), r, rng)
        rel = f"images/{i:02d}.jpg"
        img.save(os.path.join(a.out, rel), quality=85)
        train.append(f"{rel}\ta {colour} {shape} {place}")
        labels.append(f"{rel}\t{colour}")
    for name, lines in [("train.csv", train), ("labels.csv", labels), ("classes.txt", colours)]:
        with open(os.path.join(a.out, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    size = sum(os.path.getsize(os.path.join(a.out, f"images/{i:02d}.jpg")) for i in range(20))
    print(f"20 images, {size / 1024:.1f} KB in all, in {a.out}")


if __name__ == "__main__":
    main()
