"""Grokking in about a minute on a laptop CPU: L2 and LRD side by side (``make demo``).

``python -m lrdlib.demo`` trains a + b mod ``p`` on half of the pairs twice, once with L2 weight
decay on every parameter (λ = 1) and once with LRD on W_Q, W_K (α = 0.01) and the same weight
decay on the other parameters, each until its validation accuracy has stayed at ≥ 0.99 for
``hold`` steps. A bar per run shows the loss and the accuracies as it trains; at the end it prints
the step at which each run grokked and writes the two accuracy curves to ``build/demo.png``. The
runs are not cached: this is the loop itself, live. The setting is the smallest one that grokked
for every seed tried with both methods (``DEMO``; the search is in ``benchmarks/demo_setting.py``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from lrdlib.core.config import RunConfig, seed_config  # noqa: E402
from lrdlib.core.training import run  # noqa: E402

DEMO = {"p": 97, "train_frac": 0.5, "steps": 2500, "eval_every": 100, "hold": 300}


def demo_configs(seed: int = 0, p: int = DEMO["p"], steps: int = DEMO["steps"]) -> dict[str, RunConfig]:
    """The two runs of the demo: ``{"L2": ..., "LRD": ...}``, the other parameters' decay matched (λ = 1)."""
    kw = dict(train_frac=DEMO["train_frac"], seed=seed, steps=steps, p=p, eval_every=DEMO["eval_every"],
              early_stop=True, grok_hold=DEMO["hold"])
    return {"L2": seed_config("L2", 1.0, **kw),
            "LRD": seed_config("LRD", 0.01, **kw).replace(optim__weight_decay=1.0)}


def main(argv: list[str] | None = None) -> dict[str, dict]:
    ap = argparse.ArgumentParser(prog="python -m lrdlib.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--p", type=int, default=DEMO["p"], help="the modulus (a prime)")
    ap.add_argument("--steps", type=int, default=DEMO["steps"], help="the budget of each run")
    ap.add_argument("--out", type=Path, default=Path("build/demo.png"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)   # a small model: a second thread mostly waits (and a busy machine's other core stays free)
    records, t0 = {}, time.time()
    for name, cfg in demo_configs(args.seed, args.p, args.steps).items():
        records[name], _ = run(cfg, progress=True, desc=f"{name:3s}")
        g = records[name]["steps_to_grok"]
        print(f"{name}: " + (f"grokked at step {g}" if g is not None else f"no grok within {cfg.steps} steps")
              + f" ({time.time() - t0:.0f} s so far)", flush=True)
    fig, ax = plt.subplots(figsize=(5, 3), constrained_layout=True)
    for name, rec in records.items():
        h = rec["history"]
        ax.plot(h["step"], h["train_acc"], ls=":", color="C0" if name == "L2" else "C1", label=f"{name} train")
        ax.plot(h["step"], h["val_acc"], color="C0" if name == "L2" else "C1", label=f"{name} validation")
    ax.set(xlabel="step", ylabel="accuracy", title=f"a + b mod {args.p}, half of the pairs, seed {args.seed}")
    ax.legend(fontsize=7)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=150)
    print(f"accuracy curves: {args.out}")
    return records


if __name__ == "__main__":
    main()
