"""The figures of notebooks 03 and 04 (lrdlib.analysis.phase_figures) draw what their chapters
say, on small synthetic records; and the pieces those chapters read them from: the strength search
of notebook 04 driven to the end (lrdlib.analysis.phase.search_phase), paired rows against a
reference and the seed spread (lrdlib.analysis.survival)."""
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lrdlib.analysis import phase_figures as pf  # noqa: E402
from lrdlib.analysis.figures import arm_styles  # noqa: E402
from lrdlib.analysis.phase_search import search_phase  # noqa: E402
from lrdlib.analysis.survival import paired_rows, seed_spread  # noqa: E402
from lrdlib.runs.search import Search  # noqa: E402

ARMS = ["L2 (seed, wd 0.1)", "LRD (seed, α 0.005)"]
STY = arm_styles(ARMS)
EVAL, HOLD, BUDGET = 100, 300, 2000


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def record(seed, steps=BUDGET, grok_at=None, key=None, ceiling=0.5):
    """A run record: validation accuracy 0.5 until ``grok_at`` (None: never), then 1.0; training
    accuracy 1.0 from step 200; Q/K stable rank falling from 8 to 1; spectra, attention, ceiling."""
    xs = list(range(0, steps + 1, EVAL))
    acc = [1.0 if grok_at is not None and s >= grok_at else 0.5 for s in xs]
    srank = list(np.linspace(8, 1, len(xs)))
    names = [*pf.QK_PROJ, "layers.1.attn.q_proj.weight", "layers.1.attn.k_proj.weight"]
    return {"key": key or f"run-{seed}-{steps}-{grok_at}", "status": "ok", "device": "cpu", "steps_run": steps,
            "config": {"seed": seed, "steps": steps, "grok_threshold": 0.99, "grok_hold": HOLD},
            "history": {"step": xs, "val_acc": acc, "train_acc": [float(s >= 200) for s in xs], "val_loss": [1.0] * len(xs)},
            "final_val_acc": acc[-1], "max_val_acc": max(acc), "commutativity_ceiling": ceiling,
            "spectra": {n: {"stable_rank": srank} for n in names},
            "final_singular_values": {n: [4.0, 2.0, 1.0, 0.5] for n in names},
            "final_attention": [[[0.45, 0.45, 0.1], [0.3, 0.5, 0.2]], [[0.4, 0.4, 0.2], [0.5, 0.3, 0.2]]]}


RECORDS = {ARMS[0]: [record(s) for s in range(3)], ARMS[1]: [record(s, grok_at=800 + 100 * s) for s in range(3)]}


def tidy(cols, steps=(0, 100, 200, 300), arms=ARMS, seeds=(0, 1, 2)):
    """A tidy frame arm × seed × step with each column of ``cols`` a function of (seed, step)."""
    return pd.DataFrame([{"arm": a, "seed": s, "step": t, **{c: f(s, t) for c, f in cols.items()}}
                         for a in arms for s in seeds for t in steps])


def lines_labelled(fig):
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


# ---------------------------------------------------------------- notebook 03
def test_accuracy_figure_two_panels_ceiling_and_legend():
    hist = tidy({"val_acc": lambda s, t: t / 400, "train_acc": lambda s, t: 1.0})
    fig = pf.accuracy_figure(hist, 0.48, STY, "validation")
    axes = fig.axes
    assert len(axes) == 2
    assert [ax.get_ylabel() for ax in axes] == ["validation accuracy", "training accuracy"]
    assert axes[0].get_title() == "validation" and axes[1].get_title() == "training"
    assert len(axes[0].get_lines()) == len(ARMS) + 1 and len(axes[1].get_lines()) == len(ARMS)   # + the ceiling
    labels = lines_labelled(fig)
    assert f"{ARMS[0]} (n = 3)" in labels and "memorisation + commutativity (0.48)" in labels


def test_grok_outcomes_figure_counts_grokked_runs():
    fig = pf.grok_outcomes_figure(RECORDS, STY, BUDGET, HOLD)
    (ax,) = fig.axes
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == [f"{ARMS[0]}\n0/3 grokked", f"{ARMS[1]}\n3/3 grokked"]
    assert f"{HOLD} steps" in ax.get_title() and f"not within {BUDGET} steps" in ax.get_title()


def test_rank_figure_log_panels_and_rank_tables():
    per_run = tidy({"stable_rank": lambda s, t: 8 - t / 50, "entropy_rank": lambda s, t: 20 - t / 50}, steps=(0, 100, 200, 300, 600))
    fig = pf.rank_figure(per_run, STY)
    assert len(fig.axes) == 2 and all(ax.get_yscale() == "log" for ax in fig.axes)
    assert all(len(ax.get_lines()) == len(ARMS) for ax in fig.axes)
    assert fig.axes[0].get_ylabel() == "stable rank (mean of 4 Q/K)" and "entropy rank" in fig.axes[1].get_title()
    table = pf.rank_table(per_run, by_step=500)
    assert list(table.columns) == ["srank@0", "srank@≤500 (min)", "first step srank<2", "min srank", "at step",
                                   "max srank after min", "final srank"]
    row = table.loc[(ARMS[1], 0)]
    assert row["srank@0"] == 8 and row["srank@≤500 (min)"] == 2 and row["first step srank<2"] == 600
    assert row["min srank"] == row["final srank"] == -4 and row["at step"] == 600


def test_srank_at_grok_reads_the_grokking_step():
    per_run = pd.DataFrame([{"arm": a, "seed": r["config"]["seed"], "step": s, "stable_rank": v}
                            for a, recs in RECORDS.items() for r in recs
                            for s, v in zip(r["history"]["step"], r["spectra"][pf.QK_PROJ[0]]["stable_rank"])])
    at = pf.srank_at_grok(RECORDS, per_run)
    assert list(at.arm) == [ARMS[1]] * 3 and list(at["grok step"]) == [800, 900, 1000]   # L2 never grokked
    assert at["srank at grok"].iloc[0] == pytest.approx(8 - 7 * 8 / 20) and (at["final srank"] == 1).all()


def test_spectra_figure_one_panel_per_matrix():
    sv = pf.final_spectra(RECORDS)
    assert set(sv.matrix) == set(pf.QK_PROJ) and sv.rel.max() == 1 and sv.rel.min() == 0.125
    fig = pf.spectra_figure(sv, STY, 4000)
    assert len(fig.axes) == 2 and fig.axes[0].get_ylabel() == "σᵢ / σ₁"
    assert [ax.get_title() for ax in fig.axes] == ["block 0 q_proj at step 4000", "block 0 k_proj at step 4000"]
    assert len(fig.axes[0].get_legend().get_texts()) == len(ARMS)


def test_attention_figure_one_map_per_arm_and_operand_share():
    att = pf.attention_frame(RECORDS)
    fig = pf.attention_figure(att, STY)
    maps = [ax for ax in fig.axes if ax.images]
    assert len(maps) == len(ARMS) and len(fig.axes) == len(ARMS) + 1   # + the colour bar
    assert [ax.get_title() for ax in maps] == ARMS
    assert [t.get_text() for t in maps[0].get_xticklabels()] == ["key a", "key b", "key ="]
    assert [t.get_text() for t in maps[0].get_yticklabels()][0] == "block 0 head 0"
    share = pf.operand_share(att)
    assert share.loc[(ARMS[0], 0, 0), "operand share P(a)+P(b)"] == pytest.approx((0.9 + 0.8) / 2)
    assert share.loc[(ARMS[0], 0, 1), "|P(a)−P(b)|"] == pytest.approx(0.1)


def test_tangential_figure_four_panels_and_memorisation_table():
    tang = pd.concat([tidy({"grad_rad": lambda s, t: 1e-9, "grad_tan": lambda s, t: 1.0, "update_tan": lambda s, t: 0.1,
                            "decay_tan": lambda s, t: 0.03, "decay_rad": lambda s, t: 0.04}).assign(matrix=m) for m in "qk"])
    spec = pd.concat([tidy({"fro": lambda s, t: 2.0}).assign(matrix=m) for m in "qk"])
    tt = pf.sphere_frame(tang, spec)
    assert tt.grad_sphere.eq(2.0).all() and tt.angular_step.eq(0.05).all()
    assert tt.decay_tan_share.iloc[0] == pytest.approx(0.6) and tt.decay_over_update.iloc[0] == pytest.approx(0.3)
    fig = pf.tangential_figure(tt, STY, ARMS[1])
    assert len(fig.axes) == 4
    assert [ax.get_title()[:3] for ax in fig.axes] == ["(a)", "(b)", "(c)", "(d)"]
    assert [t.get_text() for t in fig.axes[3].get_legend().get_texts()] == ["LRD: ‖T(decay)‖/‖decay‖ (n = 3)",
                                                                          "LRD: ‖T(decay)‖/‖T(ΔW)‖ (n = 3)"]
    hist = tidy({"train_acc": lambda s, t: float(t >= 200)})
    mem = pf.memorisation_table(hist, tt)
    assert (mem["memorised at"] == 200).all() and (mem["angular step after (rad)"] == 0.05).all()


# ---------------------------------------------------------------- notebook 04
FRACS, METHODS = [0.3, 0.5], ["L2", "LRD"]
SYMBOLS = {"L2": "wd λ", "LRD": "α"}


def test_phase_diagram_marks_outcomes_and_table_strengths():
    searched = pd.DataFrame([{"method": m, "frac": f, "strength": s, "time": 500.0 * (i + 1) if i < 2 else BUDGET,
                              "event": i < 2, "final_val_acc": 1.0 if i < 2 else 0.5, "capped": i == 2 and f == 0.5,
                              "table": i == 0} for m in METHODS for f in FRACS for i, s in enumerate([0.1, 0.3, 1.0])])
    fig = pf.phase_diagram(searched, FRACS, arm_styles(METHODS), SYMBOLS, {0.3: 0.3, 0.5: 0.5}, BUDGET, EVAL, "search")
    panels = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    assert len(panels) == 2 * len(METHODS) and len(fig.axes) == len(panels) + 2   # + 2 colour bars
    assert [ax.get_title() for ax in panels[:2]] == METHODS and [ax.get_xlabel() for ax in panels[2:]] == ["L2 wd λ", "LRD α"]
    assert [t.get_text() for t in panels[2].get_yticklabels()] == ["0.3 (0.30)", "0.5 (0.50)"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["0.1", "0.3", "1"]
    rings = [c for c in panels[0].collections if c.get_sizes().size and c.get_sizes()[0] == 130]
    assert len(rings) == 1 and len(rings[0].get_offsets()) == len(FRACS)   # one table strength per fraction
    assert fig._suptitle.get_text() == "search"
    assert lines_labelled(fig) == ["lasting grok", f"not within {BUDGET} steps", "not within its stage-B cap", "best strength"]


FINAL = {("L2", 0.3): {0: (800.0, True), 1: (BUDGET, False)}, ("LRD", 0.3): {0: (400.0, True), 1: (600.0, True)},
         ("L2", 0.5): {0: (300.0, True), 1: (500.0, True)}, ("LRD", 0.5): {0: (200.0, True), 1: (BUDGET, False)}}


def test_km_curves_one_panel_per_fraction_with_censoring_ticks():
    fig = pf.km_curves(FINAL, METHODS, FRACS, arm_styles(METHODS), BUDGET)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["train fraction 0.3", "train fraction 0.5"]
    steps = [ln for ln in panels[0].get_lines() if ln.get_drawstyle() == "steps-post"]
    assert len(steps) == len(METHODS) and steps[0].get_ydata()[-1] == 0.5 and steps[1].get_ydata()[-1] == 1.0
    ticks = [ln for ax in panels for ln in ax.get_lines() if ln.get_marker() == "|"]
    assert len(ticks) == 2   # L2 at 0.3 and LRD at 0.5 have a run censored at the budget
    assert "censored at the budget" in lines_labelled(fig) and "2 seed(s)" in fig._suptitle.get_text()


def test_verdict_figure_medians_and_shares():
    table = pd.DataFrame([{"frac": f, "method": m, "n": 2, "grokked": k, "share": k / 2, "wilson_lo": 0.1, "wilson_hi": 0.9,
                           "km_median": 800.0 if k == 2 else math.inf, "median_lo": 400.0, "median_hi": math.inf}
                          for f in FRACS for m, k in zip(METHODS, (2, 1))])
    fig = pf.verdict_figure(table, METHODS, FRACS, arm_styles(METHODS), BUDGET, n_seeds=2)
    top, bottom = fig.axes
    assert top.get_yscale() == "log" and top.get_ylabel() == "KM median steps to grok"
    assert {t.get_text() for t in top.texts} == {"budget", "> budget"}
    assert [t.get_text() for t in bottom.get_yticklabels()] == ["0/2", "1/2", "2/2"]
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["0.3", "0.5"]
    hollow = [c for c in top.collections if len(c.get_offsets()) and np.allclose(c.get_offsets()[:, 1], 2 * BUDGET)]
    assert len(hollow) == 1 and len(hollow[0].get_offsets()) == len(FRACS)   # LRD's median is beyond the budget
    assert lines_labelled(fig) == METHODS


# ---------------------------------------------------------------- the search driver and the statistics
def test_search_phase_confirms_the_reference_and_starts_the_follower_after_it():
    """L2's fastest strength on the search seed groks on no other seed; its runner-up groks on all:
    stage E replaces it, and the follower's other parameters use the runner-up."""
    def grok(method, strength, seed):
        if method == "L2":
            return 400 if strength == 1.0 and seed == 0 else 800 if strength == 3.0 else None
        return 600 if strength in (0.01, 0.5) else 700   # the centre is the best

    asked = []

    def config_of(method, frac, point, other_wd):
        asked.append((method, other_wd))
        return (method, frac, point)

    def sweep(cfgs, return_records):
        recs = [record(p.seed, p.steps, grok(m, p.strength, p.seed), key=f"{m}-{f}-{p.strength}-{p.seed}-{p.steps}")
                for m, f, p in cfgs]
        return pd.DataFrame({"status": [r["status"] for r in recs], "steps_run": [r["steps_run"] for r in recs]}), recs

    centre = {"L2": 1.0, "LRD": 0.01, "fixed norm": 0.5}
    ps = search_phase(["L2", "LRD", "fixed norm"], [0.5], lambda m: Search(centre[m], BUDGET, EVAL, seeds=(0, 1, 2), n=3,
                                                                           max_extensions=0),
                      config_of, budget=BUDGET, sweep=sweep, log=None)
    assert all(s.done for s in ps.searches.values()) and set(ps.searches) == {("L2", 0.5), ("LRD", 0.5), ("fixed norm", 0.5)}
    assert ps.searches[("L2", 0.5)].best_strength == 1.0 and ps.replaced("L2", 0.5) and ps.table_strength("L2", 0.5) == 3.0
    assert ps.other_wd == {0.5: 3.0} and {w for m, w in asked if m == "fixed norm"} == {3.0}
    assert ps.confirmations() == {0.5: {"best": 1.0, "best_grokked": 1, "n": 3, "runner_up": 3.0, "runner_up_grokked": 3,
                                        "runner_up_n": 3, "choice": "runner-up"}}
    final, before = ps.final(), ps.final(before_e=True)
    assert final[("L2", 0.5)] == {0: (800.0, True), 1: (800.0, True), 2: (800.0, True)}
    assert sum(e for _, e in before[("L2", 0.5)].values()) == 1 and before[("LRD", 0.5)] == final[("LRD", 0.5)]
    rows = ps.table({"L2": "wd λ", "LRD": "α", "fixed norm": "r"}, ps.ceiling(), n_boot=50)
    assert [(r["method"], r["best_strength"], r["grokked"], r["other_wd"]) for r in rows] == [
        ("L2", 3.0, 3, None), ("LRD", 0.01, 3, None), ("fixed norm", 0.5, 3, 3.0)]
    assert rows[0]["ceiling"] == 0.5 and rows[0]["budget"] == BUDGET and rows[0]["at_edge"] == "high"
    searched = ps.searched_frame()
    assert searched[searched.table].groupby("method").strength.first().to_dict() == {"L2": 3.0, "LRD": 0.01, "fixed norm": 0.5}
    assert ps.stats["rounds"] >= 3 and len(ps.unique_records()) < len(ps.records)   # stage E reuses the seed-0 run


def test_paired_rows_and_seed_spread():
    rows = paired_rows(FINAL, "LRD", "L2", FRACS, n_boot=50)
    assert [r["frac"] for r in rows] == FRACS
    assert rows[0]["a_median"] == 400 and rows[0]["b_median"] == 800 and rows[0]["a_first"] == 2 and rows[0]["seeds"] == 2
    spread = {r["arm"]: r for r in seed_spread(RECORDS, n_boot=50)}
    assert spread[ARMS[0]]["lasting groks"] == 0 and math.isinf(spread[ARMS[0]]["KM median"]) and math.isnan(spread[ARMS[0]]["q25"])
    lrd = spread[ARMS[1]]
    assert (lrd["seeds"], lrd["lasting groks"], lrd["min"], lrd["max"], lrd["KM median"]) == (3, 3, 800, 1000, 900)
    assert lrd["q25"] == 850 and lrd["q75"] == 950
