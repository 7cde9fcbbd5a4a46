#!/usr/bin/env python3
"""Cut a fuzz corpus to at most N files: a greedy cover of the coverage edges libFuzzer recorded.

    target/x86_64-unknown-linux-gnu/release/<target> -merge=1 -merge_control_file=CF /tmp/empty corpus/<target>
    python3 cover.py CF N OUT_DIR

`cargo fuzz cmin` keeps every input that adds a coverage feature, hundreds of files for the JSON and safetensors
targets; this keeps the N inputs that add the most edges in turn (the smaller on ties) and prints the share of
edges they keep. Run it from `fuzz/` (the control file names the inputs relative to where the merge ran).
"""
import os
import shutil
import sys

control, limit, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(control, errors="replace").read().split("\n")
count = int(lines[0])
files = lines[2 : 2 + count]
cov = {}
for line in lines[2 + count :]:
    parts = line.split()
    if len(parts) >= 2 and parts[0] == "COV":
        cov[int(parts[1])] = set(parts[2:])
edges = set().union(*cov.values()) if cov else set()
chosen, covered = [], set()
while len(chosen) < limit and cov:
    best = max(cov, key=lambda i: (len(cov[i] - covered), -os.path.getsize(files[i])))
    if not cov[best] - covered:
        break
    chosen.append(best)
    covered |= cov[best]
os.makedirs(out, exist_ok=True)
for i in chosen:
    shutil.copy(files[i], os.path.join(out, os.path.basename(files[i])))
print(f"{len(chosen)} files keep {len(covered)} of {len(edges)} edges ({100 * len(covered) / max(1, len(edges)):.1f}%)")
