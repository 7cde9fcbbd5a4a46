#!/usr/bin/env bash
# Data-loader benchmark, ours against open_clip's PyTorch pipeline, side by side in ONE run on this machine.
#   scripts/bench-data.sh
# Makes a 3000-image synthetic corpus (scripts/data/make_corpus.py: JPEGs of 400-640 px, 29-73 KB, in open_clip's
# CSV layout and as three img2dataset webdataset shards) unless $CORPUS already holds one, builds our
# `data_throughput` example once, then runs, alternating ours and PyTorch's to spread drift over both:
#   CSV input, 1 then 2 workers: ours, then scripts/data/torch_loader_peer.py (open_clip's CsvDataset, training
#     transform and tokenizer in a torch DataLoader), batch 128, 20 batches, 224 px;
#   ours on the webdataset shards, 1 and 2 workers;
#   ours at batch 512, 2 workers, 6 batches (the loader's peak memory against prefetch + 1 batches of pixels);
#   ours resuming at step 10 and at step 1000, CSV and shards, 2 workers, 2 batches (the time to the first
#     batch after the resume is the figure of interest).
# Each run prints one JSON line (images/s, images per CPU-second of the process and its workers, time to the first
# batch, peak RSS); this script tags each with "data" (and "start_step"), collects them into $OUT and prints a
# Markdown table with the ours/PyTorch and 2-worker/1-worker ratios (scripts/data/bench_table.py).
# Env: CORPUS (default /tmp/cloob-corpus), OUT (default /tmp/bench-data.jsonl), VENV (default /tmp/torchvenv;
# made from PyPI when it cannot import open_clip_train, about 3 GB). A few minutes on 2 cores, plus the corpus
# (about 3 minutes) the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS="${CORPUS:-/tmp/cloob-corpus}"
OUT="${OUT:-/tmp/bench-data.jsonl}"
VENV="${VENV:-/tmp/torchvenv}"
BATCH=128
BATCHES=20
py="$VENV/bin/python"

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
if ! "$py" -c 'import open_clip_train.data' 2>/dev/null; then
    [ -x "$py" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch torchvision open_clip_torch pandas webdataset pillow numpy
fi
# The last file make_corpus.py writes; a corpus interrupted part-way is made again.
if [ ! -f "$CORPUS/shards/00002_stats.json" ]; then
    "$py" scripts/data/make_corpus.py --n 3000 --out "$CORPUS" --seed 0 >&2
fi
# Built before any timing, so that compiling overlaps none. `--workspace`, as in bench-peers.sh: a build of one
# package unifies features differently and would rebuild the dependencies.
cargo build -q --workspace --release --example data_throughput
ours=target/release/examples/data_throughput

: > "$OUT"
# run DATA_TAG [START_STEP] -- COMMAND...: runs COMMAND, tags its JSON line, appends it to $OUT and to stderr.
run() {
    local tag="\"data\": \"$1\", "
    if [ "$2" != "--" ]; then tag+="\"start_step\": $2, "; shift; fi
    shift 2
    "$@" | sed "s/^{/{$tag/" | tee -a "$OUT" >&2
}
timed=(--image-size 224 --batch-size "$BATCH" --batches "$BATCHES")
for n in 1 2; do
    run csv -- "$ours" --data "csv:$CORPUS/train.csv" "${timed[@]}" --workers "$n"
    run csv -- "$py" scripts/data/torch_loader_peer.py --csv "$CORPUS/train.csv" "${timed[@]}" --workers "$n"
done
for n in 1 2; do
    run wds -- "$ours" --data "wds:$CORPUS/shards/{00000..00002}.tar" "${timed[@]}" --workers "$n"
done
# The loader's memory at batch 512 (its peak growth against prefetch + 1 batches of u8 pixels).
run csv-b512 -- "$ours" --data "csv:$CORPUS/train.csv" --image-size 224 --batch-size 512 --batches 6 --workers 2
for step in 10 1000; do
    run csv "$step" -- "$ours" --data "csv:$CORPUS/train.csv" --image-size 224 --batch-size "$BATCH" --batches 2 \
        --workers 2 --start-step "$step"
    run wds "$step" -- "$ours" --data "wds:$CORPUS/shards/{00000..00002}.tar" --image-size 224 \
        --batch-size "$BATCH" --batches 2 --workers 2 --start-step "$step"
done

echo
python3 scripts/data/bench_table.py "$OUT"
