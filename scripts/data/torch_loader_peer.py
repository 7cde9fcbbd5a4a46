#!/usr/bin/env python3
"""The PyTorch side of the data-loader benchmark (scripts/bench-data.sh): open_clip's CSV input pipeline run
as an open_clip user runs it, timed the way our `data_throughput` example times ours.

    /tmp/torchvenv/bin/python scripts/data/torch_loader_peer.py --csv /tmp/cloob-corpus/train.csv \
        --workers 2 --batch-size 128 --batches 20 --image-size 224

Pipeline: open_clip_train.data.CsvDataset (from the open_clip_torch wheel; it needs pandas) with the
tab-separated `filepath`/`title` columns that open_clip_train defaults to, the training transform
open_clip.image_transform(S, is_train=True) (RandomResizedCrop scale (0.9, 1), bicubic, to tensor, CLIP mean/std)
and the ViT-B-32 tokenizer (open_clip's SimpleTokenizer, 77 tokens), in
DataLoader(batch_size=B, num_workers=N, shuffle=True, pin_memory=False, drop_last=True,
persistent_workers=False). CsvDataset opens the paths as written, relative to the working directory, so the
script first changes into the CSV's folder (make_corpus.py writes paths relative to it).

Prints one JSON line:
  wall_s, images_per_s  from just before the DataLoader iterator is created (worker start-up counts, as a
                        user waits for it) until the K-th batch is in the main process; images = K * B;
  first_batch_s         from the same start until the first batch is in the main process;
  cpu_s                 user + system CPU over that span of the main process (all its threads) and of every
                        process below it (the workers), from /proc/<pid>/stat (utime + stime in clock ticks),
                        read right after the K-th batch while the workers are still alive (psutil is not needed).
                        The workers start after the clock, so all of their CPU time counts. Work the workers have
                        begun on batches beyond the K-th (prefetch) counts too: with the main loop doing
                        nothing, that is at most part of one batch per worker;
  images_per_cpu_s      images / cpu_s;
  peak_rss_mb           the largest sum of resident set sizes of the main process and its workers, sampled from
                        /proc/<pid>/statm by a background thread every 50 ms (pages shared between the forked
                        processes count once per process, as in `ps`;
                        for this pipeline the sum is about twice the sum of PSS, which splits them).
torch.set_num_threads(1) in the main process: the loop does no math (DataLoader workers set 1 thread too).
"""
import argparse
import json
import os
import threading
import time

import open_clip
import torch
from open_clip_train.data import CsvDataset
from torch.utils.data import DataLoader

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def children(pid):
    """Pids of the direct children of pid: the kernel's children list of its main thread where the kernel
    exposes it (CONFIG_PROC_CHILDREN), else a scan of /proc for processes whose parent is pid."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        parents = {int(e): stat_fields(int(e)) for e in os.listdir("/proc") if e.isdigit()}
        return [p for p, fields in parents.items() if fields is not None and int(fields[1]) == pid]


def descendants(pid):
    """The DataLoader workers: children of pid with the fork start method (Python < 3.14 on Linux), children of
    a forkserver child with forkserver (the default from 3.14), so the whole tree below pid."""
    found, todo = [], children(pid)
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children(p))
    return found


def stat_fields(pid):
    """Fields of /proc/<pid>/stat after the command name (state, ppid, ...), or None once pid has exited."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def cpu_seconds(pid):
    fields = stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError):
        return 0


class RssSampler(threading.Thread):
    """Every 50 ms: the sum of RSS over this process and its children; keeps the maximum."""

    def __init__(self):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = os.getpid(), 0, threading.Event()

    def sample(self):
        self.peak = max(self.peak, sum(rss_bytes(p) for p in [self.pid, *descendants(self.pid)]))

    def run(self):
        while not self.stop.wait(0.05):
            self.sample()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=224)
    a = ap.parse_args()
    torch.set_num_threads(1)
    csv = os.path.abspath(a.csv)
    os.chdir(os.path.dirname(csv))
    dataset = CsvDataset(csv, open_clip.image_transform(a.image_size, is_train=True), img_key="filepath",
                         caption_key="title", sep="\t", tokenizer=open_clip.get_tokenizer("ViT-B-32"))
    loader = DataLoader(dataset, batch_size=a.batch_size, num_workers=a.workers, shuffle=True, pin_memory=False,
                        drop_last=True, persistent_workers=False)
    if a.batches > len(loader):
        raise SystemExit(f"--batches {a.batches} exceeds one epoch of {len(loader)} batches")

    pid = os.getpid()
    sampler = RssSampler()
    sampler.sample()
    start, cpu_start = time.perf_counter(), cpu_seconds(pid)
    sampler.start()
    batches = iter(loader)
    first_batch = None
    for _ in range(a.batches):
        images, texts = next(batches)
        assert images.shape == (a.batch_size, 3, a.image_size, a.image_size) and texts.shape[0] == a.batch_size
        if first_batch is None:
            first_batch = time.perf_counter() - start
    wall = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu_start + sum(cpu_seconds(p) for p in descendants(pid))
    sampler.stop.set()
    sampler.join()
    sampler.sample()
    del batches

    count = a.batches * a.batch_size
    print(json.dumps({
        "impl": "pytorch", "workers": a.workers, "batch_size": a.batch_size, "images": count,
        "wall_s": round(wall, 3), "images_per_s": round(count / wall, 1), "cpu_s": round(cpu, 2),
        "images_per_cpu_s": round(count / cpu, 1), "first_batch_s": round(first_batch, 3),
        "peak_rss_mb": round(sampler.peak / 2**20, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
