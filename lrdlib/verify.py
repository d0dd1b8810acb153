"""``make verify``: retrain a random sample of the committed runs and compare their histories.

A run's history (loss and accuracy at every evaluation) is a deterministic function of its
config on a given device type, torch version and thread count. ``verify`` retrains ``n`` stored
runs chosen at random (the sample and its seed printed), each with the thread count it was made
with, compacts the new record as the store does, and reports per run whether every value of
the history is equal, or the largest difference and the first step where they part.

To keep the check short, a run is replayed for its first ``max_steps`` steps only (rounded down
to an evaluation step; 0: the whole run) and compared on the evaluations up to there. A run's
budget only bounds its loop (no schedule depends on it), so the prefix of the replay is the
prefix of the original run, value for value.
"""
from __future__ import annotations

import random
import time
from collections.abc import Sequence

HISTORY = ("train_loss", "train_acc", "val_loss", "val_acc")


def compare_histories(stored: dict, new: dict) -> dict:
    """``{"equal": bool, "max_abs_diff", "first_step_differing", "steps_to_grok": (stored, new)}``."""
    a, b = stored["history"], new["history"]
    out = {"equal": a == b, "max_abs_diff": 0.0, "first_step_differing": None,
           "steps_to_grok": (stored.get("steps_to_grok"), new.get("steps_to_grok"))}
    if a["step"] != b["step"]:
        out["first_step_differing"] = next((x for x, y in zip(a["step"], b["step"]) if x != y),
                                           min(a["step"][-1], b["step"][-1]))
        out["max_abs_diff"] = float("inf")
        return out
    for k in HISTORY:
        for step, x, y in zip(a["step"], a[k], b[k]):
            d = abs(x - y) if x is not None and y is not None else (0.0 if x is y else float("inf"))
            if d > 0 and (out["first_step_differing"] is None or step < out["first_step_differing"]):
                out["first_step_differing"] = step
            out["max_abs_diff"] = max(out["max_abs_diff"], d)
    return out


def _retrain(cfg_dict: dict, threads: int, steps: int) -> dict:
    import torch

    from .config import RunConfig
    from .training import run

    torch.set_num_threads(threads)
    rec, _ = run(RunConfig.from_dict(cfg_dict).replace(steps=steps))
    return rec


def replay_steps(record: dict, max_steps: int) -> int:
    """How many steps of ``record`` to replay: all (``max_steps`` 0 or more than it ran), else
    ``max_steps`` rounded down to an evaluation step (at least one evaluation interval)."""
    ran, every = record["steps_run"], record["config"]["eval_every"]
    if max_steps <= 0 or max_steps >= ran:
        return record["config"]["steps"] if ran == record["config"]["steps"] else ran
    return max(every, max_steps // every * every)


def prefix(record: dict, last_step: int) -> dict:
    """``record`` with its history cut after ``last_step``."""
    h = record["history"]
    k = sum(1 for s in h["step"] if s <= last_step)
    return {**record, "history": {key: v[:k] for key, v in h.items()}}


def verify(n: int = 3, seed: int | None = None, max_steps: int = 1000, store=None) -> list[dict]:
    """Retrain ``n`` random stored runs (their first ``max_steps`` steps, in a fresh process) and
    compare their histories; returns one row per run."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from .store import ResultStore, compact

    store = store or ResultStore()
    import torch

    here = {"cpu"} | ({"cuda"} if torch.cuda.is_available() else set())
    ok = [r for r in store.records() if r.get("status") == "ok"]
    recs = [r for r in ok if str(r["config"].get("device", "cpu")).split(":")[0] in here]
    if len(recs) < len(ok):
        print(f"verify: {len(ok) - len(recs)} stored runs were made on a device this machine lacks; sampling among the "
              f"other {len(recs)}")
    if not recs:
        raise ValueError(f"no stored run in {store.root}: nothing to verify (train some with `make paper-runs`)")
    seed = int(time.time()) % 100_000 if seed is None else seed
    sample = random.Random(seed).sample(sorted(recs, key=lambda r: r["key"]), min(n, len(recs)))
    print(f"verify: {len(sample)} of {len(recs)} stored runs, each replayed for its first "
          f"{max_steps if max_steps > 0 else 'all'} steps (sample seed {seed}; repeat with --seed {seed})")
    rows = []
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        steps = [replay_steps(r, max_steps) for r in sample]
        futs = [ex.submit(_retrain, r["config"], r.get("threads") or 1, k) for r, k in zip(sample, steps)]
        for r, k, f in zip(sample, steps, futs):
            t0 = time.time()
            new = compact(f.result())
            c = compare_histories(prefix(r, k), prefix(new, k))
            cfg = r["config"]
            label = (f"{r['key']} ({cfg['optim']['kind']}, decay {cfg['decay']['kind']} {cfg['decay']['strength']:g}, "
                     f"wd {cfg['optim']['weight_decay']:g}, frac {cfg['task']['train_frac']:g}, seed {cfg['seed']}, "
                     f"{k} of its {r['steps_run']} steps replayed, {r.get('threads') or 1} thread(s))")
            verdict = ("identical history" if c["equal"] else
                       f"DIFFERS: max |Δ| {c['max_abs_diff']:.3g}, first at step {c['first_step_differing']}, "
                       f"steps to grok {c['steps_to_grok'][0]} stored vs {c['steps_to_grok'][1]} now")
            print(f"  {label}: {verdict} [{time.time() - t0:.0f} s]", flush=True)
            rows.append({"key": r["key"], **c})
    same_device = {r.get("device") for r in sample}
    print(f"{sum(x['equal'] for x in rows)}/{len(rows)} identical (stored on {', '.join(map(str, same_device))}; "
          f"torch {sample[0].get('torch')}); differences are expected across devices, torch versions and thread counts")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Retrain a random sample of committed runs; compare their histories.")
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-steps", type=int, default=1000, help="replay this many steps of each run (0: all)")
    a = ap.parse_args(argv)
    if a.n < 1:
        raise SystemExit(f"-n {a.n}: expected at least 1")
    rows = verify(a.n, a.seed, a.max_steps)
    return 0 if all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
