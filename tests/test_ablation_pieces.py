"""The ablation machinery of notebook 05: the radial/tangential split decays, the adaptive
rank controller (rank_control), strength matching (matching) and the record tables (analysis)."""
import numpy as np
import pytest
import torch

from lrdlib import ModelConfig, RunConfig, TaskConfig, train
from lrdlib.analysis.frames import grok_table, history_frame, spectra_frame, tangential_frame
from lrdlib.core import spectral
from lrdlib.core.decay import DecayConfig, make_decay
from lrdlib.core.matching import displacement_norm, match_strength
from lrdlib.core.rank_control import RankController, RankControllerConfig, estimated_stable_rank

pytestmark = pytest.mark.usefixtures("single_thread")


def _W(seed=0, k=3, n=16):
    return torch.randn(k, n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) / n ** 0.5


def test_radial_plus_tangential_equals_full_lrd():
    W = _W()
    full = make_decay(DecayConfig("lrd_ns", 0.01)).displacement(W, 1)
    rad = make_decay(DecayConfig("lrd_radial", 0.01)).displacement(W, 1)
    tan = make_decay(DecayConfig("lrd_tangential", 0.01)).displacement(W, 1)
    torch.testing.assert_close(rad + tan, full, atol=1e-14, rtol=0)
    assert spectral.inner(tan, W).abs().max() < 1e-14                     # tangential: ⟨T, W⟩ = 0
    c = spectral.inner(rad, W) / spectral.fro(W) ** 2
    torch.testing.assert_close(rad, c[:, None, None] * W, atol=1e-15, rtol=0)  # radial: parallel to W


def test_controller_follows_the_seed_rule():
    cfg = RankControllerConfig(min_rank=2, max_rank=40, ema_decay=0.8, safety_factor=1.5, change_threshold=2.0, max_step=4)
    ctl = RankController(cfg, full_rank=64)
    assert ctl.rank == 40 and ctl.ema == 40.0
    # stable rank 10 -> target 15; ema = 0.8·40 + 0.2·15 = 35; delta −5 -> step clipped to −4
    assert ctl.propose(10.0) == 36
    assert ctl.ema == pytest.approx(35.0)
    # ema = 0.8·35 + 0.2·15 = 31; delta −5 -> −4
    assert ctl.propose(10.0) == 32
    # hysteresis: target close to the rank leaves it unchanged
    ctl2 = RankController(RankControllerConfig(init_rank=10, change_threshold=2.0), full_rank=64)
    assert ctl2.propose(10 / 1.5 + 0.5) == 10
    # bounds
    ctl3 = RankController(RankControllerConfig(init_rank=3, min_rank=3, ema_decay=0.0, max_step=10), full_rank=8)
    assert ctl3.propose(0.1) == 3 and ctl3.propose(100.0) == 8


def test_estimated_stable_rank_close_to_exact():
    W = _W(1, n=32)
    est = estimated_stable_rank(W, iters=50, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(est, spectral.stable_rank(W), rtol=1e-3, atol=0)


def test_adaptive_lowrank_projects_to_the_controller_rank():
    U, _ = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    S = torch.tensor([10.0, 9.0, 8.0] + [1e-3] * 29, dtype=torch.float64)
    W = (U * S) @ U.T
    d = make_decay(DecayConfig("adaptive_lowrank", controller=RankControllerConfig(ema_decay=0.0, max_step=64)))
    out = d.apply(W[None], step=0)
    k = d.history[-1][1][0]
    sr = float(spectral.stable_rank(W))
    assert k == round(1.5 * sr) or k == int(1.5 * sr + 0.5)  # ema 0: straight to safety·srank
    assert int(torch.linalg.matrix_rank(out[0], atol=1e-9)) == k


def test_match_strength_hits_the_target_and_rejects_projections():
    W = _W(3)
    target = displacement_norm(DecayConfig("lrd_ns", 0.005), W)
    for kind in ("l2", "lrd_polar", "svt", "lrd_tangential", "lrd_radial"):
        lam = match_strength(DecayConfig(kind), W, target)
        assert displacement_norm(DecayConfig(kind, lam), W) == pytest.approx(target, rel=1e-5)
    # analytic check for L2: λ‖W‖ = target
    lam = match_strength(DecayConfig("l2"), W, target)
    assert lam == pytest.approx(target / float(spectral.fro(W).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="lowrank"):
        match_strength(DecayConfig("lowrank", rank=2), W, target)


def test_analysis_tables(tmp_path):
    from lrdlib.runs.cache import RunCache
    base = RunConfig(task=TaskConfig(p=11), model=ModelConfig(vocab_size=12, dim=16, heads=2, mlp_dim=32),
                     steps=20, eval_every=10)
    cache = RunCache(tmp_path)
    recs = {"a": [train(base.replace(seed=s), cache=cache, progress=False) for s in (0, 1)],
            "b": [train(base.replace(decay=DecayConfig("lrd_ns", 0.01)), cache=cache, progress=False)]}
    h = history_frame(recs)
    assert len(h) == 3 * 3 and set(h.arm) == {"a", "b"}
    s = spectra_frame(recs)
    assert len(s) == 3 * 3 * 4 and np.isfinite(s.stable_rank).all()
    t = tangential_frame(recs)
    assert len(t) == 3 * 2 * 4 and set(t.step) == {10, 20}
    g = grok_table(recs)
    assert list(g.index) == ["a", "b"] and g.loc["a", "seeds"] == 2 and g.loc["b", "budget"] == 20
