"""Arms at their own best strength beside a fixed one (notebooks 05 and 06): several
``lrdlib.runs.search.Search`` driven side by side, and the runs of an arm at one strength read back as
search trials, so an arm can be tabulated at its matched (or seed) strength and at its own best
with the same budget, seeds and statistics (``lrdlib.analysis.survival``).

``drive`` runs rounds: one ``run_sweep`` over whatever every unfinished search asks for next, plus
any ``extra`` runs (the seeds at a fixed strength) in the first round, until every search is done.
``trials_at`` reads the full-budget runs of one arm at one strength, one per seed, whatever stage
asked for them (the search's own runs at that strength are reused: a cache hit, not a new run).
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from lrdlib.core.config import RunConfig, seed_config
from lrdlib.core.model import ModelConfig
from lrdlib.runs.profiles import grok_budget, pick
from lrdlib.runs.search import CAP_FACTOR, CAP_FLOOR, Point, Search, Trial, strength_at, trial_from_record
from lrdlib.runs.sweep import pool_size, run_sweep

MATCHED_STAGE = "M"   # the stage label of the extra runs at a fixed strength


def fixed_points(strength: float, seeds: Sequence[int], budget: int, stage: str = MATCHED_STAGE) -> list[Point]:
    """The runs of an arm at ``strength`` (rounded as the search series rounds it), full budget, one per seed."""
    s = strength_at(strength, 0)
    return [Point(s, int(seed), int(budget), stage) for seed in seeds]


def drive(searches: Mapping[Hashable, Search], config_of: Callable, *, extra: Mapping[Hashable, Sequence[Point]] | None = None,
          sweep: Callable | None = None, log: Callable[[str], None] | None = print, **sweep_kw) -> tuple[dict, dict]:
    """Run every search of ``searches`` (``{key: Search}``) to the end.

    config_of(key, point) -> RunConfig of one run. Each round is one ``sweep`` (default
    ``lrdlib.runs.sweep.run_sweep``, called with ``return_records=True`` and ``sweep_kw``) over the
    pending runs of every unfinished search, plus, in the first round, the runs of ``extra``
    (``{key: [Point]}``: runs at a fixed strength that no search asks for). ``log`` receives one
    line per round. Returns ``(records, stats)``: ``{(key, Point): record}`` for every run asked
    for, and ``{"rounds", "runs", "seconds", "steps_run"}`` (steps actually trained: runs read
    back from the cache count 0)."""
    sweep = sweep or run_sweep
    records: dict = {}
    stats = {"rounds": 0, "runs": 0, "seconds": 0.0, "steps_run": 0}
    first = [(k, p) for k, ps in (extra or {}).items() for p in ps]
    unknown = {k for k, _ in first} - set(searches)
    if unknown:
        raise ValueError(f"extra runs for {sorted(map(str, unknown))}, which have no search")
    while True:
        todo = first + [(k, p) for k, s in searches.items() for p in s.pending]
        first = []
        if not todo:
            break
        t0 = time.perf_counter()
        table, recs = sweep([config_of(k, p) for k, p in todo], return_records=True, **sweep_kw)
        dt = time.perf_counter() - t0
        steps = table["steps_run"].fillna(0).sum() if "steps_run" in getattr(table, "columns", ()) else 0
        stats = {"rounds": stats["rounds"] + 1, "runs": stats["runs"] + len(todo), "seconds": stats["seconds"] + dt,
                 "steps_run": stats["steps_run"] + int(steps)}
        results = defaultdict(list)
        for (k, p), rec in zip(todo, recs):
            records[(k, p)] = rec
            if p in searches[k].pending:
                results[k].append((p, rec))
        for k, res in results.items():
            searches[k].update(res)
        if log is not None:
            per_stage = dict(sorted(_count(p.stage for _, p in todo).items()))
            status = dict(sorted(_count(r.get("status", "?") for r in recs).items()))
            log(f"round {stats['rounds']}: {len(todo)} runs (per stage {per_stage}) in {dt:.0f} s; status {status}")
    return records, stats


def _count(xs) -> dict:
    out: dict = defaultdict(int)
    for x in xs:
        out[x] += 1
    return out


def trials_at(records: Mapping, key: Hashable, strength: float, budget: int, seeds: Sequence[int]) -> list[Trial]:
    """The full-budget runs of ``key`` at ``strength`` as ``Trial`` objects, one per seed of
    ``seeds`` that has one (in the order of ``seeds``), whichever stage asked for them."""
    s = strength_at(strength, 0)
    found = {}
    for (k, p), rec in records.items():
        if k == key and p.strength == s and p.steps == budget and p.seed in seeds and p.seed not in found:
            found[p.seed] = trial_from_record(rec, p.strength, p.stage, budget)
    return [found[int(seed)] for seed in seeds if int(seed) in found]


# ---------------------------------------------------------------- a chapter's arms and its own-best searches (05, 06)
def sweep_arms(arms: Mapping[str, Sequence[RunConfig]], sweep: Callable | None = None, **sweep_kw) -> dict[str, list[dict]]:
    """Every config of every arm (``{label: [RunConfig, ...]}``, one per seed) in one ``sweep``
    (default ``lrdlib.runs.sweep.run_sweep``, called with ``labels`` and ``return_records=True``):
    ``{label: [record, ...]}`` in the order given."""
    sweep = sweep or run_sweep
    labels = [a for a, cfgs in arms.items() for _ in cfgs]
    _, recs = sweep([c for cfgs in arms.values() for c in cfgs], labels=labels, return_records=True, **sweep_kw)
    out: dict[str, list[dict]] = {a: [] for a in arms}
    for a, r in zip(labels, recs):
        out[a].append(r)
    return out


SMOKE_MODEL = ModelConfig(vocab_size=24, dim=32, heads=4, mlp_dim=64)   # smoke: a + b mod 23 on a small model


@dataclass(frozen=True)
class Design:
    """The own-best searches of a chapter at one profile (notebooks 05 and 06; ``lrdlib.runs.search``
    stages A-D): ``seeds`` (the first is the search seed; none at ``quick``: nothing is searched),
    ``n`` strengths per grid, ``max_extensions`` beyond an edge, the budget ``grok_budget(profile)``
    at train fraction 0.5, the task mod ``p`` and, at ``smoke``, a small ``model`` (the code path
    only). ``n_boot``: bootstrap resamples of the chapter's intervals."""
    profile: str
    device: str
    seeds: tuple[int, ...]
    n: int
    max_extensions: int
    p: int
    model: ModelConfig | None = None
    n_boot: int = 2000

    @classmethod
    def at(cls, profile: str, device: str = "cpu", smoke_extensions: int = 1) -> Design:
        smoke = profile == "smoke"
        return cls(profile, device, tuple(pick(profile, smoke=[0, 1], quick=[], paper=[0, 1, 2, 3, 4])),
                   pick(profile, smoke=3, quick=3, paper=5), pick(profile, smoke=smoke_extensions, quick=0, paper=2),
                   pick(profile, smoke=23, quick=113, paper=113), SMOKE_MODEL if smoke else None, 200 if smoke else 2000)

    @property
    def budget(self) -> dict:
        return grok_budget(self.profile)

    @property
    def steps(self) -> int:
        return self.budget["steps"]

    def base(self, method: str, strength: float) -> RunConfig:
        """``seed_config(method, strength)`` at train fraction 0.5 under this design's budget, task and model."""
        cfg = seed_config(method, strength, train_frac=0.5, p=self.p, device=self.device, **self.budget)
        return cfg if self.model is None else cfg.replace(model=self.model)

    def to_dict(self, **extra) -> dict:
        """The design as the chapter's results record it; ``extra`` entries go after ``cap``."""
        b = self.budget
        return {"budget": b["steps"], "eval_every": b["eval_every"], "grok_hold": b["grok_hold"], "seeds": list(self.seeds),
                "grid_size": self.n, "max_extensions": self.max_extensions, "cap": {"factor": CAP_FACTOR, "floor": CAP_FLOOR},
                **extra, "p": self.p, "model_dim": (self.model or ModelConfig()).dim}


@dataclass
class OwnBest:
    """What ``search_arms`` ran: per arm its ``Search`` and ``centres`` (the strength its grid is
    centred on), every ``records[(arm, Point)]``, and ``stats`` (``drive``'s)."""
    design: Design
    centres: dict
    searches: dict
    records: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    def final(self, arm: Hashable) -> list[Trial]:
        """The arm's runs at its own best strength, one per seed."""
        return self.searches[arm].final()

    def at_centre(self, arm: Hashable) -> list[Trial]:
        """The arm's full-budget runs at its centre strength, one per seed."""
        return trials_at(self.records, arm, self.centres[arm], self.design.steps, self.design.seeds)


def search_arms(design: Design, arms: Mapping[Hashable, tuple[float, Callable[[float], RunConfig]]], *, cache=None,
                at_centre: bool = False, sweep: Callable | None = None, log: Callable[[str], None] | None = None) -> OwnBest:
    """Search every arm of ``arms`` (``{arm: (centre, config_at)}``, ``config_at(strength)`` -> the
    arm's ``RunConfig`` at that strength) under ``design`` and ``drive`` the searches to the end.

    Each run is ``config_at(strength)`` with the point's seed (initialisation and split) and steps.
    ``at_centre``: also run every other seed at the centre strength in the first round, so the arm
    can be tabulated at its centre beside its best (``OwnBest.at_centre``). Sweeps run in a process
    pool, except at ``smoke`` (and on one worker), where they run here on one torch thread. No seeds
    in the design (``quick``): nothing is run."""

    arms = dict(arms) if design.seeds else {}
    b = design.budget
    searches = {a: Search(c, b["steps"], b["eval_every"], seeds=design.seeds, n=design.n, max_extensions=design.max_extensions)
                for a, (c, _) in arms.items()}
    extra = {a: fixed_points(c, design.seeds[1:], b["steps"]) for a, (c, _) in arms.items()} if at_centre else None

    def config_of(arm, point):
        return arms[arm][1](point.strength).replace(seed=point.seed, task__split_seed=point.seed, steps=point.steps)

    inline = design.profile == "smoke" or pool_size(design.device) == 1
    threads = torch.get_num_threads()
    if design.profile == "smoke":
        torch.set_num_threads(1)   # a tiny model: a second thread only waits on the first
    try:
        kw = {"cache": cache, "executor": None if inline else "process"} if sweep is None else {}
        records, stats = drive(searches, config_of, extra=extra, sweep=sweep, log=log, **kw)
    finally:
        torch.set_num_threads(threads)
    return OwnBest(design, {a: c for a, (c, _) in arms.items()}, searches, records, stats)
