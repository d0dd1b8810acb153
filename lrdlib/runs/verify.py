"""``make verify``: retrain a random sample of the committed runs and compare their histories.

A run's history (loss and accuracy at every evaluation) is a deterministic function of its
config on a given device type, torch version and thread count. ``verify`` retrains ``n`` stored
runs chosen at random (the sample and its seed printed), each with the thread count it was made
with, compacts the new record as the store does, and reports per run whether every value of
the history is equal, or the largest difference and the first step where they part.

The histories are compared on the kind of processor that made them: every record names its
``processor`` (``lrdlib.core.machine``), and ``verify`` samples among the runs made on this machine's
processor (``any_processor=True``: among all). On another model of CPU the kernels round
differently and a replayed history parts from the stored one within a few hundred steps; that is
a measurement of rounding sensitivity, not a failure of determinism, and the report says which
processor made each run.

To keep the check short, a run is replayed for its first ``max_steps`` steps only (rounded down
to an evaluation step; 0: the whole run) and compared on the evaluations up to there. A run's
budget only bounds its loop (no schedule depends on it), so the prefix of the replay is the
prefix of the original run, value for value.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import random
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from lrdlib.core.config import RunConfig
from lrdlib.core.grok import steps_to_grok
from lrdlib.core.machine import processor
from lrdlib.core.training import run, strict_json
from lrdlib.runs.halving import PROTOCOL_SEEDS
from lrdlib.runs.paths import repo_root
from lrdlib.runs.store import ResultStore, compact

HISTORY = ("train_loss", "train_acc", "val_loss", "val_acc")


def history_grok(record: dict) -> int | None:
    """Steps to grok from ``record``'s history as it stands (a prefix included), by its config's
    threshold and hold: the same rule on both sides of a comparison of prefixes."""
    cfg, h = record.get("config", {}), record["history"]
    return steps_to_grok(h["step"], h["val_acc"], cfg.get("grok_threshold", 0.99), cfg.get("grok_hold", 0))


def compare_histories(stored: dict, new: dict) -> dict:
    """``{"equal": bool, "max_abs_diff", "first_step_differing", "steps_to_grok": (stored, new)}``;
    the steps to grok are those of the two histories as given (``history_grok``), so two prefixes
    of the same length compare like for like."""
    a, b = stored["history"], new["history"]
    out = {"equal": a == b, "max_abs_diff": 0.0, "first_step_differing": None,
           "steps_to_grok": (history_grok(stored), history_grok(new))}
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


def torch_version() -> str:
    return torch.__version__


def log_check(path: Path, entry: dict) -> None:
    """Append one check, as strict JSON (a difference of ``inf`` is written as null), to the JSON-lines
    log ``path`` (``make verify``: ``build/verify.jsonl``, git-ignored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(strict_json(entry), sort_keys=True, allow_nan=False) + "\n")


def _made_here(record: dict) -> bool:
    return record.get("processor") is not None and record["processor"] == processor(record["config"].get("device", "cpu"))


def _why_not(record: dict) -> str:
    """Why ``record`` cannot be replayed exactly on this machine."""
    if not _device_here(record):
        return f"made on {record['config']['device']}, which this machine lacks"
    if record.get("processor") is None:
        return "name no processor (recorded before records named theirs), so an exact replay cannot be promised"
    return "made on another processor, whose kernels round differently"


def _device_here(record: dict) -> bool:
    kind = str(record["config"].get("device", "cpu")).split(":")[0]
    return kind == "cpu" or (kind == "cuda" and torch.cuda.is_available())


def _observed(record: dict) -> bool:
    """A run of the protocol or of the generality study: an observation window after the grok, on
    one of the protocol's search or evaluation seeds (notebook 07's crossed runs have other seeds)."""
    return record["config"].get("observe", 0) > 0 and record["config"]["seed"] in PROTOCOL_SEEDS


def choose(store, n: int, seed: int, keys: Sequence[str] | None = None, any_processor: bool = False,
           observed: bool = False) -> tuple[list, list]:
    """(records to replay, records skipped with the reason): those of ``keys``, or ``n`` drawn with
    ``seed`` among the finished runs made on this machine's processor (on any with
    ``any_processor``; with ``observed`` only among runs with an observation window after the grok,
    those of the protocol and the generality study). A run of a device this machine lacks is
    skipped, never lost mid-way."""
    ok = [r for r in store.records() if r.get("status") == "ok" and (not observed or keys or _observed(r))]
    if keys:
        by_key = {r["key"]: r for r in ok}
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise ValueError(f"keys {missing}: no finished run of that key in {store.root}")
        asked = [by_key[k] for k in keys]
        return [r for r in asked if _device_here(r)], [(r, f"made on {r['config']['device']}, which this machine lacks")
                                                        for r in asked if not _device_here(r)]
    if not ok:
        raise ValueError(f"no stored run in {store.root}: nothing to verify")
    fit = [r for r in ok if _device_here(r) and (any_processor or _made_here(r))]
    if len(fit) < len(ok):
        print(f"verify: {len(fit)} of {len(ok)} stored runs can be replayed exactly here ({processor('cpu')}); skipped: "
              + "; ".join(f"{k} {why}" for why, k in sorted(Counter(_why_not(r) for r in ok if r not in fit).items()))
              + ("" if any_processor else " (--any-processor replays those of another processor anyway)"))
    return random.Random(seed).sample(sorted(fit, key=lambda r: r["key"]), min(n, len(fit))), []


def verify(n: int = 3, seed: int | None = None, max_steps: int = 1000, store=None,
           keys: Sequence[str] | None = None, any_processor: bool = False, log: Path | None = None,
           observed: bool = False) -> list[dict]:
    """Retrain ``n`` random stored runs (their first ``max_steps`` steps, in a fresh process) and
    compare their histories; returns one row per run. ``keys`` replays those runs instead;
    ``any_processor`` samples among runs made on any processor (see the module docstring);
    ``observed`` among the protocol's and the generality study's runs only (``choose``); ``log``
    (a JSON-lines file; ``make verify``: ``build/verify.jsonl``, git-ignored) gets one line for the check (``log_check``)."""
    if not isinstance(max_steps, int) or max_steps < 0:
        raise ValueError(f"max_steps={max_steps!r}: expected a whole number of steps >= 0 (0: the whole run)")
    store = store or ResultStore()
    seed = int(time.time()) % 100_000 if seed is None else seed
    sample, skipped = choose(store, n, seed, keys, any_processor, observed)
    for r, why in skipped:
        print(f"verify: skipped {r['key']}: {why}")
    if not sample and not keys:
        return determinism_here(store, seed, max_steps, observed)
    how = "the runs asked for" if keys else f"{len(sample)} stored runs (sample seed {seed}; repeat with --seed {seed})"
    print(f"verify: {how}, each replayed for its first {max_steps if max_steps > 0 else 'all'} steps, "
          f"here on {processor('cpu')}")
    rows = []
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        steps = [replay_steps(r, max_steps) for r in sample]
        futs = [ex.submit(_retrain, r["config"], r.get("threads") or 1, k) for r, k in zip(sample, steps)]
        for r, k, f in zip(sample, steps, futs):
            t0 = time.time()
            new = compact(f.result(), (r.get("compact") or {}).get("max_points") or store.max_points)
            c = compare_histories(prefix(r, k), prefix(new, k))
            cfg = r["config"]
            label = (f"{r['key']} ({cfg['optim']['kind']}, decay {cfg['decay']['kind']} {cfg['decay']['strength']:g}, "
                     f"wd {cfg['optim']['weight_decay']:g}, frac {cfg['task']['train_frac']:g}, seed {cfg['seed']}, "
                     f"{k} of its {r['steps_run']} steps replayed, {r.get('threads') or 1} thread(s), "
                     f"made on {r.get('processor') or 'an unrecorded processor'})")
            verdict = ("identical history" if c["equal"] else
                       f"DIFFERS: max |Δ| {c['max_abs_diff']:.3g}, first at step {c['first_step_differing']}, "
                       f"steps to grok within them {c['steps_to_grok'][0]} stored vs {c['steps_to_grok'][1]} now")
            print(f"  {label}: {verdict} [{time.time() - t0:.0f} s]", flush=True)
            rows.append({"key": r["key"], "made_here": _made_here(r), **c})
    if log is not None:
        log_check(Path(log), {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "processor": processor("cpu"),
                              "torch": torch_version(), "seed": None if keys else seed, "max_steps": max_steps,
                              "asked": bool(keys), "any_processor": any_processor,
                              "runs": [{"key": r["key"], "made_on": r.get("processor"), "made_here": x["made_here"],
                                        "equal": x["equal"], "max_abs_diff": x["max_abs_diff"],
                                        "first_step_differing": x["first_step_differing"],
                                        "steps_to_grok": list(x["steps_to_grok"])} for r, x in zip(sample, rows)]})
    made = sorted({str(r.get("processor") or "unrecorded processors") for r in sample})
    print(f"{sum(x['equal'] for x in rows)}/{len(rows)} identical (made on {', '.join(made)}; "
          f"torch {sample[0].get('torch')}); differences are expected across processors, devices, torch versions "
          "and thread counts")
    return rows


def determinism_here(store, seed: int, max_steps: int, observed: bool = False) -> list[dict]:
    """Where no stored run was made on this processor: replay one stored run twice here (its first
    ``max_steps`` steps, each in a fresh process) and compare the two replays with each other (the
    same config and seed give the same history on one device); the distance to the stored history
    is printed, as information about rounding across processors, not as a failure."""
    ok = [r for r in store.records() if r.get("status") == "ok" and _device_here(r) and (not observed or _observed(r))]
    r = random.Random(seed).choice(sorted(ok, key=lambda r: r["key"]))
    k = replay_steps(r, max_steps)
    print(f"verify: no stored run was made on this processor ({processor('cpu')}); replaying {r['key']} twice here "
          f"({k} steps, {r.get('threads') or 1} thread(s); sample seed {seed}) to check that it is deterministic here")
    mp_ = r.get("compact", {}).get("max_points") or store.max_points
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        a, b = (compact(ex.submit(_retrain, r["config"], r.get("threads") or 1, k).result(), mp_) for _ in range(2))
    twice, stored = compare_histories(prefix(a, k), prefix(b, k)), compare_histories(prefix(r, k), prefix(a, k))
    same = "identical history" if twice["equal"] else f"DIFFER: max |Δ| {twice['max_abs_diff']:.3g}"
    print(f"  the two replays: {same}; "
          f"against the stored run (made on {r.get('processor')}): max |Δ| {stored['max_abs_diff']:.3g}, first at step "
          f"{stored['first_step_differing']} (rounding of another processor; expected)")
    print(f"{int(twice['equal'])}/1 identical (replayed twice on this processor)")
    return [{"key": r["key"], "made_here": False, **twice}]


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Retrain a random sample of committed runs; compare their histories.")
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-steps", type=int, default=1000, help="replay this many steps of each run (0: all)")
    ap.add_argument("--keys", nargs="+", default=None, help="replay these stored runs instead of a sample")
    ap.add_argument("--any-processor", action="store_true",
                    help="sample among runs made on any processor, not only on this machine's")
    ap.add_argument("--observed", action="store_true",
                    help="sample among the runs with an observation window (the protocol's, the generality study's)")
    ap.add_argument("--log", default=None,
                    help="append the check to this JSON-lines file ('-': none; default: build/verify.jsonl)")
    a = ap.parse_args(argv)
    if a.n < 1:
        raise SystemExit(f"-n {a.n}: expected at least 1")
    if a.max_steps < 0:
        raise SystemExit(f"--max-steps {a.max_steps}: expected a whole number of steps >= 0 (0: the whole run)")
    root = repo_root()
    rows = verify(a.n, a.seed, a.max_steps, keys=a.keys, any_processor=a.any_processor, observed=a.observed,
                  log=None if a.log == "-" else Path(a.log) if a.log else (root or Path.cwd()) / "build" / "verify.jsonl")
    return 0 if all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
