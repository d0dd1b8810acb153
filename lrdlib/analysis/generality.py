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
from lrdlib.analysis.survival import paired_ratio_boot, protocol_rows
from lrdlib.core.grok import endpoints
from lrdlib.core.recipes import SEED_SETTING, Setting
from lrdlib.core.tasks import final_qk_stable_rank
from lrdlib.runs import generality as G
from lrdlib.runs import halving as H

REFERENCE = "tuned L2"
BASE_LR = 1e-3   # the seed setting's AdamW learning rate (``lr_scale`` multiplies it)
NUCLEAR_NORM_RECIPES = ("LRD", "exact polar", "SVT")   # the nuclear-norm decays the study may carry as "the best LRD recipe"


def load(cache, frac: float, lrd: str = "LRD", settings: Sequence[Setting] | None = None,
         role: str = "big") -> dict[str, dict]:
    """``{setting label: state}`` at ``frac``: ``setting``, ``frac`` (a² + ab + b² may run higher),
    ``records`` (``{recipe: [record, ...]}``, None while a run is missing), ``best`` per recipe,
    ``at_edge``, ``missing`` (runs not in the store) and ``note``. The settings are the design's at
    ``F_big`` (``role="big"``) or at ``F_none`` (``"none"``) unless given; the seed setting's state is
    the protocol's evaluation at ``frac``."""
    settings = settings if settings is not None else G.settings_for(role)
    out = {"": _seed_state(cache, frac, lrd)}
    try:
        bests = {r: G.protocol_best(r, frac, cache) for r in (REFERENCE, lrd)}
    except LookupError:
        bests = None
    for s in settings:
        st = {"setting": s, "frac": frac, "records": None, "best": {}, "at_edge": {}, "missing": None, "note": ""}
        if bests is not None:
            try:
                st["frac"] = G.task_fraction(s, frac, bests[lrd], lrd=lrd, sweep=H.stored_sweep(cache))
                if st["frac"] is None:   # a² + ab + b² without a grok up to 0.9: nothing to compare
                    tried = ", ".join(map(str, G.probe_fractions(frac)))
                    st |= {"missing": 0, "note": f"{lrd} has no stable grok on seed {G.PROBE_SEED} within "
                                                 f"{G.PROBE_STEPS:,} steps at any of {tried}: not run"}
                    out[s.label()] = st
                    continue
                if st["frac"] != frac:
                    st["note"] = f"run at {st['frac']:g}: {lrd} has no stable grok on the probe below it"
                res = G.run_setting(bests, st["frac"], s, sweep=H.stored_sweep(cache))
                st |= {"records": {r: v["records"] for r, v in res.items()}, "missing": 0,
                       "best": {r: v["best"] for r, v in res.items()}, "at_edge": {r: v["at_edge"] for r, v in res.items()}}
            except H.NotStored as e:
                st["missing"] = e.missing
        out[s.label()] = st
    return out


def _family_best(ptable: pd.DataFrame, frac: float, pstatus: pd.DataFrame | None, default: str) -> tuple[str | None, list]:
    """(the recipe of ``NUCLEAR_NORM_RECIPES`` with the smallest ratio at ``frac``, or None while one planned
    there has not finished its evaluation; those still running)."""
    if pstatus is not None:
        st = pstatus[pstatus.recipe.isin(NUCLEAR_NORM_RECIPES) & (pstatus.frac == frac)]
        waiting = [r for r, e in zip(st.recipe, st.evaluation) if e != "not planned" and e.split("/")[0] != e.split("/")[1]]
        if waiting:
            return None, waiting
    family = ptable[ptable.recipe.isin(NUCLEAR_NORM_RECIPES) & (ptable.endpoint == "stable") & (ptable.frac == frac)]
    family = family[np.isfinite(effective_ratio(family))]
    return (str(_order(family).iloc[0].recipe) if len(family) else default), []


def effective_ratio(g: pd.DataFrame) -> np.ndarray:
    """The ratio the design orders fractions by: the ratio of medians where it is a number, the
    bound the runs allow (``ratio_bound``, as the protocol's decision reads it) where tuned L2's median
    lies beyond its runs (ratio 0), ∞ where the recipe's does, NaN where both do."""
    r = g.ratio.to_numpy(float)
    b = g.ratio_bound.to_numpy(float) if "ratio_bound" in g else r
    return np.where(np.isfinite(r) & (r > 0), r, np.where(r == 0, b, r))


def _order(g: pd.DataFrame) -> pd.DataFrame:
    """Rows by the design's order for F_big: the smallest ``effective_ratio``; ties by the smaller
    upper bound, then the more seeds, then the smaller fraction."""
    g = g.reset_index(drop=True)
    key = g.assign(_eff=effective_ratio(g), _fewer=-g["n"] if "n" in g else 0)
    cols = [c for c in ("_eff", "hi", "_fewer", "frac") if c in key]
    return g.iloc[key.sort_values(cols, kind="stable").index]


def choose_fractions(ptable: pd.DataFrame, recipe: str = "LRD", pstatus: pd.DataFrame | None = None) -> dict:
    """``F_big`` and ``F_none`` of the design from the protocol's table (``lrdlib.analysis.protocol.table``)
    on the primary endpoint: ``F_big`` the fraction with the smallest ratio ``recipe`` / tuned L2
    (``effective_ratio``: where tuned L2's median lies beyond its runs, the bound they allow; ties: the
    smaller upper bound, the more seeds, the smaller fraction); ``F_none`` the one, of the
    others not decided, whose ratio is closest to 1 in log (a ratio of 0 or ∞ is never closest);
    ``lrd`` and ``lrd_none``, the recipe of ``NUCLEAR_NORM_RECIPES`` with the smallest ratio at each (the
    design's "best LRD recipe at that fraction"), None while one planned there has not finished
    its evaluation (``pstatus``, ``lrdlib.analysis.protocol.status``). Both fractions None, with
    ``fractions_in`` below 8, until every fraction is in; ``sentence`` says which."""
    g = ptable[(ptable.recipe == recipe) & (ptable.endpoint == "stable")] if len(ptable) else ptable
    out = {"fractions_in": int(len(g)), "of": len(H.FRACTIONS), "f_big": None, "f_none": None, "lrd": None,
           "lrd_none": None}
    if len(g) < len(H.FRACTIONS):
        out["sentence"] = (f"The protocol's primary table has {len(g)} of {len(H.FRACTIONS)} fractions; the study's "
                           "fractions are chosen once it has all of them, so no generality run is made yet.")
        return out
    ok = g[np.isfinite(effective_ratio(g))]
    if not len(ok):
        out["sentence"] = "No fraction of the protocol's primary table has a ratio: the study has no F_big."
        return out
    big = _order(ok).iloc[0]
    out["f_big"], out["ratio_big"] = float(big.frac), float(effective_ratio(big.to_frame().T)[0])
    bound = float(big.ratio) == 0
    none = ok[(ok.decision == "not decided") & (ok.frac != out["f_big"]) & (ok.ratio > 0)]
    if len(none):
        row = none.iloc[int(np.abs(np.log(none.ratio.to_numpy(float))).argmin())]
        out["f_none"], out["ratio_none"] = float(row.frac), float(row.ratio)
    out["lrd"], wait = _family_best(ptable, out["f_big"], pstatus, recipe)
    if out["f_none"] is not None:
        out["lrd_none"], wait_none = _family_best(ptable, out["f_none"], pstatus, recipe)
        wait += wait_none
    big_words = (f"{recipe} / tuned L2 below {out['ratio_big']:.2f}, the bound its runs allow, the smallest ratio"
                 if bound else f"{recipe} / tuned L2 = {out['ratio_big']:.2f}, the smallest ratio")
    out["sentence"] = (f"F_big = {out['f_big']:g} ({big_words}); "
                       + (f"F_none = {out['f_none']:g} (ratio {out['ratio_none']:.2f}, closest to 1 of the other fractions "
                          "not decided)." if out["f_none"] is not None else "no other fraction is left undecided, so there "
                          "is no F_none."))
    if wait:
        out["sentence"] += (f" The best LRD recipe waits for the evaluation of {', '.join(dict.fromkeys(wait))}, so no "
                            "generality run is made yet.")
    else:
        out["sentence"] += f" The best LRD recipe: {out['lrd']} at F_big" + (
            f", {out['lrd_none']} at F_none." if out["f_none"] is not None else ".")
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
                     "at an edge": ", ".join(r for r, e in st["at_edge"].items() if e) or "", "note": st.get("note", "")})
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
    LRD's median Q/K stable rank at its stable grok with the width (``rank_bound``), the median
    final Q/K stable rank of LRD (``final_srank``) and of tuned L2 (``b_final_srank``), and ``boot``,
    the ratio's paired bootstrap replicates (``trend`` refits them)."""
    rows = []
    for label, st in states.items():
        if not st["records"]:
            continue
        lrd = next(r for r in st["records"] if r != REFERENCE)
        a, b = st["records"][lrd], st["records"][REFERENCE]
        row = protocol_rows({st["frac"]: a}, {st["frac"]: b}, "stable", n_boot=n_boot, n_tests=1)[0]
        boot = paired_ratio_boot(_times(a), _times(b), n_boot)[1]   # the interval's replicates, for ``trend``
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
                     "rank_bound": a[0]["config"]["model"]["dim"], "boot": boot.tolist()})
    return pd.DataFrame(rows)


def _times(records: Sequence[dict]) -> dict:
    """``{seed: (time, event)}`` of the stable grok (censored at the run's last step), as ``protocol_rows`` reads it."""
    out = {}
    for r in records:
        e = endpoints(r)
        out[r["config"]["seed"]] = (float(e["stable"] if e["stable_event"] else e["last"]), bool(e["stable_event"]))
    return out


def verdict(ratio: float, lo: float, hi: float) -> str:
    """"helps" (interval below 1), "hurts" (above 1) or "cannot be told apart" (contains 1, or no ratio)."""
    if math.isnan(ratio) or math.isnan(lo) or math.isnan(hi):
        return "cannot be told apart"
    return "helps" if hi < 1 else "hurts" if lo > 1 else "cannot be told apart"


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """(intercept, slope) of least squares of y on x over the finite points; None with fewer than
    two distinct x."""
    ok = np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return None
    slope, icpt = np.polyfit(x[ok], y[ok], 1)
    return float(icpt), float(slope)


def trend(tab: pd.DataFrame, axis: str, at: float | None = None, level: float = 0.95) -> dict:
    """Least squares of log ratio on log ``axis`` value over the settings on that axis and the seed
    setting (``paper/generality.md``): the slope from the settings' ratios, its ``level`` interval
    from the per-setting paired bootstrap replicates (``boot``: replicate b of every setting refitted,
    percentile interval over the refits); a ratio of 0 or ∞ (a median beyond the runs), in the
    point fit or in a replicate, leaves that setting out of that fit. Returns ``slope`` with its
    interval, ``n`` (settings in the point fit), ``n_boot_used`` (replicates with a fit),
    ``verdict`` ("no trend" when the interval contains 0; "too few settings" below two) and, with
    ``at``, the predicted ratio there with its interval (the fit's, not a new run's)."""
    seed_value = {"width": SEED_SETTING.width, "p": SEED_SETTING.p, "depth": SEED_SETTING.depth,
                  "lr_scale": SEED_SETTING.lr_scale, "batch": SEED_SETTING.batch}[axis]
    g = tab[(tab.axis == axis) | (tab.axis == "seed")] if len(tab) else tab
    out = {"axis": axis, "n": 0, "n_boot_used": 0, "slope": math.nan, "slope_lo": math.nan, "slope_hi": math.nan,
           "verdict": "too few settings", "at": at, "predicted": math.nan, "pred_lo": math.nan, "pred_hi": math.nan}
    if not len(g):
        return out
    x = np.log(np.array([seed_value if a == "seed" else v for a, v in zip(g.axis, g.value)], float))
    with np.errstate(divide="ignore", invalid="ignore"):   # a ratio of 0 or ∞: log ∓∞, left out of that fit
        y = np.log(g.ratio.to_numpy(float))
        boots = np.log(np.array([np.asarray(b, float) for b in g["boot"]])) if "boot" in g else np.empty((len(g), 0))
    out["n"] = int(np.isfinite(y).sum())
    fit = _ols(x, y)
    if fit is None:
        return out
    fits = [f for f in (_ols(x, boots[:, j]) for j in range(boots.shape[1])) if f is not None]
    out |= {"slope": fit[1], "n_boot_used": len(fits)}
    if not fits:
        out["verdict"] = "no interval"
        return out
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    lo, hi = np.percentile([f[1] for f in fits], q)
    out |= {"slope_lo": float(lo), "slope_hi": float(hi)}
    out["verdict"] = "no trend" if lo <= 0 <= hi else ("advantage grows" if fit[1] < 0 else "advantage shrinks")
    if at is not None:
        la = math.log(at)
        plo, phi = np.percentile([f[0] + f[1] * la for f in fits], q)
        out |= {"predicted": math.exp(fit[0] + fit[1] * la), "pred_lo": float(np.exp(plo)), "pred_hi": float(np.exp(phi))}
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
    ``inside`` (whether the measured ratio lies in the prediction's interval; None without a
    prediction)."""
    out_p = (tab.axis == "p") & (tab.value == OUT_OF_RANGE_P) if len(tab) else pd.Series(dtype=bool)
    fit = tab[~out_p] if len(tab) else tab
    p_trend, w_trend = trend(fit, "p", at=OUT_OF_RANGE_P), trend(fit, "width")
    out = {"width": w_trend, "p": p_trend, "measured": None}
    if len(tab) and out_p.any():
        r = tab[out_p].iloc[0]
        lo, hi = p_trend.get("pred_lo", math.nan), p_trend.get("pred_hi", math.nan)
        out["measured"] = {"ratio": float(r.ratio), "lo": float(r.lo), "hi": float(r.hi),
                           "inside": None if math.isnan(lo) or math.isnan(hi) else bool(lo <= r.ratio <= hi)}
    return out
