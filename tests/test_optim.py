"""lrdlib.optim: Luon's update against the hand formula, and the optimiser set-up of the
three seed presets (and Muon)."""
import re

import pytest
import torch
from ns_reference import ns_reference

from lrdlib.core.config import seed_config
from lrdlib.core.model import ModelConfig, build_model
from lrdlib.core.optim import Luon, OptimConfig, build_optimizers, split_targets

pytestmark = pytest.mark.usefixtures("single_thread")

D64 = torch.float64
QK = ("q_proj", "k_proj")




def _rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D64)


@pytest.mark.parametrize("poly,steps", [("cubic", 5), ("quintic", 5), ("cubic", 2)])
def test_luon_two_steps_match_hand_formula(poly, steps):
    lr, mu, lam = 0.05, 0.9, 0.3
    shapes = [(6, 6), (6, 6), (4, 7)]  # two of one shape (batched together) and another shape
    W0 = [_rand(*s, seed=i) for i, s in enumerate(shapes)]
    params = [torch.nn.Parameter(w.clone()) for w in W0]
    opt = Luon(params, lr=lr, momentum=mu, lam=lam, ns_steps=steps, ns_poly=poly)
    G1 = [_rand(*s, seed=10 + i) for i, s in enumerate(shapes)]
    G2 = [_rand(*s, seed=20 + i) for i, s in enumerate(shapes)]

    for p, g in zip(params, G1):
        p.grad = g.clone()
    opt.step()
    M1 = [g + lam * w for g, w in zip(G1, W0)]
    W1 = [w - lr * ns_reference(m, steps, poly) for w, m in zip(W0, M1)]
    for p, w in zip(params, W1):
        torch.testing.assert_close(p.detach(), w, atol=1e-12, rtol=0)

    for p, g in zip(params, G2):
        p.grad = g.clone()
    opt.step()
    M2 = [mu * m + g + lam * w for m, g, w in zip(M1, G2, W1)]
    W2 = [w - lr * ns_reference(m, steps, poly) for w, m in zip(W1, M2)]
    for p, w, m in zip(params, W2, M2):
        torch.testing.assert_close(p.detach(), w, atol=1e-12, rtol=0)
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], m, atol=1e-12, rtol=0)
    # momentum matters: without μ M₁ the second step would differ
    no_mom = W1[0] - lr * ns_reference(G2[0] + lam * W1[0], steps, poly)
    assert (no_mom - W2[0]).abs().max() > 1e-4


def test_luon_skips_params_without_grad_and_returns_closure_loss():
    a, b = torch.nn.Parameter(_rand(5, 5, seed=1)), torch.nn.Parameter(_rand(5, 5, seed=2))
    b0 = b.detach().clone()
    opt = Luon([a, b], lr=0.1)
    a.grad = _rand(5, 5, seed=3)
    assert opt.step(closure=lambda: torch.tensor(3.0)).item() == 3.0
    assert torch.equal(b.detach(), b0)
    assert b not in opt.state or "momentum_buffer" not in opt.state[b]


def test_luon_update_size_is_lr_times_ns():
    # ‖ΔW‖_F = η ‖NS(M)‖_F whatever the gradient's scale
    for scale in (1e-3, 1e3):
        p = torch.nn.Parameter(_rand(8, 8, seed=4))
        w0 = p.detach().clone()
        opt = Luon([p], lr=0.02, lam=0.0)
        g = scale * _rand(8, 8, seed=5)
        p.grad = g
        opt.step()
        torch.testing.assert_close(w0 - p.detach(), 0.02 * ns_reference(g), atol=1e-12, rtol=0)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), ()])
def test_luon_rejects_non_matrix_params(shape):
    with pytest.raises(ValueError, match=re.escape(str(tuple(shape)))):
        Luon([torch.nn.Parameter(torch.zeros(4, 4)), torch.nn.Parameter(torch.zeros(shape))])


# --------------------------------------------------------------------------- build_optimizers
@pytest.fixture(scope="module")
def seed_model():
    return build_model(ModelConfig(), 0)


def _names(model):
    return {id(p): n for n, p in model.named_parameters()}


def _qk_names(model):
    return {n for n, _ in model.named_parameters() if n.endswith(("q_proj.weight", "k_proj.weight"))}


def _group_names(model, group):
    ids = _names(model)
    return {ids[id(p)] for p in group["params"]}


def test_l2_preset(seed_model):
    cfg = seed_config("L2")
    assert cfg.targets == QK
    opts = build_optimizers(seed_model, cfg.optim, cfg.targets)
    assert len(opts) == 1 and type(opts[0]) is torch.optim.AdamW
    groups = opts[0].param_groups
    assert all(g["weight_decay"] == 0.1 and g["lr"] == 1e-3 for g in groups)
    covered = [n for g in groups for n in _group_names(seed_model, g)]
    assert sorted(covered) == sorted(n for n, _ in seed_model.named_parameters())  # each exactly once


def test_lrd_preset(seed_model):
    cfg = seed_config("LRD")
    assert cfg.decay.kind == "lrd_ns" and cfg.decay.strength == 0.005
    opts = build_optimizers(seed_model, cfg.optim, cfg.targets)
    assert len(opts) == 1 and type(opts[0]) is torch.optim.AdamW
    by_wd = {g["weight_decay"]: _group_names(seed_model, g) for g in opts[0].param_groups}
    assert set(by_wd) == {0.0, 0.1}
    assert by_wd[0.0] == _qk_names(seed_model)
    assert len(by_wd[0.0]) == 4
    assert by_wd[0.1] == {n for n, _ in seed_model.named_parameters()} - _qk_names(seed_model)


def test_luon_preset(seed_model):
    cfg = seed_config("Luon")
    opts = build_optimizers(seed_model, cfg.optim, cfg.targets)
    assert [type(o) for o in opts] == [Luon, torch.optim.AdamW]
    luon, adam = opts
    (lg,) = luon.param_groups
    assert _group_names(seed_model, lg) == _qk_names(seed_model)
    assert (lg["lr"], lg["momentum"], lg["lam"], lg["ns_steps"], lg["ns_poly"]) == (0.02, 0.95, 0.5, 5, "cubic")
    (ag,) = adam.param_groups
    assert ag["weight_decay"] == 0.0 and ag["lr"] == 1e-3
    assert _group_names(seed_model, ag) == {n for n, _ in seed_model.named_parameters()} - _qk_names(seed_model)


def test_luon_preset_strength(seed_model):
    cfg = seed_config("Luon", 0.2)
    luon = build_optimizers(seed_model, cfg.optim, cfg.targets)[0]
    assert luon.param_groups[0]["lam"] == 0.2


def test_muon_kind(seed_model):
    cfg = OptimConfig(kind="muon", weight_decay=0.05, muon_lr=0.01, momentum=0.9)
    opts = build_optimizers(seed_model, cfg, QK)
    assert [type(o) for o in opts] == [torch.optim.Muon, torch.optim.AdamW]
    (mg,) = opts[0].param_groups
    assert _group_names(seed_model, mg) == _qk_names(seed_model)
    assert mg["weight_decay"] == 0.0 and mg["lr"] == 0.01 and mg["momentum"] == 0.9
    assert opts[1].param_groups[0]["weight_decay"] == 0.05


def test_adamw_without_targets_has_one_group(seed_model):
    opts = build_optimizers(seed_model, OptimConfig(weight_decay=0.3, target_weight_decay=0.0), ())
    assert len(opts) == 1 and len(opts[0].param_groups) == 1
    assert opts[0].param_groups[0]["weight_decay"] == 0.3


def test_split_targets_matches_2d_only_and_rejects_no_match(seed_model):
    tgt, rest = split_targets(seed_model, ("q_",))  # would also hit q_norm.g, which is 1-D
    assert {n for n, _ in tgt} == {n for n in _qk_names(seed_model) if "q_proj" in n}
    assert any("q_norm" in n for n, _ in rest)
    with pytest.raises(ValueError, match=re.escape("('nothing',)")):
        split_targets(seed_model, ("nothing",))


def test_optimizers_step_the_model():
    model = build_model(ModelConfig(vocab_size=24, dim=32, heads=4, mlp_dim=64), 0)
    cfg = seed_config("Luon", p=23)
    opts = build_optimizers(model, cfg.optim, cfg.targets)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 23, (16, 3), generator=g)
    x[:, 2] = 23
    torch.nn.functional.cross_entropy(model(x), torch.randint(0, 23, (16,), generator=g)).backward()
    for o in opts:
        o.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert _qk_names(model) <= changed
    assert "lm_head.weight" in changed


@pytest.mark.parametrize("kw,needle", [
    (dict(kind="sgd"), "kind='sgd'"), (dict(lr=0), "lr=0"), (dict(muon_lr=-1.0), "muon_lr=-1.0"),
    (dict(weight_decay=-0.1), "weight_decay=-0.1"), (dict(target_weight_decay=-1), "target_weight_decay=-1"),
    (dict(luon_lambda=-0.5), "luon_lambda=-0.5"), (dict(momentum=1.0), "momentum=1.0"),
    (dict(ns_poly="x"), "ns_poly='x'"),
])
def test_optim_config_bad_values(kw, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        OptimConfig(**kw)
