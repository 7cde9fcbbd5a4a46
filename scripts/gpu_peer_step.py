"""The PyTorch peer of `cloob-pretrain`'s training step on a GPU, written for this project's GPU bundle (our
own script; it mirrors ../shared/bench/cloob_step_peer.py, which runs on the CPU and imports hflayers and
cloob's methods.py, neither of which is on the GPU machine).

Model: image 32x32x3, patch 4 (64 patches + class token), width 128, 4 pre-LN blocks of 4 heads, GELU, MLP
4x; causal text transformer, context 32, vocabulary 49408, width 128, 4 blocks of 4 heads; 128-d embeddings;
batch 128; AdamW lr 1e-3, weight decay 0.1. Loss: cloob's methods.py written out in plain PyTorch —
hflayers' static retrieval softmax(beta * state @ stored^T) @ stored with beta 14.3 and no projections (what
methods.py's Hopfield layer computes with its flags), rows normalised, InfoLOOB (-1000 on the diagonal),
tau * (L_img + L_txt) with inv_tau 30 — or CLIP's mean of two cross-entropies.

Prints one JSON line per case: {"case", "ms" (median of 20 steps after 5 warm-up), "samples_per_s",
"peak_mib" (torch.cuda.max_memory_allocated)}. Usage: python3 gpu_peer_step.py [device]"""
import json, statistics, sys, time
import torch, torch.nn as nn

dev = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
torch.manual_seed(0)
W, L, H, E, B, CTX, V = 128, 4, 4, 128, 128, 32, 49408


def blocks():
    layer = nn.TransformerEncoderLayer(W, H, 4 * W, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, L, enable_nested_tensor=False)


class Img(nn.Module):
    def __init__(s):
        super().__init__()
        s.patch = nn.Conv2d(3, W, 4, 4, bias=False)
        s.cls = nn.Parameter(torch.randn(W) * W ** -.5)
        s.pos = nn.Parameter(torch.randn(65, W) * W ** -.5)
        s.ln_pre, s.tr, s.ln_post = nn.LayerNorm(W), blocks(), nn.LayerNorm(W)
        s.proj = nn.Parameter(torch.randn(W, E) * W ** -.5)

    def forward(s, x):
        x = s.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([s.cls.expand(x.shape[0], 1, W), x], 1) + s.pos
        return s.ln_post(s.tr(s.ln_pre(x))[:, 0]) @ s.proj


class Txt(nn.Module):
    def __init__(s):
        super().__init__()
        s.tok = nn.Embedding(V, W)
        s.pos = nn.Parameter(torch.randn(CTX, W) * .01)
        s.tr, s.ln = blocks(), nn.LayerNorm(W)
        s.proj = nn.Parameter(torch.randn(W, E) * W ** -.5)
        s.register_buffer("mask", torch.triu(torch.full((CTX, CTX), float("-inf")), 1))

    def forward(s, t):
        x = s.ln(s.tr(s.tok(t) + s.pos, mask=s.mask, is_causal=True))
        return x[torch.arange(t.shape[0], device=t.device), t.argmax(-1)] @ s.proj


def retrieve(state, stored, beta=14.3):
    r = torch.softmax(beta * state @ stored.T, dim=1) @ stored
    return r / r.norm(dim=1, keepdim=True)


def info_loob(x, y, inv_tau):
    k = inv_tau * x @ y.T
    eye = torch.eye(k.shape[0], device=k.device, dtype=torch.bool)
    positives = -k.diagonal().mean()
    negatives = torch.logsumexp(torch.where(eye, torch.full_like(k, -1000.0), k), dim=1).mean()
    return (positives + negatives) / inv_tau


def cloob(fi, ft, inv_tau):
    xx, yy, xy, yx = retrieve(fi, fi), retrieve(ft, ft), retrieve(ft, fi), retrieve(fi, ft)
    return info_loob(xx, xy, inv_tau) + info_loob(yy, yx, inv_tau)


def clip(fi, ft, inv_tau):
    logits = inv_tau * fi @ ft.T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)) / 2


img, txt = Img().to(dev), Txt().to(dev)
params = list(img.parameters()) + list(txt.parameters())
opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1)
x = torch.randn(B, 3, 32, 32, device=dev)
t = torch.randint(1, 49000, (B, CTX), device=dev)
t[:, 20] = 49407
for kind, loss_fn in [("cloob", cloob), ("clip", clip)]:
    def step():
        opt.zero_grad()
        fi, ft = img(x), txt(t)
        fi, ft = fi / fi.norm(dim=1, keepdim=True), ft / ft.norm(dim=1, keepdim=True)
        loss = loss_fn(fi, ft, 30.0)
        loss.backward()
        opt.step()
        return loss.item()  # one read back per step, as ours (loss, norm, tau)

    for _ in range(5):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    ts = []
    for _ in range(20):
        a = time.perf_counter()
        step()
        ts.append(time.perf_counter() - a)
    ms = statistics.median(ts) * 1e3
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None
    print(json.dumps({"case": f"{kind}_peer_b128", "ms": round(ms, 3), "samples_per_s": round(B / ms * 1e3, 1),
                      "peak_mib": peak and round(peak, 1), "params_m": round(sum(p.numel() for p in params) / 1e6, 2)}))
