"""Spectral operations on (batches of) matrices W = U Σ Vᵀ, σ₁ ≥ σ₂ ≥ … ≥ 0.

Every function takes a tensor of shape (..., m, n) and works on the last two axes, so a
stack of Q/K matrices is processed in one call.

* ``newton_schulz``: polynomial iterations X ← p(X) that push every singular value of
  X₀ = W/‖W‖_F towards 1, approximating the polar factor U Vᵀ with matmuls only.
  ``cubic`` is the seed's iteration (p(X) = 1.5X − 0.5 X XᵀX); ``quintic`` is Muon's
  (a, b, c) = (3.4445, −4.7750, 2.0315). Neither reaches U Vᵀ in 5 steps from a
  Frobenius-normalised start: see ``ns_scalar`` and notebook 02.
* ``polar``: the exact U Vᵀ by SVD — the subgradient of ‖W‖_* at a full-rank W.
* ``nuclear_norm`` ‖W‖_* = Σσᵢ, ``stable_rank`` ‖W‖_F²/σ₁², ``entropy_rank``
  exp(−Σ pᵢ log pᵢ) with pᵢ = σᵢ/Σσⱼ (Roy & Vetterli).
* ``radial_tangential``: the split D = c·W + T with ⟨T, W⟩ = 0 of a direction D at W.
"""
from __future__ import annotations

import torch
from torch import Tensor

NS_POLYS = ("cubic", "quintic")
_QUINTIC = (3.4445, -4.7750, 2.0315)
_EPS = {"cubic": 1e-8, "quintic": 1e-7}


def _check_matrix(W: Tensor, name: str = "W") -> None:
    if W.ndim < 2:
        raise ValueError(f"{name} has shape {tuple(W.shape)}: expected (..., m, n) with at least 2 axes")


def fro(W: Tensor) -> Tensor:
    """‖W‖_F per matrix, shape (...)."""
    return torch.linalg.matrix_norm(W, ord="fro")


def newton_schulz(W: Tensor, steps: int = 5, poly: str = "cubic") -> Tensor:
    """Approximate polar factor NS(W) ≈ U Vᵀ by ``steps`` polynomial iterations.

    X₀ = W / (‖W‖_F + ε); then per step, with A = X Xᵀ (on the shorter side),
      cubic:   X ← 1.5 X − 0.5 A X                (seed: Y ← ½ Y (3I − YᵀY))
      quintic: X ← a X + (b A + c A²) X          (Muon)
    Computed in float32 (or float64 if W is float64); returns W's dtype.
    """
    _check_matrix(W)
    if poly not in NS_POLYS:
        raise ValueError(f"poly={poly!r} is not a known Newton-Schulz polynomial; valid: {', '.join(NS_POLYS)}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative integer")
    dtype = W.dtype
    X = W.to(torch.float64 if dtype == torch.float64 else torch.float32)
    tall = X.shape[-2] > X.shape[-1]
    if tall:
        X = X.mT
    X = X / (fro(X)[..., None, None] + _EPS[poly])
    for _ in range(steps):
        A = X @ X.mT
        if poly == "cubic":
            X = 1.5 * X - 0.5 * (A @ X)
        else:
            a, b, c = _QUINTIC
            X = a * X + (b * A + c * (A @ A)) @ X
    if tall:
        X = X.mT
    return X.to(dtype)


def ns_scalar(s: Tensor, steps: int = 5, poly: str = "cubic") -> Tensor:
    """The scalar map NS applies to each *normalised* singular value s = σᵢ/‖W‖_F.

    NS(W) = U φ(Σ/‖W‖_F) Vᵀ, with φ the same polynomial iterated on scalars; the exact polar
    factor has φ = sign. (ε in the normalisation is ignored here.)
    """
    if poly not in NS_POLYS:
        raise ValueError(f"poly={poly!r} is not a known Newton-Schulz polynomial; valid: {', '.join(NS_POLYS)}")
    x = s
    for _ in range(steps):
        if poly == "cubic":
            x = 1.5 * x - 0.5 * x ** 3
        else:
            a, b, c = _QUINTIC
            x = a * x + b * x ** 3 + c * x ** 5
    return x


def polar(W: Tensor) -> Tensor:
    """Exact polar factor U Vᵀ (thin SVD)."""
    _check_matrix(W)
    U, _, Vh = torch.linalg.svd(W, full_matrices=False)
    return U @ Vh


def singular_values(W: Tensor) -> Tensor:
    """σ₁ ≥ … ≥ σ_min(m,n), shape (..., min(m, n))."""
    _check_matrix(W)
    return torch.linalg.svdvals(W)


def nuclear_norm(W: Tensor) -> Tensor:
    """‖W‖_* = Σσᵢ."""
    return singular_values(W).sum(-1)


def stable_rank_from_sv(S: Tensor) -> Tensor:
    return (S ** 2).sum(-1) / (S[..., 0] ** 2).clamp_min(torch.finfo(S.dtype).tiny)


def stable_rank(W: Tensor) -> Tensor:
    """‖W‖_F² / σ₁² ∈ [1, rank W] — the seed's "effective rank" (our headline rank measure)."""
    return stable_rank_from_sv(singular_values(W))


def entropy_rank_from_sv(S: Tensor) -> Tensor:
    p = S / S.sum(-1, keepdim=True).clamp_min(torch.finfo(S.dtype).tiny)
    h = -(p * torch.log(p.clamp_min(torch.finfo(S.dtype).tiny))).sum(-1)
    return torch.exp(h)


def entropy_rank(W: Tensor) -> Tensor:
    """exp(H(p)), pᵢ = σᵢ/Σσⱼ (Roy & Vetterli's effective rank) ∈ [1, rank W]."""
    return entropy_rank_from_sv(singular_values(W))


def power_iteration_sigma_max(W: Tensor, iters: int = 10, generator: torch.Generator | None = None) -> Tensor:
    """σ₁ estimated by ``iters`` power iterations on WᵀW from a seeded random start (≤ σ₁)."""
    _check_matrix(W)
    v = torch.randn(*W.shape[:-2], W.shape[-1], 1, dtype=W.dtype, generator=generator).to(W.device)
    for _ in range(iters):
        v = W.mT @ (W @ v)
        v = v / torch.linalg.vector_norm(v, dim=-2, keepdim=True).clamp_min(1e-30)
    return torch.linalg.vector_norm(W @ v, dim=(-2, -1))


def singular_value_shrink(W: Tensor, tau: float | Tensor) -> Tensor:
    """prox of τ‖·‖_*: U max(Σ − τ, 0) Vᵀ (soft-thresholding of the singular values)."""
    _check_matrix(W)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return (U * (S - torch.as_tensor(tau, dtype=S.dtype, device=S.device)[..., None]).clamp_min(0)[..., None, :]) @ Vh


def low_rank_projection(W: Tensor, rank: int) -> Tensor:
    """Best rank-k approximation U_k Σ_k V_kᵀ (Eckart–Young)."""
    _check_matrix(W)
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank={rank!r} must be a positive integer")
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    k = min(rank, S.shape[-1])
    return (U[..., :k] * S[..., None, :k]) @ Vh[..., :k, :]


def inner(A: Tensor, B: Tensor) -> Tensor:
    """Frobenius inner product ⟨A, B⟩ = tr(AᵀB) per matrix."""
    return (A * B).sum((-2, -1))


def radial_tangential(D: Tensor, W: Tensor) -> tuple[Tensor, Tensor]:
    """Split D at W into c·W (radial) and T = D − c·W (tangential), c = ⟨D, W⟩/‖W‖_F².

    Returns (c, T); ⟨T, W⟩ = 0. For D = U Vᵀ, c = ‖W‖_*/‖W‖_F² and
    ‖T‖_F² = rank W − ‖W‖_*²/‖W‖_F² (notebook 02).
    """
    c = inner(D, W) / (fro(W) ** 2).clamp_min(torch.finfo(W.dtype).tiny)
    return c, D - c[..., None, None] * W


def radial_tangential_norms(D: Tensor, W: Tensor) -> tuple[Tensor, Tensor]:
    """(signed radial norm ⟨D, W⟩/‖W‖_F, tangential norm ‖T‖_F) of D at W."""
    c, T = radial_tangential(D, W)
    return c * fro(W), fro(T)


# --------------------------------------------------------------------------------------------
# Polar geometry and the spectral response of Newton-Schulz variants (notebooks 01 and 02).
#
# * ``numerical_rank``, ``polar_compact`` (U_r V_rᵀ over the non-zero singular values: the
#   minimum-norm subgradient of ‖W‖_*), ``polar_split_closed_form`` (c = ‖W‖_*/‖W‖_F² and
#   ‖T‖_F² = rank W − ‖W‖_*²/‖W‖_F² of U_r V_rᵀ at W).
# * ``nuc_fro_ratio`` r(W) = ‖W‖_*/‖W‖_F (scale-invariant rank surrogate, 1 ≤ r² ≤ rank W),
#   ``nuc_fro_ratio_grad`` its Euclidean gradient, ``sphere_gradient`` the Riemannian
#   gradient on the sphere {‖W‖_F = const} of any function.
# * ``polar_express_coefficients``: per-iteration minimax-optimal odd quintics (Polar Express,
#   Amsel et al. 2025, computed here by a linear programme on a grid).
# * ``ns_response`` / ``ns_variant``: the scalar map φ each variant applies to the normalised
#   singular values s = σ/‖W‖_F, and the matrix map U φ(Σ/‖W‖_F) Vᵀ. Variants: ``cubic`` (seed),
#   ``quintic`` (Muon), ``polar_express``, ``sign`` (exact U Vᵀ).
# * ``ns_relative_error``, ``ns_gain_at_zero``, ``ns_knee``, ``ns_spectral_penalty``: how far a
#   variant is from U Vᵀ, and the spectral penalty whose gradient it is.
# --------------------------------------------------------------------------------------------
import functools  # noqa: E402  (used by the memoised Polar Express coefficients below)

NS_VARIANTS = ("cubic", "quintic", "polar_express", "sign")


def _rank_tol(S: Tensor, shape: tuple[int, ...], rtol: float | None) -> Tensor:
    """Threshold below which a singular value counts as zero (numpy's matrix_rank default:
    σ₁ · max(m, n) · eps)."""
    if rtol is None:
        rtol = max(shape[-2:]) * torch.finfo(S.dtype).eps
    return S[..., :1] * rtol


def numerical_rank(W: Tensor, rtol: float | None = None) -> Tensor:
    """Number of singular values > rtol·σ₁ (default rtol = max(m, n)·eps), shape (...)."""
    _check_matrix(W)
    S = singular_values(W)
    return (S > _rank_tol(S, W.shape, rtol)).sum(-1)


def polar_compact(W: Tensor, rtol: float | None = None) -> Tensor:
    """U_r V_rᵀ over the singular values > rtol·σ₁: the minimum-Frobenius-norm element of the
    subdifferential ∂‖W‖_* = {U_r V_rᵀ + Z : U_rᵀZ = 0, Z V_r = 0, ‖Z‖₂ ≤ 1}.

    At full rank it equals ``polar(W)``; at a rank-deficient W, ``polar`` (thin SVD) returns
    U_r V_rᵀ + U_⊥ V_⊥ᵀ with arbitrary null-space bases: another, extreme, element of the set.
    """
    _check_matrix(W)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    keep = (S > _rank_tol(S, W.shape, rtol)).to(W.dtype)
    return (U * keep[..., None, :]) @ Vh


def polar_split_closed_form(W: Tensor, rtol: float | None = None) -> tuple[Tensor, Tensor]:
    """(c, ‖T‖_F²) for D = U_r V_rᵀ at W, in closed form:

        ⟨U_r V_rᵀ, W⟩ = tr Σ = ‖W‖_*,   c = ‖W‖_*/‖W‖_F²,
        ‖T‖_F² = ‖U_r V_rᵀ‖_F² − c²‖W‖_F² = rank W − ‖W‖_*²/‖W‖_F²  (≥ 0, Cauchy-Schwarz).
    """
    S = singular_values(W)
    r = (S > _rank_tol(S, W.shape, rtol)).sum(-1).to(S.dtype)
    nuc, fro2 = S.sum(-1), (S ** 2).sum(-1)
    return nuc / fro2, r - nuc ** 2 / fro2


def nuc_fro_ratio(W: Tensor) -> Tensor:
    """r(W) = ‖W‖_*/‖W‖_F, scale-invariant, 1 ≤ r² ≤ rank W (a smooth rank surrogate)."""
    S = singular_values(W)
    return S.sum(-1) / S.norm(dim=-1)


def nuc_fro_ratio_grad(W: Tensor) -> Tensor:
    """Euclidean gradient of r(W) = ‖W‖_*/‖W‖_F at a W with distinct non-zero singular values
    (full rank): ∇r = U Vᵀ/‖W‖_F − ‖W‖_* W/‖W‖_F³ = T/‖W‖_F, with T the tangential part of
    U Vᵀ at W. It is orthogonal to W (r is scale-invariant), so it is also the Riemannian
    gradient of r on the sphere through W."""
    f = fro(W)[..., None, None]
    return polar(W) / f - nuclear_norm(W)[..., None, None] * W / f ** 3


def sphere_gradient(W: Tensor, egrad: Tensor) -> Tensor:
    """Riemannian gradient on the sphere {‖X‖_F = ‖W‖_F} at W: the projection of the
    Euclidean gradient onto the tangent space, egrad − ⟨egrad, W⟩/‖W‖_F² · W."""
    return radial_tangential(egrad, W)[1]


def polar_express_coefficients(steps: int = 5, lower: float = 1e-3, upper: float = 1.0,
                               grid: int = 4000) -> list[tuple[float, float, float]]:
    """Per-iteration optimal odd quintics p_k(x) = a x + b x³ + c x⁵ (Polar Express).

    Greedy minimax, which Amsel et al. (2025) show is optimal for the composition: p_k minimises
    max |1 − p(x)| over x ∈ [ℓ_k, u_k] (solved as a linear programme on ``grid`` points,
    geometrically and linearly spaced, so ℓ_k is well resolved); then [ℓ_{k+1}, u_{k+1}] = the
    range of p_k on [ℓ_k, u_k]. Start: [lower, upper], the interval assumed to hold σ/‖W‖_F.
    Memoised (the LP takes ~0.1 s per step).
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative integer")
    if not 0 < lower < upper:
        raise ValueError(f"need 0 < lower < upper, got lower={lower!r}, upper={upper!r}")
    return list(_polar_express_coefficients(steps, float(lower), float(upper), int(grid)))


@functools.lru_cache(maxsize=64)
def _polar_express_coefficients(steps: int, lower: float, upper: float, grid: int) -> tuple[tuple[float, float, float], ...]:
    import numpy as np
    from scipy.optimize import linprog

    lo, hi, out = lower, upper, []
    for _ in range(steps):
        x = np.unique(np.concatenate([np.geomspace(lo, hi, grid), np.linspace(lo, hi, grid)]))
        P = np.stack([x, x ** 3, x ** 5], 1)
        # variables (a, b, c, t): minimise t subject to |1 − P·(a,b,c)| ≤ t on the grid
        A = np.block([[-P, -np.ones((len(x), 1))], [P, -np.ones((len(x), 1))]])
        b = np.concatenate([-np.ones(len(x)), np.ones(len(x))])
        res = linprog(c=[0, 0, 0, 1], A_ub=A, b_ub=b, bounds=[(None, None)] * 4, method="highs")
        if not res.success:
            raise RuntimeError(f"Polar Express LP failed on [{lo}, {hi}]: {res.message}")
        a_, b_, c_ = (float(v) for v in res.x[:3])
        out.append((a_, b_, c_))
        px = P @ np.array([a_, b_, c_])
        lo, hi = float(px.min()), float(px.max())
    return tuple(out)


def _check_variant(variant: str) -> None:
    if variant not in NS_VARIANTS:
        raise ValueError(f"variant={variant!r} is not a known NS variant; valid: {', '.join(NS_VARIANTS)}")


def ns_response(s: Tensor, variant: str = "cubic", steps: int = 5, lower: float = 1e-3) -> Tensor:
    """φ(s): the scalar map a variant applies to each normalised singular value s = σ/‖W‖_F.

    cubic/quintic: ``ns_scalar``; polar_express: the composition of
    ``polar_express_coefficients(steps, lower)``; sign: 1 for s > 0 (the exact U Vᵀ), 0 at 0.
    """
    _check_variant(variant)
    if variant in NS_POLYS:
        return ns_scalar(s, steps, variant)
    if variant == "sign":
        return torch.sign(s)
    x = s
    for a, b, c in polar_express_coefficients(steps, lower):
        x = a * x + b * x ** 3 + c * x ** 5
    return x


def ns_variant(W: Tensor, variant: str = "cubic", steps: int = 5, lower: float = 1e-3) -> Tensor:
    """The matrix map of a variant, U φ(Σ/‖W‖_F) Vᵀ: cubic/quintic via ``newton_schulz``
    (matmuls only); polar_express by the same matmul iteration with per-step coefficients
    from the Frobenius-normalised start; sign via ``polar`` (SVD)."""
    _check_matrix(W)
    _check_variant(variant)
    if variant in NS_POLYS:
        return newton_schulz(W, steps, variant)
    if variant == "sign":
        return polar(W)
    dtype = W.dtype
    X = W.to(torch.float64 if dtype == torch.float64 else torch.float32)
    tall = X.shape[-2] > X.shape[-1]
    if tall:
        X = X.mT
    X = X / fro(X)[..., None, None].clamp_min(torch.finfo(X.dtype).tiny)  # no ε: φ′(0) ~ 1e3 would amplify it
    for a, b, c in polar_express_coefficients(steps, lower):
        A = X @ X.mT
        X = a * X + (b * A + c * (A @ A)) @ X
    if tall:
        X = X.mT
    return X.to(dtype)


def ns_relative_error(W: Tensor, variant: str = "cubic", steps: int = 5, lower: float = 1e-3) -> Tensor:
    """‖ns_variant(W) − U Vᵀ‖_F / ‖U Vᵀ‖_F per matrix (U Vᵀ by SVD; computed in W's dtype)."""
    P = polar(W)
    return fro(ns_variant(W, variant, steps, lower) - P) / fro(P)


def ns_gain_at_zero(variant: str = "cubic", steps: int = 5, lower: float = 1e-3) -> float:
    """φ'(0): for small s the variant acts like s ↦ φ'(0)·s, a proportional (L2-like) shrink
    of W's small singular values. cubic: 1.5^steps; quintic: 3.4445^steps; polar_express:
    the product of the linear coefficients; sign: infinite."""
    _check_variant(variant)
    if variant == "sign":
        return float("inf")
    if variant == "cubic":
        return 1.5 ** steps
    if variant == "quintic":
        return _QUINTIC[0] ** steps
    g = 1.0
    for a, _, _ in polar_express_coefficients(steps, lower):
        g *= a
    return g


def ns_knee(variant: str = "cubic", steps: int = 5, level: float = 0.5, lower: float = 1e-3) -> float:
    """The smallest normalised singular value s ∈ (0, 1] with φ(s) ≥ ``level`` (bisection on a
    fine log grid, then on the bracket): below it the variant acts L2-like, above it
    nuclear-norm-like (φ ≈ 1). 0 for ``sign``."""
    _check_variant(variant)
    if variant == "sign":
        return 0.0
    s = torch.logspace(-8, 0, 4001, dtype=torch.float64)
    phi = ns_response(s, variant, steps, lower)
    hit = torch.nonzero(phi >= level)
    if len(hit) == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(s[0])
    lo, hi = float(s[i - 1]), float(s[i])
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(ns_response(torch.tensor(mid, dtype=torch.float64), variant, steps, lower)) >= level:
            hi = mid
        else:
            lo = mid
    return hi


def ns_spectral_penalty(s: Tensor, variant: str = "cubic", steps: int = 5, lower: float = 1e-3,
                        points: int = 1000) -> Tensor:
    """Φ(s) = ∫₀ˢ φ(t) dt for s ≥ 0, per element of ``s`` (float64).

    With ‖W‖_F held fixed at F, the decay W ← W − α U φ(Σ/F) Vᵀ is a gradient step on
    α Σᵢ F·Φ(σᵢ/F): the spectral penalty the variant implements. Φ(s) = s for ``sign`` (the
    nuclear norm); for NS, Φ(s) ≈ φ'(0) s²/2 below the knee (ridge, L2-like) and grows
    linearly above it. Computed by the trapezoid rule on t = s·u, u the union of ``points``
    log-spaced nodes in [1e-9, 1] and ``points`` linear ones in [0, 1] (relative error ≲ 1e-5,
    ≲ 1e-3 near s = 1 for the fast-oscillating Polar Express composition).
    """
    _check_variant(variant)
    s = torch.as_tensor(s, dtype=torch.float64)
    if variant == "sign":
        return s.abs()
    u = torch.cat([torch.logspace(-9, 0, points, dtype=torch.float64), torch.linspace(0, 1, points, dtype=torch.float64)])
    u = torch.unique(u)  # sorted; log nodes resolve small t, linear nodes the oscillations of quintics near 1
    flat = s.reshape(-1).clamp_min(0)
    out = torch.empty_like(flat)
    for i in range(0, len(flat), 256):
        t = flat[i:i + 256, None] * u[None, :]
        out[i:i + 256] = torch.trapezoid(ns_response(t, variant, steps, lower), t, dim=-1)
    return out.reshape(s.shape)
