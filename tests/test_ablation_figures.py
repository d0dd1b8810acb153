"""The figures of notebooks 05 and 06 (lrdlib.analysis.ablation_figures), drawn from fake run records
and from own-best searches driven by lrdlib.runs.own_best.search_arms over a fake sweep; with them the
chapter pieces they draw from (own_best.sweep_arms, Design; mechanism's own-best rows and Luon's λ ratios)."""
import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from lrdlib.analysis import ablation_figures as af
from lrdlib.analysis.figures import METHOD_COLORS, arm_styles
from lrdlib.analysis.mechanism import best_row, luon_crossover, luon_ratio_frame, matched_vs_best_row, own_best_pair
from lrdlib.core.config import seed_config
from lrdlib.runs.own_best import Design, search_arms, sweep_arms

matplotlib.use("Agg")
pytestmark = pytest.mark.usefixtures("single_thread")

EVAL, STEPS = 50, 1000
NAMES = ["layers.0.attn.q_proj.weight", "layers.0.attn.k_proj.weight"]


def record(seed, grok_at=None, lam=0.5, steps=STEPS, eval_every=EVAL, hold=0, status="ok"):
    """A run record with what the figures read: history, spectra, tangential norms, final spectra."""
    xs = list(range(0, steps + 1, eval_every))
    acc = [1.0 if grok_at is not None and s >= grok_at else 0.5 for s in xs]
    n = len(xs)
    srank = list(np.linspace(30, 1.5 + seed, n))
    spectra = {m: {"stable_rank": srank, "entropy_rank": srank, "nuc_over_fro": srank, "fro": [2.0] * n,
                   "top_sv": [[1.0]] * n} for m in NAMES}
    tangential = {"step": xs, **{m: {"grad_rad": [0.0] * n, "grad_tan": list(np.linspace(4.0, 0.5, n)), "decay_rad": [0.1] * n,
                                     "decay_tan": [0.0] * n, "angle_step": [0.01] * n} for m in NAMES}}
    return {"config": {"seed": seed, "steps": steps, "grok_threshold": 0.99, "grok_hold": hold, "optim": {"luon_lambda": lam}},
            "status": status, "history": {"step": xs, "val_acc": acc, "val_loss": [1 - a for a in acc], "train_acc": [1.0] * n},
            "spectra": spectra, "targets": NAMES, "tangential": tangential, "max_val_acc": max(acc), "final_val_acc": acc[-1],
            "final_singular_values": {m: list(np.geomspace(3.0, 3e-4, 16)) for m in NAMES}, "commutativity_ceiling": 0.49}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def ablation_records():
    return {"no decay": [record(0), record(1)], "LRD NS5 cubic (seed)": [record(0, 400), record(1, 600)],
            "L2 everywhere (seed)": [record(0), record(1, 900)], "low-rank k=4": [record(0, 300), record(1, status="failed")]}


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


# ---------------------------------------------------------------- 05
def test_ablation_styles_keep_the_seed_method_colours_and_distinguish_the_rest():
    sty = af.ablation_styles(["no decay", "L2 everywhere (seed)", "low-rank k=4", "LRD NS5 cubic (seed)"])
    assert sty["L2 everywhere (seed)"]["color"] == METHOD_COLORS["L2"].lower()
    assert sty["LRD NS5 cubic (seed)"]["color"] == METHOD_COLORS["LRD"].lower()
    assert len({s["color"] for s in sty.values()}) == 4 and set(sty) == {"no decay", "L2 everywhere (seed)", "low-rank k=4",
                                                                          "LRD NS5 cubic (seed)"}


def test_rank_spectra_one_line_per_arm_in_each_panel(ablation_records):
    fig = af.plot_rank_spectra(ablation_records, af.ablation_styles(list(ablation_records)))
    left, right = fig.axes
    assert len(left.lines) == len(right.lines) == 4
    assert left.get_yscale() == right.get_yscale() == "log"
    assert left.get_ylabel() == af.QK_RANK and right.get_ylabel() == "σᵢ/σ₁"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0] == "no decay (n = 2)" and "low-rank k=4 (n = 1)" in labels     # the failed run is left out
    assert all(ln.get_marker() not in (None, "None", "") for ln in left.lines)
    assert right.lines[0].get_ydata()[0] == pytest.approx(1.0)                        # σ₁/σ₁


def test_grok_and_accuracy_columns_count_groks_and_mark_ceiling_and_threshold(ablation_records):
    fig = af.plot_grok_and_accuracy(ablation_records, af.ablation_styles(list(ablation_records)), budget=STEPS)
    top, bottom = fig.axes
    assert [t.get_text() for t in bottom.get_xticklabels()] == [                        # shared with the top panel
        "no decay\n0/2 grokked", "LRD NS5 cubic (seed)\n2/2 grokked", "L2 everywhere (seed)\n1/2 grokked", "low-rank k=4\n1/1 grokked"]
    assert str(STEPS) in top.get_title()
    assert sum(len(c.get_offsets()) for c in bottom.collections) == 7                   # every trained run once
    assert [t.get_text() for t in bottom.get_legend().get_texts()] == ["memorisation + commutativity (0.49)",
                                                                       "grokking threshold 0.99"]
    assert bottom.get_ylabel() == "final validation accuracy"


# ---------------------------------------------------------------- searches (05, 06)
def fake_sweep(grok_of):
    """A stand-in for run_sweep over RunConfigs: ``grok_of(strength)`` -> grok step or None."""
    def sweep(configs, return_records=True, **kw):
        recs = []
        for c in configs:
            s = c.decay.strength if c.decay.kind != "none" else c.optim.luon_lambda
            recs.append(record(c.seed, grok_of(s), steps=c.steps, eval_every=c.eval_every, hold=c.grok_hold))
        return pd.DataFrame({"steps_run": [r["history"]["step"][-1] for r in recs]}), recs
    return sweep


@pytest.fixture
def own():
    design = Design("smoke", "cpu", seeds=(0, 1, 2), n=3, max_extensions=1, p=23, model=None, n_boot=50)
    steps = design.steps
    arms = {"LRD fast": (0.01, lambda s: design.base("LRD", s)), "L2 slow": (0.1, lambda s: design.base("LRD", s))}
    grok = lambda s: None if s < 0.005 else int(steps * 0.2) if s >= 0.03 else int(steps * 0.6)
    return search_arms(design, arms, at_centre=True, sweep=fake_sweep(grok))


def test_design_at_each_profile_and_its_record():
    q, p = Design.at("quick"), Design.at("paper", smoke_extensions=0)
    assert q.seeds == () and p.seeds == (0, 1, 2, 3, 4) and p.n == 5 and p.max_extensions == 2 and p.p == 113
    assert Design.at("smoke", smoke_extensions=0).max_extensions == 0 and Design.at("smoke").model.dim == 32
    d = p.to_dict(searched=["a"])
    assert list(d)[:8] == ["budget", "eval_every", "grok_hold", "seeds", "grid_size", "max_extensions", "cap", "searched"]
    assert d["budget"] == p.steps and d["model_dim"] == 128 and p.base("LRD", 0.02).decay.strength == 0.02
    assert search_arms(q, {"a": (0.1, lambda s: q.base("LRD", s))}, sweep=fake_sweep(lambda s: None)).searches == {}


def test_sweep_arms_groups_records_by_arm():
    cfgs = {"a": [seed_config("LRD", 0.01, seed=s) for s in (0, 1)], "b": [seed_config("LRD", 0.1)]}
    out = sweep_arms(cfgs, sweep=lambda cs, labels, **kw: (None, [{"seed": c.seed, "label": lab} for c, lab in zip(cs, labels)]))
    assert out == {"a": [{"seed": 0, "label": "a"}, {"seed": 1, "label": "a"}], "b": [{"seed": 0, "label": "b"}]}


def test_own_best_rows_and_pairs(own):
    assert set(own.searches) == {"LRD fast", "L2 slow"} and all(s.done for s in own.searches.values())
    row = matched_vs_best_row(own, "LRD fast")
    assert row["matched"]["n"] == row["best"]["n"] == 3 and row["best_strength"] >= 0.03
    assert row["best"]["km_median"] < row["matched"]["km_median"] and row["best_vs_matched"]["ratio"] < 1
    b = best_row(own, "L2 slow")
    assert b["grokked"] == 3 and "search" in b and not b["best_by_accuracy"]
    pair = own_best_pair(own, "LRD fast", "L2 slow", what="x")
    assert list(pair)[:4] == ["a", "b", "what", "a_median"] and pair["seeds"] == 3


def test_search_panel_one_line_per_arm_and_a_ring_at_each_best(own):
    fig, ax = plt.subplots()
    af.plot_search(ax, own, arm_styles(own.searches))
    assert [ln.get_label() for ln in ax.lines[:2]] == ["LRD fast", "L2 slow"]
    assert len(ax.lines) == 3 and ax.lines[2].get_ydata()[0] == own.design.steps      # the budget
    rings = [c for c in ax.collections if len(c.get_offsets()) == 1 and c.get_sizes()[0] == af.BEST_RING["s"]]
    assert len(rings) == 2
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_matched_vs_best_labels_every_arm_with_k_of_n(own):
    rows = [matched_vs_best_row(own, a) for a in own.searches]
    fig = af.plot_matched_vs_best(own, rows, arm_styles(own.searches))
    left, right = fig.axes
    assert [t.get_text() for t in right.get_yticklabels()] == list(own.searches)
    assert texts(right).count("3/3") == 4                                              # matched and best, two arms
    assert right.get_ylim()[0] > right.get_ylim()[1]                                   # first arm on top
    assert "budget" in right.get_xlabel() and left.get_xlabel() == "strength / matched strength"


def test_own_best_km_one_step_curve_per_arm(own):
    fig = af.plot_own_best_km(own, arm_styles(own.searches), {"LRD fast": "LRD fast, α 0.03"})
    left, right = fig.axes
    assert [ln.get_label() for ln in right.lines] == ["LRD fast, α 0.03", "L2 slow"]
    assert all(ln.get_ydata()[-1] == pytest.approx(1.0) for ln in right.lines)         # every seed grokked
    assert right.get_xlim()[1] < own.design.steps and "every run grokked" in right.get_xlabel()
    assert right.get_ylabel() == "share of seeds grokked" and left.get_legend() is None


# ---------------------------------------------------------------- 06
def test_luon_arms_accuracy_and_rank_per_arm():
    recs = {"LRD + AdamW (seed)": [record(0, 400), record(1, 500)], "Luon (seed, λ 0.5)": [record(0, 300)]}
    fig = af.plot_luon_arms(recs, arm_styles(recs))
    left, right = fig.axes
    assert len(left.lines) == 3 and len(right.lines) == 2                              # two arms + the ceiling
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "LRD + AdamW (seed) (n = 2)", "Luon (seed, λ 0.5) (n = 1)", "memorisation + commutativity (0.49)"]
    assert left.get_ylabel() == "validation accuracy" and right.get_yscale() == "log"


def test_lambda_crossover_table_and_figure():
    recs = {f"Luon λ={lam:g}": [record(0, lam=lam), record(1, lam=lam)] for lam in (0.0, 0.5, 2.0)}
    ratios = luon_ratio_frame(recs)
    assert set(ratios.lam) == {0.0, 0.5, 2.0} and len(ratios) == 3 * 2 * (STEPS // EVAL + 1)
    table = luon_crossover(ratios)
    assert list(table["λ"]) == [0.5, 2.0]
    # λ‖W‖/‖G‖ = λ·2/G with ‖G‖ falling from 4 to 0.5: first λ/2, last 4λ
    assert table["λ‖W‖/‖G‖ first"].tolist() == pytest.approx([0.25, 1.0]) and table["last"].tolist() == pytest.approx([2.0, 8.0])
    assert table["crossover step (first > 1)"].iloc[1] == EVAL and not math.isnan(table["crossover step (first > 1)"].iloc[0])
    fig = af.plot_lambda_crossover(ratios)
    (ax,) = fig.axes
    assert len(ax.lines) == 3 and ax.lines[-1].get_ydata()[0] == 1                     # two λ > 0 and the crossover
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["Luon λ=0.5 (n = 2)", "Luon λ=2 (n = 2)"]
