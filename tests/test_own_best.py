"""Arms at their own best strength (lrdlib.own_best, notebooks 05 and 06): the rounds that drive
several searches, the runs at a fixed strength read back as trials, the verdict sentences
(lrdlib.analysis.verdicts.groks_at_own_best, faster_at_own_best), and the fused-vs-decoupled arm of 06
built from existing knobs (Luon λ = 0 + the lrd_ns decay: the same Newton-Schulz code as Luon)."""
import math

import pandas as pd
import pytest
import torch

from lrdlib.analysis.survival import by_seed, paired_comparison, summarise
from lrdlib.analysis.verdicts import CANNOT_TELL, DOES_NOT_HOLD, HOLDS, faster_at_own_best, groks_at_own_best
from lrdlib.core.config import seed_config
from lrdlib.core.decay import DecayConfig, apply_decay, make_decay
from lrdlib.core.newton_schulz import newton_schulz
from lrdlib.core.optim import Luon, OptimConfig
from lrdlib.runs.own_best import drive, fixed_points, trials_at
from lrdlib.runs.search import Point, Search

pytestmark = pytest.mark.usefixtures("single_thread")

EVAL, HOLD, BUDGET = 100, 300, 5000


def record(seed, steps, grok_at=None):
    """A run record: val acc 0.5 until ``grok_at``, then 1.0; early stop once the hold window is complete."""
    xs, acc = [], []
    for s in range(0, steps + 1, EVAL):
        up = grok_at is not None and s >= grok_at
        xs.append(s)
        acc.append(1.0 if up else 0.5)
        if up and s >= grok_at + HOLD:
            break
    if xs[-1] != steps and (grok_at is None or xs[-1] < grok_at + HOLD):
        xs.append(steps)
        acc.append(acc[-1])
    return {"config": {"seed": seed, "steps": steps, "grok_threshold": 0.99, "grok_hold": HOLD}, "status": "ok",
            "history": {"step": xs, "val_acc": acc, "val_loss": [1.0] * len(xs)}, "max_val_acc": max(acc),
            "final_val_acc": acc[-1]}


def fake_sweep(speed):
    """A stand-in for run_sweep: configs are (key, Point) pairs; ``speed(key, strength, seed)`` -> grok step or None."""
    calls = []

    def sweep(configs, return_records=True):
        calls.append(list(configs))
        recs = [record(p.seed, p.steps, speed(k, p.strength, p.seed)) for k, p in configs]
        return pd.DataFrame({"steps_run": [r["history"]["step"][-1] for r in recs]}), recs

    return sweep, calls


def speed(key, strength, seed):
    """'a' groks only from strength 0.03 up (fastest at 0.1), 'b' at every strength of its grid."""
    if key == "a":
        return None if strength < 0.03 else 1000 + int(abs(math.log10(strength / 0.1)) * 1000) + 10 * seed
    return 2000 + 10 * seed


def test_drive_runs_every_search_and_the_fixed_strength_seeds_in_round_one():
    seeds = [0, 1, 2]
    searches = {k: Search(0.01, BUDGET, EVAL, seeds=seeds, n=3, max_extensions=1) for k in ("a", "b")}
    extra = {"a": fixed_points(0.01, seeds[1:], BUDGET)}
    sweep, calls = fake_sweep(speed)
    lines = []
    records, stats = drive(searches, lambda k, p: (k, p), extra=extra, sweep=sweep, log=lines.append)
    assert all(s.done for s in searches.values())
    assert stats["rounds"] == len(calls) == len(lines) and stats["runs"] == len(records)
    assert set(extra["a"]) <= {p for _, p in calls[0]}          # the matched seeds go in the first round
    assert searches["a"].best_strength == 0.1 and searches["a"].at_edge == "high"   # 0.03 groks, 0.1 faster: extension to 0.1
    matched = trials_at(records, "a", 0.01, BUDGET, seeds)
    assert [t.seed for t in matched] == seeds and not any(t.event for t in matched)   # seed 0 from stage A, 1-2 from 'M'
    best = trials_at(records, "a", searches["a"].best_strength, BUDGET, seeds)
    assert [(t.seed, t.event) for t in best] == [(t.seed, t.event) for t in searches["a"].final()]
    row = summarise(best, n_boot=50)
    assert row["n"] == 3 and row["grokked"] == 3 and row["failed"] == 0 and math.isfinite(row["km_median"])
    assert summarise(matched, n_boot=50)["km_median"] == math.inf
    assert by_seed(best) == {t.seed: (t.time, t.event) for t in best}
    assert "round 1" in lines[0] and "'M': 2" in lines[0]


def test_drive_rejects_extra_runs_without_a_search():
    sweep, _ = fake_sweep(speed)
    with pytest.raises(ValueError, match="no search"):
        drive({"a": Search(0.01, BUDGET, EVAL, seeds=[0], n=1)}, lambda k, p: (k, p),
              extra={"z": fixed_points(0.01, [1], BUDGET)}, sweep=sweep, log=None)


def test_fixed_points_round_like_the_series():
    assert fixed_points(0.0050000000001, [1, 2], 100) == [Point(0.005, 1, 100, "M"), Point(0.005, 2, 100, "M")]


def test_trials_at_ignores_capped_runs_and_other_seeds():
    recs = {("a", Point(0.1, 0, 2000, "B")): record(0, 2000, 500), ("a", Point(0.1, 1, BUDGET, "D")): record(1, BUDGET, 600),
            ("b", Point(0.1, 0, BUDGET, "A")): record(0, BUDGET, 700)}
    got = trials_at(recs, "a", 0.1, BUDGET, [0, 1, 2])
    assert [(t.seed, t.time) for t in got] == [(1, 600.0)]


# ---------------------------------------------------------------- verdicts
def arm(name, km, kb, n=5, ms=0.01, bs=0.03, edge=None, med_m=math.inf, med_b=2000.0):
    return {"arm": name, "matched_strength": ms, "best_strength": bs, "at_edge": edge, "best_by_accuracy": False,
            "matched": {"n": n, "grokked": km, "km_median": med_m}, "best": {"n": n, "grokked": kb, "km_median": med_b}}


def test_groks_at_own_best_branches():
    v = groks_at_own_best([arm("tangential", 0, 5), arm("radial", 5, 5, med_m=3000.0), arm("svt", 1, 2, edge="high")], 20000)
    assert v.verdict == HOLDS and v.numbers["own_best_only"] == ["tangential"] and v.numbers["both"] == ["radial"]
    assert v.numbers["neither"] == ["svt"] and v.numbers["at_edge"] == ["svt"]
    assert v.numbers["at_edge_text"] == "svt (high)" and v.numbers["seeds"] == 5
    v = groks_at_own_best([arm("radial", 5, 5, med_m=3000.0), arm("l2", 3, 1)], 20000)
    assert v.verdict == DOES_NOT_HOLD and v.numbers["matched_only"] == ["l2"] and v.numbers["both"] == ["radial"]
    same = arm("lrd", 5, 5, bs=0.01, med_m=2000.0)
    assert groks_at_own_best([same], 20000).numbers["both"] == ["lrd"]
    v = groks_at_own_best([arm("tangential", 0, 2, n=2)], 20000)
    assert v.verdict == CANNOT_TELL and v.numbers["seeds"] == 2 and v.numbers["own_best_only"] == ["tangential"]
    assert groks_at_own_best([], 20000).verdict == CANNOT_TELL


def paired_row(a_times, b_times, budget=20000):
    a = {s: (t, t < budget) for s, t in enumerate(a_times)}
    b = {s: (t, t < budget) for s, t in enumerate(b_times)}
    from lrdlib.analysis.survival import km_median
    med = lambda d: km_median([t for t, _ in d.values()], [e for _, e in d.values()])
    return {"a_median": med(a), "b_median": med(b), **paired_comparison(a, b, n_boot=400, seed=0)}


def test_faster_at_own_best_branches():
    fast = paired_row([1000, 1100, 1200, 1300, 1400], [3000, 3100, 3200, 3300, 3400])
    v = faster_at_own_best(fast, "Luon", "decoupled", 20000)
    assert v.verdict == HOLDS and v.numbers["factor_text"] == "2.7 [2.4, 3]" and v.numbers["a_first"] == 5
    v = faster_at_own_best(paired_row([3000, 3100, 3200, 3300, 3400], [1000, 1100, 1200, 1300, 1400]), "Luon", "decoupled", 20000)
    assert v.verdict == DOES_NOT_HOLD and v.numbers["class"] == "slower" and v.numbers["b_first"] == 5
    mixed = paired_row([1000, 3000, 1200, 3300, 1400], [3000, 1100, 3200, 1300, 1500])
    v = faster_at_own_best(mixed, "Luon", "decoupled", 20000)
    assert v.verdict == CANNOT_TELL and v.numbers["lo"] < 1 < v.numbers["hi"]
    never = paired_row([20000] * 5, [20000] * 5)
    assert faster_at_own_best(never, "Luon", "decoupled", 20000).numbers["class"] == "neither"
    few = paired_row([1000, 1100], [3000, 3100])
    v = faster_at_own_best(few, "Luon", "decoupled", 20000)
    assert v.verdict == CANNOT_TELL and v.numbers["seeds"] == 2 and v.numbers["hi"] < 1   # separated, but 2 seeds


# ---------------------------------------------------------------- fused vs decoupled, same Newton-Schulz code (06)
def test_decoupled_arm_is_luon_without_lambda_plus_the_lrd_ns_decay():
    """The 06 arm 'Luon λ 0 + LRD': Luon's optimiser with λ = 0 (same NS, same momentum) and the
    decoupled W ← W − α NS(W) with the same NS function; with no task gradient, one fused step
    (λ > 0, lr η) equals one decoupled step with α = η."""
    cfg = seed_config("Luon", 0.0).replace(optim__weight_decay=0.1, decay=DecayConfig("lrd_ns", 0.01))
    assert cfg.optim.kind == "luon" and cfg.optim.luon_lambda == 0.0
    assert (cfg.decay.ns_steps, cfg.decay.ns_poly) == (cfg.optim.ns_steps, cfg.optim.ns_poly) == (5, "cubic")
    assert cfg.key() != seed_config("Luon", 0.0).replace(optim__weight_decay=0.1).key()

    gen = torch.Generator().manual_seed(0)
    W0 = torch.randn(4, 16, 16, generator=gen, dtype=torch.float64)
    G = torch.randn(4, 16, 16, generator=gen, dtype=torch.float64)
    eta, alpha, lam = 0.02, 0.01, 0.5

    def step(lam_, decay_cfg, grad):
        ps = [torch.nn.Parameter(w.clone()) for w in W0]
        opt = Luon(ps, lr=eta, momentum=0.95, lam=lam_, ns_steps=5, ns_poly="cubic")
        for p, g in zip(ps, grad):
            p.grad = g.clone()
        opt.step()
        apply_decay(make_decay(decay_cfg), ps, step=0)
        return torch.stack([p.detach() for p in ps])

    # decoupled, with a gradient: W1 = W0 − η NS(G), W2 = W1 − α NS(W1), the same newton_schulz
    W1 = W0 - eta * newton_schulz(G, 5, "cubic")
    torch.testing.assert_close(step(0.0, DecayConfig("lrd_ns", alpha), G), W1 - alpha * newton_schulz(W1, 5, "cubic"))
    # no gradient: fused W0 − η NS(λW0) = decoupled W0 − α NS(W0) when α = η
    zero = torch.zeros_like(G)
    torch.testing.assert_close(step(lam, DecayConfig(), zero), step(0.0, DecayConfig("lrd_ns", eta), zero), atol=1e-10, rtol=0)


def test_existing_luon_and_muon_configs_keep_their_kind():
    assert OptimConfig(kind="luon", luon_lambda=0.0).luon_lambda == 0.0
    assert seed_config("LRD").replace(optim=OptimConfig(kind="muon", weight_decay=0.1)).optim.kind == "muon"
