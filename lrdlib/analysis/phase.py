"""The grokking region of a sweep: per cell (method × strength × train fraction) the share of
seeds that grok with its Wilson interval, and the region's boundary with its uncertainty.

``table`` arguments are ``lrdlib.runs.sweep.run_sweep`` tables with a ``method`` and a
``strength`` column added (the method's own λ: L2 weight decay, LRD α, Luon λ).

Boundary at one strength: the smallest train fraction f of the grid such that at f **and at
every larger fraction** at least half the seeds grok (NaN: nowhere in the grid, i.e. above
its largest fraction). Its uncertainty, two ways:

* bootstrap over seeds: resample each cell's seeds with replacement, recompute the boundary,
  report the 5th-95th percentiles (with one seed per cell this is a single point: no
  uncertainty can be claimed from one seed);
* Wilson bracket: the boundary computed from each cell's Wilson lower bound (``certain``:
  even the pessimistic share ≥ 1/2) and from its upper bound (``plausible``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

CELL = ["method", "strength", "train_frac"]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n at z standard errors (95 % for z = 1.96), by
    ``scipy.stats.binomtest``; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=2 * stats.norm.cdf(z) - 1, method="wilson")
    return max(0.0, float(ci.low)), min(1.0, float(ci.high))


def cells(table: pd.DataFrame, z: float = 1.96) -> pd.DataFrame:
    """One row per (method, strength, train_frac): seeds, grokked, grok_frac with its Wilson
    interval, median final and max validation accuracy, steps-to-grok of the grokked seeds
    (median, min, max), failed/diverged counts, the mean commutativity ceiling if present."""
    rows = []
    for key, g in table.groupby(CELL, sort=True):
        ok = g[g.status != "failed"]
        n, k = len(ok), int(ok.grokked.sum())
        lo, hi = wilson(k, n, z)
        s = ok.loc[ok.grokked, "steps_to_grok"].astype(float)
        rows.append({**dict(zip(CELL, key)), "seeds": n, "grokked": k, "grok_frac": k / n if n else np.nan,
                     "wilson_lo": lo, "wilson_hi": hi,
                     "final_val_acc": float(ok.final_val_acc.median()) if n else np.nan,
                     "max_val_acc": float(ok.max_val_acc.median()) if n else np.nan,
                     "steps_to_grok": float(s.median()) if len(s) else np.nan,
                     "steps_min": float(s.min()) if len(s) else np.nan,
                     "steps_max": float(s.max()) if len(s) else np.nan,
                     "budget": int(g.steps.max()),
                     "failed": int((g.status == "failed").sum()), "diverged": int((g.status == "diverged").sum())})
    return pd.DataFrame(rows)


def _boundary(fracs: np.ndarray, share: np.ndarray, level: float = 0.5) -> float:
    """Smallest fraction from which ``share`` ≥ level at it and all larger fractions."""
    order = np.argsort(fracs)
    f, s = fracs[order], share[order]
    b = np.nan
    for i in range(len(f) - 1, -1, -1):
        if s[i] >= level:
            b = f[i]
        else:
            break
    return float(b)


def boundary(table: pd.DataFrame, n_boot: int = 1000, level: float = 0.5, seed: int = 0,
             z: float = 1.96) -> pd.DataFrame:
    """Per (method, strength): the boundary fraction (NaN = not within the grid), its bootstrap
    5-95 % interval over seeds, and the Wilson bracket (``certain`` from the lower bounds,
    ``plausible`` from the upper bounds, at ``z``; with 1.96 even 3/3 seeds has a lower bound of
    0.44 < 1/2, so ``certain`` needs ≥ 5 unanimous seeds)."""
    c = cells(table, z)
    rng = np.random.default_rng(seed)
    out = []
    for (m, s), g in c.groupby(["method", "strength"], sort=True):
        fr = g.train_frac.to_numpy()
        b = _boundary(fr, g.grok_frac.to_numpy(), level)
        t = table[(table.method == m) & (table.strength == s) & (table.status != "failed")]
        per = [t[t.train_frac == f].grokked.to_numpy(dtype=float) for f in fr]
        boots = []
        for _ in range(n_boot):
            share = np.array([rng.choice(x, len(x)).mean() if len(x) else 0.0 for x in per])
            boots.append(_boundary(fr, share, level))
        boots = np.array(boots)
        # NaN (no boundary in the grid) sorts as "above the largest fraction"
        above = np.where(np.isnan(boots), np.inf, boots)
        lo, hi = np.quantile(above, [0.05, 0.95], method="inverted_cdf")  # no interpolation: inf stays inf
        out.append({"method": m, "strength": s, "boundary": b,
                    "boot_lo": float(lo) if np.isfinite(lo) else np.nan,
                    "boot_hi": float(hi) if np.isfinite(hi) else np.nan,
                    "p_no_boundary": float(np.isnan(boots).mean()),
                    "certain": _boundary(fr, g.wilson_lo.to_numpy(), level),
                    "plausible": _boundary(fr, g.wilson_hi.to_numpy(), level),
                    "seeds": int(g.seeds.min())})
    return pd.DataFrame(out)


def region(table: pd.DataFrame, level: float = 0.5) -> pd.DataFrame:
    """Per (method, train_frac): whether some strength of the method groks there (share of
    seeds ≥ level), the best such strength (fastest median steps-to-grok) and its numbers."""
    c = cells(table)
    rows = []
    for (m, f), g in c.groupby(["method", "train_frac"], sort=True):
        good = g[g.grok_frac >= level]
        best = good.sort_values(["steps_to_grok", "grok_frac"], ascending=[True, False]).iloc[0] if len(good) else None
        top = g.sort_values(["grok_frac", "final_val_acc"], ascending=False).iloc[0]
        rows.append({"method": m, "train_frac": f, "groks": best is not None,
                     "best_strength": best.strength if best is not None else np.nan,
                     "steps_to_grok": best.steps_to_grok if best is not None else np.nan,
                     "max_grok_frac": float(g.grok_frac.max()), "strength_of_max": top.strength,
                     "best_final_val_acc": float(g.final_val_acc.max()), "strengths_tried": len(g)})
    return pd.DataFrame(rows)
