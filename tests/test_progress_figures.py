"""The figures of notebooks 07 and 08 (``lrdlib.analysis.progress_figures``) draw what they should,
on small planted tables; and the tables they are drawn from (``lrdlib.runs.trajectory``,
``lrdlib.analysis.fourier``, ``lrdlib.analysis.resize``) compute what their docstrings say."""
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from lrdlib.analysis import fourier as fo  # noqa: E402
from lrdlib.analysis import progress_figures as pf  # noqa: E402
from lrdlib.analysis.figures import METHOD_COLORS  # noqa: E402
from lrdlib.analysis.mechanism import CANDIDATES  # noqa: E402
from lrdlib.analysis.resize import resize_frame, resize_runs, resize_summary  # noqa: E402
from lrdlib.runs import trajectory as tr  # noqa: E402

SEED_ARMS = ["L2 (seed, wd 0.1)", "L2 (wd 1.0)", "LRD (seed, α 0.005)", "Luon (seed, λ 0.5)"]


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _panels(fig):
    """The figure's subplot axes (not a legend or a colour bar)."""
    return [ax for ax in fig.axes if ax.get_subplotspec() is not None]


def _legend_texts(fig):
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


# ---------------------------------------------------------------- 07
def _design_runs():
    rows = []
    for frac in (0.5, 0.3):
        for i, t in enumerate(pf.TREATMENTS):
            for wd in (0.1, 1.0):
                grokked = not (t == "Q/K lr" and wd == 0.1)
                rows.append({"frac": frac, "treatment": t, "other_wd": wd, "grokked": grokked,
                             "steps": 1000.0 * (i + 1) if grokked else 20000.0, **{c: 0.1 * (i + 1) for c in CANDIDATES}})
    return pd.DataFrame(rows)


def _corr(rhos):
    return pd.DataFrame({"rho": rhos}, index=list(CANDIDATES))


def test_plot_explanations_one_row_per_fraction_and_a_column_per_candidate():
    runs = _design_runs()
    corr = {0.5: _corr([0.2, 0.4, -0.6, float("nan")]), 0.3: _corr([0.1, 0.5, -0.7, -0.4])}
    fig = pf.plot_explanations(runs, corr, budget=20000, home_wd=0.1)
    axes = _panels(fig)
    assert len(axes) == 2 * len(CANDIDATES)
    assert axes[0].get_title() == "ρ = +0.20 (50% data)" and axes[3].get_title() == "ρ undefined"
    assert axes[4].get_title() == "ρ = +0.10 (30% data)"
    assert [ax.get_xlabel() for ax in axes[:4]] == list(CANDIDATES.values())
    assert axes[0].get_ylabel().startswith("steps to grok") and axes[0].get_xscale() == "log"
    # one scatter per (treatment, other wd): every treatment with both markers, and each run drawn once
    assert len(axes[0].collections) == 2 * len(pf.TREATMENTS)
    assert sum(len(c.get_offsets()) for c in axes[0].collections) == len(runs[runs.frac == 0.5])
    hollow = [c for c in axes[0].collections if to_hex(c.get_facecolor()[0]) == "#ffffff"]
    assert len(hollow) == 1 and hollow[0].get_offsets()[0][1] == 20000   # the run that did not grok, at the budget
    assert axes[0].lines[0].get_ydata()[0] == 20000                     # the budget line
    assert _legend_texts(fig) == [*pf.TREATMENTS, "others wd 0.1", "others wd = L2's best λ"]


def _per(arms=SEED_ARMS, seeds=(0, 1), steps=(100, 200, 300, 400)):
    return pd.DataFrame([{"arm": a, "seed": s, "step": t, "angle_step": 0.01 * (i + 1), "fro": 1.0 + i, "opt_tan": 0.002 * (i + 1),
                          "opt_rad": 0.001, "decay_rad": 0.0005} for i, a in enumerate(arms) for s in seeds for t in steps])


def test_plot_angular_rate_a_column_per_method_and_the_adamw_equilibria():
    predicted = {a: (0.014 if a.startswith("L2 (seed") else 0.045 if a.startswith("L2") else float("nan")) for a in SEED_ARMS}
    fig = pf.plot_angular_rate(_per(), predicted)
    axes = _panels(fig)
    assert len(axes) == 6 and [ax.get_title() for ax in axes[:3]] == ["L2", "LRD", "Luon"]
    assert len(axes[0].lines) == 2 + 2 and len(axes[1].lines) == 1 and len(axes[2].lines) == 1   # L2: 2 arms + 2 √(2ηλ)
    assert len(axes[3].lines) == 2 and all(ax.get_yscale() == "log" for ax in axes)
    assert axes[0].get_ylabel() == "angle per step (rad)" and "W_{QK}" in axes[3].get_ylabel()
    labels = _legend_texts(fig)
    assert "L2 (seed, wd 0.1): √(2ηλ) = 0.014" in labels and "LRD (seed, α 0.005) (n = 2)" in labels and len(labels) == 6


def test_plot_luon_lambda_ratio_and_angle():
    ratios = pd.DataFrame([{"arm": "Luon (seed, λ 0.5)", "seed": s, "step": t, "ratio": 0.5 + t / 400, "angle_rate": 0.2}
                           for s in (0, 1, 2) for t in (100, 200, 300)])
    fig = pf.plot_luon_lambda(ratios, "Luon (seed, λ 0.5)")
    top, bottom = _panels(fig)
    assert top.get_title() == "Luon (seed, λ 0.5), 3 seed(s), band min–max"
    assert len(top.lines) == 2 and top.lines[1].get_ydata()[0] == 1   # the median and the line at 1
    assert len(bottom.lines) == 1 and bottom.get_xlabel() == "training step"
    assert len(top.collections) == 1                                  # the min-max band over seeds
    assert to_hex(top.lines[0].get_color()) == METHOD_COLORS["Luon"].lower()


# ---------------------------------------------------------------- 08
def _task_table(tasks=("a + b", "recall"), methods=("L2", "LRD", "Luon")):
    rows = []
    for t in tasks:
        for j, m in enumerate(methods):
            never = t == "recall" and m == "Luon"
            rows.append({"task": t, "method": m, "km_median": math.inf if never else 1000.0 * (j + 1), "median_lo": 500.0,
                         "median_hi": math.inf if never else 3000.0, "budget": 20000, "qk_srank": 3.0 + j})
    return pd.DataFrame(rows)


def test_plot_tasks_medians_beyond_the_budget_hollow():
    fig = pf.plot_tasks(_task_table(), ["a + b", "recall"], ["L2", "LRD", "Luon"], title="three methods")
    left, right = _panels(fig)
    assert [t.get_text() for t in left.get_xticklabels()] == ["a + b", "recall"]
    assert fig._suptitle.get_text() == "three methods"
    # per method: its intervals, its filled medians and its hollow markers at the budget
    assert len(left.collections) == 3 * 3
    luon_hollow = left.collections[-1]
    assert luon_hollow.get_offsets().tolist() == [[1.2, 20000.0]] and to_hex(luon_hollow.get_facecolor()[0]) == "#ffffff"
    assert [len(c.get_offsets()) for c in right.collections] == [2, 2, 2]
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["L2", "LRD", "Luon"]
    assert left.get_yscale() == right.get_yscale() == "log"


def _measures(steps=(0, 100, 200), keys=(3, 5), emb_keys=(3,), k_max=8):
    n = len(steps)
    spec = [[1.0] + [1.0 + (2.0 if k in emb_keys else 0.0) for k in range(1, k_max + 1)] for _ in steps]
    return {"steps": list(steps), "keys": list(keys), "embedding_keys": list(emb_keys), "spectrum": spec,
            **{k: list(np.linspace(1.0, 0.1, n)) for k in pf.LOSSES}, **{k: list(np.linspace(0.1, 0.9, n)) for k in pf.SHARES}}


def _pm(methods=("L2", "LRD"), seeds=(0, 1)):
    hist = {"step": [0, 100, 200], "train_acc": [0.1, 1.0, 1.0], "val_acc": [0.0, 0.5, 1.0]}
    return {(m, s): ({"history": hist}, _measures()) for m in methods for s in seeds}


def test_plot_progress_losses_and_shares_per_method_with_the_phase_lines():
    pm = _pm()
    pm[("LRD", 1)] = ({"status": "failed"}, None)          # a failed run is left out
    phases = fo.phase_table(pm, {"L2": 1.0, "LRD": 0.01})
    fig = pf.plot_progress(pm, phases, {"L2": "L2 (λ 1)", "LRD": "LRD (α 0.01)"})
    axes = _panels(fig)
    assert len(axes) == 4 and [axes[0].get_title(), axes[1].get_title()] == ["L2 (λ 1)", "LRD (α 0.01)"]
    n_phase = 3                                             # m, u and g were all reached: one vertical line each
    assert len(axes[0].lines) == 2 * len(pf.LOSSES) + n_phase and len(axes[2].lines) == 2 * len(pf.SHARES) + n_phase
    assert len(axes[1].lines) == len(pf.LOSSES) + n_phase   # LRD: one seed left
    assert [ln.get_label() for ln in axes[0].lines[:4]] == [lab for lab, _, _ in pf.LOSSES.values()]
    assert axes[0].get_yscale() == "log" and axes[2].get_ylim() == (0, 1)
    assert _legend_texts(fig) == [lab for q in (pf.LOSSES, pf.SHARES) for lab, _, _ in q.values()]


def test_plot_spectrum_key_bars_threshold_and_logit_keys():
    fig = pf.plot_spectrum({"L2": _measures(), "LRD": None}, key_ratio=4.0)
    first, second = _panels(fig)
    assert first.get_title() == "L2: logit keys [3, 5]" and second.get_title() == ""   # no measures: an empty panel
    assert len(first.patches) == 8                                  # one bar per frequency k = 1 … 8
    key_bars = [p for p in first.patches if to_hex(p.get_facecolor()) == METHOD_COLORS["L2"].lower()]
    assert len(key_bars) == 1 and key_bars[0].get_height() == pytest.approx(9.0)
    assert first.lines[0].get_ydata()[0] == pytest.approx(4.0)      # 4 × the median of ‖F_k E‖² = 1
    assert first.collections[-1].get_offsets()[:, 0].tolist() == [3, 5]


def _resize_measures(ranks=((128, 128), (64, 64), (64, 64), (32, 40))):
    n = len(ranks)
    return {"targets": ["q", "k"], "full_rank": 128, "step": [100 * (i + 1) for i in range(n)],
            "train_loss_before": [1.0] * n, "train_loss_after": [1.0, 1.2, 1.0, 1.1],
            "val_loss_before": [2.0] * n, "val_loss_after": [2.0, 2.1, 2.0, 2.3],
            "train_acc_before": [0.5] * n, "train_acc_after": [0.5] * n,
            "val_acc_before": [0.4] * n, "val_acc_after": [0.4, 0.38, 0.4, 0.395], "rank": [list(r) for r in ranks]}


def _run(seed, grok):
    acc = [0.1, 0.5, 0.995, 0.995, 0.995] if grok else [0.1, 0.2, 0.3, 0.3, 0.3]
    return {"status": "ok", "config": {"seed": seed, "steps": 400, "grok_threshold": 0.99, "grok_hold": 100},
            "history": {"step": [0, 100, 200, 300, 400], "val_loss": [3.0, 2.0, 1.0, 1.0, 1.0], "val_acc": acc},
            "spectra": {"q": {"stable_rank": [10.0, 8, 6, 5, 4]}, "k": {"stable_rank": [12.0, 10, 8, 7, 6]}},
            "final_val_acc": acc[-1], "max_val_acc": max(acc)}


def test_plot_resize_loss_segments_and_ranks():
    resizes = resize_frame({0: ({}, _resize_measures())})
    fig = pf.plot_resize({"adaptive": _run(0, True), "plain": _run(0, False)}, resizes, "adaptive")
    left, right = _panels(fig)
    assert [ln.get_label() for ln in left.lines] == ["adaptive", "plain"]
    segs = left.collections[0]
    assert len(segs.get_segments()) == 4 and list(segs.get_linewidths()) == [0.6, 1.6, 0.6, 1.6]   # thick: a resize (a rank changed)
    assert [ln.get_label() for ln in right.lines] == ["stable rank, adaptive", "stable rank, plain", "rank kept by the controller"]
    assert right.lines[0].get_ydata().tolist() == [11.0, 9.0, 7.0, 6.0, 5.0]   # the mean of the two matrices
    assert left.get_legend() is not None and right.get_legend() is not None


# ---------------------------------------------------------------- the tables behind them
def test_equilibrium_table_evaluates_each_relation_with_the_measured_steps():
    per = _per()
    predicted = {"L2 (seed, wd 0.1)": 0.01, "LRD (seed, α 0.005)": float("nan"), "Luon (seed, λ 0.5)": float("nan")}
    eq = tr.equilibrium_table(per, predicted, steps=400, lrd_arms=["LRD (seed, α 0.005)"])
    assert list(eq.index) == list(predicted)
    l2, lrd = eq.loc["L2 (seed, wd 0.1)"], eq.loc["LRD (seed, α 0.005)"]
    assert l2["angle/step measured"] == pytest.approx(0.01) and l2["‖W‖ predicted"] == pytest.approx(0.002 / 0.01)
    assert l2["measured / predicted angle"] == pytest.approx(1.0)
    assert lrd["angle/step predicted"] == pytest.approx(2 * 0.0005 / 0.006) and lrd["‖W‖ predicted"] == pytest.approx(0.006 ** 2 / 0.001)
    assert np.isnan(eq.loc["Luon (seed, λ 0.5)", "angle/step predicted"])


def test_assumption_table_drift_radial_share_and_relaxation_time():
    per = _per()
    per.loc[per.step >= 300, "opt_tan"] *= 0.5                 # the last quarter's tangential step halves
    predicted = {"L2 (seed, wd 0.1)": 0.01, "LRD (seed, α 0.005)": float("nan")}
    a = tr.assumption_table(per, predicted, steps=400)
    assert list(a.index) == list(predicted)
    assert a.loc["L2 (seed, wd 0.1)", "‖T(opt)‖ last/first quarter"] == pytest.approx(0.5)
    assert a.loc["L2 (seed, wd 0.1)", "|opt radial| / opt tangential (last quarter)"] == pytest.approx(0.001 / 0.001)
    assert a.loc["L2 (seed, wd 0.1)", "1/(2ηλ) (steps)"] == pytest.approx(1e4)
    assert np.isnan(a.loc["LRD (seed, α 0.005)", "1/(2ηλ) (steps)"])


def test_luon_lambda_table_crossing_and_memorisation():
    rec = {"status": "ok", "config": {"seed": 3, "steps": 400, "grok_threshold": 0.99, "grok_hold": 100, "optim": {"luon_lambda": 0.5}},
           "history": {"step": [0, 100, 200, 300, 400], "train_acc": [0.1, 0.9, 1.0, 1.0, 1.0], "val_acc": [0.1, 0.2, 0.995, 0.995, 0.995]}}
    ratios = pd.DataFrame({"seed": 3, "step": [100, 200, 300, 400], "ratio": [0.5, 0.8, 1.5, 0.9], "angle_rate": [0.1, 0.2, 0.3, 0.4]})
    t = tr.luon_lambda_table([rec], ratios, steps=400)
    row = t.loc[3]
    assert row["λ"] == 0.5 and row["first step > 1"] == 300 and row["memorised at"] == 200 and row["steps to grok"] == 200
    assert row["share > 1 (last quarter)"] == 0.5 and row["λ‖W‖/‖G‖ median (last quarter)"] == pytest.approx(1.2)   # steps 300, 400
    assert row["angle/step (last quarter)"] == pytest.approx(0.35) and row["λ‖W‖/‖G‖ at first eval"] == 0.5


def test_seed_run_records_groups_by_arm_and_drops_failed(monkeypatch):
    def fake_sweep(cfgs, labels=None, return_records=True, **kw):
        return None, [{"status": "failed" if i == 0 else "ok", "config": c.to_dict()} for i, c in enumerate(cfgs)]

    monkeypatch.setattr("lrdlib.runs.trajectory.run_sweep", fake_sweep)
    recs = tr.seed_run_records("smoke")
    assert list(recs) == SEED_ARMS
    assert len(recs[SEED_ARMS[0]]) == 0 and all(len(v) == 1 for v in list(recs.values())[1:])


def test_phase_table_and_key_overlap():
    pm = _pm(methods=("L2", "LRD"), seeds=(0,))
    pm[("LRD", 0)][1]["keys"] = [3, 7]
    phases = fo.phase_table(pm, {"L2": 1.0, "LRD": 0.01})
    row = phases.iloc[0]
    assert (row.memorised, row.cleanup, row.grokked) == (100.0, 200.0, 200.0)
    assert row["restricted@m"] == pytest.approx(0.55) and row["n_keys"] == 2 and row["strength"] == 1.0
    assert fo.key_overlap(phases, "L2", "LRD") == {0: pytest.approx(1 / 3)}   # {3, 5} vs {3, 7}


def test_resize_summary_and_runs():
    rz = resize_frame({0: ({}, _resize_measures()), 1: ({}, None)})
    s = resize_summary(rz)
    assert (s["projections"], s["resizes"], s["lost"]) == (4, 2, 1)        # the first keeps full rank; 0.4 → 0.38 loses 0.02
    assert s["worst_d_val_acc"] == pytest.approx(-0.02) and s["rank_first"] == 128 and s["rank_last"] == 36
    assert s["d_val_loss_max"] == pytest.approx(0.3) and s["d_val_loss_median_no_resize"] == pytest.approx(0.0)
    runs = resize_runs({"adaptive": {0: _run(0, True), 1: _run(1, False)}, "plain": {0: _run(0, False), 1: {"status": "failed"}}})
    assert runs[["arm", "seed"]].values.tolist() == [["adaptive", 0], ["plain", 0], ["adaptive", 1]]
    assert runs.steps_to_grok.iloc[0] == 200 and runs.steps_to_grok.isna().tolist() == [False, True, True]
    assert runs.qk_srank.iloc[0] == pytest.approx(5.0)


def test_plot_moonshot_one_bar_per_population_and_threshold_lines():
    t = pd.DataFrame({"label": ["rank", "rate"], "rho": [0.1, -0.5], "p": [0.3, 1e-9], "n": [120, 120]},
                     index=["srank", "angle_rate"])
    fig = pf.plot_moonshot({"all": t, "a + b": t.assign(rho=[0.2, np.nan], n=[100, 90])}, threshold=0.8)
    ax = _panels(fig)[0]
    assert len(ax.patches) == 4 and [t.get_text() for t in ax.get_yticklabels()] == ["rank", "rate"]
    assert sorted(line.get_xdata()[0] for line in ax.lines) == [-0.8, 0, 0.8]
    assert _legend_texts(fig) == ["all (120 runs)", "a + b (100 runs)"]
