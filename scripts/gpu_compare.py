"""Time PyTorch's scaled_dot_product_attention and the hflayers-style unfused association at the sizes of
our probe, and print one table with ours (JSON lines from association_probe, argv[1]).

unfused = hflayers: A = softmax(beta * Q K^T) materialised, then A V; update steps xi <- softmax(beta xi K^T) K.
sdpa    = torch.nn.functional.scaled_dot_product_attention with scale=beta (update steps: repeated calls).
f32 inputs, as ours. Throughput ratios: >1 means ours is faster."""
import json
import sys

import torch
import torch.nn.functional as F

B, H, L, S, D = 8, 8, 4096, 4096, 64
beta = 1.0 / D ** 0.5
dev = "cuda"


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, scale=beta)


def unfused(q, k, v):
    return torch.softmax(beta * q @ k.transpose(-1, -2), dim=-1) @ v


def chain(attn, q, k, v, steps):
    xi = q
    for _ in range(steps):
        xi = attn(xi, k, k)
    return attn(xi, k, v)


def time_ms(fn, iters=5):
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end))
    return best


def torch_times(attn, steps):
    g = torch.Generator(device=dev).manual_seed(0)
    q, k, v, do = (torch.rand(B, H, n, D, device=dev, generator=g) * 2 - 1 for n in (L, S, S, L))
    with torch.no_grad():
        fwd = time_ms(lambda: chain(attn, q, k, v, steps))
    qg, kg, vg = (t.clone().requires_grad_(True) for t in (q, k, v))

    def fb():
        out = chain(attn, qg, kg, vg, steps)
        torch.autograd.grad(out, (qg, kg, vg), do)

    return fwd, time_ms(fb)


def main():
    ours = {}
    for line in open(sys.argv[1]):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            ours[(r["mode"], r["steps"], r["what"])] = r["ms"]
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, B={B} H={H} L=S={L} d={D}, f32")
    head = f"{'case':<22}{'ours fused':>12}{'ours mat.':>12}{'torch SDPA':>12}{'torch unfused':>15}{'SDPA/ours':>11}{'unfused/ours':>14}"
    print(head)
    print("-" * len(head))
    for steps in (0, 3):
        try:
            s_f, s_fb = torch_times(sdpa, steps)
        except Exception as e:  # noqa: BLE001
            print(f"sdpa failed: {e}")
            s_f = s_fb = float("nan")
        try:
            u_f, u_fb = torch_times(unfused, steps)
        except Exception as e:  # noqa: BLE001
            print(f"unfused failed: {e}")
            u_f = u_fb = float("nan")
        torch.cuda.empty_cache()
        for what, s, u in (("fwd", s_f, u_f), ("fwd_bwd", s_fb, u_fb)):
            f = ours.get(("fused", steps, what), float("nan"))
            m = ours.get(("materialised", steps, what), float("nan"))
            name = f"{what} steps={steps}"
            print(f"{name:<22}{f:>12.2f}{m:>12.2f}{s:>12.2f}{u:>15.2f}{s / f:>11.2f}{u / f:>14.2f}")
    print("targets: SDPA/ours >= 0.8 for steps=0; unfused/ours >= 2 for steps=3")


if __name__ == "__main__":
    main()
