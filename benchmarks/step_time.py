"""Milliseconds per training step of the seed configuration (batch 512, fp32) for L2, LRD and
Luon: lrdlib's loop, eager and compiled (``RunConfig(compile=True)``, ``lrdlib.core.model.compile_model``),
against the seed-style reference loop (``seed_reference.py``), in the same run, from the same
initial weights. Prints the ratio reference/lrdlib per method and mode.

    python benchmarks/step_time.py                  # CPU, 3 repeats of 100 steps
    python benchmarks/step_time.py --modes eager    # skip the compiled loop
    python benchmarks/step_time.py --device cuda
    python benchmarks/step_time.py --methods LRD --steps 60

The machine may be shared: the loops are interleaved, the median over repeats is the result and
the fastest repeat (``min``) is printed beside it.

The compiled loop's one-off compilation is timed separately (``compile_s``) and kept out of
the per-step time; it is paid once per process and (model shape, batch size).

Before timing, both loops are run for a few steps on the same minibatches and their weights
compared, so the timed computation is the same arithmetic (the max abs difference is printed).
Results also go to build/benchmarks/step_time.json (read by notebooks and the paper).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_reference import RefTransformer, load_from_lrdlib, reference_batches, reference_setup, reference_step  # noqa: E402

from lrdlib import seed_config  # noqa: E402
from lrdlib.core.data import make_split  # noqa: E402
from lrdlib.core.decay import make_decay  # noqa: E402
from lrdlib.core.machine import processor  # noqa: E402
from lrdlib.core.model import build_model, compile_model  # noqa: E402
from lrdlib.core.optim import build_optimizers, split_targets  # noqa: E402
from lrdlib.core.training import BatchSampler, train_step  # noqa: E402


def lrdlib_loop(method: str, device: str, compiled: bool = False):
    cfg = seed_config(method, device=device, compile=compiled)
    split = make_split(cfg.task, device)
    model = build_model(cfg.model, 0, device)
    net = compile_model(model) if compiled else model
    opts = build_optimizers(model, cfg.optim, cfg.targets)
    decay = make_decay(cfg.decay)
    targets = [p for _, p in split_targets(model, cfg.targets)[0]]
    sampler = BatchSampler(len(split.y_train), cfg.batch_size, 0, torch.device(device))
    state = {"step": 0}

    def train_on(x, y):
        state["step"] += 1
        m = net if len(y) == cfg.batch_size else model   # as lrdlib.training does
        return train_step(m, opts, decay, targets, x, y, state["step"])

    def step():
        idx = sampler.next()
        return train_on(split.x_train[idx], split.y_train[idx])

    return cfg, split, model, train_on, step


def reference_loop(method: str, device: str, init_state: dict, split, strength: float):
    ref = RefTransformer().to(device)
    load_from_lrdlib(ref, init_state)
    opts, decay = reference_setup(ref, method, strength)
    batches = reference_batches(split.x_train.cpu(), split.y_train.cpu())

    def step():
        x, y = next(batches)
        return reference_step(ref, opts, decay, x.to(device), y.to(device))

    return ref, opts, decay, step


def same_arithmetic(method: str, device: str, cfg, split, model, train_on, n: int = 5) -> tuple[float, float]:
    """(max |W_lrdlib − W_ref| after n steps on identical minibatches from identical weights, the
    first step's seconds: the one-off compilation of a compiled loop). Leaves the loop n steps on."""
    ref, ropts, rdecay, _ = reference_loop(method, device, model.state_dict(), split, _strength(cfg, method))
    g = torch.Generator().manual_seed(1)
    first = None
    for _s in range(1, n + 1):
        idx = torch.randint(len(split.y_train), (cfg.batch_size,), generator=g).to(device)
        x, y = split.x_train[idx], split.y_train[idx]
        _sync(device)
        t = time.perf_counter()
        train_on(x, y)
        _sync(device)
        first = time.perf_counter() - t if first is None else first
        reference_step(ref, ropts, rdecay, x, y)
    mine = {k.replace("mlp.fc_in", "mlp.0").replace("mlp.fc_out", "mlp.2"): v for k, v in model.state_dict().items()}
    return max((mine[k].reshape(v.shape) - v).abs().max().item() for k, v in ref.state_dict().items()), first


def _strength(cfg, method):
    return {"L2": cfg.optim.weight_decay, "LRD": cfg.decay.strength, "Luon": cfg.optim.luon_lambda}[method]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(step, n: int, device: str, warmup: int = 10) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(n):
        step()
    _sync(device)
    return 1000 * (time.perf_counter() - t) / n


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100, help="timed steps per repeat (default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats, interleaved; the median is reported")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--methods", default="L2,LRD,Luon")
    ap.add_argument("--modes", default="eager,compiled", help="lrdlib loops to time: eager, compiled or both")
    ap.add_argument("--out", default="build/benchmarks/step_time.json")
    a = ap.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {a.device}: CUDA is not available on this machine")
    methods = a.methods.split(",")
    dev_name = processor(a.device) or "cpu"
    print(f"device: {a.device} ({dev_name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    modes = a.modes.split(",")
    bad = [x for x in modes if x not in ("eager", "compiled")]
    if bad:
        ap.error(f"--modes {a.modes}: unknown {bad}; valid: eager, compiled")
    rows = []
    for m in methods:
        steps, diffs, compile_s = {}, {}, {}
        for mode in modes:
            cfg, split, model, train_on, step = lrdlib_loop(m, a.device, mode == "compiled")
            init = {k: t.clone() for k, t in model.state_dict().items()}
            diffs[mode], first = same_arithmetic(m, a.device, cfg, split, model, train_on)
            compile_s[mode] = first if mode == "compiled" else None   # kept out of the step time
            steps[mode] = step
        *_, rstep = reference_loop(m, a.device, init, split, _strength(cfg, m))
        times = {mode: [] for mode in modes}
        refs = []
        for _ in range(a.repeats):   # interleaved, so a slow spell of the machine hits every loop
            for mode in modes:
                times[mode].append(time_steps(steps[mode], a.steps, a.device))
            refs.append(time_steps(rstep, a.steps, a.device))
        r = statistics.median(refs)
        for mode in modes:
            o, c = statistics.median(times[mode]), compile_s[mode]
            rows.append(dict(method=m, mode=mode, lrdlib_ms=o, reference_ms=r, ratio=r / o,
                             max_abs_weight_diff_5_steps=diffs[mode], lrdlib_all=times[mode], reference_all=refs,
                             compile_s=c))
            extra = f", compilation {c:.1f} s once" if c is not None else ""
            print(f"{m:5s} {mode:8s} lrdlib {o:7.2f} ms/step (min {min(times[mode]):6.2f})   reference {r:7.2f} "
                  f"ms/step (min {min(refs):6.2f})   ratio {r / o:5.2f}x   "
                  f"(same arithmetic: max |ΔW| after 5 steps = {diffs[mode]:.1e}{extra})", flush=True)
    res = dict(device=a.device, device_name=dev_name, torch=torch.__version__, threads=torch.get_num_threads(),
               steps=a.steps, repeats=a.repeats, rows=rows)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
