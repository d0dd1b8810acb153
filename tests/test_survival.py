"""lrdlib.survival: censored steps-to-grok, the rows of notebook 04's verdict table and the
sentences built from them (planted cases a wrong implementation would fail)."""
import math

import pytest

from lrdlib.survival import (
    arm_summary,
    censored_at_budget,
    compare_class,
    expands_region,
    faster_than_tuned,
    headline,
    km_median,
    paired_comparison,
    smallest_grokking_fraction,
)
from lrdlib.verdicts import CANNOT_TELL, DOES_NOT_HOLD, HOLDS

INF = math.inf


def test_censored_at_budget():
    assert censored_at_budget({"time": 700, "event": True, "budget": 2000}) == (700.0, True)
    # a run that stopped early (diverged at 300) without a grok is censored at its budget, not at 300
    assert censored_at_budget({"time": 300, "event": False, "budget": 2000}) == (2000.0, False)


def test_arm_summary_counts_medians_and_collapses():
    r = arm_summary([100, 200, 300, 400, 500], [True] * 5, n_boot=200)
    assert (r["n"], r["grokked"], r["share"], r["km_median"]) == (5, 5, 1.0, 300.0)
    assert r["median_lo"] <= 300 <= r["median_hi"] and r["collapses"] == 0
    assert r["wilson_lo"] == pytest.approx(0.566, abs=1e-3) and r["wilson_hi"] == 1.0
    # 3 of 5 censored at the budget: the median is beyond the budget, not the median of the 2 groks
    r = arm_summary([100, 200, 1000, 1000, 1000], [True, True, False, False, False], [False, False, True, False, True],
                    n_boot=200)
    assert r["grokked"] == 2 and math.isinf(r["km_median"]) and r["collapses"] == 2
    assert math.isinf(r["median_hi"])
    # 3 of 5 grokked: the KM median is the 3rd grok (400), not the median of the groks (300)
    assert km_median([100, 1000, 1000, 300, 400], [True, False, False, True, True]) == 400
    with pytest.raises(ValueError):
        arm_summary([1, 2], [True])


def test_paired_comparison_ratio_and_sign_test():
    a = {s: (100.0 * (s + 1), True) for s in range(5)}
    b = {s: (200.0 * (s + 1), True) for s in range(5)}
    r = paired_comparison(a, b, n_boot=500)
    assert r["ratio"] == pytest.approx(0.5) and r["lo"] == pytest.approx(0.5) and r["hi"] == pytest.approx(0.5)
    assert (r["a_first"], r["b_first"], r["undecided"], r["seeds"]) == (5, 0, 0, 5)
    assert r["p"] == pytest.approx(0.0625)          # the smallest two-sided p with 5 seeds
    # b censored at the budget in every seed: a's median finite, b's beyond it -> ratio 0, a first everywhere
    c = {s: (2000.0, False) for s in range(5)}
    r = paired_comparison(a, c, n_boot=200)
    assert r["ratio"] == 0 and r["hi"] == 0 and r["a_first"] == 5
    # seeds only in one arm are not paired
    assert paired_comparison(a, {0: (50.0, True), 9: (1.0, True)}, n_boot=50)["seeds"] == 1


def test_smallest_grokking_fraction():
    assert smallest_grokking_fraction({0.2: (2, 5), 0.3: (3, 5), 0.5: (5, 5)}) == 0.3
    assert smallest_grokking_fraction({0.2: (0, 5), 0.3: (2, 5)}) is None
    assert smallest_grokking_fraction({0.4: (1, 2)}) == 0.4      # exactly a half counts
    assert smallest_grokking_fraction({0.4: (0, 0)}) is None


def row(frac, ratio, lo, hi, a_med=500.0, b_med=1000.0, seeds=5, af=4, bf=1, p=0.375):
    return {"frac": frac, "ratio": ratio, "lo": lo, "hi": hi, "a_median": a_med, "b_median": b_med, "seeds": seeds,
            "a_first": af, "b_first": bf, "undecided": seeds - af - bf, "p": p}


def test_compare_class():
    assert compare_class(row(0.3, 0.5, 0.3, 0.8)) == "faster"
    assert compare_class(row(0.3, 0.5, 0.3, 1.2)) == "unresolved"      # the interval includes 1
    assert compare_class(row(0.3, 1.6, 1.2, 2.0)) == "slower"
    assert compare_class(row(0.3, math.nan, math.nan, math.nan, INF, INF)) == "neither"
    assert compare_class(row(0.3, 0.0, 0.0, 0.0, 500, INF)) == "faster"   # b beyond the budget
    # one or two paired seeds: a bootstrap interval of no width decides nothing
    assert compare_class({**row(0.3, 0.5, 0.5, 0.5), "seeds": 2}) == "unresolved"
    assert compare_class({**row(0.3, 0.5, 0.5, 0.5), "seeds": 3}) == "faster"
    assert compare_class({**row(0.3, math.nan, math.nan, math.nan, INF, INF), "seeds": 1}) == "neither"


def test_faster_than_tuned_sentence_and_verdict():
    rows = [row(0.2, 0.0, 0.0, 0.0, 400.0, INF, af=5, bf=0, p=0.0625), row(0.3, 0.5, 0.4, 0.8), row(0.5, 0.9, 0.6, 1.3),
            row(0.8, 1.5, 1.2, 2.0, af=0, bf=5, p=0.0625)]
    v = faster_than_tuned(rows, "LRD", "L2", budget=20000)
    assert v.verdict == HOLDS
    assert v.numbers["faster"] == [0.2, 0.3] and v.numbers["slower"] == [0.8] and v.numbers["not_resolved"] == [0.5]
    assert "LRD beats tuned L2 at fractions 0.2, 0.3" in v.sentence
    assert "not at 0.5" in v.sentence and "L2 is faster at 0.8" in v.sentence
    assert "0.3 by a factor 2 [1.2, 2.5]" in v.sentence                # 1/0.5, [1/0.8, 1/0.4]
    assert "0.2 by a factor > 50 (L2's median beyond the budget)" in v.sentence
    assert "> 20000" in v.sentence                                       # b's median at 0.2 printed as beyond the budget
    # no fraction with an interval below 1: does not hold
    v = faster_than_tuned([row(0.3, 0.8, 0.5, 1.1), row(0.5, 1.0, 0.8, 1.3)], "LRD", "L2", 20000)
    assert v.verdict == DOES_NOT_HOLD and "at fractions none" in v.sentence
    # fewer than 3 seeds: cannot tell, whatever the intervals
    v = faster_than_tuned([row(0.3, 0.5, 0.4, 0.8, seeds=2, af=2, bf=0)], "LRD", "L2", 2500)
    assert v.verdict == CANNOT_TELL and "in 2 runs" in v.sentence
    assert faster_than_tuned([], "LRD", "L2", 2500).verdict == CANNOT_TELL


def test_headline():
    shares = {"L2": {0.2: (0, 5), 0.3: (3, 5), 0.4: (2, 5), 0.5: (5, 5)},
              "LRD": {0.2: (4, 5), 0.3: (5, 5), 0.4: (5, 5), 0.5: (5, 5)},
              "Luon": {0.2: (0, 5), 0.3: (1, 5), 0.4: (2, 5), 0.5: (2, 5)}}
    out, s = headline(shares, budget=20000)
    assert out["L2"]["fraction"] == 0.3 and out["L2"]["larger_fractions_below_level"] == [0.4]
    assert out["LRD"]["fraction"] == 0.2 and out["LRD"]["at_lowest_tried"]
    assert out["Luon"]["fraction"] is None
    assert "L2 0.3 (3/5) (but not at the larger fraction(s) 0.4)" in s
    assert "LRD 0.2 (4/5) (the smallest fraction tried: it may grok lower)" in s
    assert "Luon at none of 0.2, 0.3, 0.4, 0.5" in s and "within 20000 steps" in s


def test_expands_region():
    shares = {"L2": {0.2: (1, 5), 0.3: (4, 5), 0.5: (5, 5)}, "LRD": {0.2: (3, 5), 0.3: (5, 5), 0.5: (5, 5)}}
    v = expands_region(shares, "LRD", "L2", 20000)
    assert v.verdict == HOLDS and v.numbers["a_only"] == [0.2] and v.numbers["both"] == [0.3, 0.5]
    assert "0.2: 3/5 vs 1/5" in v.sentence
    shares["LRD"][0.2] = (2, 5)
    assert expands_region(shares, "LRD", "L2", 20000).verdict == DOES_NOT_HOLD
    few = {"L2": {0.5: (0, 2)}, "LRD": {0.5: (2, 2)}}
    assert expands_region(few, "LRD", "L2", 2500).verdict == CANNOT_TELL


def _rec(acc, every=100, status="ok", hold=0, steps=None):
    return {"status": status, "config": {"grok_threshold": 0.99, "grok_hold": hold, "steps": steps or every * (len(acc) - 1)},
            "history": {"step": [every * i for i in range(len(acc))], "val_acc": acc}}


def test_outcome_floor_dip_is_not_a_collapse():
    from lrdlib.survival import outcome
    # reaches 0.99 at 200, dips to 0.98 once (above the 0.9 floor): a lasting grok at 200, no collapse
    o = outcome(_rec([0.1, 0.5, 1.0, 1.0, 0.98, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), hold=1000)
    assert o["event"] and o["time"] == 200 and not o["collapsed"] and o["first_grok"] == 200
    # the strict floor (= threshold) restarts the window after the dip: grok at 500
    assert outcome(_rec([0.1, 0.5, 1.0, 1.0, 0.98] + [1.0] * 11), hold=1000, floor=0.99)["time"] == 500


def test_outcome_collapse_then_recovery():
    from lrdlib.survival import outcome
    # 0.99 at 100-200, falls to 0.3 at 300, back at 400 for good: collapsed, lasting grok at 400
    o = outcome(_rec([0.1, 1.0, 1.0, 0.3] + [1.0] * 12), hold=1000)
    assert o["collapsed"] and o["event"] and o["time"] == 400 and o["first_grok"] == 100
    # falls and never returns: censored at its last step, collapsed
    o = outcome(_rec([0.1, 1.0, 1.0, 0.3, 0.2, 0.2]), hold=1000)
    assert o["collapsed"] and not o["event"] and o["time"] == 500
    # a diverged run that had grokked is censored and counted as a collapse
    o = outcome(_rec([0.1, 1.0, 1.0, 1.0], status="diverged"), hold=1000)
    assert not o["event"] and o["collapsed"]


def test_steps_to_grok_floor():
    from lrdlib.training import steps_to_grok
    steps = [0, 100, 200, 300, 400]
    assert steps_to_grok(steps, [0, 1, 0.95, 1, 1], hold=300) == 300
    assert steps_to_grok(steps, [0, 1, 0.95, 1, 1], hold=300, floor=0.9) == 100
    assert steps_to_grok(steps, [0, 1, 0.85, 1, 1], hold=300, floor=0.9) == 300
    with pytest.raises(ValueError, match="floor=0.995"):
        steps_to_grok(steps, [0, 1, 1, 1, 1], floor=0.995)
