"""lrdlib.spectral, lrdlib.newton_schulz and the radial/tangential split of lrdlib.polar_geometry
against SVD/numpy/scipy definitions and reference loops, in float64."""
import math
import re

import numpy as np
import pytest
import scipy.linalg
import torch
from ns_reference import ns_reference

from lrdlib.core import newton_schulz as ns
from lrdlib.core import polar_geometry as pg
from lrdlib.core import spectral as sp

pytestmark = pytest.mark.usefixtures("single_thread")

D64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=_gen(seed), dtype=D64)


def _orth(n, seed):
    q, _ = torch.linalg.qr(_randn(n, n, seed=seed))
    return q


def _with_spectrum(m, n, s, seed=0):
    """U diag(s) Vᵀ with random orthonormal U (m×k), V (n×k), k = len(s)."""
    s = torch.as_tensor(s, dtype=D64)
    k = len(s)
    U = _orth(m, seed)[:, :k]
    V = _orth(n, seed + 1000)[:, :k]
    return (U * s) @ V.T




# --------------------------------------------------------------------------- Newton-Schulz
@pytest.mark.parametrize("poly", ["cubic", "quintic"])
@pytest.mark.parametrize("shape", [(6, 6), (5, 9), (9, 4)])
def test_newton_schulz_matches_independent_formula(poly, shape):
    W = _randn(*shape, seed=1)
    for steps in (0, 1, 5):
        torch.testing.assert_close(ns.newton_schulz(W, steps, poly), ns_reference(W, steps, poly),
                                   atol=1e-12, rtol=1e-12)


def test_newton_schulz_zero_steps_is_frobenius_normalisation():
    W = _randn(4, 7, seed=2)
    X = ns.newton_schulz(W, 0)
    assert abs(torch.linalg.norm(X).item() - 1.0) < 1e-8
    torch.testing.assert_close(X, W / torch.linalg.norm(W), atol=1e-9, rtol=1e-8)


@pytest.mark.parametrize("poly", ["cubic", "quintic"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_newton_schulz_batched_equals_looped(poly, dtype, tol):
    W = _randn(5, 3, 7, 9, seed=3).to(dtype)
    batched = ns.newton_schulz(W, 5, poly)
    assert batched.shape == W.shape and batched.dtype == dtype
    looped = torch.stack([torch.stack([ns.newton_schulz(w, 5, poly) for w in row]) for row in W])
    torch.testing.assert_close(batched, looped, atol=tol, rtol=tol)
    # per-matrix normalisation: scaling one matrix of the stack changes nothing (up to the ε of
    # the normalisation, ~1e-8 relative)
    W2 = W.clone()
    W2[0, 0] *= 100.0
    out2 = ns.newton_schulz(W2, 5, poly)
    torch.testing.assert_close(out2, batched, atol=1e-5, rtol=0)
    torch.testing.assert_close(out2[1:], batched[1:], atol=tol, rtol=tol)


def test_newton_schulz_keeps_low_precision_dtype():
    W = _randn(8, 8, seed=4).to(torch.bfloat16)
    out = ns.newton_schulz(W, 5)
    assert out.dtype == torch.bfloat16
    ref = ns.newton_schulz(W.double(), 5)
    assert (out.double() - ref).abs().max().item() < 2e-2


@pytest.mark.parametrize("shape", [(8, 8), (12, 5), (5, 12)])
def test_many_cubic_steps_converge_to_polar(shape):
    m, n = shape
    k = min(m, n)
    s = 3.7 * torch.linspace(0.5, 1.0, k, dtype=D64)
    W = _with_spectrum(m, n, s, seed=5)
    P = sp.polar(W)
    torch.testing.assert_close(ns.newton_schulz(W, 30, "cubic"), P, atol=1e-8, rtol=0)
    # ... while the seed's 5 steps from a Frobenius start are visibly not there yet
    assert (ns.newton_schulz(W, 5, "cubic") - P).abs().max().item() > 1e-3


def _ns_reference_loop(W: torch.Tensor, steps: int, poly: str) -> torch.Tensor:
    """Today's arithmetic written out, for the bit-identity check: float32/64, shorter side,
    X₀ = W/(‖W‖_F + ε), cubic X ← 1.5X − 0.5(AX), quintic X ← aX + (bA + cA²)X, A = XXᵀ."""
    dtype = W.dtype
    X = W.to(torch.float64 if dtype == torch.float64 else torch.float32)
    tall = X.shape[-2] > X.shape[-1]
    X = X.mT if tall else X
    X = X / (torch.linalg.matrix_norm(X)[..., None, None] + {"cubic": 1e-8, "quintic": 1e-7}[poly])
    for _ in range(steps):
        A = X @ X.mT
        if poly == "cubic":
            X = 1.5 * X - 0.5 * (A @ X)
        else:
            X = 3.4445 * X + (-4.7750 * A + 2.0315 * (A @ A)) @ X
    return (X.mT if tall else X).to(dtype)


@pytest.mark.parametrize("poly", ["cubic", "quintic"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_newton_schulz_bit_identical_to_reference_loop(poly, dtype):
    for shape in [(6, 6), (5, 9), (9, 4), (3, 7, 5)]:
        W = _randn(*shape, seed=40).to(dtype)
        for steps in range(8):
            assert torch.equal(ns.newton_schulz(W, steps, poly), _ns_reference_loop(W, steps, poly)), (shape, steps)


@pytest.mark.parametrize("schedule", ns.SCHEDULES)
@pytest.mark.parametrize("shape", [(7, 7), (10, 6), (6, 10)])
def test_newton_schulz_is_u_phi_vt_with_ns_response(schedule, shape):
    W = _randn(*shape, seed=6)
    W = W * (1e4 / torch.linalg.norm(W))  # ‖W‖_F = 1e4: the ε of the normalisation is negligible
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    for steps in range(8):
        expected = (U * ns.ns_response(S / torch.linalg.norm(W), schedule, steps)) @ Vh
        torch.testing.assert_close(ns.newton_schulz(W, steps, schedule), expected, atol=1e-10, rtol=0)


def test_schedule_coefficients():
    assert ns.schedule_coefficients("cubic", 3) == [(1.5, -0.5, 0.0)] * 3
    assert ns.schedule_coefficients("quintic", 2) == [(3.4445, -4.7750, 2.0315)] * 2
    assert ns.schedule_coefficients("cubic", 0) == [] == ns.schedule_coefficients("polar_express", 0)
    pe = ns.schedule_coefficients("polar_express", 7)
    assert len(pe) == 7 and ns.schedule_coefficients("polar_express", 3) == pe[:3]  # greedy: prefixes agree
    assert pe == ns.polar_express_coefficients(7)


def test_ns_response_values():
    s = torch.tensor([0.0, 0.5, 1.0], dtype=D64)
    torch.testing.assert_close(ns.ns_response(s, "cubic", 1), torch.tensor([0.0, 0.6875, 1.0], dtype=D64))
    a, b, c = 3.4445, -4.7750, 2.0315
    torch.testing.assert_close(ns.ns_response(s, "quintic", 1),
                               torch.tensor([0.0, a / 2 + b / 8 + c / 32, a + b + c], dtype=D64))
    for schedule in ns.SCHEDULES:
        torch.testing.assert_close(ns.ns_response(s, schedule, 0), s)
    torch.testing.assert_close(ns.ns_response(s, "sign", 3), torch.tensor([0.0, 1.0, 1.0], dtype=D64))


def test_quintic_vs_cubic_after_five_steps():
    # normalised singular values spread over [~0.01, ~0.7]
    s = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.5, 0.15], dtype=D64)
    W = _with_spectrum(9, 9, s, seed=7)
    sn = s / s.norm()
    assert sn.min() < 0.015
    cub = torch.linalg.svdvals(ns.newton_schulz(W, 5, "cubic"))
    qui = torch.linalg.svdvals(ns.newton_schulz(W, 5, "quintic"))
    # quintic (Muon): every nonzero singular value lands in a band around 1, none converges
    assert ((qui[:6] > 0.6) & (qui[:6] < 1.2)).all()
    assert (qui[:6] - 1).abs().max() > 0.05
    # cubic: the large ones are at 1 to high accuracy, the smallest is still far below
    assert abs(cub[0] - 1) < 1e-12 and abs(cub[1] - 1) < 1e-4
    assert cub[5] < 0.15
    # both keep the null space (rank 6 in a 9×9 matrix)
    assert cub[6:].abs().max() < 1e-10 and qui[6:].abs().max() < 1e-10
    assert not torch.allclose(ns.newton_schulz(W, 5, "cubic"), ns.newton_schulz(W, 5, "quintic"), atol=1e-2)


def test_newton_schulz_tall_equals_transpose_of_wide():
    W = _randn(11, 4, seed=8)
    out = ns.newton_schulz(W, 5)
    assert out.shape == (11, 4)
    torch.testing.assert_close(out, ns.newton_schulz(W.T, 5).T, atol=1e-14, rtol=0)
    # converged: orthonormal columns
    X = ns.newton_schulz(W, 40)
    torch.testing.assert_close(X.T @ X, torch.eye(4, dtype=D64), atol=1e-9, rtol=0)


# --------------------------------------------------------------------------- polar and norms
@pytest.mark.parametrize("shape", [(6, 6), (9, 5), (5, 9)])
def test_polar_matches_scipy(shape):
    W = _randn(*shape, seed=9)
    u, _ = scipy.linalg.polar(W.numpy())
    np.testing.assert_allclose(sp.polar(W).numpy(), u, atol=1e-10, rtol=0)


def test_polar_batched_and_orthogonal():
    W = _randn(3, 7, 4, seed=10)
    P = sp.polar(W)
    for i in range(3):
        u, _ = scipy.linalg.polar(W[i].numpy())
        np.testing.assert_allclose(P[i].numpy(), u, atol=1e-10, rtol=0)
    torch.testing.assert_close(P.mT @ P, torch.eye(4, dtype=D64).expand(3, 4, 4), atol=1e-12, rtol=0)


def test_polar_inner_product_is_nuclear_norm():
    W = _randn(4, 8, 6, seed=11)
    nuc = sp.nuclear_norm(W)
    torch.testing.assert_close(sp.inner(sp.polar(W), W), nuc, atol=1e-10, rtol=0)


def test_nuclear_norm_vs_numpy():
    W = _randn(3, 5, 8, seed=12)
    got = sp.nuclear_norm(W)
    assert got.shape == (3,)
    for i in range(3):
        assert abs(got[i].item() - np.linalg.norm(W[i].numpy(), "nuc")) < 1e-10


def test_singular_values_sorted_and_fro():
    W = _randn(2, 6, 4, seed=13)
    S = sp.singular_values(W)
    assert S.shape == (2, 4)
    assert (S[:, :-1] >= S[:, 1:]).all()
    np.testing.assert_allclose(sp.fro(W).numpy(), [np.linalg.norm(w) for w in W.numpy()], rtol=1e-13)


def test_stable_and_entropy_rank_known_spectra():
    u, v = _randn(7, 1, seed=14), _randn(5, 1, seed=15)
    rank1 = u @ v.T
    assert abs(sp.stable_rank(rank1).item() - 1) < 1e-10
    assert abs(sp.entropy_rank(rank1).item() - 1) < 1e-6
    Q = _orth(6, 16)
    assert abs(sp.stable_rank(Q).item() - 6) < 1e-10
    assert abs(sp.entropy_rank(Q).item() - 6) < 1e-10
    assert abs(sp.stable_rank(2.5 * Q).item() - 6) < 1e-10  # scale-free
    W = _with_spectrum(5, 4, [2.0, 1.0, 1.0], seed=17)
    assert abs(sp.stable_rank(W).item() - 6 / 4) < 1e-10          # (4+1+1)/4
    assert abs(sp.entropy_rank(W).item() - 2 ** 1.5) < 1e-7       # p = (½, ¼, ¼): H = 1.5 ln 2
    assert abs(sp.stable_rank(torch.diag(torch.tensor([3.0, 4.0], dtype=D64))).item() - 25 / 16) < 1e-12


def test_rank_measures_batched_and_bounded():
    W = _randn(6, 8, 5, seed=18)
    sr, er = sp.stable_rank(W), sp.entropy_rank(W)
    assert sr.shape == er.shape == (6,)
    assert ((sr >= 1) & (sr <= 5 + 1e-12)).all() and ((er >= 1) & (er <= 5 + 1e-12)).all()
    for i in range(6):
        s = np.linalg.svd(W[i].numpy(), compute_uv=False)
        assert abs(sr[i].item() - (s ** 2).sum() / s[0] ** 2) < 1e-12
        p = s / s.sum()
        assert abs(er[i].item() - math.exp(-(p * np.log(p)).sum())) < 1e-12


def test_zero_matrix_ranks_are_finite():
    Z = torch.zeros(4, 4, dtype=D64)
    assert torch.isfinite(sp.stable_rank(Z)) and torch.isfinite(sp.entropy_rank(Z))


# --------------------------------------------------------------------------- radial / tangential
def test_radial_tangential_split():
    D, W = _randn(5, 6, 4, seed=19), _randn(5, 6, 4, seed=20)
    c, T = pg.radial_tangential(D, W)
    assert c.shape == (5,) and T.shape == D.shape
    torch.testing.assert_close(sp.inner(T, W), torch.zeros(5, dtype=D64), atol=1e-12, rtol=0)
    torch.testing.assert_close(c[:, None, None] * W + T, D, atol=1e-14, rtol=0)
    r, t = pg.radial_tangential_norms(D, W)
    torch.testing.assert_close(r, sp.inner(D, W) / sp.fro(W), atol=1e-12, rtol=0)
    torch.testing.assert_close(r ** 2 + t ** 2, sp.fro(D) ** 2, atol=1e-10, rtol=0)
    # D = W is purely radial, c = 1
    c1, T1 = pg.radial_tangential(W, W)
    torch.testing.assert_close(c1, torch.ones(5, dtype=D64), atol=1e-14, rtol=0)
    assert T1.abs().max() < 1e-13


@pytest.mark.parametrize("shape", [(6, 6), (9, 5), (4, 7)])
def test_polar_tangential_norm_formula(shape):
    W = _randn(3, *shape, seed=21)
    rank = min(shape)
    c, T = pg.radial_tangential(sp.polar(W), W)
    nuc, fro = sp.nuclear_norm(W), sp.fro(W)
    torch.testing.assert_close(c, nuc / fro ** 2, atol=1e-12, rtol=0)
    torch.testing.assert_close(sp.fro(T) ** 2, rank - nuc ** 2 / fro ** 2, atol=1e-10, rtol=0)
    assert (sp.fro(T) ** 2 > 0.1).all()  # a generic matrix is not a multiple of its polar factor


# --------------------------------------------------------------------------- shrink / projection
def test_singular_value_shrink_equals_svd_definition():
    W = _randn(4, 7, 5, seed=22)
    tau = 0.8
    got = sp.singular_value_shrink(W, tau)
    for i in range(4):
        U, S, Vh = np.linalg.svd(W[i].numpy(), full_matrices=False)
        np.testing.assert_allclose(got[i].numpy(), (U * np.maximum(S - tau, 0)) @ Vh, atol=1e-12)


def test_singular_value_shrink_zeros_small_singular_values():
    W = _with_spectrum(6, 5, [3.0, 1.0, 0.2], seed=23)
    X = sp.singular_value_shrink(W, 0.5)
    S = torch.linalg.svdvals(X)
    torch.testing.assert_close(S, torch.tensor([2.5, 0.5, 0, 0, 0], dtype=D64), atol=1e-12, rtol=0)
    assert torch.linalg.matrix_rank(X).item() == 2
    # τ above σ₁: everything goes
    assert sp.singular_value_shrink(W, 3.5).abs().max() < 1e-12
    # τ = 0: identity
    torch.testing.assert_close(sp.singular_value_shrink(W, 0.0), W, atol=1e-12, rtol=0)


def test_singular_value_shrink_is_the_proximal_operator():
    W = _randn(6, 5, seed=24)
    tau = 0.7

    def objective(X):
        return 0.5 * torch.linalg.norm(X - W) ** 2 + tau * sp.nuclear_norm(X)

    X = sp.singular_value_shrink(W, tau)
    f0 = objective(X).item()
    g = _gen(25)
    for _ in range(50):
        R = torch.randn(6, 5, generator=g, dtype=D64)
        for eps in (1e-1, 1e-3):
            assert objective(X + eps * R).item() >= f0 - 1e-12
    # and it is not W itself or plain scaling
    assert objective(W).item() > f0 + 1e-3


def test_singular_value_shrink_per_matrix_tau():
    W = _randn(3, 5, 5, seed=26)
    tau = torch.tensor([0.1, 0.5, 1.0], dtype=D64)
    got = sp.singular_value_shrink(W, tau)
    for i in range(3):
        torch.testing.assert_close(got[i], sp.singular_value_shrink(W[i], float(tau[i])), atol=1e-12, rtol=0)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_low_rank_projection_rank_and_eckart_young(k):
    W = _randn(2, 8, 6, seed=27)
    P = sp.low_rank_projection(W, k)
    S = torch.linalg.svdvals(W)
    for i in range(2):
        assert torch.linalg.matrix_rank(P[i]).item() == k
        err = torch.linalg.norm(W[i] - P[i])
        assert abs(err.item() ** 2 - (S[i, k:] ** 2).sum().item()) < 1e-10
        assert abs(torch.linalg.matrix_norm(W[i] - P[i], ord=2).item() - S[i, k].item()) < 1e-10
        # no random rank-k matrix does better
        g = _gen(k)
        for _ in range(5):
            R = torch.randn(8, k, generator=g, dtype=D64) @ torch.randn(k, 6, generator=g, dtype=D64)
            assert torch.linalg.norm(W[i] - R).item() >= err.item()


def test_low_rank_projection_full_rank_is_identity():
    W = _randn(5, 4, seed=28)
    torch.testing.assert_close(sp.low_rank_projection(W, 4), W, atol=1e-12, rtol=0)
    torch.testing.assert_close(sp.low_rank_projection(W, 10), W, atol=1e-12, rtol=0)


def test_power_iteration_sigma_max():
    W = _with_spectrum(9, 7, [5.0, 2.0, 1.0, 0.5], seed=29)
    est = sp.power_iteration_sigma_max(W, iters=60, generator=_gen(0))
    assert abs(est.item() - 5.0) < 1e-9
    few = sp.power_iteration_sigma_max(W, iters=1, generator=_gen(0))
    assert few.item() <= 5.0 + 1e-12 and few.item() > 1.0
    Wb = torch.stack([W, 3 * W, _randn(9, 7, seed=30)])
    est_b = sp.power_iteration_sigma_max(Wb, iters=200, generator=_gen(1))
    torch.testing.assert_close(est_b, torch.linalg.matrix_norm(Wb, ord=2), rtol=1e-6, atol=0)


def test_power_iteration_seeded_is_reproducible():
    W = _randn(6, 6, seed=31)
    a = sp.power_iteration_sigma_max(W, iters=2, generator=_gen(5))
    b = sp.power_iteration_sigma_max(W, iters=2, generator=_gen(5))
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("fn", [
    lambda v: ns.newton_schulz(v), sp.polar, sp.singular_values, sp.nuclear_norm, sp.stable_rank,
    sp.entropy_rank, lambda v: sp.power_iteration_sigma_max(v),
], ids=["newton_schulz", "polar", "singular_values", "nuclear_norm", "stable_rank", "entropy_rank",
        "power_iteration"])
def test_one_dimensional_input_raises_value_error(fn):
    with pytest.raises(ValueError, match=re.escape("(5,)")):
        fn(torch.ones(5, dtype=D64))


@pytest.mark.parametrize("fn", [lambda v: sp.singular_value_shrink(v, 0.1), lambda v: sp.low_rank_projection(v, 1)],
                         ids=["singular_value_shrink", "low_rank_projection"])
def test_one_dimensional_input_raises_value_error_shrink_and_projection(fn):
    with pytest.raises(ValueError):
        fn(torch.ones(5, dtype=D64))


@pytest.mark.parametrize("call", [
    lambda n, k: ns.newton_schulz(_randn(3, 3), k, n), lambda n, k: ns.schedule_coefficients(n, k),
    lambda n, k: ns.ns_response(torch.tensor(0.5), n, k), lambda n, k: ns.ns_relative_error(_randn(3, 3), n, k),
    lambda n, k: ns.ns_gain_at_zero(n, k), lambda n, k: ns.ns_knee(n, k),
    lambda n, k: ns.ns_spectral_penalty(torch.tensor([0.5]), n, k),
], ids=["newton_schulz", "schedule_coefficients", "ns_response", "ns_relative_error", "ns_gain_at_zero",
        "ns_knee", "ns_spectral_penalty"])
def test_bad_schedule_and_steps_are_rejected(call):
    for bad in ("septic", "Cubic", "newton"):
        with pytest.raises(ValueError, match=re.escape(f"schedule={bad!r}") + ".*valid: cubic, quintic, polar_express"):
            call(bad, 5)
    for steps in (-1, 2.5, "5", True, None):
        with pytest.raises(ValueError, match=re.escape(f"steps={steps!r}") + ".*non-negative integer"):
            call("cubic", steps)


def test_sign_is_the_exact_limit_not_a_schedule():
    W = _randn(4, 4)
    with pytest.raises(ValueError, match=re.escape("schedule='sign'") + ".*spectral.polar.*valid: cubic, quintic, "
                                                                        "polar_express$"):
        ns.newton_schulz(W, 5, "sign")
    with pytest.raises(ValueError, match="valid: cubic, quintic, polar_express$"):
        ns.schedule_coefficients("sign", 5)
    with pytest.raises(ValueError, match="valid: cubic, quintic, polar_express, sign$"):
        ns.ns_response(torch.tensor(0.5), "polar", 5)


@pytest.mark.parametrize("rank", [0, -1, 1.5])
def test_low_rank_projection_bad_rank(rank):
    with pytest.raises(ValueError, match=re.escape(f"rank={rank!r}")):
        sp.low_rank_projection(_randn(3, 3), rank)
