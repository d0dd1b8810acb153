"""The protocol's budgeted search (``paper/protocol.md``): successive halving over a recipe's two
knobs on search seeds only, then its evaluation on fresh seeds.

``halving(cells, make)`` runs every cell of a grid on the first rung's seeds and budget, keeps the
best and runs them on the next rung's, and so on; ``search_recipe`` does it over a recipe's log
grid and extends the grid by one step past an edge where the best sits (at most twice per knob).
Runs go through ``lrdlib.runs.sweep.run_sweep``, so a cached run is read, not retrained, and a
search that is stopped and started again goes on where it was.

    python -m lrdlib.runs.halving --recipe LRD --frac 0.5 [--evaluate]
    python -m lrdlib.runs.halving --all          # the whole protocol in its order (``make protocol``)

At a fraction that is not searched, the search of the nearest searched one (``searched_at``) sets
the knobs.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lrdlib.core.grok import endpoints
from lrdlib.core.recipes import OTHER_WD, OTHER_WD_SECONDARY, RECIPES, SEED_SETTING, Setting, recipe_config
from lrdlib.core.training import strict_json
from lrdlib.runs.paths import results_dir
from lrdlib.runs.profiles import run_cache
from lrdlib.runs.search import log_grid, strength_at
from lrdlib.runs.sweep import run_sweep


@dataclass(frozen=True)
class Rung:
    keep: float      # cells carried in: a count (≥ 1) or a share (< 1) of the previous rung's, at least 2
    seeds: tuple[int, ...]
    steps: int


RUNGS = (Rung(1.0, (100,), 4000), Rung(1 / 3, (100, 101), 10000))   # amendment A1 of the protocol: two rungs
EVAL_SEEDS = {0.25: tuple(range(1000, 1010)), 0.35: tuple(range(1000, 1010)), 0.5: tuple(range(1000, 1010))}
FIVE_SEEDS = tuple(range(1000, 1005))
BUDGET = 20000   # evaluation runs: steps at most (the observation window stops a grokked run earlier)
FRACTIONS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8)
PRIMARY = ("tuned L2", "LRD")
PROTOCOL_SEEDS = frozenset({s for r in RUNGS for s in r.seeds} | {s for v in EVAL_SEEDS.values() for s in v} | set(FIVE_SEEDS))
NEAREST = {0.2: 0.25, 0.25: 0.25, 0.3: 0.25, 0.35: 0.35, 0.4: 0.35, 0.5: 0.5, 0.6: 0.5, 0.8: 0.5}


SECONDARY_FRACTIONS = (0.35,)   # amendments A3, A4: the secondary recipes' planned evaluation


def eval_seeds(recipe: str, frac: float) -> tuple[int, ...]:
    """The evaluation seeds of ``recipe`` at ``frac``: 1000-1009 at 0.25, 0.35 and 0.5 and 1000-1004
    elsewhere for tuned L2 and LRD; for the secondary recipes 1000-1009 at 0.35, where they are
    searched and (amendment A4, for budget) only evaluated, and 1000-1004 at a fraction outside the
    plan (a run by hand)."""
    if frac not in NEAREST:
        raise ValueError(f"frac={frac!r}; the protocol's fractions are {', '.join(map(str, FRACTIONS))}")
    if recipe in PRIMARY or frac == 0.35:
        return EVAL_SEEDS.get(frac, FIVE_SEEDS)
    return FIVE_SEEDS


def family_size(recipe: str) -> int:
    """How many fractions Holm's correction counts for ``recipe``: all 8 for tuned L2 and LRD, the
    planned ones (``SECONDARY_FRACTIONS``, 0.35 alone since amendment A4) for a secondary recipe."""
    return len(FRACTIONS) if recipe in PRIMARY else len(SECONDARY_FRACTIONS)


def searched_at(recipe: str, frac: float) -> float:
    """The fraction whose search sets ``recipe``'s knobs at ``frac`` (amendment A1 of the protocol):
    the nearest of 0.25, 0.35, 0.5 for tuned L2 and LRD, 0.35 for the secondary recipes."""
    if frac not in NEAREST:
        raise ValueError(f"frac={frac!r}; the protocol's fractions are {', '.join(map(str, FRACTIONS))}")
    return NEAREST[frac] if recipe in PRIMARY else 0.35


def score(records: Sequence[dict]) -> tuple[float, float]:
    """Lower is better: the median over seeds of the stable grok's step (a censored run: +inf, after
    every grok), then minus the mean final validation accuracy (ties among runs that did not grok)."""
    bad = [f"{r['key']} ({r.get('error', r.get('status'))})" for r in records if r.get("status") not in ("ok", "diverged")]
    if bad:
        raise RuntimeError(f"{len(bad)} run(s) failed, so the rung cannot be scored: {'; '.join(bad)}; "
                           "run the search again to retry them")
    e = [endpoints(r) for r in records]
    t = statistics.median([x["stable"] if x["stable_event"] else math.inf for x in e])
    return t, -statistics.fmean(x["final_val_acc"] for x in e)


def halving(cells: Sequence, make: Callable, rungs: Sequence[Rung] = RUNGS, *, sweep=None, **sweep_kw) -> list[dict]:
    """Successive halving over ``cells``: ``make(cell, seed, steps)`` is one run. Returns one row per
    (rung, cell) run: ``rung``, ``cell``, ``score``, ``records``; the last rung's best first."""
    sweep = sweep or run_sweep
    rows, alive = [], list(cells)
    for i, rung in enumerate(rungs):
        if i:
            k = rung.keep if rung.keep >= 1 else math.ceil(rung.keep * len(alive))
            alive = [r["cell"] for r in sorted(rows[-len(alive):], key=lambda r: r["score"])][:max(2, int(k))]
        cfgs = [make(c, s, rung.steps) for c in alive for s in rung.seeds]
        _, recs = sweep(cfgs, return_records=True, **sweep_kw)
        n = len(rung.seeds)
        rows += [{"rung": i, "cell": c, "records": recs[j * n:(j + 1) * n], "score": score(recs[j * n:(j + 1) * n])}
                 for j, c in enumerate(alive)]
    last = [r for r in rows if r["rung"] == len(rungs) - 1]
    return sorted(last, key=lambda r: r["score"]) + [r for r in rows if r["rung"] < len(rungs) - 1]


def _grid(recipe: str, ext: dict) -> tuple[list, list]:
    """(Q/K knob, λₒ) values: 5 half-decade points for a one-knob recipe, 3 × 3 for a two-knob one
    (λₒ: ``OTHER_WD`` for LRD, ``OTHER_WD_SECONDARY`` for a secondary recipe, amendment A5), each
    grown by the steps in ``ext`` past an edge."""
    centre = RECIPES[recipe][0]
    if centre is None or recipe == "tuned L2":
        c, n = (centre, "qk") if centre is not None else (1.0, "other")
        one = sorted({*log_grid(c, 5), *(strength_at(c, k) for k in ext.get(n, ()))})
        return (one, [None]) if n == "qk" else ([None], one)
    qk = sorted({*log_grid(centre, 3), *(strength_at(centre, k) for k in ext.get("qk", ()))})
    base = OTHER_WD if recipe in PRIMARY else OTHER_WD_SECONDARY   # amendment A5
    other = sorted({*base, *(strength_at(1.0, k) for k in ext.get("other", ()))})
    return qk, other


def search_recipe(recipe: str, frac: float, rungs: Sequence[Rung] = RUNGS, max_extensions: int = 2,
                  setting: Setting = SEED_SETTING, **sweep_kw) -> dict:
    """The protocol's search of ``recipe`` at ``frac``: ``best`` (qk, other), the ``grid`` searched,
    ``extensions`` per knob, and the ``rows`` of the last ``halving``."""
    ext: dict[str, list[int]] = {"qk": [], "other": []}
    while True:
        qk, other = _grid(recipe, ext)
        rows = halving([(a, b) for a in qk for b in other],
                       lambda c, s, n: recipe_config(recipe, c[0], c[1], train_frac=frac, seed=s, steps=n, setting=setting),
                       rungs, **sweep_kw)
        best, grown = rows[0]["cell"], False
        for axis, values, v, centre in (("qk", qk, best[0], RECIPES[recipe][0]), ("other", other, best[1], 1.0)):
            if v is None or len(ext[axis]) >= max_extensions or v not in (values[0], values[-1]):
                continue
            k = round(2 * math.log10(v / centre)) + (1 if v == values[-1] else -1)
            ext[axis].append(k)
            grown = True
        if not grown:
            return {"recipe": recipe, "frac": frac, "best": best, "grid": {"qk": qk, "other": other}, "extensions": ext,
                    "rows": rows}


class NotStored(LookupError):
    """A search or evaluation asked for runs the store does not hold (``missing`` of ``wanted``)."""

    def __init__(self, missing: int, wanted: int):
        super().__init__(f"{missing} of {wanted} runs are not in the store yet")
        self.missing, self.wanted = missing, wanted


def stored_sweep(cache) -> Callable:
    """A ``run_sweep`` stand-in that reads ``cache`` and never trains: ``NotStored`` if a run is missing."""
    def sweep(cfgs, return_records=True, **_):
        recs = [cache.load(c) for c in cfgs]
        if any(r is None for r in recs):
            raise NotStored(sum(r is None for r in recs), len(recs))
        return None, recs
    return sweep


def protocol_state(recipe: str, frac: float, cache, found: dict | None = None, setting: Setting = SEED_SETTING) -> dict:
    """What the store holds of ``recipe`` at ``frac``, without training: ``searched_at``; ``best``
    (the search's setting, None while its search is not complete) and ``search_rows``;
    ``search_missing`` (runs its next rung still lacks); ``records`` (the evaluation runs stored, in
    seed order, only once all are) and ``eval_missing``. ``found``: the stored search at the
    searched fraction, when already read (``search_recipe`` with ``stored_sweep``)."""
    at = searched_at(recipe, frac)
    out = {"recipe": recipe, "frac": frac, "searched_at": at, "best": None, "search_rows": [],
           "search_missing": 0, "records": None, "eval_missing": None}
    try:
        found = found or search_recipe(recipe, at, setting=setting, sweep=stored_sweep(cache))
    except NotStored as e:
        out["search_missing"] = e.missing
        return out
    out["best"], out["search_rows"] = found["best"], found["rows"]
    seeds = eval_seeds(recipe, frac)
    recs = [cache.load(recipe_config(recipe, *found["best"], train_frac=frac, seed=s, steps=BUDGET, setting=setting))
            for s in seeds]
    out["eval_missing"] = sum(r is None for r in recs)
    out["records"] = recs if not out["eval_missing"] else None
    return out


# sensitivity S1 (paper/protocol.md, after seeing the evaluation at 0.35): the weaker decays that
# tuned L2's search dropped at rung 0 for no stable grok within 4,000 steps, run on the search
# seeds for the evaluation's budget with its observation window: does one grok later and hold?
S1_CELLS = {("tuned L2", 0.35): ((0.1, None), (0.3, None)), ("tuned L2", 0.5): ((0.1, None), (0.3, None))}


def s1_configs(recipe: str, frac: float, setting: Setting = SEED_SETTING) -> list:
    """The runs of sensitivity S1 for ``recipe`` at ``frac``: each cell of ``S1_CELLS`` on search
    seeds 100 and 101 for ``BUDGET`` steps (the evaluation runs' budget and observation window)."""
    if (recipe, frac) not in S1_CELLS:
        raise ValueError(f"({recipe!r}, {frac!r}): sensitivity S1 covers {', '.join(map(str, S1_CELLS))}")
    return [recipe_config(recipe, qk, other, train_frac=frac, seed=s, steps=BUDGET, setting=setting)
            for qk, other in S1_CELLS[recipe, frac] for s in RUNGS[-1].seeds]


# sensitivity S3 (paper/protocol.md): LRD's Q/K treatment at 0.35 without the λₒ its search chose
S3_CELLS = {("LRD", 0.35): ((0.03, 1.0),)}


def s3_configs(setting: Setting = SEED_SETTING) -> list:
    """The runs of sensitivity S3: each cell of ``S3_CELLS`` on evaluation seeds 1000-1004
    (``FIVE_SEEDS``) for ``BUDGET`` steps, paired with the recipe's evaluation runs on those seeds."""
    return [recipe_config(r, qk, other, train_frac=f, seed=s, steps=BUDGET, setting=setting)
            for (r, f), cells in S3_CELLS.items() for qk, other in cells for s in FIVE_SEEDS]


# amendments A6 and A7 (order only): the recipe with no Q/K decay at 0.35 first among the secondary recipes
FIRST_SECONDARY = "no Q/K decay"


def plan() -> list[tuple[str, float]]:
    """The protocol's runs in its order (``paper/protocol.md``, Evaluation): tuned L2 and LRD at every
    fraction, the ten-seed ones first; then the secondary recipes at 0.35 (amendment A4), the one
    with no Q/K decay first (amendment A6 moved it to just after the primary pair at 0.2, and A7 back
    behind the last primary pair: ``FIRST_SECONDARY``). The order changes no run."""
    first = (0.5, 0.35, 0.25, 0.2, 0.3, 0.4, 0.6, 0.8)
    out = [(r, f) for f in first for r in PRIMARY]
    second = sorted((r for r in RECIPES if r not in PRIMARY), key=lambda r: r != FIRST_SECONDARY)
    return out + [(r, f) for r in second for f in SECONDARY_FRACTIONS]


def eval_configs(recipe: str, frac: float, best: tuple, setting: Setting = SEED_SETTING) -> list:
    """The evaluation runs of ``recipe`` at its ``best`` (qk, other) on the evaluation seeds of ``frac``."""
    return [recipe_config(recipe, best[0], best[1], train_frac=frac, seed=s, steps=BUDGET, setting=setting)
            for s in eval_seeds(recipe, frac)]


def run_group(items: Sequence[tuple[str, float]], evaluate_too: bool, setting: Setting = SEED_SETTING, **kw) -> list[Path]:
    """Search every (recipe, fraction) of ``items`` in turn (at the fraction that sets its knobs),
    then, with ``evaluate_too``, train all their evaluation runs in one sweep, so that a pool of
    workers never idles between one recipe's last run and the next recipe's first; a summary per
    item to build/results/protocol/."""
    sweep = kw.pop("sweep", None) or run_sweep
    found = [(r, f, search_recipe(r, searched_at(r, f), setting=setting, sweep=sweep, **kw)) for r, f in items]
    recs = {}
    if evaluate_too:
        cfgs = [c for r, f, x in found for c in eval_configs(r, f, x["best"], setting)]
        _, out = sweep(cfgs, return_records=True, **kw)
        recs = {c.key(): rec for c, rec in zip(cfgs, out)}
    paths = []
    for r, f, x in found:
        out = {k: v for k, v in x.items() if k != "rows"} | {"frac": f, "searched_at": x["frac"], "setting": setting.label()}
        out["ranking"] = [{"rung": row["rung"], "cell": row["cell"], "score": list(row["score"]),
                           "keys": [y["key"] for y in row["records"]]} for row in x["rows"]]
        if evaluate_too:
            out["evaluation"] = [endpoints(recs[c.key()]) | {"key": c.key()} for c in eval_configs(r, f, x["best"], setting)]
        path = results_dir() / "protocol" / setting.label() / f"{r.replace(' ', '_')}_{f}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(strict_json(out), indent=1, allow_nan=False, default=str) + "\n")
        print(f"{r} at {f}: best {x['best']}; {path}", flush=True)
        paths.append(path)
    return paths


def groups(items: Sequence[tuple[str, float]]) -> list[list[tuple[str, float]]]:
    """``items`` (the plan) cut into the primary pairs and then one group per secondary recipe, in order:
    the units ``--all`` searches and then evaluates in one sweep."""
    out: list[list[tuple[str, float]]] = []
    for r, f in items:
        key = "primary" if r in PRIMARY else r
        if out and ("primary" if out[-1][0][0] in PRIMARY else out[-1][0][0]) == key:
            out[-1].append((r, f))
        else:
            out.append([(r, f)])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", choices=list(RECIPES))
    ap.add_argument("--frac", type=float)
    ap.add_argument("--evaluate", action="store_true", help="then train the evaluation seeds at the best cell")
    ap.add_argument("--all", action="store_true", help="the whole protocol in its order (search and evaluation), "
                    "then the sensitivity runs S1 and S3")
    ap.add_argument("--s1", action="store_true", help="sensitivity S1: the weaker decays tuned L2's search dropped "
                    "at rung 0, on the search seeds for the full budget (S1_CELLS)")
    ap.add_argument("--s3", action="store_true", help="sensitivity S3: LRD's Q/K treatment at 0.35 with λₒ 1 "
                    "instead of its search's 0.1, on evaluation seeds 1000-1004 (S3_CELLS)")
    ap.add_argument("--setting", default="", help="where to run, e.g. 'p=97,width=256' or 'lr_scale=1/3' "
                    "(lrdlib.core.recipes.Setting; default: the seed setting)")
    a = ap.parse_args(argv)
    kw = {"cache": run_cache("paper"), "executor": "process"}
    if (a.s1 or a.s3) and not a.all:
        run_sweep(sensitivity_configs(a.s1, a.s3), **kw)
        return 0
    if a.all == (a.recipe is not None or a.frac is not None) or (not a.all and (a.recipe is None or a.frac is None)):
        ap.error("give --all, or both --recipe and --frac")
    for group in groups(plan()) if a.all else [[(a.recipe, a.frac)]]:
        run_group(group, a.all or a.evaluate, Setting.parse(a.setting), **kw)
    if a.all:   # the sensitivity analyses last: the chapter reads them too
        run_sweep(sensitivity_configs(), **kw)
    return 0


def sensitivity_configs(s1: bool = True, s3: bool = True) -> list:
    """The runs of sensitivity analyses S1 and S3 (``paper/protocol.md``)."""
    return ([c for r, f in S1_CELLS for c in s1_configs(r, f)] if s1 else []) + (s3_configs() if s3 else [])


if __name__ == "__main__":
    raise SystemExit(main())
