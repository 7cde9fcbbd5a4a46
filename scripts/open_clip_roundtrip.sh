#!/usr/bin/env bash
# open_clip ⇄ cloob with real open_clip (outside CI): needs a Python with torch, open_clip_torch, safetensors.
#   PY=/tmp/torchvenv/bin/python scripts/open_clip_roundtrip.sh [WORK_DIR]
# 1. Import: a random-weight open_clip ViT-B-32 saved as open_clip_model.safetensors and as open_clip's
#    training checkpoint (.pt, module. keys under state_dict) and a bare state dict; cloob-eval --pretrained
#    runs on each, and cloob's embeddings and zero-shot logits are compared with open_clip's (f32, 1e-5).
# 2. Export: 100 steps of cloob-pretrain (tiny), cloob-export, loaded by open_clip
#    (create_model_and_transforms(NAME, pretrained=FILE)); open_clip's embeddings of it compared with cloob's.
set -euo pipefail
PY=${PY:-/tmp/torchvenv/bin/python}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d)}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
cd "$ROOT"
cargo build --workspace --release --bins
check() {  # DIR: cloob against the open_clip outputs in DIR/expected.json, for each weights file there
    CLOOB_OPEN_CLIP_CASE="$1" cargo test --workspace --release --test pretrained -- --ignored --nocapture \
        a_full_size_open_clip_model_from_the_roundtrip_script 2>&1 | grep -E "largest error|within|test result"
}

echo "== import: random open_clip ViT-B-32"
"$PY" scripts/fixtures/open_clip_cases.py ViT-B-32 "$WORK/b32" 2>&1 | grep -v "No pretrained weights"
for f in model.safetensors model_ddp.pt; do
    "$BIN/cloob-eval" --pretrained "$WORK/b32/$f" --model ViT-B-32 --eval-size 16 --no-probe \
        --out "$WORK/b32/eval-$f.json" | head -1
done
check "$WORK/b32"

echo "== export: 100 steps of tiny, exported, loaded by open_clip"
"$BIN/cloob-pretrain" --model tiny --steps 100 --batch-size 32 --eval-size 50 --zeroshot-frequency 0 \
    --save-frequency 0 --logs "$WORK/logs" --name rt --quiet --overwrite | tail -2
mkdir -p "$WORK/rt"
"$BIN/cloob-export" "$WORK/logs/rt/checkpoints/step_0000100.json" --format open_clip --out "$WORK/rt/tiny.safetensors"
# open_clip loads the export (strict) and writes its embeddings and state dict in every format.
"$PY" scripts/fixtures/open_clip_cases.py tiny "$WORK/rt" "$WORK/rt/tiny.safetensors" 2>&1 | grep -v "No pretrained"
"$PY" - "$WORK" <<'PYEOF'
import sys
from safetensors.torch import load_file
w = sys.argv[1]
ckpt, back = load_file(f"{w}/logs/rt/checkpoints/step_0000100.safetensors"), load_file(f"{w}/rt/model.safetensors")
assert ckpt.keys() == back.keys(), set(ckpt) ^ set(back)
worst = max(float((ckpt[k].float() - back[k].float()).abs().max()) for k in ckpt)
print(f"checkpoint vs open_clip's state dict of the export: {len(ckpt)} tensors, largest difference {worst}")
PYEOF
check "$WORK/rt"
