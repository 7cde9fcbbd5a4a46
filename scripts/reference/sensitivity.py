"""Negative controls for train_reference.py: perturb one detail of the replay and show that the comparison
with our run notices it (usage: python sensitivity.py [EXPORT_DIR], 60 steps each, f32)."""
import json, os, sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_reference as T
EXPORT = sys.argv[1] if len(sys.argv) > 1 else '/tmp/refexport'
ours = [json.loads(l) for l in open(os.path.join(EXPORT, 'ours.jsonl'))]
orig_lr, orig_decays, orig_loss = T.lr_at, T.decays, T.contrastive_loss
def run(label):
    ref = T.train(EXPORT, torch.float32, 60, 4, log=lambda *a: None)
    _, s1, s2 = T.compare(ours, ref, label, 50)
    print(f"{label:40s} 0-49: loss {s1['loss_max']:.1e} gn {s1['gn_max']:.1e} | 50-59: loss {s2['loss_max']:.1e} gn {s2['gn_max']:.1e}", flush=True)
run("unperturbed")
T.lr_at = lambda r, k: orig_lr(r, k + 1); run("lr of step k+1"); T.lr_at = orig_lr
T.decays = lambda n, s, d: orig_decays(n, s, True); run("embeddings decayed (OpenClip)"); T.decays = orig_decays
T.contrastive_loss = lambda x, y, s, k, b, l: orig_loss(x, y, s, k, b * 1.01, l); run("beta x1.01"); T.contrastive_loss = orig_loss
T.contrastive_loss = lambda x, y, s, k, b, l: orig_loss(x, y, s, k, b, "mean") * 2 / 30; run("mean*2/30 (same value, s fixed)"); T.contrastive_loss = orig_loss
