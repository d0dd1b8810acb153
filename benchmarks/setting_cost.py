"""What a training step costs in each setting of the generality study (``paper/generality.md``),
as a ratio to the seed setting measured in the same run: the budget of that study is planned from
these ratios and the protocol's records (steps per run, ms per step in the seed setting).

    python benchmarks/setting_cost.py                 # one thread, 3 repeats of 60 steps each
    python benchmarks/setting_cost.py --steps 100 --repeats 5

Each repeat times every setting once, interleaved (the machine may be shared); a step includes its
share of the evaluations (every 100 steps, as in the protocol: ``--steps`` ≥ 100 times one). The
median over repeats is the result. Writes ``build/benchmarks/setting_cost.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from lrdlib.core.machine import processor
from lrdlib.core.recipes import Setting, recipe_config
from lrdlib.core.training import run

# the settings of the generality study: one axis at a time from the seed setting, and the two steps
# outside the measured range
SETTINGS = ("seed", "p=59", "p=97", "p=211", "p=401", "width=64", "width=256", "width=512", "depth=1", "depth=4",
            "lr_scale=1/3", "lr_scale=3", "batch=256", "batch=1024", "op=quad")


def time_steps(setting: Setting, steps: int) -> float:
    """Seconds per step of LRD (α 0.01, λₒ 1) in ``setting`` at fraction 0.5, early stop off."""
    cfg = recipe_config("LRD", 0.01, 1.0, train_frac=0.5, seed=0, steps=steps, setting=setting).replace(
        early_stop=False, observe=0)
    t0 = time.perf_counter()
    run(cfg, progress=False)
    return (time.perf_counter() - t0) / steps


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.steps < 1 or a.repeats < 1:
        ap.error(f"--steps {a.steps} --repeats {a.repeats}: expected positive whole numbers")
    torch.set_num_threads(a.threads)
    times: dict[str, list[float]] = {s: [] for s in SETTINGS}
    for _ in range(a.repeats):
        for s in SETTINGS:
            times[s].append(time_steps(Setting.parse(s), a.steps))
    base = statistics.median(times["seed"])
    rows = [{"setting": s, "ms_per_step": 1e3 * statistics.median(t), "min_ms": 1e3 * min(t),
             "ratio_to_seed": statistics.median(t) / base} for s, t in times.items()]
    for r in rows:
        print(f"{r['setting']:>13}: {r['ms_per_step']:7.1f} ms/step (min {r['min_ms']:.1f}), {r['ratio_to_seed']:.2f}× the seed setting")
    out = Path("build/benchmarks/setting_cost.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"processor": processor(), "threads": a.threads, "steps": a.steps, "repeats": a.repeats,
                               "rows": rows}, indent=1) + "\n")
    print(f"wrote {out} ({processor()}, {a.threads} thread(s))")
