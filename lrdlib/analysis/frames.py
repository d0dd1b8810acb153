"""Run records → tidy pandas tables (one row per run × evaluation step), and the
summaries every chapter reports: steps-to-grok per arm (median, range, share grokked).

``records`` arguments are ``{arm label: [record, ...]}`` with one record per seed. A ``failed``
record (a run that raised, as ``run_sweep(return_records=True)`` returns it) has no history:
the frames skip it and ``grok_table`` counts it in its ``failed`` column, not among the seeds.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from lrdlib.analysis.survival import lasting_grok, outcome
from lrdlib.runs.store import spectra_steps

Records = dict[str, list[dict]]


def _trained(recs: list[dict]) -> list[dict]:
    return [r for r in recs if r.get("status") != "failed"]


def _frame(records: Records, per_run) -> pd.DataFrame:
    """Concatenate ``per_run(record) -> [(matrix or None, frame with a step column)]`` over
    every trained record, with arm, seed (and matrix) columns in front."""
    rows = []
    for arm, recs in records.items():
        for r in _trained(recs):
            for matrix, df in per_run(r):
                if matrix is not None:
                    df.insert(0, "matrix", matrix)
                df.insert(0, "seed", r["config"]["seed"])
                df.insert(0, "arm", arm)
                rows.append(df)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def history_frame(records: Records) -> pd.DataFrame:
    """arm, seed, step, train/val loss and accuracy (null values of a diverged run: NaN)."""
    return _frame(records, lambda r: [(None, pd.DataFrame(r["history"]))])


def spectra_frame(records: Records) -> pd.DataFrame:
    """arm, seed, matrix, step, stable_rank, entropy_rank, nuc_over_fro, fro, sigma1."""
    def per_run(r):
        for name, s in r["spectra"].items():
            df = pd.DataFrame({k: s[k] for k in ("stable_rank", "entropy_rank", "nuc_over_fro", "fro")})
            df["sigma1"] = [t[0] for t in s["top_sv"]]
            df.insert(0, "step", spectra_steps(r)[: len(df)])
            yield name, df
    return _frame(records, per_run)


def tangential_frame(records: Records) -> pd.DataFrame:
    """arm, seed, matrix, step and, per target matrix, the radial/tangential norms of the task
    gradient, the optimiser's update, the decay's displacement and the whole update, and the
    angles per step and in total (see ``lrdlib.core.training``)."""
    def per_run(r):
        t = r["tangential"]
        for name in r["targets"]:
            df = pd.DataFrame(t[name])
            df.insert(0, "step", t["step"][: len(df)])
            yield name, df
    return _frame(records, per_run)


def grok_table(records: Records) -> pd.DataFrame:
    """Per arm: seeds, seeds with a lasting grok (``lrdlib.analysis.survival.lasting_grok``), steps to it per
    seed, their median and range (grokked seeds only), groks that collapsed (fell below the floor
    after reaching the threshold; ``survival.outcome``), and the median final validation accuracy."""
    out = []
    for arm, all_recs in records.items():
        recs = _trained(all_recs)
        steps = [lasting_grok(r) for r in recs]
        ok = [s for s in steps if s is not None]
        out.append({
            "arm": arm,
            "seeds": len(recs),
            "grokked": len(ok),
            "steps_to_grok": ["—" if s is None else s for s in steps],
            "median": float(np.median(ok)) if ok else np.nan,
            "min": min(ok) if ok else np.nan,
            "max": max(ok) if ok else np.nan,
            "collapsed": sum(bool(outcome(r)["collapsed"]) for r in recs),
            "final_val_acc": float(np.median([r["final_val_acc"] for r in recs])) if recs else np.nan,
            "budget": all_recs[0]["config"]["steps"],
            "diverged": sum(r["status"] == "diverged" for r in recs),
            "failed": len(all_recs) - len(recs),
        })
    return pd.DataFrame(out).set_index("arm")


def srank_at(record: dict, step: int) -> tuple[int, float]:
    """(s, mean stable rank of the record's target matrices at s), s the last evaluation of the
    spectra at or before ``step`` (a compact record keeps only some evaluations)."""
    steps = spectra_steps(record)
    i = max((j for j, s in enumerate(steps) if s <= step), default=None)
    if i is None:
        raise ValueError(f"step={step!r} is before the record's first spectra evaluation ({steps[:1]})")
    return steps[i], float(np.mean([m["stable_rank"][i] for m in record["spectra"].values()]))


def first_step_below(df: pd.DataFrame, column: str, threshold: float) -> float:
    """The first step at which ``column`` < threshold (NaN if never); df sorted by step."""
    hit = df.loc[df[column] < threshold, "step"]
    return float(hit.iloc[0]) if len(hit) else float("nan")


def records_cost(records) -> dict:
    """What a set of run records cost to train, from the records themselves: ``runs``, ``steps``
    (summed), ``train_seconds`` (the runs' own wall-clock times, summed; on k workers the wall time
    was about a k-th of it) and ``devices`` / ``by_device`` (runs per device). Failed records count
    as runs with no steps."""
    recs = list(records)
    by = Counter(str(r["device"]) for r in recs if r.get("device"))
    return {"runs": len(recs), "steps": int(sum(r.get("steps_run") or 0 for r in recs)),
            "train_seconds": round(float(sum(r.get("wall_time_s") or 0.0 for r in recs)), 1),
            "devices": sorted(by), "by_device": dict(sorted(by.items()))}
