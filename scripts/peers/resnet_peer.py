"""PyTorch peer of cloob/benches/resnet.rs: open_clip's RN50 image tower (`ModifiedResNet`, open_clip_torch),
float32, train mode (batch-norm batch statistics), forward + backward of sum(out * R) at batch × 224², on
the CPU with `--threads` threads (default: the machine's cores, as the Rust CPU backend uses). One JSON line;
the median of `reps` passes after one warm-up.

    python scripts/peers/resnet_peer.py [BATCH] [REPS] [--threads N]
"""
import json, os, sys, time
import torch
from open_clip.modified_resnet import ModifiedResNet

args = [a for a in sys.argv[1:] if not a.startswith("--")]
batch, reps = (int(args[0]) if args else 8), (int(args[1]) if len(args) > 1 else 3)
threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else os.cpu_count()
torch.set_num_threads(threads)
torch.manual_seed(0)
model = ModifiedResNet([3, 4, 6, 3], 1024, 32, image_size=224, width=64).train()
images, r = torch.randn(batch, 3, 224, 224), torch.randn(batch, 1024)


def run():
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    out = model(images)
    fwd = time.perf_counter() - t0
    (out * r).sum().backward()
    return fwd, time.perf_counter() - t0


run()
fwd, total = sorted((run() for _ in range(reps)), key=lambda t: t[1])[reps // 2]
print(json.dumps({"case": "rn50_fwd_bwd", "impl": f"torch-{torch.__version__}", "batch": batch, "image": 224,
                  "threads": threads, "forward_s": round(fwd, 3), "total_s": round(total, 3),
                  "stat": f"median of {reps}"}))
