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

from lrdlib.runs.search import Point, Search, Trial, strength_at, trial_from_record

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
    if sweep is None:
        from lrdlib.runs.sweep import run_sweep as sweep
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
