"""What fusing buys: Newton-Schulz evaluations and time per step for

    LRD + AdamW   (seed LRD: AdamW on everything, decoupled W ← W − α NS(W) on Q/K)
    LRD + Muon    (torch.optim.Muon on Q/K with its own weight decay off, + decoupled LRD)
    Luon          (fused: W ← W − η NS(μM + G + λW) on Q/K, AdamW elsewhere)

in the seed configuration (batch 512, fp32), in one run. Two times per arm: the optimiser +
decay part alone (gradients fixed, the part fusing changes) and the whole training step. NS
evaluations are counted by wrapping lrdlib's and torch.optim.Muon's NS functions.

    python benchmarks/optimizer_cost.py [--steps 100] [--device cpu]

Writes build/benchmarks/optimizer_cost.json (read by notebook 06).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.optim._muon as torch_muon

import lrdlib.core.decay as decay_mod
import lrdlib.core.optim as optim_mod
from lrdlib import seed_config
from lrdlib.core.data import make_split
from lrdlib.core.decay import apply_decay, make_decay
from lrdlib.core.machine import processor
from lrdlib.core.model import build_model
from lrdlib.core.optim import OptimConfig, build_optimizers, split_targets
from lrdlib.core.training import BatchSampler, train_step

ARMS = {
    "LRD + AdamW": lambda: seed_config("LRD", 0.005),
    "LRD + Muon": lambda: seed_config("LRD", 0.005).replace(optim=OptimConfig(kind="muon", weight_decay=0.1)),
    "Luon": lambda: seed_config("Luon", 0.5),
}


class NSCounter:
    """Counts matrices orthogonalised by lrdlib's and torch.optim.Muon's Newton-Schulz."""

    def __init__(self):
        self.n = 0

    def __enter__(self):
        # decay and optim each import newton_schulz by name: patch both bindings
        self._orig = (decay_mod.newton_schulz, optim_mod.newton_schulz, torch_muon._zeropower_via_newtonschulz)

        def wrap(fn):
            def counted(W, *a, **k):
                self.n += W[..., 0, 0].numel()
                return fn(W, *a, **k)
            return counted

        decay_mod.newton_schulz, optim_mod.newton_schulz = wrap(self._orig[0]), wrap(self._orig[1])
        torch_muon._zeropower_via_newtonschulz = wrap(self._orig[2])
        return self

    def __exit__(self, *exc):
        decay_mod.newton_schulz, optim_mod.newton_schulz, torch_muon._zeropower_via_newtonschulz = self._orig


def setup(arm: str, device: str):
    cfg = ARMS[arm]().replace(device=device)
    split = make_split(cfg.task, device)
    model = build_model(cfg.model, 0, device)
    opts = build_optimizers(model, cfg.optim, cfg.targets)
    dec = make_decay(cfg.decay)
    targets = [p for _, p in split_targets(model, cfg.targets)[0]]
    return cfg, split, model, opts, dec, targets


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_it(fn, n, device, warmup=5):
    for _ in range(warmup):
        fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return 1000 * (time.perf_counter() - t) / n


def measure(arm: str, steps: int, device: str) -> dict:
    cfg, split, model, opts, dec, targets = setup(arm, device)
    sampler = BatchSampler(len(split.y_train), cfg.batch_size, 0, torch.device(device))
    counter = {"s": 0}

    def full():
        counter["s"] += 1
        idx = sampler.next()
        train_step(model, opts, dec, targets, split.x_train[idx], split.y_train[idx], counter["s"])

    full()  # gradients exist from here on

    def opt_only():
        for o in opts:
            o.step()
        apply_decay(dec, targets, 1)

    with NSCounter() as c:
        opt_only()
    ns_per_step = c.n
    return {"arm": arm, "ns_matrices_per_step": ns_per_step, "n_targets": len(targets),
            "optimizer_ms": time_it(opt_only, steps, device), "step_ms": time_it(full, steps, device)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="build/benchmarks/optimizer_cost.json")
    a = ap.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {a.device}: CUDA is not available on this machine")
    dev_name = processor(a.device) or "cpu"
    print(f"device: {a.device} ({dev_name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    runs = {arm: [] for arm in ARMS}
    for _ in range(a.repeats):  # interleaved repeats
        for arm in ARMS:
            runs[arm].append(measure(arm, a.steps, a.device))
    rows = []
    for arm, rs in runs.items():
        rows.append({"arm": arm, "ns_matrices_per_step": rs[0]["ns_matrices_per_step"], "n_targets": rs[0]["n_targets"],
                     "optimizer_ms": statistics.median(r["optimizer_ms"] for r in rs),
                     "step_ms": statistics.median(r["step_ms"] for r in rs)})
    by = {r["arm"]: r for r in rows}
    ratios = {"optimizer: (LRD + Muon) / Luon": by["LRD + Muon"]["optimizer_ms"] / by["Luon"]["optimizer_ms"],
              "step: (LRD + Muon) / Luon": by["LRD + Muon"]["step_ms"] / by["Luon"]["step_ms"],
              "step: (LRD + AdamW) / Luon": by["LRD + AdamW"]["step_ms"] / by["Luon"]["step_ms"]}
    for r in rows:
        print(f"{r['arm']:12s} NS per step: {r['ns_matrices_per_step']} matrices ({r['n_targets']} targets)   "
              f"optimizer+decay {r['optimizer_ms']:6.2f} ms   whole step {r['step_ms']:6.2f} ms")
    for k, v in ratios.items():
        print(f"ratio {k}: {v:.2f}x")
    res = dict(device=a.device, device_name=dev_name, torch=torch.__version__, steps=a.steps, repeats=a.repeats,
               rows=rows, ratios=ratios)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
