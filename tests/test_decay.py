"""lrdlib.decay: each registered decay against its formula, `every`, in-place application,
the registry, and DecayConfig validation."""
import re
import uuid

import numpy as np
import pytest
import torch
from ns_reference import ns_reference

from lrdlib.core import decay as dc
from lrdlib.core.decay import Decay, DecayConfig, apply_decay, available_decays, make_decay, register_decay

pytestmark = pytest.mark.usefixtures("single_thread")

D64 = torch.float64


def _stack(seed=0, k=3, m=6, n=5):
    return torch.randn(k, m, n, generator=torch.Generator().manual_seed(seed), dtype=D64)




def _np_svd(W):
    return np.linalg.svd(W.numpy(), full_matrices=False)


def test_registered_kinds():
    assert {"none", "l2", "lrd_ns", "lrd_polar", "svt", "lowrank"} <= set(available_decays())
    assert available_decays()[0] == "none"
    assert make_decay(DecayConfig()) is None


def test_l2():
    W = _stack(1)
    d = make_decay(DecayConfig("l2", 0.1))
    torch.testing.assert_close(d.apply(W, 1), 0.9 * W, atol=1e-15, rtol=0)
    torch.testing.assert_close(d.displacement(W, 1), 0.1 * W, atol=1e-15, rtol=0)


@pytest.mark.parametrize("steps,poly", [(5, "cubic"), (3, "cubic"), (5, "quintic"), (0, "cubic")])
def test_lrd_ns(steps, poly):
    W = _stack(2)
    d = make_decay(DecayConfig("lrd_ns", 0.05, ns_steps=steps, ns_poly=poly))
    expected = torch.stack([w - 0.05 * ns_reference(w, steps, poly) for w in W])
    torch.testing.assert_close(d.apply(W, 1), expected, atol=1e-12, rtol=0)


def test_lrd_ns_polar_express_schedule():
    from lrdlib.core.newton_schulz import newton_schulz, ns_response

    W = _stack(2)
    d = make_decay(DecayConfig("lrd_ns", 0.05, ns_steps=4, ns_poly="polar_express"))
    torch.testing.assert_close(d.apply(W, 1), W - 0.05 * newton_schulz(W, 4, "polar_express"), atol=0, rtol=0)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    phi = ns_response(S / torch.linalg.matrix_norm(W)[:, None], "polar_express", 4)
    torch.testing.assert_close(d.displacement(W, 1), 0.05 * (U * phi[:, None, :]) @ Vh, atol=1e-12, rtol=0)


def test_lrd_ns_step_size_is_scale_free():
    # ‖λ NS(W)‖ does not depend on ‖W‖: the same absolute step for W and 10 W
    W = _stack(3)
    d = make_decay(DecayConfig("lrd_ns", 0.05))
    torch.testing.assert_close(d.displacement(W, 1), d.displacement(10 * W, 1), atol=1e-9, rtol=0)


def test_lrd_polar():
    W = _stack(4)
    d = make_decay(DecayConfig("lrd_polar", 0.02))
    expected = []
    for w in W:
        U, S, Vh = _np_svd(w)
        expected.append(w.numpy() - 0.02 * U @ Vh)
    np.testing.assert_allclose(d.apply(W, 1).numpy(), np.stack(expected), atol=1e-12)


def test_svt():
    W = _stack(5)
    tau = 0.9
    d = make_decay(DecayConfig("svt", tau))
    got = d.apply(W, 1)
    for w, g in zip(W, got):
        U, S, Vh = _np_svd(w)
        np.testing.assert_allclose(g.numpy(), (U * np.maximum(S - tau, 0)) @ Vh, atol=1e-12)
    # the smallest singular values of a 6×5 Gaussian are below 0.9: rank drops
    assert any(torch.linalg.matrix_rank(g).item() < 5 for g in got)


@pytest.mark.parametrize("rank", [1, 3])
def test_lowrank(rank):
    W = _stack(6)
    d = make_decay(DecayConfig("lowrank", 0.0, rank=rank))
    got = d.apply(W, 1)
    for w, g in zip(W, got):
        U, S, Vh = _np_svd(w)
        np.testing.assert_allclose(g.numpy(), (U[:, :rank] * S[:rank]) @ Vh[:rank], atol=1e-12)
        assert torch.linalg.matrix_rank(g).item() == rank


@pytest.mark.parametrize("kind,kw", [("l2", {}), ("lrd_ns", {}), ("lrd_polar", {}), ("svt", {}),
                                     ("lowrank", {"rank": 2})])
def test_every_respected(kind, kw):
    every = 3
    d = make_decay(DecayConfig(kind, 0.1, every=every, **kw))
    W0 = _stack(7, k=2)
    params = [torch.nn.Parameter(w.clone()) for w in W0]
    expected = W0.clone()
    for step in range(1, 8):
        assert d.active(step) == (step % every == 0)
        apply_decay(d, params, step)
        if step % every == 0:
            expected = d.apply(expected, step)
        torch.testing.assert_close(torch.stack([p.detach() for p in params]), expected, atol=1e-12, rtol=0)
    assert not torch.allclose(expected, W0)


def test_every_with_l2_closed_form():
    d = make_decay(DecayConfig("l2", 0.1, every=2))
    W = torch.nn.Parameter(_stack(8, k=1)[0].clone())
    W0 = W.detach().clone()
    for step in range(1, 7):  # active at 2, 4, 6
        apply_decay(d, [W], step)
    torch.testing.assert_close(W.detach(), 0.9 ** 3 * W0, atol=1e-14, rtol=0)


def test_apply_decay_in_place_on_parameter_list():
    W0 = _stack(9, k=4, m=5, n=5)
    params = [torch.nn.Parameter(w.clone()) for w in W0]
    ptrs = [p.data_ptr() for p in params]
    d = make_decay(DecayConfig("lrd_polar", 0.1))
    apply_decay(d, params, 1)
    got = torch.stack([p.detach() for p in params])
    torch.testing.assert_close(got, d.apply(W0, 1), atol=1e-14, rtol=0)
    assert [p.data_ptr() for p in params] == ptrs
    assert all(p.requires_grad and p.grad is None for p in params)
    # no-ops
    before = got.clone()
    apply_decay(None, params, 1)
    apply_decay(d, [], 1)
    torch.testing.assert_close(torch.stack([p.detach() for p in params]), before, atol=0, rtol=0)


def test_apply_decay_float32_params():
    W0 = _stack(10).float()
    params = [torch.nn.Parameter(w.clone()) for w in W0]
    d = make_decay(DecayConfig("lrd_ns", 0.01))
    apply_decay(d, params, 1)
    assert all(p.dtype == torch.float32 for p in params)
    expected = torch.stack([w - 0.01 * ns_reference(w, 5, "cubic") for w in W0.double()])
    torch.testing.assert_close(torch.stack([p.detach() for p in params]).double(), expected, atol=1e-6, rtol=0)


def test_register_new_decay_end_to_end():
    kind = f"test_sign_{uuid.uuid4().hex[:8]}"
    calls = []

    @register_decay(kind)
    class SignDecay(Decay):
        @classmethod
        def validate(cls, cfg):
            if cfg.strength > 1:
                raise ValueError(f"{kind} strength={cfg.strength!r} must be ≤ 1")

        def apply(self, W, step):
            calls.append(step)
            return W - self.cfg.strength * torch.sign(W)

    assert SignDecay.kind == kind
    assert kind in available_decays()
    cfg = DecayConfig(kind=kind, strength=0.01, every=2)
    d = make_decay(cfg)
    assert isinstance(d, SignDecay) and d.cfg is cfg
    W0 = _stack(11, k=2)
    params = [torch.nn.Parameter(w.clone()) for w in W0]
    apply_decay(d, params, 1)  # inactive
    apply_decay(d, params, 2)
    assert calls == [2]
    torch.testing.assert_close(torch.stack([p.detach() for p in params]), W0 - 0.01 * torch.sign(W0),
                               atol=1e-15, rtol=0)
    # its validate hook runs inside DecayConfig
    with pytest.raises(ValueError, match=re.escape("strength=2.0")):
        DecayConfig(kind=kind, strength=2.0)
    # re-registering the kind with another class is refused; the same class is fine
    with pytest.raises(ValueError, match=re.escape(kind)):
        register_decay(kind)(type("Other", (Decay,), {}))
    assert register_decay(kind)(SignDecay) is SignDecay

    # and through a (tiny) training run
    from lrdlib.core.config import RunConfig
    from lrdlib.core.data import TaskConfig
    from lrdlib.core.model import ModelConfig
    from lrdlib.runs.cache import train
    calls.clear()
    run = RunConfig(task=TaskConfig(p=5), model=ModelConfig(vocab_size=6, dim=8, heads=2, mlp_dim=16),
                    decay=cfg, steps=4, eval_every=2, batch_size=8)
    rec = train(run, use_cache=False, progress=False)
    assert rec["status"] == "ok" and calls == [2, 4]
    assert rec["config"]["decay"]["kind"] == kind
    # the recorded decay displacement is λ·sign(W): its norm is λ√(mn) = 0.01·8
    tan = rec["tangential"][rec["targets"][0]]
    for r, t in zip(tan["decay_rad"], tan["decay_tan"]):
        assert abs((r ** 2 + t ** 2) ** 0.5 - 0.08) < 1e-6


@pytest.mark.parametrize("kw,needle", [
    (dict(kind="nope"), "kind='nope'"),
    (dict(kind="l2", strength=-0.1), "strength=-0.1"),
    (dict(kind="l2", strength="0.1"), "strength='0.1'"),
    (dict(kind="l2", every=0), "every=0"),
    (dict(kind="l2", every=1.5), "every=1.5"),
    (dict(kind="lowrank", strength=0.0), "rank=None"),
    (dict(kind="lowrank", rank=0), "rank=0"),
    (dict(kind="lowrank", rank=2.0), "rank=2.0"),
    (dict(kind="lrd_ns", ns_poly="septic"), "ns_poly='septic'"),
    (dict(kind="lrd_ns", ns_poly="sign"), "ns_poly='sign' is not a Newton-Schulz schedule; valid: cubic, quintic, "
                                          "polar_express"),
    (dict(kind="lrd_ns", ns_steps=-1), "ns_steps=-1"),
])
def test_decay_config_bad_values(kw, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        DecayConfig(**kw)


def test_decay_config_rejects_nan_strength():
    with pytest.raises(ValueError):
        DecayConfig(kind="l2", strength=float("nan"))


def test_registry_is_the_module_registry():
    # make_decay builds instances of the registered classes
    for kind, cls in [("l2", dc.L2Decay), ("lrd_ns", dc.NewtonSchulzDecay), ("lrd_polar", dc.PolarDecay),
                      ("svt", dc.SingularValueShrink)]:
        assert type(make_decay(DecayConfig(kind, 0.1))) is cls
    assert type(make_decay(DecayConfig("lowrank", rank=1))) is dc.LowRankProjection


def test_a_users_decay_is_cached_by_its_code_not_only_its_name():
    """Editing ``apply`` of a decay registered outside lrdlib changes the key of its runs (no stale
    record is read back); the decays of lrdlib keep the keys of the committed store."""
    from lrdlib.core.config import RunConfig
    from lrdlib.core.decay import _REGISTRY, decay_code

    def make(scale):
        body = f"def apply(self, W, step):\n    return W - {scale} * self.cfg.strength * W\n"
        ns = {}
        exec(body, ns)
        return type("EditedDecay", (Decay,), {"apply": ns["apply"], "__module__": "user_code"})

    try:
        register_decay("user_edited")(make(1.0))
        cfg = RunConfig(decay=DecayConfig("user_edited", 0.1))
        before = cfg.key()
        _REGISTRY.pop("user_edited")
        register_decay("user_edited")(make(2.0))
        assert cfg.key() != before and decay_code("user_edited") is not None
    finally:
        _REGISTRY.pop("user_edited", None)
    assert decay_code("lrd_ns") is None and decay_code("none") is None
