"""Runs per hour of a fixed grid of seed-setting runs, end to end (every evaluation, early
stop, process start-up and record writing included), for each way of running a sweep:

  reference   the seed-style loop (``seed_reference.py``: an nn.Module computing every
              position, a DataLoader over per-item tensors, decay matrix by matrix), run after
              run, with the seed's own schedule: evaluate on the validation DataLoader every
              200 steps and stop once validation accuracy > 0.99 twice in a row;
  sequential  ``run_sweep(configs)``: lrdlib's loop, run after run, in this process;
  process     ``run_sweep(configs, executor="process")``: a pool of one worker per core, one
              torch thread each;

(The stacked many-runs-in-one-model mode was removed with ``lrdlib.batched``: on this CPU it was
slower than the process pool, and no GPU measurement justified keeping a second training loop.)

``--compile`` gives every lrdlib run ``compile=True`` (``lrdlib.core.model.compile_model``: full batches through
``torch.compile``; each process compiles once, and that time is part of its wall time).

Every lrdlib mode uses the seed's schedule too (``eval_every=200``, ``early_stop=True``) and a
fresh cache folder, so nothing is reused. Grids:

  small  2 fractions × 2 rates × {L2, LRD}, 1 seed (8 runs; ``--steps`` default 300)
  seed   the seed repository's phase diagram: fractions 0.3-0.8 × rates 1e-4…5e-2 (L2 at
         10 × rate, LRD at rate), 1 seed, 2500 steps (72 runs)

On the ``seed`` grid the reference would take hours, so by default it is *sampled*: a few of
its runs (``--ref-runs``, spread over both methods and the fraction range) are timed for at
most ``--ref-steps`` steps each, giving the reference's cost per step (evaluations included)
per method, and the reference's total is extrapolated as Σ over all runs of that cost × the
steps the run takes under the early-stop rule — taken from lrdlib's run of the same config
(same rule; the seed's own trajectory may stop a few hundred steps earlier or later). The
JSON says which numbers are measured and which extrapolated. ``--ref-runs 0`` times every
reference run in full.

    python benchmarks/sweep_throughput.py                          # small grid, all modes, CPU
    python benchmarks/sweep_throughput.py --grid seed              # the target: ratio ≥ 3 on 2 cores
    python benchmarks/sweep_throughput.py --grid seed --modes process,reference --compile
    python benchmarks/sweep_throughput.py --grid seed --device cuda --modes sequential,reference

Results: build/benchmarks/sweep_throughput.json. Timings on a machine shared with other work
are unreliable (a multi-threaded run waits for its threads, and a busy co-tenant delays one of
them every time): rerun when quiet. ``--threads 1`` makes the in-process modes and the reference
single-threaded, which is robust to that but not what they would use on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_reference import (  # noqa: E402
    PairDataset,  # noqa: E402
    RefTransformer,
    load_from_lrdlib,
    reference_batches,
    reference_setup,
    reference_step,
)
from torch.utils.data import DataLoader  # noqa: E402

from lrdlib import seed_config  # noqa: E402
from lrdlib.core.data import make_split  # noqa: E402
from lrdlib.core.machine import processor  # noqa: E402
from lrdlib.core.model import build_model  # noqa: E402
from lrdlib.runs.cache import RunCache  # noqa: E402
from lrdlib.runs.sweep import run_sweep  # noqa: E402

GRIDS = {
    "small": dict(fractions=[0.3, 0.6], rates=[1e-3, 1e-2], steps=300),
    "seed": dict(fractions=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8], rates=[1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2], steps=2500),
}
SEED_EVAL_EVERY = 200


def grid_runs(grid: str, steps: int) -> list[tuple[str, float, float]]:
    """(method, strength, train fraction) in the seed's loop order (fraction, rate, L2 then LRD)."""
    g = GRIDS[grid]
    return [(m, r * 10 if m == "L2" else r, f) for f in g["fractions"] for r in g["rates"] for m in ("L2", "LRD")]


def lrdlib_configs(runs, steps: int, device: str, compiled: bool = False):
    return [seed_config(m, s, train_frac=f, seed=0, steps=steps, eval_every=SEED_EVAL_EVERY, early_stop=True,
                        device=device, compile=compiled) for m, s, f in runs]


# --------------------------------------------------------------------------- the seed-style reference
def reference_run(method: str, strength: float, frac: float, steps: int, device: str, max_steps: int | None = None) -> dict:
    """One run of the seed-style loop with the seed's evaluation and early stop. Returns the
    wall time, the steps run, and whether it stopped early."""
    cfg = seed_config(method, strength, train_frac=frac, seed=0, steps=steps)
    split = make_split(cfg.task)
    ref = RefTransformer().to(device)
    load_from_lrdlib(ref, build_model(cfg.model, 0).state_dict())
    t0 = time.perf_counter()
    opts, decay = reference_setup(ref, method, strength)
    batches = reference_batches(split.x_train, split.y_train)
    val = DataLoader(PairDataset(split.x_val, split.y_val), batch_size=1024)
    qk = [p for n, p in ref.named_parameters() if "q_proj" in n or "k_proj" in n]
    high, step, stopped = 0, 0, False
    limit = steps if max_steps is None else min(steps, max_steps)
    for step in range(limit):
        x, y = next(batches)
        reference_step(ref, opts, decay, x.to(device), y.to(device))
        if step % SEED_EVAL_EVERY == 0:
            ref.eval()
            corr = tot = 0
            with torch.no_grad():
                for vx, vy in val:
                    corr += (ref(vx.to(device)).argmax(-1) == vy.to(device)).sum().item()
                    tot += len(vy)
                for W in qk:  # the seed also computes the Q/K stable rank at each evaluation
                    S = torch.linalg.svdvals(W.detach().float())
                    (S.pow(2).sum() / S[0] ** 2).item()
            ref.train()
            high = high + 1 if corr / tot > 0.99 else 0
            if high >= 2:
                stopped = True
                break
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"wall_s": time.perf_counter() - t0, "steps": step + 1, "stopped_early": stopped}


def run_reference(runs, steps: int, device: str, sample: int, ref_steps: int, lrdlib_steps: list[int] | None) -> dict:
    if sample <= 0 or sample >= len(runs):
        rs = [reference_run(m, s, f, steps, device) for m, s, f in runs]
        return {"wall_s": sum(r["wall_s"] for r in rs), "measured": True, "runs_timed": len(rs),
                "ms_per_step": 1000 * sum(r["wall_s"] for r in rs) / sum(r["steps"] for r in rs),
                "steps_total": sum(r["steps"] for r in rs)}
    if lrdlib_steps is None:
        raise SystemExit("sampling the reference needs the steps each run takes: include an lrdlib mode "
                         "(sequential or process) or pass --ref-runs 0 to time every reference run")
    # spread the sample over both methods and the fraction range
    idx = np.unique(np.linspace(0, len(runs) - 1, sample).round().astype(int))
    per_method: dict[str, list] = {}
    for i in idx:
        m, s, f = runs[i]
        r = reference_run(m, s, f, steps, device, max_steps=ref_steps)
        per_method.setdefault(m, []).append(r)
        print(f"  reference sample {m:4s} strength {s:g} fraction {f}: {r['steps']} steps, "
              f"{1000 * r['wall_s'] / r['steps']:.1f} ms/step")
    cost = {m: sum(r["wall_s"] for r in rs) / sum(r["steps"] for r in rs) for m, rs in per_method.items()}
    total = sum(cost[m] * n for (m, _, _), n in zip(runs, lrdlib_steps))
    return {"wall_s": total, "measured": False, "runs_timed": int(len(idx)), "steps_per_timed_run": ref_steps,
            "ms_per_step_by_method": {m: 1000 * c for m, c in cost.items()}, "steps_total": int(sum(lrdlib_steps)),
            "note": "extrapolated: per-method reference cost per step (sampled runs, evaluations included) × the "
                    "steps each run takes under the early-stop rule (from lrdlib's run of the same config)"}


# --------------------------------------------------------------------------- lrdlib modes
def run_mode(mode: str, configs, workers: int | None) -> tuple[float, list[dict]]:
    with tempfile.TemporaryDirectory(prefix=f"sweep-bench-{mode}-") as d:
        kw = dict(cache=RunCache(d), progress=False, return_records=True)
        t0 = time.perf_counter()
        if mode == "sequential":
            _, recs = run_sweep(configs, **kw)
        elif mode == "process":
            _, recs = run_sweep(configs, executor="process", workers=workers, **kw)
        else:
            raise ValueError(mode)
        if configs[0].device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0, recs


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", choices=list(GRIDS), default="small")
    ap.add_argument("--steps", type=int, default=None, help="step budget per run (default: the grid's)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--modes", default="sequential,process,reference")
    ap.add_argument("--workers", type=int, default=None, help="process pool size (default: one per core)")
    ap.add_argument("--ref-runs", type=int, default=None,
                    help="reference runs to time (spread over the grid) and extrapolate from; 0 = time all "
                         "(default: all for small, 6 for seed)")
    ap.add_argument("--ref-steps", type=int, default=400, help="steps per sampled reference run (default 400)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of the in-process modes and the reference (default: torch's, one per core)")
    ap.add_argument("--compile", action="store_true", help="lrdlib runs with compile=True (torch.compile)")
    ap.add_argument("--out", default="build/benchmarks/sweep_throughput.json")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {a.device}: CUDA is not available on this machine")
    modes = [m for m in a.modes.split(",") if m]
    bad = set(modes) - {"sequential", "process", "reference"}
    if bad:
        ap.error(f"unknown mode(s) {sorted(bad)}")
    steps = a.steps or GRIDS[a.grid]["steps"]
    runs = grid_runs(a.grid, steps)
    configs = lrdlib_configs(runs, steps, a.device, a.compile)
    dev_name = processor(a.device) or "cpu"
    print(f"device: {a.device} ({dev_name}), {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; grid {a.grid}: {len(runs)} runs, budget {steps} steps, "
          f"evaluation every {SEED_EVAL_EVERY} steps, early stop (val acc ≥ 0.99 twice)"
          + ("; lrdlib runs compiled" if a.compile else ""))

    results: dict[str, dict] = {}
    lr_steps = None
    for mode in [m for m in modes if m != "reference"]:
        wall, recs = run_mode(mode, configs, a.workers)
        failed = [r for r in recs if r["status"] == "failed"]
        if failed:
            print(f"  {mode}: {len(failed)} runs failed: {failed[0]['error']}")
        done = [r for r in recs if r["status"] != "failed"]
        lr_steps = lr_steps or [r["steps_run"] for r in recs]
        results[mode] = {"wall_s": wall, "runs_per_hour": 3600 * len(runs) / wall, "measured": True,
                         "steps_total": int(sum(r["steps_run"] for r in done)),
                         "grokked": int(sum(r["grokked"] for r in done)), "failed": len(failed),
                         "mean_ms_per_step_in_runs": float(np.mean([r["ms_per_step"] for r in done]))}
        print(f"{mode:10s} {wall:8.1f} s  {results[mode]['runs_per_hour']:8.1f} runs/h  "
              f"({results[mode]['steps_total']} steps in all, {results[mode]['grokked']} runs grokked)")
    if "reference" in modes:
        sample = a.ref_runs if a.ref_runs is not None else (0 if a.grid == "small" else 6)
        r = run_reference(runs, steps, a.device, sample, a.ref_steps, lr_steps)
        r["runs_per_hour"] = 3600 * len(runs) / r["wall_s"]
        results["reference"] = r
        print(f"{'reference':10s} {r['wall_s']:8.1f} s  {r['runs_per_hour']:8.1f} runs/h  "
              f"({'measured' if r['measured'] else 'extrapolated from ' + str(r['runs_timed']) + ' sampled runs'})")
    ref = results.get("reference")
    if ref:
        for r in results.values():
            r["speedup_vs_reference"] = ref["wall_s"] / r["wall_s"]
        print("end-to-end speed-up over the seed-style sequential loop: " +
              ", ".join(f"{m} {r['speedup_vs_reference']:.2f}x" for m, r in results.items() if m != "reference"))
    sources = {}
    if "sequential" in results:
        seq = results["sequential"]
        sources["early_stop_share_of_budget"] = seq["steps_total"] / (steps * len(runs))
        if "process" in results:
            sources["process_pool_over_sequential"] = seq["wall_s"] / results["process"]["wall_s"]
        if ref:
            ref_ms = ref.get("ms_per_step") or float(np.mean(list(ref["ms_per_step_by_method"].values())))
            sources["per_step_reference_over_sequential"] = ref_ms / (1000 * seq["wall_s"] / seq["steps_total"])
    if sources:
        print("sources: " + ", ".join(f"{k} {v:.2f}" for k, v in sources.items()))
    res = dict(device=a.device, device_name=dev_name, cores=os.cpu_count(), torch=torch.__version__,
               threads=torch.get_num_threads(), grid=a.grid, runs=len(runs), steps=steps, compile=a.compile,
               eval_every=SEED_EVAL_EVERY, modes=results, sources=sources,
               time=time.strftime("%Y-%m-%d %H:%M:%S"))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
