#!/usr/bin/env python3
"""Plain-PyTorch reference of our CLOOB training loop (GitHub issue 15, item 1).

Replays, in PyTorch, the run that `cargo run --release --example reference_export` recorded: the same
initial weights (`init.safetensors`), the same batches (`batches.safetensors`), the same settings
(`run.json`), and compares its per-step loss, gradient norm (before clipping) and learning rate with ours
(`ours.jsonl`). Everything below is written from the Rust sources, not from open_clip or cloob:

- towers: `cloob/src/vit.rs`, `cloob/src/text.rs`, `cloob/src/blocks.rs` (pre-LN blocks, plain multi-head
  attention, β = 1/√head_dim, packed `in_proj` in q, k, v order, quick_gelu MLP, LayerNorm ε from the
  preset), `cloob/src/model.rs` (L2-normalised embeddings, τ⁻¹ = exp(logit_scale), clamped to [0, ln 100]
  after every step);
- loss: `cloob/src/loss/` (four Hopfield retrievals `rownorm(softmax(β Q Mᵀ) M)`, InfoLOOB with the positive
  excluded exactly, `tau_sum`: `(L_img + L_txt)/τ⁻¹`, `mean`: `(L_img + L_txt)/2`);
- step: `cloob/src/train.rs` (global gradient norm over the trainable tensors, clipping by
  `min(1, max/(‖g‖ + 1e-6))`, AdamW, clamp), `hopfield/src/optim/` (decoupled decay, PyTorch's bias
  corrections, `DecayFilter::OpenClip[NoEmbeddings]`, `LrSchedule::WarmupCosine`/`CosineRestarts`).

Usage: python train_reference.py --export /tmp/refexport [--dtype float32|float64|both] [--steps N]
       [--markdown scripts/reference/last_comparison.md]
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.numpy import load_file

MAX_LOGIT_SCALE = 4.605_170_185_988_092  # ln 100, model.rs

# ---------------------------------------------------------------------------------------------- model


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """hflayers' association without norms or update steps = PyTorch's packed multi-head attention."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x, mask):
        b, l, w = x.shape
        h = self.heads
        d = w // h
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).split(w, dim=-1)
        split = lambda t: t.reshape(b, l, h, d).transpose(1, 2)  # [B, H, L, d]
        q, k, v = split(q), split(k), split(v)
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        a = torch.softmax(scores, dim=-1)
        y = (a @ v).transpose(1, 2).reshape(b, l, w)
        return self.out_proj(y)


class Mlp(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x):
        return self.c_proj(quick_gelu(self.c_fc(x)))


class Block(nn.Module):
    """Pre-LN: x + attn(ln_1(x)), then + mlp(ln_2(·)) (hflayers' encoder layer with norm_first)."""

    def __init__(self, width, heads, mlp_ratio, eps):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        self.mlp = Mlp(width, int(round(width * mlp_ratio)))

    def forward(self, x, mask):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, mlp_ratio, eps):
        super().__init__()
        self.resblocks = nn.ModuleList([Block(width, heads, mlp_ratio, eps) for _ in range(layers)])

    def forward(self, x, mask=None):
        for blk in self.resblocks:
            x = blk(x, mask)
        return x


class Visual(nn.Module):
    def __init__(self, c):
        super().__init__()
        w, p = c["width"], c["patch"]
        self.patch = p
        self.conv1 = nn.Conv2d(3, w, kernel_size=p, stride=p, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(w))
        self.positional_embedding = nn.Parameter(torch.empty(c["grid"] ** 2 + 1, w))
        self.ln_pre = nn.LayerNorm(w, eps=c["eps"])
        self.transformer = Transformer(w, c["layers"], c["heads"], c["mlp_ratio"], c["eps"])
        self.ln_post = nn.LayerNorm(w, eps=c["eps"])
        self.proj = nn.Parameter(torch.empty(w, c["embed_dim"]))

    def forward(self, images):
        x = self.conv1(images)  # [B, W, g, g]
        b, w = x.shape[:2]
        x = x.reshape(b, w, -1).transpose(1, 2)  # patch (i, j) is row i·g + j
        cls = self.class_embedding.reshape(1, 1, w).expand(b, 1, w)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x)
        x = self.transformer(x)
        return self.ln_post(x[:, 0]) @ self.proj


class Clip(nn.Module):
    """open_clip's names: `visual.*`, the text tower at the root, `logit_scale`."""

    def __init__(self, vc, tc, init_logit_scale, learnable_inv_tau):
        super().__init__()
        self.visual = Visual(vc)
        w = tc["width"]
        self.token_embedding = nn.Embedding(tc["vocab"], w)
        self.positional_embedding = nn.Parameter(torch.empty(tc["context"], w))
        self.transformer = Transformer(w, tc["layers"], tc["heads"], tc["mlp_ratio"], tc["eps"])
        self.ln_final = nn.LayerNorm(w, eps=tc["eps"])
        self.text_projection = nn.Parameter(torch.empty(w, tc["embed_dim"]))
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)), requires_grad=learnable_inv_tau)

    def encode_text(self, ids):
        b, l = ids.shape
        x = self.token_embedding(ids) + self.positional_embedding[:l]
        causal = torch.ones(l, l, dtype=torch.bool).triu(1)  # position i sees j ≤ i
        x = self.transformer(x, causal)
        eot = ids.argmax(dim=-1)  # first position of the largest id (text.rs: eot_positions)
        x = x[torch.arange(b), eot]
        return self.ln_final(x) @ self.text_projection

    def forward(self, images, ids):
        img = self.visual(images)
        txt = self.encode_text(ids)
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        return img, txt, self.logit_scale.exp()


# ----------------------------------------------------------------------------------------------- loss


def retrieve(q, m, beta):
    """R(Q; M) = rownorm(softmax(β Q Mᵀ) M)."""
    r = torch.softmax(beta * (q @ m.T), dim=-1) @ m
    return r / r.norm(dim=-1, keepdim=True)


def info_loob(k):
    """mean_i(−k_ii + lse_{j≠i} k_ij), the diagonal excluded exactly."""
    n = k.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    lse = torch.logsumexp(k.masked_fill(eye, float("-inf")), dim=-1)
    return (lse - k.diagonal()).mean()


def info_nce(k):
    return F.cross_entropy(k, torch.arange(k.shape[0]))


def contrastive_loss(x, y, s, kind, beta, loob_scale):
    if kind in ("cloob", "clip_hopfield"):
        xx, xy, yx, yy = retrieve(x, x, beta), retrieve(y, x, beta), retrieve(x, y, beta), retrieve(y, y, beta)
        a_img, b_img, a_txt, b_txt = xx, xy, yy, yx
    else:
        a_img, b_img, a_txt, b_txt = x, y, y, x
    objective = info_loob if kind in ("cloob", "info_loob") else info_nce
    value = objective(s * a_img @ b_img.T) + objective(s * a_txt @ b_txt.T)
    if objective is info_loob and loob_scale == "tau_sum":
        return value / s
    return 0.5 * value


# ------------------------------------------------------------------------------------------ optimiser

NO_DECAY = ["bn", "ln", "bias", "norm", "logit_scale", "inv_tau", "pooling_weights", "lookup_weights",
            "target_weights"]


def decays(name, shape, decay_embeddings):
    """DecayFilter::OpenClip (decay_embeddings) or ::OpenClipNoEmbeddings (hopfield/src/optim/decay.rs)."""
    if len(shape) < 2 or any(n in name for n in NO_DECAY):
        return False
    return decay_embeddings or "embedding" not in name


def lr_at(run, step):
    """LrSchedule::lr_at (hopfield/src/optim/schedule.rs) as RunConfig::schedule builds it."""
    base, warmup, total = run["lr"], run["effective_warmup"], run["total_steps"]
    if run.get("scheduler", "cosine") == "cosine":
        floor = 0.0
        if step < warmup:
            return base * (step + 1) / warmup
        es = max(total - warmup, 1)
        e = min(step - warmup, es)
        return floor + 0.5 * (1.0 + math.cos(math.pi * e / es)) * (base - floor)
    # cosine-restarts
    cycles = run.get("cycles", 1)
    if step < warmup:
        return base * step / warmup
    p = (step - warmup) / max(total - warmup, 1)
    if p >= 1.0:
        return 0.0
    return 0.5 * (1.0 + math.cos(math.pi * math.modf(cycles * p)[0])) * base


# ----------------------------------------------------------------------------------------------- run


def configs(init, run, heads):
    w = init["visual.conv1.weight"].shape[0]
    p = init["visual.conv1.weight"].shape[-1]
    grid = int(round(math.sqrt(init["visual.positional_embedding"].shape[0] - 1)))
    count = lambda prefix: len({k[len(prefix):].split(".")[0] for k in init if k.startswith(prefix)})
    hidden = init["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    vc = dict(width=w, patch=p, grid=grid, layers=count("visual.transformer.resblocks."), heads=heads,
              mlp_ratio=hidden / w, eps=1e-5, embed_dim=init["visual.proj"].shape[1])
    tw = init["token_embedding.weight"].shape[1]
    thidden = init["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    tc = dict(width=tw, vocab=init["token_embedding.weight"].shape[0],
              context=init["positional_embedding"].shape[0], layers=count("transformer.resblocks."),
              heads=heads, mlp_ratio=thidden / tw, eps=1e-5, embed_dim=init["text_projection"].shape[1])
    return vc, tc


def build(init, run, heads, dtype):
    vc, tc = configs(init, run, heads)
    learnable = bool(run.get("learnable_inv_tau", False))
    model = Clip(vc, tc, math.log(run["init_inv_tau"]), learnable)
    state = {k: torch.from_numpy(np.array(v)) for k, v in init.items()}
    if "logit_scale" not in state:  # the export may leave out a frozen τ
        state["logit_scale"] = torch.tensor(math.log(run["init_inv_tau"]), dtype=torch.float32)
    ours = model.state_dict()
    for k, v in state.items():
        if k not in ours:
            raise SystemExit(f"init.safetensors has {k!r}, which the reference does not")
        if tuple(ours[k].shape) != tuple(v.shape):
            raise SystemExit(f"{k}: reference shape {tuple(ours[k].shape)}, export {tuple(v.shape)}")
    model.load_state_dict({k: v.reshape(ours[k].shape) for k, v in state.items()}, strict=True)
    return model.to(dtype), vc, tc


def train(export, dtype, steps, heads, log=print):
    init = load_file(os.path.join(export, "init.safetensors"))
    batches = load_file(os.path.join(export, "batches.safetensors"))
    with open(os.path.join(export, "run.json")) as f:
        run = json.load(f)
    model, vc, tc = build(init, run, heads, dtype)
    if steps is None:
        steps = batches["images"].shape[0]
    kind = run.get("loss", "cloob")
    beta = run["hopfield_beta"]
    loob_scale = run.get("loob_scale", "tau_sum")
    retrieval = run.get("retrieval", "softmax")
    if kind in ("cloob", "clip_hopfield") and retrieval != "softmax":
        raise SystemExit(f"only softmax retrieval is replicated, the run used {retrieval!r}")
    if run.get("accum_freq", 1) != 1:
        log("note: accum_freq > 1 gives the same gradients (train.rs); the reference takes the whole batch")
    decay_emb = bool(run.get("decay_embeddings", False))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    dec = [p for n, p in named if decays(n, tuple(p.shape), decay_emb)]
    nodec = [p for n, p in named if not decays(n, tuple(p.shape), decay_emb)]
    groups = [dict(params=dec, weight_decay=run["wd"]), dict(params=nodec, weight_decay=0.0)]
    opt = torch.optim.AdamW(groups, lr=run["lr"], betas=(run["beta1"], run["beta2"]), eps=run["eps"],
                            foreach=False)
    log(f"[{dtype}] decayed: {sorted(n for n, p in named if decays(n, tuple(p.shape), decay_emb))}")
    clip = run.get("grad_clip_norm")
    params = [p for _, p in named]
    rows = []
    t0 = time.time()
    for step in range(steps):
        images = torch.from_numpy(np.array(batches["images"][step])).to(dtype)
        ids = torch.from_numpy(np.array(batches["tokens"][step])).to(torch.int64)
        lr = lr_at(run, step)
        opt.zero_grad(set_to_none=False)
        img, txt, s = model(images, ids)
        loss = contrastive_loss(img, txt, s, kind, beta, loob_scale)
        loss.backward()
        if clip:
            gn = float(torch.nn.utils.clip_grad_norm_(params, clip))
        else:
            gn = float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params)))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
        rows.append(dict(step=step, loss=float(loss.detach()), grad_norm=gn, lr=lr, inv_tau=float(model.logit_scale.detach().exp())))
    log(f"[{dtype}] {steps} steps in {time.time() - t0:.1f} s")
    return rows


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def compare(ours, ref, label, first=50):
    n = min(len(ours), len(ref))
    lines = [f"### {label}", "",
             "| step | our loss | ref loss | rel | our grad norm | ref grad norm | rel | lr rel |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i in range(min(first, n)):
        o, r = ours[i], ref[i]
        lines.append(f"| {i} | {o['loss']:.7g} | {r['loss']:.7g} | {rel(r['loss'], o['loss']):.2e} | "
                     f"{o['grad_norm']:.7g} | {r['grad_norm']:.7g} | {rel(r['grad_norm'], o['grad_norm']):.2e} | "
                     f"{rel(r['lr'], o['lr']):.1e} |")
    def summary(lo, hi):
        if hi <= lo:
            return None
        dl = np.array([rel(ref[i]["loss"], ours[i]["loss"]) for i in range(lo, hi)])
        dg = np.array([rel(ref[i]["grad_norm"], ours[i]["grad_norm"]) for i in range(lo, hi)])
        dlr = max(rel(ref[i]["lr"], ours[i]["lr"]) if ours[i]["lr"] else abs(ref[i]["lr"]) for i in range(lo, hi))
        dtau = max(rel(ref[i]["inv_tau"], ours[i]["inv_tau"]) for i in range(lo, hi))
        return dict(loss_max=dl.max(), loss_med=float(np.median(dl)), gn_max=dg.max(),
                    gn_med=float(np.median(dg)), lr_max=dlr, tau_max=dtau,
                    loss_at=lo + int(dl.argmax()), gn_at=lo + int(dg.argmax()))
    s1, s2 = summary(0, min(first, n)), summary(min(first, n), n)
    lines += ["", "| steps | loss rel max | loss rel median | grad norm rel max | grad norm rel median | "
              "lr rel max | τ⁻¹ rel max |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in ((f"0–{min(first, n) - 1}", s1), (f"{first}–{n - 1}", s2)):
        if s:
            lines.append(f"| {name} | {s['loss_max']:.2e} (step {s['loss_at']}) | {s['loss_med']:.2e} | "
                         f"{s['gn_max']:.2e} (step {s['gn_at']}) | "
                         f"{s['gn_med']:.2e} | {s['lr_max']:.1e} | {s['tau_max']:.1e} |")
    if n > first:
        lines += ["", f"Every 25th step after {first}:", "",
                  "| step | our loss | ref loss | rel | our grad norm | ref grad norm | rel |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for i in list(range(first, n, 25)) + ([n - 1] if (n - 1 - first) % 25 else []):
            o, r = ours[i], ref[i]
            lines.append(f"| {i} | {o['loss']:.7g} | {r['loss']:.7g} | {rel(r['loss'], o['loss']):.2e} | "
                         f"{o['grad_norm']:.7g} | {r['grad_norm']:.7g} | {rel(r['grad_norm'], o['grad_norm']):.2e} |")
    return lines, s1, s2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", default="/tmp/refexport")
    ap.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--heads", type=int, default=4, help="attention heads of both towers (tiny: 4)")
    ap.add_argument("--first", type=int, default=50)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--markdown", default=None, help="write the tables here")
    args = ap.parse_args()
    torch.manual_seed(0)
    with open(os.path.join(args.export, "ours.jsonl")) as f:
        ours = [json.loads(l) for l in f if l.strip()]
    with open(os.path.join(args.export, "run.json")) as f:
        run = json.load(f)
    dtypes = {"float32": [torch.float32], "float64": [torch.float64], "both": [torch.float32, torch.float64]}
    md = ["# Reference comparison", "",
          f"Export: `{args.export}`; settings: " + ", ".join(
              f"{k}={run.get(k)}" for k in ("model_preset", "loss", "hopfield_beta", "loob_scale", "batch_size",
                                            "lr", "wd", "warmup", "effective_warmup", "total_steps", "scheduler",
                                            "beta1", "beta2", "eps", "init_inv_tau", "learnable_inv_tau",
                                            "grad_clip_norm", "decay_embeddings", "seed")), ""]
    ok = True
    refs = {}
    for dt in dtypes[args.dtype]:
        ref = train(args.export, dt, args.steps, args.heads)
        refs[dt] = ref
        lines, s1, s2 = compare(ours, ref, f"reference in {str(dt).split('.')[-1]} vs ours (f32)", args.first)
        md += lines + [""]
        print("\n".join(lines) + "\n")
        if dt == torch.float32 and s1 is not None:
            ok = s1["loss_max"] < args.tol and s1["gn_max"] < args.tol
            print(f"first {args.first} steps within {args.tol:g} relative (f32): {'YES' if ok else 'NO'}")
    if len(refs) == 2:
        # The rounding yardstick: how far the same replay drifts between f32 and f64 arithmetic.
        lines, _, _ = compare(refs[torch.float64], refs[torch.float32],
                              "rounding yardstick: reference in float64 vs reference in float32 "
                              "(\"our\" columns: the f64 reference, \"ref\": the f32 one)", args.first)
        lines = lines[:2] + lines[4 + min(args.first, len(refs[torch.float32])):]  # summary only
        md += lines + [""]
        print("\n".join(lines) + "\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(md) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
