"""The strength search of the verdict table (notebook 04): every method's ``lrdlib.runs.search.Search``
at every train fraction, run side by side in rounds of one sweep each, the reference arm's
confirmation over seeds (stage E), and the follower arm's other parameters at the reference's
tuned strength."""
from __future__ import annotations

import time
from collections import Counter, defaultdict

import numpy as np
import pandas as pd

from lrdlib.analysis.survival import arm_summary, by_seed
from lrdlib.analysis.verdicts import RISE_TOL, late_rise
from lrdlib.runs.search import (
    confirmation_points,
    confirmed_choice,
    edge_side,
    needs_confirmation,
    runner_up,
    trial_from_record,
)
from lrdlib.runs.sweep import run_sweep


class PhaseSearch:
    """Every method's strength search at every train fraction (``lrdlib.runs.search.Search``),
    as ``search_phase`` leaves them, with the reference arm's stage E and the follower's other
    parameters at the reference's tuned strength.

    ``searches``: ``{(method, frac): Search}``; ``records``: ``{(method, frac, Point): record}``
    of every run asked for; ``e_points``: ``{frac: [Point]}`` of the reference's stage E (``[]``:
    nothing to confirm); ``other_wd``: ``{frac: strength}``, the reference's table strength there
    (the follower's other parameters); ``stats``: ``{"rounds", "runs", "seconds", "steps_run"}``."""

    def __init__(self, methods, fracs, budget: int, reference: str, follower: str | None):
        self.methods, self.fracs, self.budget = list(methods), list(fracs), int(budget)
        self.reference, self.follower = reference, follower
        self.searches: dict = {}
        self.records: dict = {}
        self.e_points: dict = {}
        self.other_wd: dict = {}
        self.stats = {"rounds": 0, "runs": 0, "seconds": 0.0, "steps_run": 0}

    def e_trials(self, f) -> list:
        """The reference's stage-E trials at ``f`` (``[]`` when nothing was confirmed there)."""
        return [trial_from_record(self.records[(self.reference, f, p)], p.strength, "E", self.budget)
                for p in self.e_points.get(f, [])]

    def replaced(self, m, f) -> bool:
        """Whether stage E replaced the reference's best strength at ``f`` by its runner-up."""
        return (m == self.reference and bool(self.e_points.get(f))
                and confirmed_choice(self.searches[(m, f)].final(), self.e_trials(f)) == "runner-up")

    def final_trials(self, m, f, before_e: bool = False) -> list:
        """The trials of the verdict table: stage D's at the best strength, or stage E's where they
        replaced it (``before_e``: stage D's everywhere)."""
        return self.e_trials(f) if self.replaced(m, f) and not before_e else self.searches[(m, f)].final()

    def table_strength(self, m, f) -> float:
        """The strength of the verdict table: the best strength, or the runner-up stage E chose."""
        return self.e_points[f][0].strength if self.replaced(m, f) else self.searches[(m, f)].best_strength

    def final(self, before_e: bool = False) -> dict:
        """``{(method, frac): {seed: (time, event)}}`` of the table's trials that did not fail."""
        return {(m, f): by_seed(self.final_trials(m, f, before_e)) for f in self.fracs for m in self.methods}

    def unique_records(self) -> list[dict]:
        """Each run once (a stage-E run may be a search run)."""
        return list({r.get("key") or id(r): r for r in self.records.values()}.values())

    def ceiling(self) -> dict:
        """``{frac: mean memorisation + commutativity ceiling}`` over the runs at that fraction."""
        return {f: float(np.mean([r["commutativity_ceiling"] for (_, g, _), r in self.records.items()
                                  if g == f and r["status"] != "failed" and r.get("commutativity_ceiling") is not None]))
                for f in self.fracs}

    def searched_frame(self) -> pd.DataFrame:
        """One row per seed-0 run of stages A-C: method, frac, the trial's fields, ``capped`` (ran
        under a stage-B cap) and ``table`` (the strength of the verdict table)."""
        return pd.DataFrame([{"method": m, "frac": f, **t.to_dict(), "capped": t.steps < self.budget,
                              "table": t.strength == self.table_strength(m, f)}
                             for (m, f), s in self.searches.items() for t in s.searched()])

    def confirmations(self, level: float = 0.5) -> dict:
        """``{frac: numbers}`` where the reference's best strength groks for fewer than ``level`` of
        its seeds: ``best`` and ``best_grokked`` of ``n``, ``runner_up`` (None: no other strength
        grokked) and ``runner_up_grokked`` of ``runner_up_n``, and the ``choice``."""
        out = {}
        for f in self.fracs:
            s = self.searches[(self.reference, f)]
            if needs_confirmation(s, level):
                r, e = runner_up(s), self.e_trials(f)
                out[f] = {"best": s.best_strength, "best_grokked": sum(t.event for t in s.final()), "n": len(s.final()),
                          "runner_up": r.strength if r else None, "runner_up_grokked": sum(t.event for t in e),
                          "runner_up_n": len(e), "choice": "runner-up" if self.replaced(self.reference, f) else "best"}
        return out

    def table(self, symbols: dict, ceiling: dict, n_boot: int = 2000) -> list[dict]:
        """The verdict table, one row per fraction and method at its table strength: ``symbol``,
        ``best_strength``, ``at_edge``, ``other_wd`` (the follower's), ``arm_summary`` of the runs
        that did not fail (k/n with the Wilson interval, KM median with its bootstrap interval,
        collapses), ``diverged``, ``failed``, ``censored_still_rising`` (runs censored at the budget
        whose validation accuracy rose by more than ``RISE_TOL`` over the last fifth), ``budget``,
        ``ceiling``."""
        rec = {(m, f, p.strength, p.seed, p.steps): r for (m, f, p), r in self.records.items()}
        rows = []
        for f in self.fracs:
            for m in self.methods:
                s, fin = self.searches[(m, f)], self.final_trials(m, f)
                ok = [t for t in fin if t.status != "failed"]
                r = arm_summary([t.time for t in ok], [t.event for t in ok], [t.collapsed for t in ok], n_boot=n_boot, seed=0)
                rising = sum(late_rise(rec[(m, f, t.strength, t.seed, t.steps)]["history"]["val_acc"]) > RISE_TOL
                             for t in ok if not t.event)
                strength = self.table_strength(m, f)
                rows.append({"frac": f, "method": m, "symbol": symbols[m], "best_strength": strength,
                             "at_edge": edge_side(strength, s.strengths) if self.replaced(m, f) else s.at_edge,
                             "other_wd": self.other_wd[f] if m == self.follower else None, **r,
                             "diverged": sum(t.status == "diverged" for t in ok), "failed": len(fin) - len(ok),
                             "censored_still_rising": int(rising), "budget": self.budget, "ceiling": ceiling[f]})
        return rows


def search_phase(methods, fracs, new_search, config_of, *, budget: int, reference: str = "L2",
                 follower: str | None = "fixed norm", sweep=None, log=print, **sweep_kw) -> PhaseSearch:
    """Run the strength search of every method at every train fraction to the end (notebook 04).

    ``new_search(method)`` -> a fresh ``lrdlib.runs.search.Search``; ``config_of(method, frac,
    point, other_wd)`` -> the RunConfig of one run (``other_wd``: the reference's table strength at
    that fraction, None before it is known). The searches run side by side, one ``sweep`` (default
    ``lrdlib.runs.sweep.run_sweep``, with ``return_records=True`` and ``sweep_kw``) per round over
    whatever every search asks for next. Once the reference's search at a fraction is done, its
    stage E (``lrdlib.runs.search.confirmation_points``) joins the next round; once those runs are
    in, the ``follower``'s search at that fraction starts, its other parameters at the reference's
    table strength. ``log`` receives one line per round (None: silent)."""
    if sweep is None:
        sweep = run_sweep
    ps = PhaseSearch(methods, fracs, budget, reference, follower)
    ps.searches = {(m, f): new_search(m) for f in ps.fracs for m in ps.methods if m != follower}
    while True:
        for f in ps.fracs:
            if f not in ps.e_points and ps.searches[(reference, f)].done:
                ps.e_points[f] = confirmation_points(ps.searches[(reference, f)])
            settled = f in ps.e_points and all((reference, f, p) in ps.records for p in ps.e_points[f])
            if follower in ps.methods and (follower, f) not in ps.searches and settled:
                ps.other_wd[f] = ps.table_strength(reference, f)
                ps.searches[(follower, f)] = new_search(follower)
        todo = [(m, f, p) for (m, f), s in ps.searches.items() for p in s.pending]
        todo += [(reference, f, p) for f, pts in ps.e_points.items() for p in pts if (reference, f, p) not in ps.records]
        if not todo:
            return ps
        t0 = time.perf_counter()
        table, recs = sweep([config_of(m, f, p, ps.other_wd.get(f)) for m, f, p in todo], return_records=True, **sweep_kw)
        dt = time.perf_counter() - t0
        steps = table["steps_run"].fillna(0).sum() if "steps_run" in getattr(table, "columns", ()) else 0
        st = ps.stats
        ps.stats = {"rounds": st["rounds"] + 1, "runs": st["runs"] + len(todo), "seconds": st["seconds"] + dt,
                    "steps_run": st["steps_run"] + int(steps)}
        results = defaultdict(list)
        for (m, f, p), rec in zip(todo, recs):
            ps.records[(m, f, p)] = rec
            if p.stage != "E":
                results[(m, f)].append((p, rec))
        for key, res in results.items():
            ps.searches[key].update(res)
        if log is not None:
            per_stage = dict(sorted(Counter(p.stage for _, _, p in todo).items()))
            log(f"round {ps.stats['rounds']}: {len(todo)} runs (per stage {per_stage}) in {dt:.0f} s; "
                f"status {dict(Counter(r.get('status', '?') for r in recs))}")
