"""Matching decay strengths across arms of an ablation.

Rule used by notebook 05: every additive decay gets the strength λ at which its per-step
displacement ‖W − decay(W)‖_F, averaged over the Q/K matrices **at initialisation**, equals
that of the seed LRD step α·‖NS(W₀)‖_F (α = 0.005). Same initial push on ‖W‖, different
direction: differences between arms then come from the direction, not the step size.
Projections (``lowrank``, ``adaptive_lowrank``) have no strength and are not matched.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from lrdlib.core.decay import DecayConfig, make_decay

UNMATCHABLE = ("none", "lowrank", "adaptive_lowrank", "fixed_norm")


def displacement_norm(cfg: DecayConfig, W: Tensor) -> float:
    """Mean over the stack of ‖W − decay(W)‖_F for one application of the decay."""
    d = make_decay(cfg)
    return float(torch.linalg.matrix_norm(d.displacement(W.double(), step=0)).mean())


def match_strength(cfg: DecayConfig, W: Tensor, target: float, rel_tol: float = 1e-6) -> float:
    """The strength λ of ``cfg`` whose displacement norm at W equals ``target`` (bisection in
    log λ; displacement grows monotonically with λ for every additive decay here)."""
    if cfg.kind in UNMATCHABLE:
        raise ValueError(f"decay kind={cfg.kind!r} has no strength to match; matchable: any other registered kind")
    if target <= 0:
        raise ValueError(f"target={target!r} must be > 0")

    def f(lam: float) -> float:
        return displacement_norm(dataclasses.replace(cfg, strength=lam), W)

    lo, hi = 1e-12, 1.0
    while f(hi) < target:
        hi *= 10
        if hi > 1e6:
            raise ValueError(f"no strength ≤ 1e6 reaches displacement {target} for {cfg.kind}")
    for _ in range(200):
        mid = (lo * hi) ** 0.5
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
        if hi / lo - 1 < rel_tol:
            break
    return (lo * hi) ** 0.5
