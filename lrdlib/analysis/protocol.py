"""The fair comparison of ``paper/protocol.md``, read from the store without training: per recipe
and train fraction the search's setting and the evaluation runs (``load``); every recipe against
tuned L2 per fraction and endpoint (``table``) with the protocol's decision (``decision``: faster
by ≥ 2× or ≥ 3× at Holm-corrected p < 0.05); the ranking of the recipes; the Q/K stable rank at the
grok; what the runs cost against a full grid; and the protocol itself as data (``spec``).
"""
from __future__ import annotations

import inspect
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lrdlib.analysis.frames import records_cost
from lrdlib.analysis.survival import endpoint_time, holm, km_median, protocol_rows, sign_test
from lrdlib.core.grok import HOLD_LONG, endpoints
from lrdlib.core.recipes import OTHER_WD, OTHER_WD_SECONDARY, RECIPES, SEED_SETTING, Setting, recipe_config
from lrdlib.runs import halving as H
from lrdlib.runs.store import ResultStore, spectra_steps

ENDPOINTS = {"stable": "first evaluation from which val acc stays ≥ 0.99 to the end of the run (primary)",
             "first": "first evaluation with val acc ≥ 0.99",
             "chapter": "first evaluation with val acc ≥ 0.99 and ≥ 0.9 at every evaluation of the 1,000 steps after it "
                        "(notebook 04's rule: a fall after those 1,000 steps is not seen)",
             "hold5k": "first evaluation from which val acc stays ≥ 0.99 for 5,000 steps, censored at the run's last "
                       "step − 5,000 (sensitivity, amendment A2)"}
REFERENCE = "tuned L2"
ALPHA = 0.05
DECISIONS = ("≥ 3× faster", "≥ 2× faster", "faster", "slower", "not decided")
TABLE_COLUMNS = ["recipe", "frac", "endpoint", "n", "a_events", "b_events", "a_median", "b_median", "ratio", "lo", "hi",
                 "seeds", "a_first", "b_first", "undecided", "p", "p_logrank", "p_holm", "decision", "ratio_bound",
                 "boot_no_ratio", "boot_zero", "boot_inf", "a_first_shift2", "b_first_shift2", "p_shift2",
                 "p_holm_shift2", "a_first_shift3", "b_first_shift3", "p_shift3", "p_holm_shift3", "p_holm_ten",
                 "decision_ten", "decision_shift"]


def spec() -> dict:
    """The protocol in machine-readable form (what ``paper/protocol.md`` fixes)."""
    return {"search_seeds": sorted({s for r in H.RUNGS for s in r.seeds}),
            "eval_seeds": {str(f): list(H.eval_seeds(REFERENCE, f)) for f in H.FRACTIONS},
            "eval_seeds_secondary": {str(f): list(H.eval_seeds("SVT", f)) for f in H.SECONDARY_FRACTIONS},
            "holm_family": {r: H.family_size(r) for r in RECIPES if r != REFERENCE},
            "rungs": [{"keep": r.keep, "seeds": list(r.seeds), "steps": r.steps} for r in H.RUNGS],
            "grids": {"other_wd": list(OTHER_WD), "other_wd_secondary": list(OTHER_WD_SECONDARY),
                      "qk_centres": {k: v[0] for k, v in RECIPES.items()}},
            "searched_at": {r: {str(f): H.searched_at(r, f) for f in H.FRACTIONS} for r in RECIPES},
            "budget": H.BUDGET,
            "observe": {"min": inspect.signature(recipe_config).parameters["observe"].default,
                        "rule": "stop at first + max(min, first), first = the first grok"},
            "endpoints": ENDPOINTS, "hold5k_steps": HOLD_LONG, "alpha": ALPHA, "n_fractions": len(H.FRACTIONS),
            "primary": "stable", "test": "censored paired sign test, two-sided; Holm per recipe across its fractions (holm_family)",
            "decision": f"faster by ≥ 2× (3×): ratio of KM medians ≤ 1/2 (1/3) and p_holm < {ALPHA}",
            "amendments": ["A1 (budget, before any evaluation run): 3 × 3 grids, two rungs, searched fractions",
                           "A2 (after the evaluation at 0.5, no run retrained): sensitivity endpoint hold5k",
                           "A3 (budget, before any secondary run): secondary recipes evaluated at 0.25, 0.35, 0.5 "
                           "with 5, 10, 5 seeds; Holm over those 3 fractions",
                           "A4 (budget, before any secondary run): secondary recipes evaluated at 0.35 only, "
                           "10 seeds; Holm over that 1 fraction",
                           "A5 (search, before any secondary run): secondary recipes' Q/K centres at their own best of "
                           "notebooks 05-07 (polar, SVT 0.3; Luon 10; fixed norm 0.3), a two-knob one's λₒ on {0.1, 0.3, 1}",
                           "S1 (sensitivity, after the evaluation at 0.35): the weaker decays tuned L2's search dropped at "
                           "rung 0, on the search seeds for the full budget",
                           "C1 (analysis code corrected to the text, after the evaluations at 0.25-0.5): hold5k censored at "
                           "last − 5,000; a decision on the ratio bound, in the direction of the decided pairs; the stable "
                           "rank over runs with a stable grok",
                           "S2 (sensitivity, with C1): the sign test of a 2- and 3-fold shift; Holm over the ten-seed "
                           "fractions; the bootstrap's shares of no ratio, 0 and ∞",
                           "A6 (order only, before any secondary run): no Q/K decay at 0.35 right after the primary "
                           "pair at 0.2",
                           "S3 (sensitivity, after 5 evaluation runs of no Q/K decay at 0.35): LRD α 0.03 with λₒ 1 at "
                           "0.35 on evaluation seeds 1000-1004, beside LRD's λₒ 0.1",
                           "A7 (order only, with S3): the rest of no Q/K decay at 0.35 after the primary pairs"],
            "decision_direction": "the sign test's decided pairs favour the recipe the ratio favours; a median beyond "
                                  "the runs enters as the bound the runs allow (ratio_bound)"}


def load(cache, recipes: Sequence[str] = tuple(RECIPES), fracs: Sequence[float] = H.FRACTIONS,
         setting: Setting = SEED_SETTING) -> dict:
    """``{(recipe, frac): lrdlib.runs.halving.protocol_state}`` in ``setting``, each search read once."""
    found, out = {}, {}
    for r in recipes:
        for f in fracs:
            at = H.searched_at(r, f)
            if (r, at) not in found:
                try:
                    found[(r, at)] = H.search_recipe(r, at, setting=setting, sweep=H.stored_sweep(cache))
                except H.NotStored:
                    found[(r, at)] = None
            out[(r, f)] = H.protocol_state(r, f, cache, found[(r, at)], setting)
    return out


def status(states: dict) -> pd.DataFrame:
    """One row per recipe and fraction: the setting found, the runs still missing (a secondary
    recipe outside 0.35: "not planned", amendments A3, A4)."""
    rows = []
    for (r, f), st in states.items():
        n = len(H.eval_seeds(r, f))
        qk, other = st["best"] if st["best"] else (None, None)
        planned = r in H.PRIMARY or f in H.SECONDARY_FRACTIONS   # amendments A3, A4
        rows.append({"recipe": r, "frac": f, "searched at": st["searched_at"], "Q/K knob": qk, "λₒ": other,
                     "search runs missing": st["search_missing"],
                     "evaluation": ("not planned" if not planned else f"{n - st['eval_missing']}/{n}"
                                    if st["eval_missing"] is not None else f"0/{n}")})
    return pd.DataFrame(rows)


def search_table(states: dict) -> pd.DataFrame:
    """Every completed search, one row per rung and cell: ``recipe``, ``searched at``, ``rung``,
    its ``steps`` and ``seeds``, the cell's ``Q/K knob`` and ``λₒ``, the score (median stable grok
    over the rung's seeds, inf: fewer than half had one within the rung; mean final validation
    accuracy), and ``kept`` (promoted to the next rung, or chosen at the last)."""
    rows, seen = [], set()
    for (r, _), st in states.items():
        if not st["search_rows"] or (r, st["searched_at"]) in seen:
            continue
        seen.add((r, st["searched_at"]))
        last = max(row["rung"] for row in st["search_rows"])
        for row in st["search_rows"]:
            i = row["rung"]
            kept = (row["cell"] == st["best"] if i == last else
                    any(x["cell"] == row["cell"] and x["rung"] == i + 1 for x in st["search_rows"]))
            rows.append({"recipe": r, "searched at": st["searched_at"], "rung": i, "steps": H.RUNGS[i].steps,
                         "seeds": len(H.RUNGS[i].seeds), "Q/K knob": row["cell"][0], "λₒ": row["cell"][1],
                         "median stable grok": row["score"][0], "mean final val acc": -row["score"][1], "kept": kept})
    cols = ["recipe", "searched at", "rung", "steps", "seeds", "Q/K knob", "λₒ", "median stable grok",
            "mean final val acc", "kept"]
    return pd.DataFrame(rows, columns=cols).sort_values(["recipe", "searched at", "rung", "Q/K knob", "λₒ"],
                                                         na_position="first").reset_index(drop=True)


def complete(states: dict, recipe: str) -> dict:
    """``{frac: records}`` of ``recipe``'s complete evaluations."""
    return {f: st["records"] for (r, f), st in states.items() if r == recipe and st["records"]}


def decision(ratio: float, p_holm: float, a_first: int, b_first: int) -> str:
    """The protocol's rule for one fraction: "≥ 3× faster", "≥ 2× faster", "faster" (significant,
    under 2×), "slower" (significant), or "not decided". ``ratio``: the ratio of medians where both
    are reached, else the bound the runs allow (``lrdlib.analysis.survival.ratio_bound``);
    ``a_first``, ``b_first``: the sign test's decided pairs, whose majority must point the same way
    as the ratio (a significant test whose pairs favour the reference decides nothing for the recipe)."""
    if not p_holm < ALPHA or math.isnan(ratio) or a_first == b_first:
        return "not decided"
    if (ratio < 1) != (a_first > b_first):
        return "not decided"
    if ratio <= 1 / 3:
        return "≥ 3× faster"
    if ratio <= 1 / 2:
        return "≥ 2× faster"
    return "faster" if ratio < 1 else "slower"


def shift_decision(row) -> str:
    """Sensitivity: the fold the paired shift tests support (``p_holm_shift3``/``p_holm_shift2`` <
    ``ALPHA`` with the recipe's runs ahead), "≥ 3× faster", "≥ 2× faster", else what the protocol's
    own test gives without a fold ("faster" at p_holm < ``ALPHA``), else "not decided"."""
    for m in (3, 2):
        if row[f"p_holm_shift{m}"] < ALPHA and row[f"a_first_shift{m}"] > row[f"b_first_shift{m}"]:
            return f"≥ {m}× faster"
    return "faster" if row["p_holm"] < ALPHA and row["a_first"] > row["b_first"] else "not decided"


def table(states: dict, endpoints_: Sequence[str] = tuple(ENDPOINTS), n_boot: int = 2000) -> pd.DataFrame:
    """Every recipe against tuned L2, per fraction with both evaluations complete and per endpoint:
    events of n, KM medians, the paired ratio with its interval (and the shares of resamples with no
    ratio, 0 or ∞), the sign test's p, Holm's p over the 8 fractions (interim: fractions still out
    count as p = 1), the log-rank p, the decision (on ``ratio_bound``, in the direction of the
    decided pairs). Sensitivity analyses beside it: ``p_holm_ten`` and ``decision_ten`` (Holm over
    the ten-seed fractions only: with 5 seeds the sign test's smallest p is 0.0625, so a five-seed
    fraction can never be decided and only enlarges the family), the 2- and 3-fold shift tests
    (``p_shift2``, ``p_holm_shift2``, ...) and ``decision_shift``, the fold they support."""
    ref = complete(states, REFERENCE)
    rows = []
    for r in dict.fromkeys(k[0] for k in states):
        if r == REFERENCE:
            continue
        a = complete(states, r)
        if r not in H.PRIMARY:   # a secondary recipe enters at its planned fractions only (A4); a run by hand does not
            a = {f: v for f, v in a.items() if f in H.SECONDARY_FRACTIONS}
        for e in endpoints_:
            got = protocol_rows(a, ref, e, n_boot=n_boot, n_tests=H.family_size(r))
            ten = [row for row in got if row["frac"] in H.EVAL_SEEDS]
            holm_ten = dict(zip((row["frac"] for row in ten), holm([row["p"] for row in ten],
                                                                  len(set(H.EVAL_SEEDS) & planned_fractions(r)))))
            for row in got:
                row["decision"] = decision(row["ratio_bound"], row["p_holm"], row["a_first"], row["b_first"])
                row["p_holm_ten"] = holm_ten.get(row["frac"], math.nan)
                row["decision_ten"] = decision(row["ratio_bound"], row["p_holm_ten"], row["a_first"], row["b_first"])
                row["decision_shift"] = shift_decision(row)
                rows.append({"recipe": r, **row})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def planned_fractions(recipe: str) -> set[float]:
    """The fractions at which ``recipe`` is evaluated (amendments A3, A4)."""
    return set(H.FRACTIONS) if recipe in H.PRIMARY else set(H.SECONDARY_FRACTIONS)


def decisions(table: pd.DataFrame, recipe: str = "LRD", endpoint: str = "stable") -> dict[str, list[float]]:
    """``{decision: [fractions]}`` of ``recipe`` on ``endpoint`` (every key of ``DECISIONS``)."""
    g = table[(table.recipe == recipe) & (table.endpoint == endpoint)]
    return {d: [float(f) for f in g[g.decision == d].frac] for d in DECISIONS}


def qk_stable_rank_at(record: dict, step: int) -> float:
    """Mean stable rank of the Q/K matrices at the last stored evaluation at or before ``step``."""
    at = spectra_steps(record)
    i = max(j for j, s in enumerate(at) if s <= step) if at and at[0] <= step else 0
    return float(np.mean([record["spectra"][n]["stable_rank"][i] for n in record["targets"]]))


def per_run(states: dict) -> pd.DataFrame:
    """One row per evaluation run: recipe, frac, seed, every endpoint, collapses, ``held`` (steps from
    the stable grok to the run's end: a run that collapsed has its stable grok at its last recovery,
    which the observation window bounds), the Q/K stable rank at the stable grok (None for a run
    without one) and its width (the matrices' rank bound)."""
    rows = []
    for (r, f), st in states.items():
        for rec in st["records"] or ():
            e = endpoints(rec)
            m = rec["config"]["model"]
            rows.append({"recipe": r, "frac": f, "seed": rec["config"]["seed"], **e,
                         "held": e["last"] - e["stable"] if e["stable_event"] else None,
                         "srank_at_grok": qk_stable_rank_at(rec, e["stable"]) if e["stable_event"] else None,
                         "rank_bound": m["dim"]})
    return pd.DataFrame(rows)


def s1_table(states: dict, cache) -> pd.DataFrame:
    """Sensitivity S1 (``lrdlib.runs.halving.S1_CELLS``): per dropped cell and search seed, the run
    made for the evaluation's budget (first, stable grok, hold5k, collapses, final accuracy; ``None``
    while not stored), with ``score`` (the cell's median stable grok over both seeds, as the search
    scores, inf when fewer than half have one) against ``chosen`` (the rung-1 score of the setting
    the search chose) and ``would_win`` (score < chosen: a search that had let this cell run on
    would have chosen it, so the recipe's evaluation depends on the rung-0 cut)."""
    rows = []
    for (r, f), cells in H.S1_CELLS.items():
        st = states.get((r, f))
        top = next((x for x in (st or {}).get("search_rows", []) if x["cell"] == st["best"]), None) if st else None
        chosen = top["score"][0] if top else math.nan
        cfgs = H.s1_configs(r, f)
        recs = [cache.load(c) for c in cfgs]
        for (qk, other) in cells:
            mine = [(c, x) for c, x in zip(cfgs, recs) if (c.optim.weight_decay if r == REFERENCE else c.decay.strength) == qk]
            done = [x for _, x in mine if x is not None]
            try:
                score = H.score(done)[0] if len(done) == len(mine) else math.nan
            except RuntimeError:   # a failed run: no reading until it is rerun
                score, done = math.nan, []
            for c, x in mine:
                e = endpoints(x) if x is not None else {}
                rows.append({"recipe": r, "frac": f, "qk": qk, "other": other, "seed": c.seed,
                         "stored": x is not None and x.get("status") in ("ok", "diverged"),
                             **{k: e.get(k) for k in ("first", "stable", "stable_event", "hold5k_event", "collapses",
                                                      "final_val_acc", "last")},
                             "score": score, "chosen": chosen, "would_win": bool(score < chosen)})
    return pd.DataFrame(rows)


def s1_sentence(s1: pd.DataFrame) -> str:
    """Sensitivity S1 in words, per fraction: how many of its runs are stored, and once all are,
    whether a dropped weaker decay would have won the search (``would_win``), with the scores."""
    out = []
    for (r, f), g in s1.groupby(["recipe", "frac"], sort=False):
        if not g.stored.all() or g.chosen.isna().any():
            why = "" if g.stored.all() else f"{int(g.stored.sum())} of {len(g)} runs stored, "
            out.append(f"S1 at {f:g}: {why or 'the search it is read against is not complete, '}no reading yet.")
            continue
        cells = g.drop_duplicates("qk")
        scores = ", ".join(f"λ {c.qk:g}: {'none' if math.isinf(c.score) else f'{c.score:,.0f}'}" for c in cells.itertuples())
        held = f"{int(g.hold5k_event.sum())} of {len(g)} of these runs hold 5,000 steps"
        if g.would_win.any():
            win = ", ".join(f"{c.qk:g}" for c in cells.itertuples() if c.would_win)
            out.append(f"S1 at {f:g}: {r} at λ {win}, dropped at rung 0, would have won its search run for the full budget "
                       f"(median stable grok on the search seeds {scores}; the chosen λ's {cells.chosen.iloc[0]:,.0f}); "
                       f"{held}: {r}'s evaluation at {f:g} depends on the rung-0 cut.")
        else:
            out.append(f"S1 at {f:g}: no weaker decay dropped at rung 0 would have won {r}'s search run for the full budget "
                       f"(median stable grok on the search seeds {scores}; the chosen λ's {cells.chosen.iloc[0]:,.0f}); {held}.")
    return " ".join(out)


def s3_table(states: dict, cache) -> pd.DataFrame:
    """Sensitivity S3 (``lrdlib.runs.halving.S3_CELLS``): per cell and evaluation seed 1000-1004, the
    S3 run (``arm`` "S3") beside the recipe's evaluation run at its search's best on the same seed
    (``arm`` "chosen"): ``other`` (λₒ), ``stored``, first, stable grok, hold5k, final accuracy."""
    rows = []
    for (r, f), cells in H.S3_CELLS.items():
        st = states.get((r, f))
        arms = [("S3", c) for c in cells] + ([("chosen", tuple(st["best"]))] if st and st.get("best") else [])
        for arm, (qk, other) in arms:
            for seed in H.FIVE_SEEDS:
                x = cache.load(recipe_config(r, qk, other, train_frac=f, seed=seed, steps=H.BUDGET))
                e = endpoints(x) if x is not None else {}
                rows.append({"recipe": r, "frac": f, "arm": arm, "qk": qk, "other": other, "seed": seed,
                             "stored": x is not None and x.get("status") in ("ok", "diverged"),
                             **{k: e.get(k) for k in ("first", "stable", "stable_event", "hold5k_event", "final_val_acc", "last")}})
    return pd.DataFrame(rows)


def s3_sentence(s3: pd.DataFrame) -> str:
    """Sensitivity S3 in words: per cell, once its runs and the chosen setting's are stored, the
    stable groks (events of n, KM median) and the runs holding 5,000 steps of both, and the paired
    sign test of the stable grok (descriptive: five pairs cannot reach p < 0.0625)."""
    out = []
    for (r, f), g in s3.groupby(["recipe", "frac"], sort=False):
        if not g.stored.all() or set(g.arm) != {"S3", "chosen"}:
            out.append(f"S3 at {f:g}: {int(g[g.arm == 'S3'].stored.sum())} of {int((g.arm == 'S3').sum())} runs stored, no reading yet.")
            continue
        arm = {a: {x.seed: endpoint_time(x._asdict(), "stable") for x in h.itertuples()} for a, h in g.groupby("arm")}
        desc = {}
        for a, h in g.groupby("arm"):
            t = [v[0] for v in arm[a].values()]
            e = [v[1] for v in arm[a].values()]
            med = km_median(t, e)
            desc[a] = (f"λₒ {h.other.iloc[0]:g}: stable grok on {sum(e)} of {len(e)} (median "
                       f"{'beyond the runs' if not math.isfinite(med) else f'{med:,.0f}'}), "
                       f"{int(h.hold5k_event.sum())} of {len(h)} holding ≥ 0.99 for 5,000 steps")
        t = sign_test(arm["S3"], arm["chosen"])
        qk = g.qk.iloc[0]
        lo = [g[g.arm == a].other.iloc[0] for a in ("S3", "chosen")]
        out.append(f"S3 at {f:g}, {r} {KNOB.get(r, 'α')} {qk:g} on seeds {min(g.seed)}-{max(g.seed)}: {desc['S3']}; with its "
                   f"search's {desc['chosen']}; paired by seed, the stable grok comes first with λₒ {lo[0]:g} on {t['a_first']} "
                   f"seeds and with λₒ {lo[1]:g} on {t['b_first']} ({t['undecided']} undecided; sign test p = {t['p']:.2g}, "
                   "descriptive).")
    return " ".join(out)


def endpoint_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per recipe and fraction, what the endpoints see beyond the grok: ``n`` runs, ``first`` and
    ``stable`` groks, ``hold5k`` (groks held 5,000 steps), ``collapsed`` (runs that fell below the floor after a first grok; ``falls``:
    how often), the lowest final validation accuracy and the median share of post-grok
    evaluations ≥ 0.99, and the shortest and longest hold of a stable grok to the run's end
    (``min_held``, ``max_held``)."""
    cols = ["recipe", "frac", "n", "first", "stable", "hold5k", "collapsed", "falls", "min_final_val_acc",
            "post_grok_share", "min_held", "max_held"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    g = runs.groupby(["recipe", "frac"], sort=False)
    return pd.DataFrame({"n": g.size(), "first": g["first"].count(), "stable": g["stable_event"].sum(),
                         "hold5k": g["hold5k_event"].sum(),
                         "collapsed": g["collapses"].apply(lambda c: int((c > 0).sum())), "falls": g["collapses"].sum(),
                         "min_final_val_acc": g["final_val_acc"].min(),
                         "post_grok_share": g["post_grok_share"].median(), "min_held": g["held"].min(),
                         "max_held": g["held"].max()}).reset_index()[cols]


def ranking(runs: pd.DataFrame, endpoint: str = "stable") -> pd.DataFrame:
    """Per fraction, the recipes ordered by KM median of ``endpoint`` (censored as
    ``lrdlib.analysis.survival.endpoint_time`` says: hold5k at the run's last step − 5,000)."""
    if runs.empty:
        return pd.DataFrame(columns=["frac", "recipe", "median", "events", "n", "rank"])
    rows = []
    for (f, r), g in runs.groupby(["frac", "recipe"]):
        ev = g[f"{endpoint}_event"] if f"{endpoint}_event" in g else g[endpoint].notna()
        t = g[endpoint].astype(float).fillna(g["last"])   # each endpoint's own censoring (``endpoint_time``)
        rows.append({"frac": f, "recipe": r, "median": km_median(t.tolist(), ev.tolist()), "events": int(ev.sum()),
                     "n": len(g)})
    out = pd.DataFrame(rows)
    out["rank"] = out.groupby("frac")["median"].rank(method="min")
    return out.sort_values(["frac", "rank"]).reset_index(drop=True)


def summary(table: pd.DataFrame, runs: pd.DataFrame, recipe: str = "LRD") -> dict:
    """The numbers the chapter words: ``fractions_in`` (fractions with ``recipe`` and tuned L2
    complete), ``decisions`` per endpoint (``decisions``), the ``ranking`` on the primary endpoint,
    ``recipe``'s Q/K stable rank at the stable grok per fraction over the runs that have one
    (``srank_at_grok`` the median, ``srank_min``, ``srank_max``, ``runs``, ``below_half``: runs below
    half the bound) with the rank bound, and the ``endpoints`` of every recipe (``endpoint_summary``)."""
    g = runs[(runs.recipe == recipe) & runs.stable_event] if len(runs) else runs
    cols = ["frac", "srank_at_grok", "srank_min", "srank_max", "runs", "below_half", "rank_bound"]
    if len(g):
        g = g.astype({"srank_at_grok": float}).assign(below=lambda x: x.srank_at_grok < x.rank_bound / 2)
    rank = (g.groupby("frac").agg(
                srank_at_grok=("srank_at_grok", "median"), srank_min=("srank_at_grok", "min"),
                srank_max=("srank_at_grok", "max"), runs=("srank_at_grok", "size"), below_half=("below", "sum"),
                rank_bound=("rank_bound", "median")).reset_index() if len(g) else pd.DataFrame(columns=cols))
    return {"fractions_in": int(table[table.recipe == recipe].frac.nunique()),
            "decisions": {e: decisions(table, recipe, e) for e in ENDPOINTS},
            "ranking": ranking(runs), "stable_rank_at_grok": rank, "endpoints": endpoint_summary(runs)}


def endpoint_contrast(table: pd.DataFrame, summ: dict, recipe: str = "LRD") -> list[str]:
    """One sentence per kind of disagreement between the primary endpoint and the first grok for
    ``recipe`` (one decides and the other does not, either way, or they decide different folds),
    naming its fractions with both ratios, their decisions and how many runs of each recipe held
    5,000 steps (``summ["endpoints"]``), so that the reader sees whether an advantage lies in how
    soon the first grok comes or in whether it lasts."""
    groups: dict[str, list[str]] = {}
    ends = summ["endpoints"]
    for f in sorted(table[table.recipe == recipe].frac.unique()):
        row = {e: table[(table.recipe == recipe) & (table.frac == f) & (table.endpoint == e)] for e in ("stable", "first")}
        if any(len(r) == 0 for r in row.values()):
            continue
        st, fi = row["stable"].iloc[0], row["first"].iloc[0]
        if st.decision == fi.decision:
            continue
        held = {r: ends[(ends.recipe == r) & (ends.frac == f)] for r in (recipe, REFERENCE)}
        held = {r: (int(h.hold5k.iloc[0]), int(h.n.iloc[0])) if len(h) else (0, 0) for r, h in held.items()}
        if fi.decision == "not decided":
            why = f"there {recipe}'s advantage lies in whether the grok lasts, not in how soon it first comes"
        elif st.decision == "not decided":
            why = (f"there {recipe} groks first sooner, and that lead does not carry to the stable grok"
                   + ("; neither recipe's grok lasts" if not held[recipe][0] and not held[REFERENCE][0] else ""))
        else:
            why = "there the fold differs with the endpoint"
        groups.setdefault(why, []).append(
            f"{f:g} (first grok {fi.ratio:.2f}, {fi.decision}; stable grok {st.ratio:.2f}, {st.decision}; holding ≥ 0.99 for "
            f"5,000 steps: {recipe} {held[recipe][0]} of {held[recipe][1]}, {REFERENCE} {held[REFERENCE][0]} of {held[REFERENCE][1]})")
    return [f"The endpoints part, {recipe} / {REFERENCE}, at {_join(parts)}: {why}." for why, parts in groups.items()]


def lasting_by_other_decay(states: dict, summ: dict) -> pd.DataFrame:
    """Per recipe and complete fraction, the decay of the parameters other than W_Q, W_K in the
    setting its search chose (``other_decay``: tuned L2's λ, a recipe's λₒ) beside how many of its
    evaluation runs hold ≥ 0.99 for 5,000 steps (``hold5k`` of ``n``): an observation, not a test,
    that shows whether a lasting grok goes with the recipe or with that decay."""
    ends = summ["endpoints"]
    rows = []
    for x in ends.itertuples():
        st = states.get((x.recipe, x.frac))
        if not st or not st["best"]:
            continue
        qk, other = st["best"]
        rows.append({"recipe": x.recipe, "frac": x.frac, "qk": qk, "other_decay": qk if other is None else other,
                     "hold5k": int(x.hold5k), "n": int(x.n)})
    return pd.DataFrame(rows, columns=["recipe", "frac", "qk", "other_decay", "hold5k", "n"])


def lasting_sentence(lasting: pd.DataFrame) -> str:
    """``lasting_by_other_decay`` in words: per recipe and decay of the other parameters, the runs
    that hold 5,000 steps, and the fractions."""
    if not len(lasting):
        return "No fraction is complete yet."
    parts = []
    for (r, d), g in lasting.groupby(["recipe", "other_decay"], sort=False):
        name = "λ" if r == REFERENCE else "λₒ"
        parts.append(f"{r} with {name} {d:g} on the other parameters holds ≥ 0.99 for 5,000 steps in {g.hold5k.sum()} of "
                     f"{g.n.sum()} runs (at {_fracs(sorted(g.frac))})")
    return ("Which runs keep their grok, by the decay of the parameters other than the query and key weights that each search chose "
            "(an observation, not a test): " + "; ".join(parts) + ".")


def recipe_of(config: dict) -> tuple[str, float | None, float | None]:
    """The (recipe, Q/K knob, λₒ) a run's config was made from (the inverse of
    ``lrdlib.core.recipes.recipe_config``): tuned L2 as (λ, None), no Q/K decay as (None, λₒ)."""
    o, d = config["optim"], config["decay"]
    if o["kind"] == "luon":
        return "Luon", o["luon_lambda"], o["weight_decay"]
    if d["kind"] != "none":
        name = next((r for r, (_, k) in RECIPES.items() if k == d["kind"]), None)
        if name is None:
            raise ValueError(f"decay kind {d['kind']!r} is no recipe's (recipes: {', '.join(RECIPES)})")
        return name, d["strength"], o["weight_decay"]
    if o["target_weight_decay"] == o["weight_decay"] and o["weight_decay"] > 0:
        return REFERENCE, o["weight_decay"], None
    return "no Q/K decay", None, o["weight_decay"]


def lasting_by_cell(records: Sequence[dict], min_steps: int = 10000) -> pd.DataFrame:
    """Every protocol run with a budget of at least ``min_steps`` (the search's last rung, sensitivity
    S1 and the evaluation), per recipe, fraction, Q/K knob and λₒ: ``n`` runs, ``first`` (runs that
    reach 0.99 at all), ``hold5k`` (runs holding ≥ 0.99 for 5,000 steps), ``search``/``eval`` (how
    many of the ``n`` are on search / evaluation seeds). An observation across the searches' cells,
    not a test: it shows which settings of both knobs keep a grok."""
    rows = []
    for rec in records:
        c = rec["config"]
        if c["steps"] < min_steps:
            continue
        r, qk, other = recipe_of(c)
        e = endpoints(rec)
        rows.append({"recipe": r, "frac": c["task"]["train_frac"], "qk": qk, "other_decay": other,
                     "first": e["first"] is not None, "hold5k": e["hold5k_event"], "eval": c["seed"] >= min(H.FIVE_SEEDS)})
    cols = ["recipe", "frac", "qk", "other_decay", "n", "first", "hold5k", "search", "eval"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows).fillna({"qk": -1.0, "other_decay": -1.0})   # groupby drops None keys
    out = (df.groupby(["recipe", "frac", "qk", "other_decay"])
           .agg(n=("first", "size"), first=("first", "sum"), hold5k=("hold5k", "sum"), eval=("eval", "sum"))
           .reset_index().assign(search=lambda x: x.n - x["eval"]))
    out = out.replace({"qk": {-1.0: None}, "other_decay": {-1.0: None}})
    return out[cols].astype({"n": int, "first": int, "hold5k": int, "search": int, "eval": int})


KNOB = {"tuned L2": "λ", "Luon": "λ", "SVT": "τ", "fixed norm": "r"}   # the Q/K knob's letter; else α


def _cell(x, frac: bool = True) -> str:
    q = f" {KNOB.get(x.recipe, 'α')} {x.qk:g}" if x.qk is not None and not pd.isna(x.qk) else ""
    o = f", λₒ {x.other_decay:g}" if x.other_decay is not None and not pd.isna(x.other_decay) else ""
    return f"{x.recipe}{q}{o}" + (f" at {x.frac:g}" if frac else "")


def _count(y) -> str:
    return f"{y.hold5k} of {y.n}" + ("" if y.first else " (none reaches 0.99)")


def lasting_cells_sentence(cells: pd.DataFrame) -> str:
    """``lasting_by_cell`` in words: per recipe, fraction and Q/K knob with runs that hold 5,000
    steps, its runs at every λₒ tried; then the other cells at that fraction with one of those λₒ
    (another Q/K knob or recipe; tuned L2 at that λ), which say whether the hold goes with the Q/K
    treatment, with λₒ, or with both."""
    if not len(cells):
        return "No protocol run of 10,000 steps or more is stored yet."
    head = (f"Over the {cells.n.sum()} protocol runs of at least 10,000 steps (the search's last rung, S1 and the "
            f"evaluation, {len(cells)} settings of the two knobs; a cell the search dropped after 4,000 steps is not "
            "among them), ")
    keys = cells[cells.hold5k > 0][["recipe", "frac", "qk"]].drop_duplicates()
    if not len(keys):
        return head + "no run holds ≥ 0.99 for 5,000 steps."
    parts, shown = [], set()
    for k in keys.itertuples():
        grp = cells[(cells.recipe == k.recipe) & (cells.frac == k.frac) & (cells.qk == k.qk)]
        held_o = set(grp[grp.hold5k > 0].other_decay)
        knob = f" {KNOB.get(k.recipe, 'α')} {k.qk:g}" if k.qk is not None and not pd.isna(k.qk) else ""
        txt = (f"{k.recipe}{knob} at {k.frac:g}: " + ", ".join(f"λₒ {y.other_decay:g} {_count(y)}" for y in grp.itertuples()))
        at = cells[(cells.frac == k.frac) & ~cells.index.isin(grp.index)]
        same = at[at.other_decay.isin(held_o) | ((at.recipe == REFERENCE) & at.qk.isin(held_o))]
        if len(same):
            txt += "; with the same decay of the other parameters otherwise: " + ", ".join(
                f"{_cell(y, frac=False)} {_count(y)}" for y in same.itertuples())
        shown |= set(grp.index) | set(same.index)
        parts.append(txt)
    rest = cells[~cells.index.isin(shown)]
    return (head + "runs that hold ≥ 0.99 for 5,000 steps: " + "; ".join(parts)
            + f". No run of the other {len(rest)} settings ({rest.n.sum()} runs) holds that long "
            "(an observation across the searches' cells, mostly on the two search seeds, not a test).")


def _fracs(fs) -> str:
    return ", ".join(f"{f:g}" for f in fs) or "none"


def _join(items: Sequence[str], last: str = "and") -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {last} " + items[-1]


OUTCOMES = (("≥ 3× faster", "≥ 3× faster"), ("≥ 2× faster", "≥ 2× (under 3×) faster"), ("faster", "faster by under 2×"),
            ("slower", "slower"), ("not decided", "not decided"))


def primary_sentence(summ: dict, recipe: str = "LRD") -> str:
    """The protocol's decision in one sentence: how many of the 8 fractions are in, the fractions of
    each outcome of ``decision`` on the primary endpoint, and the outcomes that occur nowhere."""
    if not summ["fractions_in"]:
        return f"No fraction has every evaluation run of {recipe} and {REFERENCE} yet: the protocol states no decision."
    d = summ["decisions"]["stable"]
    seen = [f"{label} at {_join([f'{f:g}' for f in d[k]])}" for k, label in OUTCOMES if d.get(k)]
    unseen = [label for k, label in OUTCOMES[:-1] if not d.get(k)]
    return (f"{summ['fractions_in']} of {len(H.FRACTIONS)} fractions have every evaluation run of {recipe} and {REFERENCE}. "
            f"On the primary endpoint (stable grok) {recipe} is {_join(seen)}"
            + (f"; it is {_join(unseen, 'or')} at none" if unseen else "")
            + f" (a decision needs a Holm-corrected p < {ALPHA:g} and a ratio of medians at or below 1/2 or 1/3).")


def no_lasting_grok(summ: dict) -> list[str]:
    """The fractions where no run of any recipe compared holds ≥ 0.99 for 5,000 steps, one sentence
    per set of recipes: there every stable grok is the last recovery before the observation window
    closes, and the window closes at first + max(5,000, first), so the primary endpoint follows
    the first grok."""
    groups: dict[tuple, list] = {}
    for f, g in summ["endpoints"].groupby("frac"):
        if len(g) > 1 and not g.hold5k.any():
            groups.setdefault(tuple(g.recipe), []).append((f, g))
    out = []
    for recipes, fg in groups.items():
        fr = [f"{f:g}" for f, _ in fg]
        where = fr[0] if len(fr) == 1 else ", ".join(fr[:-1]) + " and " + fr[-1]
        counts = ", ".join(f"0 of {g.n.sum()}" for _, g in fg)
        lo = min(g.min_held.min() for _, g in fg)
        hi = max(g.max_held.max() for _, g in fg)
        out.append(f"At {where} no run of {' or '.join(recipes)} holds ≥ 0.99 for 5,000 steps (hold5k: {counts}); "
                   f"their stable groks are held {lo:,.0f}-{hi:,.0f} steps before the run ends. A run ends when its "
                   "observation window closes, at first grok + max(5,000, first grok), so there the primary endpoint "
                   "is the last recovery before that point: it orders the runs much as their first grok does, not by "
                   "a grok that lasts.")
    return out


def _rank_kinds(summ: dict, recipe: str) -> tuple[dict, set]:
    """({frac: "low-rank" | "not low-rank" | "split"}, the fractions where ``recipe`` wins)."""
    sr = summ["stable_rank_at_grok"]
    won = {f for d, fs in summ["decisions"]["stable"].items() if d not in ("not decided", "slower") for f in fs}
    kinds = {x.frac: ("low-rank" if 2 * x.below_half > x.runs else "not low-rank" if not x.below_half else "split")
             for x in sr.itertuples()} if len(sr) else {}
    return kinds, won


def low_rank_verdict(summ: dict, recipe: str = "LRD") -> str:
    """Whether the ``recipe`` that wins on the primary endpoint is low-rank, in one sentence: at a
    fraction where it wins, "low-rank" when most of its runs' Q/K stable rank at the stable grok lies
    below half the bound (the width; the reading of the earlier chapters), "not low-rank" when none
    does, "split" otherwise."""
    kinds, won = _rank_kinds(summ, recipe)
    at_won = {kinds[f] for f in won if f in kinds}
    if not at_won:
        return f"{recipe} wins at no fraction yet, so whether the winning {recipe} is low-rank is not measured."
    if len(at_won) == 1:
        return f"The {recipe} that wins is {at_won.pop()} (its Q/K stable rank at the stable grok)."
    return f"The {recipe} that wins is low-rank at some fractions and not at others."


def low_rank_sentence(summ: dict, table: pd.DataFrame | None = None, recipe: str = "LRD") -> str:
    """``low_rank_verdict``, then per complete fraction ``recipe``'s Q/K stable rank at the stable
    grok: median and range over the runs that have one, against the bound, and how many of those
    runs lie below half the bound."""
    sr = summ["stable_rank_at_grok"]
    if not len(sr):
        return f"No run of {recipe} has a stable grok in a complete fraction yet: its rank at the grok is not measured."
    kinds, won = _rank_kinds(summ, recipe)
    parts = [f"at {x.frac:g}{' (where it wins)' if x.frac in won else ''} median {x.srank_at_grok:.1f} of "
             f"{x.rank_bound:.0f}, runs {x.srank_min:.1f}-{x.srank_max:.1f}, {x.below_half} of {x.runs} with a "
             f"stable grok below half the bound ({kinds[x.frac]})" for x in sr.itertuples()]
    return f"{low_rank_verdict(summ, recipe)} Per complete fraction: " + "; ".join(parts) + "."


def shift_verdict(table: pd.DataFrame, recipe: str = "LRD") -> str:
    """``shift_sentence`` in short: per fraction where the rule gives a fold on the primary endpoint,
    the fold the paired shift tests support."""
    g = table[(table.recipe == recipe) & (table.endpoint == "stable")] if len(table) else table
    g = g[g.decision.isin(["≥ 3× faster", "≥ 2× faster"])] if len(g) else g
    if not len(g):
        return "No fraction has a fold decided on the primary endpoint yet."
    parts = [f"at {x.frac:g} {x.decision_shift} (the rule: {x.decision})" for x in g.itertuples()]
    return "The paired sign test of the fold itself supports " + "; ".join(parts) + "."


def shift_sentence(table: pd.DataFrame, recipe: str = "LRD") -> str:
    """Sensitivity: per fraction where the protocol's rule gives a fold, whether the paired test of
    that fold itself (``shift_sign_test``, Holm-corrected) supports it, on the primary endpoint."""
    g = table[(table.recipe == recipe) & (table.endpoint == "stable")]
    out = []
    for x in g.itertuples():
        if x.decision not in ("≥ 3× faster", "≥ 2× faster"):
            continue
        tests = "; ".join(f"{k}-fold shift: {getattr(x, f'a_first_shift{k}')} to {getattr(x, f'b_first_shift{k}')} pairs, "
                          f"Holm p {getattr(x, f'p_holm_shift{k}'):.2g}" for k in (2, 3))
        agree = "supports it" if x.decision_shift == x.decision else f"supports {x.decision_shift}"
        out.append(f"At {x.frac:g} the rule's {x.decision} rests on the ratio of medians {x.ratio:.2f} "
                   f"[{x.lo:.2g}, {x.hi:.2g}]; the paired test of the fold itself {agree} ({tests}).")
    return " ".join(out) or "No fraction has a fold decided on the primary endpoint yet."


PRIMARY_FIELDS = ("n", "a_events", "b_events", "a_median", "b_median", "ratio", "lo", "hi", "p", "p_holm", "decision")


def primary_by_fraction(table: pd.DataFrame, summ: dict, recipe: str = "LRD") -> dict:
    """``{frac: row}`` for every protocol fraction (as text keys, in order): ``recipe`` against tuned
    L2 on the primary endpoint (``PRIMARY_FIELDS``), the decisions on the other endpoints
    (``decision_first``, ``decision_chapter``, ``decision_hold5k``) and ``srank_at_grok``; every value None at a fraction
    not yet complete (the paper's table prints those as pending)."""
    out = {}
    for f in H.FRACTIONS:
        rows = {e: table[(table.recipe == recipe) & (table.endpoint == e) & (table.frac == f)] for e in ENDPOINTS}
        r = rows["stable"]
        row = {k: (r.iloc[0][k] if len(r) else None) for k in PRIMARY_FIELDS}
        row |= {f"decision_{e}": (rows[e].iloc[0]["decision"] if len(rows[e]) else None) for e in ENDPOINTS if e != "stable"}
        sr = summ["stable_rank_at_grok"]
        hit = sr[sr.frac == f] if len(sr) else sr
        row["srank_at_grok"] = float(hit.iloc[0]["srank_at_grok"]) if len(hit) else None
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        out[f"{f:g}"] = row | _texts(row)
    return out


def _texts(row: dict) -> dict:
    """The table's cells as text (None while pending): ``a_kn``/``b_kn`` events of n, the medians
    (``> last step`` beyond it: inf), ``ratio_ci`` the ratio with its interval."""
    if row["n"] is None:
        return dict.fromkeys(("a_kn", "b_kn", "a_med", "b_med", "ratio_ci"))
    med = lambda m: f"{m:,.0f}" if math.isfinite(m) else "beyond the run"
    num = lambda x: f"{x:.2g}" if math.isfinite(x) else ("∞" if x > 0 else "n/a")
    ratio = "n/a" if math.isnan(row["ratio"]) else f"{num(row['ratio'])} [{num(row['lo'])}, {num(row['hi'])}]"
    return {"a_kn": f"{row['a_events']}/{row['n']}", "b_kn": f"{row['b_events']}/{row['n']}",
            "a_med": med(row["a_median"]), "b_med": med(row["b_median"]), "ratio_ci": ratio}


def is_protocol_run(record: dict) -> bool:
    """A run of the protocol: a recipe's config (``observe`` set) on a search or evaluation seed, in
    the seed setting (a + b mod 113, width 128, depth 2, lr 1e-3, batch 512; a run of the generality
    study in another setting is not one)."""
    c = record["config"]
    m, seed = c["model"], SEED_SETTING
    return (c.get("observe", 0) > 0 and c["seed"] in H.PROTOCOL_SEEDS and c["task"]["p"] == seed.p
            and c["task"]["op"] == seed.op and m["dim"] == seed.width and m["depth"] == seed.depth
            and c["batch_size"] == seed.batch and math.isclose(c["optim"]["lr"], 1e-3))


def stored_runs(store=None) -> list[dict]:
    """Every protocol run in the results store (``is_protocol_run``)."""
    return [r for r in (store or ResultStore()).records() if is_protocol_run(r)]


def cost(states: dict, records: Sequence[dict]) -> dict:
    """What the protocol's runs cost, from the records (``records_cost`` over ``records``: every
    protocol run in the store, ``is_protocol_run``), as hours of the 2-core machine (two runs at a
    time), the runs per processor (``by_processor``), and the completed searches against a full grid: every cell of each search's final grid
    on every search seed at the last rung's budget."""
    search, full, searches = {}, 0, set()
    for (r, _), st in states.items():
        rows = st["search_rows"]
        for row in rows:
            for rec in row["records"]:
                search[rec["key"]] = rec
        if rows and (r, st["searched_at"]) not in searches:
            searches.add((r, st["searched_at"]))
            full += len({row["cell"] for row in rows}) * len(H.RUNGS[-1].seeds) * H.RUNGS[-1].steps
    c = records_cost(records)
    c["by_processor"] = dict(sorted(Counter(str(r.get("processor")) for r in records).items()))
    s = records_cost(search.values())
    return {**c, "machine_hours_2_cores": round(c["train_seconds"] / 2 / 3600, 2),
            "searches_complete": len(searches), "search_steps": s["steps"], "full_grid_steps": full,
            "search_saving": round(1 - s["steps"] / full, 3) if full else None}
