"""Claim verdicts as data: the decisions a chapter draws from its tables, as tested functions.

Each function takes a table a notebook already computes (``lrdlib.analysis.phase`` cells,
``lrdlib.analysis.frames.grok_table`` or ``tangential_frame``, steps-to-grok per seed, paired rows
of ``lrdlib.analysis.survival``) and returns a :class:`Verdict`: one of ``HOLDS`` /
``DOES_NOT_HOLD`` / ``CANNOT_TELL`` and the numbers that decide it. The library builds no
sentence: a notebook words a verdict with a one-line template (``Verdict.say``) next to the
markdown that states the claim, and the paper with its macros.

``numbers`` is ready to format: a list a template prints has a pre-joined ``*_text`` twin
(``"0.2, 0.35"``, ``"none"`` for an empty list), and a step count that may be censored has a
``*_text`` twin too (``"> budget"`` beyond the budget, ``"n/a"`` undefined).

Decision rules shared by every function: a run that did not grok within the budget is censored
(counted k/n, slower than every grok), never dropped; with fewer than ``MIN_SEEDS`` seeds the
verdict is ``CANNOT_TELL`` whatever the runs show; a best strength at the edge of the tried range
is flagged as such.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

HOLDS, DOES_NOT_HOLD, CANNOT_TELL = "holds", "does not hold", "cannot tell"
MIN_SEEDS = 3     # fewer seeds than this: describe, conclude nothing
RISE_TOL = 0.05   # validation-accuracy rise over the last fifth of a run that counts as "still improving"


@dataclass(frozen=True)
class Verdict:
    """A verdict (``HOLDS`` / ``DOES_NOT_HOLD`` / ``CANNOT_TELL``) and the numbers behind it."""
    verdict: str
    numbers: dict = field(default_factory=dict)

    def say(self, template: str) -> str:
        """``template`` filled with ``verdict`` and every entry of ``numbers``."""
        return template.format(verdict=self.verdict, **self.numbers)

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "numbers": self.numbers}


# ---------------------------------------------------------------- formatting of numbers


def _list_text(xs: Sequence, fmt: str = "{:g}") -> str:
    """'0.2, 0.35' ('none' for an empty list)."""
    return ", ".join(fmt.format(x) for x in xs) if len(xs) else "none"


def _steps_text(v, budget: int) -> str:
    """A (censored) step count: '> budget' beyond it, 'n/a' undefined, else the integer."""
    v = float("nan") if v is None else float(v)
    return f"> {budget}" if math.isinf(v) else "n/a" if math.isnan(v) else f"{v:.0f}"


def _steps(steps) -> np.ndarray:
    """Steps-to-grok per run, a run that did not grok (None/NaN) as +inf: slower than every grok."""
    return np.array([np.inf if s is None or (isinstance(s, float) and np.isnan(s)) else float(s) for s in steps])


def _finite(v: float) -> float | None:
    """JSON-safe: None for an infinite (censored) or NaN value."""
    return float(v) if np.isfinite(v) else None


def late_rise(val_acc, fraction: float = 0.2) -> float:
    """Rise of validation accuracy over the last ``fraction`` of a run's evaluations
    (last value minus the value ``fraction`` of the evaluations before the end)."""
    v = list(val_acc)
    if len(v) < 2:
        return float("nan")
    n = max(2, int(round(len(v) * fraction)))
    return float(v[-1] - v[-min(n, len(v))])


def censored_median(steps, budget: int) -> float:
    """Median steps-to-grok counting runs that did not grok within ``budget`` as slower than
    every grok (never dropped): +inf when half or more of the runs did not grok."""
    s = _steps(steps)
    return float(np.median(s)) if len(s) else float("nan")


def grok_counts(steps, budget: int) -> dict:
    """Steps-to-grok per run (None: not within ``budget``) counted: ``grokked`` of ``n``, the
    grokking steps ``at`` (sorted) and the censored ``median`` (None beyond the budget), each
    with a ``*_text`` twin."""
    s = _steps(steps)
    ok = np.sort(s[np.isfinite(s)])
    med = censored_median(steps, budget)
    return {"grokked": int(len(ok)), "n": int(len(s)), "at": [float(v) for v in ok], "median": _finite(med),
            "at_text": _list_text(ok, "{:.0f}"), "median_text": _steps_text(med, budget)}


def earlier_share(a_steps, b_steps) -> float:
    """Share of (a run, b run) pairs in which the a run grokked strictly earlier; a run that did
    not grok counts as slower than every grok, two such runs (or equal steps) as a tie (½)."""
    a, b = _steps(a_steps)[:, None], _steps(b_steps)[None, :]
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(((a < b) + 0.5 * (a == b)).mean())


def _prefixed(prefix: str, counts: dict) -> dict:
    return {f"{prefix}_{k}": v for k, v in counts.items() if k in ("grokked", "n", "at_text", "median_text")}


# ---------------------------------------------------------------- best strength of a grid (07)


def _best_cells(g: pd.DataFrame, level: float) -> tuple[list[float], bool]:
    """Strengths of the best cell(s) at one fraction: fastest median steps-to-grok among cells
    where ≥ level of the seeds grok (as ``lrdlib.analysis.phase.region``); if none, highest grok share,
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

    ``cells``: ``lrdlib.analysis.phase.cells`` frame. Per train fraction (``per_fraction``): the best
    strength (fastest grokking cell; ties kept), whether any cell groks, and whether every best sits
    at an edge (``side``: low / high / only). DOES_NOT_HOLD with fewer than 3 strengths (every one
    is an edge) or when at some fraction the best is at an edge (``edge_fractions``); CANNOT_TELL
    when inside everywhere but with fewer than MIN_SEEDS seeds; HOLDS otherwise.
    """
    g = cells[cells.method == method]
    strengths = sorted(g.strength.unique())
    lo, hi = strengths[0], strengths[-1]
    seeds = int(g.seeds.min())
    per, edge_fracs = [], []
    for f, gf in g.groupby("train_frac", sort=True):
        best, groks = _best_cells(gf, level)
        edge = all(s in (lo, hi) for s in best)
        side = ("only" if lo == hi else "low" if best[0] == lo else "high") if edge else None
        per.append({"train_frac": float(f), "best": best, "groks": groks, "at_edge": edge, "side": side})
        if edge:
            edge_fracs.append(float(f))
    nums = {"method": method, "strengths": strengths, "seeds": seeds, "per_fraction": per, "edge_fractions": edge_fracs,
            "strengths_text": _list_text(strengths), "edge_fractions_text": _list_text(edge_fracs),
            "best_text": "; ".join(f"{p['train_frac']:g}: {'/'.join(f'{s:g}' for s in p['best'])}" for p in per),
            "by_accuracy_text": _list_text([p["train_frac"] for p in per if not p["groks"]])}
    if len(strengths) < 3 or edge_fracs:
        return Verdict(DOES_NOT_HOLD, nums)
    return Verdict(CANNOT_TELL if seeds < MIN_SEEDS else HOLDS, nums)


# ---------------------------------------------------------------- ablations (05)


def arm_outcome(gt: pd.DataFrame, arm: str, budget: int, still_rising: int | None = None) -> dict:
    """An arm of a ``grok_table`` counted: ``grokked`` of ``seeds`` within ``budget`` (``censored``
    the rest), the median grokking step, the final validation accuracy and, given ``still_rising``
    (how many of its censored runs were still rising at the end), ``still_rising_text`` ('k/c';
    'n/a' when not given or nothing censored). ``run`` is False when the arm is not in the table."""
    if arm not in gt.index:
        return {"arm": arm, "run": False}
    t = gt.loc[arm]
    k, n = int(t.grokked), int(t.seeds)
    rising = None if still_rising is None or k == n else int(still_rising)
    return {"arm": arm, "run": True, "grokked": k, "seeds": n, "censored": n - k, "budget": budget,
            "median_text": _steps_text(t["median"], budget), "final_val_acc": float(t.final_val_acc),
            "still_rising": rising, "still_rising_text": "n/a" if rising is None else f"{rising}/{n - k}"}


def tangential_mechanism(gt: pd.DataFrame, radial: str, tangential: str, budget: int,
                         level: float = 0.5, still_rising: dict[str, int] | None = None) -> Verdict:
    """Claim "LRD's tangential component is what makes it grok", from the radial-only and
    tangential-only arms of a ``grok_table``.

    tangential groks, radial does not → HOLDS (the tangential part suffices where the radial
    part does not); radial groks → DOES_NOT_HOLD (the radial part alone suffices: the
    tangential part is not necessary); neither groks → CANNOT_TELL (neither part alone suffices
    within the budget). Fewer than MIN_SEEDS seeds, or an arm not run → CANNOT_TELL.
    ``radial_groks`` / ``tangential_groks``: at least ``level`` of the arm's seeds grokked.
    """
    sr = still_rising or {}
    nums = {"radial_arm": radial, "tangential_arm": tangential, "budget": budget, "level": level, "seeds": 0,
            "radial": None, "tangential": None, "radial_text": "n/a", "tangential_text": "n/a",
            "radial_groks": None, "tangential_groks": None}
    if radial not in gt.index or tangential not in gt.index:
        return Verdict(CANNOT_TELL, nums)
    r, t = gt.loc[radial], gt.loc[tangential]
    kr, nr, kt, nt = int(r.grokked), int(r.seeds), int(t.grokked), int(t.seeds)
    rg, tgk = kr / nr >= level and kr > 0, kt / nt >= level and kt > 0
    n = min(nr, nt)
    ro, to = arm_outcome(gt, radial, budget, sr.get(radial)), arm_outcome(gt, tangential, budget, sr.get(tangential))
    nums.update(seeds=n, radial=[kr, nr], tangential=[kt, nt], radial_text=f"{kr}/{nr}", tangential_text=f"{kt}/{nt}",
                radial_groks=bool(rg), tangential_groks=bool(tgk), radial_still_rising_text=ro["still_rising_text"],
                tangential_still_rising_text=to["still_rising_text"])
    if n < MIN_SEEDS:
        return Verdict(CANNOT_TELL, nums)
    return Verdict(DOES_NOT_HOLD if rg else HOLDS if tgk else CANNOT_TELL, nums)


def displacement_ratio(tangential: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per arm and evaluation step: the decay's displacement ‖ΔW‖_F (from its radial and
    tangential norms, mean over the target matrices, median over seeds) and its ratio to the
    ``reference`` arm's at the same step. ``tangential``: ``lrdlib.analysis.frames.tangential_frame``."""
    d = tangential.assign(disp=np.hypot(tangential.decay_rad, tangential.decay_tan))
    per = (d.groupby(["arm", "seed", "step"]).disp.mean().groupby(["arm", "step"]).median().rename("displacement")
           .reset_index())
    ref = per[per.arm == reference].set_index("step").displacement
    per["ratio"] = per.displacement / per.step.map(ref)
    return per


def matched_drift(ratios: pd.DataFrame, arm: str, steps=(0, 1000), factor: float = 1.5) -> Verdict:
    """Claim "``arm`` stays matched to the reference (per-step displacement within ``factor``)".

    ``ratios``: ``displacement_ratio``. ``ratio_at``: the ratio at the evaluation nearest to each of
    ``steps``; ``first_off_step``: the first step at which it leaves [1/factor, factor]. HOLDS when
    it never does, DOES_NOT_HOLD otherwise (a measurement of the trained weights: the seed count
    does not enter); CANNOT_TELL when nothing was recorded."""
    g = ratios[(ratios.arm == arm) & np.isfinite(ratios.ratio)].sort_values("step")
    nums = {"arm": arm, "factor": factor, "low": 1 / factor, "ratio_at": {}, "first_off_step": None, "ratio_range": None,
            "ratio_at_text": "n/a", "first_off_text": "none"}
    if not len(g):
        return Verdict(CANNOT_TELL, nums)
    at = {}
    for s in steps:
        i = int((g.step - s).abs().argmin())
        at[int(g.step.iloc[i])] = float(g.ratio.iloc[i])
    off = g[(g.ratio > factor) | (g.ratio < 1 / factor)]
    first = int(off.step.iloc[0]) if len(off) else None
    nums.update(ratio_at=at, first_off_step=first, ratio_range=[float(g.ratio.min()), float(g.ratio.max())],
                ratio_at_text=", ".join(f"{v:.2f}× at step {k}" for k, v in at.items()),
                first_off_text="none" if first is None else str(first))
    return Verdict(DOES_NOT_HOLD if len(off) else HOLDS, nums)


def rank_collapse_precondition(ranks: list[tuple[str, int, float]], threshold: float = 2.0) -> Verdict:
    """Claim "Q/K rank collapse (stable rank < ``threshold``) is a precondition of grokking".

    ``ranks``: (arm, seed, mean Q/K stable rank at the grokking step) per grokked run. One run
    that grokked at a higher rank is a counterexample (DOES_NOT_HOLD); all below the threshold
    is consistent with the claim, not proof (HOLDS from ≥ MIN_SEEDS runs, else CANNOT_TELL)."""
    nums = {"runs": len(ranks), "threshold": threshold, "min": None, "max": None, "max_run": None,
            "max_arm": None, "max_seed": None, "range_text": "n/a"}
    if not ranks:
        return Verdict(CANNOT_TELL, nums)
    hi = max(ranks, key=lambda t: t[2])
    lo = float(min(t[2] for t in ranks))
    nums.update({"min": lo, "max": float(hi[2]), "max_run": [hi[0], int(hi[1])], "max_arm": hi[0], "max_seed": int(hi[1]),
                 "range_text": f"{lo:.2f} to {hi[2]:.2f}"})
    if hi[2] >= threshold:
        return Verdict(DOES_NOT_HOLD, nums)
    return Verdict(CANNOT_TELL if len(ranks) < MIN_SEEDS else HOLDS, nums)


# ---------------------------------------------------------------- seed setting: L2 vs LRD vs Luon (03, 06)


def faster_to_grok(a_steps, b_steps, budget: int, a: str, b: str) -> Verdict:
    """Claim "``a`` groks faster than ``b``" from steps-to-grok per seed (None: not within ``budget``).

    Runs that did not grok are censored (counted k/n, slower than every grok), never dropped.
    P = share of (a, b) seed pairs in which a grokked earlier (``earlier_share``). CANNOT_TELL when
    neither grokked, or with fewer than MIN_SEEDS runs on either side. Otherwise HOLDS when P = 1
    (every a run earlier than every b run), DOES_NOT_HOLD when P ≤ ½, CANNOT_TELL in between (the
    runs overlap: not separable with these seeds).
    """
    sa, sb = _steps(a_steps), _steps(b_steps)
    p = earlier_share(a_steps, b_steps)
    n = min(len(sa), len(sb))
    nums = {"a_name": a, "b_name": b, "a_steps": [None if np.isinf(v) else float(v) for v in sa],
            "b_steps": [None if np.isinf(v) else float(v) for v in sb],
            "a_grokked": int(np.isfinite(sa).sum()), "b_grokked": int(np.isfinite(sb).sum()), "earlier_share": p,
            "a_median": _finite(censored_median(a_steps, budget)), "b_median": _finite(censored_median(b_steps, budget)),
            "budget": budget, **_prefixed("a", grok_counts(a_steps, budget)), **_prefixed("b", grok_counts(b_steps, budget)),
            "pairs": len(sa) * len(sb), "earlier_pct": f"{p:.0%}"}
    if not np.isfinite(sa).any() and not np.isfinite(sb).any():
        return Verdict(CANNOT_TELL, nums)
    if n < MIN_SEEDS:
        return Verdict(CANNOT_TELL, nums)
    return Verdict(HOLDS if p == 1 else DOES_NOT_HOLD if p <= 0.5 else CANNOT_TELL, nums)


def luon_vs_lrd(luon_steps, lrd_steps, budget: int) -> Verdict:
    """Claim 4 of the seeds, "Luon (fused) groks faster than decoupled LRD": ``faster_to_grok``
    on steps-to-grok per seed (None: did not grok within ``budget``). Used by 03 and 06."""
    return faster_to_grok(luon_steps, lrd_steps, budget, "Luon", "LRD")


def groks_where_other_does_not(a_steps, b_steps, budget: int, a: str, b: str,
                               unconfirmed: dict[str, int] | None = None) -> Verdict:
    """Claim "``a`` groks and ``b`` does not, for the majority of seeds, within ``budget``".

    ``unconfirmed``: per label (a or b), runs at ≥ the threshold only at the last evaluation
    (not confirmed by a second one); ``holds_with_unconfirmed`` says whether the claim would hold
    counting them. HOLDS / DOES_NOT_HOLD with ≥ MIN_SEEDS seeds each, else CANNOT_TELL
    (``holds_at_face_value`` then reads the runs).
    """
    sa, sb = _steps(a_steps), _steps(b_steps)
    ka, kb, na, nb = int(np.isfinite(sa).sum()), int(np.isfinite(sb).sum()), len(sa), len(sb)
    un = unconfirmed or {}
    holds = ka > na / 2 and kb <= nb / 2
    holds_un = ka + un.get(a, 0) > na / 2 and kb + un.get(b, 0) <= nb / 2
    nums = {"a": [ka, na], "b": [kb, nb], "unconfirmed": dict(un), "budget": budget, "a_name": a, "b_name": b,
            **_prefixed("a", grok_counts(a_steps, budget)), **_prefixed("b", grok_counts(b_steps, budget)),
            "unconfirmed_runs": int(sum(un.values())), "holds_at_face_value": bool(holds),
            "holds_with_unconfirmed": bool(holds_un)}
    if min(na, nb) < MIN_SEEDS:
        return Verdict(CANNOT_TELL, nums)
    return Verdict(HOLDS if holds else DOES_NOT_HOLD, nums)


def seed_l2_undertuned(seed_steps, own_steps, budget: int, seed_label: str, own_label: str,
                       seed_final_acc=(), ceiling: float | None = None) -> Verdict:
    """Claim "the seed L2 setting shows that L2 fails here", tested against L2 at its own,
    stronger strength (``own_steps``). Steps-to-grok per seed, None: not within ``budget``.

    If the seed L2 itself groks in most runs, or the stronger L2 groks in some run (the seed
    setting's failure is then a property of its strength within this budget, "under-tuned", not
    of L2): DOES_NOT_HOLD (CANNOT_TELL below MIN_SEEDS). If neither grokked: CANNOT_TELL (two
    strengths and one budget cannot show that L2 fails).
    """
    ss, so = _steps(seed_steps), _steps(own_steps)
    ks, ko = int(np.isfinite(ss).sum()), int(np.isfinite(so).sum())
    n = min(len(ss), len(so))
    acc = [float(v) for v in seed_final_acc]
    nums = {"seed": [ks, len(ss)], "own": [ko, len(so)], "seed_final_val_acc": acc, "ceiling": ceiling, "budget": budget,
            "seed_label": seed_label, "own_label": own_label,
            **_prefixed("seed", grok_counts(seed_steps, budget)), **_prefixed("own", grok_counts(own_steps, budget)),
            "acc_range_text": f"{min(acc):.2f}-{max(acc):.2f}" if acc else "n/a",
            "ceiling_text": "n/a" if ceiling is None else f"{ceiling:.2f}"}
    if ks > len(ss) / 2 or ko:
        return Verdict(CANNOT_TELL if n < MIN_SEEDS else DOES_NOT_HOLD, nums)
    return Verdict(CANNOT_TELL, nums)


def rank_collapse_within(min_srank: list[float], by_step: int, last_step: int, method: str = "LRD",
                         threshold: float = 2.0) -> Verdict:
    """Claim "``method`` drives the Q/K stable rank below ``threshold`` within ``by_step`` steps".

    ``min_srank``: per run, the smallest mean Q/K stable rank at evaluations ≤ ``by_step``;
    ``last_step``: the last evaluated step of the runs. CANNOT_TELL when the runs end before
    ``by_step``; a run that stays ≥ threshold is a counterexample (DOES_NOT_HOLD); all below:
    HOLDS with ≥ MIN_SEEDS runs, else CANNOT_TELL.
    """
    v = [float(x) for x in min_srank]
    over = sum(x >= threshold for x in v)
    nums = {"min_srank": v, "by_step": by_step, "last_step": last_step, "threshold": threshold, "method": method,
            "runs": len(v), "over": int(over), "min_srank_text": _list_text(v, "{:.2f}")}
    if last_step < by_step:
        return Verdict(CANNOT_TELL, nums)
    if over:
        return Verdict(DOES_NOT_HOLD, nums)
    return Verdict(CANNOT_TELL if len(v) < MIN_SEEDS else HOLDS, nums)


# ---------------------------------------------------------------- paired seeds (06)


def paired_by_seed(a_steps: dict, b_steps: dict, budget: int, a: str, b: str) -> Verdict:
    """Claim "``a`` groks earlier than ``b`` seed for seed", from steps-to-grok per seed
    (``{seed: step or None}``; same seed = same initialisation, split and batch order).

    Only seeds run in both arms are paired. Per pair: who grokked first (a run that did not grok
    within ``budget`` is censored: later than any grok, a tie with another censored run). HOLDS
    when ``a`` is earlier in every pair, DOES_NOT_HOLD when it is earlier in at most half,
    CANNOT_TELL in between, and with fewer than MIN_SEEDS pairs whatever they show.
    """
    seeds = sorted(set(a_steps) & set(b_steps))
    sa, sb = _steps([a_steps[s] for s in seeds]), _steps([b_steps[s] for s in seeds])
    earlier, later = int((sa < sb).sum()), int((sb < sa).sum())
    n = len(seeds)
    nums = {"seeds": seeds, "a_steps": [None if np.isinf(v) else float(v) for v in sa],
            "b_steps": [None if np.isinf(v) else float(v) for v in sb], "a_earlier": earlier, "pairs": n,
            "a_name": a, "b_name": b, "b_earlier": later, "ties": n - earlier - later, "budget": budget,
            "pairs_text": "; ".join(f"seed {s}: {_steps_text(x, budget)} vs {_steps_text(y, budget)}"
                                    for s, x, y in zip(seeds, sa, sb)) or "none"}
    if n < MIN_SEEDS:
        return Verdict(CANNOT_TELL, nums)
    if earlier == n:
        return Verdict(HOLDS, nums)
    return Verdict(DOES_NOT_HOLD if earlier <= n / 2 else CANNOT_TELL, nums)


# ---------------------------------------------------------------- learning-rate geometry (07)


def as_fast_as(a_steps, b_steps, budget: int, a: str, b: str, factor: float = 1.5) -> Verdict:
    """Claim "``a`` groks as fast as ``b``": an arm that keeps only the explaining ingredient
    matches the full method. Steps-to-grok per seed, None: not within ``budget``.

    Censored medians (a run that did not grok counts as slower than every grok, never dropped):
    HOLDS when a's is at most ``factor`` × b's (a may be faster), DOES_NOT_HOLD when larger (or
    a's median run did not grok while b's did), both with ≥ MIN_SEEDS runs per arm; CANNOT_TELL
    below that or when neither median run grokked.
    """
    ma, mb = censored_median(a_steps, budget), censored_median(b_steps, budget)
    n = min(len(a_steps), len(b_steps))
    ratio = ma / mb if np.isfinite(mb) else (0.0 if np.isfinite(ma) else float("nan"))
    nums = {"a_steps": [None if np.isinf(v) else float(v) for v in _steps(a_steps)],
            "b_steps": [None if np.isinf(v) else float(v) for v in _steps(b_steps)],
            "a_median": _finite(ma), "b_median": _finite(mb), "ratio": _finite(ratio),
            "earlier_share": earlier_share(a_steps, b_steps), "factor": factor, "budget": budget, "a_name": a, "b_name": b,
            **_prefixed("a", grok_counts(a_steps, budget)), **_prefixed("b", grok_counts(b_steps, budget)),
            "ratio_text": f"{ratio:.2f}" if np.isfinite(ratio) else "n/a"}
    if np.isnan(ratio) or n < MIN_SEEDS:
        return Verdict(CANNOT_TELL, nums)
    return Verdict(HOLDS if ratio <= factor else DOES_NOT_HOLD, nums)


CLASS_WORDS = {"beats": "beats it", "undecided": "is undecided", "does_not_beat": "does not beat it"}


def _beats_reference(row, ref) -> str:
    """How one candidate of ``rank_correlations`` reads against the reference: ``beats`` (its
    bootstrap interval of |ρ| − |ρ_reference| lies above 0), ``does_not_beat`` (|ρ| ≤ |ρ_reference|),
    ``undecided`` (the interval includes 0, or a ρ is undefined)."""
    if not (np.isfinite(row.rho) and np.isfinite(ref.rho)):
        return "undecided"
    if abs(row.rho) <= abs(ref.rho):
        return "does_not_beat"
    return "beats" if row.gap_lo > 0 else "undecided"


def explains_better(corr: pd.DataFrame, seeds: int, reference: str = "srank") -> Verdict:
    """Claim "steps-to-grok lines up better with a learning-rate-geometry quantity than with the
    Q/K stable rank", from ``lrdlib.analysis.mechanism.rank_correlations`` (Spearman ρ over runs, censored
    runs at the budget, bootstrap interval of |ρ_candidate| − |ρ_reference|).

    The best candidate is the non-reference row with the largest |ρ|. HOLDS when its gap interval
    lies above 0; DOES_NOT_HOLD when |ρ_reference| ≥ its |ρ|; CANNOT_TELL when the interval
    includes 0, when ρ is undefined (e.g. every run censored), or with fewer than MIN_SEEDS seeds
    per arm. The verdict speaks for the best candidate only: ``per_candidate`` (``beats`` /
    ``undecided`` / ``does_not_beat``, worded in ``per_candidate_text``, with ``*_text`` lists of
    labels) says which candidates beat
    the reference, and ``words`` (per candidate) and ``words_text`` word each ρ (``correlation_words``).
    """
    ref = corr.loc[reference]
    others = corr.drop(index=reference)
    cls = {c: _beats_reference(r, ref) for c, r in others.iterrows()}
    labels = lambda k: [others.loc[c, "label"] for c, v in cls.items() if v == k]   # noqa: E731
    nums = {"n_runs": int(ref.n), "seeds_per_arm": seeds, "rho": corr.rho.to_dict(), "p": corr.p.to_dict(),
            "gap": {c: [float(r.gap_lo), float(r.gap_hi)] for c, r in others.iterrows()},
            "reference_label": ref.label, "best": None, "best_label": "n/a", "best_abs_rho_text": "n/a",
            "reference_abs_rho_text": f"{abs(ref.rho):.2f}", "gap_text": "n/a", "per_candidate": cls,
            "per_candidate_text": {c: CLASS_WORDS[v] for c, v in cls.items()},
            **{f"{k}_text": _list_text(labels(k), "{}") for k in ("beats", "undecided", "does_not_beat")},
            "words": {c: correlation_words(r.rho, r.p) for c, r in corr.iterrows()},
            "rho_text": "; ".join(f"{r.label} {r.rho:+.2f} (p = {r.p:.2g})" for r in corr.itertuples()),
            "words_text": "; ".join(f"{r.label}: {correlation_words(r.rho, r.p)['text']}" for r in corr.itertuples())}
    if not np.isfinite(others.rho).any() or not np.isfinite(ref.rho):
        return Verdict(CANNOT_TELL, nums)
    best = others.rho.abs().idxmax()
    b = others.loc[best]
    nums.update(best=best, best_label=b.label, best_abs_rho_text=f"{abs(b.rho):.2f}",
                gap_text=f"[{b.gap_lo:+.2f}, {b.gap_hi:+.2f}]")
    if seeds < MIN_SEEDS:
        return Verdict(CANNOT_TELL, nums)
    if abs(ref.rho) >= abs(b.rho):
        return Verdict(DOES_NOT_HOLD, nums)
    return Verdict(HOLDS if b.gap_lo > 0 else CANNOT_TELL, nums)


# ---------------------------------------------------------------- own best strength (05, 06)


def _groks(row: dict, level: float) -> bool:
    n, k = int(row["n"]), int(row["grokked"])
    return n > 0 and k > 0 and k / n >= level


def groks_at_own_best(rows: list[dict], budget: int, level: float = 0.5) -> Verdict:
    """Claim "some arm that does not grok at its matched strength groks at its own best strength".

    ``rows``: one per arm, with ``arm``, ``matched_strength``, ``best_strength``, ``matched`` and
    ``best`` (``lrdlib.analysis.survival.arm_summary`` rows: ``n``, ``grokked``, ``km_median``; same budget
    and seeds for both), ``at_edge`` ("low" / "high" / None: the best at that edge of the strengths
    searched) and ``best_by_accuracy`` (no strength grokked at the search seed: the best was chosen
    by accuracy). An arm "groks" at a strength when at least ``level`` of its seeds do. Each arm
    falls in one class: own best only, both, neither, matched only (the seed-0 choice did worse
    over the seeds). HOLDS when some arm groks at its own best only, DOES_NOT_HOLD when none does,
    CANNOT_TELL with fewer than MIN_SEEDS seeds per arm and strength or no rows."""
    cats = {"own_best_only": [], "both": [], "neither": [], "matched_only": []}
    for r in rows:
        gm, gb = _groks(r["matched"], level), _groks(r["best"], level)
        cats["own_best_only" if gb and not gm else "both" if gb else "matched_only" if gm else "neither"].append(r["arm"])
    seeds = min((min(int(r["matched"]["n"]), int(r["best"]["n"])) for r in rows), default=0)
    edges = [r["arm"] for r in rows if r.get("at_edge")]
    by_acc = [r["arm"] for r in rows if r.get("best_by_accuracy")]
    nums = {**cats, "seeds": seeds, "at_edge": edges, "best_by_accuracy": by_acc, "level": level, "budget": budget,
            **{f"{k}_text": _list_text(v, "{}") for k, v in cats.items()},
            "at_edge_text": _list_text([f"{r['arm']} ({r['at_edge']})" for r in rows if r.get("at_edge")], "{}"),
            "best_by_accuracy_text": _list_text(by_acc, "{}")}
    if not rows or seeds < MIN_SEEDS:
        return Verdict(CANNOT_TELL, nums)
    return Verdict(HOLDS if cats["own_best_only"] else DOES_NOT_HOLD, nums)


def faster_at_own_best(row: dict, a: str, b: str, budget: int) -> Verdict:
    """Claim "``a`` groks faster than ``b``, each at its own best strength", from one paired row:
    ``a_median``, ``b_median`` (Kaplan-Meier medians, ``inf`` beyond ``budget``) and
    ``lrdlib.analysis.survival.paired_comparison`` of a against b over their common seeds (``ratio``, ``lo``,
    ``hi``, ``seeds``, ``a_first``, ``b_first``, ``undecided``, ``p``).

    ``compare_class`` (``class``): HOLDS when the paired bootstrap interval of the ratio of medians
    a / b lies below 1 (``factor_text``: b's median / a's with its interval); DOES_NOT_HOLD when it
    lies above 1 (b is faster); CANNOT_TELL when it includes 1 or no ratio exists (neither median
    within the budget), and with fewer than MIN_SEEDS paired seeds. The sign test is reported
    beside it (with 5 seeds its smallest two-sided p is 0.0625)."""
    cls = compare_class(row)
    n = int(row["seeds"])
    r, lo, hi = (float(row[k]) for k in ("ratio", "lo", "hi"))
    if cls == "faster" and r != 0 and hi != 0:
        factor = f"{1 / r:.2g} [{1 / hi:.2g}, {'∞' if lo == 0 else f'{1 / lo:.2g}'}]"
    else:
        factor = "n/a"
    nums = {"class": cls, "seeds": n, "ratio": _finite(r) if not np.isnan(r) else None,
            "lo": None if np.isnan(lo) else float(lo), "hi": None if np.isnan(hi) else float(hi), "budget": budget,
            "a_name": a, "b_name": b, "a_median_text": _steps_text(row.get("a_median"), budget),
            "b_median_text": _steps_text(row.get("b_median"), budget),
            "ratio_text": "n/a" if np.isnan(r) else f"{r:.2g} [{lo:.2g}, {hi:.2g}]", "factor_text": factor,
            "a_first": row.get("a_first", 0), "b_first": row.get("b_first", 0), "undecided": row.get("undecided", 0),
            "p_text": f"{float(row.get('p', float('nan'))):.2g}"}
    if n < MIN_SEEDS:
        return Verdict(CANNOT_TELL, nums)
    return Verdict({"faster": HOLDS, "slower": DOES_NOT_HOLD}.get(cls, CANNOT_TELL), nums)


def edge_verdict(method: str, searches: dict, symbol: str = "strength") -> Verdict:
    """Claim "the strengths searched for ``method`` contain its best strength", over the train
    fractions of ``searches`` (``{frac: Search}``, each settled). DOES_NOT_HOLD when at some fraction
    the best is at an edge of the strengths searched (after the extensions: there it is only the
    best *searched*; ``at_edge``); CANNOT_TELL when no best is at an edge but at some fraction no
    strength grokked (``no_grok``: the best was chosen by accuracy alone); HOLDS otherwise."""
    edges, no_grok = [], []
    for f in sorted(searches):
        s = searches[f]
        if s.at_edge:
            edges.append({"frac": f, "side": s.at_edge, "best": s.best_strength})
        if not s.best.event:
            no_grok.append(f)
    nums = {"at_edge": edges, "no_grok": no_grok, "best": {str(f): searches[f].best_strength for f in sorted(searches)},
            "method": method, "symbol": symbol,
            "extensions": {str(f): searches[f].extensions for f in sorted(searches)},
            "best_text": "; ".join(f"{f:g}: {searches[f].best_strength:g} [{searches[f].strengths[0]:g}, "
                                   f"{searches[f].strengths[-1]:g}]" for f in sorted(searches)),
            "at_edge_text": _list_text([f"{e['frac']:g} ({e['side']})" for e in edges], "{}"),
            "no_grok_text": _list_text(no_grok)}
    if edges:
        return Verdict(DOES_NOT_HOLD, nums)
    return Verdict(CANNOT_TELL if no_grok else HOLDS, nums)


# ---------------------------------------------------------------- the verdict table (04)


def smallest_grokking_fraction(shares: dict, level: float = 0.5) -> float | None:
    """The smallest train fraction whose ``(k, n)`` has k/n ≥ ``level`` (None: no fraction does)."""
    ok = [f for f, (k, n) in shares.items() if n and k / n >= level]
    return min(ok) if ok else None


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


def _factor_text(row: dict, budget: int) -> str:
    """b's KM median / a's for a row where a is faster, with the interval from the ratio's
    ('> x' when b's median is beyond the budget)."""
    r, lo, hi = row["ratio"], row["lo"], row["hi"]
    if r == 0 or hi == 0:
        return f"> {budget / row['a_median']:.2g}"
    return f"{1 / r:.2g} [{1 / hi:.2g}, {'∞' if lo == 0 else f'{1 / lo:.2g}'}]"


def faster_than_tuned(rows: Sequence[dict], a: str, b: str, budget: int, level: float = 0.95) -> Verdict:
    """Claim "``a`` groks faster than ``b``, each at its own best strength, at some train fraction".

    ``rows``: one per fraction with ``frac``, ``a_median``, ``b_median`` (KM medians, ``inf`` beyond
    the budget) and a ``paired_comparison`` of a against b (``ratio``, ``lo``, ``hi``, ``seeds``,
    ``a_first``, ``b_first``, ``p``). Per fraction (``compare_class``): a faster when the paired
    bootstrap interval of the ratio of medians a / b lies below 1, slower when above 1, else not
    resolved. HOLDS when a is faster at some fraction, DOES_NOT_HOLD when at none; CANNOT_TELL when
    there is no row or some fraction has fewer than MIN_SEEDS paired seeds. ``factors_text``: per
    fraction where a is faster, b's median / a's with its interval."""
    rows = sorted(rows, key=lambda r: r["frac"])
    classes = {r["frac"]: compare_class(r) for r in rows}
    fast = [f for f, c in classes.items() if c == "faster"]
    slow = [f for f, c in classes.items() if c == "slower"]
    other = [f for f, c in classes.items() if c in ("unresolved", "neither")]
    seeds = min((int(r["seeds"]) for r in rows), default=0)
    by = {r["frac"]: r for r in rows}
    nums = {"faster": fast, "slower": slow, "not_resolved": other, "seeds": seeds,
            "classes": {str(k): v for k, v in classes.items()}, "a_name": a, "b_name": b, "budget": budget, "level": level,
            "faster_text": _list_text(fast), "slower_text": _list_text(slow), "not_resolved_text": _list_text(other),
            "factors_text": "; ".join(f"{f:g}: {_factor_text(by[f], budget)}" for f in fast) or "none"}
    if not rows or seeds < MIN_SEEDS:
        return Verdict(CANNOT_TELL, nums)
    return Verdict(HOLDS if fast else DOES_NOT_HOLD, nums)


def headline(shares: dict, budget: int, level: float = 0.5) -> dict:
    """The headline of the verdict table: per method, the smallest train fraction at which it
    groks for at least ``level`` of its seeds within ``budget`` (``shares``: ``{method: {frac: (k, n)}}``,
    each method at its own best strength per fraction): ``fraction`` (None: at no fraction tried)
    with its ``k`` / ``n``, ``at_lowest_tried`` (it may grok lower) and the larger fractions at
    which it is below the level, each with a ``*_text`` twin."""
    out = {}
    for m, by in shares.items():
        f = smallest_grokking_fraction(by, level)
        lowest = min(by) if by else None
        larger = [g for g in by if f is not None and g > f]
        gaps = [g for g in larger if not (by[g][1] and by[g][0] / by[g][1] >= level)]
        out[m] = {"fraction": f, "k": by[f][0] if f is not None else None, "n": by[f][1] if f is not None else None,
                  "at_lowest_tried": f is not None and f == lowest, "larger_fractions_below_level": gaps,
                  "fraction_text": "none" if f is None else f"{f:g}",
                  "share_text": "n/a" if f is None else f"{by[f][0]}/{by[f][1]}", "gaps_text": _list_text(sorted(gaps))}
    return out


def expands_region(shares: dict, a: str, b: str, budget: int, level: float = 0.5) -> Verdict:
    """Claim "``a`` expands the grokking region relative to tuned ``b``": a train fraction where
    ``a`` groks for ≥ ``level`` of its seeds and ``b`` (at its own best strength) does not.
    ``shares``: ``{method: {frac: (k, n)}}``. HOLDS when there is such a fraction, DOES_NOT_HOLD
    when there is none, CANNOT_TELL with no common fraction or fewer than MIN_SEEDS seeds at some
    fraction."""
    sa, sb = shares[a], shares[b]
    fr = sorted(set(sa) & set(sb))
    groks = lambda kn: bool(kn[1]) and kn[0] / kn[1] >= level
    cats = {"a_only": [], "both": [], "b_only": [], "neither": []}
    for f in fr:
        ga, gb = groks(sa[f]), groks(sb[f])
        cats["a_only" if ga and not gb else "both" if ga and gb else "b_only" if gb else "neither"].append(f)
    seeds = min((min(sa[f][1], sb[f][1]) for f in fr), default=0)
    kn = lambda fs: "; ".join(f"{f:g}: {sa[f][0]}/{sa[f][1]} vs {sb[f][0]}/{sb[f][1]}" for f in fs) or "none"
    nums = {**cats, "seeds": seeds, "a_name": a, "b_name": b, "budget": budget, "level": level,
            **{f"{k}_text": _list_text(v) for k, v in cats.items()},
            "a_only_shares_text": kn(cats["a_only"]), "b_only_shares_text": kn(cats["b_only"])}
    if not fr or seeds < MIN_SEEDS:
        return Verdict(CANNOT_TELL, nums)
    return Verdict(HOLDS if cats["a_only"] else DOES_NOT_HOLD, nums)


# ---------------------------------------------------------------- correlations, the moonshot, the crossed design (07)
RHO_SIZES = ((0.8, "strong"), (0.5, "moderate"), (0.3, "weak"), (0.0, "negligible"))   # |ρ| ≥ bound: word
ALPHA = 0.05


def correlation_words(rho: float, p: float, alpha: float = ALPHA) -> dict:
    """How a Spearman ρ reads, from its numbers alone: ``size`` strong (|ρ| ≥ 0.8), moderate
    (≥ 0.5), weak (≥ 0.3) or negligible; ``direction`` positive / negative; ``significant``
    p < ``alpha``, ``significance_text`` '[not ]significant at 5 %'; ``text`` e.g.
    'ρ = −0.61 (p = 1.4e-09): moderate, negative' or 'ρ = −0.20 (p = 0.068): negligible,
    negative, not significant at 5 %' ('undefined' without a ρ)."""
    if rho is None or p is None or not (np.isfinite(rho) and np.isfinite(p)):
        return {"size": None, "direction": None, "significant": None, "significance_text": "undefined", "text": "undefined"}
    size = next(w for b, w in RHO_SIZES if abs(rho) >= b)
    direction = "positive" if rho > 0 else "negative" if rho < 0 else "none"
    sig = bool(p < alpha)
    text = f"ρ = {rho:+.2f}".replace("-", "−") + f" (p = {p:.2g}): {size}, {direction}"
    return {"size": size, "direction": direction, "significant": sig,
            "significance_text": f"{'' if sig else 'not '}significant at {alpha * 100:g} %",
            "text": text + ("" if sig else f", not significant at {alpha * 100:g} %")}


def orders_steps(table: pd.DataFrame, threshold: float = 0.8, min_runs: int = 100) -> Verdict:
    """Claim "one measured quantity orders steps-to-grok across the runs": some row of ``table``
    (index: quantity; columns ``label``, ``rho``, ``p``, ``n``: Spearman ρ of steps-to-grok with it
    over ``n`` runs, censored runs at the budget) has |ρ| ≥ ``threshold`` over ≥ ``min_runs`` runs.

    HOLDS when some row does (``reaching``); DOES_NOT_HOLD when rows with ≥ ``min_runs`` runs and a
    finite ρ exist and none reaches it; CANNOT_TELL when no row has them. ``best``: the row of
    largest |ρ| among those, with ``best_rho``, ``best_p``, ``best_n``, ``best_words``; ``per_quantity``: ρ, p, n,
    label and ``correlation_words`` of every row."""
    ok = table[(table.n >= min_runs) & np.isfinite(table.rho.astype(float))]
    per = {q: {"label": r.label, "rho": _nan_none(r.rho), "p": _nan_none(r.p), "n": int(r.n),
               "words": correlation_words(r.rho, r.p)["text"]} for q, r in table.iterrows()}
    nums = {"threshold": threshold, "min_runs": min_runs, "n_runs": int(table.n.max()) if len(table) else 0,
            "per_quantity": per, "best": None, "best_label": "n/a", "best_rho": None, "best_p": None, "best_n": 0,
            "best_abs_rho_text": "n/a", "best_words": "n/a", "reaching": [], "reaching_text": "none",
            "rho_text": "; ".join(f"{r.label} {r.rho:+.2f}" for r in table.itertuples() if np.isfinite(r.rho))}
    if not len(ok):
        return Verdict(CANNOT_TELL, nums)
    best = ok.rho.abs().idxmax()
    b = ok.loc[best]
    reach = [q for q, r in ok.iterrows() if abs(r.rho) >= threshold]
    nums.update(best=best, best_label=b.label, best_rho=float(b.rho), best_p=float(b.p), best_n=int(b.n),
                best_abs_rho_text=f"{abs(b.rho):.2f}", best_words=per[best]["words"], reaching=reach,
                reaching_text=_list_text([ok.loc[q, "label"] for q in reach], "{}"))
    return Verdict(HOLDS if reach else DOES_NOT_HOLD, nums)


def _nan_none(v) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def rate_collapse(cells: pd.DataFrame, budget: int, factor: float = 1.5) -> Verdict:
    """Claim "steps-to-grok depends on the Q/K angular rate ≈ k·η‖u‖/r alone" in a crossed design of
    fixed norm r × Q/K learning-rate factor k: cells with the same k/r grok alike.

    ``cells``: one row per run with ``r`` and ``k`` (any common units) and ``steps_to_grok`` (None /
    NaN: not within ``budget``). Per cell the censored median (``censored_median``); per level of
    k/r (rounded to 6 digits) holding two cells or more, ``within``: the largest over the smallest of
    its cells' medians (∞ when one is censored and another not). ``across``: the same ratio over
    the levels' medians. HOLDS when every such level is within ``factor`` and the levels differ
    (``across`` > ``factor``: k/r moves steps-to-grok at all); DOES_NOT_HOLD when some level is not
    within ``factor`` (cells of one angular rate grok differently); CANNOT_TELL with fewer than
    MIN_SEEDS runs in some cell, no level of two cells, a level whose cells are all censored, or
    levels that do not differ. The rank story names no such collapse: it predicts none."""
    d = cells.assign(ratio=(cells.k / cells.r).round(6))
    med = d.groupby(["r", "k"]).steps_to_grok.apply(lambda v: censored_median(v.tolist(), budget))
    seeds = int(d.groupby(["r", "k"]).size().min()) if len(d) else 0
    level = pd.Series({(r, k): round(k / r, 6) for r, k in med.index})
    spread = lambda v: float(v.max() / v.min()) if np.isfinite(v).any() else float("nan")   # noqa: E731
    within = {x: spread(med[level[level == x].index].to_numpy()) for x in sorted(level.unique()) if (level == x).sum() > 1}
    by_level = med.groupby(level.reindex(med.index).to_numpy()).median()
    across = spread(by_level.to_numpy()) if len(by_level) > 1 else float("nan")
    nums = {"factor": factor, "budget": budget, "seeds": seeds, "cells": len(med),
            "median": {f"r {r:g}, k {k:g}": _finite(v) for (r, k), v in med.items()},
            "within": {f"{x:g}": _finite(v) for x, v in within.items()}, "across": _finite(across),
            "within_text": "; ".join(f"k/r {x:g}: {v:.2f}×" if np.isfinite(v) else f"k/r {x:g}: n/a" for x, v in within.items()) or "none",
            "across_text": f"{across:.2f}×" if np.isfinite(across) else "n/a",
            "median_text": "; ".join(f"r {r:g}, k {k:g}: {_steps_text(v, budget)}" for (r, k), v in med.items())}
    if seeds < MIN_SEEDS or not within or any(np.isnan(v) for v in within.values()):
        return Verdict(CANNOT_TELL, nums)
    if any(v > factor for v in within.values()):
        return Verdict(DOES_NOT_HOLD, nums)
    return Verdict(HOLDS if np.isfinite(across) and across > factor else CANNOT_TELL, nums)
