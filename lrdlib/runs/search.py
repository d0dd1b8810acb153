"""The strength search of the verdict table (notebook 04): each method at its own best strength.

Strengths lie on a **half-decade series** around a centre c: c × (…, 0.1, 0.3, 1, 3, 10, …), a
factor √10 between neighbours rounded to one significant figure (alternately 3 and 10/3), so the
strengths read as typed and a chapter that searches the same series trains the same runs (L2's grid
0.1-10 is notebook 07's; its LRD grid at ``paper``, 0.002-0.05, is not on this series).
A grid of n (odd) strengths is the n points of the series nearest c. Per method and train
fraction, at seed 0:

A  the 3 central strengths, full budget;
B  the outer strengths, with the budget capped at max(3 × the best steps-to-grok of A, 2000)
   steps (rounded up to an evaluation) when some A run grokked, full budget otherwise. A run
   that has not grokked by 3 × the best time cannot be the best, so training it further buys
   nothing for the choice; it is censored at its cap. A capped run counts as grokked only if its
   hold window is complete within the cap;
C  while the best strength is at an edge of the strengths searched, the next strength of the
   series beyond that edge (full budget), at most ``max_extensions`` times; then the best is
   reported as "at the edge" if it still is;
D  the seeds at the best strength, full budget (seed 0 reused when its run had the full budget,
   rerun otherwise: a capped run has another config, hence another cache key).
E  (``confirmation_points``, for the reference arm only; added after the first complete paper
   table, see notebook 04) when the best strength groks for fewer than half of the seeds of
   stage D, the runner-up of the search seed (the best of the other strengths that grokked,
   same rule) is run over every seed at the full budget; it replaces the best only when more of
   its seeds grok (``confirmed_choice``). One seed's fastest strength can be a grok that most
   seeds do not reach; a reference arm left at such a strength would flatter every method
   compared with it.

**Best** (``rank_key``): the smallest steps-to-grok at seed 0 (lasting grok,
``lrdlib.analysis.survival.outcome``); equal steps go to the smaller final validation loss, then the
higher max validation accuracy. When no strength grokked: the highest max validation accuracy,
then the smaller final validation loss. Diverged runs rank after every finished one, failed ones
last; a tie left after all that goes to the smaller strength.

``Search`` is the thin stateful shell the notebook drives: ``pending`` (the runs of the current
stage), ``update`` (their records), then ``pending`` again, until ``done``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from lrdlib.core.grok import outcome
from lrdlib.core.training import strict_json

CAP_FACTOR = 3       # stage B: a run this many times slower than the best of stage A cannot be the best
CAP_FLOOR = 2000     # stage B: never cap below this many steps
STAGES = ("A", "B", "C", "D", "done")


# ---------------------------------------------------------------- the grid
def multiplier(k: int) -> float:
    """The k-th point of the half-decade series: k = 0, 1, 2, 3 → 1, 3, 10, 30; k = −1, −2, −3 → 0.3, 0.1, 0.03."""
    return 10.0 ** (k // 2) * (3.0 if k % 2 else 1.0)


def strength_at(centre: float, k: int) -> float:
    """centre × ``multiplier(k)``, rounded to 6 significant figures (0.01 × 0.3 is 0.003, not 0.0030000000000000005)."""
    if not centre > 0:
        raise ValueError(f"centre={centre!r}: expected a positive strength")
    return float(f"{centre * multiplier(k):.6g}")


def grid_indices(n: int) -> list[int]:
    """Series indices of a centred grid of ``n`` strengths (n odd ≥ 1): −(n−1)/2 … (n−1)/2."""
    if not isinstance(n, int) or n < 1 or n % 2 == 0:
        raise ValueError(f"n={n!r}: expected an odd number of strengths ≥ 1 (a grid centred on its centre)")
    return list(range(-(n // 2), n // 2 + 1))


def log_grid(centre: float, n: int = 5) -> list[float]:
    """The ``n`` strengths of the half-decade series nearest ``centre``, ascending."""
    return [strength_at(centre, k) for k in grid_indices(n)]


def split_stages(ks: Sequence[int], central: int = 3) -> tuple[list[int], list[int]]:
    """(stage A, stage B) indices of a centred grid: the ``central`` indices nearest 0, and the rest."""
    order = sorted(ks, key=lambda k: (abs(k), k))
    return sorted(order[:central]), sorted(order[central:])


def stage_cap(best_steps: float | None, budget: int, eval_every: int, factor: float = CAP_FACTOR,
              floor: int = CAP_FLOOR) -> int:
    """Stage B's budget: ``budget`` when no stage-A run grokked (``best_steps`` None), else
    max(factor × best_steps, floor) rounded up to a multiple of ``eval_every``, at most ``budget``."""
    if best_steps is None or not math.isfinite(best_steps):
        return budget
    cap = max(factor * best_steps, floor)
    return int(min(budget, math.ceil(cap / eval_every) * eval_every))


def beyond(ks: Sequence[int], side: str) -> int:
    """The series index next beyond the ``side`` ("low" or "high") edge of ``ks``."""
    if side == "low":
        return min(ks) - 1
    if side == "high":
        return max(ks) + 1
    raise ValueError(f"side={side!r}; valid: low, high")


# ---------------------------------------------------------------- one run, and the best of several
@dataclass(frozen=True)
class Trial:
    """The outcome of one run of a search: the steps to a lasting grok (``time``, ``event``), or
    the step it was censored at, and what the tie-breaks read."""
    strength: float
    seed: int
    steps: int               # the run's budget (a cap in stage B)
    time: float              # steps to a lasting grok if event, else the step the run was censored at
    event: bool
    final_val_loss: float
    final_val_acc: float
    max_val_acc: float
    collapsed: bool          # reached the threshold, then fell below the floor (survival.DEFAULT_FLOOR)
    status: str              # ok / diverged / failed
    stage: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _num(v, default: float) -> float:
    return default if v is None or not math.isfinite(float(v)) else float(v)


def trial_from_record(record: dict, strength: float, stage: str = "", full_budget: int | None = None) -> Trial:
    """A ``Trial`` from a run record (``lrdlib.runs.sweep.run_sweep``'s records, failed ones included).

    full_budget: the search's full budget; a run with fewer steps (capped) counts as grokked only
    if its hold window (``grok_hold``) ended within its steps, else it is censored at its cap."""
    cfg = record["config"]
    seed, steps = int(cfg["seed"]), int(cfg["steps"])
    if record.get("status") == "failed":
        return Trial(strength, seed, steps, float(steps), False, math.inf, math.nan, math.nan, False, "failed", stage)
    o = outcome(record)
    h = record["history"]
    event, time = bool(o["event"]), float(o["time"])
    if event and full_budget is not None and steps < full_budget and time + cfg.get("grok_hold", 0) > h["step"][-1]:
        event, time = False, float(steps)   # window cut by the cap: not confirmed, censored at the cap
    if not event:
        time = float(steps)                 # censored at the run's budget (a diverged run would not have grokked later)
    return Trial(strength, seed, steps, time, event, _num(h["val_loss"][-1], math.inf), _num(h["val_acc"][-1], math.nan),
                 _num(record.get("max_val_acc"), math.nan), bool(o["collapsed"]), o["status"] or "ok", stage)


def rank_key(t: Trial) -> tuple:
    """Sort key of the best-strength rule (smallest = best): lasting groks first, by steps, then
    final validation loss, then max validation accuracy; then runs that did not grok, by max
    validation accuracy, then final validation loss; diverged runs after those, failed last;
    the smaller strength wins what is left."""
    acc = _num(t.max_val_acc, -math.inf)
    loss = _num(t.final_val_loss, math.inf)
    tier = {"ok": 0, "diverged": 2}.get(t.status, 3)
    if t.status == "ok" and t.event:
        return (tier, t.time, loss, -acc, t.strength)
    return (max(tier, 1), -acc, loss, 0.0, t.strength)


def best_trial(trials: Sequence[Trial]) -> Trial:
    """The best of ``trials`` under ``rank_key``."""
    if not trials:
        raise ValueError("best_trial of no trials")
    return min(trials, key=rank_key)


def edge_side(best: float, strengths: Sequence[float]) -> str | None:
    """"low" / "high" when ``best`` is the smallest / largest of ``strengths`` (≥ 2 of them), else None."""
    s = sorted(set(strengths))
    if len(s) < 2:
        raise ValueError(f"strengths={list(strengths)}: an edge needs at least two strengths")
    return "low" if best == s[0] else "high" if best == s[-1] else None


def fastest(trials: Sequence[Trial]) -> float | None:
    """The smallest steps-to-grok among ``trials`` that grokked (None if none did)."""
    t = [x.time for x in trials if x.event and x.status == "ok"]
    return min(t) if t else None


# ---------------------------------------------------------------- the search, stage by stage
class Point(NamedTuple):
    """One run a search asks for."""
    strength: float
    seed: int
    steps: int
    stage: str


@dataclass
class Search:
    """The search of one method at one train fraction (stages A-D of the module docstring).

    ``pending``: the runs of the current stage; ``update(results)`` with ``(point, record)``
    pairs for them moves to the next stage; ``done`` once stage D is in. ``seeds[0]`` is the
    search seed; ``seeds`` are the seeds of the verdict table at the best strength."""
    centre: float
    budget: int
    eval_every: int
    seeds: Sequence[int] = (0, 1, 2, 3, 4)
    n: int = 5
    max_extensions: int = 2
    cap_factor: float = CAP_FACTOR
    cap_floor: int = CAP_FLOOR
    stage: str = "A"
    extensions: int = 0
    trials: dict = field(default_factory=dict)        # Point -> Trial
    pending: list = field(default_factory=list)
    ks: list = field(default_factory=list)            # series indices searched so far (stages A-C)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds: expected at least one seed (the first is the search seed)")
        self._grid = grid_indices(self.n)
        central, outer = split_stages(self._grid)
        self._outer = outer
        self.ks = list(central)
        self.pending = [Point(strength_at(self.centre, k), self.search_seed, self.budget, "A") for k in central]

    @property
    def search_seed(self) -> int:
        return int(self.seeds[0])

    @property
    def done(self) -> bool:
        return self.stage == "done"

    @property
    def chosen(self) -> bool:
        """Whether the best strength is settled (stage D or done)."""
        return self.stage in ("D", "done")

    def searched(self) -> list[Trial]:
        """The seed-0 trials of stages A-C, by strength."""
        return sorted((t for p, t in self.trials.items() if p.stage != "D"), key=lambda t: t.strength)

    @property
    def strengths(self) -> list[float]:
        return sorted(strength_at(self.centre, k) for k in self.ks)

    @property
    def best(self) -> Trial:
        return best_trial(self.searched())

    @property
    def best_strength(self) -> float:
        return self.best.strength

    @property
    def at_edge(self) -> str | None:
        """"low" / "high" when the best strength is at that edge of the strengths searched."""
        return edge_side(self.best_strength, self.strengths) if len(self.ks) > 1 else None

    def final(self) -> list[Trial]:
        """The trials at the best strength, full budget, one per seed (stage D and a reused seed 0)."""
        if not self.chosen:
            return []
        b = self.best_strength
        out = {t.seed: t for p, t in self.trials.items()
               if t.strength == b and t.steps == self.budget and t.seed in self.seeds}
        return [out[s] for s in self.seeds if s in out]

    def update(self, results: Sequence[tuple[Point, dict]]) -> None:
        """Record the records of the pending runs and move to the next stage."""
        asked = set(self.pending)
        got = {p for p, _ in results}
        if got != asked:
            raise ValueError(f"update: expected results for {sorted(asked)}, got {sorted(got)}")
        for p, rec in results:
            self.trials[p] = trial_from_record(rec, p.strength, p.stage, self.budget)
        self.pending = []
        self._advance()

    def _advance(self) -> None:
        if self.stage == "A" and self._outer:
            cap = stage_cap(fastest(self.searched()), self.budget, self.eval_every, self.cap_factor, self.cap_floor)
            self.ks += self._outer
            self.stage, self.pending = "B", [Point(strength_at(self.centre, k), self.search_seed, cap, "B") for k in self._outer]
            return
        if self.stage in ("A", "B", "C"):
            side = self.at_edge
            if side is not None and self.extensions < self.max_extensions:
                k = beyond(self.ks, side)
                self.ks.append(k)
                self.extensions += 1
                self.stage, self.pending = "C", [Point(strength_at(self.centre, k), self.search_seed, self.budget, "C")]
                return
            self.stage = "D"
            have = {t.seed for t in self.final()}
            self.pending = [Point(self.best_strength, int(s), self.budget, "D") for s in self.seeds if s not in have]
            if self.pending:
                return
        self.stage, self.pending = "done", []

    def left_at_most(self) -> tuple[int, int]:
        """An upper bound on what this search has still to run, ``(runs, steps)``, counting its
        pending runs at their own budgets: the outer strengths of stage B (full budget, the cap
        unknown yet), every extension stage C may still make, and every seed of stage D (seed 0
        too: it is rerun when the best turns out to be a capped run). (0, 0) once done."""
        if self.done:
            return 0, 0
        runs, steps = len(self.pending), sum(p.steps for p in self.pending)
        if self.stage != "D":
            later = (len(self._outer) if self.stage == "A" else 0) + (self.max_extensions - self.extensions) \
                + len(self.seeds)
            runs, steps = runs + later, steps + later * self.budget
        return runs, steps

    def summary(self) -> dict:
        """What the search did, JSON-ready: strengths searched (with each seed-0 outcome and its
        budget), the best strength, whether it is at an edge, the extensions made."""
        return {"centre": self.centre, "grid": [strength_at(self.centre, k) for k in self._grid],
                "strengths": self.strengths, "extensions": self.extensions, "max_extensions": self.max_extensions,
                "searched": [strict_json(t.to_dict()) for t in self.searched()],
                "best_strength": self.best_strength if self.trials else None,
                "at_edge": self.at_edge if self.trials else None, "stage": self.stage}


# ---------------------------------------------------------------- stage E: confirming a reference arm
def _grokked(trials: Sequence[Trial]) -> int:
    return sum(bool(t.event) and t.status == "ok" for t in trials)


def runner_up(search: Search) -> Trial | None:
    """The search seed's second-best strength among those that grokked (``rank_key``), None if
    no other strength grokked."""
    if not search.chosen:
        raise ValueError(f"runner_up: the search is at stage {search.stage}, expected its best strength settled (D or done)")
    b = search.best_strength
    others = [t for t in search.searched() if t.strength != b and t.event and t.status == "ok"]
    return best_trial(others) if others else None


def needs_confirmation(search: Search, level: float = 0.5) -> bool:
    """Whether a finished search's best strength groks for fewer than ``level`` of its seeds."""
    if not 0 < level <= 1:
        raise ValueError(f"level={level!r}: expected a share in (0, 1]")
    if not search.done:
        raise ValueError(f"needs_confirmation: the search is at stage {search.stage}, expected done")
    fin = search.final()
    return _grokked(fin) < level * len(fin)


def confirmation_points(search: Search, level: float = 0.5) -> list[Point]:
    """Stage E: the runs at the runner-up strength, every seed, full budget, when the best
    strength of a finished search groks for fewer than ``level`` of its seeds (``[]`` otherwise, or
    when no other strength grokked). The search seed's own runner-up run is reused when it had the
    full budget (it is in the cache); a capped one is rerun at the full budget."""
    if not needs_confirmation(search, level):
        return []
    r = runner_up(search)
    if r is None:
        return []
    return [Point(r.strength, int(s), search.budget, "E") for s in search.seeds]


def confirmed_choice(best: Sequence[Trial], runner: Sequence[Trial]) -> str:
    """"runner-up" when more of ``runner``'s seeds grok than of ``best``'s, else "best" (ties keep
    the best of stages A-D: the rule changes a choice only on more seeds' evidence)."""
    if not best:
        raise ValueError("confirmed_choice: expected the best strength's trials, got none")
    return "runner-up" if runner and _grokked(runner) > _grokked(best) else "best"


def left_at_most(searches: Sequence[Search]) -> tuple[int, int]:
    """``Search.left_at_most`` summed over ``searches``: at most this many runs and steps are left."""
    bounds = [s.left_at_most() for s in searches]
    return sum(r for r, _ in bounds), sum(n for _, n in bounds)
