"""f32 GEMM throughput of PyTorch (MKL on x86) on the shapes of examples/sgemm_probe.rs, one JSON line each.

Run with OMP_NUM_THREADS/MKL_NUM_THREADS set to the thread count ours runs with (scripts/bench-peers.sh).
"""
import json
import sys
import time

import torch

SHAPES = [
    (2048, 2048, 2048, False, False),
    (16384, 128, 512, False, False),
    (16384, 512, 128, False, False),
    (8320, 128, 384, False, True),
    (8320, 512, 128, False, True),
    (8320, 384, 128, False, False),
    (128, 8320, 384, True, False),
]


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    torch.manual_seed(0)
    for m, k, n, ta, tb in SHAPES:
        a = torch.rand(k, m) if ta else torch.rand(m, k)
        b = torch.rand(n, k) if tb else torch.rand(k, n)
        a_op = a.t() if ta else a
        b_op = b.t() if tb else b
        out = torch.empty(m, n)
        best = float("inf")
        for _ in range(reps + 1):
            t = time.perf_counter()
            torch.mm(a_op, b_op, out=out)
            best = min(best, time.perf_counter() - t)
        shape = f"{m}x{k}x{n}{' aT' if ta else ''}{' bT' if tb else ''}"
        print(json.dumps({"shape": shape, "kernel": "pytorch-mkl", "gflops": round(2 * m * k * n / best / 1e9, 1),
                          "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
