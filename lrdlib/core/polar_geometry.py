"""Polar geometry of ‖W‖_* on the sphere {‖W‖_F = const} (notebooks 01, 02).

* ``radial_tangential``: the split D = c·W + T with ⟨T, W⟩ = 0 of a direction D at W;
  ``radial_tangential_norms`` its (signed radial, tangential) norms; ``angle`` ∠(A, B).
* ``polar_compact`` (U_r V_rᵀ over the non-zero σᵢ: the minimum-norm subgradient of ‖W‖_*),
  ``polar_split_closed_form`` (c = ‖W‖_*/‖W‖_F² and ‖T‖_F² = rank W − ‖W‖_*²/‖W‖_F² of
  U_r V_rᵀ at W), ``polar_tangential_share`` (‖T‖_F/‖U_r V_rᵀ‖_F from it).
* ``normalised_singular_values`` σ/‖W‖_F, the argument of the NS response φ, and
  ``near_null_error_share`` the part of ‖NS(W) − U Vᵀ‖² that comes from the near-zero ones.
* ``nuc_fro_ratio`` r(W) = ‖W‖_*/‖W‖_F (scale-invariant rank surrogate, 1 ≤ r² ≤ rank W),
  ``nuc_fro_ratio_grad`` its Euclidean gradient, ``sphere_gradient`` the Riemannian gradient
  on the sphere of any function, ``riemannian_fd_check`` a finite-difference check of both.
* ``subgradient_slack``: min over test points of ‖W'‖_* − ‖W‖_* − ⟨G, W' − W⟩ (≥ 0 iff G
  passes the subgradient inequality there), used to draw the needle-to-fan picture;
  ``fan_slack`` the same for U_r V_rᵀ + Z with Z in the complement of a low-rank W.
* ``diag_trajectory``: a decay iterated from a diagonal 2×2 W; ``ns_shrink_ratios`` the
  per-step factor of its small singular value under the NS decay against 1 − α·φ′(0)/‖W‖_F.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lrdlib.core.newton_schulz import ns_gain_at_zero, ns_response
from lrdlib.core.spectral import (
    _check_matrix,
    _rank_tol,
    fro,
    inner,
    nuclear_norm,
    polar,
    singular_values,
)


def radial_tangential(D: Tensor, W: Tensor) -> tuple[Tensor, Tensor]:
    """Split D at W into c·W (radial) and T = D − c·W (tangential), c = ⟨D, W⟩/‖W‖_F².

    Returns (c, T); ⟨T, W⟩ = 0. For D = U Vᵀ, c = ‖W‖_*/‖W‖_F² and
    ‖T‖_F² = rank W − ‖W‖_*²/‖W‖_F² (notebook 02).
    """
    c = inner(D, W) / (fro(W) ** 2).clamp_min(torch.finfo(W.dtype).tiny)
    return c, D - c[..., None, None] * W


def angle(A: Tensor, B: Tensor) -> Tensor:
    """∠(A, B) ∈ [0, π] per matrix, as 2·atan2(‖Â − B̂‖_F, ‖Â + B̂‖_F) with Â = A/‖A‖_F, in float64:
    exact for tiny angles too, where arccos of the cosine loses every digit (1 − cos θ ≈ θ²/2 <
    float eps), and whatever the ratio of ‖A‖ to ‖B‖."""
    A, B = A.double(), B.double()
    a = A / fro(A)[..., None, None].clamp_min(torch.finfo(A.dtype).tiny)
    b = B / fro(B)[..., None, None].clamp_min(torch.finfo(B.dtype).tiny)
    return 2 * torch.atan2(fro(a - b), fro(a + b))


def radial_tangential_norms(D: Tensor, W: Tensor) -> tuple[Tensor, Tensor]:
    """(signed radial norm ⟨D, W⟩/‖W‖_F, tangential norm ‖T‖_F) of D at W."""
    c, T = radial_tangential(D, W)
    return c * fro(W), fro(T)


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


def _polar_split(W: Tensor, rtol: float | None) -> tuple[Tensor, Tensor, Tensor]:
    S = singular_values(W)
    r = (S > _rank_tol(S, W.shape, rtol)).sum(-1).to(S.dtype)
    nuc, fro2 = S.sum(-1), (S ** 2).sum(-1)
    return nuc / fro2, r - nuc ** 2 / fro2, r


def polar_split_closed_form(W: Tensor, rtol: float | None = None) -> tuple[Tensor, Tensor]:
    """(c, ‖T‖_F²) for D = U_r V_rᵀ at W, in closed form:

        ⟨U_r V_rᵀ, W⟩ = tr Σ = ‖W‖_*,   c = ‖W‖_*/‖W‖_F²,
        ‖T‖_F² = ‖U_r V_rᵀ‖_F² − c²‖W‖_F² = rank W − ‖W‖_*²/‖W‖_F²  (≥ 0, Cauchy-Schwarz).
    """
    return _polar_split(W, rtol)[:2]


def polar_tangential_share(W: Tensor, rtol: float | None = None) -> Tensor:
    """‖T‖_F/‖U_r V_rᵀ‖_F = √(1 − ‖W‖_*²/(rank W·‖W‖_F²)): the tangential share of U_r V_rᵀ at W."""
    _, tan2, r = _polar_split(W, rtol)
    return torch.sqrt(tan2 / r)


def normalised_singular_values(W: Tensor) -> Tensor:
    """σᵢ/‖W‖_F of every matrix of W, flattened: the values NS(W) = U φ(Σ/‖W‖_F) Vᵀ maps."""
    return (singular_values(W) / fro(W)[..., None]).flatten()


def near_null_error_share(s: Tensor, schedule: str = "cubic", steps: int = 5, below: float = 1e-3) -> float:
    """Share of ‖NS(W) − U Vᵀ‖_F² = Σᵢ (φ(sᵢ) − 1)² carried by the normalised singular values
    s < ``below`` (s from ``normalised_singular_values``)."""
    sqerr = (ns_response(s, schedule, steps) - 1) ** 2
    return float(sqerr[s < below].sum() / sqerr.sum())


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


def subgradient_slack(W: Tensor, G: Tensor, n_points: int = 2000, scale: float = 1.0, seed: int = 0,
                      extra: Tensor | None = None) -> float:
    """min over test points W' of ‖W'‖_* − ‖W‖_* − ⟨G, W' − W⟩ (float64).

    G is a subgradient of ‖·‖_* at W iff this is ≥ 0 for every W'; a negative value is a
    witness that G is not. The test points are W + scale·r·H (H Gaussian, r log-spaced in
    [1e-3, 1], to probe directions near W), pure random matrices scale·H, and the matrices in
    ``extra`` (shape (k, m, n)), e.g. a known witness direction.
    """
    gen = torch.Generator().manual_seed(seed)
    W, G = W.double(), G.double()
    H = torch.randn(n_points, *W.shape, generator=gen, dtype=torch.float64)
    r = torch.logspace(-3, 0, n_points, dtype=torch.float64)[:, None, None]
    Wp = torch.cat([W + scale * r * H, scale * H] + ([extra.double().reshape(-1, *W.shape)] if extra is not None else []))
    slack = nuclear_norm(Wp) - nuclear_norm(W) - inner(G.expand_as(Wp), Wp - W)
    return float(slack.min())


def fan_slack(W: Tensor, rank: int, z_norm: float, n_points: int = 50, seed: int = 1) -> float:
    """``subgradient_slack`` at a rank-``rank`` W of G = U_r V_rᵀ + Z, Z = z_norm·U_⊥ M V_⊥ᵀ with
    M Gaussian (``seed``) of spectral norm 1: ≥ 0 for z_norm ≤ 1 (G in the fan), < 0 above.
    Test points: those of ``subgradient_slack`` (scale ‖W‖_F) and the witness W + 0.1·u₁v₁ᵀ along
    Z's top singular pair (random points in high dimension rarely find the violating direction)."""
    W = W.double()
    U, _, Vh = torch.linalg.svd(W)
    Uo, Vo = U[:, rank:], Vh[rank:].T
    M = torch.randn(Uo.shape[1], Vo.shape[1], generator=torch.Generator().manual_seed(seed), dtype=W.dtype)
    Z = z_norm * Uo @ (M / torch.linalg.matrix_norm(M, ord=2)) @ Vo.T
    uz, _, vz = torch.linalg.svd(Z)
    witness = W + 0.1 * torch.outer(uz[:, 0], vz[0])
    return subgradient_slack(W, U[:, :rank] @ Vh[:rank] + Z, n_points=n_points, scale=float(fro(W)), extra=witness[None])


def diag_trajectory(decay_apply, start: tuple[float, float], steps: int) -> Tensor:
    """Iterate W ← decay_apply(W) from W = diag(start) (a 2×2 float64 matrix); returns the
    diagonal entries (steps + 1, 2). The maps used in notebook 02 keep a diagonal W diagonal
    (their directions are functions of the singular value decomposition)."""
    W = torch.diag(torch.tensor(start, dtype=torch.float64))[None]
    out = [W[0].diagonal().clone()]
    for s in range(1, steps + 1):
        W = decay_apply(W, s)
        out.append(W[0].diagonal().clone())
    return torch.stack(out)


def ns_shrink_ratios(path: Tensor, alpha: float, last: int = 5, schedule: str = "cubic",
                     steps: int = 5) -> tuple[Tensor, Tensor]:
    """(measured, predicted) per-step factors |d₂(k+1)|/|d₂(k)| over the ``last`` steps of a
    ``diag_trajectory`` of the NS decay W ← W − α·NS(W): on a small singular value NS acts as
    the proportional shrink 1 − α·φ′(0)/‖W‖_F (‖W‖_F at step k)."""
    d2 = path[:, 1].abs()
    pred = 1 - alpha * ns_gain_at_zero(schedule, steps) / path.norm(dim=1)
    return (d2[1:] / d2[:-1])[-last:], pred[:-1][-last:]


def riemannian_fd_check(W: Tensor, n_dirs: int = 8, t: float = 1e-5, seed: int = 0) -> dict[str, float]:
    """Finite-difference check that the tangential part T of U Vᵀ at W, divided by ‖W‖_F, is
    the Riemannian gradient on the sphere {‖X‖_F = ‖W‖_F} of r = ‖W‖_*/‖W‖_F (float64).

    For ``n_dirs`` random unit tangent directions H (⟨H, W⟩ = 0) the derivative of r along the
    sphere curve γ(s) = ‖W‖_F·(W + sH)/‖W + sH‖_F is taken by central differences with step
    min(t, σ_min/10) (r is smooth only on a neighbourhood of size ~σ_min) and compared with
    ⟨T/‖W‖_F, H⟩. Returns the largest |fd − analytic| / ‖T/‖W‖_F‖ (the relative error,
    ~step² + rounding/step), the largest |⟨T, W⟩|/(‖T‖‖W‖), the step used, and the rounding
    floor of the difference quotient, ε·n/(step·‖T/‖W‖_F‖) (ε = float64 machine epsilon,
    n = min(shape): r is computed from n singular values, each exact to about ε·σ₁ ≤ ε‖W‖_F),
    which dominates when σ_min forces a tiny step. Also: ``decomposition_err``, the relative
    error of U Vᵀ = c·W + ‖W‖_F·∇r (∇r from ``nuc_fro_ratio_grad``), ``sphere_proj_err``, the
    relative change of ∇r under ``sphere_gradient`` (0: already tangent), and σ_min/σ_max.
    """
    W = W.double()
    rho = fro(W)
    t = min(t, float(singular_values(W)[-1]) / 10)
    _, T = radial_tangential(polar(W), W)
    grad = T / rho
    gen = torch.Generator().manual_seed(seed)
    err = 0.0
    for _ in range(n_dirs):
        H = torch.randn(W.shape, generator=gen, dtype=torch.float64)
        H = sphere_gradient(W, H)
        H = H / fro(H)

        def on_sphere(s, H=H):
            X = W + s * H
            return rho * X / fro(X)

        fd = (nuc_fro_ratio(on_sphere(t)) - nuc_fro_ratio(on_sphere(-t))) / (2 * t)
        err = max(err, float((fd - inner(grad, H)).abs() / fro(grad)))
    ortho = float(inner(T, W).abs() / (fro(T) * rho))
    floor = torch.finfo(torch.float64).eps * min(W.shape) / (t * float(fro(grad)))
    g, P, S = nuc_fro_ratio_grad(W), polar(W), singular_values(W)
    recon = polar_split_closed_form(W)[0] * W + rho * g
    return {"fd_rel_err": err, "tangent_cos": ortho, "step": t, "rounding_floor": floor,
            "decomposition_err": float(fro(recon - P) / fro(P)),
            "sphere_proj_err": float(fro(sphere_gradient(W, g) - g) / fro(g)),
            "sigma_min/sigma_max": float(S[-1] / S[0])}
