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
