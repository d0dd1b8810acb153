"""Does a hand-written kernel pay? The whole training step of the seed configuration (batch 512,
fp32), with lrdlib's hand-written ``short_attention`` against ``F.scaled_dot_product_attention``
in its place, eager and compiled, interleaved in one process (same machine state for both), from
the same initial weights and the same minibatches.

The project keeps a custom kernel only if the whole step is > 10 % slower without it.

    python benchmarks/kernels.py                      # LRD, 5 repeats of 40 steps
    python benchmarks/kernels.py --method L2 --repeats 7

Prints ms/step (median and min over repeats) per variant and mode and the per-repeat ratio
plain/hand-written; writes build/benchmarks/kernels.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import lrdlib.core.model as M
from lrdlib import seed_config
from lrdlib.core.data import make_split
from lrdlib.core.decay import make_decay
from lrdlib.core.optim import build_optimizers, split_targets
from lrdlib.core.training import BatchSampler, train_step

HAND = M._attention


def sdpa(q, k, v, heads):
    """The plain alternative: F.scaled_dot_product_attention on head-split tensors."""
    B, Tq, d = q.shape
    def split(t):
        return t.view(B, t.shape[1], heads, d // heads).transpose(1, 2)
    return F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(B, Tq, d)


VARIANTS = {"hand-written": HAND, "sdpa": sdpa}


def loop(cfg, variant: str, compiled: bool):
    """A function running n full-batch training steps of a fresh model with ``variant``."""
    M._attention = VARIANTS[variant]
    torch._dynamo.reset()
    split = make_split(cfg.task)
    model = M.build_model(cfg.model, 0)
    net = M.compile_model(model) if compiled else model
    opts = build_optimizers(model, cfg.optim, cfg.targets)
    dec = make_decay(cfg.decay)
    targets = [p for _, p in split_targets(model, cfg.targets)[0]]
    sampler = BatchSampler(len(split.y_train), cfg.batch_size, 0, "cpu")

    def steps(n: int) -> None:
        M._attention = VARIANTS[variant]
        done = 0
        while done < n:
            idx = sampler.next()
            if len(idx) == cfg.batch_size:
                done += 1
                train_step(net, opts, dec, targets, split.x_train[idx], split.y_train[idx], done)
    steps(3)  # warm-up (and compilation)
    return steps


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="LRD", choices=["L2", "LRD", "Luon"])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default="eager,compiled")
    ap.add_argument("--device", default="cpu", help="cpu only (the loop here is CPU-timed)")
    ap.add_argument("--out", default="build/benchmarks/kernels.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = seed_config(a.method)
    rows = []
    for mode in a.modes.split(","):
        runners = {v: loop(cfg, v, mode == "compiled") for v in VARIANTS}
        times = {v: [] for v in VARIANTS}
        for _ in range(a.repeats):
            for v, run in runners.items():
                t = time.perf_counter()
                run(a.steps)
                times[v].append((time.perf_counter() - t) / a.steps * 1000)
        ratio = [p / h for p, h in zip(times["sdpa"], times["hand-written"])]
        for v in VARIANTS:
            print(f"{a.method:4s} {mode:8s} {v:12s} {statistics.median(times[v]):7.2f} ms/step (min {min(times[v]):6.2f})")
        print(f"{a.method:4s} {mode:8s} sdpa / hand-written per repeat: {' '.join(f'{r:.3f}' for r in ratio)}  "
              f"median {statistics.median(ratio):.3f}")
        rows.append({"mode": mode, "ms": {v: times[v] for v in VARIANTS}, "ratio_median": statistics.median(ratio)})
    M._attention = HAND
    res = {"device": a.device, "method": a.method, "threads": a.threads, "steps": a.steps, "repeats": a.repeats,
           "torch": torch.__version__, "rows": rows}
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
