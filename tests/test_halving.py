"""The protocol's recipes and its successive-halving search, on made-up records."""
import json
import math

import pytest

from lrdlib.core.recipes import RECIPES, recipe_config
from lrdlib.runs import halving as H


def fake_record(cfg, steps_to_stable):
    """A record whose validation accuracy jumps to 1 at ``steps_to_stable`` (None: never)."""
    steps = list(range(0, cfg.steps + 1, cfg.eval_every))
    acc = [1.0 if steps_to_stable is not None and s >= steps_to_stable else 0.5 for s in steps]
    return {"key": cfg.key(), "status": "ok", "config": cfg.to_dict(), "history": {"step": steps, "val_acc": acc}}


def fake_sweep(time_of):
    calls = []

    def sweep(cfgs, return_records=True, **kw):
        calls.append(len(cfgs))
        return None, [fake_record(c, time_of(c)) for c in cfgs]
    return sweep, calls


def test_recipes_differ_in_qk_treatment_and_other_decay_only():
    kw = dict(train_frac=0.5, seed=1000, steps=2000)
    l2 = recipe_config("tuned L2", 1.0, None, **kw)
    assert l2.optim.weight_decay == l2.optim.target_weight_decay == 1.0 and l2.observe == 5000 and l2.early_stop
    lrd = recipe_config("LRD", 0.01, 0.3, **kw)
    assert (lrd.decay.kind, lrd.decay.strength, lrd.optim.weight_decay, lrd.optim.target_weight_decay) == ("lrd_ns", 0.01, 0.3, 0.0)
    luon = recipe_config("Luon", 0.5, 1.0, **kw)
    assert luon.optim.kind == "luon" and luon.optim.luon_lambda == 0.5 and luon.optim.weight_decay == 1.0
    none = recipe_config("no Q/K decay", None, 3.0, **kw)
    assert none.decay.kind == "none" and none.optim.target_weight_decay == 0.0 and none.optim.weight_decay == 3.0
    assert len({recipe_config(r, RECIPES[r][0], 1.0, **kw).key() for r in RECIPES}) == len(RECIPES)
    with pytest.raises(ValueError, match="recipe='LDR'"):
        recipe_config("LDR", 0.01, 0.1, **kw)


def test_halving_keeps_the_best_and_uses_search_seeds_only():
    seen = []

    def time_of(cfg):
        seen.append(cfg.seed)
        return int(1000 * abs(math.log10(cfg.decay.strength / 0.01)) + 400 * abs(math.log10(cfg.optim.weight_decay))) + 200
    sweep, calls = fake_sweep(time_of)
    rows = H.halving([(a, b) for a in (0.003, 0.01, 0.03) for b in (0.1, 1.0)],
                     lambda c, s, n: recipe_config("LRD", c[0], c[1], train_frac=0.5, seed=s, steps=n), sweep=sweep)
    assert rows[0]["cell"] == (0.01, 1.0) and rows[0]["rung"] == 1 and rows[0]["score"][0] == 200
    assert calls == [6 * 1, 2 * 2]                    # 6 cells → a third (2), on two seeds (amendment A1)
    assert set(seen) == {100, 101}                    # never an evaluation seed
    rows3 = H.halving([(a, b) for a in (0.003, 0.01, 0.03) for b in (0.1, 1.0)],
                      lambda c, s, n: recipe_config("LRD", c[0], c[1], train_frac=0.5, seed=s, steps=n),
                      H.RUNGS + (H.Rung(2, (100, 101, 102), 20000),), sweep=sweep)
    assert rows3[0]["rung"] == 2 and calls[-1] == 2 * 3 and 102 in seen   # a third rung as the protocol first had it


def test_search_extends_the_grid_past_an_edge_at_most_twice():
    def time_of(cfg):   # the smaller α the faster, without end; λₒ best at 1
        return int(1e5 * cfg.decay.strength) + int(300 * abs(math.log10(cfg.optim.weight_decay))) + 100
    sweep, _ = fake_sweep(time_of)
    found = H.search_recipe("LRD", 0.5, sweep=sweep)
    assert found["extensions"] == {"qk": [-2, -3], "other": []}
    assert found["best"] == (0.0003, 1.0) and found["grid"]["qk"][0] == 0.0003   # 0.003 → 0.001 → 0.0003
    assert found["grid"]["other"] == [0.3, 1.0, 3.0]


def test_one_knob_recipes_search_five_points_two_knob_ones_three_by_three():
    assert H._grid("tuned L2", {}) == ([0.1, 0.3, 1.0, 3.0, 10.0], [None])
    assert H._grid("no Q/K decay", {"other": [3]}) == ([None], [0.1, 0.3, 1.0, 3.0, 10.0, 30.0])
    assert H._grid("Luon", {}) == ([3.0, 10.0, 30.0], [0.1, 0.3, 1.0])   # amendment A5
    assert H._grid("exact polar", {"other": [-3]}) == ([0.09, 0.3, 0.9], [0.03, 0.1, 0.3, 1.0])
    assert H._grid("LRD", {}) == ([0.003, 0.01, 0.03], [0.3, 1.0, 3.0])   # as searched before A5
    assert H.score([fake_record(recipe_config("LRD", 0.01, 1.0, train_frac=0.5, seed=100, steps=1000), None)])[0] == math.inf


def test_holm_matches_the_textbook_example():
    from lrdlib.analysis.survival import holm
    # Holm (1979) step-down: sorted p 0.01, 0.02, 0.03, 0.04 with m = 4 → 0.04, 0.06, 0.06, 0.06
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_protocol_rows_pair_by_seed_on_the_stable_endpoint():
    from lrdlib.analysis.survival import protocol_rows
    cfg = lambda s: recipe_config("LRD", 0.01, 1.0, train_frac=0.5, seed=s, steps=3000)
    l2 = lambda s: recipe_config("tuned L2", 1.0, None, train_frac=0.5, seed=s, steps=3000)
    fast = {0.5: [fake_record(cfg(s), 500 + 10 * s) for s in range(10)]}
    # tuned L2 reaches 0.99 early but only stays there from 2000 on: faster on "first", slower on "stable"
    slow = []
    for s in range(10):
        r = fake_record(l2(s), 2000)
        r["history"]["val_acc"][3] = 1.0                          # step 300: a transient grok
        slow.append(r)
    stable = protocol_rows(fast, {0.5: slow}, n_boot=200)[0]
    assert stable["a_first"] == 10 and stable["ratio"] < 0.5 and stable["p_holm"] == pytest.approx(stable["p"])
    first = protocol_rows(fast, {0.5: slow}, endpoint="first", n_boot=200)[0]
    assert first["b_first"] == 10


def test_unsearched_fractions_take_the_nearest_searched_setting():
    assert [H.searched_at("LRD", f) for f in H.FRACTIONS] == [0.25, 0.25, 0.25, 0.35, 0.35, 0.5, 0.5, 0.5]
    assert {H.searched_at("SVT", f) for f in H.FRACTIONS} == {0.35}
    with pytest.raises(ValueError, match="frac=0.45"):
        H.searched_at("LRD", 0.45)


def test_the_plan_runs_the_primary_comparison_first_and_the_cli_wants_all_or_one():
    p = H.plan()
    assert p[:4] == [("tuned L2", 0.5), ("LRD", 0.5), ("tuned L2", 0.35), ("LRD", 0.35)]
    assert {r for r, _ in p[:8]} == set(H.PRIMARY) and len(p) == 16 + 5
    assert [x for x in p if x[0] in H.PRIMARY] == [(r, f) for f in (0.5, 0.35, 0.25, 0.2, 0.3, 0.4, 0.6, 0.8)
                                                   for r in H.PRIMARY]
    assert {f for r, f in p if r not in H.PRIMARY} == set(H.SECONDARY_FRACTIONS)
    # amendments A6, A7 (order only): no Q/K decay at 0.35 first among the secondary recipes
    assert p[16] == ("no Q/K decay", 0.35) and len(set(p)) == len(p)


def test_amendment_a4_evaluates_the_secondary_recipes_on_ten_seeds_where_searched_only():
    assert len(H.eval_seeds("LRD", 0.25)) == len(H.eval_seeds("tuned L2", 0.5)) == 10 and len(H.eval_seeds("LRD", 0.2)) == 5
    assert H.SECONDARY_FRACTIONS == (0.35,) and len(H.eval_seeds("Luon", 0.35)) == 10
    assert len(H.eval_seeds("Luon", 0.5)) == 5   # outside the plan: a run by hand gets five seeds
    assert H.family_size("LRD") == 8 and H.family_size("SVT") == 1
    assert set(H.eval_seeds("SVT", 0.25)) <= set(H.eval_seeds("tuned L2", 0.25))   # pairs with tuned L2 by seed
    with pytest.raises(ValueError, match="frac=0.45"):
        H.eval_seeds("SVT", 0.45)
    for bad in ([], ["--all", "--recipe", "LRD"], ["--recipe", "LRD"]):
        with pytest.raises(SystemExit):
            H.main(bad)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_every_recipe_trains_a_few_steps_on_a_tiny_model(recipe):
    """The protocol's queue runs each recipe for hours; a recipe that cannot train must fail here."""
    from lrdlib.core.model import ModelConfig
    from lrdlib.core.training import run
    cfg = recipe_config(recipe, RECIPES[recipe][0], 1.0, train_frac=0.5, seed=100, steps=20, eval_every=10, p=23)
    cfg = cfg.replace(model=ModelConfig(vocab_size=24, dim=32, heads=4, mlp_dim=64), batch_size=64)
    rec, _ = run(cfg, progress=False)
    assert rec["status"] == "ok" and rec["history"]["step"][-1] == 20


def test_the_seed_setting_keeps_every_committed_protocol_key():
    """A run in the default ``Setting`` has the key it had before settings existed (the store holds it)."""
    from lrdlib.core.recipes import Setting
    cfg = recipe_config("tuned L2", 1.0, None, train_frac=0.5, seed=100, steps=4000)
    assert cfg.key() == "c963bffd1e8e3ab3dddd" == recipe_config("tuned L2", 1.0, None, train_frac=0.5, seed=100,
                                                                 steps=4000, setting=Setting()).key()
    assert Setting().label() == "" and Setting.parse("") == Setting() == Setting.parse("seed")
    lrd = recipe_config("LRD", 0.01, 1.0, train_frac=0.5, seed=1000, steps=20000)   # an evaluation run in the store
    assert lrd.key() == "a4839a416e045ded9e57" == recipe_config("LRD", 0.01, 1.0, train_frac=0.5, seed=1000, steps=20000,
                                                                  setting=Setting()).key()


def test_a_setting_moves_task_model_learning_rates_and_batch():
    from lrdlib.core.recipes import Setting
    s = Setting.parse("p=97,width=256,depth=1,lr_scale=1/3,batch=256,op=sub")
    assert s == Setting(op="sub", p=97, width=256, depth=1, lr_scale=1 / 3, batch=256)
    assert s.label() == "op=sub,p=97,width=256,depth=1,lr_scale=0.333333,batch=256"
    luon = recipe_config("Luon", 0.5, 1.0, train_frac=0.5, seed=1, steps=10, setting=s)
    assert (luon.task.op, luon.task.p, luon.model.vocab_size, luon.model.dim, luon.model.mlp_dim, luon.model.depth) == \
        ("sub", 97, 98, 256, 1024, 1)
    assert luon.optim.lr == pytest.approx(1e-3 / 3) and luon.optim.muon_lr == pytest.approx(0.02 / 3) and luon.batch_size == 256
    with pytest.raises(ValueError, match="'widht=3'"):
        Setting.parse("widht=3")
    with pytest.raises(ValueError, match="op='sqrt'.*recall"):
        Setting(op="sqrt")


def test_the_recall_setting_is_notebook_08s_task_over_its_p_symbols():
    from lrdlib.core.recipes import Setting
    from lrdlib.core.tasks import RECALL
    s = Setting.parse("op=recall,p=24")
    cfg = recipe_config("LRD", 0.03, 0.1, train_frac=0.35, seed=7, steps=10, setting=s)
    assert (cfg.task.op, cfg.task.p, cfg.task.pairs, cfg.task.samples) == ("recall", 24, RECALL.pairs, RECALL.samples)
    assert (cfg.task.train_frac, cfg.task.split_seed, cfg.model.vocab_size, cfg.model.seq_len) == (0.35, 7, 25, 7)
    assert cfg.decay.strength == 0.03 and cfg.optim.weight_decay == 0.1 and s.label() == "op=recall,p=24"


def test_sensitivity_s1_and_s3_run_their_declared_cells_on_their_declared_seeds():
    from lrdlib.analysis.protocol import recipe_of
    s1 = [c for r, f in H.S1_CELLS for c in H.s1_configs(r, f)]
    assert {c.seed for c in s1} == set(H.RUNGS[-1].seeds) and all(c.steps == H.BUDGET for c in s1)
    assert {recipe_of(c.to_dict()) for c in s1} == {("tuned L2", 0.1, None), ("tuned L2", 0.3, None)}
    s3 = H.s3_configs()
    assert [c.seed for c in s3] == list(H.FIVE_SEEDS) and all(c.steps == H.BUDGET for c in s3)
    assert {(recipe_of(c.to_dict()), c.task.train_frac) for c in s3} == {(("LRD", 0.03, 1.0), 0.35)}
    with pytest.raises(ValueError, match="S1 covers"):
        H.s1_configs("LRD", 0.35)


def test_groups_cut_the_plan_into_the_primary_pairs_then_one_group_per_secondary_recipe():
    g = H.groups(H.plan())
    assert g[0] == [x for x in H.plan() if x[0] in H.PRIMARY] and len(g[0]) == 16
    assert [grp[0][0] for grp in g[1:]] == [r for r in RECIPES if r not in H.PRIMARY and r == H.FIRST_SECONDARY] + \
        [r for r in RECIPES if r not in H.PRIMARY and r != H.FIRST_SECONDARY]
    assert sum(g, []) == H.plan()


def test_run_group_searches_each_item_then_evaluates_all_of_them_in_one_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("LRD_OUTPUT_DIR", str(tmp_path))
    calls = []

    def sweep(cfgs, return_records=True, **_):
        calls.append(len(cfgs))
        recs = [fake_record(c, 1000 if c.optim.weight_decay == 1.0 else None) for c in cfgs]
        return None, recs

    paths = H.run_group([("tuned L2", 0.6), ("tuned L2", 0.8)], True, sweep=sweep)
    assert calls[-1] == 2 * len(H.FIVE_SEEDS) and len(paths) == 2
    assert all(len(json.loads(p.read_text())["evaluation"]) == len(H.FIVE_SEEDS) for p in paths)


def test_sensitivity_configs_are_s1_then_s3_and_either_alone():
    both = H.sensitivity_configs()
    assert both == H.sensitivity_configs(True, False) + H.sensitivity_configs(False, True)
    assert H.sensitivity_configs(False, False) == [] and len(H.sensitivity_configs(False, True)) == len(H.FIVE_SEEDS)
