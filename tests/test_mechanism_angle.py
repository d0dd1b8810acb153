"""The sign-invariant angle of notebook 07 (``lrdlib.analysis.mechanism``): the line angle, flips,
the derivation for records made before the line-angle meter (checked against the meter on real
training runs), the moonshot's table, LRD's rank at the grok and the crossed intervention's design;
and the verdicts that word them (``lrdlib.analysis.verdicts``)."""
import copy
import math

import numpy as np
import pandas as pd
import pytest

from lrdlib import seed_config
from lrdlib.analysis import mechanism as M
from lrdlib.analysis.verdicts import (
    CANNOT_TELL,
    DOES_NOT_HOLD,
    HOLDS,
    correlation_words,
    explains_better,
    orders_steps,
    rate_collapse,
)
from lrdlib.core.training import run

NAMES = ["layers.0.attn.q_proj.weight", "layers.0.attn.k_proj.weight"]
PI = math.pi


def old_record(theta, grok=None, every=100, fro=1.0, srank=10.0):
    """A record in the form made before the line-angle meter: per matrix θ̄ per evaluation interval
    and its running total (``every`` steps per interval, nothing thinned)."""
    theta = [list(t) for t in theta]
    n = len(theta[0])
    ts = [every * (i + 1) for i in range(n)]
    hs = [0, *ts]
    tang = {"step": ts}
    for name, t in zip(NAMES, theta):
        tang[name] = {"angle_step": t, "angle_total": list(np.cumsum(t) * every), "angle_opt": [0.01] * n,
                      "opt_tan": [1e-3] * n, "grad_tan": [2.0] * n, "decay_rad": [0.0] * n}
    acc = [1.0 if grok is not None and s >= grok else 0.5 for s in hs]
    return {"targets": NAMES, "status": "ok", "final_val_acc": acc[-1], "tangential": tang,
            "config": {"steps": hs[-1], "grok_threshold": 0.99, "grok_hold": 0, "optim": {"kind": "adamw"},
                       "decay": {"kind": "lrd_ns"}, "task": {"op": "add", "train_frac": 0.5}, "seed": 0},
            "history": {"step": hs, "val_acc": acc},
            "spectra": {m: {"fro": [fro] * len(hs), "stable_rank": [srank] * len(hs)} for m in NAMES},
            "final_singular_values": {m: [1.0] * 8 for m in NAMES}}


# ---------------------------------------------------------------- the line angle and the derivation


def test_line_angle_is_sign_invariant_and_clipped():
    assert M.line_angle([0.0, 0.3, PI / 2, PI - 0.3, PI]).tolist() == pytest.approx([0.0, 0.3, PI / 2, 0.3, 0.0])
    assert M.line_angle(3.1416) == 0.0          # rounded above π: 0, not a negative angle


def test_derived_line_angle_is_an_upper_bound_exact_on_one_sided_intervals():
    rng = np.random.default_rng(0)
    for _ in range(200):
        flips = rng.random(50) < rng.random()
        steps = np.where(flips, PI - rng.uniform(0, 0.2, 50), rng.uniform(0, 0.2, 50))
        true = M.line_angle(steps).mean()
        derived = float(M.line_angle(steps.mean()))
        assert derived >= true - 1e-12
        if flips.all() or not flips.any():
            assert derived == pytest.approx(true)


def test_flipping_record_uses_pi_minus_theta_not_theta():
    # q flips from the third interval on (θ̄ ≈ π), k never does
    r = old_record([(0.1, 0.2, 3.1, 3.12), (0.1, 0.1, 0.1, 0.1)])
    a = M.angle_series(r)
    assert not a["exact"]
    assert a["line"][0].tolist() == pytest.approx([0.1, 0.2, PI - 3.1, PI - 3.12])
    assert a["line"][1].tolist() == pytest.approx([0.1] * 4)
    # the θ total up to the last evaluation before the flip, then 100 steps × each interval's line angle
    assert a["line_total"][0].tolist() == pytest.approx([10.0, 30.0, 30 + 100 * (PI - 3.1), 30 + 100 * (PI - 3.1 + PI - 3.12)])
    assert a["line_total"][1].tolist() == pytest.approx([10.0, 20.0, 30.0, 40.0])
    s = M.run_summary(r)   # censored at step 400: window [300, 400]
    assert s["angle_rate"] == pytest.approx((PI - 3.1 + PI - 3.12 + 0.2) / 4)
    assert s["angle_rate_raw"] == pytest.approx((3.1 + 3.12 + 0.2) / 4)   # the old quantity: flips counted as ≈ π
    assert s["angle_total"] < s["angle_total_raw"] / 5 and s["flips"] and s["first_flip"] == 300


def test_flip_summary_first_flip_share_and_unpaired():
    r = old_record([(0.1, 0.2, 3.1, 3.12), (0.1, 0.1, 0.1, 3.0)])
    f = M.flip_summary(r)
    assert f == {"flips": True, "first_flip": 300, "flip_after": 200, "matrices": 2, "share": 3 / 8, "unpaired": 1}
    assert not M.flip_summary(r, upto=200)["flips"] and M.flip_summary(r, upto=200)["first_flip"] is None
    assert not M.flip_summary(old_record([(0.1,) * 4, (0.3,) * 4]))["flips"]


def test_a_span_whose_total_shows_a_flip_starts_the_rectangle_rule():
    # thinned: the evaluation at 300 keeps θ̄ = 0.1 but the total rose by π per step over (100, 300]
    r = old_record([(0.1, 0.1, 0.1), (0.1, 0.1, 0.1)])
    t = r["tangential"]
    t["step"] = [100, 300, 400]
    t[NAMES[0]]["angle_total"] = [10.0, 10.0 + 200 * 3.0, 10.0 + 200 * 3.0 + 10.0]
    a = M.angle_series(r)
    assert a["line_total"][0].tolist() == pytest.approx([10.0, 10.0 + 200 * 0.1, 10.0 + 300 * 0.1])


def test_a_record_with_the_meter_is_read_as_recorded():
    r = old_record([(3.1, 3.1), (0.2, 0.2)])
    for m in NAMES:
        r["tangential"][m]["angle_line"] = [0.005, 0.006]
        r["tangential"][m]["angle_line_total"] = [0.5, 1.1]
    a = M.angle_series(r)
    assert a["exact"] and a["line"][0].tolist() == [0.005, 0.006] and a["line_total"][1].tolist() == [0.5, 1.1]


def _without_meter(rec):
    old = copy.deepcopy(rec)
    for m in old["targets"]:
        del old["tangential"][m]["angle_line"], old["tangential"][m]["angle_line_total"]
    return old


@pytest.mark.parametrize("alpha, flips", [(1.0, True), (1e-4, False)])
def test_derivation_matches_the_meter_on_real_runs(alpha, flips):
    # a small model: with α = 1 every σᵢ < α from the first step, so W's sign flips at every step
    cfg = seed_config("LRD", alpha, steps=20, eval_every=5, p=13, seed=3).replace(model__dim=32, model__mlp_dim=64)
    rec, _ = run(cfg, progress=False)
    exact, derived = M.angle_series(rec), M.angle_series(_without_meter(rec))
    assert exact["exact"] and not derived["exact"]
    assert bool(exact["flipped"].all()) is flips and bool(exact["flipped"].any()) is flips
    np.testing.assert_allclose(derived["line"], exact["line"], atol=1e-9)
    np.testing.assert_allclose(derived["line_total"], exact["line_total"], atol=1e-9)
    if flips:   # the old angle counted every flip as ≈ π
        assert (exact["theta"] > 2.5).all() and (exact["line"] < 0.5).all()


# ---------------------------------------------------------------- the moonshot's table, treatments, rank at the grok


def test_spearman_table_per_measure_over_its_finite_runs():
    runs = pd.DataFrame({"steps": [1, 2, 3, 4, 5.0], "a": [5, 4, 3, 2, 1.0], "b": [1, 2, np.nan, 4, 5.0], "c": [1.0] * 5})
    t = M.spearman_table(runs, {"a": "A", "b": "B", "c": "C"})
    assert t.loc["a", "rho"] == pytest.approx(-1) and t.loc["a", "n"] == 5
    assert t.loc["b", "rho"] == pytest.approx(1) and t.loc["b", "n"] == 4
    assert np.isnan(t.loc["c", "rho"]) and t.loc["c", "label"] == "C"


def test_treatment_of_names_recipes_and_controls():
    base = seed_config("LRD", 0.01, steps=10)
    assert M.treatment_of(base.to_dict()) == "LRD"
    assert M.treatment_of(seed_config("L2", 1.0).to_dict()) == "L2"
    assert M.treatment_of(seed_config("Luon", 0.5).to_dict()) == "Luon"
    for t, label in (("none", "none"), ("Q/K lr", "Q/K lr"), ("fixed norm", "fixed norm"), ("LRD radial", "LRD radial")):
        assert M.treatment_of(M.qk_arm(base, t, 4.0 if t == "Q/K lr" else 0.5, 0.1).to_dict()) == label
    assert M.treatment_of(M.crossed_arm(base, 0.3, 2.0, 1.0).to_dict()) == "fixed norm"


def test_comparable_keeps_one_censoring_point():
    budget = {"steps": 400, "eval_every": 100, "early_stop": True, "grok_hold": 0}
    mk = lambda **c: {"status": "ok", "config": {"steps": 400, "eval_every": 100, "early_stop": True, "grok_hold": 0, **c}}  # noqa: E731
    recs = [mk(), mk(steps=4000), mk(observe=5000), {**mk(), "status": "failed"}, mk(grok_hold=0)]
    assert len(M.comparable(recs, budget)) == 2


def test_rank_at_grok_reads_the_spectra_at_the_lasting_grok():
    r = old_record([(0.1,) * 4, (0.1,) * 4], grok=200)
    r["spectra"][NAMES[0]]["stable_rank"] = [50, 40, 30, 20, 10]
    g = M.rank_at_grok(r)
    assert g["grokked"] and g["srank"] == pytest.approx((30 + 10) / 2) and g["srank_max"] == 30 and g["full"] == 8
    assert M.rank_at_grok(old_record([(0.1,) * 4, (0.1,) * 4]))["srank"] is None


# ---------------------------------------------------------------- the crossed intervention


def test_crossed_design_cells_and_configs():
    cells = M.crossed_design(0.321)
    d = M.CROSSED
    assert len(cells) == len(d["radii"]) * len(d["factors"]) * len(d["seeds"])
    assert len({c.key() for _, c in cells}) == len(cells)
    cell, cfg = next((c, g) for c, g in cells if c["r_over"] == 2.0 and c["k"] == 0.5)
    assert cfg.decay.kind == "fixed_norm" and cfg.decay.strength == pytest.approx(0.642) == cell["r"]
    assert cfg.optim.target_lr_scale == 0.5 and cfg.optim.weight_decay == d["other_wd"] and cfg.optim.target_weight_decay == 0
    assert cfg.early_stop and cfg.observe == d["observe"] and cfg.steps == d["steps"] and cfg.task.train_frac == d["frac"]
    assert {c["seed"] for c, _ in cells} == set(d["seeds"]) and cfg.task.split_seed == cfg.seed
    # the angular story's test needs cells that share k/r: at least one level holds two cells or more
    levels = pd.Series([round(c["k"] / c["r_over"], 6) for c, _ in cells]).value_counts() // len(d["seeds"])
    assert (levels >= 2).any()


def test_crossed_frame_reads_and_never_trains(tmp_path):
    from lrdlib.runs.cache import RunCache
    f = M.crossed_frame(0.321, RunCache(tmp_path))
    assert len(f) == 27 and not f.present.any()


# ---------------------------------------------------------------- the verdicts that word them


def test_correlation_words_follow_the_number():
    assert correlation_words(-0.61, 1e-9)["text"] == "ρ = −0.61 (p = 1e-09): moderate, negative"
    w = correlation_words(-0.20, 0.07)
    assert w["size"] == "negligible" and not w["significant"] and w["text"].endswith("not significant at 5 %")
    assert correlation_words(0.85, 1e-30)["size"] == "strong" and correlation_words(0.3, 0.01)["size"] == "weak"
    assert correlation_words(np.nan, np.nan)["text"] == "undefined"


def _table(rhos, n=120):
    return pd.DataFrame([{"measure": q, "label": q.upper(), "rho": r, "p": 1e-3, "n": n} for q, r in rhos.items()]).set_index("measure")


def test_orders_steps_branches():
    v = orders_steps(_table({"a": 0.3, "b": -0.85}))
    assert v.verdict == HOLDS and v.numbers["best"] == "b" and v.numbers["reaching"] == ["b"]
    v = orders_steps(_table({"a": 0.3, "b": -0.47}))
    assert v.verdict == DOES_NOT_HOLD and v.numbers["best_label"] == "B" and v.numbers["best_abs_rho_text"] == "0.47"
    assert orders_steps(_table({"a": 0.9}, n=99)).verdict == CANNOT_TELL          # fewer than 100 runs
    assert orders_steps(_table({"a": np.nan})).verdict == CANNOT_TELL


def test_explains_better_says_which_candidate_beats_the_rank():
    corr = pd.DataFrame([{"candidate": "srank", "label": "rank", "rho": 0.18, "p": 0.1, "n": 80, "gap_lo": 0, "gap_hi": 0},
                         {"candidate": "angle_rate", "label": "rate", "rho": -0.61, "p": 1e-9, "n": 80, "gap_lo": 0.2, "gap_hi": 0.6},
                         {"candidate": "angle_total", "label": "total", "rho": -0.20, "p": 0.07, "n": 80, "gap_lo": -0.16, "gap_hi": 0.2},
                         {"candidate": "norm", "label": "norm", "rho": 0.1, "p": 0.3, "n": 80, "gap_lo": -0.3, "gap_hi": 0.1}]
                        ).set_index("candidate")
    v = explains_better(corr, seeds=5)
    assert v.verdict == HOLDS   # the verdict speaks for the best candidate only ...
    assert v.numbers["per_candidate"] == {"angle_rate": "beats", "angle_total": "undecided", "norm": "does_not_beat"}
    assert (v.numbers["beats_text"], v.numbers["undecided_text"], v.numbers["does_not_beat_text"]) == ("rate", "total", "norm")
    assert v.numbers["per_candidate_text"]["norm"] == "does not beat it" and v.numbers["words"]["angle_rate"]["size"] == "moderate"
    assert "total: ρ = −0.20 (p = 0.07): negligible, negative, not significant at 5 %" in v.numbers["words_text"]


def _crossed(medians, seeds=3):
    return pd.DataFrame([{"r": r, "k": k, "steps_to_grok": m} for (r, k), m in medians.items() for _ in range(seeds)])


def test_rate_collapse_branches():
    grid = [(r, k) for r in (0.5, 1, 2) for k in (0.5, 1, 2)]
    by_ratio = {(r, k): 1000 * (k / r) ** -0.5 for r, k in grid}   # a function of k/r alone
    v = rate_collapse(_crossed(by_ratio), budget=10000)
    assert v.verdict == HOLDS and v.numbers["within"]["1"] == pytest.approx(1.0) and v.numbers["across"] == pytest.approx(4.0)
    by_k = {(r, k): 3000 / k for r, k in grid}                          # k alone: cells of one k/r differ
    assert rate_collapse(_crossed(by_k), budget=10000).verdict == DOES_NOT_HOLD
    censored = {**by_ratio, (2, 2): None}                               # one cell of k/r = 1 never groks
    assert rate_collapse(_crossed(censored), budget=10000).verdict == DOES_NOT_HOLD
    assert rate_collapse(_crossed({c: 2000 for c in grid}), budget=10000).verdict == CANNOT_TELL   # nothing moves
    assert rate_collapse(_crossed(by_ratio, seeds=2), budget=10000).verdict == CANNOT_TELL
