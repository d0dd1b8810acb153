"""lrdlib.mechanism on small hand-made records: the AdamW equilibrium, per-run summaries (window,
censoring, angle travelled), rank correlations, the factorial arms and Luon's λ ratio."""
import math

import numpy as np
import pandas as pd
import pytest

from lrdlib import seed_config
from lrdlib.analysis.mechanism import (
    adamw_equilibrium_angle,
    adamw_equilibrium_norm,
    luon_lambda_ratio,
    qk_arm,
    rank_correlations,
    run_summary,
    target_angle_prediction,
)

NAMES = ["q", "k"]


def record(grok=None, steps=400, every=100, fro=((4.0, 3.0, 2.0, 1.0, 1.0), (2.0, 1.0, 2.0, 3.0, 3.0)),
           srank=((30, 20, 10, 5, 5), (10, 10, 10, 1, 1)), rate=((0.1, 0.2, 0.3, 0.4), (0.3, 0.2, 0.1, 0.0)),
           optim=None, decay="none"):
    hs = list(range(0, steps + 1, every))
    ts = hs[1:]
    tang = {"step": ts}
    for n, r in zip(NAMES, rate):
        tang[n] = {"angle_step": list(r), "angle_total": list(np.cumsum(r) * every),
                   "grad_rad": [0.0] * len(ts), "grad_tan": [2.0] * len(ts)}
    o = {"kind": "adamw", "lr": 1e-3, "target_lr_scale": 1.0, "target_weight_decay": 0.5, "luon_lambda": 0.5,
         **(optim or {})}
    acc = [1.0 if grok is not None and s >= grok else 0.5 for s in hs]
    return {"targets": NAMES, "steps_to_grok": grok, "final_val_acc": acc[-1], "status": "ok",
            "config": {"steps": steps, "optim": o, "decay": {"kind": decay}, "grok_threshold": 0.99, "grok_hold": 0},
            "history": {"step": hs, "val_acc": acc}, "tangential": tang,
            "spectra": {n: {"fro": list(f), "stable_rank": list(s)} for n, f, s in zip(NAMES, fro, srank)}}


def test_adamw_equilibrium():
    assert adamw_equilibrium_angle(1e-3, 0.1) == pytest.approx(math.sqrt(2e-4))
    assert adamw_equilibrium_angle(1e-3, 0.0) == 0.0
    # ‖W‖ = ‖u‖ √(η/2λ) and the angle η‖u‖/‖W‖ it implies is √(2ηλ)
    norm = adamw_equilibrium_norm(1e-3, 0.1, update_norm=128.0)
    assert 1e-3 * 128.0 / norm == pytest.approx(adamw_equilibrium_angle(1e-3, 0.1))
    assert adamw_equilibrium_norm(1e-3, 0.0, 1.0) == math.inf


def test_target_angle_prediction_only_for_adamw_decay():
    assert target_angle_prediction(record()["config"]) == pytest.approx(math.sqrt(2 * 1e-3 * 0.5))
    scaled = record(optim={"target_lr_scale": 4.0})["config"]
    assert target_angle_prediction(scaled) == pytest.approx(math.sqrt(2 * 4e-3 * 0.5))
    assert math.isnan(target_angle_prediction(record(optim={"target_weight_decay": 0.0})["config"]))
    assert math.isnan(target_angle_prediction(record(optim={"kind": "luon"})["config"]))
    assert math.isnan(target_angle_prediction(record(decay="lrd_ns")["config"]))


def test_run_summary_censored_uses_last_quarter_to_the_end():
    s = run_summary(record(grok=None))
    assert not s["grokked"] and s["T"] == 400 and s["steps"] == 400 and s["budget"] == 400
    # history window [300, 400]: fro means (1+3)/2, (1+3)/2 ; srank (5+1)/2 twice
    assert s["norm"] == pytest.approx(2.0) and s["srank"] == pytest.approx(3.0)
    # tangential window [300, 400]: angle_step at 300, 400 = (0.3, 0.1) and (0.4, 0.0): mean 0.2
    assert s["angle_rate"] == pytest.approx(0.2)
    assert s["angle_total"] == pytest.approx(100 * (1.0 + 0.6) / 2)   # mean of the two totals at step 400
    assert s["final_srank"] == pytest.approx(3.0)


def test_run_summary_grokked_stops_at_the_grok_step():
    s = run_summary(record(grok=200))
    assert s["grokked"] and s["T"] == 200 and s["steps"] == 200
    # window [150, 200]: only step 200
    assert s["norm"] == pytest.approx((2.0 + 2.0) / 2) and s["srank"] == pytest.approx(10.0)
    assert s["angle_rate"] == pytest.approx((0.2 + 0.2) / 2)
    assert s["angle_total"] == pytest.approx(100 * ((0.1 + 0.2) + (0.3 + 0.2)) / 2)


def test_run_summary_window_without_evaluation_takes_the_last_before():
    s = run_summary(record(grok=100), window=0.1)
    assert s["angle_rate"] == pytest.approx((0.1 + 0.3) / 2)


def runs_frame():
    steps = np.array([100, 200, 300, 400, 500, 600, 700, 800], dtype=float)
    return pd.DataFrame({"steps": steps, "norm": steps / 100, "angle_total": -steps,
                         "srank": [5, 1, 4, 2, 8, 3, 7, 6], "angle_rate": 1 / steps})


def test_rank_correlations_match_scipy_and_bootstrap_gap():
    from scipy.stats import spearmanr
    runs = runs_frame()
    c = rank_correlations(runs, candidates=("srank", "norm", "angle_total", "angle_rate"), n_boot=300)
    assert c.loc["norm", "rho"] == pytest.approx(1.0) and c.loc["angle_total", "rho"] == pytest.approx(-1.0)
    assert c.loc["srank", "rho"] == pytest.approx(spearmanr(runs.steps, runs.srank)[0])
    assert c.loc["norm", "gap_lo"] > 0            # a perfect ρ beats a noisy one in every resample
    assert c.loc["srank", "gap_lo"] == 0 == c.loc["srank", "gap_hi"]
    assert (c.n == 8).all()


def test_rank_correlations_censored_ties_and_constant_candidate():
    runs = runs_frame().assign(steps=[100, 200, 800, 800, 800, 800, 800, 800], norm=1.0)
    c = rank_correlations(runs, candidates=("srank", "norm"), n_boot=50)
    assert np.isnan(c.loc["norm", "rho"]) and np.isfinite(c.loc["srank", "rho"])


def test_qk_arm_builds_each_treatment():
    base = seed_config("LRD", 0.005, steps=100)
    assert qk_arm(base, "L2", 1.0, 1.0).key() == seed_config("L2", 1.0, steps=100).key()   # the L2 preset
    assert qk_arm(base, "LRD", 0.005, 0.1).key() == base.key()                            # the LRD preset
    none = qk_arm(base, "none", 0.0, 0.3)
    assert none.decay.kind == "none" and none.optim.target_weight_decay == 0 and none.optim.weight_decay == 0.3
    assert qk_arm(base, "Q/K lr", 1.0, 0.3).key() == none.key()
    assert qk_arm(base, "Q/K lr", 4.0, 0.1).optim.target_lr_scale == 4.0
    assert qk_arm(base, "fixed norm", 0.07, 0.1).decay.kind == "fixed_norm"
    assert qk_arm(base, "LRD radial", 0.01, 0.1).decay.strength == 0.01
    with pytest.raises(ValueError, match="valid"):
        qk_arm(base, "bogus", 1.0, 0.1)


def test_luon_lambda_ratio():
    r = record(optim={"kind": "luon"})
    df = luon_lambda_ratio(r)
    # λ‖W‖/‖G‖ at steps 100..400, ‖G‖ = hypot(0, 2) = 2, λ = 0.5: mean over q, k of 0.25·fro
    assert df.ratio.tolist() == pytest.approx([0.25 * (3 + 1) / 2, 0.25 * 2, 0.25 * 2, 0.25 * 2])
    assert df.angle_rate.tolist() == pytest.approx([0.2, 0.2, 0.2, 0.2])
