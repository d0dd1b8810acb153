"""The generality study's plan and short search (``paper/generality.md``), on made-up records."""
import math

import pytest

from lrdlib.core.recipes import Setting
from lrdlib.runs import generality as G
from lrdlib.runs import halving as H
from tests.test_halving import fake_sweep


def test_plan_follows_the_design_order_and_refuses_a_fraction_outside_the_protocol():
    p = G.plan(0.35, 0.5)
    labels = [s.label() for s, _ in p]
    assert labels[:5] == ["p=59", "p=97", "p=211", "width=64", "width=256"] and labels[5] == "p=401"
    assert labels[6:11] == ["op=sub", "op=mul", "op=div", "op=quad", "op=recall,p=24"]
    assert {f for _, f in p[:17]} == {0.35} and {f for _, f in p[17:]} == {0.5} and len(p) == 17 + 11
    assert Setting.parse("lr_scale=1/3") in [s for s, _ in p] and len(G.plan(0.35)) == 17
    assert [s for s, _ in p[17:]] == G.settings_for("none") and Setting(op="quad") not in G.settings_for("none")
    with pytest.raises(ValueError, match="fraction 0.45"):
        G.plan(0.45)
    with pytest.raises(ValueError, match="f_none=0.35 equals f_big"):
        G.plan(0.35, 0.35)


def test_short_search_varies_the_other_decay_only_on_the_search_seed_and_evaluates_five_fresh_seeds():
    seen = []

    def time_of(cfg):   # λₒ 3 × the protocol's best is fastest: an edge
        seen.append((cfg.seed, cfg.steps, cfg.model.dim, cfg.decay.strength, cfg.optim.weight_decay))
        return int(3000 - 600 * math.log(cfg.optim.weight_decay))
    sweep, calls = fake_sweep(time_of)
    res = G.run_setting({"LRD": (0.01, 1.0)}, 0.35, Setting(width=64), sweep=sweep)
    search, evals = seen[:3], seen[3:]
    assert {s[:3] for s in search} == {(100, 6000, 64)} and {s[3] for s in search} == {0.01}
    assert sorted(s[4] for s in search) == pytest.approx([1 / 3, 1.0, 3.0])
    assert res["LRD"]["best"] == (0.01, 3.0) and res["LRD"]["at_edge"]
    assert [s[0] for s in evals] == list(H.FIVE_SEEDS) and {s[1] for s in evals} == {H.BUDGET}
    assert calls == [3, 5] and len(res["LRD"]["records"]) == 5
    l2 = G.short_search("tuned L2", 0.35, (1.0, None), Setting(p=97), sweep=fake_sweep(lambda c: 500)[0])
    assert sorted(r["cell"][0] for r in l2["rows"]) == pytest.approx([1 / 3, 1.0, 3.0]) and not l2["at_edge"]


# ---------------------------------------------------------------- the analysis, from a made-up store
def _by_width(cfg):
    """LRD's advantage grows with width: LRD groks at 2,000 × (128 / width) + 20·seed, tuned L2 at
    2,000 + 50·seed; every cell but the protocol's best later; p = 97 has no runs at all."""
    from tests.test_protocol import lrd_fast
    base = lrd_fast(cfg)
    if cfg.decay.kind == "lrd_ns":
        return int(base + 1500 - 2000 * (1 - 128 / cfg.model.dim)) // 100 * 100
    return base


def test_table_trend_and_settings_entry_from_a_store_without_training():
    from lrdlib.analysis import generality as A
    from tests.test_protocol import FakeCache
    cache = FakeCache(_by_width, have=lambda cfg: cfg.task.p != 97)
    settings = [Setting(width=64), Setting(width=256), Setting(p=97)]
    states = A.load(cache, 0.5, settings=settings)
    assert set(states) == {"", "width=64", "width=256", "p=97"} and states["p=97"]["missing"] > 0
    assert states["width=64"]["best"] == {"tuned L2": (1.0, None), "LRD": (0.01, 1.0)}
    t = A.table(states, n_boot=200)
    assert t.setting.tolist() == ["seed", "width=64", "width=256"] and set(t.n) == {10, 5}
    ratios = dict(zip(t.setting, t.ratio))
    assert ratios["width=256"] < ratios["seed"] < ratios["width=64"]
    assert t.set_index("setting").loc["width=256", "rank_bound"] == 256
    tr = A.trend(t, "width", at=512)
    assert tr["n"] == 3 and tr["slope"] < 0 and tr["predicted"] < ratios["width=256"]
    assert tr["pred_lo"] <= tr["predicted"] <= tr["pred_hi"]
    assert A.trend(t, "p")["verdict"] == "too few settings"
    entry = A.settings_entry(t)
    assert {k for k in ("width", "depth", "p", "lr", "batch")} <= set(entry[0]) and entry[1]["width"] == 64
    assert entry[0]["lr"] == pytest.approx(1e-3) and entry[2]["verdict"] == "helps"


def test_verdict_and_axis_of():
    from lrdlib.analysis import generality as A
    assert A.verdict(0.5, 0.3, 0.8) == "helps" and A.verdict(2, 1.2, 3) == "hurts"
    assert A.verdict(0.9, 0.5, 1.5) == "cannot be told apart" and A.verdict(float("nan"), 0, 1) == "cannot be told apart"
    assert A.axis_of(Setting(p=97)) == ("p", 97) and A.axis_of(Setting()) == ("seed", "")
    assert A.axis_of(Setting.parse("op=recall,p=24")) == ("op", "recall")
    with pytest.raises(ValueError, match="differs from the seed setting in 2 fields"):
        A.axis_of(Setting(p=97, width=64))


def test_quad_runs_at_the_first_fraction_from_f_big_up_where_lrd_groks_on_the_probe_seed():
    seen = []

    def groks_from(f0):
        def time_of(cfg):
            seen.append((cfg.task.op, cfg.task.train_frac, cfg.seed, cfg.steps, cfg.decay.strength))
            return 3000 if cfg.task.train_frac >= f0 - 1e-9 else None
        return fake_sweep(time_of)[0]
    quad = Setting(op="quad")
    assert G.task_fraction(quad, 0.35, (0.03, 0.1), sweep=groks_from(0.55)) == 0.55
    assert [s[1] for s in seen] == [0.35, 0.45, 0.55] and {s[2:] for s in seen} == {(100, 20000, 0.03)}
    assert G.task_fraction(quad, 0.35, (0.03, 0.1), sweep=groks_from(1.0)) is None and seen[-1][1] == 0.85
    seen.clear()
    assert G.task_fraction(Setting(op="sub"), 0.35, (0.03, 0.1), sweep=groks_from(0.9)) == 0.35 and not seen


def _ptable(ratios, decisions=None, hi=None):
    import pandas as pd
    return pd.DataFrame([{"recipe": "LRD", "endpoint": "stable", "frac": f, "ratio": r, "hi": (hi or {}).get(f, 2 * r),
                          "n": 10 if f in (0.25, 0.35, 0.5) else 5, "decision": (decisions or {}).get(f, "not decided")}
                         for f, r in ratios.items()])


def test_fractions_wait_for_the_whole_primary_table_then_take_the_smallest_ratio_and_the_undecided_one_nearest_1():
    from lrdlib.analysis import generality as A
    part = A.choose_fractions(_ptable({0.5: 0.87}))
    assert part["f_big"] is None and part["fractions_in"] == 1 and "1 of 8" in part["sentence"]
    ratios = dict(zip(H.FRACTIONS, [0.6, 0.4, 0.8, 0.7, 1.3, 0.87, float("nan"), 1.05]))
    full = A.choose_fractions(_ptable(ratios, {0.25: "≥ 2× faster", 0.8: "slower"}))
    assert full["f_big"] == 0.25 and full["f_none"] == 0.5 and "F_big = 0.25" in full["sentence"] and full["lrd"] == "LRD"
    svt = _ptable(ratios).assign(recipe="SVT", ratio=0.3)
    import pandas as pd
    assert A.choose_fractions(pd.concat([_ptable(ratios), svt]))["lrd"] == "SVT"   # the family's best at F_big
    pstatus = pd.DataFrame([{"recipe": "SVT", "frac": 0.25, "evaluation": "3/10"},
                            {"recipe": "exact polar", "frac": 0.5, "evaluation": "0/10"}])
    wait = A.choose_fractions(_ptable(ratios), pstatus=pstatus)
    assert wait["lrd"] is None and "waits for the evaluation of SVT" in wait["sentence"]
    assert A.choose_fractions(_ptable(ratios), pstatus=pstatus.assign(evaluation="not planned"))["lrd"] == "LRD"
    at_none = pd.DataFrame([{"recipe": "exact polar", "frac": 0.8, "evaluation": "2/10"}])   # F_none here is 0.8
    w = A.choose_fractions(_ptable(ratios), pstatus=at_none)
    assert w["lrd"] == "LRD" and w["lrd_none"] is None and "waits for the evaluation of exact polar" in w["sentence"]
    none_left = A.choose_fractions(_ptable(ratios, {f: "faster" for f in H.FRACTIONS}))
    assert none_left["f_none"] is None and "no F_none" in none_left["sentence"]
    ties = dict(zip(H.FRACTIONS, [0.0, 0.0, 0.0, 0.5, 1.1, 0.9, 0.0, 2.0]))   # ratio 0: tuned L2's median beyond its runs
    t = A.choose_fractions(_ptable(ties, hi={0.2: 0.3, 0.25: 0.3, 0.3: 0.2, 0.6: 0.2}))
    assert t["f_big"] == 0.3 and t["f_none"] == 0.4   # the smaller upper bound, then the more seeds; 0 is never F_none
    t = A.choose_fractions(_ptable(ties, hi={0.2: 0.3, 0.25: 0.3, 0.3: 0.3, 0.6: 0.3}))
    assert t["f_big"] == 0.25 and t["lrd"] == "LRD" and t["lrd_none"] == "LRD"   # equal bounds: the ten-seed fraction
    undecided_big = A.choose_fractions(_ptable(dict(zip(H.FRACTIONS, [0.4, 0.6, 0.9, 0.7, 1.3, 0.87, 1.2, 1.05]))))
    assert undecided_big["f_big"] == 0.2 and undecided_big["f_none"] == 0.8   # F_none is never F_big
    nothing = A.choose_fractions(_ptable(dict.fromkeys(H.FRACTIONS, float("nan"))))
    assert nothing["f_big"] is None and "no F_big" in nothing["sentence"]


def test_status_scaling_statement_and_figure_from_a_made_up_store():
    import matplotlib.pyplot as plt

    from lrdlib.analysis import generality as A
    from lrdlib.analysis.generality_figures import ratio_by_axis
    from tests.test_protocol import FakeCache
    cache = FakeCache(_by_width)
    states = A.load(cache, 0.5, settings=[Setting(width=64), Setting(width=256), Setting(p=401), Setting(op="sub")])
    st = A.status(states)
    assert st.setting.tolist() == ["seed", "width=64", "width=256", "p=401", "op=sub"] and set(st.missing) == {0}
    t = A.table(states, n_boot=100)
    sc = A.scaling_statement(t)
    assert sc["width"]["slope"] < 0 and sc["p"]["verdict"] == "too few settings"   # p=401 stays out of the fit
    assert sc["measured"]["ratio"] == pytest.approx(t.set_index("setting").loc["p=401", "ratio"])
    assert sc["measured"]["inside"] is None   # no prediction, so neither inside nor outside
    assert len(t.boot.iloc[0]) == 100
    assert {"final_srank", "b_final_srank"} <= set(t.columns)
    fig = ratio_by_axis(t, {"predicted": 0.8, "pred_lo": 0.5, "pred_hi": 1.2})
    width_ax = fig.axes[1]
    assert [x.get_text() for x in width_ax.get_xticklabels()] == ["64", "128", "256"]
    assert [x.get_text() for x in fig.axes[0].get_xticklabels()] == ["113", "401"]
    plt.close(fig)
    empty = ratio_by_axis(A.table({}))
    assert all("no setting" in " ".join(x.get_text() for x in ax.texts) for ax in empty.axes)
    plt.close(empty)


def test_the_slope_interval_comes_from_the_bootstrap_refits_and_a_ratio_of_0_leaves_only_its_own_fit():
    import pandas as pd

    from lrdlib.analysis import generality as A
    rng = __import__("numpy").random.default_rng(0)
    rows = []
    for axis, value, ratio in (("seed", "", 1.0), ("p", 59, 1.6), ("p", 97, 1.15), ("p", 211, 0.55)):
        boot = ratio * __import__("numpy").exp(rng.normal(0, 0.05, 300))
        rows.append({"axis": axis, "value": value, "ratio": ratio, "lo": 0.0, "hi": float("inf"), "boot": boot.tolist()})
    t = pd.DataFrame(rows)   # every interval unbounded: a 1/se² weighting would give no fit at all
    tr = A.trend(t, "p", at=401)
    assert tr["n"] == 4 and tr["n_boot_used"] == 300 and tr["verdict"] == "advantage grows"
    assert tr["slope_lo"] < tr["slope"] < tr["slope_hi"] < 0 and tr["pred_lo"] < tr["predicted"] < tr["pred_hi"] < 0.55
    t.loc[3, "ratio"] = 0.0
    assert A.trend(t, "p")["n"] == 3   # the point fit leaves the ratio of 0 out; the refits keep theirs
    assert A.trend(t.iloc[:1], "p")["verdict"] == "too few settings"


def test_a_quad_setting_without_a_grok_is_reported_not_dropped():
    from lrdlib.analysis import generality as A
    from tests.test_protocol import FakeCache, lrd_fast

    def time_of(cfg):
        return None if cfg.task.op == "quad" else lrd_fast(cfg)
    states = A.load(FakeCache(time_of), 0.5, settings=[Setting(op="quad"), Setting(op="sub")])
    st = A.status(states).set_index("setting")
    assert st.loc["op=quad", "missing"] == 0 and "no stable grok on seed 100" in st.loc["op=quad", "note"]
    assert "0.5, 0.6, 0.7, 0.8, 0.9" in st.loc["op=quad", "note"] and st.loc["op=sub", "note"] == ""
    assert A.table(states, n_boot=50).setting.tolist() == ["seed", "op=sub"]


def test_task_fraction_wants_a_stable_grok_not_a_first_one():
    from tests.test_halving import fake_record

    def sweep(cfgs, return_records=True, **kw):   # groks at 1,000, then collapses to 0.5 from 3,000 on
        rec = fake_record(cfgs[0], 1000)
        rec["history"]["val_acc"] = [a if s < 3000 else 0.5 for s, a in zip(rec["history"]["step"], rec["history"]["val_acc"])]
        return None, [rec]
    assert G.task_fraction(Setting(op="quad"), 0.5, (0.03, 0.1), sweep=sweep) is None
    assert G.probe_fractions(0.35) == [0.35, 0.45, 0.55, 0.65, 0.75, 0.85] and G.probe_fractions(0.8) == [0.8, 0.9]


def test_f_big_reads_a_ratio_of_0_as_the_bound_the_runs_allow():
    from lrdlib.analysis import generality as A
    ratios = dict(zip(H.FRACTIONS, [0.34, 0.51, 0.0, 0.29, 0.9, 0.87, 0.8, 1.1]))
    for bound, big in ((0.27, 0.3), (0.4, 0.35)):
        t = _ptable(ratios)
        t["ratio_bound"] = t.ratio.where(t.ratio > 0, bound)
        out = A.choose_fractions(t)
        assert out["f_big"] == big and out["ratio_big"] == pytest.approx(min(bound, 0.29))
        assert ("the bound its runs allow" in out["sentence"]) == (big == 0.3)
