"""Learning-rate geometry of the Q/K matrices (notebook 07): the candidate explanation of why LRD
groks, as numbers read from run records.

Under QK-Norm, W_Q and W_K are scale-invariant: only their direction matters, the task gradient is
tangential and scales as 1/‖W‖. Adam's step barely depends on the gradient's scale, so the angle W
turns per step grows as ‖W‖ shrinks. With AdamW's decoupled decay (lr η, wd λ) the norm settles
where the per-step angle is about √(2ηλ) (Kosson et al. 2023; van Laarhoven 2017):

    ‖W‖² (1 − ηλ)² + η²‖u‖² = ‖W‖²  ⇒  ‖W‖ ≈ ‖u‖·√(η / 2λ),  angle ≈ η‖u‖/‖W‖ = √(2ηλ)

(u: Adam's unscaled update, taken orthogonal to W). This module turns records into the per-run
quantities the chapter correlates with steps-to-grok, and builds the arms of its factorial design
and of the crossed intervention (fixed norm r × Q/K learning-rate factor k).

**Sign flips.** A step that turns W by θ > π/2 has flipped W's sign (⟨W, W′⟩ < 0): LRD's step
W − α·U Vᵀ = −U(α − Σ)Vᵀ once every σᵢ < α, LRD radial's (1 − α·c)·W once α·c > 1. W and −W span
one line, so the angle that measures how far W's direction moved is the *line angle*
φ = min(θ, π − θ) (``line_angle``; the training loop records it per step as ``angle_line`` since the
line-angle meter was added; ``angle_series`` derives it for older records and says where the
derivation is exact). Under QK-Norm, W_Q and W_K of one layer flipped together leave every
attention score unchanged; one alone flips the scores' sign (``flip_summary`` counts such steps).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from scipy import stats

from lrdlib.analysis.survival import by_seed, km_median, outcome, paired_comparison, summarise
from lrdlib.core.config import RunConfig, seed_config
from lrdlib.core.decay import DecayConfig
from lrdlib.runs.cache import RunCache
from lrdlib.runs.profiles import run_cache
from lrdlib.runs.store import spectra_steps, store_dir
from lrdlib.runs.sweep import run_sweep

WINDOW = 0.25        # the "equilibrium" window: the last quarter of the steps up to grokking (or the end)
TREATMENTS = ("none", "L2", "LRD", "LRD radial", "fixed norm", "Q/K lr")
CANDIDATES = {"srank": "Q/K stable rank", "norm": "‖W_QK‖_F", "angle_rate": "line angle per step (rad)",
              "angle_total": "line angle travelled (rad)"}
MEASURES = {   # every single quantity a record measures before T (``run_summary``): the moonshot's candidates
    "srank": "Q/K stable rank", "norm": "‖W_QK‖_F", "angle_rate": "line angle per step", "angle_total": "line angle travelled",
    "entropy_rank": "Q/K entropy rank", "nuc_over_fro": "‖W‖_*/‖W‖_F", "sigma1": "largest singular value",
    "angle_rate_raw": "whole-step angle per step", "angle_total_raw": "whole-step angle travelled",
    "angle_opt": "optimiser's angle per step", "opt_tan": "optimiser's tangential step",
    "grad_tan": "task gradient's tangential norm", "decay_rad": "decay's radial step",
    "final_srank": "Q/K stable rank at the end",
}


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


# ---------------------------------------------------------------- the line angle (sign-invariant) and flips
FLIP = math.pi / 2   # a whole step that turns W by more than this flipped W's sign (⟨W, W′⟩ < 0)


def line_angle(theta) -> np.ndarray:
    """φ = min(θ, π − θ) ∈ [0, π/2]: the angle between the lines of W and W′ for the angle θ ∈ [0, π]
    between W and W′ (clipped: a θ rounded above π gives 0, not a negative angle)."""
    t = np.asarray(theta, dtype=float)
    return np.clip(np.minimum(t, np.pi - t), 0.0, FLIP)


def _per_matrix(tg: dict, names: list[str], key: str, n: int) -> np.ndarray:
    """(matrices, evaluations) array of one recorded series; NaN where a record does not have it."""
    if not all(key in tg[m] for m in names):
        return np.full((len(names), n), np.nan)
    return np.array([tg[m][key] for m in names], dtype=float).reshape(len(names), n)


def _line_total(steps: np.ndarray, theta: np.ndarray, total: np.ndarray) -> np.ndarray:
    """One matrix's running line-angle total at its kept evaluations, from its recorded θ̄ per
    evaluation and running θ total (``angle_series``, records without ``angle_line_total``)."""
    s, a = np.concatenate([[0.0], steps]), np.concatenate([[0.0], total])
    span = np.diff(s)
    with np.errstate(invalid="ignore", divide="ignore"):
        flipped = (theta > FLIP) | (np.diff(a) / span > FLIP)
    if not flipped.any():
        return total.copy()
    f = int(np.argmax(flipped))
    out = total.copy()
    out[f:] = a[f] + np.cumsum(span[f:] * line_angle(theta[f:]))
    return out


def angle_series(record: dict) -> dict:
    """The angles W_Q, W_K turn, per matrix (rows: ``record["targets"]``) and kept evaluation
    (columns: ``step``): ``theta`` θ̄, the mean whole-step angle per step over the evaluation
    interval that ends there; ``line`` φ̄, the mean per-step line angle min(θ, π − θ);
    ``line_total`` the line angle travelled from step 0; ``flipped`` θ̄ > π/2 (W's sign flipped in
    most steps of the interval, when the steps that do not flip turn by little); ``exact``.

    A record made with the line-angle meter (``angle_line``, ``angle_line_total``): φ̄ and its
    total as recorded (``exact`` True). An older record (θ̄ and its running total only): per
    interval φ̄ = min(θ̄, π − θ̄). Since φ ≤ θ and φ ≤ π − θ step by step, min(θ̄, π − θ̄) ≥ φ̄, with
    equality when every step of the interval lies on one side of π/2 (none flips, or every one
    does: LRD's steady flipping); on an interval that mixes the two it is an upper bound. Its
    total: the recorded θ total up to the kept evaluation before the matrix's first flipping span
    (a span whose θ̄ or mean θ from the totals exceeds π/2; exact when no step before it flipped),
    then each kept evaluation adds (steps since the kept evaluation before) × its φ̄ (a rectangle
    rule: a thinned record keeps one interval of each span; exact where nothing was thinned). The
    θ total is not differenced there: at the store's 4 significant digits a flipping run's total of
    thousands of radians is known to ±0.5-5 rad, more than a span's line angle. In a flipping
    interval θ̄ ≈ 3.141 leaves φ̄ known to ±5·10⁻⁴ rad.
    """
    tg, names = record["tangential"], record["targets"]
    steps = np.asarray(tg["step"], dtype=float)
    theta = _per_matrix(tg, names, "angle_step", len(steps))
    exact = all("angle_line" in tg[m] and "angle_line_total" in tg[m] for m in names)
    if exact:
        line, total = _per_matrix(tg, names, "angle_line", len(steps)), _per_matrix(tg, names, "angle_line_total", len(steps))
    else:
        raw = _per_matrix(tg, names, "angle_total", len(steps))
        line = line_angle(theta)
        total = np.array([_line_total(steps, th, tt) for th, tt in zip(theta, raw)]).reshape(theta.shape)
    return {"step": steps, "names": list(names), "theta": theta, "line": line, "line_total": total,
            "flipped": theta > FLIP, "exact": exact}


def _layer_pairs(names: list[str]) -> list[tuple[int, int]]:
    """(i, j) of W_Q and W_K of one layer (names that differ by q_proj ↔ k_proj)."""
    pos = {n: i for i, n in enumerate(names)}
    return [(i, pos[n.replace("q_proj", "k_proj")]) for i, n in enumerate(names)
            if "q_proj" in n and n.replace("q_proj", "k_proj") in pos]


def flip_summary(record: dict, upto: float | None = None) -> dict:
    """Whether W_Q, W_K flip sign, over the kept evaluations up to step ``upto`` (default: all),
    from ``angle_series``'s ``flipped`` (θ̄ > π/2 over an evaluation interval).

    ``flips``: some matrix flipped; ``first_flip``: the first kept evaluation at which one had (the
    flips began after ``flip_after``, the kept evaluation before it; None: never); ``matrices``: how
    many of the Q/K matrices flipped at some evaluation; ``share``: the share of (matrix, evaluation)
    pairs that flipped; ``unpaired``: (layer, evaluation) pairs at which exactly one of W_Q, W_K
    flipped (the attention scores' sign flips with it), None when the targets are not Q/K pairs."""
    return _flips(angle_series(record), upto)


def _flips(a: dict, upto: float | None) -> dict:
    """``flip_summary`` of an ``angle_series``."""
    keep = a["step"] <= (np.inf if upto is None else upto)
    fl, steps = a["flipped"][:, keep], a["step"][keep]
    any_eval = fl.any(axis=0)
    first = int(np.argmax(any_eval)) if any_eval.any() else None
    pairs = _layer_pairs(a["names"])
    return {"flips": bool(any_eval.any()), "first_flip": None if first is None else int(steps[first]),
            "flip_after": None if first is None else (int(steps[first - 1]) if first > 0 else 0),
            "matrices": int(fl.any(axis=1).sum()), "share": float(fl.mean()) if fl.size else 0.0,
            "unpaired": int(sum((fl[i] != fl[j]).sum() for i, j in pairs)) if pairs else None}


def _window(steps: np.ndarray, T: float, window: float) -> np.ndarray:
    """The evaluations in [(1 − window)·T, T]; if none after step 0, the last one before T."""
    win = (steps >= (1 - window) * T) & (steps <= T)
    if not win.any() and (steps <= T).any():
        win = steps == steps[steps <= T].max()
    return win


def _at(series: np.ndarray, sel: np.ndarray) -> float:
    """Mean of a (matrices, evaluations) series over the selected evaluations and the matrices."""
    return float(series[:, sel].mean()) if sel.any() else float("nan")


def run_summary(record: dict, window: float = WINDOW) -> dict:
    """Per-run quantities, all averaged over the Q/K matrices of the run (``record["targets"]``).

    T = steps to a lasting grok (``lrdlib.analysis.survival.outcome``: notebook 04's definition) if
    the run grokked, else its last step (censored). Over the evaluations at steps in
    [(1 − window)·T, T]: ``norm`` (mean ‖W‖_F), ``srank`` (stable rank), ``entropy_rank``,
    ``nuc_over_fro`` (‖W‖_*/‖W‖_F), ``sigma1`` (σ₁); ``angle_rate`` (the sign-invariant line angle
    W turned per step, ``angle_series``), ``angle_rate_raw`` (the whole-step angle θ, which counts a
    sign flip as ≈ π), ``angle_opt`` (the optimiser's part of the step, θ), ``opt_tan`` (its
    tangential size η‖u‖), ``grad_tan`` (‖T(∇L)‖), ``decay_rad`` (the decay's radial displacement).
    ``angle_total``: the line angle travelled from step 0 to T; ``angle_total_raw``: θ travelled.
    ``angle_exact``: the line angles were recorded, not derived. ``flips``, ``first_flip``:
    ``flip_summary`` up to T. ``final_srank``: stable rank at the last evaluation. ``steps``:
    steps-to-grok, the budget if censored.
    """
    names, h, tg = record["targets"], record["history"], record["tangential"]
    o = outcome(record)
    budget, grok = record["config"]["steps"], (int(o["time"]) if o["event"] else None)
    T = float(grok) if grok is not None else float(h["step"][-1])
    hs = np.asarray(spectra_steps(record), dtype=float)
    win = _window(hs, T, window)
    sp = record["spectra"]
    spec = {k: _at(_per_matrix(sp, names, k, len(hs)), win) for k in ("fro", "stable_rank", "entropy_rank", "nuc_over_fro")}
    top = {m: {"s1": [v[0] if v else None for v in sp[m].get("top_sv", [None] * len(hs))]} for m in names}
    spec["sigma1"] = _at(_per_matrix(top, names, "s1", len(hs)), win)
    a = angle_series(record)
    twin, upto = _window(a["step"], T, window), a["step"] <= T
    per = {k: _per_matrix(tg, names, k, len(a["step"])) for k in ("angle_opt", "opt_tan", "grad_tan", "decay_rad")}
    raw_total = _per_matrix(tg, names, "angle_total", len(a["step"]))
    last = lambda x: float(x[:, upto][:, -1].mean()) if upto.any() else 0.0   # noqa: E731
    fl = _flips(a, T)
    return {"steps_to_grok": grok, "grokked": grok is not None, "budget": budget, "T": T,
            "steps": float(grok) if grok is not None else float(budget),
            "norm": spec["fro"], "srank": spec["stable_rank"], "entropy_rank": spec["entropy_rank"],
            "nuc_over_fro": spec["nuc_over_fro"], "sigma1": spec["sigma1"],
            "angle_rate": _at(a["line"], twin), "angle_total": last(a["line_total"]),
            "angle_rate_raw": _at(a["theta"], twin), "angle_total_raw": last(raw_total),
            **{k: _at(np.abs(v), twin) for k, v in per.items()}, "angle_exact": a["exact"],
            "flips": fl["flips"], "first_flip": fl["first_flip"],
            "final_srank": float(_qk_mean(record["spectra"], names, "stable_rank")[-1]),
            "final_val_acc": record["final_val_acc"]}


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


def spearman_table(runs: pd.DataFrame, measures: dict = MEASURES) -> pd.DataFrame:
    """Spearman ρ (scipy) of steps-to-grok (``runs.steps``: censored runs at the budget) with each
    column of ``measures`` over the runs where it is finite: one row per measure (index) with
    ``label``, ``rho``, ``p``, ``n`` (NaN ρ for a constant column or fewer than 3 runs)."""
    rows = []
    for c, label in measures.items():
        x = runs[c].to_numpy(dtype=float)
        ok = np.isfinite(x)
        y, xo = runs.steps.to_numpy(dtype=float)[ok], x[ok]
        rho, p = stats.spearmanr(y, xo) if ok.sum() > 2 and np.ptp(xo) > 0 and np.ptp(y) > 0 else (np.nan, np.nan)
        rows.append({"measure": c, "label": label, "rho": float(rho), "p": float(p), "n": int(ok.sum())})
    return pd.DataFrame(rows).set_index("measure")


def treatment_of(config: dict) -> str:
    """The recipe or control a run's config is, by what acts on W_Q, W_K: the decay's kind, else
    Luon / Muon, else AdamW's decay on the targets (L2), a Q/K learning-rate factor, or none."""
    o, kind = config["optim"], config["decay"]["kind"]
    decays = {"lrd_ns": "LRD", "l2": "L2 (as a decay)", "lrd_radial": "LRD radial", "lrd_tangential": "LRD tangential",
              "fixed_norm": "fixed norm", "lrd_polar": "exact polar", "svt": "SVT", "lowrank": "low-rank projection",
              "adaptive_lowrank": "adaptive low rank"}
    base = {"luon": "Luon", "muon": "Muon"}.get(o["kind"])
    if kind != "none":
        return decays.get(kind, kind) + (f" ({base})" if base else "")
    if base:
        return base
    if o["target_weight_decay"] > 0:
        return "L2"
    return "Q/K lr" if o["target_lr_scale"] != 1 else "none"


def comparable(records, budget: dict) -> list[dict]:
    """The records trained with ``budget`` (``lrdlib.runs.profiles.grok_budget``: steps, evaluation
    interval, early stop, hold; no observation window): their steps-to-grok share one censoring
    point, so they can be ranked together."""
    keys = ("steps", "eval_every", "early_stop", "grok_hold")
    return [r for r in records if r.get("status") != "failed" and not r["config"].get("observe")
            and all(r["config"].get(k) == budget[k] for k in keys)]


def summary_frame(records) -> pd.DataFrame:
    """``run_summary`` of each record, with its task, train fraction, seed and ``treatment_of``."""
    return pd.DataFrame([{"op": r["config"]["task"]["op"], "frac": r["config"]["task"]["train_frac"],
                          "seed": r["config"]["seed"], "treatment": treatment_of(r["config"]), **run_summary(r)}
                         for r in records])


def rank_at_grok(record: dict) -> dict:
    """The Q/K stable rank at a run's lasting grok (``outcome``), mean, min and max over the
    matrices (None when it did not grok, or its spectra were not kept at that evaluation), with the
    bound min(m, n) of the matrices' size (``full``)."""
    o = outcome(record)
    sv = record.get("final_singular_values") or {}
    full = min(len(v) for v in sv.values()) if sv else None
    none = {"grokked": bool(o["event"]), "srank": None, "srank_min": None, "srank_max": None, "full": full}
    steps = spectra_steps(record)
    if not o["event"] or int(o["time"]) not in steps:
        return none
    i = steps.index(int(o["time"]))
    sr = [record["spectra"][n]["stable_rank"][i] for n in record["targets"]]
    return {**none, "srank": float(np.mean(sr)), "srank_min": float(min(sr)), "srank_max": float(max(sr))}


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


# ---------------------------------------------------------------- the crossed intervention: fixed norm r × Q/K lr k
# Fraction, cells, other parameters' wd, seeds (2000-: disjoint from every other design's) and budget with
# the protocol's early stop (``lrdlib.core.recipes.recipe_config``: an observation window after the first grok).
CROSSED = {"frac": 0.5, "radii": (0.5, 1.0, 2.0), "factors": (0.5, 1.0, 2.0), "other_wd": 1.0,
           "seeds": (2000, 2001, 2002), "steps": 10000, "eval_every": 100, "observe": 5000}


def crossed_arm(base: RunConfig, r: float, k: float, other_wd: float) -> RunConfig:
    """One cell of the crossed intervention: ‖W_Q‖_F, ‖W_K‖_F held at ``r`` by projection after every
    step (no decay: ``qk_arm``'s fixed norm) and trained by AdamW at k·η (the Q/K lr arm's factor),
    AdamW wd ``other_wd`` on every other parameter. Its angular rate is ≈ k·η‖u‖/r: the angular
    story predicts that only k/r matters."""
    return qk_arm(base, "fixed norm", r, other_wd).replace(optim__target_lr_scale=k)


def crossed_design(r_lrd: float, device: str = "cpu", design: dict = CROSSED) -> list[tuple[dict, RunConfig]]:
    """(cell, config) of every run of the crossed intervention: r = ``r_lrd`` × each of ``radii``
    (3 significant digits, as notebook 07's fixed-norm grid), k each of ``factors``, each seed;
    ``cell``: r_over (r / r_LRD), r, k, seed."""
    out = []
    for m in design["radii"]:
        r = float(f"{r_lrd * m:.3g}")
        for k in design["factors"]:
            for seed in design["seeds"]:
                base = seed_config("LRD", train_frac=design["frac"], seed=seed, steps=design["steps"], device=device,
                                   eval_every=design["eval_every"], early_stop=True, observe=design["observe"])
                out.append(({"r_over": m, "r": r, "k": k, "seed": seed}, crossed_arm(base, r, k, design["other_wd"])))
    return out


def crossed_frame(r_lrd: float, cache: RunCache, device: str = "cpu", design: dict = CROSSED) -> pd.DataFrame:
    """The crossed intervention's runs as far as ``cache`` holds them (read, never trained): one row
    per run of ``crossed_design`` with ``present`` and, where present, ``run_summary``."""
    rows = []
    for cell, cfg in crossed_design(r_lrd, device, design):
        rec = cache.load(cfg)
        rows.append({**cell, "present": rec is not None, **(run_summary(rec) if rec is not None else {})})
    return pd.DataFrame(rows)


def chapter_r_lrd(frac: float = CROSSED["frac"]) -> float:
    """r_LRD at ``frac`` as notebook 07 last wrote it at ``PROFILE=paper`` (its chapter results)."""
    path = store_dir().parent / "chapters" / "07_effective_learning_rate.json"
    return float(json.loads(path.read_text())["r_lrd"][f"{frac:g}"])


def train_crossed(r_lrd: float, *, device: str = "cpu", cache: RunCache | None = None, workers: int | None = None,
                  design: dict = CROSSED) -> pd.DataFrame:
    """Train (or read back) every run of ``crossed_design`` through ``run_sweep`` into ``cache``
    (default: the committed store, ``run_cache("paper")``), in a local process pool."""
    cells = crossed_design(r_lrd, device, design)
    return run_sweep([c for _, c in cells], cache=cache or run_cache("paper"), executor="process", workers=workers)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m lrdlib.analysis.mechanism",
                                 description="Train notebook 07's crossed intervention (fixed norm r × Q/K lr k) into the store.")
    ap.add_argument("--r-lrd", type=float, default=None, help="LRD's equilibrium norm (default: notebook 07's chapter results)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: $LRD_WORKERS, else one per core)")
    ap.add_argument("--dry-run", action="store_true", help="list the runs and which are in the store; train nothing")
    a = ap.parse_args(argv)
    r_lrd = a.r_lrd if a.r_lrd is not None else chapter_r_lrd()
    cells = crossed_design(r_lrd, a.device)
    cache = run_cache("paper")
    have = sum(cache.load(c) is not None for _, c in cells)
    print(f"crossed intervention at r_LRD = {r_lrd:g}: {len(cells)} runs ({have} in the store), "
          f"at most {sum(c.steps for _, c in cells):,} steps")
    if not a.dry_run:
        print(train_crossed(r_lrd, device=a.device, cache=cache, workers=a.workers).to_string())
    return 0


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


if __name__ == "__main__":
    raise SystemExit(main())
