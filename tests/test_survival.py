"""lrdlib.survival: censored steps-to-grok, the rows of notebook 04's verdict table and the
sentences built from them (planted cases a wrong implementation would fail)."""
import math

import numpy as np
import pytest

from lrdlib.analysis.survival import (
    arm_summary,
    censored_at_budget,
    km_median,
    paired_comparison,
)
from lrdlib.analysis.verdicts import (
    CANNOT_TELL,
    DOES_NOT_HOLD,
    HOLDS,
    compare_class,
    expands_region,
    faster_than_tuned,
    headline,
    smallest_grokking_fraction,
)

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
    assert v.numbers["factors_text"] == "0.2: > 50; 0.3: 2 [1.2, 2.5]"   # 1/0.5, [1/0.8, 1/0.4]; L2 beyond the budget at 0.2
    assert v.numbers["classes"] == {"0.2": "faster", "0.3": "faster", "0.5": "unresolved", "0.8": "slower"}
    # no fraction with an interval below 1: does not hold
    v = faster_than_tuned([row(0.3, 0.8, 0.5, 1.1), row(0.5, 1.0, 0.8, 1.3)], "LRD", "L2", 20000)
    assert v.verdict == DOES_NOT_HOLD and v.numbers["faster_text"] == "none"
    # fewer than 3 seeds: cannot tell, whatever the intervals
    v = faster_than_tuned([row(0.3, 0.5, 0.4, 0.8, seeds=2, af=2, bf=0)], "LRD", "L2", 2500)
    assert v.verdict == CANNOT_TELL and v.numbers["seeds"] == 2
    assert faster_than_tuned([], "LRD", "L2", 2500).verdict == CANNOT_TELL


def test_headline():
    shares = {"L2": {0.2: (0, 5), 0.3: (3, 5), 0.4: (2, 5), 0.5: (5, 5)},
              "LRD": {0.2: (4, 5), 0.3: (5, 5), 0.4: (5, 5), 0.5: (5, 5)},
              "Luon": {0.2: (0, 5), 0.3: (1, 5), 0.4: (2, 5), 0.5: (2, 5)}}
    out = headline(shares, budget=20000)
    assert out["L2"]["fraction"] == 0.3 and out["L2"]["larger_fractions_below_level"] == [0.4]
    assert out["LRD"]["fraction"] == 0.2 and out["LRD"]["at_lowest_tried"]
    assert out["Luon"]["fraction"] is None
    assert (out["L2"]["share_text"], out["L2"]["gaps_text"], out["LRD"]["share_text"]) == ("3/5", "0.4", "4/5")
    assert out["Luon"]["fraction_text"] == "none" and out["Luon"]["share_text"] == "n/a"


def test_expands_region():
    shares = {"L2": {0.2: (1, 5), 0.3: (4, 5), 0.5: (5, 5)}, "LRD": {0.2: (3, 5), 0.3: (5, 5), 0.5: (5, 5)}}
    v = expands_region(shares, "LRD", "L2", 20000)
    assert v.verdict == HOLDS and v.numbers["a_only"] == [0.2] and v.numbers["both"] == [0.3, 0.5]
    assert v.numbers["a_only_shares_text"] == "0.2: 3/5 vs 1/5"
    shares["LRD"][0.2] = (2, 5)
    assert expands_region(shares, "LRD", "L2", 20000).verdict == DOES_NOT_HOLD
    few = {"L2": {0.5: (0, 2)}, "LRD": {0.5: (2, 2)}}
    assert expands_region(few, "LRD", "L2", 2500).verdict == CANNOT_TELL


def _rec(acc, every=100, status="ok", hold=0, steps=None):
    return {"status": status, "config": {"grok_threshold": 0.99, "grok_hold": hold, "steps": steps or every * (len(acc) - 1)},
            "history": {"step": [every * i for i in range(len(acc))], "val_acc": acc}}


def test_outcome_floor_dip_is_not_a_collapse():
    from lrdlib.analysis.survival import outcome
    # reaches 0.99 at 200, dips to 0.98 once (above the 0.9 floor): a lasting grok at 200, no collapse
    o = outcome(_rec([0.1, 0.5, 1.0, 1.0, 0.98, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), hold=1000)
    assert o["event"] and o["time"] == 200 and not o["collapsed"] and o["first_grok"] == 200
    # the strict floor (= threshold) restarts the window after the dip: grok at 500
    assert outcome(_rec([0.1, 0.5, 1.0, 1.0, 0.98] + [1.0] * 11), hold=1000, floor=0.99)["time"] == 500


def test_outcome_collapse_then_recovery():
    from lrdlib.analysis.survival import outcome
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
    from lrdlib.core.training import steps_to_grok
    steps = [0, 100, 200, 300, 400]
    assert steps_to_grok(steps, [0, 1, 0.95, 1, 1], hold=300) == 300
    assert steps_to_grok(steps, [0, 1, 0.95, 1, 1], hold=300, floor=0.9) == 100
    assert steps_to_grok(steps, [0, 1, 0.85, 1, 1], hold=300, floor=0.9) == 300
    with pytest.raises(ValueError, match="floor=0.995"):
        steps_to_grok(steps, [0, 1, 1, 1, 1], floor=0.995)


# ---------------------------------------------------------------- the statistics against textbook values
# Freireich's 6-MP group (Gehan 1965), weeks in remission; False = censored (still in remission).
GEHAN_T = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
GEHAN_E = [True, True, True, False, True, False, True, False, False, True, True, False, False, False, True, True,
           False, False, False, False, False]


def test_kaplan_meier_gehan_6mp():
    from lrdlib.analysis.survival import kaplan_meier

    grid, s = kaplan_meier(GEHAN_T, GEHAN_E)
    assert list(grid) == [6, 7, 10, 13, 16, 22, 23]
    # the textbook table (3 decimals) ...
    assert s == pytest.approx([0.857, 0.807, 0.753, 0.690, 0.627, 0.538, 0.448], abs=5e-4)
    # ... and the exact product limit: at 6 the run censored at 6 is still at risk (21), 3 events
    exact = [18 / 21, 16 / 17, 14 / 15, 11 / 12, 10 / 11, 6 / 7, 5 / 6]
    assert s == pytest.approx([math.prod(exact[:i + 1]) for i in range(len(exact))], rel=1e-12)
    assert km_median(GEHAN_T, GEHAN_E) == 23
    # no event at all: an empty curve, the median beyond the data
    g, s = kaplan_meier([5.0, 7.0], [False, False])
    assert len(g) == 0 and len(s) == 0 and km_median([5.0, 7.0], [False, False]) == INF
    with pytest.raises(ValueError):
        kaplan_meier([1.0, 2.0], [True])


def _wilson_closed_form(k, n, z):
    p = k / n
    d = 1 + z * z / n
    c, h = (p + z * z / (2 * n)) / d, z / d * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return c - h, c + h


def test_wilson_textbook():
    from lrdlib.analysis.phase import wilson

    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=5e-5) and hi == pytest.approx(0.9433, abs=5e-5)
    for k, n, z in [(8, 10, 1.96), (3, 17, 1.0), (0, 5, 1.96), (12, 40, 2.576), (5, 5, 1.645)]:
        assert wilson(k, n, z) == pytest.approx(_wilson_closed_form(k, n, z), rel=1e-10, abs=1e-12)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(0, 7)[0] == 0.0 and wilson(7, 7)[1] == 1.0


def _brute_percentile_interval(stat, n, n_boot, level, seed):
    """The plain numpy percentile bootstrap on the resamples ``scipy.stats.bootstrap`` draws for one
    sample (rng.integers(0, n, (n_boot, n)) from default_rng(seed)): the order statistics just outside
    (1 ∓ level)/2, no interpolation (so an ``inf`` bound stays ``inf``); nan statistics left out."""
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    x = np.array([stat(i) for i in idx])
    x = np.sort(x[~np.isnan(x)])
    return x[math.floor((1 - level) / 2 * (len(x) - 1))], x[math.ceil((1 + level) / 2 * (len(x) - 1))]


def test_bootstrap_median_percentile_interval():
    from lrdlib.analysis.survival import bootstrap_median

    t = np.array([130.0, 170.0, 220.0, 260.0, 330.0, 410.0, 480.0, 560.0, 650.0, 900.0, 900.0])
    e = np.array([True] * 9 + [False] * 2)
    # few resamples, so the bounds move with the seed and with interpolation (scipy's own percentile
    # interval here would be (255.5, 564.5); seeds 3, 4, 5 give other intervals)
    few = bootstrap_median(t, e, n_boot=40, level=0.9, seed=2)
    assert few == _brute_percentile_interval(lambda i: km_median(t[i], e[i]), len(t), 40, 0.9, 2) == (170.0, 650.0)
    got = bootstrap_median(t, e, n_boot=500, level=0.9, seed=3)
    assert got == _brute_percentile_interval(lambda i: km_median(t[i], e[i]), len(t), 500, 0.9, 3)
    assert got[0] <= km_median(t, e) <= got[1] and got[0] < got[1]
    narrow = bootstrap_median(t, e, n_boot=500, level=0.5, seed=3)
    assert got[0] <= narrow[0] <= narrow[1] <= got[1] and narrow[1] - narrow[0] < got[1] - got[0]
    # a constant sample: every resample has the same median, the interval is a point
    assert bootstrap_median([300.0] * 6, [True] * 6, n_boot=200) == (300.0, 300.0)
    # mostly censored: the upper bound is inf (not nan), the lower bound finite
    lo, hi = bootstrap_median([100, 200, 1000, 1000, 1000], [True, True, False, False, False], n_boot=500)
    assert math.isfinite(lo) and hi == INF
    assert bootstrap_median([100.0], [True], n_boot=20) == (100.0, 100.0)
    assert all(math.isnan(v) for v in bootstrap_median([], [], n_boot=20))


def test_paired_ratio_resamples_seeds_jointly():
    from lrdlib.analysis.survival import _ratio, paired_ratio

    a = {0: (100.0, True), 1: (250.0, True), 2: (300.0, True), 3: (2000.0, False), 4: (700.0, True), 5: (2000.0, False)}
    b = {0: (400.0, True), 1: (200.0, True), 2: (900.0, True), 3: (2000.0, False), 4: (2000.0, False), 5: (800.0, True)}
    r = paired_ratio(a, b, n_boot=400, level=0.9, seed=5)
    ta, ea = np.array([a[s][0] for s in range(6)]), np.array([a[s][1] for s in range(6)])
    tb, eb = np.array([b[s][0] for s in range(6)]), np.array([b[s][1] for s in range(6)])
    stat = lambda i: _ratio(km_median(ta[i], ea[i]), km_median(tb[i], eb[i]))
    assert (r["lo"], r["hi"]) == _brute_percentile_interval(stat, 6, 400, 0.9, 5)
    assert r["ratio"] == pytest.approx(300 / 800) and r["seeds"] == 6
    assert r["lo"] <= r["ratio"] <= r["hi"]
    # pairing: b is a at twice the time, seed by seed, so every joint resample gives exactly 1/2
    b2 = {s: (2 * t, ev) for s, (t, ev) in a.items()}
    r = paired_ratio(a, b2, n_boot=300)
    assert r["ratio"] == r["lo"] == r["hi"] == 0.5
