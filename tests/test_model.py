"""lrdlib.model: shapes, init, fast forward == full forward == seed reference, QK-Norm
scale invariance, attention maps, seeding, config validation."""
import importlib.util
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lrdlib.core.data import all_pairs
from lrdlib.core.model import ModelConfig, Transformer, build_model, short_attention

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(vocab_size=24, dim=32, heads=4, mlp_dim=64)


def _seed_reference():
    spec = importlib.util.spec_from_file_location("seed_reference", ROOT / "benchmarks" / "seed_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _randomise_gains(model: Transformer, seed: int = 0) -> None:
    """Make every RMSNorm gain ≠ 1 so that a swapped/missing norm shows in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(".g"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g, dtype=p.dtype))


def _tokens(p: int = 23) -> torch.Tensor:
    return all_pairs("add", p)[0]


# --------------------------------------------------------------------------- shapes and init
def test_seed_config_parameter_shapes():
    cfg = ModelConfig()
    assert (cfg.vocab_size, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_dim, cfg.seq_len, cfg.qk_norm) == \
        (114, 128, 2, 4, 512, 3, True)
    m = build_model(cfg, 0)
    expected = {"embedding.weight": (114, 128), "pos_embedding": (3, 128),
                "norm_final.g": (128,), "lm_head.weight": (114, 128)}
    for l in range(2):
        pre = f"layers.{l}."
        expected.update({
            pre + "norm1.g": (128,), pre + "norm2.g": (128,),
            pre + "attn.q_proj.weight": (128, 128), pre + "attn.k_proj.weight": (128, 128),
            pre + "attn.v_proj.weight": (128, 128), pre + "attn.o_proj.weight": (128, 128),
            pre + "attn.q_norm.g": (128,), pre + "attn.k_norm.g": (128,),
            pre + "mlp.fc_in.weight": (512, 128), pre + "mlp.fc_out.weight": (128, 512),
        })
    got = {n: tuple(p.shape) for n, p in m.named_parameters()}
    assert got == expected
    assert not any("bias" in n for n in got)
    assert sum(p.numel() for p in m.parameters()) == sum(int(torch.tensor(s).prod()) for s in expected.values())


def test_no_qk_norm_parameters_without_qk_norm():
    m = build_model(ModelConfig(qk_norm=False), 0)
    names = [n for n, _ in m.named_parameters()]
    assert not any("q_norm" in n or "k_norm" in n for n in names)
    assert len(names) == 4 + 2 * 8


def test_init_statistics():
    m = build_model(ModelConfig(), 0)
    e = m.embedding.weight.detach().double()
    assert abs(e.std().item() - 1.0) < 0.03 and abs(e.mean().item()) < 0.03
    pos = m.pos_embedding.detach().double()
    assert abs(pos.std().item() - 0.02) < 0.004 and abs(pos.mean().item()) < 0.005
    gains = [p for n, p in m.named_parameters() if n.endswith(".g")]
    assert len(gains) == 2 * 4 + 1
    assert all(torch.equal(g, torch.ones_like(g)) for g in gains)
    # linear layers: PyTorch's default U(-1/√fan_in, 1/√fan_in), std 1/√(3 fan_in)
    q = m.layers[0].attn.q_proj.weight.detach().double()
    assert q.abs().max().item() <= 128 ** -0.5
    assert abs(q.std().item() - (3 * 128) ** -0.5) < 0.003


# --------------------------------------------------------------------------- forward paths
@pytest.mark.parametrize("qk_norm", [True, False])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_forward_equals_forward_full(depth, qk_norm):
    m = build_model(ModelConfig(depth=depth, qk_norm=qk_norm, **SMALL), seed=depth)
    _randomise_gains(m, depth)
    x = _tokens()
    with torch.no_grad():
        a, b = m(x), m.forward_full(x)
    assert a.shape == b.shape == (23 * 23, 24)
    assert b.abs().max() > 0.1  # not trivially zero
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_forward_equals_forward_full_float64_tight(depth):
    m = build_model(ModelConfig(depth=depth, **SMALL), seed=7).double()
    _randomise_gains(m, 1)
    x = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(m(x), m.forward_full(x), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("T", [1, 2])
def test_forward_equals_forward_full_short_sequences(T):
    m = build_model(ModelConfig(**SMALL), 0).double()
    x = _tokens()[:50, :T]
    with torch.no_grad():
        torch.testing.assert_close(m(x), m.forward_full(x), atol=1e-12, rtol=1e-12)


def test_forward_default_config_equals_forward_full():
    m = build_model(ModelConfig(), 3)
    x = _tokens(113)[::7]
    with torch.no_grad():
        torch.testing.assert_close(m(x), m.forward_full(x), atol=1e-5, rtol=1e-5)


def test_forward_gradients_equal_forward_full_gradients():
    m = build_model(ModelConfig(**SMALL), 0).double()
    _randomise_gains(m, 2)
    x, y = all_pairs("add", 23)
    g1 = torch.autograd.grad(F.cross_entropy(m(x), y), list(m.parameters()))
    g2 = torch.autograd.grad(F.cross_entropy(m.forward_full(x), y), list(m.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("qk_norm", [True, False])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_matches_seed_reference_model(depth, qk_norm):
    ref_mod = _seed_reference()
    cfg = ModelConfig(depth=depth, qk_norm=qk_norm, **SMALL)
    m = build_model(cfg, seed=11).double()
    _randomise_gains(m, 3)
    ref = ref_mod.RefTransformer(vocab=24, dim=32, depth=depth, heads=4, mlp_dim=64, qk_norm=qk_norm).double()
    ref_mod.load_from_lrdlib(ref, m.state_dict())
    x = _tokens()
    with torch.no_grad():
        r = ref(x)
        torch.testing.assert_close(m(x), r, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(m.forward_full(x), r, atol=1e-12, rtol=1e-12)


def test_embed_rejects_too_long_or_1d_tokens():
    m = build_model(ModelConfig(**SMALL), 0)
    with pytest.raises(ValueError, match=re.escape("(2, 4)")):
        m(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError):
        m(torch.zeros(3, dtype=torch.long))


# --------------------------------------------------------------------------- scale invariance
def _qk_names(depth):
    return [f"layers.{l}.attn.{w}.weight" for l in range(depth) for w in ("q_proj", "k_proj")]


@pytest.mark.parametrize("alpha", [0.1, 10.0])
def test_qk_scale_invariance_with_qk_norm(alpha):
    m = build_model(ModelConfig(**SMALL), 0).double()
    _randomise_gains(m, 4)
    x = _tokens()
    params = dict(m.named_parameters())
    with torch.no_grad():
        base = m(x).clone()
        for name in _qk_names(2):
            W = params[name]
            orig = W.clone()
            W.mul_(alpha)
            torch.testing.assert_close(m(x), base, atol=1e-10, rtol=1e-10, msg=lambda s, name=name: f"{name}: {s}")
            torch.testing.assert_close(m.forward_full(x), base, atol=1e-10, rtol=1e-10)
            W.copy_(orig)
        # all four at once, with different scales
        for i, name in enumerate(_qk_names(2)):
            params[name].mul_(alpha ** (i + 1))
        torch.testing.assert_close(m(x), base, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", ["layers.0.attn.v_proj.weight", "layers.1.attn.o_proj.weight",
                                  "layers.0.mlp.fc_in.weight", "lm_head.weight"])
def test_other_weights_are_not_scale_invariant(name):
    m = build_model(ModelConfig(**SMALL), 0).double()
    x = _tokens()
    with torch.no_grad():
        base = m(x).clone()
        dict(m.named_parameters())[name].mul_(10.0)
        assert (m(x) - base).abs().max().item() > 1e-3


@pytest.mark.parametrize("name", _qk_names(2))
def test_qk_not_scale_invariant_without_qk_norm(name):
    m = build_model(ModelConfig(qk_norm=False, **SMALL), 0).double()
    x = _tokens()
    with torch.no_grad():
        base = m(x).clone()
        dict(m.named_parameters())[name].mul_(10.0)
        assert (m(x) - base).abs().max().item() > 1e-3


def test_scale_invariant_parameters_lists():
    on = build_model(ModelConfig(depth=2, **SMALL), 0)
    assert sorted(on.scale_invariant_parameters()) == sorted(_qk_names(2))
    assert sorted(on.qk_weights()) == sorted(_qk_names(2))
    on3 = build_model(ModelConfig(depth=3, **SMALL), 0)
    assert sorted(on3.scale_invariant_parameters()) == sorted(_qk_names(3))
    off = build_model(ModelConfig(qk_norm=False, **SMALL), 0)
    assert off.scale_invariant_parameters() == []
    assert len(off.qk_weights()) == 4


# --------------------------------------------------------------------------- attention maps
def test_attention_probs_shape_rows_and_values():
    m = build_model(ModelConfig(**SMALL), 0).double()
    _randomise_gains(m, 5)
    x = _tokens()[:17]
    for layer in (0, 1):
        a = m.attention_probs(x, layer)
        assert a.shape == (17, 4, 3, 3)
        assert (a >= 0).all()
        torch.testing.assert_close(a.sum(-1), torch.ones(17, 4, 3, dtype=a.dtype), atol=1e-12, rtol=0)
    # layer 0 by hand
    b0 = m.layers[0]
    with torch.no_grad():
        h = b0.norm1(m.embedding(x) + m.pos_embedding)
        q = b0.attn.q_norm(h @ b0.attn.q_proj.weight.T).view(17, 3, 4, 8).transpose(1, 2)
        k = b0.attn.k_norm(h @ b0.attn.k_proj.weight.T).view(17, 3, 4, 8).transpose(1, 2)
        expected = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1)
    torch.testing.assert_close(m.attention_probs(x, 0), expected, atol=1e-12, rtol=1e-12)
    assert not torch.allclose(m.attention_probs(x, 0), m.attention_probs(x, 1))


@pytest.mark.parametrize("layer", [-1, 2])
def test_attention_probs_bad_layer(layer):
    m = build_model(ModelConfig(**SMALL), 0)
    with pytest.raises(ValueError, match=re.escape(f"layer={layer}")):
        m.attention_probs(_tokens()[:2], layer)


# --------------------------------------------------------------------------- seeding
def test_build_model_determinism():
    cfg = ModelConfig(**SMALL)
    a, b, c = build_model(cfg, 5), build_model(cfg, 5), build_model(cfg, 6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for k in ("embedding.weight", "pos_embedding", "layers.0.attn.q_proj.weight", "lm_head.weight"):
        assert not torch.equal(sa[k], sc[k]), k


def test_build_model_leaves_global_rng_alone():
    torch.manual_seed(42)
    state = torch.get_rng_state()
    expected = torch.rand(5)
    torch.set_rng_state(state)
    build_model(ModelConfig(**SMALL), 9)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(torch.rand(5), expected)


def test_build_model_independent_of_global_rng():
    torch.manual_seed(1)
    a = build_model(ModelConfig(**SMALL), 3)
    torch.manual_seed(2)
    torch.rand(100)
    b = build_model(ModelConfig(**SMALL), 3)
    assert torch.equal(a.embedding.weight, b.embedding.weight)


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("kw,name", [
    (dict(dim=0), "dim=0"), (dict(depth=-1), "depth=-1"), (dict(heads=0), "heads=0"),
    (dict(vocab_size=1.5), "vocab_size=1.5"), (dict(mlp_dim=True), "mlp_dim=True"),
    (dict(seq_len=0), "seq_len=0"), (dict(dim=128, heads=3), "heads=3"), (dict(dim=30, heads=4), "dim=30"),
])
def test_model_config_bad_values(kw, name):
    with pytest.raises(ValueError, match=re.escape(name)):
        ModelConfig(**kw)


# --------------------------------------------------------------------------- short_attention (hand-written backward)
def _plain_attention(q, k, v, heads):
    B, Tq, d = q.shape
    def split(t):
        return t.view(B, t.shape[1], heads, d // heads).transpose(1, 2)
    return F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(B, Tq, d)


def _qkv(B, Tq, T, d, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(B, n, d, generator=gen, dtype=dtype, requires_grad=True) for n in (Tq, T, T)]


@pytest.mark.parametrize("Tq,T,heads,d", [(3, 3, 4, 8), (1, 3, 4, 8), (2, 5, 2, 6), (1, 1, 1, 4)])
def test_short_attention_gradcheck(Tq, T, heads, d):
    q, k, v = _qkv(2, Tq, T, d)
    assert torch.autograd.gradcheck(lambda a, b, c: short_attention(a, b, c, heads), (q, k, v))


@pytest.mark.parametrize("Tq", [3, 1])
def test_short_attention_equals_sdpa_float32(Tq):
    q, k, v = _qkv(64, Tq, 3, 128, dtype=torch.float32)
    g = torch.randn(64, Tq, 128)
    out = short_attention(q, k, v, 4)
    grads = torch.autograd.grad(out, (q, k, v), g)
    ref = _plain_attention(q, k, v, 4)
    ref_grads = torch.autograd.grad(ref, (q, k, v), g)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_short_attention_heads_do_not_mix():
    """Changing head 1's keys leaves head 0's output unchanged (the off-diagonal products are
    discarded)."""
    q, k, v = (t.detach() for t in _qkv(4, 3, 3, 8))
    k2 = k.clone()
    k2[..., 4:] = torch.randn(k2[..., 4:].shape, dtype=k2.dtype)  # new keys for head 1 of 2
    a, b = short_attention(q, k, v, 2), short_attention(q, k2, v, 2)
    torch.testing.assert_close(a[..., :4], b[..., :4], rtol=0, atol=1e-15)
    assert (a[..., 4:] - b[..., 4:]).abs().max() > 1e-3


@pytest.mark.parametrize("shapes,heads,match", [
    (((2, 3, 8), (2, 3, 8), (2, 4, 8)), 2, "expected q"),
    (((2, 3, 8), (3, 3, 8), (3, 3, 8)), 2, "expected q"),
    (((2, 3, 8), (2, 3, 8), (2, 3, 8)), 3, "heads=3 must divide"),
    (((3, 8), (3, 8), (3, 8)), 2, "expected q"),
])
def test_short_attention_bad_shapes(shapes, heads, match):
    with pytest.raises(ValueError, match=match):
        short_attention(*(torch.zeros(s) for s in shapes), heads)
