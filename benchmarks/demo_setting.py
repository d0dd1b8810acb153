"""The setting of ``make demo``: the smallest modulus at which both demo arms (L2 λ 1 on every
parameter; LRD α 0.01 on W_Q, W_K and λ 1 on the rest, ``lrdlib.demo.demo_configs``) grok for
every seed tried within the demo's budget, and how long each run takes here (one thread).

    python benchmarks/demo_setting.py [--p 59 97 113] [--seeds 0 1 2] [--out FILE]

Writes one row per run (modulus, seed, arm, steps to grok, steps run, seconds) and the machine to
``paper/results/benchmarks/demo_setting.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from lrdlib.core.machine import processor
from lrdlib.core.training import run
from lrdlib.demo import demo_configs

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--p", type=int, nargs="+", default=[59, 97, 113])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("paper/results/benchmarks/demo_setting.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for p in args.p:
        for seed in args.seeds:
            for arm, cfg in demo_configs(seed, p).items():
                t = time.perf_counter()
                rec, _ = run(cfg, progress=False)
                rows.append({"p": p, "seed": seed, "arm": arm, "steps_to_grok": rec["steps_to_grok"],
                             "steps_run": rec["steps_run"], "seconds": round(time.perf_counter() - t, 1),
                             "final_val_acc": round(rec["history"]["val_acc"][-1], 4)})
                print(json.dumps(rows[-1]), flush=True)
    grokked = {p: all(r["steps_to_grok"] is not None for r in rows if r["p"] == p) for p in args.p}
    out = {"machine": {"processor": processor("cpu"), "python": platform.python_version(), "torch": torch.__version__,
                       "threads": 1}, "budget": demo_configs()["L2"].steps, "rows": rows,
           "all_grok": {str(p): ok for p, ok in grokked.items()},
           "smallest_p_all_grok": min((p for p, ok in grokked.items() if ok), default=None)}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"smallest modulus at which every run grokked: {out['smallest_p_all_grok']}; {args.out}")
