#!/usr/bin/env bash
# CLOOB vs CLIP on the embedded scenes and Fashion-MNIST: same tiny encoders, data and steps, 3 seeds.
# Prints a mean ± std table (zero-shot per attribute, held-out pairs, Fashion-MNIST zero-shot on held-out
# templates and linear probe, effective eigenvalues, Ajne, uniformity) and writes it to
# $LOGS/summary.md and $LOGS/summary.json.
#
#   scripts/reproduce-cloob.sh                 # defaults below
#   STEPS=600 SEEDS="0 1 2" scripts/reproduce-cloob.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-300}
FASHION_STEPS=${FASHION_STEPS:-$STEPS}
SEEDS=${SEEDS:-"0 1 2"}
LOSSES=${LOSSES:-"cloob clip"}
DATASETS=${DATASETS:-"embedded fashion-mnist"}
LOGS=${LOGS:-logs/reproduce}
EXTRA=${EXTRA:-}
JOBS=${JOBS:-1}   # runs at a time
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
# `pretrain` is a default feature of cloob; CARGO_FLAGS adds others.
cargo build --release -p cloob --bin cloob-pretrain ${CARGO_FLAGS---features pretrain}
BIN="$CARGO_TARGET_DIR/release/cloob-pretrain"
mkdir -p "$LOGS"
for data in $DATASETS; do
  steps=$STEPS; [ "$data" = fashion-mnist ] && steps=$FASHION_STEPS
  for loss in $LOSSES; do
    for seed in $SEEDS; do
      name="$data-$loss-s$seed"
      if [ -f "$LOGS/$name/done" ]; then echo "skip $name (done)"; continue; fi
      # A run without `done` was interrupted: it starts over (--overwrite deletes what it left).
      # The paper's temperatures: CLOOB a fixed τ⁻¹ = 30, CLIP a learnable one from 1/0.07.
      tau="--init-inv-tau 30"; [ "$loss" = clip ] && tau="--init-inv-tau 14.3 --learnable-inv-tau"
      while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 2; done
      (
        start=$(date +%s)
        "$BIN" --quiet --data "$data" --loss "$loss" --seed "$seed" --steps "$steps" $tau \
          --zeroshot-frequency 0 --save-frequency 0 --logs "$LOGS" --name "$name" --overwrite $EXTRA > "$LOGS/$name.out" 2>&1
        echo "$(( $(date +%s) - start ))" > "$LOGS/$name/done"
        echo "$name: $(cat "$LOGS/$name/done") s"
      ) &
    done
  done
done
wait
python3 - "$LOGS" <<'PY'
import json, os, statistics as st, sys
logs = sys.argv[1]
rows = {}
for name in sorted(os.listdir(logs)):
    m = os.path.join(logs, name, "metrics.jsonl")
    if not os.path.isfile(m):
        continue
    data, loss, seed = name.rsplit("-", 2)
    ev = [json.loads(l) for l in open(m) if '"eval"' in l]
    if not ev:
        continue
    e = ev[-1]["eval"]
    s = e["sets"][0]
    r = {f"zs/{k}": v["top1"] for k, v in s["zero_shot"].items()}
    # Overall zero-shot on the embedded set: the mean top-1 over its five independent attributes.
    attrs = [r[f"zs/{a}"] for a in ("shape", "colour", "size", "position", "background") if f"zs/{a}" in r]
    if len(attrs) == 5:
        r["zs/overall (mean of 5 attributes)"] = sum(attrs) / 5
    r["eigen99/image"] = s["embedding"]["image_eigen_99"]
    r["eigen99/text"] = s["embedding"]["text_eigen_99"]
    r["ajne/image"] = s["embedding"]["image_ajne"]
    r["ajne/text"] = s["embedding"]["text_ajne"]
    r["uniformity/image"] = s["embedding"]["image_uniformity"]
    r["uniformity/text"] = s["embedding"]["text_uniformity"]
    r["alignment"] = s["embedding"]["alignment"]
    r["retrieval/i2t_r1"] = s["retrieval"]["image_to_text"][0]
    if e.get("probe"):
        r["probe"] = e["probe"]["test_accuracy"]
    r["wall_s"] = float(open(os.path.join(logs, name, "done")).read())
    rows.setdefault(data, {}).setdefault(loss, []).append(r)
out, md = {}, []
for data, by_loss in rows.items():
    keys = sorted({k for runs in by_loss.values() for r in runs for k in r})
    losses = sorted(by_loss)
    md.append(f"\n### {data}\n\n| metric | " + " | ".join(f"{l} (n={len(by_loss[l])})" for l in losses) + " |")
    md.append("|---|" + "---|" * len(losses))
    for k in keys:
        cells = []
        for l in losses:
            v = [r[k] for r in by_loss[l] if k in r]
            mean = st.mean(v) if v else float("nan")
            sd = st.stdev(v) if len(v) > 1 else 0.0
            out.setdefault(data, {}).setdefault(l, {})[k] = {"mean": mean, "std": sd, "values": v}
            cells.append(f"{mean:.3f} ± {sd:.3f}" if v else "–")
        md.append(f"| {k} | " + " | ".join(cells) + " |")
text = "\n".join(md)
print(text)
open(os.path.join(logs, "summary.md"), "w").write(text + "\n")
json.dump(out, open(os.path.join(logs, "summary.json"), "w"), indent=1)
PY
