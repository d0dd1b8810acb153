"""lrdlib.fused: the hand-written attention and RMSNorm equal autograd's op-by-op versions,
values and gradients (float64 gradcheck, float32 agreement), and reject bad shapes."""
import pytest
import torch
import torch.nn.functional as F

from lrdlib.fused import rms_norm, short_attention

pytestmark = pytest.mark.usefixtures("single_thread")


def _plain_attention(q, k, v, heads):
    B, Tq, d = q.shape
    split = lambda t: t.view(B, t.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
    return F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(B, Tq, d)


def _plain_rms(x, g, scale, eps=1e-12):
    return F.normalize(x, dim=-1, eps=eps) * (g * scale)


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


@pytest.mark.parametrize("shape", [(5, 6), (2, 3, 6), (1, 6)])
def test_rms_norm_gradcheck(shape):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    g = (0.5 + torch.rand(shape[-1], generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: rms_norm(a, b, 2.5), (x, g))


def test_rms_norm_equals_normalize_float32():
    x = torch.randn(512, 3, 128, requires_grad=True)
    g = (0.5 + torch.rand(128)).requires_grad_()
    gy = torch.randn(512, 3, 128)
    out = rms_norm(x, g, 128 ** 0.5)
    ref = _plain_rms(x, g, 128 ** 0.5)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(torch.autograd.grad(out, (x, g), gy), torch.autograd.grad(ref, (x, g), gy)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_rms_norm_zero_row_matches_normalize():
    """Below eps, F.normalize divides by the constant eps: the gradient has no projection term."""
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    gy = torch.tensor([[1.0, -1.0, 2.0], [0.3, 0.2, -0.1]], dtype=torch.float64)
    out, ref = rms_norm(x, g, 1.7), _plain_rms(x, g, 1.7)
    torch.testing.assert_close(out, ref)
    for a, b in zip(torch.autograd.grad(out, (x, g), gy), torch.autograd.grad(ref, (x, g), gy)):
        torch.testing.assert_close(a, b)


def test_rms_norm_bad_gain_shape():
    with pytest.raises(ValueError, match=r"gain of shape \(4,\).*expected \(6,\)"):
        rms_norm(torch.zeros(2, 6), torch.ones(4), 1.0)


def test_rms_norm_per_run_gain_gradcheck():
    """A gain per run (K, 1, d) against x (K, B, d): ∂g is summed per run only."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    g = (0.5 + torch.rand(3, 1, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: rms_norm(a, b, 1.3), (x, g))
    torch.testing.assert_close(rms_norm(x, g, 1.3), _plain_rms(x, g, 1.3))
