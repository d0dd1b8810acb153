"""Steps-to-grok as censored times: the statistics of the verdict table.

A run that has not grokked within its budget is *censored* at the budget, not dropped: the
steps-to-grok of a method are summarised by a Kaplan-Meier curve S(t) (``scipy.stats.ecdf``; the
share of runs not yet grokked at step t) and its median (the first t with S(t) ≤ 1/2; ∞ when the
curve never gets there: "more than the budget"). A grok that does not last is not a grok: ``outcome``
reads a record's history and counts a run as grokked at s only if validation accuracy reaches the
threshold (0.99) at s and stays ≥ ``DEFAULT_FLOOR`` (0.9) for ``hold`` steps (a run that ends
earlier counts if it held to its end), and reports a grok that collapsed (fell below the floor
after first reaching the threshold, whether or not it came back).

Intervals: shares by Wilson (``lrdlib.analysis.phase.wilson``); medians and ratios of medians by the
percentile bootstrap over seeds (``scipy.stats.bootstrap``; bounds may be ∞; paired: the same seeds
resampled for both methods, since seed s gives both the same split and initialisation); the paired
comparison by a sign test on the seeds whose order is known (both grokked, or one grokked and the
other was censored later than that).

Notebook 04's verdict table is built from ``arm_summary`` (one row per arm), ``paired_comparison``
(an arm against tuned L2, seed by seed) and ``headline``; its verdict sentences come from
``faster_than_tuned`` and ``expands_region`` (``lrdlib.analysis.verdicts.Verdict`` objects).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

from lrdlib.analysis.phase import wilson
from lrdlib.core.grok import DEFAULT_FLOOR, DEFAULT_HOLD, endpoints, lasting_grok, outcome  # noqa: F401 (re-exported)

INF = math.inf
# MIN_SEEDS: fewest paired seeds from which a comparison is read as faster or slower.
MIN_SEEDS = 3


def kaplan_meier(times: Sequence[float], events: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """The Kaplan-Meier estimate of S(t) = P(not grokked by t): (event times, S just after each),
    by ``scipy.stats.ecdf`` on right-censored data."""
    t, e = np.asarray(times, float), np.asarray(events, bool)
    if len(t) != len(e):
        raise ValueError(f"times ({len(t)}) and events ({len(e)}) differ in length")
    grid = np.unique(t[e])
    if not len(grid):   # no event: S stays at 1, nothing to report
        return grid, np.ones(0)
    sf = stats.ecdf(stats.CensoredData(uncensored=t[e], right=t[~e])).sf
    return grid, np.asarray(sf.evaluate(grid), float)


def km_median(times: Sequence[float], events: Sequence[bool]) -> float:
    """The first event time with S(t) ≤ 1/2; ``inf`` if S stays above 1/2 (median beyond the data)."""
    grid, surv = kaplan_meier(times, events)
    hit = np.nonzero(surv <= 0.5 + 1e-12)[0]
    return float(grid[hit[0]]) if len(hit) else INF


def _boot(stat, n: int, n_boot: int, level: float, seed: int) -> np.ndarray:
    """``scipy.stats.bootstrap`` distribution of ``stat`` (a function of an index array into the
    n runs/seeds) over runs resampled with replacement. Its own percentile interval is not used:
    it interpolates, which gives nan next to an ``inf`` (a median beyond the budget)."""
    if n < 2:   # scipy needs two observations; one run resamples only to itself
        return np.full(n_boot, stat(np.zeros(n, int)))

    def vstat(i, axis=-1):
        return np.array([stat(r) for r in np.asarray(i, int).reshape(-1, n)])

    with warnings.catch_warnings():   # the unused interpolated interval may be nan (inf - inf)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((np.arange(n),), vstat, n_resamples=n_boot, vectorized=True, method="percentile",
                              confidence_level=level, rng=np.random.default_rng(seed))
    return np.asarray(res.bootstrap_distribution, float)


def bootstrap_median(times, events, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the KM median over runs (bounds may be ``inf``)."""
    t, e = np.asarray(times, float), np.asarray(events, bool)
    if len(t) == 0:
        return (math.nan, math.nan)
    return _percentiles(_boot(lambda i: km_median(t[i], e[i]), len(t), n_boot, level, seed), level)


def _percentiles(x: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval without interpolation (the nearest order statistics outward), so ``inf`` stays ``inf``."""
    x = np.sort(x)  # inf sorts last: np.quantile on inf would give nan
    lo, hi = (1 - level) / 2, (1 + level) / 2
    return float(x[int(math.floor(lo * (len(x) - 1)))]), float(x[int(math.ceil(hi * (len(x) - 1)))])


def paired_ratio_boot(a: dict, b: dict, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, np.ndarray]:
    """(ratio of KM medians a / b over the seeds both have, its ``n_boot`` paired bootstrap
    replicates: seeds resampled jointly; ``inf``/0 where a median is beyond the budget, NaN where
    both are). ``a``, ``b``: ``{seed: (time, event)}``."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return math.nan, np.full(n_boot, math.nan)
    ta, ea = (np.array([a[s][i] for s in seeds]) for i in (0, 1))
    tb, eb = (np.array([b[s][i] for s in seeds]) for i in (0, 1))
    ea, eb = ea.astype(bool), eb.astype(bool)
    ratio = lambda i: _ratio(km_median(ta[i], ea[i]), km_median(tb[i], eb[i]))
    return ratio(np.arange(len(seeds))), _boot(ratio, len(seeds), n_boot, level, seed)


def paired_ratio(a: dict, b: dict, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Ratio of KM medians a / b over the seeds both have (``{seed: (time, event)}`` each), with a
    paired bootstrap interval (seeds resampled jointly, ``paired_ratio_boot``). ``inf``/0 where a
    median is beyond the budget; resamples where both medians are beyond it (no ratio) are left out
    of the interval, so it is conditional on a ratio existing: ``boot_no_ratio``, ``boot_zero`` and
    ``boot_inf`` are the shares of the ``n_boot`` resamples with no ratio, a ratio of 0 (b's median
    beyond the runs) and of ``inf`` (a's)."""
    n = len(set(a) & set(b))
    if not n:
        return {"ratio": math.nan, "lo": math.nan, "hi": math.nan, "seeds": 0,
                "boot_no_ratio": math.nan, "boot_zero": math.nan, "boot_inf": math.nan}
    r, rs = paired_ratio_boot(a, b, n_boot, level, seed)
    shares = {"boot_no_ratio": float(np.isnan(rs).mean()), "boot_zero": float((rs == 0).mean()),
              "boot_inf": float(np.isinf(rs).mean())}
    rs = rs[~np.isnan(rs)]
    lo, hi = _percentiles(rs, level) if len(rs) else (math.nan, math.nan)
    return {"ratio": r, "lo": lo, "hi": hi, "seeds": n, **shares}


def ratio_bound(a: dict, b: dict) -> float:
    """The ratio of KM medians a / b over the seeds both have, where it is a number, else the
    bound the runs allow: when b's median lies beyond its runs (ratio 0) b's median exceeds b's
    largest time, so a / b < a's median / that time; when a's (ratio ``inf``), a / b > a's largest
    time / b's median. NaN when both medians lie beyond the runs. A decision "k× faster" reads this
    bound, never a 0 that only says b's median was not reached."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return math.nan
    ma, mb = (km_median([x[s][0] for s in seeds], [x[s][1] for s in seeds]) for x in (a, b))
    if math.isinf(ma) and math.isinf(mb):
        return math.nan
    if math.isinf(mb):
        return ma / max(b[s][0] for s in seeds)
    if math.isinf(ma):
        return max(a[s][0] for s in seeds) / mb
    return ma / mb if mb else math.nan


def shift_sign_test(a: dict, b: dict, k: float) -> dict:
    """The paired sign test of a k-fold shift: ``sign_test`` of a's times multiplied by ``k``
    against b's (``{seed: (time, event)}``). A small p with ``a_first`` > ``b_first`` says that a
    run of a is more than k times faster than its pair of b more often than not: a test of
    "≥ k× faster" itself, where the ratio of medians only estimates it."""
    if not k > 0:
        raise ValueError(f"k={k!r}: the shift must be a positive factor")
    return sign_test({s: (k * t, e) for s, (t, e) in a.items()}, b)


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
    af = bf = und = 0
    for s in sorted(set(a) & set(b)):
        first = _first(a[s], b[s])
        af, bf, und = af + (first == "a"), bf + (first == "b"), und + (first is None)
    n = af + bf
    p = stats.binomtest(af, n, 0.5).pvalue if n else 1.0
    return {"a_first": af, "b_first": bf, "undecided": und, "p": float(p)}


# ---------------------------------------------------------------- the verdict table (notebook 04)
def censored_at_budget(o: dict) -> tuple[float, bool]:
    """(time, event) of an ``outcome`` for the verdict table: steps to a lasting grok, or the
    run's budget when it made none (a diverged run stops early but would not have grokked later)."""
    return (float(o["time"]), True) if o["event"] else (float(o["budget"]), False)


def arm_summary(times: Sequence[float], events: Sequence[bool], collapsed: Sequence[bool] = (),
                n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """One row of the verdict table from one arm's runs (``times`` of the runs that did not grok:
    their censoring step, the budget): ``n``, ``grokked`` (k), ``share`` with its Wilson interval,
    the Kaplan-Meier median steps-to-grok (``inf``: beyond the budget) with its bootstrap interval
    over runs, and ``collapses`` (runs whose grok did not last)."""

    t, e = np.asarray(times, float), np.asarray(events, bool)
    if len(t) != len(e):
        raise ValueError(f"times ({len(t)}) and events ({len(e)}) differ in length")
    n, k = len(t), int(e.sum())
    lo, hi = wilson(k, n)
    med = km_median(t, e) if n else math.nan
    mlo, mhi = bootstrap_median(t, e, n_boot, level, seed)
    return {"n": n, "grokked": k, "share": k / n if n else math.nan, "wilson_lo": lo, "wilson_hi": hi,
            "km_median": med, "median_lo": mlo, "median_hi": mhi, "collapses": int(np.sum(np.asarray(collapsed, bool)))}


def paired_comparison(a: dict, b: dict, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """``a`` against ``b`` over their common seeds (``{seed: (time, event)}`` each, censored at the
    budget): the ratio of KM medians a / b with its paired bootstrap interval (``paired_ratio``) and
    the paired sign test (``sign_test``), in one row."""
    r = paired_ratio(a, b, n_boot, level, seed)
    return {**r, **sign_test(a, b)}


def summarise(trials: Sequence, n_boot: int = 2000, seed: int = 0) -> dict:
    """One table row from the trials of one arm at one strength: ``lrdlib.analysis.survival.arm_summary``
    (k/n grokked with its Wilson interval, KM median with its bootstrap interval, collapses) over
    the runs that did not fail, plus ``diverged`` and ``failed`` counts."""
    ok = [t for t in trials if t.status != "failed"]
    row = arm_summary([t.time for t in ok], [t.event for t in ok], [t.collapsed for t in ok], n_boot=n_boot, seed=seed)
    return {**row, "diverged": sum(t.status == "diverged" for t in ok), "failed": len(trials) - len(ok)}


def by_seed(trials: Sequence) -> dict:
    """``{seed: (time, event)}`` of the trials that did not fail: the input of ``lrdlib.analysis.survival.paired_comparison``."""
    return {t.seed: (t.time, t.event) for t in trials if t.status != "failed"}


def paired_rows(final: dict, a: str, b: str, fracs: Sequence[float], n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """``a`` against ``b`` per train fraction, from ``final`` (``{(method, frac): {seed: (time,
    event)}}``): ``frac``, the KM medians ``a_median`` and ``b_median`` and ``paired_comparison``
    of a against b. The rows of ``lrdlib.analysis.verdicts.faster_than_tuned``."""
    return [{"frac": f, "a_median": km_median(*zip(*final[(a, f)].values())),
             "b_median": km_median(*zip(*final[(b, f)].values())),
             **paired_comparison(final[(a, f)], final[(b, f)], n_boot=n_boot, seed=seed)} for f in fracs]


def seed_spread(records: dict, n_boot: int = 2000) -> list[dict]:
    """Per arm of ``records`` (``{arm: [record per seed]}``): ``seeds``, ``lasting groks``,
    ``collapsed`` (``outcome``), the ``KM median`` steps-to-grok with its bootstrap interval
    (``CI lo``, ``CI hi``; runs that did not grok censored at the budget), and the quartiles
    (``q25``, ``q75``) and range (``min``, ``max``) of the lasting groks (NaN: none)."""
    rows = []
    for arm, recs in records.items():
        o = [outcome(r) for r in recs]
        t, e = np.array([x["time"] for x in o], float), np.array([x["event"] for x in o], bool)
        lo, hi = bootstrap_median(t, e, n_boot)
        g = t[e]
        q = np.quantile(g, [0.25, 0.75]) if len(g) else (math.nan, math.nan)
        rows.append({"arm": arm, "seeds": len(o), "lasting groks": int(e.sum()),
                     "collapsed": int(sum(bool(x["collapsed"]) for x in o)), "KM median": km_median(t, e),
                     "CI lo": lo, "CI hi": hi, "q25": float(q[0]), "q75": float(q[1]),
                     "min": float(g.min()) if len(g) else math.nan, "max": float(g.max()) if len(g) else math.nan})
    return rows


# ---------------------------------------------------------------- the protocol's comparison (paper/protocol.md)
def holm(pvalues: Sequence[float], m: int | None = None) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (each ≤ 1, monotone in the sorted order).
    ``m``: the size of the family when only some of its tests are in (the rest count as p = 1, so an
    interim adjustment is never smaller than the final one)."""
    m = len(pvalues) if m is None else m
    if m < len(pvalues):
        raise ValueError(f"m={m}: a family of fewer tests than the {len(pvalues)} p-values given")
    p = np.asarray(list(pvalues) + [1.0] * (m - len(pvalues)), dtype=float)
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    out = np.empty_like(adj)
    out[order] = adj
    return out.tolist()[:len(pvalues)]


def logrank_p(a: dict, b: dict) -> float:
    """Two-sided log-rank p (``scipy.stats.logrank``) of ``a`` against ``b`` (``{seed: (time, event)}``),
    unpaired: the protocol's sensitivity analysis to the paired sign test."""
    def data(x):
        t = np.array([v[0] for v in x.values()], float)
        e = np.array([v[1] for v in x.values()], bool)
        return stats.CensoredData(uncensored=t[e], right=t[~e])
    if not any(v[1] for v in (*a.values(), *b.values())):
        return 1.0   # no event in either arm: nothing to compare
    return float(stats.logrank(data(a), data(b)).pvalue)


# the shifts whose sign test is reported beside the protocol's test (the 2× and 3× of its question)
SHIFTS = (2, 3)


def endpoint_time(e: dict, endpoint: str) -> tuple[float, bool]:
    """(time, event) of one run on ``endpoint``, from ``lrdlib.core.grok.endpoints``'s ``e``: the
    event's step, or the endpoint's own censoring step: ``stable`` at the run's last step,
    ``hold5k`` at the latest start of a hold the run can show (last − 5,000, amendment A2),
    ``first`` and ``chapter`` at the last step."""
    t = e[endpoint]
    event = bool(e.get(f"{endpoint}_event", t is not None))
    return float(t if t is not None else e["last"]), event


def protocol_rows(a: dict, b: dict, endpoint: str = "stable", n_boot: int = 2000, seed: int = 0,
                  n_tests: int | None = None) -> list[dict]:
    """One recipe ``a`` against ``b`` (tuned L2) per train fraction: ``a`` and ``b`` are
    ``{frac: [record, ...]}`` of the evaluation seeds. Per fraction ``paired_comparison`` on the
    ``endpoint`` of ``lrdlib.core.grok.endpoints`` (``stable``: to the end of the run; ``first``;
    ``chapter``; ``hold5k``: held 5,000 steps), censored where ``endpoint_time`` says, the events ``a_events``/``b_events`` of ``n``,
    ``p_logrank``, and ``p_holm`` (Holm across the fractions; ``n_tests``: the family's size when
    only some fractions are in); ``ratio_bound`` (``ratio_bound``), and per shift m of ``SHIFTS``
    the sign test of an m-fold shift (``shift_sign_test``: ``a_first_shift2``, ``b_first_shift2``,
    ``p_shift2``, Holm-corrected in the same family as ``p_holm_shift2``; a sensitivity analysis)."""

    def by_seed_of(records):
        return {r["config"]["seed"]: endpoint_time(endpoints(r), endpoint) for r in records}
    rows = []
    for f in sorted(set(a) & set(b)):
        ta, tb = by_seed_of(a[f]), by_seed_of(b[f])
        rows.append({"frac": f, "endpoint": endpoint, "n": len(ta),
                     "a_events": sum(e for _, e in ta.values()), "b_events": sum(e for _, e in tb.values()),
                     "a_median": km_median(*zip(*ta.values())), "b_median": km_median(*zip(*tb.values())),
                     **paired_comparison(ta, tb, n_boot=n_boot, seed=seed), "p_logrank": logrank_p(ta, tb),
                     "ratio_bound": ratio_bound(ta, tb),
                     **{f"{k}_shift{m}": v for m in SHIFTS for k, v in shift_sign_test(ta, tb, m).items()
                        if k in ("a_first", "b_first", "p")}})
    for key in ("p", *(f"p_shift{m}" for m in SHIFTS)):
        for r, p in zip(rows, holm([r[key] for r in rows], n_tests)):
            r[key.replace("p", "p_holm", 1)] = p
    return rows
