"""Issue 15's study: the table and the learning curves from the runs of scripts/study/run.sh.

    python3 scripts/study/summarize.py LOGS [OUT]      # OUT default docs/study

Reads LOGS/<config>-s<seed>/metrics.jsonl (the eval lines cloob-pretrain writes every --zeroshot-frequency
steps), groups the seeds of each config, and writes OUT/summary.md (final-step mean ± std per config),
OUT/summary.json, and the curves (mean over seeds, a band of ± one std): OUT/zero_shot.png (overall and per
attribute), OUT/geometry.png (effective eigenvalues and Ajne, image and text). matplotlib is needed
(`pip install matplotlib` in any venv)."""
import json, os, re, statistics as st, sys
from collections import defaultdict

logs = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else "docs/study"
os.makedirs(out, exist_ok=True)
ATTRS = ("shape", "colour", "size", "position", "background")


def metrics(e):
    s = e["sets"][0]
    zs = s["zero_shot"]
    r = {f"zs/{k}": v["top1"] for k, v in zs.items()}
    r["zs/overall"] = sum(zs[a]["top1"] for a in ATTRS) / len(ATTRS)
    emb = s["embedding"]
    for side in ("image", "text"):
        r[f"eigen99/{side}"] = emb[f"{side}_eigen_99"]
        r[f"ajne/{side}"] = emb[f"{side}_ajne"]
        r[f"uniformity/{side}"] = emb[f"{side}_uniformity"]
    r["alignment"] = emb["alignment"]
    r["retrieval/i2t_r1"] = s["retrieval"]["image_to_text"][0]
    r["retrieval/t2i_r1"] = s["retrieval"]["text_to_image"][0]
    return r


if not os.path.isdir(logs):
    sys.exit(f"summarize.py: {logs} is not a folder (run scripts/study/run.sh first)")
runs = defaultdict(list)  # config -> [(seed, {step: metrics})]
for name in sorted(os.listdir(logs)):
    f = os.path.join(logs, name, "metrics.jsonl")
    m = re.fullmatch(r"(.+)-s(\d+)", name)
    if not m or not os.path.isfile(f) or not os.path.isfile(os.path.join(logs, name, "done")):
        continue
    curve = {}
    for line in open(f):
        rec = json.loads(line)
        if "eval" in rec:
            curve[rec["step"]] = metrics(rec["eval"])
    if curve:
        runs[m.group(1)].append((int(m.group(2)), curve))

if not runs:
    sys.exit(f"summarize.py: no finished run (<config>-s<seed>/ with metrics.jsonl and done) in {logs}")
ORDER = ["cloob-b8", "cloob-b14.3", "clip", "infoloob", "infonce-hopfield", "warm-clip", "warm-cloob-b8"]
configs = [c for c in ORDER if c in runs] + sorted(c for c in runs if c not in ORDER)
KEYS = ["zs/overall", *[f"zs/{a}" for a in ATTRS], "zs/pair-seen", "zs/pair-held-out", "retrieval/i2t_r1",
        "retrieval/t2i_r1", "eigen99/image", "eigen99/text", "ajne/image", "ajne/text", "uniformity/image",
        "uniformity/text", "alignment"]
summary, lines = {}, []
last_step = {c: min(max(curve) for _, curve in runs[c]) for c in configs}
lines.append("| metric | " + " | ".join(f"{c} (n={len(runs[c])}, step {last_step[c]})" for c in configs) + " |")
lines.append("|---|" + "---|" * len(configs))
for k in KEYS:
    cells = []
    for c in configs:
        v = [curve[last_step[c]][k] for _, curve in runs[c] if k in curve[last_step[c]]]
        mean, sd = st.mean(v), (st.stdev(v) if len(v) > 1 else 0.0)
        summary.setdefault(c, {})[k] = {"mean": mean, "std": sd, "values": v}
        cells.append(f"{mean:.3f} ± {sd:.3f}" if isinstance(v[0], float) else f"{mean:.1f} ± {sd:.1f}")
    lines.append(f"| {k} | " + " | ".join(cells) + " |")
# The best overall zero-shot of each run at any evaluation (runs that peak early and fall back show here).
cells = []
for c in configs:
    v = [max(m["zs/overall"] for m in curve.values()) for _, curve in runs[c]]
    mean, sd = st.mean(v), (st.stdev(v) if len(v) > 1 else 0.0)
    summary[c]["zs/overall, best eval"] = {"mean": mean, "std": sd, "values": v}
    cells.append(f"{mean:.3f} ± {sd:.3f}")
lines.insert(3, "| zs/overall, best eval | " + " | ".join(cells) + " |")
table = "\n".join(lines)
print(table)
open(os.path.join(out, "summary.md"), "w").write(table + "\n")
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def band(ax, c, key):
    steps = sorted(set.intersection(*(set(curve) for _, curve in runs[c])))
    vals = [[curve[s][key] for _, curve in runs[c]] for s in steps]
    mean = [st.mean(v) for v in vals]
    sd = [st.stdev(v) if len(v) > 1 else 0.0 for v in vals]
    line, = ax.plot(steps, mean, label=f"{c} (n={len(runs[c])})", lw=1.4,
                    ls="--" if c.startswith("warm") else "-")
    ax.fill_between(steps, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)],
                    color=line.get_color(), alpha=0.15)


def figure(keys, titles, path, ncols=3):
    nrows = (len(keys) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.6 * nrows), squeeze=False)
    for ax, k, t in zip(axes.flat, keys, titles):
        for c in configs:
            band(ax, c, k)
        ax.set_title(t)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("wrote", path)


figure(["zs/overall", *[f"zs/{a}" for a in ATTRS]],
       ["zero-shot top-1, mean of 5 attributes", *[f"zero-shot {a}" for a in ATTRS]],
       os.path.join(out, "zero_shot.png"))
figure(["zs/pair-held-out", "zs/pair-seen", "eigen99/image", "eigen99/text", "ajne/image", "ajne/text"],
       ["zero-shot colour×shape, held-out pairs", "zero-shot colour×shape, seen pairs",
        "effective eigenvalues (99 %), image", "effective eigenvalues (99 %), text", "Ajne, image (lower = more uniform)",
        "Ajne, text"],
       os.path.join(out, "geometry.png"))
