#!/usr/bin/env python3
"""Markdown table for the data-loader benchmark: reads the JSON lines that scripts/bench-data.sh collects (one
per run, from our `data_throughput` example and from scripts/data/torch_loader_peer.py, each tagged by the
script with "data" and, for resume runs, "start_step") and prints

  1. one row per run: impl, data, workers, batch, images/s, images per CPU-second, first batch s, peak RSS MB,
     and for ours the loader's peak memory growth with one batch's size;
  2. ours/PyTorch images per CPU-second at equal workers on the same data;
  3. 2-worker/1-worker images/s for each impl and data.

    python3 scripts/data/bench_table.py /tmp/bench-data.jsonl

Standard library only. Missing values print as n/a.
"""
import json
import sys


def fmt(value, digits):
    return "n/a" if value is None else f"{value:.{digits}f}"


def main():
    with open(sys.argv[1]) as f:
        runs = [json.loads(line) for line in f if line.strip()]

    print("| impl | data | workers | batch | images/s | images per CPU-s | first batch s | peak RSS MB "
          "| loader's peak growth MB (one batch MB) |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in runs:
        data = r.get("data", "n/a") + (f", start step {r['start_step']}" if "start_step" in r else "")
        loader = (f"{fmt(r['loader_peak_mb'], 0)} ({fmt(r.get('batch_mb'), 1)})"
                  if "loader_peak_mb" in r else "n/a")
        print(f"| {r['impl']} | {data} | {r['workers']} | {r.get('batch_size', 'n/a')} | "
              f"{fmt(r.get('images_per_s'), 1)} | {fmt(r.get('images_per_cpu_s'), 1)} | "
              f"{fmt(r.get('first_batch_s'), 3)} | {fmt(r.get('peak_rss_mb'), 0)} | {loader} |")

    # Throughput runs only: resume runs measure the time to a first batch.
    by_key = {(r["impl"], r.get("data"), r["workers"]): r for r in runs if "start_step" not in r}

    def ratio(a, b, key):
        if a is None or b is None or not a.get(key) or not b.get(key):
            return None
        return a[key] / b[key]

    rows = []
    for (impl, data, workers), run in sorted(by_key.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])):
        if impl == "ours" and (peer := by_key.get(("pytorch", data, workers))):
            rows.append(f"| {data} | {workers} | {fmt(ratio(run, peer, 'images_per_cpu_s'), 2)} | "
                        f"{fmt(ratio(run, peer, 'images_per_s'), 2)} |")
    if rows:
        print("\n| data | workers | ours/PyTorch images per CPU-s | ours/PyTorch images/s |")
        print("|---|--:|--:|--:|")
        print("\n".join(rows))

    rows = []
    for (impl, data, workers), two in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if workers == 2 and (one := by_key.get((impl, data, 1))):
            rows.append(f"| {impl} | {data} | {fmt(ratio(two, one, 'images_per_s'), 2)} |")
    if rows:
        print("\n| impl | data | 2-worker/1-worker images/s |")
        print("|---|---|--:|")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
