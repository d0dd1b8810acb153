"""Verdict functions on small hand-made tables: every branch (holds / does not hold / cannot tell)."""
import numpy as np
import pandas as pd
import pytest

from lrdlib.analysis.verdicts import (
    CANNOT_TELL,
    DOES_NOT_HOLD,
    HOLDS,
    arm_outcome,
    best_strength_at_edge,
    displacement_ratio,
    late_rise,
    matched_drift,
    rank_collapse_precondition,
    tangential_mechanism,
)


def cell(method, strength, frac, seeds, grokked, steps=np.nan, acc=None):
    return {"method": method, "strength": strength, "train_frac": frac, "seeds": seeds, "grokked": grokked,
            "grok_frac": grokked / seeds, "steps_to_grok": steps,
            "final_val_acc": acc if acc is not None else (1.0 if grokked else 0.5)}


def cells_frame(best_strength, strengths=(0.1, 0.5, 1.0), seeds=3, method="L2"):
    rows = []
    for f in (0.3, 0.5):
        for s in strengths:
            rows.append(cell(method, s, f, seeds, seeds, 1000 if s == best_strength else 2000))
    return pd.DataFrame(rows)


def test_best_strength_inside_holds_with_three_seeds():
    v = best_strength_at_edge(cells_frame(0.5), "L2")
    assert v.verdict == HOLDS and v.numbers["edge_fractions"] == []


def test_best_strength_at_edge_does_not_hold_and_says_so():
    v = best_strength_at_edge(cells_frame(1.0), "L2")
    assert v.verdict == DOES_NOT_HOLD and v.numbers["edge_fractions"] == [0.3, 0.5]
    assert [f["side"] for f in v.numbers["per_fraction"]] == ["high", "high"] and v.numbers["edge_fractions_text"] == "0.3, 0.5"


def test_best_strength_two_strengths_is_always_an_edge():
    v = best_strength_at_edge(cells_frame(0.1, strengths=(0.1, 1.0), seeds=1), "L2")
    assert v.verdict == DOES_NOT_HOLD and all(f["at_edge"] for f in v.numbers["per_fraction"])


def test_best_strength_inside_one_seed_cannot_tell():
    v = best_strength_at_edge(cells_frame(0.5, seeds=1), "L2")
    assert v.verdict == CANNOT_TELL and v.numbers["seeds"] == 1 and v.numbers["edge_fractions"] == []


def test_best_strength_none_groks_uses_accuracy():
    c = pd.DataFrame([cell("L2", s, 0.3, 3, 0, acc=a) for s, a in ((0.1, 0.3), (0.5, 0.6), (1.0, 0.4))])
    v = best_strength_at_edge(c, "L2")
    assert v.verdict == HOLDS and v.numbers["per_fraction"][0]["best"] == [0.5]
    assert v.numbers["per_fraction"][0]["groks"] is False


def test_late_rise():
    assert abs(late_rise([0.5] * 8 + [0.6, 0.9]) - 0.3) < 1e-9  # 10 evaluations, n = 2: v[-1] - v[-2]
    assert np.isnan(late_rise([0.5]))


def gt_frame(rows):
    return pd.DataFrame([{"arm": a, "seeds": n, "grokked": k, "median": m, "final_val_acc": acc}
                         for a, n, k, m, acc in rows]).set_index("arm")


def test_arm_outcome_reports_censored():
    gt = gt_frame([("x", 3, 2, 1200.0, 0.99), ("y", 3, 0, np.nan, 0.5)])
    x = arm_outcome(gt, "x", 2500)
    assert (x["grokked"], x["seeds"], x["censored"], x["median_text"]) == (2, 3, 1, "1200")
    y = arm_outcome(gt, "y", 2500)
    assert (y["grokked"], y["censored"], y["median_text"], y["budget"]) == (0, 3, "n/a", 2500)
    assert arm_outcome(gt, "z", 2500) == {"arm": "z", "run": False}


def test_tangential_mechanism_branches():
    def v(kr, kt, n=3):
        gt = gt_frame([("rad", n, kr, 1000.0 if kr else np.nan, 0.99 if kr else 0.5),
                       ("tan", n, kt, 1000.0 if kt else np.nan, 0.99 if kt else 0.5)])
        return tangential_mechanism(gt, "rad", "tan", 2500)
    r = v(3, 0)
    assert r.verdict == DOES_NOT_HOLD and r.numbers["radial_groks"] and r.numbers["tangential_text"] == "0/3"
    assert v(3, 3).verdict == DOES_NOT_HOLD
    assert v(0, 3).verdict == HOLDS
    assert v(0, 0).verdict == CANNOT_TELL
    one = v(1, 0, n=1)
    assert one.verdict == CANNOT_TELL and one.numbers["seeds"] == 1 and one.numbers["radial_groks"]


def test_displacement_ratio_and_drift():
    rows = []
    for arm, scale in (("ref", 1.0), ("exact", 1.0), ("far", 1.0)):
        for step, grow in ((0, 1.0), (500, 1.2), (1000, 3.0)):
            s = scale * (grow if arm == "far" else 1.0)
            rows.append({"arm": arm, "seed": 0, "step": step, "matrix": "q", "decay_rad": 0.6 * s, "decay_tan": 0.8 * s})
    r = displacement_ratio(pd.DataFrame(rows), "ref")
    assert np.allclose(r[r.arm == "ref"].ratio, 1.0) and np.isclose(r[(r.arm == "far") & (r.step == 1000)].ratio.iloc[0], 3.0)
    assert matched_drift(r, "exact").verdict == HOLDS
    d = matched_drift(r, "far")
    assert d.verdict == DOES_NOT_HOLD and d.numbers["first_off_step"] == 1000 and d.numbers["ratio_range"][1] == pytest.approx(3.0)
    assert matched_drift(r, "missing").verdict == CANNOT_TELL


def test_rank_collapse_precondition_branches():
    assert rank_collapse_precondition([]).verdict == CANNOT_TELL
    assert rank_collapse_precondition([("a", 0, 1.2), ("b", 0, 8.0)]).verdict == DOES_NOT_HOLD
    assert rank_collapse_precondition([("a", 0, 1.2)]).verdict == CANNOT_TELL
    assert rank_collapse_precondition([("a", s, 1.2) for s in range(3)]).verdict == HOLDS


def test_outcomes_say_whether_censored_runs_were_still_rising():
    gt = gt_frame([("rad", 1, 1, 900.0, 0.99), ("tan", 1, 0, np.nan, 0.6)])
    assert arm_outcome(gt, "tan", 2500, 0)["still_rising_text"] == "0/1"
    v = tangential_mechanism(gt, "rad", "tan", 2500, still_rising={"tan": 1})
    assert v.numbers["tangential_still_rising_text"] == "1/1" and v.verdict == CANNOT_TELL


# ---------------------------------------------------------------- seed setting (03, 06)
from lrdlib.analysis.verdicts import (  # noqa: E402
    censored_median,
    earlier_share,
    faster_to_grok,
    grok_counts,
    groks_where_other_does_not,
    luon_vs_lrd,
    rank_collapse_within,
    seed_l2_undertuned,
)


def test_censored_runs_are_counted_not_dropped():
    assert grok_counts([1200, None], 2500) == {"grokked": 1, "n": 2, "at": [1200.0], "median": None,
                                               "at_text": "1200", "median_text": "> 2500"}
    assert censored_median([100, 200, None], 500) == 200 and censored_median([100, None], 500) == np.inf
    assert earlier_share([100], [200, None]) == 1.0 and earlier_share([None], [None]) == 0.5


def test_luon_vs_lrd_one_seed_is_no_conclusion():
    v = luon_vs_lrd([1200], [1500], 2500)
    assert v.verdict == CANNOT_TELL and v.numbers["earlier_share"] == 1.0 and v.numbers["pairs"] == 1


def test_luon_vs_lrd_keeps_the_seed_that_did_not_grok():
    """The referee's point: Luon's range of one grokked seed must not 'not overlap' LRD's."""
    v = luon_vs_lrd([1000, None, None], [1500, 1600, 1700], 2500)
    assert v.numbers["a_grokked"] == 1 and v.numbers["a_n"] == 3 and v.numbers["a_steps"][1:] == [None, None]
    assert v.verdict == DOES_NOT_HOLD and v.numbers["earlier_share"] == pytest.approx(1 / 3)


def test_luon_vs_lrd_separated_overlapping_and_none():
    assert luon_vs_lrd([100, 200, 300], [400, 500, None], 600).verdict == HOLDS
    assert luon_vs_lrd([100, 450, 300], [400, 500, 200], 600).verdict == CANNOT_TELL
    assert luon_vs_lrd([None] * 3, [None] * 3, 600).verdict == CANNOT_TELL
    v = faster_to_grok([100] * 3, [200] * 3, 300, "A", "B")
    assert v.verdict == HOLDS and (v.numbers["a_name"], v.numbers["b_name"], v.numbers["pairs"]) == ("A", "B", 9)
    assert v.say("{a_name} groks faster than {b_name}: {verdict}") == "A groks faster than B: holds"


def test_groks_where_other_does_not():
    assert groks_where_other_does_not([1, 2, 3], [None] * 3, 10, "LRD", "L2").verdict == HOLDS
    assert groks_where_other_does_not([1, 2, 3], [1, 2, None], 10, "LRD", "L2").verdict == DOES_NOT_HOLD
    v = groks_where_other_does_not([None], [None], 10, "LRD", "L2", unconfirmed={"LRD": 1})
    assert v.verdict == CANNOT_TELL and v.numbers["holds_with_unconfirmed"] and not v.numbers["holds_at_face_value"]


def test_seed_l2_is_under_tuned_not_slow():
    v = seed_l2_undertuned([None] * 3, [1600, 1700, None], 2500, "L2 (wd 0.1)", "L2 (wd 1.0)", [0.5, 0.5, 0.51], 0.5)
    assert v.verdict == DOES_NOT_HOLD and v.numbers["seed"] == [0, 3] and v.numbers["own"] == [2, 3]
    assert v.numbers["acc_range_text"] == "0.50-0.51" and v.numbers["ceiling_text"] == "0.50"
    assert seed_l2_undertuned([None], [1600], 2500, "a", "b").verdict == CANNOT_TELL
    assert seed_l2_undertuned([None] * 3, [None] * 3, 2500, "a", "b").verdict == CANNOT_TELL
    assert seed_l2_undertuned([1, 2, 3], [None] * 3, 2500, "a", "b").verdict == DOES_NOT_HOLD


def test_rank_collapse_within():
    assert rank_collapse_within([3.0], 500, 150).verdict == CANNOT_TELL
    assert rank_collapse_within([1.2, 4.0, 1.1], 500, 2500).verdict == DOES_NOT_HOLD
    assert rank_collapse_within([1.2, 1.3, 1.1], 500, 2500).verdict == HOLDS
    assert rank_collapse_within([1.2], 500, 2500).verdict == CANNOT_TELL


def test_paired_by_seed_branches():
    from lrdlib.analysis.verdicts import paired_by_seed
    two = paired_by_seed({0: 1300, 1: 1100}, {0: 1700, 1: 1500}, 2500, "Luon", "LRD")
    assert two.verdict == CANNOT_TELL and (two.numbers["a_earlier"], two.numbers["pairs"]) == (2, 2)
    assert two.numbers["pairs_text"] == "seed 0: 1300 vs 1700; seed 1: 1100 vs 1500"
    assert paired_by_seed({0: 1, 1: 2, 2: 3}, {0: 5, 1: 5, 2: None}, 2500, "a", "b").verdict == HOLDS
    v = paired_by_seed({0: None, 1: 900, 2: 900}, {0: 700, 1: 800, 2: 900}, 2500, "a", "b")
    assert v.verdict == DOES_NOT_HOLD and v.numbers["ties"] == 1 and v.numbers["pairs_text"].startswith("seed 0: > 2500")
    assert paired_by_seed({0: 1, 1: 1, 2: 9}, {0: 2, 1: 2, 2: 3}, 2500, "a", "b").verdict == CANNOT_TELL
    assert paired_by_seed({0: 1}, {1: 2}, 2500, "a", "b").verdict == CANNOT_TELL


def test_tangential_mechanism_arm_not_run():
    gt = gt_frame([("tan", 1, 0, np.nan, 0.5)])
    v = tangential_mechanism(gt, "rad", "tan", 150)
    assert v.verdict == CANNOT_TELL and v.numbers["radial"] is None and v.numbers["seeds"] == 0


def test_as_fast_as_branches():
    from lrdlib.analysis.verdicts import as_fast_as
    assert as_fast_as([1000, 1100, 1200], [900, 1000, 1100], 2500, "fixed norm", "LRD").verdict == HOLDS
    v = as_fast_as([2000, None, None], [900, 1000, 1100], 2500, "fixed norm", "LRD")
    assert v.verdict == DOES_NOT_HOLD and (v.numbers["a_grokked"], v.numbers["a_n"]) == (1, 3) and v.numbers["a_median"] is None
    assert as_fast_as([900] * 3, [None] * 3, 2500, "a", "b").verdict == HOLDS          # faster where b never groks
    assert as_fast_as([None] * 3, [None] * 3, 2500, "a", "b").verdict == CANNOT_TELL
    one = as_fast_as([3000], [1000], 5000, "a", "b")
    assert one.verdict == CANNOT_TELL and one.numbers["ratio"] == 3.0 and one.numbers["a_n"] == 1


def corr_frame(rho_ref, rho_geo, gap):
    return pd.DataFrame([{"candidate": "srank", "label": "Q/K stable rank", "rho": rho_ref, "p": 0.5, "n": 20,
                          "gap_lo": 0.0, "gap_hi": 0.0},
                         {"candidate": "norm", "label": "‖W_QK‖_F", "rho": rho_geo, "p": 0.01, "n": 20,
                          "gap_lo": gap[0], "gap_hi": gap[1]}]).set_index("candidate")


def test_explains_better_branches():
    from lrdlib.analysis.verdicts import explains_better
    v = explains_better(corr_frame(0.1, 0.8, (0.3, 0.9)), seeds=3)
    assert v.verdict == HOLDS and v.numbers["best"] == "norm" and v.numbers["n_runs"] == 20
    assert explains_better(corr_frame(-0.8, 0.5, (-0.6, 0.1)), seeds=3).verdict == DOES_NOT_HOLD
    assert explains_better(corr_frame(0.4, -0.6, (-0.1, 0.5)), seeds=5).verdict == CANNOT_TELL
    one = explains_better(corr_frame(0.1, 0.8, (0.3, 0.9)), seeds=1)
    assert one.verdict == CANNOT_TELL and one.numbers["seeds_per_arm"] == 1 and one.numbers["best"] == "norm"
    assert explains_better(corr_frame(np.nan, np.nan, (np.nan, np.nan)), seeds=3).verdict == CANNOT_TELL
