"""Steps-to-grok as censored times: the statistics of the verdict table.

A run that has not grokked within its budget is *censored* at the budget, not dropped: the
steps-to-grok of a method are summarised by a Kaplan-Meier curve S(t) (the share of runs not
yet grokked at step t) and its median (the first t with S(t) ≤ 1/2; ∞ when the curve never gets
there: "more than the budget"). A grok that does not last is not a grok: ``outcome`` reads a
record's history and counts a run as grokked at s only if validation accuracy reaches the
threshold (0.99) at s and stays ≥ ``DEFAULT_FLOOR`` (0.9) for ``hold`` steps (a run that ends
earlier counts if it held to its end), and reports a grok that collapsed (fell below the floor
after first reaching the threshold, whether or not it came back).

Intervals: shares by Wilson (``lrdlib.phase.wilson``); medians and ratios of medians by the
bootstrap over seeds (paired: the same seeds resampled for both methods, since seed s gives both
the same split and initialisation); the paired comparison by a sign test on the seeds whose order
is known (both grokked, or one grokked and the other was censored later than that).

Notebook 04's verdict table is built from ``arm_summary`` (one row per arm), ``paired_comparison``
(an arm against tuned L2, seed by seed) and ``headline``; its verdict sentences come from
``faster_than_tuned`` and ``expands_region`` (``lrdlib.verdicts.Verdict`` objects).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .training import steps_to_grok

INF = math.inf
# The stated window of a lasting grok for runs trained without ``grok_hold`` (the seed runs): the
# same 1000 steps as the paper budget's hold (``lrdlib.profiles.grok_budget``). "Held to the end of
# the run" is stricter than it sounds with evaluations every 50 steps: at paper, seed LRD runs that
# end at 100 % validation accuracy dip below 0.99 at single evaluations long after their first grok.
DEFAULT_HOLD = 1000
# The floor a lasting grok must not fall below inside its window. Requiring ≥ 0.99 at every
# evaluation (the floor = the threshold) restarts the window at every single-evaluation dip to
# 0.98: at paper the seed LRD runs' lasting groks then sit 500-2000 steps after groks that never
# fell below 0.9 again. A fall below 0.9 is a collapse, not rounding noise; training's early stop
# (``grok_hold``) keeps the strict rule, which stops later, so the history always covers this window.
DEFAULT_FLOOR = 0.9
# Fewest paired seeds from which a comparison is read as faster or slower (STYLE: with one or two
# seeds, say "in one run" and draw no conclusion).
MIN_SEEDS = 3


def outcome(record: dict, threshold: float | None = None, hold: int | None = None,
            floor: float | None = None) -> dict:
    """One run: ``time`` (steps to a lasting grok, else its last step), ``event`` (grokked),
    ``collapsed`` (val acc reached the threshold at two evaluations in a row, then fell below
    ``floor`` at a later evaluation, whether or not it came back), ``first_grok`` (the first time
    it reached the threshold twice in a row), ``budget`` (steps of the config) and ``final_val_acc``.

    hold: steps the accuracy must hold; default the config's ``grok_hold`` if it is > 0, else
    ``DEFAULT_HOLD``; ``inf``: to the end of the run. floor: default ``DEFAULT_FLOOR``."""
    cfg = record["config"]
    thr = cfg["grok_threshold"] if threshold is None else threshold
    lo = min(DEFAULT_FLOOR, thr) if floor is None else floor
    h = hold if hold is not None else (cfg.get("grok_hold") or DEFAULT_HOLD)
    hist = record["history"]
    steps, acc = hist["step"], [-1.0 if a is None else a for a in hist["val_acc"]]
    lasting = steps_to_grok(steps, acc, thr, hold=h if math.isfinite(h) else steps[-1] + 1, floor=lo)
    transient = steps_to_grok(steps, acc, thr, hold=0)
    ok = record.get("status") == "ok"
    fell = transient is not None and (min(a for s, a in zip(steps, acc) if s > transient) < lo or not ok)
    return {"time": lasting if (ok and lasting is not None) else steps[-1], "event": ok and lasting is not None,
            "collapsed": bool(fell), "first_grok": transient,
            "budget": cfg["steps"], "final_val_acc": hist["val_acc"][-1], "status": record.get("status")}


def lasting_grok(record: dict) -> int | None:
    """The step of a record's lasting grok (``outcome``'s definition, the one every chapter reports),
    None if it has none (or failed). ``record["steps_to_grok"]`` is the first grok, lasting or not."""
    if record.get("status") == "failed" or not record.get("history", {}).get("step"):
        return None
    o = outcome(record)
    return int(o["time"]) if o["event"] else None


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
    from .phase import wilson

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


def smallest_grokking_fraction(shares: dict, level: float = 0.5) -> float | None:
    """The smallest train fraction whose ``(k, n)`` has k/n ≥ ``level`` (None: no fraction does)."""
    ok = [f for f, (k, n) in shares.items() if n and k / n >= level]
    return min(ok) if ok else None


# ---------------------------------------------------------------- verdict sentences of the table
def _fmt_steps(v: float, budget: int) -> str:
    return f"> {budget}" if math.isinf(v) else "n/a" if math.isnan(v) else f"{v:.0f}"


def _fracs(fs: Sequence[float]) -> str:
    return ", ".join(f"{f:g}" for f in fs) if fs else "none"


def compare_class(row: dict) -> str:
    """How one paired row reads: ``faster`` (the interval of the ratio of KM medians a / b lies
    below 1), ``slower`` (above 1), ``neither`` (neither arm's median is within the budget: no
    ratio), ``unresolved`` (the interval includes 1, the ratio is undefined, or fewer than
    ``MIN_SEEDS`` paired seeds: a bootstrap over one or two seeds gives an interval of no width)."""
    r, lo, hi = row["ratio"], row["lo"], row["hi"]
    if math.isnan(r) and math.isinf(row.get("a_median", math.nan)) and math.isinf(row.get("b_median", math.nan)):
        return "neither"
    if row.get("seeds", MIN_SEEDS) < MIN_SEEDS:
        return "unresolved"
    if not math.isnan(hi) and hi < 1:
        return "faster"
    if not math.isnan(lo) and lo > 1:
        return "slower"
    return "unresolved"


def _factor(row: dict, budget: int, b: str) -> str:
    """"by a factor x [lo, hi]" for a row where a is faster: x = b's KM median / a's (interval from the ratio's)."""
    r, lo, hi = row["ratio"], row["lo"], row["hi"]
    if r == 0 or hi == 0:   # b's median beyond the budget
        return f"by a factor > {budget / row['a_median']:.2g} ({b}'s median beyond the budget)"
    f_hi = "∞" if lo == 0 else f"{1 / lo:.2g}"
    return f"by a factor {1 / r:.2g} [{1 / hi:.2g}, {f_hi}]"


def faster_than_tuned(rows: Sequence[dict], a: str, b: str, budget: int, level: float = 0.95):
    """Claim "``a`` groks faster than ``b``, each at its own best strength, at some train fraction".

    ``rows``: one per fraction with ``frac``, ``a_median``, ``b_median`` (KM medians, ``inf`` beyond
    the budget) and a ``paired_comparison`` of a against b (``ratio``, ``lo``, ``hi``, ``seeds``,
    ``a_first``, ``b_first``, ``p``). Per fraction (``compare_class``): a faster when the paired
    bootstrap interval of the ratio of medians a / b lies below 1, slower when above 1, else not
    resolved. HOLDS when a is faster at some fraction, DOES_NOT_HOLD when at none; CANNOT_TELL when
    some fraction has fewer than MIN_SEEDS paired seeds (the sentence reads the numbers at face value).
    The sign test is reported beside it (with 5 seeds its smallest two-sided p is 0.0625)."""
    from .verdicts import CANNOT_TELL, DOES_NOT_HOLD, HOLDS, MIN_SEEDS, Verdict, runs_phrase

    rows = sorted(rows, key=lambda r: r["frac"])
    classes = {r["frac"]: compare_class(r) for r in rows}
    fast = [f for f, c in classes.items() if c == "faster"]
    slow = [f for f, c in classes.items() if c == "slower"]
    other = [f for f, c in classes.items() if c in ("unresolved", "neither")]
    seeds = min((int(r["seeds"]) for r in rows), default=0)
    pct = f"{level:.0%}"
    claim = f"{a} groks faster than tuned {b} (each at its own best strength) at some train fraction"

    def detail(r: dict) -> str:
        ratio = "n/a" if math.isnan(r["ratio"]) else f"{r['ratio']:.2g} [{r['lo']:.2g}, {r['hi']:.2g}]"
        return (f"{r['frac']:g}: KM medians {_fmt_steps(r['a_median'], budget)} vs {_fmt_steps(r['b_median'], budget)}, "
                f"ratio {ratio}, {a} first in {r['a_first']} and {b} first in {r['b_first']} of {r['seeds']} paired seeds "
                f"(sign test p = {r['p']:.2g})")

    by = {r["frac"]: r for r in rows}
    s = f"{runs_phrase(seeds)} per arm, within {budget} steps: {a} beats tuned {b} at fractions {_fracs(fast)}"
    if fast:
        s += " (" + "; ".join(f"{f:g} {_factor(by[f], budget, b)}" for f in fast) + ")"
    if other:
        s += f"; not at {_fracs(other)}"
    if slow:
        s += f"; {b} is faster at {_fracs(slow)}"
    s += (f". Ratio of Kaplan-Meier medians {a} / {b}, paired bootstrap {pct} interval (a fraction counts when the "
          f"interval excludes 1): " + "; ".join(detail(r) for r in rows) + ".")
    nums = {"faster": fast, "slower": slow, "not_resolved": other, "seeds": seeds, "classes": {str(k): v for k, v in classes.items()}}
    if not rows:
        return Verdict(claim, CANNOT_TELL, f"no fraction with both {a} and {b} run.", nums)
    if seeds < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + f" Fewer than {MIN_SEEDS} seeds: read at face value, no conclusion.", nums)
    return Verdict(claim, HOLDS if fast else DOES_NOT_HOLD, s, nums)


def headline(shares: dict, budget: int, level: float = 0.5):
    """The headline of the verdict table: per method, the smallest train fraction at which it
    groks for at least ``level`` of its seeds within ``budget`` (``shares``: ``{method: {frac: (k, n)}}``,
    each method at its own best strength per fraction). Returns ``(per-method dict, sentence)``;
    a method that already groks at the smallest fraction tried may grok lower (said so)."""
    out, parts = {}, []
    for m, by in shares.items():
        f = smallest_grokking_fraction(by, level)
        lowest = min(by) if by else None
        larger = [g for g in by if f is not None and g > f]
        gaps = [g for g in larger if not (by[g][1] and by[g][0] / by[g][1] >= level)]
        out[m] = {"fraction": f, "k": by[f][0] if f is not None else None, "n": by[f][1] if f is not None else None,
                  "at_lowest_tried": f is not None and f == lowest, "larger_fractions_below_level": gaps}
        if f is None:
            parts.append(f"{m} at none of {_fracs(sorted(by))}")
            continue
        note = " (the smallest fraction tried: it may grok lower)" if f == lowest else ""
        if gaps:
            note += f" (but not at the larger fraction(s) {_fracs(sorted(gaps))})"
        parts.append(f"{m} {f:g} ({by[f][0]}/{by[f][1]}){note}")
    sentence = (f"Smallest train fraction at which each method, at its own best strength, groks for at least "
                f"{level:.0%} of its seeds within {budget} steps: " + "; ".join(parts) + ".")
    return out, sentence


def expands_region(shares: dict, a: str, b: str, budget: int, level: float = 0.5):
    """Claim "``a`` expands the grokking region relative to tuned ``b``": a train fraction where
    ``a`` groks for ≥ ``level`` of its seeds and ``b`` (at its own best strength) does not.
    ``shares``: ``{method: {frac: (k, n)}}``. HOLDS when there is such a fraction, DOES_NOT_HOLD
    when there is none, CANNOT_TELL with fewer than MIN_SEEDS seeds at some fraction."""
    from .verdicts import CANNOT_TELL, DOES_NOT_HOLD, HOLDS, MIN_SEEDS, Verdict, runs_phrase

    sa, sb = shares[a], shares[b]
    fr = sorted(set(sa) & set(sb))
    groks = lambda kn: bool(kn[1]) and kn[0] / kn[1] >= level
    cats = {"a_only": [], "both": [], "b_only": [], "neither": []}
    for f in fr:
        ga, gb = groks(sa[f]), groks(sb[f])
        cats["a_only" if ga and not gb else "both" if ga and gb else "b_only" if gb else "neither"].append(f)
    seeds = min((min(sa[f][1], sb[f][1]) for f in fr), default=0)
    claim = f"{a} expands the grokking region relative to tuned {b}"
    kn = lambda m, f: f"{shares[m][f][0]}/{shares[m][f][1]}"
    s = (f"{runs_phrase(seeds)} per arm, each method at its own best strength, within {budget} steps, 'groks' = at least "
         f"{level:.0%} of the seeds: {a} groks and {b} does not at fractions {_fracs(cats['a_only'])}"
         + (" (" + ", ".join(f"{f:g}: {kn(a, f)} vs {kn(b, f)}" for f in cats["a_only"]) + ")" if cats["a_only"] else "")
         + f"; both at {_fracs(cats['both'])}; {b} only at {_fracs(cats['b_only'])}"
         + (" (" + ", ".join(f"{f:g}: {kn(a, f)} vs {kn(b, f)}" for f in cats["b_only"]) + ")" if cats["b_only"] else "")
         + f"; neither at {_fracs(cats['neither'])}")
    nums = {**cats, "seeds": seeds}
    if not fr:
        return Verdict(claim, CANNOT_TELL, f"no fraction with both {a} and {b} run.", nums)
    if seeds < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + f". Fewer than {MIN_SEEDS} seeds: no conclusion.", nums)
    return Verdict(claim, HOLDS if cats["a_only"] else DOES_NOT_HOLD, s + ".", nums)
