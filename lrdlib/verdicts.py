"""Claim verdicts: the decisions a chapter draws from its tables, as tested functions.

Each function takes a table a notebook already computes (``lrdlib.phase`` cells / region /
boundary frames, ``lrdlib.analysis.grok_table`` or ``tangential_frame``) and returns a
:class:`Verdict`: the claim, one of ``HOLDS`` / ``DOES_NOT_HOLD`` / ``CANNOT_TELL``, the numbers
behind it, and a sentence built from those numbers (the notebook prints the sentence; its prose
never states a result the sentence does not).

Wording rules (STYLE.md), applied here once rather than in every notebook:

* "did not grok" always means "not within this budget", with the budget named, and says whether
  the run was still improving at the end; a run that never grokked is censored (k/n), not dropped;
* with fewer than ``MIN_SEEDS`` seeds a result is stated "in one run" / "in n runs" and the
  verdict is ``CANNOT_TELL``;
* a best strength at the edge of the tried range is reported as such, never as "the best".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

HOLDS, DOES_NOT_HOLD, CANNOT_TELL = "holds", "does not hold", "cannot tell"
MIN_SEEDS = 3     # fewer seeds than this: describe, conclude nothing
RISE_TOL = 0.05   # validation-accuracy rise over the last fifth of a run that counts as "still improving"


@dataclass
class Verdict:
    """A claim, its verdict (``HOLDS`` / ``DOES_NOT_HOLD`` / ``CANNOT_TELL``), the numbers behind
    it and the sentence a notebook prints."""
    claim: str
    verdict: str
    sentence: str
    numbers: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"[{self.verdict.upper()}] {self.claim}: {self.sentence}"


def runs_phrase(n: int) -> str:
    """'in one run' / 'in 2 runs' below MIN_SEEDS, else 'over n seeds'."""
    if n == 1:
        return "in one run"
    return f"in {n} runs" if n < MIN_SEEDS else f"over {n} seeds"


def _g(v: float) -> str:
    return f"{v:g}"


# ---------------------------------------------------------------- runs that did not grok


def late_rise(val_acc, fraction: float = 0.2) -> float:
    """Rise of validation accuracy over the last ``fraction`` of a run's evaluations
    (last value minus the value ``fraction`` of the evaluations before the end)."""
    v = list(val_acc)
    if len(v) < 2:
        return float("nan")
    n = max(2, int(round(len(v) * fraction)))
    return float(v[-1] - v[-min(n, len(v))])


def still_improving(runs: pd.DataFrame, budget: int, method: str, tol: float = RISE_TOL) -> Verdict:
    """"``method`` fails" read as "did not grok within ``budget`` and had stopped improving".

    ``runs``: one row per run that did *not* grok, columns ``method``, ``rise`` (``late_rise`` of
    its validation accuracy) and ``final_val_acc``. HOLDS when every such run of the method had
    flattened (rise ≤ tol), DOES_NOT_HOLD when some were still rising (for those "fails" is
    not established at this budget), CANNOT_TELL when the method has no non-grokking run.
    """
    g = runs[runs.method == method] if len(runs) else runs
    claim = f"{method} runs that did not grok within {budget} steps had stopped improving"
    if len(g) == 0:
        return Verdict(claim, CANNOT_TELL, f"every {method} run grokked within {budget} steps: nothing censored",
                       {"not_grokked": 0, "still_rising": 0})
    rising = int((g.rise > tol).sum())
    nums = {"not_grokked": len(g), "still_rising": rising, "max_rise": float(g.rise.max()),
            "final_val_acc_range": [float(g.final_val_acc.min()), float(g.final_val_acc.max())]}
    head = (f"{len(g)} {method} run(s) did not grok within {budget} steps (final val acc "
            f"{g.final_val_acc.min():.2f}-{g.final_val_acc.max():.2f}); ")
    if rising:
        return Verdict(claim, DOES_NOT_HOLD, head + f"{rising} of them were still rising (> {tol:g} over the last fifth, "
                       f"up to {g.rise.max():+.2f}) when the budget ended: for those, 'fails' is not established", nums)
    return Verdict(claim, HOLDS, head + f"none was still rising (largest rise over the last fifth {g.rise.max():+.2f}): "
                   f"they had flattened within this budget", nums)


# ---------------------------------------------------------------- phase diagram (04)


def _best_cells(g: pd.DataFrame, level: float) -> tuple[list[float], bool]:
    """Strengths of the best cell(s) at one fraction: fastest median steps-to-grok among cells
    where ≥ level of the seeds grok (as ``lrdlib.phase.region``); if none, highest grok share,
    then highest final validation accuracy. Returns (strengths, whether any cell groks)."""
    good = g[g.grok_frac >= level]
    if len(good):
        best = good[good.steps_to_grok == good.steps_to_grok.min()]
        return sorted(best.strength.tolist()), True
    top = g[g.grok_frac == g.grok_frac.max()]
    top = top[top.final_val_acc == top.final_val_acc.max()]
    return sorted(top.strength.tolist()), False


def best_strength_at_edge(cells: pd.DataFrame, method: str, level: float = 0.5) -> Verdict:
    """Claim "the tried strength range of ``method`` contains its best value".

    ``cells``: ``lrdlib.phase.cells`` frame. Per train fraction, the best strength (fastest
    grokking cell; ties kept) and whether it sits at the smallest or largest strength tried.
    DOES_NOT_HOLD when at some fraction every best strength is at an edge (the range may not
    contain the optimum: it is "the best tried", not "the best"); with fewer than 3 strengths
    every strength is an edge, so the range cannot show it contains an optimum (DOES_NOT_HOLD);
    HOLDS when every best is inside with ≥ MIN_SEEDS seeds; CANNOT_TELL when inside but with
    fewer seeds (one run picks a best by chance).
    """
    g = cells[cells.method == method]
    strengths = sorted(g.strength.unique())
    lo, hi = strengths[0], strengths[-1]
    seeds = int(g.seeds.min())
    per, edge_fracs = [], []
    for f, gf in g.groupby("train_frac", sort=True):
        best, groks = _best_cells(gf, level)
        edge = all(s in (lo, hi) for s in best)
        where = ("the only one" if lo == hi else "the smallest" if best[0] == lo else "the largest") if edge else "inside the range"
        per.append({"train_frac": float(f), "best": best, "groks": groks, "at_edge": edge, "where": where})
        if edge:
            edge_fracs.append(float(f))
    claim = f"the {method} strength range {_g(lo)}-{_g(hi)} contains its best value" if lo != hi else \
        f"the single {method} strength tried ({_g(lo)}) is its best value"
    nums = {"strengths": strengths, "seeds": seeds, "per_fraction": per, "edge_fractions": edge_fracs}
    parts = [f"{p['train_frac']:g}: {'/'.join(map(_g, p['best']))} ({'fastest grok' if p['groks'] else 'none groks; highest accuracy'}, "
             f"{p['where']})" for p in per]
    detail = f"best {method} strength tried per fraction, {runs_phrase(seeds)}: " + "; ".join(parts)
    if len(strengths) < 3:
        return Verdict(claim, DOES_NOT_HOLD, f"only {len(strengths)} strength(s) tried ({', '.join(map(_g, strengths))}): "
                       f"every one is an edge, so the grid cannot show where the best lies. " + detail, nums)
    if edge_fracs:
        return Verdict(claim, DOES_NOT_HOLD, f"at fraction(s) {edge_fracs} the best strength tried is at the edge of "
                       f"the range: it is the best *tried*, the optimum may lie beyond. " + detail, nums)
    if seeds < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, f"the best strength is inside the range at every fraction, but {runs_phrase(seeds)} "
                       f"per cell, which picks a best by chance. " + detail, nums)
    return Verdict(claim, HOLDS, "the best strength is inside the range at every fraction. " + detail, nums)


def boundary_uncertainty(boundary: pd.DataFrame, cells: pd.DataFrame, method: str) -> Verdict:
    """What the boundary's bootstrap interval can and cannot show for ``method``.

    ``boundary``/``cells``: ``lrdlib.phase`` frames. The bootstrap resamples each cell's seeds:
    with one seed, or with seeds that agree in every cell (all grok or none does), every
    resample equals the data and the interval has zero width — it shows that the seeds agree,
    not how a new seed would fall. The Wilson bracket (``certain``…``plausible``) is then the
    width to read. HOLDS ("the boundary is pinned down") when the Wilson bracket is a single
    fraction at every strength; DOES_NOT_HOLD when it is wider; CANNOT_TELL below MIN_SEEDS.
    """
    b = boundary[boundary.method == method]
    c = cells[cells.method == method]
    seeds = int(c.seeds.min())
    unanimous = bool(((c.grokked == 0) | (c.grokked == c.seeds)).all())
    zero_width = bool(((b.boot_lo == b.boot_hi) | (b.boot_lo.isna() & b.boot_hi.isna())).all())
    same = lambda x, y: (np.isnan(x) and np.isnan(y)) or x == y
    pinned = [bool(same(r.certain, r.plausible)) for r in b.itertuples()]
    claim = f"the {method} grokking boundary is pinned down by the seeds run"
    nums = {"seeds": seeds, "unanimous_cells": unanimous, "bootstrap_zero_width": zero_width,
            "wilson_bracket": [[float(r.strength), float(r.certain), float(r.plausible)] for r in b.itertuples()]}
    why = ("one seed per cell: every resample equals the data" if seeds == 1 else
           "every cell's seeds agree, all grok or none does: every resample equals the data" if unanimous
           else "some cells have split seeds")
    boot = (f"the bootstrap interval is zero-width ({why}): it shows the seeds agree, not how a new seed would fall"
            if zero_width else f"the bootstrap interval has width ({why})")
    wil = "; ".join(f"{_g(s)}: [{'>max' if np.isnan(lo_) else _g(lo_)}, {'>max' if np.isnan(hi_) else _g(hi_)}]"
                    for s, lo_, hi_ in nums["wilson_bracket"])
    text = f"{runs_phrase(seeds)} per cell, {boot}; Wilson bracket (certain, plausible) per strength: {wil}"
    if seeds < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, text + ". No uncertainty can be claimed.", nums)
    if all(pinned):
        return Verdict(claim, HOLDS, text + ". The Wilson bracket is a single fraction at every strength.", nums)
    return Verdict(claim, DOES_NOT_HOLD, text + ". The Wilson bracket spans more than one fraction: read it, "
                   "not the bootstrap, as the boundary's uncertainty.", nums)


def region_expansion(region: pd.DataFrame, a: str = "LRD", b: str = "L2", budget: int | None = None,
                     seeds: int = 1) -> Verdict:
    """Claim "``a`` expands the grokking region relative to ``b``" from ``lrdlib.phase.region``.

    Per fraction: ``a`` only / both / ``b`` only / neither grok (at some strength, ≥ half the
    seeds), with steps-to-grok where both do. HOLDS when ``a`` groks at a fraction where ``b``
    at every strength tried does not, DOES_NOT_HOLD when there is no such fraction, both with
    ≥ MIN_SEEDS seeds; CANNOT_TELL with fewer. "does not grok" is within ``budget`` only.
    """
    ra, rb = region[region.method == a].set_index("train_frac"), region[region.method == b].set_index("train_frac")
    fr = sorted(set(ra.index) & set(rb.index))
    cats = {"a_only": [], "both": [], "b_only": [], "neither": []}
    faster = []
    for f in fr:
        ga, gb = bool(ra.loc[f, "groks"]), bool(rb.loc[f, "groks"])
        cats["a_only" if ga and not gb else "both" if ga and gb else "b_only" if gb else "neither"].append(float(f))
        if ga and gb:
            faster.append((float(f), float(ra.loc[f, "steps_to_grok"]), float(rb.loc[f, "steps_to_grok"])))
    within = f" within {budget} steps" if budget else ""
    claim = f"{a} expands the grokking region relative to {b}"
    nums = {**cats, "steps_both": faster, "seeds": seeds}
    s = (f"{runs_phrase(seeds)} per cell: {a} groks and {b} at no strength tried does{within} at fractions {cats['a_only'] or 'none'}; "
         f"both at {cats['both'] or 'none'}; {b} only at {cats['b_only'] or 'none'}; neither at {cats['neither'] or 'none'}")
    if faster:
        s += "; where both grok, best steps-to-grok " + ", ".join(f"{f:g}: {a} {x:.0f} vs {b} {y:.0f}" for f, x, y in faster)
    if seeds < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + ". No conclusion from fewer than 3 seeds.", nums)
    return Verdict(claim, HOLDS if cats["a_only"] else DOES_NOT_HOLD, s + ".", nums)


def method_fails_at(cells: pd.DataFrame, runs: pd.DataFrame, method: str, frac: float, budget: int,
                    level: float = 0.5, tol: float = RISE_TOL) -> Verdict:
    """Claim "``method`` fails at train fraction ``frac``" (the seed's "L2 fails at 40-50 %").

    ``cells``: ``lrdlib.phase.cells``; ``runs``: the non-grokking runs with ``method``,
    ``train_frac``, ``rise``, ``final_val_acc`` (see ``still_improving``). DOES_NOT_HOLD when
    some strength groks for ≥ level of the seeds; HOLDS when none does and no non-grokking run
    was still rising; CANNOT_TELL when none groks but some were still rising (slower than the
    budget, not failing), or with fewer than MIN_SEEDS seeds.
    """
    g = cells[(cells.method == method) & np.isclose(cells.train_frac, frac)]
    seeds = int(g.seeds.min())
    good = g[g.grok_frac >= level].sort_values("steps_to_grok")
    r = runs[(runs.method == method) & np.isclose(runs.train_frac, frac)] if len(runs) else runs
    rising = int((r.rise > tol).sum()) if len(r) else 0
    claim = f"{method} fails at train fraction {frac:g}"
    nums = {"seeds": seeds, "strengths": sorted(g.strength.tolist()), "grokking_strengths": sorted(good.strength.tolist()),
            "not_grokked_runs": len(r), "still_rising": rising}
    tried = ", ".join(map(_g, sorted(g.strength)))
    if len(good):
        t = good.iloc[0]
        s = (f"{runs_phrase(seeds)}, {method} at strength {_g(t.strength)} grokked {int(t.grokked)}/{int(t.seeds)} "
             f"(median step {t.steps_to_grok:.0f}) within {budget} steps")
        if seeds < MIN_SEEDS:
            return Verdict(claim, CANNOT_TELL, s + ": it can grok here at its own strength (one observation, no conclusion).", nums)
        return Verdict(claim, DOES_NOT_HOLD, s + ": it does not fail here, it needs its own strength.", nums)
    best = g.sort_values(["grok_frac", "final_val_acc"], ascending=False).iloc[0]
    s = (f"{runs_phrase(seeds)}, {method} did not grok within {budget} steps at any strength tried ({tried}; best share "
         f"{best.grok_frac:.2f}, best final val acc {best.final_val_acc:.2f} at {_g(best.strength)})")
    if rising:
        return Verdict(claim, CANNOT_TELL, s + f"; {rising} of its {len(r)} non-grokking runs were still rising at the end: "
                       "slower than this budget, not shown to fail.", nums)
    s += "; no run was still rising at the end"
    if seeds < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + " (too few seeds to conclude).", nums)
    return Verdict(claim, HOLDS, s + ".", nums)


# ---------------------------------------------------------------- ablations (05)


def arm_outcome(gt: pd.DataFrame, arm: str, budget: int, still_rising: int | None = None) -> str:
    """One line for an arm of a ``grok_table``: grokked k/n (censored n − k at the budget) and,
    given ``still_rising`` (how many of its censored runs were still rising at the end), whether
    "did not grok" may be "slower than the budget"."""
    if arm not in gt.index:
        return f"'{arm}' not run in this profile"
    t = gt.loc[arm]
    k, n = int(t.grokked), int(t.seeds)
    rising = "" if still_rising is None or k == n else (
        f"; {still_rising} of its {n - k} censored run(s) still rising at the end" if still_rising
        else "; no censored run still rising at the end")
    if k:
        cens = f", {n - k} censored at {budget}" if k < n else ""
        return f"'{arm}' grokked {k}/{n} within {budget} steps (median step {t['median']:.0f}{cens}{rising})"
    return f"'{arm}' grokked 0/{n} within {budget} steps (final val acc {t.final_val_acc:.2f}{rising})"


def tangential_mechanism(gt: pd.DataFrame, radial: str, tangential: str, budget: int,
                         level: float = 0.5, still_rising: dict[str, int] | None = None) -> Verdict:
    """Claim "LRD's tangential component is what makes it grok", from the radial-only and
    tangential-only arms of a ``grok_table``.

    tangential groks, radial does not → HOLDS (the tangential part suffices where the radial
    part does not); radial groks → DOES_NOT_HOLD (the radial part alone suffices: the
    tangential part is not necessary; if the tangential arm did not, it is not sufficient
    within the budget either); neither groks → CANNOT_TELL (neither part alone suffices within
    the budget: the combination may be needed). Fewer than MIN_SEEDS seeds → CANNOT_TELL.
    """
    claim = "LRD's tangential component is what makes it grok"
    missing = [a for a in (radial, tangential) if a not in gt.index]
    if missing:
        return Verdict(claim, CANNOT_TELL, f"arm(s) {missing} not run in this profile: nothing to compare", {})
    r, t = gt.loc[radial], gt.loc[tangential]
    kr, nr, kt, nt = int(r.grokked), int(r.seeds), int(t.grokked), int(t.seeds)
    rg, tgk = kr / nr >= level and kr > 0, kt / nt >= level and kt > 0
    n = min(nr, nt)
    claim = "LRD's tangential component is what makes it grok"
    nums = {"radial": [kr, nr], "tangential": [kt, nt], "budget": budget}
    sr = still_rising or {}
    s = (f"{runs_phrase(n)}: {arm_outcome(gt, radial, budget, sr.get(radial))}; "
         f"{arm_outcome(gt, tangential, budget, sr.get(tangential))}")
    if rg and not tgk:
        meaning = ("the radial part alone suffices, so the tangential part is not necessary for grokking here, "
                   "and alone it was not sufficient within this budget")
        v = DOES_NOT_HOLD
    elif rg and tgk:
        meaning = "each part alone suffices: the tangential part is not necessary (the radial one also groks)"
        v = DOES_NOT_HOLD
    elif tgk:
        meaning = "the tangential part suffices where the radial part does not within this budget"
        v = HOLDS
    else:
        meaning = "neither part alone groks within this budget: each alone is insufficient here, the mechanism is not isolated"
        v = CANNOT_TELL
    if n < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + f". Read at face value, {meaning}; with fewer than {MIN_SEEDS} seeds this is "
                       "one observation, not a conclusion.", nums)
    return Verdict(claim, v, s + f": {meaning}.", nums)


def displacement_ratio(tangential: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per arm and evaluation step: the decay's displacement ‖ΔW‖_F (from its radial and
    tangential norms, mean over the target matrices, median over seeds) and its ratio to the
    ``reference`` arm's at the same step. ``tangential``: ``lrdlib.analysis.tangential_frame``."""
    d = tangential.assign(disp=np.hypot(tangential.decay_rad, tangential.decay_tan))
    per = (d.groupby(["arm", "seed", "step"]).disp.mean().groupby(["arm", "step"]).median().rename("displacement")
           .reset_index())
    ref = per[per.arm == reference].set_index("step").displacement
    per["ratio"] = per.displacement / per.step.map(ref)
    return per


def matched_drift(ratios: pd.DataFrame, arm: str, steps=(0, 1000), factor: float = 1.5) -> Verdict:
    """Claim "``arm`` stays matched to the reference (per-step displacement within ``factor``)".

    ``ratios``: ``displacement_ratio``. Reports the ratio at the evaluation nearest to each of
    ``steps`` and the first step at which it leaves [1/factor, factor]. HOLDS when it never
    does, DOES_NOT_HOLD otherwise (a measurement of the trained weights, seed count irrelevant
    to whether the arms drifted; the sentence names the runs)."""
    g = ratios[(ratios.arm == arm) & np.isfinite(ratios.ratio)].sort_values("step")
    claim = f"'{arm}' stays matched to the reference's per-step displacement (within {factor:g}×)"
    if not len(g):
        return Verdict(claim, CANNOT_TELL, f"no decay displacement recorded for '{arm}'", {})
    at = {}
    for s in steps:
        i = int((g.step - s).abs().argmin())
        at[int(g.step.iloc[i])] = float(g.ratio.iloc[i])
    off = g[(g.ratio > factor) | (g.ratio < 1 / factor)]
    nums = {"ratio_at": at, "first_off_step": int(off.step.iloc[0]) if len(off) else None,
            "ratio_range": [float(g.ratio.min()), float(g.ratio.max())]}
    s = f"'{arm}' moves W by " + ", ".join(f"{v:.2f}× the reference's per step at step {k}" for k, v in at.items())
    if len(off):
        return Verdict(claim, DOES_NOT_HOLD, s + f"; first outside [{1 / factor:.2f}, {factor:g}]× at step {nums['first_off_step']}: "
                       "matched at step 0 only", nums)
    return Verdict(claim, HOLDS, s + f"; within [{1 / factor:.2f}, {factor:g}]× at every evaluation", nums)


def rank_collapse_precondition(ranks: list[tuple[str, int, float]], threshold: float = 2.0) -> Verdict:
    """Claim "Q/K rank collapse (stable rank < ``threshold``) is a precondition of grokking".

    ``ranks``: (arm, seed, mean Q/K stable rank at the grokking step) per grokked run. One run
    that grokked at a higher rank is a counterexample (DOES_NOT_HOLD); all below the threshold
    is consistent with the claim, not proof (HOLDS from ≥ MIN_SEEDS runs, else CANNOT_TELL)."""
    claim = f"Q/K rank collapse (stable rank < {threshold:g}) precedes every grok"
    if not ranks:
        return Verdict(claim, CANNOT_TELL, "no run grokked: nothing to test", {"runs": 0})
    hi = max(ranks, key=lambda t: t[2])
    nums = {"runs": len(ranks), "min": float(min(t[2] for t in ranks)), "max": float(hi[2]), "max_run": [hi[0], int(hi[1])]}
    s = (f"Q/K stable rank at the grokking step over {len(ranks)} grokked run(s): {nums['min']:.2f} to {hi[2]:.2f} "
         f"(highest: '{hi[0]}', seed {hi[1]})")
    if hi[2] >= threshold:
        return Verdict(claim, DOES_NOT_HOLD, s + f": a run grokked at stable rank ≥ {threshold:g}, a counterexample", nums)
    if len(ranks) < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + f": all below {threshold:g} {runs_phrase(len(ranks))}, too few to conclude", nums)
    return Verdict(claim, HOLDS, s + f": all below {threshold:g}, consistent with (not proof of) the claim", nums)


# ---------------------------------------------------------------- seed setting: L2 vs LRD vs Luon (03, 06)


def _steps(steps) -> np.ndarray:
    """Steps-to-grok per run, a run that did not grok (None/NaN) as +inf: slower than every grok."""
    return np.array([np.inf if s is None or (isinstance(s, float) and np.isnan(s)) else float(s) for s in steps])


def _finite(v: float) -> float | None:
    """JSON-safe: None for an infinite (censored) or NaN value."""
    return float(v) if np.isfinite(v) else None


def censored_median(steps, budget: int) -> float:
    """Median steps-to-grok counting runs that did not grok within ``budget`` as slower than
    every grok (never dropped): +inf when half or more of the runs did not grok."""
    s = _steps(steps)
    return float(np.median(s)) if len(s) else float("nan")


def grok_counts(steps, budget: int) -> str:
    """'k/n grokked within B steps (at 1200, 1500; median 1500)' with non-grokking runs censored."""
    s = _steps(steps)
    ok = np.sort(s[np.isfinite(s)])
    med = censored_median(steps, budget)
    where = (f" (at {', '.join(f'{v:.0f}' for v in ok)}; median {'> ' + str(budget) if np.isinf(med) else f'{med:.0f}'})"
             if len(ok) else "")
    return f"{len(ok)}/{len(s)} grokked within {budget} steps{where}"


def earlier_share(a_steps, b_steps) -> float:
    """Share of (a run, b run) pairs in which the a run grokked strictly earlier; a run that did
    not grok counts as slower than every grok, two such runs (or equal steps) as a tie (½)."""
    a, b = _steps(a_steps)[:, None], _steps(b_steps)[None, :]
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(((a < b) + 0.5 * (a == b)).mean())


def faster_to_grok(a_steps, b_steps, budget: int, a: str, b: str) -> Verdict:
    """Claim "``a`` groks faster than ``b``" from steps-to-grok per seed (None: not within ``budget``).

    Runs that did not grok are censored (counted k/n, slower than every grok), never dropped.
    P = share of (a, b) seed pairs in which a grokked earlier (``earlier_share``). With fewer than
    MIN_SEEDS runs on either side: CANNOT_TELL, described "in one run". Otherwise HOLDS when
    P = 1 (every a run earlier than every b run), DOES_NOT_HOLD when P ≤ ½ (a no earlier in a
    typical pair), CANNOT_TELL in between (the runs overlap: not separable with these seeds).
    """
    sa, sb = _steps(a_steps), _steps(b_steps)
    p = earlier_share(a_steps, b_steps)
    n = min(len(sa), len(sb))
    claim = f"{a} groks faster than {b}"
    nums = {"a_steps": [None if np.isinf(v) else float(v) for v in sa], "b_steps": [None if np.isinf(v) else float(v) for v in sb],
            "a_grokked": int(np.isfinite(sa).sum()), "b_grokked": int(np.isfinite(sb).sum()), "earlier_share": p,
            "a_median": _finite(censored_median(a_steps, budget)), "b_median": _finite(censored_median(b_steps, budget)),
            "budget": budget}
    s = f"{a} {grok_counts(a_steps, budget)}; {b} {grok_counts(b_steps, budget)}"
    if not np.isfinite(sa).any() and not np.isfinite(sb).any():
        return Verdict(claim, CANNOT_TELL, s + ": neither grokked, nothing to compare.", nums)
    s += (f"; counting a run that did not grok as slower than every grok, {a} was earlier in {p:.0%} of the "
          f"{len(sa) * len(sb)} ({a}, {b}) pair(s)")
    if n < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + f" — {runs_phrase(n)} per method: an observation, no conclusion "
                       f"(fewer than {MIN_SEEDS} seeds).", nums)
    if p == 1:
        return Verdict(claim, HOLDS, s + f": every {a} run grokked before every {b} run.", nums)
    if p <= 0.5:
        return Verdict(claim, DOES_NOT_HOLD, s + f": {a} is not earlier in a typical pair.", nums)
    return Verdict(claim, CANNOT_TELL, s + ": the runs overlap, not separable with these seeds.", nums)


def luon_vs_lrd(luon_steps, lrd_steps, budget: int) -> Verdict:
    """Claim 4 of the seeds, "Luon (fused) groks faster than decoupled LRD": ``faster_to_grok``
    on steps-to-grok per seed (None: did not grok within ``budget``). Used by 03 and 06."""
    return faster_to_grok(luon_steps, lrd_steps, budget, "Luon", "LRD")


def groks_where_other_does_not(a_steps, b_steps, budget: int, a: str, b: str,
                               unconfirmed: dict[str, int] | None = None) -> Verdict:
    """Claim "``a`` groks and ``b`` does not, for the majority of seeds, within ``budget``".

    ``unconfirmed``: per label (a or b), runs at ≥ the threshold only at the last evaluation
    (not confirmed by a second one); the sentence says whether counting them changes the result.
    HOLDS / DOES_NOT_HOLD with ≥ MIN_SEEDS seeds each, else CANNOT_TELL ("in one run").
    """
    sa, sb = _steps(a_steps), _steps(b_steps)
    ka, kb, na, nb = int(np.isfinite(sa).sum()), int(np.isfinite(sb).sum()), len(sa), len(sb)
    un = unconfirmed or {}
    holds = ka > na / 2 and kb <= nb / 2
    holds_un = ka + un.get(a, 0) > na / 2 and kb + un.get(b, 0) <= nb / 2
    claim = f"{a} groks and {b} does not (majority of seeds) within {budget} steps"
    nums = {"a": [ka, na], "b": [kb, nb], "unconfirmed": dict(un), "budget": budget}
    s = f"{a} {grok_counts(a_steps, budget)}; {b} {grok_counts(b_steps, budget)}"
    if holds_un != holds:
        s += (f"; counting the {sum(un.values())} run(s) that reached the threshold only at the last evaluation, "
              f"the result would {'hold' if holds_un else 'not hold'}")
    n = min(na, nb)
    if n < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + f" — {runs_phrase(n)} per arm: "
                       f"{'consistent with the claim' if holds else 'the claim is not observed'}, no conclusion.", nums)
    return Verdict(claim, HOLDS if holds else DOES_NOT_HOLD, s + ".", nums)


def seed_l2_undertuned(seed_steps, own_steps, budget: int, seed_label: str, own_label: str,
                       seed_final_acc=(), ceiling: float | None = None) -> Verdict:
    """Claim "the seed L2 setting shows that L2 fails here", tested against L2 at its own,
    stronger strength (``own_steps``). Steps-to-grok per seed, None: not within ``budget``.

    If the stronger L2 groks in some run, the seed setting's failure is a property of its
    strength within this budget ("under-tuned"), not of L2: DOES_NOT_HOLD (CANNOT_TELL below
    MIN_SEEDS). Nothing is said about whether the seed strength would grok later: not tested.
    If the seed L2 itself groks in most runs: DOES_NOT_HOLD. If neither grokked: CANNOT_TELL
    (two strengths and one budget cannot show that L2 fails).
    """
    ss, so = _steps(seed_steps), _steps(own_steps)
    ks, ko = int(np.isfinite(ss).sum()), int(np.isfinite(so).sum())
    n = min(len(ss), len(so))
    claim = f"the seed L2 setting ({seed_label}) shows that L2 fails here"
    acc = [float(v) for v in seed_final_acc]
    nums = {"seed": [ks, len(ss)], "own": [ko, len(so)], "seed_final_val_acc": acc, "ceiling": ceiling, "budget": budget}
    at = ""
    if acc and ks < len(ss):
        ceil = f", memorisation + commutativity ceiling {ceiling:.2f}" if ceiling is not None else ""
        at = f" (final val acc {min(acc):.2f}-{max(acc):.2f}{ceil})"
    s = f"{seed_label} {grok_counts(seed_steps, budget)}{at}; {own_label} {grok_counts(own_steps, budget)}"
    few = f" — {runs_phrase(n)} per arm, no conclusion" if n < MIN_SEEDS else ""
    if ks > len(ss) / 2:
        return Verdict(claim, DOES_NOT_HOLD if not few else CANNOT_TELL, s + f": the seed L2 setting grokked{few}.", nums)
    if ko:
        return Verdict(claim, DOES_NOT_HOLD if not few else CANNOT_TELL,
                       s + f": L2 groks here at its own strength, so the seed L2 setting is under-tuned for this budget, "
                       f"not evidence that L2 fails (whether {seed_label} groks with a longer budget is not tested here){few}.", nums)
    return Verdict(claim, CANNOT_TELL, s + ": neither L2 strength grokked within this budget; two strengths and one "
                   "budget cannot show that L2 fails.", nums)


def rank_collapse_within(min_srank: list[float], by_step: int, last_step: int, method: str = "LRD",
                         threshold: float = 2.0) -> Verdict:
    """Claim "``method`` drives the Q/K stable rank below ``threshold`` within ``by_step`` steps".

    ``min_srank``: per run, the smallest mean Q/K stable rank at evaluations ≤ ``by_step``;
    ``last_step``: the last evaluated step of the runs. CANNOT_TELL when the runs end before
    ``by_step``; a run that stays ≥ threshold is a counterexample (DOES_NOT_HOLD); all below:
    HOLDS with ≥ MIN_SEEDS runs, else CANNOT_TELL.
    """
    v = [float(x) for x in min_srank]
    claim = f"{method} drives the Q/K stable rank below {threshold:g} within {by_step} steps"
    nums = {"min_srank": v, "by_step": by_step, "last_step": last_step, "threshold": threshold}
    s = f"smallest Q/K stable rank by step {min(by_step, last_step)} per run: {', '.join(f'{x:.2f}' for x in v)}"
    if last_step < by_step:
        return Verdict(claim, CANNOT_TELL, s + f"; the runs end at step {last_step}, before step {by_step}: not testable here.", nums)
    over = sum(x >= threshold for x in v)
    if over:
        return Verdict(claim, DOES_NOT_HOLD, s + f" ({runs_phrase(len(v))}): {over} of {len(v)} stayed ≥ {threshold:g}, "
                       "a counterexample in this setting.", nums)
    if len(v) < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + f": all below {threshold:g} {runs_phrase(len(v))}, too few to conclude.", nums)
    return Verdict(claim, HOLDS, s + f": all below {threshold:g} over {len(v)} seeds.", nums)


# ---------------------------------------------------------------- paired seeds (06)


def paired_by_seed(a_steps: dict, b_steps: dict, budget: int, a: str, b: str) -> Verdict:
    """Claim "``a`` groks earlier than ``b`` seed for seed", from steps-to-grok per seed
    (``{seed: step or None}``; same seed = same initialisation, split and batch order).

    Only seeds run in both arms are paired. Per pair: who grokked first and by how many steps (a
    run that did not grok within ``budget`` is censored: later than any grok, a tie with another
    censored run). HOLDS when ``a`` is earlier in every pair, DOES_NOT_HOLD when it is earlier in
    at most half, CANNOT_TELL in between, and with fewer than MIN_SEEDS pairs whatever they show.
    """
    seeds = sorted(set(a_steps) & set(b_steps))
    sa, sb = _steps([a_steps[s] for s in seeds]), _steps([b_steps[s] for s in seeds])
    fmt = lambda v: f"{v:.0f}" if np.isfinite(v) else f"not within {budget}"
    pairs, earlier = [], 0
    for s, x, y in zip(seeds, sa, sb):
        if x < y:
            earlier += 1
            who = f"{a} earlier" + (f" by {y - x:.0f}" if np.isfinite(y) else "")
        elif y < x:
            who = f"{b} earlier" + (f" by {x - y:.0f}" if np.isfinite(x) else "")
        else:
            who = "tie"
        pairs.append(f"seed {s}: {a} {fmt(x)} vs {b} {fmt(y)} ({who})")
    n = len(seeds)
    claim = f"{a} groks earlier than {b} on the same seed"
    nums = {"seeds": seeds, "a_steps": [None if np.isinf(v) else float(v) for v in sa],
            "b_steps": [None if np.isinf(v) else float(v) for v in sb], "a_earlier": earlier, "pairs": n}
    if n == 0:
        return Verdict(claim, CANNOT_TELL, "no seed run in both arms", nums)
    s = "; ".join(pairs) + f" — {a} earlier in {earlier} of {n} paired seed(s)"
    if n < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + f" ({runs_phrase(n)} per arm: an observation, no conclusion).", nums)
    if earlier == n:
        return Verdict(claim, HOLDS, s + ".", nums)
    return Verdict(claim, DOES_NOT_HOLD if earlier <= n / 2 else CANNOT_TELL, s + ".", nums)


# ---------------------------------------------------------------- learning-rate geometry (07)


def as_fast_as(a_steps, b_steps, budget: int, a: str, b: str, factor: float = 1.5) -> Verdict:
    """Claim "``a`` groks as fast as ``b``": an arm that keeps only the explaining ingredient
    matches the full method. Steps-to-grok per seed, None: not within ``budget``.

    Censored medians (a run that did not grok counts as slower than every grok, never dropped):
    HOLDS when a's is at most ``factor`` × b's (a may be faster), DOES_NOT_HOLD when larger (or
    a's median run did not grok while b's did), both with ≥ MIN_SEEDS runs per arm; CANNOT_TELL
    below that (the sentence reads the runs at face value) or when neither median run grokked.
    """
    ma, mb = censored_median(a_steps, budget), censored_median(b_steps, budget)
    n = min(len(a_steps), len(b_steps))
    ratio = ma / mb if np.isfinite(mb) else (0.0 if np.isfinite(ma) else float("nan"))
    claim = f"{a} groks as fast as {b} (censored median within {factor:g}× of it)"
    nums = {"a_steps": [None if np.isinf(v) else float(v) for v in _steps(a_steps)],
            "b_steps": [None if np.isinf(v) else float(v) for v in _steps(b_steps)],
            "a_median": _finite(ma), "b_median": _finite(mb), "ratio": _finite(ratio),
            "earlier_share": earlier_share(a_steps, b_steps), "factor": factor, "budget": budget}
    s = f"{a} {grok_counts(a_steps, budget)}; {b} {grok_counts(b_steps, budget)}"
    if np.isnan(ratio):
        return Verdict(claim, CANNOT_TELL, s + f": neither arm's median run grokked within {budget} steps, nothing to compare.", nums)
    holds = ratio <= factor
    s += (f"; censored medians {'> ' + str(budget) if np.isinf(ma) else f'{ma:.0f}'} vs "
          f"{'> ' + str(budget) if np.isinf(mb) else f'{mb:.0f}'} steps"
          + (f" (ratio {ratio:.2f}, limit {factor:g})" if np.isfinite(ratio) else ""))
    if n < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + f" — {runs_phrase(n)} per arm: read at face value the prediction "
                       f"{'is met' if holds else 'is not met'}; no conclusion from fewer than {MIN_SEEDS} seeds.", nums)
    return Verdict(claim, HOLDS if holds else DOES_NOT_HOLD, s + ".", nums)


def explains_better(corr: pd.DataFrame, seeds: int, reference: str = "srank") -> Verdict:
    """Claim "steps-to-grok lines up better with a learning-rate-geometry quantity than with the
    Q/K stable rank", from ``lrdlib.mechanism.rank_correlations`` (Spearman ρ over runs, censored
    runs at the budget, bootstrap interval of |ρ_candidate| − |ρ_reference|).

    The best candidate is the non-reference row with the largest |ρ|. HOLDS when its gap interval
    lies above 0; DOES_NOT_HOLD when |ρ_reference| ≥ its |ρ|; CANNOT_TELL when the interval
    includes 0, when ρ is undefined (e.g. every run censored), or with fewer than MIN_SEEDS seeds
    per arm (the sentence then reads the numbers at face value).
    """
    ref = corr.loc[reference]
    others = corr.drop(index=reference)
    n = int(ref.n)
    claim = f"steps-to-grok lines up better with a learning-rate-geometry quantity than with the {ref.label}"
    rhos = "; ".join(f"{r.label} {r.rho:+.2f} (p = {r.p:.2g})" for r in corr.itertuples())
    nums = {"n_runs": n, "seeds_per_arm": seeds, "rho": corr.rho.to_dict(), "p": corr.p.to_dict(),
            "gap": {c: [float(r.gap_lo), float(r.gap_hi)] for c, r in others.iterrows()}}
    s = f"Spearman ρ of steps-to-grok over {n} runs ({runs_phrase(seeds)} per arm): {rhos}"
    if not np.isfinite(others.rho).any() or not np.isfinite(ref.rho):
        return Verdict(claim, CANNOT_TELL, s + ": ρ undefined (constant steps or candidate), nothing to compare.", nums)
    best = others.rho.abs().idxmax()
    b = others.loc[best]
    nums["best"] = best
    s += (f". Best geometric candidate: {b.label}, |ρ| {abs(b.rho):.2f} against {abs(ref.rho):.2f} for the "
          f"{ref.label} (bootstrap 95 % interval of the difference [{b.gap_lo:+.2f}, {b.gap_hi:+.2f}])")
    if abs(ref.rho) >= abs(b.rho):
        v, meaning = DOES_NOT_HOLD, f"the {ref.label} lines up at least as well"
    elif b.gap_lo > 0:
        v, meaning = HOLDS, f"{b.label} lines up better, beyond the bootstrap spread"
    else:
        v, meaning = CANNOT_TELL, "the difference is within the bootstrap spread"
    if seeds < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + f": read at face value, {meaning}; fewer than {MIN_SEEDS} seeds per arm, "
                       "no conclusion.", nums)
    return Verdict(claim, v, s + f": {meaning}.", nums)


# ---------------------------------------------------------------- own best strength (05, 06)


def _km(v, budget: int) -> str:
    """A Kaplan-Meier median as text: '> budget' beyond it, 'n/a' undefined."""
    v = float("nan") if v is None else float(v)
    return f"> {budget}" if np.isinf(v) else "n/a" if np.isnan(v) else f"{v:.0f}"


def _groks(row: dict, level: float) -> bool:
    n, k = int(row["n"]), int(row["grokked"])
    return n > 0 and k > 0 and k / n >= level


def groks_at_own_best(rows: list[dict], budget: int, level: float = 0.5, symbol: str = "λ") -> Verdict:
    """Claim "some arm that does not grok at its matched strength groks at its own best strength".

    ``rows``: one per arm, with ``arm``, ``matched_strength``, ``best_strength``, ``matched`` and
    ``best`` (``lrdlib.survival.arm_summary`` rows: ``n``, ``grokked``, ``km_median``; same budget
    and seeds for both), ``at_edge`` ("low" / "high" / None: the best at that edge of the strengths
    searched) and ``best_by_accuracy`` (no strength grokked at the search seed: the best was chosen
    by accuracy). An arm "groks" at a strength when at least ``level`` of its seeds do. Each arm
    falls in one class: own best only, both, neither, matched only (the seed-0 choice did worse
    over the seeds). HOLDS when some arm groks at its own best only, DOES_NOT_HOLD when none does,
    CANNOT_TELL with fewer than MIN_SEEDS seeds per arm and strength (read at face value) or no rows.
    A best at an edge of the strengths searched is named as such (the best searched only)."""
    claim = "some arm that does not grok at its matched strength groks at its own best strength"
    cats = {"own_best_only": [], "both": [], "neither": [], "matched_only": []}
    for r in rows:
        gm, gb = _groks(r["matched"], level), _groks(r["best"], level)
        cats["own_best_only" if gb and not gm else "both" if gb else "matched_only" if gm else "neither"].append(r["arm"])
    seeds = min((min(int(r["matched"]["n"]), int(r["best"]["n"])) for r in rows), default=0)
    edges = [r["arm"] for r in rows if r.get("at_edge")]
    by_acc = [r["arm"] for r in rows if r.get("best_by_accuracy")]
    nums = {**cats, "seeds": seeds, "at_edge": edges, "best_by_accuracy": by_acc, "level": level, "budget": budget}
    if not rows:
        return Verdict(claim, CANNOT_TELL, "no arm was searched in this profile.", nums)

    def item(r: dict) -> str:
        m, b = r["matched"], r["best"]
        if r["best_strength"] == r["matched_strength"]:
            return (f"{r['arm']} (best = matched {symbol} {r['matched_strength']:g}: {m['grokked']}/{m['n']}, "
                    f"KM median {_km(m['km_median'], budget)})")
        return (f"{r['arm']} (matched {symbol} {r['matched_strength']:g}: {m['grokked']}/{m['n']}, KM median "
                f"{_km(m['km_median'], budget)}; best {symbol} {r['best_strength']:g}: {b['grokked']}/{b['n']}, KM median "
                f"{_km(b['km_median'], budget)})")

    by = {r["arm"]: r for r in rows}
    part = lambda key: "; ".join(item(by[a]) for a in cats[key]) if cats[key] else "none"
    s = (f"{runs_phrase(seeds)} per arm and strength, within {budget} steps, 'groks' = at least {level:.0%} of the seeds. "
         f"At its own best strength but not at the matched strength: {part('own_best_only')}. At both: {part('both')}. "
         f"At neither: {part('neither')}")
    if cats["matched_only"]:
        s += f". At the matched strength only (the best chosen at the search seed did worse over the seeds): {part('matched_only')}"
    if edges:
        s += ". Best at an edge of the strengths searched (the best searched, not shown to be the best): " + ", ".join(
            f"{a} ({by[a]['at_edge']})" for a in edges)
    if by_acc:
        s += ". No strength grokked at the search seed (best chosen by accuracy): " + ", ".join(by_acc)
    if seeds < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + f". Fewer than {MIN_SEEDS} seeds: read at face value, no conclusion.", nums)
    return Verdict(claim, HOLDS if cats["own_best_only"] else DOES_NOT_HOLD, s + ".", nums)


def faster_at_own_best(row: dict, a: str, b: str, budget: int, level: float = 0.95, note: str = "") -> Verdict:
    """Claim "``a`` groks faster than ``b``, each at its own best strength", from one paired row:
    ``a_median``, ``b_median`` (Kaplan-Meier medians, ``inf`` beyond ``budget``) and
    ``lrdlib.survival.paired_comparison`` of a against b over their common seeds (``ratio``, ``lo``,
    ``hi``, ``seeds``, ``a_first``, ``b_first``, ``undecided``, ``p``).

    ``lrdlib.survival.compare_class``: HOLDS when the paired bootstrap interval of the ratio of
    medians a / b lies below 1; DOES_NOT_HOLD when it lies above 1 (b is faster); CANNOT_TELL when
    it includes 1 or no ratio exists (neither median within the budget), and with fewer than
    MIN_SEEDS paired seeds (the sentence reads the numbers at face value). The sign test is
    reported beside it (with 5 seeds its smallest two-sided p is 0.0625). ``note`` (e.g. where a
    best strength sits at an edge) is appended to the sentence."""
    from .survival import compare_class

    claim = f"{a} groks faster than {b}, each at its own best strength"
    cls = compare_class(row)
    n = int(row["seeds"])
    r, lo, hi = (float(row[k]) for k in ("ratio", "lo", "hi"))
    ratio = "n/a" if np.isnan(r) else f"{r:.2g} [{lo:.2g}, {hi:.2g}]"
    s = (f"{runs_phrase(n)} per arm, within {budget} steps: Kaplan-Meier medians {a} {_km(row['a_median'], budget)} vs "
         f"{b} {_km(row['b_median'], budget)} steps; ratio {a} / {b} {ratio} (paired bootstrap {level:.0%} interval); "
         f"{a} first in {row['a_first']} and {b} first in {row['b_first']} of {n} paired seeds "
         f"({row.get('undecided', 0)} undecided; sign test p = {float(row['p']):.2g})")
    if cls == "faster":
        if r == 0 or hi == 0:
            meaning = f"{a} is faster ({b}'s median is beyond the budget)"
        else:
            meaning = f"{a} is faster, by a factor {1 / r:.2g} [{1 / hi:.2g}, {'∞' if lo == 0 else f'{1 / lo:.2g}'}]"
        v = HOLDS
    elif cls == "slower":
        meaning, v = f"{b} is faster: the interval lies above 1", DOES_NOT_HOLD
    elif cls == "neither":
        meaning, v = "neither median is within the budget: no ratio", CANNOT_TELL
    else:
        meaning, v = f"the interval includes 1: neither is shown faster with {n} seed(s)", CANNOT_TELL
    nums = {"class": cls, "seeds": n, "ratio": _finite(r) if not np.isnan(r) else None,
            "lo": None if np.isnan(lo) else float(lo), "hi": None if np.isnan(hi) else float(hi), "budget": budget}
    tail = f" {note.strip()}" if note.strip() else ""
    if n == 0:
        return Verdict(claim, CANNOT_TELL, f"no seed run in both arms.{tail}", nums)
    if n < MIN_SEEDS:
        return Verdict(claim, CANNOT_TELL, s + f": read at face value, {meaning}; fewer than {MIN_SEEDS} seeds, "
                       f"no conclusion.{tail}", nums)
    return Verdict(claim, v, s + f": {meaning}.{tail}", nums)
