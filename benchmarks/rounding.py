"""How much of a grokking time is rounding: one seed-setting run trained several ways that are
the same mathematics and differ only in floating-point rounding.

    eager 1 thread       (how process-pool workers train: the reference)
    eager 2 threads      (how a notebook trains in-process on this machine)
    compiled 1 thread    (RunConfig(compile=True): torch.compile's fused kernels)

Per variant: steps-to-grok (two evaluations in a row ≥ 0.99, and lasting to the end of the run),
final validation accuracy, and how far its history is from the reference's (largest |Δ| of the
validation accuracy and loss, first evaluation where they differ). A difference in steps-to-grok
between these variants is the smallest one that can mean nothing; notebook 03 prints it beside
the spread over seeds.

    python benchmarks/rounding.py [--method LRD] [--steps 4000] [--eval-every 50] [--seed 0] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from lrdlib import seed_config
from lrdlib.analysis.survival import outcome
from lrdlib.core.training import run
from lrdlib.runs.verify import compare_histories

VARIANTS = {"eager 1 thread": (False, 1), "eager 2 threads": (False, 2), "compiled 1 thread": (True, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="LRD", choices=["L2", "LRD", "Luon"])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-frac", type=float, default=0.5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    ap.add_argument("--out", default="build/benchmarks/rounding.json")
    a = ap.parse_args()
    base = seed_config(a.method, train_frac=a.train_frac, seed=a.seed, steps=a.steps, eval_every=a.eval_every,
                       device=a.device)
    chosen = [v.strip() for v in a.variants.split(",")]
    bad = [v for v in chosen if v not in VARIANTS]
    if bad:
        raise SystemExit(f"--variants {bad}: valid: {', '.join(VARIANTS)}")
    rows, ref = [], None
    for name in chosen:
        compiled, threads = VARIANTS[name]
        torch.set_num_threads(threads)
        rec, _ = run(base.replace(compile=compiled))
        o = outcome(rec)
        ref = ref or rec
        d = compare_histories(ref, rec)
        rows.append({"variant": name, "compile": compiled, "threads": threads, "steps_to_grok": rec["steps_to_grok"],
                     "lasting_grok": o["time"] if o["event"] else None, "final_val_acc": rec["final_val_acc"],
                     "identical_to_reference": d["equal"], "max_abs_diff": d["max_abs_diff"],
                     "first_step_differing": d["first_step_differing"], "ms_per_step": rec["ms_per_step"]})
        print(f"{name}: steps to grok {rec['steps_to_grok']}, final val acc {rec['final_val_acc']:.4f}, "
              f"max |Δ| vs reference {d['max_abs_diff']:.3g} (first at step {d['first_step_differing']})", flush=True)
    out = {"variants": a.variants,
           "method": a.method, "steps": a.steps, "eval_every": a.eval_every, "seed": a.seed, "train_frac": a.train_frac,
           "device": a.device, "device_name": platform.processor() or "cpu", "torch": torch.__version__, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
