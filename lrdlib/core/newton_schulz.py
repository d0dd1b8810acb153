"""Newton-Schulz: one odd-polynomial iteration over a coefficient schedule (notebook 02).

NS(W) ≈ U Vᵀ for W = U Σ Vᵀ with matmuls only. From X₀ = W/‖W‖_F, step k applies
p_k(x) = a_k x + b_k x³ + c_k x⁵ to every singular value: X ← a X + (b A + c A²) X,
A = X Xᵀ. Hence NS(W) = U φ(Σ/‖W‖_F) Vᵀ with φ = p_K ∘ … ∘ p_1 the scalar map on the
normalised singular values sᵢ = σᵢ/‖W‖_F (``ns_response``). Schedules (``SCHEDULES``):

* ``cubic``: the seed, (a, b, c) = (1.5, −0.5, 0) at every step (Y ← ½ Y (3I − YᵀY));
* ``quintic``: Muon's (3.4445, −4.7750, 2.0315) at every step;
* ``polar_express``: per-step minimax-optimal quintics for s ∈ [10⁻³, 1] (Amsel et al. 2025,
  ``polar_express_coefficients``).

The exact limit φ = sign (U Vᵀ by SVD, ``spectral.polar``) is not an NS schedule; the
comparison helpers (``ns_response``, ``ns_relative_error``, ``ns_gain_at_zero``, ``ns_knee``,
``ns_spectral_penalty``) accept ``"sign"`` for it.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from lrdlib.core.spectral import _check_matrix, fro, polar

SCHEDULES = ("cubic", "quintic", "polar_express")
EXACT = "sign"  # φ = sign: the exact polar factor U Vᵀ, accepted by the comparison helpers only
_FIXED = {"cubic": (1.5, -0.5, 0.0), "quintic": (3.4445, -4.7750, 2.0315)}
_EPS = {"cubic": 1e-8, "quintic": 1e-7}  # X₀ = W/(‖W‖_F + ε); polar_express: no ε (φ′(0) ~ 1e3 would amplify it)


def _check(schedule: str, steps: int, exact_ok: bool = False) -> None:
    valid = SCHEDULES + ((EXACT,) if exact_ok else ())
    if schedule not in valid:
        hint = "" if exact_ok or schedule != EXACT else " (the exact U Vᵀ is spectral.polar)"
        raise ValueError(f"schedule={schedule!r} is not a Newton-Schulz schedule{hint}; valid: {', '.join(valid)}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps={steps!r} is not a valid step count; valid: a non-negative integer (0, 1, 2, …)")


def schedule_coefficients(schedule: str = "cubic", steps: int = 5) -> list[tuple[float, float, float]]:
    """The (a, b, c) of p_k(x) = a x + b x³ + c x⁵ for k = 1 … ``steps``."""
    _check(schedule, steps)
    if schedule == "polar_express":
        return polar_express_coefficients(steps)
    return [_FIXED[schedule]] * steps


def newton_schulz(W: Tensor, steps: int = 5, schedule: str = "cubic") -> Tensor:
    """NS(W) = U φ(Σ/‖W‖_F) Vᵀ ≈ U Vᵀ by ``steps`` iterations of ``schedule``.

    X₀ = W/(‖W‖_F + ε) (ε = 1e-8 cubic, 1e-7 quintic, none for polar_express), iterated on the
    shorter side (Xᵀ for tall W): X ← a X + b A X if c = 0, else X ← a X + (b A + c A²) X,
    with A = X Xᵀ. Computed in float32 (float64 if W is float64); returns W's dtype.
    """
    _check_matrix(W)
    coeffs = schedule_coefficients(schedule, steps)
    dtype = W.dtype
    X = W.to(torch.float64 if dtype == torch.float64 else torch.float32)
    tall = X.shape[-2] > X.shape[-1]
    if tall:
        X = X.mT
    if schedule in _EPS:
        X = X / (fro(X)[..., None, None] + _EPS[schedule])
    else:
        X = X / fro(X)[..., None, None].clamp_min(torch.finfo(X.dtype).tiny)
    for a, b, c in coeffs:
        A = X @ X.mT
        X = a * X + b * (A @ X) if c == 0 else a * X + (b * A + c * (A @ A)) @ X
    if tall:
        X = X.mT
    return X.to(dtype)


def ns_response(s: Tensor, schedule: str = "cubic", steps: int = 5) -> Tensor:
    """φ(s) = p_K ∘ … ∘ p_1(s): the map ``newton_schulz`` applies to each normalised singular
    value s = σᵢ/‖W‖_F (ε ignored). ``"sign"``: the exact limit, φ(s) = sign s."""
    _check(schedule, steps, exact_ok=True)
    if schedule == EXACT:
        return torch.sign(s)
    x = s
    for a, b, c in schedule_coefficients(schedule, steps):
        x = a * x + b * x ** 3 + c * x ** 5
    return x


def polar_express_coefficients(steps: int = 5, lower: float = 1e-3, upper: float = 1.0,
                               grid: int = 4000) -> list[tuple[float, float, float]]:
    """Per-step optimal odd quintics p_k(x) = a x + b x³ + c x⁵ (Polar Express).

    Greedy minimax, which Amsel et al. (2025) show is optimal for the composition: p_k minimises
    max |1 − p(x)| over x ∈ [ℓ_k, u_k] (a linear programme on ``grid`` points, geometrically and
    linearly spaced, so ℓ_k is well resolved); then [ℓ_{k+1}, u_{k+1}] = p_k([ℓ_k, u_k]).
    Start: [lower, upper], the interval assumed to hold σᵢ/‖W‖_F. Memoised (~0.1 s per step).
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps={steps!r} is not a valid step count; valid: a non-negative integer (0, 1, 2, …)")
    if not 0 < lower < upper:
        raise ValueError(f"need 0 < lower < upper, got lower={lower!r}, upper={upper!r}")
    return list(_polar_express(steps, float(lower), float(upper), int(grid))[0])


@functools.lru_cache(maxsize=256)
def _polar_express(steps: int, lower: float, upper: float, grid: int) -> tuple[tuple, float, float]:
    """(the first ``steps`` quintics, [ℓ, u] after them); each step's LP is solved once."""
    # scipy is imported only when a Polar Express schedule is asked for
    from scipy.optimize import linprog

    if steps == 0:
        return (), lower, upper
    prev, lo, hi = _polar_express(steps - 1, lower, upper, grid)
    x = np.unique(np.concatenate([np.geomspace(lo, hi, grid), np.linspace(lo, hi, grid)]))
    P = np.stack([x, x ** 3, x ** 5], 1)
    # variables (a, b, c, t): minimise t subject to |1 − P·(a,b,c)| ≤ t on the grid
    A = np.block([[-P, -np.ones((len(x), 1))], [P, -np.ones((len(x), 1))]])
    b = np.concatenate([-np.ones(len(x)), np.ones(len(x))])
    res = linprog(c=[0, 0, 0, 1], A_ub=A, b_ub=b, bounds=[(None, None)] * 4, method="highs")
    if not res.success:
        raise RuntimeError(f"Polar Express LP failed on [{lo}, {hi}]: {res.message}")
    abc = tuple(float(v) for v in res.x[:3])
    px = P @ np.array(abc)
    return prev + (abc,), float(px.min()), float(px.max())


def ns_relative_error(W: Tensor, schedule: str = "cubic", steps: int = 5) -> Tensor:
    """‖NS(W) − U Vᵀ‖_F / ‖U Vᵀ‖_F per matrix (U Vᵀ by SVD, in W's dtype; 0 for ``"sign"``)."""
    _check(schedule, steps, exact_ok=True)
    P = polar(W)
    return fro((P if schedule == EXACT else newton_schulz(W, steps, schedule)) - P) / fro(P)


def ns_gain_at_zero(schedule: str = "cubic", steps: int = 5) -> float:
    """φ′(0) = Π a_k: for small s, φ(s) ≈ φ′(0)·s, a proportional (L2-like) shrink of W's small
    singular values (cubic 1.5^K, quintic 3.4445^K; infinite for ``"sign"``)."""
    _check(schedule, steps, exact_ok=True)
    if schedule == EXACT:
        return float("inf")
    return math.prod(a for a, _, _ in schedule_coefficients(schedule, steps))


def ns_knee(schedule: str = "cubic", steps: int = 5, level: float = 0.5) -> float:
    """The smallest normalised singular value s ∈ (0, 1] with φ(s) ≥ ``level`` (a fine log grid,
    then bisection on the bracket): below it NS acts L2-like, above it nuclear-norm-like
    (φ ≈ 1). 0 for ``"sign"``; nan if φ stays below ``level``."""
    _check(schedule, steps, exact_ok=True)
    if schedule == EXACT:
        return 0.0
    s = torch.logspace(-8, 0, 4001, dtype=torch.float64)
    hit = torch.nonzero(ns_response(s, schedule, steps) >= level)
    if len(hit) == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(s[0])
    lo, hi = float(s[i - 1]), float(s[i])
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(ns_response(torch.tensor(mid, dtype=torch.float64), schedule, steps)) >= level:
            hi = mid
        else:
            lo = mid
    return hi


def ns_spectral_penalty(s: Tensor, schedule: str = "cubic", steps: int = 5, points: int = 1000) -> Tensor:
    """Φ(s) = ∫₀ˢ φ(t) dt for s ≥ 0, per element of ``s`` (float64).

    With ‖W‖_F held at F, the decay W ← W − α U φ(Σ/F) Vᵀ is a gradient step on α Σᵢ F·Φ(σᵢ/F):
    the spectral penalty NS implements. Φ(s) = s for ``"sign"`` (the nuclear norm ‖W‖_*); for NS,
    Φ(s) ≈ φ′(0) s²/2 below the knee (ridge, L2-like), linear above it. Trapezoid rule on t = s·u,
    u the union of ``points`` log-spaced nodes in [1e-9, 1] and ``points`` linear ones in [0, 1]
    (relative error ≲ 1e-5; ≲ 1e-3 near s = 1 for the fast-oscillating Polar Express composition).
    """
    _check(schedule, steps, exact_ok=True)
    s = torch.as_tensor(s, dtype=torch.float64)
    if schedule == EXACT:
        return s.abs()
    u = torch.unique(torch.cat([torch.logspace(-9, 0, points, dtype=torch.float64),
                                torch.linspace(0, 1, points, dtype=torch.float64)]))
    flat = s.reshape(-1).clamp_min(0)
    out = torch.empty_like(flat)
    for i in range(0, len(flat), 256):
        t = flat[i:i + 256, None] * u[None, :]
        out[i:i + 256] = torch.trapezoid(ns_response(t, schedule, steps), t, dim=-1)
    return out.reshape(s.shape)
