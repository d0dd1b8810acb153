"""Steps-to-grok as censored times: the statistics of the verdict table.

A run that has not grokked within its budget is *censored* at the budget, not dropped: the
steps-to-grok of a method are summarised by a Kaplan-Meier curve S(t) (the share of runs not
yet grokked at step t) and its median (the first t with S(t) ≤ 1/2; ∞ when the curve never gets
there: "more than the budget"). A grok that does not last is not a grok: ``outcome`` reads a
record's history and counts a run as grokked at s only if validation accuracy stays ≥ the
threshold from s to the end of the run (or for ``hold`` steps; a run that ends earlier counts
if it held to its end), and reports a grok that collapsed.

Intervals: shares by Wilson (``lrdlib.phase.wilson``); medians and ratios of medians by the
bootstrap over seeds (paired: the same seeds resampled for both methods, since seed s gives both
the same split and initialisation); the paired comparison by a sign test on the seeds whose order
is known (both grokked, or one grokked and the other was censored later than that).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .training import steps_to_grok

INF = math.inf


def outcome(record: dict, threshold: float | None = None, hold: int | None = None) -> dict:
    """One run: ``time`` (steps to a lasting grok, else its last step), ``event`` (grokked),
    ``collapsed`` (val acc ≥ threshold at two evaluations in a row at some point, but no lasting
    grok), ``budget`` (steps of the config) and ``final_val_acc``.

    hold: steps the accuracy must hold; default the config's ``grok_hold`` if it is > 0, else
    to the end of the run (``hold = inf``)."""
    cfg = record["config"]
    thr = cfg["grok_threshold"] if threshold is None else threshold
    h = hold if hold is not None else (cfg.get("grok_hold") or INF)
    hist = record["history"]
    steps, acc = hist["step"], [-1.0 if a is None else a for a in hist["val_acc"]]
    lasting = steps_to_grok(steps, acc, thr, hold=h if math.isfinite(h) else steps[-1] + 1)
    transient = steps_to_grok(steps, acc, thr, hold=0)
    ok = record.get("status") == "ok"
    return {"time": lasting if (ok and lasting is not None) else steps[-1], "event": ok and lasting is not None,
            "collapsed": transient is not None and (lasting is None or not ok), "first_grok": transient,
            "budget": cfg["steps"], "final_val_acc": hist["val_acc"][-1], "status": record.get("status")}


def kaplan_meier(times: Sequence[float], events: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """The Kaplan-Meier estimate of S(t) = P(not grokked by t): (event times, S just after each)."""
    t, e = np.asarray(times, float), np.asarray(events, bool)
    if len(t) != len(e):
        raise ValueError(f"times ({len(t)}) and events ({len(e)}) differ in length")
    grid = np.unique(t[e])
    s, surv = 1.0, []
    for u in grid:
        at_risk = np.sum(t >= u)
        s *= 1 - np.sum((t == u) & e) / at_risk
        surv.append(s)
    return grid, np.asarray(surv)


def km_median(times: Sequence[float], events: Sequence[bool]) -> float:
    """The first event time with S(t) ≤ 1/2; ``inf`` if S stays above 1/2 (median beyond the data)."""
    grid, surv = kaplan_meier(times, events)
    hit = np.nonzero(surv <= 0.5 + 1e-12)[0]
    return float(grid[hit[0]]) if len(hit) else INF


def bootstrap_median(times, events, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the KM median over runs (bounds may be ``inf``)."""
    t, e = np.asarray(times, float), np.asarray(events, bool)
    if len(t) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    meds = np.array([km_median(t[i], e[i]) for i in rng.integers(0, len(t), (n_boot, len(t)))])
    return _percentiles(meds, level)


def _percentiles(x: np.ndarray, level: float) -> tuple[float, float]:
    x = np.sort(x)  # inf sorts last: np.quantile on inf would give nan
    lo, hi = (1 - level) / 2, (1 + level) / 2
    return float(x[int(math.floor(lo * (len(x) - 1)))]), float(x[int(math.ceil(hi * (len(x) - 1)))])


def paired_ratio(a: dict, b: dict, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Ratio of KM medians a / b over the seeds both have (``{seed: (time, event)}`` each), with a
    paired bootstrap interval (seeds resampled jointly). ``inf``/0 where a median is beyond the budget."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return {"ratio": math.nan, "lo": math.nan, "hi": math.nan, "seeds": 0}
    ta, ea = (np.array([a[s][i] for s in seeds]) for i in (0, 1))
    tb, eb = (np.array([b[s][i] for s in seeds]) for i in (0, 1))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(seeds), (n_boot, len(seeds)))
    rs = np.array([_ratio(km_median(ta[i], ea[i].astype(bool)), km_median(tb[i], eb[i].astype(bool))) for i in idx])
    rs = rs[~np.isnan(rs)]
    lo, hi = _percentiles(rs, level) if len(rs) else (math.nan, math.nan)
    return {"ratio": _ratio(km_median(ta, ea.astype(bool)), km_median(tb, eb.astype(bool))), "lo": lo, "hi": hi,
            "seeds": len(seeds)}


def _ratio(x: float, y: float) -> float:
    if math.isinf(x) and math.isinf(y):
        return math.nan   # both beyond the budget: no ratio can be stated
    return x / y if y else math.nan


def _first(a: tuple, b: tuple) -> str | None:
    """Which of two (time, event) grokked first: "a", "b", or None when it cannot be told."""
    (ta, ea), (tb, eb) = a, b
    if ea and eb:
        return "a" if ta < tb else "b" if tb < ta else None
    if ea:   # b censored at tb: it had not grokked by tb
        return "a" if ta <= tb else None
    if eb:
        return "b" if tb <= ta else None
    return None


def sign_test(a: dict, b: dict) -> dict:
    """Paired sign test over common seeds: ``a_first`` (seeds where a grokked strictly earlier than b
    did, or b was censored after a's grok), ``b_first``, ``undecided`` (ties, both censored, or one
    censored before the other's grok), and the two-sided exact binomial p-value on the decided seeds."""
    from scipy.stats import binomtest

    af = bf = und = 0
    for s in sorted(set(a) & set(b)):
        first = _first(a[s], b[s])
        af, bf, und = af + (first == "a"), bf + (first == "b"), und + (first is None)
    n = af + bf
    p = binomtest(af, n, 0.5).pvalue if n else 1.0
    return {"a_first": af, "b_first": bf, "undecided": und, "p": float(p)}
