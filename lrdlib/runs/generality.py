"""The generality study (``paper/generality.md``): tuned L2 and the best LRD recipe in other
settings, each with a short search of λₒ around the protocol's best and five evaluation seeds.

``plan(f_big, f_none)`` lists the study's (setting, fraction) cells in the design's order;
``short_search`` is the one-rung search of a recipe's other-parameter decay in one setting;
``run_setting`` searches and evaluates both recipes there. Runs go through
``lrdlib.runs.sweep.run_sweep``: a stored run is read, not retrained.

    python -m lrdlib.runs.generality --f-big 0.35 --f-none 0.5 [--lrd SVT] [--dry-run]
    python -m lrdlib.runs.generality --f-big 0.35 --setting p=97
    python -m lrdlib.runs.generality --f-big 0.35 --after-prediction     # p = 401 too, once predicted
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from lrdlib.core.grok import endpoints
from lrdlib.core.recipes import Setting, recipe_config
from lrdlib.runs import halving as H
from lrdlib.runs.profiles import run_cache
from lrdlib.runs.sweep import run_sweep

# the axes, one at a time from the seed setting, in the design's order (scaling axes first)
SCALING = ("p=59", "p=97", "p=211", "width=64", "width=256")
OUT_OF_RANGE = ("p=401",)
TASKS = ("op=sub", "op=mul", "op=div", "op=quad", "op=recall,p=24")   # recall: notebook 08's, 24 symbols
OTHER_AXES = ("depth=1", "depth=4", "lr_scale=1/3", "lr_scale=3", "batch=256", "batch=1024")
SEARCH = H.Rung(1.0, (100,), 6000)         # one rung: search seed 100, 6,000 steps
FACTORS = (1.0, 1 / 3, 3.0)                # λₒ (tuned L2: λ) × the protocol's best; a tie goes to the first
EVAL = H.FIVE_SEEDS                        # 1000-1004
PROBE_STEPS = 20000                        # a² + ab + b²: does the LRD recipe grok at the fraction at all?
PROBE_SEED = 100


def settings_for(role: str) -> list[Setting]:
    """The settings the design runs at ``F_big`` (``role="big"``: scaling axes, the out-of-range
    step, the tasks, the other axes) or at ``F_none`` (``"none"``: the scaling and other axes)."""
    labels = {"big": SCALING + OUT_OF_RANGE + TASKS + OTHER_AXES, "none": SCALING + OTHER_AXES}
    if role not in labels:
        raise ValueError(f"role={role!r}: expected 'big' (F_big) or 'none' (F_none)")
    return [Setting.parse(s) for s in labels[role]]


def plan(f_big: float, f_none: float | None = None) -> list[tuple[Setting, float]]:
    """The study's cells in the order of ``paper/generality.md``: ``settings_for("big")`` at
    ``f_big``; then ``settings_for("none")`` at ``f_none``."""
    for f in (f_big, f_none):
        if f is not None and f not in H.FRACTIONS:
            raise ValueError(f"fraction {f!r}: expected one of the protocol's {', '.join(map(str, H.FRACTIONS))}")
    if f_none is not None and f_none == f_big:
        raise ValueError(f"f_none={f_none!r} equals f_big: the design's two fractions differ")
    out = [(s, f_big) for s in settings_for("big")]
    return out + ([(s, f_none) for s in settings_for("none")] if f_none is not None else [])


def short_search(recipe: str, frac: float, best: tuple, setting: Setting, *, sweep: Callable | None = None,
                 **sweep_kw) -> dict:
    """λₒ (tuned L2: λ) over ``FACTORS`` × the protocol's ``best`` in ``setting``, the Q/K knob
    kept: one rung (``SEARCH``), scored by ``lrdlib.runs.halving.score``. Returns ``best`` (qk,
    other), ``at_edge`` (the best is not the protocol's value: the smallest or largest tried; a
    tie goes to the protocol's value) and the ``rows``."""
    qk, other = best
    cells = ([(qk * k, None) for k in FACTORS] if recipe == "tuned L2" else [(qk, other * k) for k in FACTORS])
    rows = H.halving(cells, lambda c, s, n: recipe_config(recipe, c[0], c[1], train_frac=frac, seed=s, steps=n,
                                                          setting=setting),
                     (SEARCH,), sweep=sweep, **sweep_kw)
    top = rows[0]["cell"]
    return {"best": top, "at_edge": top != cells[0], "rows": rows}


def run_setting(recipes: dict[str, tuple], frac: float, setting: Setting, *, sweep: Callable | None = None,
                **sweep_kw) -> dict:
    """Both recipes in ``setting`` at ``frac``: ``recipes`` maps a recipe to its protocol best
    (qk, other). Returns ``{recipe: {"best", "at_edge", "records"}}`` (the evaluation records)."""
    sweep = sweep or run_sweep
    out = {}
    for r, best in recipes.items():
        found = short_search(r, frac, best, setting, sweep=sweep, **sweep_kw)
        cfgs = [recipe_config(r, *found["best"], train_frac=frac, seed=s, steps=H.BUDGET, setting=setting)
                for s in EVAL]
        _, recs = sweep(cfgs, return_records=True, **sweep_kw)
        out[r] = {"best": found["best"], "at_edge": found["at_edge"], "records": recs}
    return out


def task_fraction(setting: Setting, frac: float, lrd_best: tuple, *, lrd: str = "LRD",
                  sweep: Callable | None = None, **sweep_kw) -> float | None:
    """The train fraction at which ``setting`` runs: ``frac``, except on a² + ab + b² (``op=quad``),
    where the design raises it by 0.1 until the LRD recipe at its protocol best ``lrd_best`` has a
    stable grok on seed 100 within 20,000 steps (``PROBE_STEPS``), trying ``frac``, ``frac`` + 0.1,
    … up to 0.9 (``probe_fractions``); None if none of them groks. Both recipes then run at that
    fraction with the knobs of ``frac``."""
    if setting.op != "quad":
        return frac
    sweep = sweep or run_sweep
    for f in probe_fractions(frac):
        cfg = recipe_config(lrd, *lrd_best, train_frac=f, seed=PROBE_SEED, steps=PROBE_STEPS, setting=setting)
        _, (rec,) = sweep([cfg], return_records=True, **sweep_kw)
        if endpoints(rec)["stable_event"]:
            return f
    return None


def probe_fractions(frac: float) -> list[float]:
    """``frac``, ``frac`` + 0.1, … while ≤ 0.9 (two decimals): the fractions ``task_fraction`` tries."""
    return [round(frac + 0.1 * k, 2) for k in range(10) if round(frac + 0.1 * k, 2) <= 0.9]


def protocol_best(recipe: str, frac: float, cache) -> tuple:
    """The protocol's best (qk, other) of ``recipe`` at ``frac`` in the seed setting, from the store."""
    st = H.protocol_state(recipe, frac, cache)
    if st["best"] is None:
        raise LookupError(f"{recipe} at {frac}: the protocol's search is not complete ({st['search_missing']} runs "
                          "missing); run `make protocol` first")
    return st["best"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--f-big", type=float, required=True, help="the protocol's fraction with the largest effect")
    ap.add_argument("--f-none", type=float, help="the protocol's fraction with no effect")
    ap.add_argument("--lrd", default="LRD", help="the best LRD recipe at F_big (default LRD)")
    ap.add_argument("--lrd-none", default="LRD", help="the best LRD recipe at F_none (default LRD)")
    ap.add_argument("--after-prediction", action="store_true",
                    help="also run p = 401: only once notebook 10's prediction there is committed")
    ap.add_argument("--setting", help="one setting only, e.g. 'p=97'")
    ap.add_argument("--dry-run", action="store_true", help="list the cells, train nothing")
    a = ap.parse_args(argv)
    cells = plan(a.f_big, a.f_none)
    if a.setting:
        want = Setting.parse(a.setting)
        cells = [(s, f) for s, f in cells if s == want]
    if a.dry_run:
        for s, f in cells:
            print(f"{s.label() or 'seed'} at {f:g}")
        return 0
    cache = run_cache("paper")
    for s, f in cells:
        if s.label() in OUT_OF_RANGE and not a.after_prediction:
            print(f"{s.label()}: not run; the design writes the fit's prediction there first (run notebook 10, commit "
                  "its results, then pass --after-prediction)", flush=True)
            continue
        lrd = a.lrd if f == a.f_big else a.lrd_none
        bests = {r: protocol_best(r, f, cache) for r in ("tuned L2", lrd)}
        run_f = task_fraction(s, f, bests[lrd], lrd=lrd, cache=cache, executor="process")
        if run_f is None:
            print(f"{s.label()}: {lrd} has no stable grok on seed {PROBE_SEED} in {PROBE_STEPS:,} steps at any of "
                  f"{', '.join(map(str, probe_fractions(f)))}; not run", flush=True)
            continue
        res = run_setting(bests, run_f, s, cache=cache, executor="process")
        print(f"{s.label()} at {run_f:g}: " + "; ".join(f"{r} best {v['best']}" + (" (at an edge)" if v["at_edge"] else "")
                                                  for r, v in res.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
