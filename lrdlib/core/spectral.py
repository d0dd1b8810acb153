"""SVD-based measures of (batches of) matrices W = U Σ Vᵀ, σ₁ ≥ σ₂ ≥ … ≥ 0.

Every function takes a tensor of shape (..., m, n) and works on the last two axes, so a
stack of Q/K matrices is processed in one call.

* ``polar``: the exact U Vᵀ by SVD — the subgradient of ‖W‖_* at a full-rank W (its
  matmul-only approximation is ``lrdlib.core.newton_schulz``).
* ``nuclear_norm`` ‖W‖_* = Σσᵢ, ``stable_rank`` ‖W‖_F²/σ₁², ``entropy_rank``
  exp(−Σ pᵢ log pᵢ) with pᵢ = σᵢ/Σσⱼ (Roy & Vetterli), ``numerical_rank``,
  ``power_iteration_sigma_max`` (σ₁ without an SVD).
* ``singular_value_shrink`` (prox of τ‖·‖_*), ``low_rank_projection`` (Eckart–Young).
* ``fro`` ‖W‖_F and ``inner`` ⟨A, B⟩ per matrix.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _check_matrix(W: Tensor, name: str = "W") -> None:
    if W.ndim < 2:
        raise ValueError(f"{name} has shape {tuple(W.shape)}: expected (..., m, n) with at least 2 axes")


def fro(W: Tensor) -> Tensor:
    """‖W‖_F per matrix, shape (...)."""
    return torch.linalg.matrix_norm(W, ord="fro")


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
