"""Run records → tidy pandas tables (one row per run × evaluation step), and the
summaries every chapter reports: steps-to-grok per arm (median, range, share grokked).

``records`` arguments are ``{arm label: [record, ...]}`` with one record per seed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

Records = dict[str, list[dict]]


def history_frame(records: Records) -> pd.DataFrame:
    """arm, seed, step, train/val loss and accuracy."""
    rows = []
    for arm, recs in records.items():
        for r in recs:
            h = pd.DataFrame(r["history"])
            h.insert(0, "seed", r["config"]["seed"])
            h.insert(0, "arm", arm)
            rows.append(h)
    return pd.concat(rows, ignore_index=True)


def spectra_frame(records: Records) -> pd.DataFrame:
    """arm, seed, step, matrix, stable_rank, entropy_rank, nuc_over_fro, fro, sigma1."""
    rows = []
    for arm, recs in records.items():
        for r in recs:
            steps = r["history"]["step"]
            for name, s in r["spectra"].items():
                df = pd.DataFrame({k: s[k] for k in ("stable_rank", "entropy_rank", "nuc_over_fro", "fro")})
                df["sigma1"] = [t[0] for t in s["top_sv"]]
                df.insert(0, "step", steps[: len(df)])
                df.insert(0, "matrix", name)
                df.insert(0, "seed", r["config"]["seed"])
                df.insert(0, "arm", arm)
                rows.append(df)
    return pd.concat(rows, ignore_index=True)


def tangential_frame(records: Records) -> pd.DataFrame:
    """arm, seed, step, matrix and the radial/tangential norms of the task gradient, the
    decay's displacement and the whole update (see ``lrdlib.train``)."""
    rows = []
    for arm, recs in records.items():
        for r in recs:
            t = r["tangential"]
            for name in r["targets"]:
                df = pd.DataFrame(t[name])
                df.insert(0, "step", t["step"][: len(df)])
                df.insert(0, "matrix", name)
                df.insert(0, "seed", r["config"]["seed"])
                df.insert(0, "arm", arm)
                rows.append(df)
    return pd.concat(rows, ignore_index=True)


def grok_table(records: Records) -> pd.DataFrame:
    """Per arm: seeds, grokked seeds, steps-to-grok per seed, median and range (grokked
    seeds only), and the median final validation accuracy."""
    out = []
    for arm, recs in records.items():
        steps = [r["steps_to_grok"] for r in recs]
        ok = [s for s in steps if s is not None]
        out.append({
            "arm": arm,
            "seeds": len(recs),
            "grokked": len(ok),
            "steps_to_grok": ["—" if s is None else s for s in steps],
            "median": float(np.median(ok)) if ok else np.nan,
            "min": min(ok) if ok else np.nan,
            "max": max(ok) if ok else np.nan,
            "final_val_acc": float(np.median([r["final_val_acc"] for r in recs])),
            "budget": recs[0]["config"]["steps"],
            "diverged": sum(r["status"] == "diverged" for r in recs),
        })
    return pd.DataFrame(out).set_index("arm")


def first_step_below(df: pd.DataFrame, column: str, threshold: float) -> float:
    """The first step at which ``column`` < threshold (NaN if never); df sorted by step."""
    hit = df.loc[df[column] < threshold, "step"]
    return float(hit.iloc[0]) if len(hit) else float("nan")
