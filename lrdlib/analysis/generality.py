"""The generality study read from the store (``paper/generality.md``), without training: per
setting the best LRD recipe against tuned L2 (the protocol's endpoints and paired statistics), and
the scaling statement (a fitted trend of log ratio against log width or log p, and its prediction
one step outside the measured range).

``load`` reads every cell of ``lrdlib.runs.generality.plan`` that the store holds; ``table`` is one
row per setting; ``trend`` fits an axis; ``settings_entry`` lists each setting by its ``width``,
``depth``, ``p``, ``lr`` and ``batch`` (the results JSON's ``generality`` entry).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import pandas as pd

from lrdlib.analysis.protocol import qk_stable_rank_at
from lrdlib.analysis.survival import protocol_rows
from lrdlib.core.grok import endpoints
from lrdlib.core.recipes import SEED_SETTING, Setting
from lrdlib.core.tasks import final_qk_stable_rank
from lrdlib.runs import generality as G
from lrdlib.runs import halving as H

REFERENCE = "tuned L2"
BASE_LR = 1e-3   # the seed setting's AdamW learning rate (``lr_scale`` multiplies it)
LRD_FAMILY = ("LRD", "exact polar", "SVT")   # the nuclear-norm decays the study may carry as "the best LRD recipe"


def load(cache, frac: float, lrd: str = "LRD", settings: Sequence[Setting] | None = None) -> dict[str, dict]:
    """``{setting label: state}`` at ``frac``: ``setting``, ``records`` (``{recipe: [record, ...]}``,
    None while a run is missing), ``best`` per recipe, ``at_edge``, and ``missing`` (runs not in the
    store). The seed setting's state is the protocol's evaluation at ``frac``."""
    settings = settings if settings is not None else [s for s, f in G.plan(frac) if f == frac]
    out = {"": _seed_state(cache, frac, lrd)}
    try:
        bests = {r: G.protocol_best(r, frac, cache) for r in (REFERENCE, lrd)}
    except LookupError:
        bests = None
    for s in settings:
        st = {"setting": s, "frac": frac, "records": None, "best": {}, "at_edge": {}, "missing": None}
        if bests is not None:
            try:
                st["frac"] = G.task_fraction(s, frac, bests[lrd], lrd=lrd, sweep=H.stored_sweep(cache))
                if st["frac"] is None:   # a² + ab + b² without a grok up to 0.9: nothing to compare
                    st["missing"] = 0
                    out[s.label()] = st
                    continue
                res = G.run_setting(bests, st["frac"], s, sweep=H.stored_sweep(cache))
                st |= {"records": {r: v["records"] for r, v in res.items()}, "missing": 0,
                       "best": {r: v["best"] for r, v in res.items()}, "at_edge": {r: v["at_edge"] for r, v in res.items()}}
            except H.NotStored as e:
                st["missing"] = e.missing
        out[s.label()] = st
    return out


def choose_fractions(ptable: pd.DataFrame, recipe: str = "LRD", pstatus: pd.DataFrame | None = None) -> dict:
    """``F_big`` and ``F_none`` of the design from the protocol's table (``lrdlib.analysis.protocol.table``)
    on the primary endpoint: ``F_big`` the fraction with the smallest ratio ``recipe`` / tuned L2,
    ``F_none`` the one whose ratio is closest to 1 (in log) among those not decided; ``lrd``, the
    recipe of ``LRD_FAMILY`` with the smallest ratio at ``F_big`` (the design's "best LRD recipe").
    Both fractions None, with ``fractions_in`` below 8, until every fraction is in; ``lrd`` None
    while a recipe of the family planned at ``F_big`` has not finished its evaluation there (from
    ``pstatus``, ``lrdlib.analysis.protocol.status``); ``sentence`` says which."""
    g = ptable[(ptable.recipe == recipe) & (ptable.endpoint == "stable")] if len(ptable) else ptable
    out = {"fractions_in": int(len(g)), "of": len(H.FRACTIONS), "f_big": None, "f_none": None, "lrd": recipe}
    if len(g) < len(H.FRACTIONS):
        out["sentence"] = (f"The protocol's primary table has {len(g)} of {len(H.FRACTIONS)} fractions; the study's "
                           "fractions are chosen once it has all of them, so no generality run is made yet.")
        return out
    ok = g[np.isfinite(g.ratio.to_numpy(float))]
    big = ok.iloc[int(ok.ratio.to_numpy(float).argmin())]
    none = ok[ok.decision == "not decided"]
    out["f_big"], out["ratio_big"] = float(big.frac), float(big.ratio)
    if len(none):
        row = none.iloc[int(np.abs(np.log(none.ratio.to_numpy(float))).argmin())]
        out["f_none"], out["ratio_none"] = float(row.frac), float(row.ratio)
    family = ptable[ptable.recipe.isin(LRD_FAMILY) & (ptable.endpoint == "stable") & (ptable.frac == out["f_big"])]
    family = family[np.isfinite(family.ratio.to_numpy(float))]
    out["lrd"] = str(family.iloc[int(family.ratio.to_numpy(float).argmin())].recipe) if len(family) else recipe
    if pstatus is not None:
        st = pstatus[pstatus.recipe.isin(LRD_FAMILY) & (pstatus.frac == out["f_big"])]
        waiting = [r for r, e in zip(st.recipe, st.evaluation) if e != "not planned" and e.split("/")[0] != e.split("/")[1]]
        if waiting:
            out["lrd"] = None
            out["sentence"] = (f"F_big = {out['f_big']:g} ({recipe} / tuned L2 = {out['ratio_big']:.2f}); the best LRD recipe "
                               f"there waits for the evaluation of {', '.join(waiting)}, so no generality run is made yet.")
            return out
    out["sentence"] = (f"F_big = {out['f_big']:g} ({recipe} / tuned L2 = {out['ratio_big']:.2f}, the smallest ratio); "
                       + (f"F_none = {out['f_none']:g} (ratio {out['ratio_none']:.2f}, closest to 1 of the fractions not "
                          "decided)." if out["f_none"] is not None else "no fraction is left undecided, so there is no F_none.")
                       + f" The best LRD recipe at F_big: {out['lrd']}.")
    return out


def status(states: dict[str, dict]) -> pd.DataFrame:
    """One row per setting of ``load``: its ``axis`` and ``value``, the fraction it runs at, and the
    runs still missing from the store (0: complete) or the best (qk, λₒ) each recipe's short
    search found."""
    rows = []
    for label, st in states.items():
        axis, value = axis_of(st["setting"])
        rows.append({"setting": label or "seed", "axis": axis, "value": value, "frac": st["frac"],
                     "missing": st["missing"], **{f"best {r}": v for r, v in st["best"].items()},
                     "at an edge": ", ".join(r for r, e in st["at_edge"].items() if e) or ""})
    return pd.DataFrame(rows)


def _seed_state(cache, frac: float, lrd: str) -> dict:
    st = {"setting": SEED_SETTING, "frac": frac, "records": None, "best": {}, "at_edge": {}, "missing": None}
    states = {r: H.protocol_state(r, frac, cache) for r in (REFERENCE, lrd)}
    if all(s["records"] for s in states.values()):
        st |= {"records": {r: s["records"] for r, s in states.items()}, "missing": 0,
               "best": {r: s["best"] for r, s in states.items()}}
    return st


def axis_of(s: Setting) -> tuple[str, float | str]:
    """The one field in which ``s`` differs from the seed setting, and its value (``("seed", "")``);
    a task is its ``op`` (recall's number of symbols ``p`` belongs to the task)."""
    diff = [(k, v) for k, v in asdict(s).items() if v != asdict(SEED_SETTING)[k]]
    if s.op == "recall":
        diff = [(k, v) for k, v in diff if k != "p"]
    if len(diff) > 1:
        raise ValueError(f"setting {s.label()!r} differs from the seed setting in {len(diff)} fields; the study "
                         "varies one at a time")
    return diff[0] if diff else ("seed", "")


def table(states: dict[str, dict], n_boot: int = 2000) -> pd.DataFrame:
    """One row per setting with both recipes' evaluations in the store: the setting's ``axis`` and
    ``value``, its ``width``/``depth``/``p``/``lr``/``batch``/``op``, the primary endpoint's paired
    row (``protocol_rows``: events, KM medians, ``ratio`` [``lo``, ``hi``], sign-test ``p``; no
    multiplicity correction, each setting is a description), ``hold5k`` events of both recipes,
    LRD's median Q/K stable rank at its stable grok with the width (``rank_bound``), and the median
    final Q/K stable rank of LRD (``final_srank``) and of tuned L2 (``b_final_srank``)."""
    rows = []
    for label, st in states.items():
        if not st["records"]:
            continue
        lrd = next(r for r in st["records"] if r != REFERENCE)
        a, b = st["records"][lrd], st["records"][REFERENCE]
        row = protocol_rows({st["frac"]: a}, {st["frac"]: b}, "stable", n_boot=n_boot, n_tests=1)[0]
        held = protocol_rows({st["frac"]: a}, {st["frac"]: b}, "hold5k", n_boot=n_boot, n_tests=1)[0]
        s = st["setting"]
        axis, value = axis_of(s)
        ea = [endpoints(r) for r in a]
        rows.append({"setting": label or "seed", "axis": axis, "value": value, "width": s.width, "depth": s.depth,
                     "p_mod": s.p, "lr": BASE_LR * s.lr_scale, "batch": s.batch, "op": s.op, "recipe": lrd,
                     **{k: row[k] for k in ("frac", "n", "a_events", "b_events", "a_median", "b_median", "ratio", "lo",
                                            "hi", "p")},
                     "a_hold5k": held["a_events"], "b_hold5k": held["b_events"],
                     "srank_at_grok": float(np.median([qk_stable_rank_at(r, e["stable"]) for r, e in zip(a, ea)])),
                     "final_srank": float(np.median([final_qk_stable_rank(r) for r in a])),
                     "b_final_srank": float(np.median([final_qk_stable_rank(r) for r in b])),
                     "rank_bound": a[0]["config"]["model"]["dim"]})
    return pd.DataFrame(rows)


def verdict(ratio: float, lo: float, hi: float) -> str:
    """"helps" (interval below 1), "hurts" (above 1) or "cannot be told apart" (contains 1, or no ratio)."""
    if math.isnan(ratio) or math.isnan(lo) or math.isnan(hi):
        return "cannot be told apart"
    return "helps" if hi < 1 else "hurts" if lo > 1 else "cannot be told apart"


def trend(tab: pd.DataFrame, axis: str, at: float | None = None) -> dict:
    """Least squares of log ratio on log ``axis`` value over the settings on that axis and the seed
    setting, each weighted by 1/se², se = (log hi − log lo) / 3.92 from its interval (a setting
    whose interval is unbounded carries no weight). Returns ``slope`` with its 95 % interval, ``n``
    (settings with weight), ``verdict`` ("no trend" when the interval contains 0) and, with ``at``,
    the predicted ratio there with its 95 % interval (the fit's, not a new run's)."""
    seed_value = {"width": SEED_SETTING.width, "p": SEED_SETTING.p, "depth": SEED_SETTING.depth,
                  "lr_scale": SEED_SETTING.lr_scale, "batch": SEED_SETTING.batch}[axis]
    g = tab[(tab.axis == axis) | (tab.axis == "seed")]
    x = np.log(np.array([seed_value if a == "seed" else v for a, v in zip(g.axis, g.value)], float))
    with np.errstate(divide="ignore", invalid="ignore"):   # a bound of 0 or ∞: log is ∓∞, no weight
        y, lo, hi = (np.log(g[c].to_numpy(float)) for c in ("ratio", "lo", "hi"))
    se = (hi - lo) / 3.92
    ok = np.isfinite(y) & np.isfinite(se) & (se > 0)
    out = {"axis": axis, "n": int(ok.sum()), "slope": math.nan, "slope_lo": math.nan, "slope_hi": math.nan,
           "verdict": "too few settings", "at": at, "predicted": math.nan, "pred_lo": math.nan, "pred_hi": math.nan}
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return out
    w = 1 / se[ok] ** 2
    X = np.stack([np.ones(ok.sum()), x[ok]], 1)
    cov = np.linalg.inv(X.T @ (X * w[:, None]))
    beta = cov @ X.T @ (w * y[ok])
    half = 1.96 * math.sqrt(cov[1, 1])
    out |= {"slope": float(beta[1]), "slope_lo": float(beta[1] - half), "slope_hi": float(beta[1] + half)}
    out["verdict"] = "no trend" if out["slope_lo"] <= 0 <= out["slope_hi"] else (
        "advantage grows" if beta[1] < 0 else "advantage shrinks")
    if at is not None:
        v = np.array([1.0, math.log(at)])
        m, s = float(v @ beta), 1.96 * math.sqrt(float(v @ cov @ v))
        out |= {"predicted": math.exp(m), "pred_lo": math.exp(m - s), "pred_hi": math.exp(m + s)}
    return out


def settings_entry(tab: pd.DataFrame) -> list[dict]:
    """Each setting of ``tab`` by its ``width``, ``depth``, ``p``, ``lr``, ``batch`` (and task ``op``),
    with the ratio, its interval, the verdict and LRD's Q/K stable rank at the grok."""
    return [{"setting": r.setting, "width": int(r.width), "depth": int(r.depth), "p": int(r.p_mod), "lr": float(r.lr),
             "batch": int(r.batch), "op": r.op, "frac": float(r.frac), "ratio": float(r.ratio), "lo": float(r.lo),
             "hi": float(r.hi), "verdict": verdict(r.ratio, r.lo, r.hi), "srank_at_grok": float(r.srank_at_grok),
             "final_srank": float(r.final_srank), "b_final_srank": float(r.b_final_srank),
             "rank_bound": int(r.rank_bound)} for r in tab.itertuples()]


OUT_OF_RANGE_P = 401   # the measured step outside the fitted range (``paper/generality.md``)


def scaling_statement(tab: pd.DataFrame) -> dict:
    """The design's scaling statement: ``trend`` over width and over p (p = 401 left out of the fit),
    the fit's prediction at p = 401, and, once its runs are in, the measured ratio there with
    ``inside`` (whether the measured ratio lies in the prediction's interval)."""
    out_p = (tab.axis == "p") & (tab.value == OUT_OF_RANGE_P) if len(tab) else pd.Series(dtype=bool)
    fit = tab[~out_p] if len(tab) else tab
    p_trend = trend(fit, "p", at=OUT_OF_RANGE_P) if len(fit) else {"axis": "p", "n": 0, "verdict": "too few settings"}
    w_trend = trend(fit, "width") if len(fit) else {"axis": "width", "n": 0, "verdict": "too few settings"}
    out = {"width": w_trend, "p": p_trend, "measured": None}
    if len(tab) and out_p.any():
        r = tab[out_p].iloc[0]
        out["measured"] = {"ratio": float(r.ratio), "lo": float(r.lo), "hi": float(r.hi),
                           "inside": bool(p_trend.get("pred_lo", np.nan) <= r.ratio <= p_trend.get("pred_hi", np.nan))}
    return out
