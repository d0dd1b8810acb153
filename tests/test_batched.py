"""lrdlib.batched: K runs as one stacked model must be K independent runs.

Tolerances. On CPU the stacked model does each run's matmuls with that run's own F.linear
(``MATMUL = "auto"`` → "loop"), so its weights, accuracies, ranks and steps-to-grok are
*bit-identical* to independent ``train()`` runs and are compared with ``==``; only the
full-set losses are summed in another order (float64 over all pairs instead of float32 per
8192-row chunk): relative tolerance 1e-5. The GPU path (one ``bmm`` per layer) is exercised
on CPU with ``MATMUL = "bmm"``: per-step results agree to float32 rounding (~1e-7), which
chaotic phases of LRD/Luon training amplify like any other change of kernel, so it is
compared over a short horizon with a float tolerance.
"""
import importlib
import math

import numpy as np
import pytest
import torch

from lrdlib.cache import RunCache
from lrdlib.config import RunConfig, seed_config
from lrdlib.data import TaskConfig
from lrdlib.decay import DecayConfig
from lrdlib.model import ModelConfig, build_model
from lrdlib.optim import OptimConfig
from lrdlib.train import train

batched = importlib.import_module("lrdlib.batched")
pytestmark = pytest.mark.usefixtures("single_thread")

P = 23
SMALL = ModelConfig(vocab_size=P + 1, dim=32, heads=4, mlp_dim=64)
STRENGTHS = {"L2": (0.1, 0.5, 1.0), "LRD": (0.005, 0.02, 0.002), "Luon": (0.5, 0.2, 1.0)}
LOSS_RTOL = 1e-5


def small(method: str, strength: float, frac: float, seed: int, steps: int = 200, **kw) -> RunConfig:
    return seed_config(method, strength, train_frac=frac, seed=seed, steps=steps, p=P, eval_every=20,
                       batch_size=64, **kw).replace(model=SMALL)


def trio(method: str, steps: int = 200) -> list[RunConfig]:
    """Three runs that differ in seed, strength and train fraction; the first stops early
    (low grok threshold + early stop), the third has a grok step without stopping."""
    s = STRENGTHS[method]
    return [small(method, s[0], 0.3, 0, steps, grok_threshold=0.2, early_stop=True),
            small(method, s[1], 0.5, 1, steps),
            small(method, s[2], 0.7, 2, steps, grok_threshold=0.1)]


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LRD_CACHE_DIR", str(tmp_path / "default-cache"))


def assert_same_run(a: dict, b: dict, exact: bool = True, rtol: float = LOSS_RTOL) -> None:
    assert set(a) == set(b), "batched record keys differ from train()'s"
    for k in ("key", "config", "status", "steps_run", "steps_to_grok", "grokked", "targets", "commutativity_ceiling"):
        assert a[k] == b[k], k
    assert a["history"]["step"] == b["history"]["step"]
    acc_tol = 0 if exact else 3 / (P * P)   # a few pairs may flip at an argmax tie
    for k in ("train_acc", "val_acc"):
        np.testing.assert_allclose(a["history"][k], b["history"][k], rtol=0, atol=acc_tol, err_msg=k)
    for k in ("train_loss", "val_loss"):
        np.testing.assert_allclose(a["history"][k], b["history"][k], rtol=rtol, err_msg=k)
    for n in a["targets"]:
        for k, v in a["spectra"][n].items():
            if exact:
                assert v == b["spectra"][n][k], (n, k)
            else:
                np.testing.assert_allclose(v, b["spectra"][n][k], rtol=rtol, atol=1e-7, err_msg=f"{n} {k}")
        for k, v in a["tangential"][n].items():
            np.testing.assert_allclose(v, b["tangential"][n][k], rtol=0 if exact else rtol, atol=0 if exact else 1e-7)
        np.testing.assert_allclose(a["final_singular_values"][n], b["final_singular_values"][n],
                                   rtol=0 if exact else rtol, atol=0 if exact else 1e-7)
    assert a["tangential"]["step"] == b["tangential"]["step"]


# --------------------------------------------------------------------------- the stacked forward
@pytest.mark.parametrize("mcfg", [SMALL, ModelConfig(vocab_size=P + 1, dim=32, heads=2, mlp_dim=48, depth=1),
                                  ModelConfig(vocab_size=P + 1, dim=32, heads=4, mlp_dim=64, depth=3, qk_norm=False)],
                         ids=["depth2", "depth1", "depth3-noqknorm"])
@pytest.mark.parametrize("matmul", ["loop", "bmm"])
def test_stacked_forward_matches_each_model(mcfg, matmul, monkeypatch):
    monkeypatch.setattr(batched, "MATMUL", matmul)
    seeds = [0, 3, 7]
    Pst = batched.stack_models(mcfg, seeds)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, P, (3, 50, 3), generator=g)
    tokens[..., 2] = P
    out = batched.stacked_forward(mcfg, Pst, tokens)
    shared = batched.stacked_forward(mcfg, Pst, tokens[0])          # one token set for all runs
    for k, s in enumerate(seeds):
        m = build_model(mcfg, s)
        with torch.no_grad():
            ref, full = m(tokens[k]), m.forward_full(tokens[k])
            ref0 = m(tokens[0])
        torch.testing.assert_close(out[k], ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out[k], full, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(shared[k], ref0, rtol=1e-5, atol=1e-5)


def test_stacked_forward_rejects_bad_tokens():
    Pst = batched.stack_models(SMALL, [0, 1])
    with pytest.raises(ValueError, match="tokens of shape"):
        batched.stacked_forward(SMALL, Pst, torch.zeros(3, 4, 3, dtype=torch.long))


# --------------------------------------------------------------------------- grouping
def test_compatible_groups():
    a = small("LRD", 0.01, 0.5, 0)
    cfgs = [a,
            a.replace(seed=1, task__train_frac=0.3, task__split_seed=4, decay__strength=0.1, optim__weight_decay=0.3,
                      steps=50, early_stop=True, grok_threshold=0.5),           # per-run knobs: same group
            small("L2", 0.1, 0.5, 0),                                            # other decay kind
            a.replace(optim__lr=3e-3),                                           # other lr
            small("Luon", 0.5, 0.5, 0), small("Luon", 0.1, 0.4, 2),              # Luon, λ per run
            a.replace(optim__kind="muon"), a.replace(optim__kind="muon"),        # torch Muon: never batched
            a.replace(seed=5), a.replace(eval_every=10)]
    assert batched.compatible_groups(cfgs) == [[0, 1, 8], [2], [3], [4, 5], [6], [7], [9]]
    assert batched.compatible_groups(cfgs, max_size=2) == [[0, 1], [8], [2], [3], [4, 5], [6], [7], [9]]
    assert batched.compatible_groups([]) == []
    with pytest.raises(ValueError, match="max_size"):
        batched.compatible_groups(cfgs, max_size=0)


def test_train_batched_rejects_incompatible_configs():
    with pytest.raises(ValueError, match="one compatible group"):
        batched.train_batched([small("L2", 0.1, 0.5, 0), small("LRD", 0.01, 0.5, 0)], use_cache=False, progress=False)
    with pytest.raises(ValueError, match="muon"):
        batched.train_batched([small("LRD", 0.01, 0.5, 0).replace(optim__kind="muon")], use_cache=False, progress=False)


# --------------------------------------------------------------------------- members = independent runs
@pytest.mark.parametrize("method", ["L2", "LRD", "Luon"])
def test_members_match_independent_runs(method, tmp_path):
    cfgs = trio(method)
    cache = RunCache(tmp_path)
    got = batched.train_batched(cfgs, cache=cache, progress=False)
    ref = [train(c, use_cache=False, progress=False) for c in cfgs]
    for a, b in zip(got, ref):
        assert_same_run(a, b, exact=True)
    # the set-up exercises what it should: ragged last batches (264, 158, 370 training pairs,
    # batch 64), a run leaving the stack early, a grok step
    assert got[0]["steps_run"] < 200 and got[0]["grokked"], "run 0 should stop early"
    assert got[1]["steps_run"] == got[2]["steps_run"] == 200
    assert got[2]["steps_to_grok"] is not None
    # saved as train() saves: record and final weights, identical to the independent run's
    for c, r in zip(cfgs, got):
        assert cache.load(c) == r
        m = build_model(c.model, c.seed)
        w = cache.load_weights(c)
        assert set(w) == set(m.state_dict())
    ind = RunCache(tmp_path / "ind")
    train(cfgs[1], cache=ind, progress=False)
    for k, v in ind.load_weights(cfgs[1]).items():
        assert torch.equal(v, cache.load_weights(cfgs[1])[k]), k


def test_bmm_path_matches_within_float_tolerance(monkeypatch):
    """The GPU path (one bmm per layer), run on CPU: 60 steps, before any chaotic phase."""
    monkeypatch.setattr(batched, "MATMUL", "bmm")
    for method in ("L2", "LRD", "Luon"):
        cfgs = trio(method, steps=60)
        got = batched.train_batched(cfgs, use_cache=False, progress=False)
        for a, b in zip(got, [train(c, use_cache=False, progress=False) for c in cfgs]):
            assert_same_run(a, b, exact=False, rtol=1e-4)


def test_nonlinear_decay_runs_per_member():
    """Decays not of the form W − λ f(W) (here: singular-value soft-thresholding) run once per
    run on its slice; still identical to independent runs."""
    base = small("LRD", 0.01, 0.5, 0, steps=40)
    cfgs = [base.replace(decay=DecayConfig("svt", s), seed=k, task__split_seed=k) for k, s in enumerate((0.002, 0.01))]
    assert batched.compatible_groups(cfgs) == [[0, 1]]
    for a, b in zip(batched.train_batched(cfgs, use_cache=False, progress=False),
                    [train(c, use_cache=False, progress=False) for c in cfgs]):
        assert_same_run(a, b)


def test_diverging_member_leaves_the_others_untouched():
    ok = small("L2", 0.1, 0.5, 0, steps=60)
    bad = ok.replace(seed=1, optim__weight_decay=1e5, optim__target_weight_decay=1e5)   # p ← p·(1 − 100): blows up
    got = batched.train_batched([ok, bad, ok.replace(seed=2)], use_cache=False, progress=False)
    assert got[1]["status"] == "diverged" and got[1]["steps_run"] < 60
    ref = [train(c, use_cache=False, progress=False) for c in (ok, bad, ok.replace(seed=2))]
    assert ref[1]["status"] == "diverged" and ref[1]["steps_run"] == got[1]["steps_run"]
    assert_same_run(got[0], ref[0])
    assert_same_run(got[2], ref[2])


def test_cached_members_are_loaded_and_duplicates_trained_once(tmp_path, monkeypatch):
    cache = RunCache(tmp_path)
    a, b = small("L2", 0.1, 0.5, 0, steps=20), small("L2", 0.5, 0.4, 1, steps=20)
    rec_a = train(a, cache=cache, progress=False)
    seen = []
    real = batched._run_group
    monkeypatch.setattr(batched, "_run_group", lambda cfgs, *r, **k: (seen.append(len(cfgs)), real(cfgs, *r, **k))[1])
    got = batched.train_batched([a, b, b], cache=cache, progress=False)
    assert seen == [1]                                # only b, once
    assert got[0] == rec_a and got[1] == got[2] == cache.load(b)
    assert batched.train_batched([a, b], cache=cache, progress=False) == got[:2] and seen == [1]


def test_records_carry_each_runs_own_knobs():
    cfgs = [small("L2", wd, f, s, steps=20) for wd, f, s in ((0.1, 0.3, 0), (1.0, 0.6, 4))]
    got = batched.train_batched(cfgs, use_cache=False, progress=False)
    for c, r in zip(cfgs, got):
        assert RunConfig.from_dict(r["config"]) == c and r["key"] == c.key()
        assert r["wall_time_s"] > 0 and math.isfinite(r["ms_per_step"])
    assert got[0]["commutativity_ceiling"] != got[1]["commutativity_ceiling"]
