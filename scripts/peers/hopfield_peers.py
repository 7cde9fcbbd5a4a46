"""PyTorch peers of the Hopfield rows of issue 11's side-by-side table (scripts/bench-peers.sh runs it), one
JSON line per case: {"case", "ms", "stat", "rss_growth_mib"?, "impl"}.

- `static_retrieval`: CLOOB's retrieval softmax(14.3 X X^T) X, N = d = 512, forward + backward of its sum, in
  plain PyTorch (what hflayers computes with CLOOB's flags: static patterns, no projections, no norms).
- With hflayers importable (PYTHONPATH holding the fetched `hflayers/`, never committed): the layer cases
  `self_steps0`, `self_steps3` (B 8, S 256, D 512, 8 heads, hflayers' defaults, 0 or 3 update steps) and
  `long_4096`, `long_8192` (one head, input 64, L = S; fastest of 3 and the peak-RSS growth of the first;
  run first, so that the growth is the case's own and not hidden under an earlier case's peak).
  Without it those rows are reported missing.
Medians of 7 runs after one warm-up, unless `stat` says otherwise."""
import json, resource, statistics, time
import torch

torch.manual_seed(0)


def timed(fn, reps=7):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts


def emit(case, ms, stat="median", impl="plain", **extra):
    print(json.dumps({"case": case, "ms": round(ms, 3), "stat": stat, "impl": impl, **extra}), flush=True)


X = torch.nn.functional.normalize(torch.randn(512, 512), dim=-1).requires_grad_()


def retrieval():
    out = torch.softmax(14.3 * X @ X.T, dim=-1) @ X
    out.sum().backward()


emit("static_retrieval", statistics.median(timed(retrieval)) * 1e3)

try:
    from hflayers import Hopfield
except ImportError:
    emit("hflayers", float("nan"), stat="missing", impl="hflayers not importable: set HFLAYERS_DIR")
else:
    for length in (4096, 8192):
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        xl = torch.randn(1, length, 64, requires_grad=True)
        m = Hopfield(input_size=64, num_heads=1)
        ts = []
        for _ in range(3):
            t = time.perf_counter()
            m(xl).sum().backward()
            ts.append(time.perf_counter() - t)
            if len(ts) == 1:
                growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024
        emit(f"long_{length}", min(ts) * 1e3, stat="min of 3", impl="hflayers", rss_growth_mib=round(growth, 1))
    x = torch.randn(8, 256, 512, requires_grad=True)
    for steps in (0, 3):
        kw = dict(update_steps_max=3, update_steps_eps=1e-12) if steps else {}
        m = Hopfield(input_size=512, num_heads=8, **kw)
        ts = timed(lambda: m(x).sum().backward())
        emit(f"self_steps{steps}", statistics.median(ts) * 1e3, impl="hflayers")
