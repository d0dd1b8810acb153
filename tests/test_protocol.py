"""The protocol's analysis (``lrdlib.analysis.protocol``) on made-up records in a made-up store."""
import math

import pytest

from lrdlib.analysis import protocol as P
from lrdlib.analysis.survival import holm, logrank_p
from lrdlib.runs import halving as H


def fake_record(cfg, stable_at, srank=(100.0, 20.0)):
    """Validation accuracy 0.5, then 1.0 from ``stable_at`` (None: never) to the run's end at
    ``stable_at + 5000`` (the observation window) or the budget; Q/K stable rank ``srank[0]`` before
    the grok and ``srank[1]`` from it on."""
    end = min(cfg.steps, stable_at + 5000) if stable_at is not None else cfg.steps
    steps = list(range(0, end + 1, cfg.eval_every))
    acc = [1.0 if stable_at is not None and s >= stable_at else 0.5 for s in steps]
    sr = [srank[1] if stable_at is not None and s >= stable_at else srank[0] for s in steps]
    targets = ["q", "k"]
    return {"key": cfg.key(), "status": "ok", "config": cfg.to_dict(), "history": {"step": steps, "val_acc": acc},
            "targets": targets, "spectra": {n: {"stable_rank": sr} for n in targets}, "steps_run": end,
            "wall_time_s": end * 0.05, "device": "cpu"}


class FakeCache:
    """A store holding every run, or only those ``have`` accepts; ``time_of(cfg)`` sets the grok."""

    def __init__(self, time_of, have=lambda cfg: True):
        self.time_of, self.have = time_of, have

    def load(self, cfg):
        return fake_record(cfg, self.time_of(cfg)) if self.have(cfg) else None


def lrd_fast(cfg):
    """LRD groks at 500 + 20·seed at its best cell (α 0.01, λₒ 1), tuned L2 at 2,000 + 50·seed at λ 1;
    every other cell later."""
    o = cfg.optim
    if cfg.decay.kind == "lrd_ns":
        off = abs(math.log10(cfg.decay.strength / 0.01)) + abs(math.log10(o.weight_decay))
        return int(500 + 20 * (cfg.seed % 100) + 3000 * off) // 100 * 100
    off = abs(math.log10(o.weight_decay))
    return int(2000 + 50 * (cfg.seed % 100) + 3000 * off) // 100 * 100


def test_decision_follows_the_protocols_rule():
    assert P.decision(0.3, 0.01, 9, 0) == "≥ 3× faster" and P.decision(1 / 3, 0.049, 9, 1) == "≥ 3× faster"
    assert P.decision(0.45, 0.01, 9, 0) == "≥ 2× faster" and P.decision(0.8, 0.01, 9, 0) == "faster"
    assert P.decision(0.2, 0.05, 9, 0) == "not decided" and P.decision(1.5, 0.001, 0, 10) == "slower"
    assert P.decision(math.nan, 0.001, 10, 0) == "not decided"


def test_decision_needs_the_decided_pairs_to_point_the_way_of_the_ratio():
    # a significant sign test whose pairs favour tuned L2 decides nothing for a recipe with a smaller median
    assert P.decision(0.3, 0.001, 0, 10) == "not decided" and P.decision(1.5, 0.001, 10, 0) == "not decided"
    assert P.decision(0.3, 0.001, 5, 5) == "not decided"


def test_a_median_beyond_the_runs_is_read_as_the_bound_the_runs_allow():
    from lrdlib.analysis.survival import ratio_bound
    a = {s: (2300.0, True) for s in range(10)}
    b = {s: (2500.0 + 10 * s, False) for s in range(10)}      # b's median never reached: beyond 2,590
    assert ratio_bound(a, b) == pytest.approx(2300 / 2590)      # not 0: the ratio is only known to be below this
    assert P.decision(ratio_bound(a, b), 0.001, 10, 0) == "faster"
    assert ratio_bound(b, a) == pytest.approx(2590 / 2300)
    assert math.isnan(ratio_bound(b, b)) and ratio_bound(a, a) == 1.0


def test_the_shift_test_asks_whether_each_pair_is_k_times_faster():
    from lrdlib.analysis.survival import shift_sign_test
    a = {s: (1000.0, True) for s in range(10)}
    b = {s: (2500.0, True) for s in range(10)}
    assert shift_sign_test(a, b, 2)["a_first"] == 10 and shift_sign_test(a, b, 3)["b_first"] == 10
    assert shift_sign_test(a, b, 2)["p"] < 0.01 and shift_sign_test(a, b, 3)["p"] < 0.01
    with pytest.raises(ValueError, match="k=0"):
        shift_sign_test(a, b, 0)


def test_hold5k_is_censored_where_a_hold_could_last_have_started():
    from lrdlib.analysis.survival import endpoint_time
    e = {"stable": 7500, "stable_event": False, "hold5k": 2500, "hold5k_event": False, "first": 2500,
         "chapter": None, "last": 7500}
    assert endpoint_time(e, "hold5k") == (2500.0, False) and endpoint_time(e, "stable") == (7500.0, False)
    assert endpoint_time(e, "first") == (2500.0, True) and endpoint_time(e, "chapter") == (7500.0, False)


def test_interim_holm_counts_the_fractions_still_out_as_p_one():
    assert holm([0.01, 0.02], m=4) == pytest.approx([0.04, 0.06])
    assert holm([0.01, 0.02], m=4) == pytest.approx(holm([0.01, 0.02, 1.0, 1.0])[:2])
    with pytest.raises(ValueError, match="m=1"):
        holm([0.01, 0.02], m=1)


def test_logrank_separates_separated_arms_and_not_identical_ones():
    a = {s: (500.0 + s, True) for s in range(10)}
    b = {s: (5000.0 + s, True) for s in range(10)}
    assert logrank_p(a, b) < 1e-3 and logrank_p(a, dict(a)) > 0.9
    assert logrank_p({0: (100.0, False)}, {0: (100.0, False)}) == 1.0


def test_search_evaluation_and_table_from_a_store_without_training():
    cache = FakeCache(lrd_fast)
    states = P.load(cache, recipes=("tuned L2", "LRD"), fracs=(0.5, 0.6))
    assert states[("LRD", 0.5)]["best"] == (0.01, 1.0) and states[("tuned L2", 0.5)]["best"] == (1.0, None)
    assert states[("LRD", 0.6)]["searched_at"] == 0.5 and len(states[("LRD", 0.6)]["records"]) == 5
    assert {r["config"]["seed"] for r in states[("LRD", 0.5)]["records"]} == set(range(1000, 1010))
    t = P.table(states, n_boot=200)
    stable = t[(t.endpoint == "stable") & (t.frac == 0.5)].iloc[0]
    assert stable.a_events == stable.b_events == stable.n == 10 and stable.a_first == 10
    assert stable.p == pytest.approx(2 / 2 ** 10) and stable.p_holm == pytest.approx(8 * stable.p)   # Holm over 8
    assert stable.ratio < 1 / 3 and stable.decision == "≥ 3× faster"
    assert P.decisions(t)["≥ 3× faster"] == [0.5] and P.decisions(P.table({}))["slower"] == []   # empty: no error
    runs = P.per_run(states)
    assert set(runs.srank_at_grok) == {20.0}            # the rank from the grok on, not before it
    by = P.primary_by_fraction(t, P.summary(t, runs))
    assert list(by) == ["0.2", "0.25", "0.3", "0.35", "0.4", "0.5", "0.6", "0.8"]
    assert by["0.5"]["decision"] == by["0.5"]["decision_first"] == "≥ 3× faster" and by["0.5"]["srank_at_grok"] == 20.0
    assert set(by["0.2"].values()) == {None}                       # not complete: every value pending
    assert by["0.5"]["a_kn"] == "10/10" and by["0.5"]["ratio_ci"].startswith(f"{by['0.5']['ratio']:.2g} [")
    es = P.endpoint_summary(runs)
    assert es[es.recipe == "LRD"].iloc[0][["n", "first", "stable", "collapsed", "min_held"]].tolist() == [10, 10, 10, 0, 5000]
    h = t[(t.endpoint == "hold5k") & (t.frac == 0.5)].iloc[0]     # held 5,000 steps from the first grok
    assert es[es.recipe == "LRD"].iloc[0]["hold5k"] == h.a_events == 10 and by["0.5"]["decision_hold5k"] == h.decision
    rk = P.ranking(runs)
    assert rk[rk.frac == 0.5].recipe.tolist() == ["LRD", "tuned L2"]
    sr = P.search_table(states)
    lrd0 = sr[(sr.recipe == "LRD") & (sr.rung == 0)]
    assert len(lrd0) == 9 and lrd0.kept.sum() == 3 and set(sr[sr.rung == 1].seeds) == {2}
    assert sr[(sr.recipe == "LRD") & (sr.rung == 1) & sr.kept][["Q/K knob", "λₒ"]].values.tolist() == [[0.01, 1.0]]
    assert len(sr[sr.recipe == "tuned L2"]) == 5 + 2      # one-knob grid of 5, the best two on rung 1
    c = P.cost(states, [r for st in states.values() for r in st["records"]])
    assert c["searches_complete"] == 2 and 0 < c["search_steps"] < c["full_grid_steps"]


def test_an_incomplete_search_or_evaluation_is_reported_not_trained():
    cache = FakeCache(lrd_fast, have=lambda cfg: cfg.seed != 101)   # rung 1 lacks seed 101
    st = H.protocol_state("LRD", 0.5, cache)
    assert st["best"] is None and st["search_missing"] == 3 and st["records"] is None
    cache = FakeCache(lrd_fast, have=lambda cfg: cfg.seed != 1009)
    st = H.protocol_state("LRD", 0.5, cache)
    assert st["best"] == (0.01, 1.0) and st["eval_missing"] == 1 and st["records"] is None
    assert P.status({("LRD", 0.5): st}).evaluation.tolist() == ["9/10"]
    assert P.status({("SVT", 0.25): st, ("SVT", 0.35): st}).evaluation.tolist() == ["not planned", "9/10"]
    assert P.per_run({("LRD", 0.5): st}).empty and P.ranking(P.per_run({("LRD", 0.5): st})).empty


def test_spec_is_machine_readable_and_keeps_search_and_evaluation_seeds_apart():
    import json
    s = json.loads(json.dumps(P.spec()))
    assert s["search_seeds"] == [100, 101] and s["primary"] == "stable" and set(s["endpoints"]) == set(P.ENDPOINTS)
    assert not set(s["search_seeds"]) & {x for v in s["eval_seeds"].values() for x in v}
    assert len(s["eval_seeds"]["0.35"]) == 10 and len(s["eval_seeds"]["0.2"]) == 5


def test_protocol_figure_draws_a_marker_per_complete_fraction_and_says_when_none_is():
    from lrdlib.analysis import phase_figures as pf
    from lrdlib.analysis.figures import arm_styles
    states = P.load(FakeCache(lrd_fast), recipes=("tuned L2", "LRD"), fracs=(0.5,))
    fig = pf.protocol_figure(P.table(states, n_boot=50), H.FRACTIONS, arm_styles(["LRD"]))
    from matplotlib.collections import PathCollection
    offsets = [c.get_offsets() for c in fig.axes[0].collections if isinstance(c, PathCollection) and len(c.get_offsets())]
    assert sum(len(o) for o in offsets) == 1 and offsets[0][0][0] == H.FRACTIONS.index(0.5)
    assert len(fig.axes) == 3 and [a.get_legend_handles_labels()[1] for a in fig.axes[:2]] == [["LRD"], ["LRD"]]
    assert [a.get_title().split("'")[1] for a in fig.axes] == ["stable", "first", "hold5k"]
    empty = pf.protocol_figure(P.table({}), H.FRACTIONS, {})
    assert "no fraction" in " ".join(t.get_text() for t in empty.axes[0].texts)


def test_protocol_figure_marks_a_median_beyond_the_runs_by_its_bound_not_by_a_zero():
    import pandas as pd
    from matplotlib.collections import PathCollection

    from lrdlib.analysis import phase_figures as pf
    from lrdlib.analysis.figures import arm_styles
    row = {"recipe": "LRD", "frac": 0.35, "endpoint": "hold5k", "ratio": 0.0, "lo": 0.0, "hi": 0.0,
           "ratio_bound": 0.64, "decision": "not decided"}
    fig = pf.protocol_figure(pd.DataFrame([row]), H.FRACTIONS, arm_styles(["LRD"]), endpoints=("hold5k",))
    pts = [c.get_offsets() for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    assert len(pts) == 1 and pts[0][0][1] == pytest.approx(0.64)   # the triangle sits at the bound
    assert not fig.axes[0].texts   # a bound is a reading: no "no ratio" note


def test_a_setting_reads_its_own_runs_only():
    from lrdlib.core.recipes import Setting
    wide = Setting(width=256)
    cache = FakeCache(lrd_fast, have=lambda cfg: cfg.model.dim == 256)
    assert P.load(cache, recipes=("LRD",), fracs=(0.5,), setting=wide)[("LRD", 0.5)]["best"] == (0.01, 1.0)
    assert P.load(cache, recipes=("LRD",), fracs=(0.5,))[("LRD", 0.5)]["best"] is None   # the seed setting has none


def test_sensitivity_s1_reads_the_dropped_weaker_decays_on_the_search_seeds_and_says_if_one_would_win():
    """λ 1 groks at 3,000 and is chosen; λ 0.3 has no grok within any search rung but, run for the
    evaluation's budget, groks at 2,000 and holds: a search without the rung-0 cut would pick it."""
    def time_of(cfg):
        lam = cfg.optim.weight_decay
        if lam == 1.0:
            return 3000
        return 2000 if lam == 0.3 and cfg.steps == H.BUDGET else None
    cache = FakeCache(time_of)
    states = P.load(cache, recipes=["tuned L2"], fracs=[0.35, 0.5])
    assert states[("tuned L2", 0.35)]["best"] == (1.0, None)
    s1 = P.s1_table(states, cache)
    assert len(s1) == 8 and set(s1.seed) == {100, 101} and s1.stored.all()
    at = s1[s1.frac == 0.35].set_index(["qk", "seed"])
    assert at.loc[(0.3, 100), "score"] == 2000 and at.loc[(0.3, 100), "chosen"] == 3000 and at.loc[(0.3, 101), "would_win"]
    assert at.loc[(0.1, 100), "score"] == math.inf and not at.loc[(0.1, 100), "would_win"]
    assert at.loc[(0.3, 100), "hold5k_event"] and not at.loc[(0.1, 101), "stable_event"]
    missing = P.s1_table(states, FakeCache(time_of, have=lambda c: c.steps != H.BUDGET or c.seed >= 1000))
    assert not missing.stored.any() and not missing.would_win.any() and missing.score.isna().all()
    words = P.s1_sentence(s1)
    assert "S1 at 0.35: tuned L2 at λ 0.3, dropped at rung 0, would have won" in words and "λ 0.1: none" in words
    assert "depends on the rung-0 cut" in words and "S1 at 0.5" in words
    assert P.s1_sentence(missing).startswith("S1 at 0.35: 0 of 4 runs stored, no reading yet.")
    unsearched = P.s1_table({}, cache)   # the search it is read against is not in the states
    assert unsearched.chosen.isna().all() and "search it is read against is not complete" in P.s1_sentence(unsearched)


def test_a_protocol_run_is_one_of_the_seed_setting_and_a_hand_run_of_a_secondary_recipe_stays_out_of_the_table():
    from lrdlib.core.recipes import Setting, recipe_config
    cfg = recipe_config("LRD", 0.03, 0.1, train_frac=0.35, seed=1000, steps=20000)
    assert P.is_protocol_run(fake_record(cfg, 2000))
    for s in (Setting(width=64), Setting(lr_scale=3.0), Setting(batch=256), Setting(depth=1), Setting(op="sub")):
        other = recipe_config("LRD", 0.03, 0.1, train_frac=0.35, seed=1000, steps=20000, setting=s)
        assert not P.is_protocol_run(fake_record(other, 2000)), s
    assert not P.is_protocol_run(fake_record(cfg.replace(seed=2000), 2000))
    cache = FakeCache(lrd_fast)
    states = P.load(cache, recipes=["tuned L2", "SVT"], fracs=[0.35, 0.5])   # SVT at 0.5: a run by hand, stored
    assert states[("SVT", 0.5)]["records"] is not None
    t = P.table(states, endpoints_=["stable"], n_boot=50)
    assert set(t.frac) == {0.35} and set(t.recipe) == {"SVT"}


def test_endpoint_contrast_names_a_fraction_where_the_endpoints_decide_differently_either_way():
    import pandas as pd
    rows = [{"recipe": "LRD", "frac": 0.35, "endpoint": "stable", "ratio": 0.29, "decision": "≥ 3× faster"},
            {"recipe": "LRD", "frac": 0.35, "endpoint": "first", "ratio": 0.92, "decision": "not decided"},
            {"recipe": "LRD", "frac": 0.5, "endpoint": "stable", "ratio": 0.87, "decision": "not decided"},
            {"recipe": "LRD", "frac": 0.5, "endpoint": "first", "ratio": 0.5, "decision": "≥ 2× faster"},
            {"recipe": "LRD", "frac": 0.25, "endpoint": "stable", "ratio": 0.8, "decision": "not decided"},
            {"recipe": "LRD", "frac": 0.25, "endpoint": "first", "ratio": 0.9, "decision": "not decided"}]
    ends = pd.DataFrame([{"recipe": "LRD", "frac": 0.35, "n": 10, "hold5k": 9},
                         {"recipe": "tuned L2", "frac": 0.35, "n": 10, "hold5k": 0},
                         {"recipe": "LRD", "frac": 0.5, "n": 10, "hold5k": 0},
                         {"recipe": "tuned L2", "frac": 0.5, "n": 10, "hold5k": 0}])
    words = P.endpoint_contrast(pd.DataFrame(rows), {"endpoints": ends})
    assert len(words) == 2   # 0.25 decides the same (nothing) on both
    assert words[0].startswith("The endpoints part, LRD / tuned L2, at 0.35 (first grok 0.92, not decided; stable grok 0.29, ≥ 3× faster;")
    assert "holding ≥ 0.99 for 5,000 steps: LRD 9 of 10, tuned L2 0 of 10)" in words[0] and "whether the grok lasts" in words[0]
    assert words[1].startswith("The endpoints part, LRD / tuned L2, at 0.5 (first grok 0.50, ≥ 2× faster; stable grok 0.87, not decided;")
    assert "groks first sooner" in words[1] and "neither recipe's grok lasts" in words[1]
    assert P.endpoint_contrast(pd.DataFrame(rows[4:]), {"endpoints": ends}) == []


def test_low_rank_sentence_counts_the_runs_below_half_the_bound_where_the_recipe_wins():
    import pandas as pd
    sr = pd.DataFrame([{"frac": 0.35, "srank_at_grok": 127.8, "srank_min": 127.4, "srank_max": 127.9, "runs": 9,
                        "below_half": 0, "rank_bound": 128.0},
                       {"frac": 0.5, "srank_at_grok": 59.1, "srank_min": 1.0, "srank_max": 117.5, "runs": 7,
                        "below_half": 4, "rank_bound": 128.0}])
    summ = {"stable_rank_at_grok": sr, "decisions": {"stable": {"≥ 3× faster": [0.35], "not decided": [0.5]}}}
    words = P.low_rank_sentence(summ, None)
    assert words.startswith("The LRD that wins is not low-rank (") and "0 of 9" in words and "4 of 7" in words
    summ["decisions"]["stable"] = {"≥ 2× faster": [0.5]}
    assert P.low_rank_verdict(summ).startswith("The LRD that wins is low-rank (")
    summ["decisions"]["stable"] = {"not decided": [0.35, 0.5]}
    assert P.low_rank_sentence(summ, None).startswith("LRD wins at no fraction yet")


def test_shift_verdict_names_the_fold_the_paired_test_supports_beside_the_rules():
    import pandas as pd
    rows = [{"recipe": "LRD", "frac": 0.35, "endpoint": "stable", "decision": "≥ 3× faster", "decision_shift": "≥ 2× faster"},
            {"recipe": "LRD", "frac": 0.5, "endpoint": "stable", "decision": "not decided", "decision_shift": "not decided"}]
    assert P.shift_verdict(pd.DataFrame(rows)) == ("The paired sign test of the fold itself supports at 0.35 ≥ 2× faster "
                                                   "(the rule: ≥ 3× faster).")
    assert P.shift_verdict(pd.DataFrame(rows[1:])).startswith("No fraction")


def test_shift_decision_is_the_largest_fold_its_test_supports_in_the_recipes_favour():
    row = {"p_holm_shift3": 0.5, "a_first_shift3": 5, "b_first_shift3": 2, "p_holm_shift2": 0.03, "a_first_shift2": 9,
           "b_first_shift2": 0, "p_holm": 0.03, "a_first": 9, "b_first": 0}
    assert P.shift_decision(row) == "≥ 2× faster"
    assert P.shift_decision(row | {"p_holm_shift3": 0.01}) == "≥ 3× faster"
    assert P.shift_decision(row | {"a_first_shift2": 0, "b_first_shift2": 9}) == "faster"
    assert P.shift_decision(row | {"p_holm_shift2": 0.5, "p_holm": 0.5}) == "not decided"


def test_lasting_by_other_decay_sets_the_holds_beside_the_decay_each_search_chose():
    import pandas as pd
    states = {("LRD", 0.35): {"best": (0.03, 0.1)}, ("LRD", 0.5): {"best": (0.01, 1.0)},
              ("tuned L2", 0.35): {"best": (1.0, None)}}
    ends = pd.DataFrame([{"recipe": "LRD", "frac": 0.35, "n": 10, "hold5k": 9},
                         {"recipe": "LRD", "frac": 0.5, "n": 10, "hold5k": 0},
                         {"recipe": "tuned L2", "frac": 0.35, "n": 10, "hold5k": 0}])
    t = P.lasting_by_other_decay(states, {"endpoints": ends})
    assert t.other_decay.tolist() == [0.1, 1.0, 1.0]
    words = P.lasting_sentence(t)
    assert "LRD with λₒ 0.1 on the other parameters holds ≥ 0.99 for 5,000 steps in 9 of 10 runs (at 0.35)" in words
    assert "tuned L2 with λ 1 on the other parameters holds ≥ 0.99 for 5,000 steps in 0 of 10 runs" in words


def test_no_lasting_grok_names_each_fraction_once_and_skips_a_fraction_with_a_hold():
    import pandas as pd
    rows = [("LRD", 0.2, 5, 0, 100, 500), ("tuned L2", 0.2, 5, 0, 200, 400),
            ("LRD", 0.35, 10, 9, 0, 5000), ("tuned L2", 0.35, 10, 0, 100, 900),
            ("LRD", 0.5, 10, 0, 300, 1100), ("tuned L2", 0.5, 10, 0, 100, 700)]
    ends = pd.DataFrame(rows, columns=["recipe", "frac", "n", "hold5k", "min_held", "max_held"])
    out = P.no_lasting_grok({"endpoints": ends})
    assert len(out) == 1
    assert out[0].startswith("At 0.2 and 0.5 no run of LRD or tuned L2 holds ≥ 0.99 for 5,000 steps (hold5k: 0 of 10, 0 of 20)")
    assert "held 100-1,100 steps" in out[0] and "0.35" not in out[0]
    assert P.no_lasting_grok({"endpoints": ends[ends.frac == 0.35]}) == []


def _rec(recipe, qk, other, frac, seed, accs, steps=10000):
    from lrdlib.core.recipes import recipe_config
    cfg = recipe_config(recipe, qk, other, train_frac=frac, seed=seed, steps=steps).to_dict()
    return {"config": cfg, "status": "ok",
            "history": {"step": [100 * (i + 1) for i in range(len(accs))], "val_acc": accs}}


def test_recipe_of_inverts_recipe_config_for_every_recipe():
    from lrdlib.core.recipes import RECIPES, recipe_config
    for r, (centre, _) in RECIPES.items():
        qk, other = (1.0, None) if r == "tuned L2" else (centre, 0.3)
        cfg = recipe_config(r, qk, other, train_frac=0.35, seed=100, steps=4000).to_dict()
        assert P.recipe_of(cfg) == (r, qk, other)


def test_lasting_by_cell_counts_holds_per_setting_of_both_knobs_and_skips_short_runs():
    held = [0.5] * 10 + [1.0] * 60             # ≥ 0.99 from step 1,100 to 7,000: 5,900 steps
    brief = [0.5] * 10 + [1.0] * 20 + [0.5] * 30
    never = [0.5] * 70
    recs = [_rec("LRD", 0.03, 0.1, 0.35, 100, held), _rec("LRD", 0.03, 0.1, 0.35, 1000, brief),
            _rec("LRD", 0.03, 1.0, 0.35, 100, brief), _rec("tuned L2", 0.1, None, 0.35, 100, never),
            _rec("LRD", 0.03, 0.1, 0.35, 101, held, steps=4000)]
    t = P.lasting_by_cell(recs)
    assert len(t) == 3 and t.n.sum() == 4
    row = t[(t.recipe == "LRD") & (t.other_decay == 0.1)].iloc[0]
    assert (row.n, row["first"], row.hold5k, row.search, row["eval"]) == (2, 2, 1, 1, 1)
    words = P.lasting_cells_sentence(t)
    assert "LRD α 0.03 at 0.35: λₒ 0.1 1 of 2, λₒ 1 0 of 1" in words
    assert "tuned L2 λ 0.1 0 of 1 (none reaches 0.99)" in words
    assert "no run holds" in P.lasting_cells_sentence(t.assign(hold5k=0))


def test_sensitivity_s3_reads_its_runs_beside_the_chosen_setting_on_the_same_seeds():
    from lrdlib.core.recipes import recipe_config

    class Cache(dict):
        def load(self, cfg):
            return self.get(cfg.key())

    def put(cache, qk, other, seed, accs):
        cfg = recipe_config("LRD", qk, other, train_frac=0.35, seed=seed, steps=H.BUDGET)
        cache[cfg.key()] = {"config": cfg.to_dict(), "status": "ok",
                            "history": {"step": [100 * (i + 1) for i in range(len(accs))], "val_acc": accs}}

    cache, states = Cache(), {("LRD", 0.35): {"best": (0.03, 0.1)}}
    for s in H.FIVE_SEEDS:
        put(cache, 0.03, 0.1, s, [0.5] * 10 + [1.0] * 60)            # stable at 1,100, holds 5,900 steps
    assert "0 of 5 runs stored, no reading yet" in P.s3_sentence(P.s3_table(states, cache))
    for s in H.FIVE_SEEDS:
        put(cache, 0.03, 1.0, s, [0.5] * 30 + [1.0] * 20 + [0.5] * 10 + [1.0] * 20)   # stable at 6,100
    t = P.s3_table(states, cache)
    assert len(t) == 10 and t.stored.all() and set(t.arm) == {"S3", "chosen"}
    words = P.s3_sentence(t)
    assert "λₒ 1: stable grok on 5 of 5 (median 6,100), 0 of 5 holding" in words
    assert "λₒ 0.1: stable grok on 5 of 5 (median 1,100), 5 of 5 holding" in words
    assert "the stable grok comes first with λₒ 1 on 0 seeds and with λₒ 0.1 on 5" in words


def test_primary_sentence_names_each_outcome_where_it_occurs_and_the_others_once():
    d = {"≥ 3× faster": [0.35], "≥ 2× faster": [], "faster": [], "slower": [], "not decided": [0.2, 0.25, 0.5]}
    words = P.primary_sentence({"fractions_in": 4, "decisions": {"stable": d}})
    assert words.startswith("4 of 8 fractions have every evaluation run of LRD and tuned L2.")
    assert ("LRD is ≥ 3× faster at 0.35 and not decided at 0.2, 0.25 and 0.5; it is ≥ 2× (under 3×) faster, "
            "faster by under 2× or slower at none (") in words
    d = {"≥ 3× faster": [0.35], "≥ 2× faster": [0.5], "faster": [0.25], "slower": [0.8], "not decided": []}
    words = P.primary_sentence({"fractions_in": 4, "decisions": {"stable": d}})
    assert "at none" not in words and "slower at 0.8 (" in words
    assert "states no decision" in P.primary_sentence({"fractions_in": 0, "decisions": {}})


def test_protocol_figure_crosses_a_fraction_with_no_ratio_and_notes_it_once():
    import pandas as pd
    from matplotlib.collections import PathCollection

    from lrdlib.analysis import phase_figures as pf
    from lrdlib.analysis.figures import arm_styles
    rows = [{"recipe": "LRD", "frac": f, "endpoint": "hold5k", "ratio": math.nan, "lo": math.nan, "hi": math.nan,
             "ratio_bound": math.nan, "decision": "not decided"} for f in (0.2, 0.25)]
    fig = pf.protocol_figure(pd.DataFrame(rows), H.FRACTIONS, arm_styles(["LRD"]), endpoints=("hold5k",))
    pts = [c.get_offsets() for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    assert len(pts) == 1 and [tuple(p) for p in pts[0]] == [(0.0, 1.0), (1.0, 1.0)]
    assert [t.get_text() for t in fig.axes[0].texts] == ["×: no ratio (both medians beyond the runs)"]


def test_endpoint_contrast_names_fractions_with_the_same_disagreement_in_one_sentence():
    import pandas as pd
    rows = [{"recipe": "LRD", "frac": f, "endpoint": e, "ratio": r, "decision": d}
            for f in (0.25, 0.5) for e, r, d in (("stable", 0.8, "not decided"), ("first", 0.3, "≥ 3× faster"))]
    ends = pd.DataFrame([{"recipe": r, "frac": f, "n": 10, "hold5k": 0} for r in ("LRD", "tuned L2") for f in (0.25, 0.5)])
    words = P.endpoint_contrast(pd.DataFrame(rows), {"endpoints": ends})
    assert len(words) == 1 and words[0].startswith("The endpoints part, LRD / tuned L2, at 0.25 (") and ") and 0.5 (" in words[0]
