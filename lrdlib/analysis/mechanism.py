"""Learning-rate geometry of the Q/K matrices (notebook 07): the candidate explanation of why LRD
groks, as numbers read from run records.

Under QK-Norm, W_Q and W_K are scale-invariant: only their direction matters, the task gradient is
tangential and scales as 1/‖W‖. Adam's step barely depends on the gradient's scale, so the angle W
turns per step grows as ‖W‖ shrinks. With AdamW's decoupled decay (lr η, wd λ) the norm settles
where the per-step angle is about √(2ηλ) (Kosson et al. 2023; van Laarhoven 2017):

    ‖W‖² (1 − ηλ)² + η²‖u‖² = ‖W‖²  ⇒  ‖W‖ ≈ ‖u‖·√(η / 2λ),  angle ≈ η‖u‖/‖W‖ = √(2ηλ)

(u: Adam's unscaled update, taken orthogonal to W). This module turns records into the per-run
quantities the chapter correlates with steps-to-grok, and builds the arms of its factorial design.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from lrdlib.analysis.survival import by_seed, km_median, outcome, paired_comparison, summarise
from lrdlib.core.config import RunConfig
from lrdlib.core.decay import DecayConfig
from lrdlib.runs.store import spectra_steps

WINDOW = 0.25        # the "equilibrium" window: the last quarter of the steps up to grokking (or the end)
TREATMENTS = ("none", "L2", "LRD", "LRD radial", "fixed norm", "Q/K lr")
CANDIDATES = {"srank": "Q/K stable rank", "norm": "‖W_QK‖_F", "angle_rate": "angular rate (rad/step)",
              "angle_total": "angle travelled (rad)"}


def adamw_equilibrium_angle(lr: float, weight_decay: float) -> float:
    """√(2ηλ): the per-step angle of a scale-invariant matrix under AdamW at equilibrium (0 if λ = 0)."""
    return math.sqrt(2 * lr * weight_decay)


def adamw_equilibrium_norm(lr: float, weight_decay: float, update_norm: float) -> float:
    """‖u‖·√(η/2λ): the equilibrium ‖W‖_F for an unscaled update of norm ‖u‖ (∞ if λ = 0)."""
    return update_norm * math.sqrt(lr / (2 * weight_decay)) if weight_decay > 0 else math.inf


def target_angle_prediction(config: dict) -> float:
    """√(2ηλ) for a record's Q/K under AdamW (η = lr·target_lr_scale, λ = target wd); NaN when the
    targets are not trained by AdamW or have no AdamW decay (the prediction does not apply)."""
    o = config["optim"]
    if o["kind"] != "adamw" or o["target_weight_decay"] == 0 or config["decay"]["kind"] != "none":
        return float("nan")
    return adamw_equilibrium_angle(o["lr"] * o["target_lr_scale"], o["target_weight_decay"])


def qk_arm(base: RunConfig, treatment: str, strength: float, other_wd: float) -> RunConfig:
    """One cell of the factorial design: ``treatment`` on Q/K at ``strength``, AdamW wd ``other_wd``
    on every other parameter (lr, model, task and budget from ``base``).

    none: Q/K wd 0, no decay; L2: AdamW target wd λ; LRD: W −= α·NS(W); LRD radial: its radial
    part alone; fixed norm: ‖W‖_F held at r; Q/K lr: Q/K learning rate × k, no decay (k = 1 ≡ none).
    """
    cfg = base.replace(optim__kind="adamw", optim__weight_decay=other_wd, optim__target_weight_decay=0.0,
                       optim__target_lr_scale=1.0, decay=DecayConfig())
    if treatment == "none":
        return cfg
    if treatment == "L2":
        return cfg.replace(optim__target_weight_decay=strength)
    if treatment == "Q/K lr":
        return cfg.replace(optim__target_lr_scale=strength)
    kinds = {"LRD": "lrd_ns", "LRD radial": "lrd_radial", "fixed norm": "fixed_norm"}
    if treatment not in kinds:
        raise ValueError(f"treatment={treatment!r}; valid: {', '.join(TREATMENTS)}")
    return cfg.replace(decay=DecayConfig(kinds[treatment], strength))


def _qk_mean(store: dict, names: list[str], key: str) -> np.ndarray:
    return np.mean([np.asarray(store[n][key], dtype=float) for n in names], axis=0)


def run_summary(record: dict, window: float = WINDOW) -> dict:
    """Per-run quantities, all averaged over the Q/K matrices of the run (``record["targets"]``).

    T = steps to a lasting grok (``lrdlib.analysis.survival.outcome``: notebook 04's definition) if the run
    grokked, else its last step (censored). Over the evaluations at
    steps in [(1 − window)·T, T]: ``norm`` (mean ‖W‖_F), ``srank`` (mean stable rank), ``angle_rate``
    (mean angle W turned per step). ``angle_total``: total angle travelled from step 0 to T.
    ``final_srank``: stable rank at the last evaluation. ``steps``: steps-to-grok, the budget if censored.
    """
    names, h, tg = record["targets"], record["history"], record["tangential"]
    o = outcome(record)
    budget, grok = record["config"]["steps"], (int(o["time"]) if o["event"] else None)
    hs, ts = np.asarray(spectra_steps(record), dtype=float), np.asarray(tg["step"], dtype=float)
    T = float(grok) if grok is not None else float(h["step"][-1])
    win = (hs >= (1 - window) * T) & (hs <= T)
    fro, sr = _qk_mean(record["spectra"], names, "fro"), _qk_mean(record["spectra"], names, "stable_rank")
    twin = (ts >= (1 - window) * T) & (ts <= T)
    if not twin.any() and (ts <= T).any():   # the window holds no evaluation after step 0: take the last before T
        twin = ts == ts[ts <= T].max()
    rate = _qk_mean(tg, names, "angle_step") if len(ts) else np.array([])
    total = _qk_mean(tg, names, "angle_total") if len(ts) else np.array([])
    upto = ts <= T
    return {"steps_to_grok": grok, "grokked": grok is not None, "budget": budget, "T": T,
            "steps": float(grok) if grok is not None else float(budget),
            "norm": float(fro[win].mean()), "srank": float(sr[win].mean()),
            "angle_rate": float(rate[twin].mean()) if twin.any() else float("nan"),
            "angle_total": float(total[upto][-1]) if upto.any() else 0.0,
            "final_srank": float(sr[-1]), "final_val_acc": record["final_val_acc"]}


def _rowwise_spearman(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Spearman ρ of each row pair of (B, n) arrays (NaN for a constant row)."""
    ry, rx = stats.rankdata(y, axis=1), stats.rankdata(x, axis=1)
    ry, rx = ry - ry.mean(1, keepdims=True), rx - rx.mean(1, keepdims=True)
    den = np.sqrt((ry ** 2).sum(1) * (rx ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ry * rx).sum(1) / den, np.nan)


def rank_correlations(runs: pd.DataFrame, candidates=tuple(CANDIDATES), reference: str = "srank",
                      n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Spearman ρ (scipy) between steps-to-grok and each candidate, one row per candidate.

    ``runs``: one row per run with a ``steps`` column (steps-to-grok, censored runs at the budget:
    ``run_summary``) and a column per candidate. ``gap_lo``/``gap_hi``: the 2.5-97.5 % bootstrap
    interval (runs resampled with replacement) of |ρ_candidate| − |ρ_reference|.
    """
    y = runs["steps"].to_numpy(dtype=float)
    n = len(y)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    ref = np.abs(_rowwise_spearman(y[idx], runs[reference].to_numpy(dtype=float)[idx]))
    rows = []
    for c in candidates:
        x = runs[c].to_numpy(dtype=float)
        rho, p = stats.spearmanr(y, x) if n > 2 and np.ptp(x) > 0 and np.ptp(y) > 0 else (np.nan, np.nan)
        gap = np.abs(_rowwise_spearman(y[idx], x[idx])) - ref
        lo, hi = np.nanquantile(gap, [0.025, 0.975]) if np.isfinite(gap).any() else (np.nan, np.nan)
        rows.append({"candidate": c, "label": CANDIDATES.get(c, c), "rho": float(rho), "p": float(p), "n": n,
                     "gap_lo": float(lo), "gap_hi": float(hi)})
    return pd.DataFrame(rows).set_index("candidate")


def luon_lambda_ratio(record: dict) -> pd.DataFrame:
    """Per evaluation step (mean over Q/K): λ‖W‖_F/‖G‖_F, the share of the fused gradient G + λW
    that the decay term carries (> 1: λW outweighs the task gradient), and the angular rate."""
    names, tg = record["targets"], record["tangential"]
    lam = record["config"]["optim"]["luon_lambda"]
    hs = spectra_steps(record)
    at = [hs.index(s) for s in tg["step"]]   # every angle evaluation has its spectra (also after compaction)
    rows = []
    for n in names:
        fro = np.asarray(record["spectra"][n]["fro"], dtype=float)[at]
        g = np.hypot(np.asarray(tg[n]["grad_rad"], dtype=float), np.asarray(tg[n]["grad_tan"], dtype=float))
        rows.append(pd.DataFrame({"step": tg["step"], "matrix": n, "ratio": lam * fro / g,
                                  "angle_rate": tg[n]["angle_step"]}))
    return pd.concat(rows).groupby("step", as_index=False)[["ratio", "angle_rate"]].mean()


# ---------------------------------------------------------------- own best strengths and Luon's λ (notebooks 05, 06)
def best_row(own, arm) -> dict:
    """One arm of ``lrdlib.runs.own_best.search_arms`` at its own best strength: the strength,
    ``at_edge`` (at that edge of the strengths searched), ``best_by_accuracy`` (no strength grokked
    at the search seed), ``lrdlib.analysis.survival.summarise`` over its seeds there, the search's summary."""

    s = own.searches[arm]
    return {"best_strength": s.best_strength, "at_edge": s.at_edge, "best_by_accuracy": not s.best.event,
            **summarise(s.final(), own.design.n_boot), "search": s.summary()}


def matched_vs_best_row(own, arm) -> dict:
    """One arm at its centre (matched) strength and at its own best, same budget and seeds: ``matched``
    and ``best`` (``summarise``), and ``best_vs_matched`` (``paired_comparison`` of best against matched)."""

    s, m, n_boot = own.searches[arm], own.at_centre(arm), own.design.n_boot
    return {"arm": arm, "matched_strength": own.centres[arm], "best_strength": s.best_strength, "at_edge": s.at_edge,
            "best_by_accuracy": not s.best.event, "matched": summarise(m, n_boot), "best": summarise(s.final(), n_boot),
            "best_vs_matched": paired_comparison(by_seed(s.final()), by_seed(m), n_boot=n_boot, seed=0), "search": s.summary()}


def own_best_pair(own, a, b, **extra) -> dict:
    """Arm ``a`` against ``b``, each at its own best strength: their Kaplan-Meier medians (``inf``:
    beyond the budget) and ``paired_comparison`` over their common seeds (the row
    ``lrdlib.analysis.verdicts.faster_at_own_best`` reads); ``extra`` entries after ``a``, ``b``."""

    def median(trials):
        ok = [t for t in trials if t.status != "failed"]
        return km_median([t.time for t in ok], [t.event for t in ok]) if ok else math.nan

    fa, fb = own.final(a), own.final(b)
    return {"a": a, "b": b, **extra, "a_median": median(fa), "b_median": median(fb),
            **paired_comparison(by_seed(fa), by_seed(fb), n_boot=own.design.n_boot, seed=0)}


def luon_ratio_frame(records: dict) -> pd.DataFrame:
    """``luon_lambda_ratio`` of every trained record of ``{arm: [record]}``, with arm, seed and ``lam`` columns."""
    return pd.concat([luon_lambda_ratio(r).assign(arm=a, seed=r["config"]["seed"], lam=r["config"]["optim"]["luon_lambda"])
                      for a, rs in records.items() for r in rs if r.get("status") != "failed"], ignore_index=True)


def luon_crossover(ratios: pd.DataFrame) -> pd.DataFrame:
    """Per λ > 0 of ``luon_ratio_frame``: the median over seeds of λ‖W‖_F/‖G‖_F at the first and
    the last evaluation, and the first step at which it exceeds 1 (the decay term outweighs the
    task gradient in Luon's momentum; None: never)."""
    rows = []
    for lam, g in ratios[ratios.lam > 0].groupby("lam"):
        med = g.groupby("step").ratio.median()
        cross = med[med > 1]
        rows.append({"λ": lam, "λ‖W‖/‖G‖ first": med.iloc[0], "last": med.iloc[-1],
                     "crossover step (first > 1)": cross.index[0] if len(cross) else None})
    return pd.DataFrame(rows)
