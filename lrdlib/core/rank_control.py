"""The stable-rank-driven rank controller of the adaptive low-rank training seed (its v10),
re-derived here for dense target matrices.

Every ``every`` steps, for each matrix W:

    σ̂₁       ← ``power_iters`` power iterations on WᵀW (a cheap lower estimate of σ₁)
    r_s      = ‖W‖_F² / σ̂₁²                     (stable rank, clamped to [1, min(m, n)])
    target   = clamp(safety · r_s, min_rank, max_rank)
    ema      ← β·ema + (1 − β)·target             (EMA smoothing, β = ``ema_decay``)
    if |ema − k| ≥ threshold (hysteresis):  k ← clamp(k + clip(round(ema − k), ±max_step))
    W        ← U_k Σ_k V_kᵀ                        (truncated SVD: keeps what was learned)

The seed factorises W = U V and rebuilds the factors (and, in v10, the optimiser) at each
resize; its later version keeps fixed-size factor buffers and slices the active rank so the
optimiser state survives. Here W stays a dense fixed-size buffer and only its rank is
projected, so the optimiser state (AdamW moments) survives every resize by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lrdlib.core import spectral
from lrdlib.core.fields import normalise


@dataclass(frozen=True)
class RankControllerConfig:
    min_rank: int = 1
    max_rank: int | None = None
    init_rank: int | None = None
    ema_decay: float = 0.8
    safety_factor: float = 1.5
    change_threshold: float = 2.0
    max_step: int = 4
    power_iters: int = 5

    def __post_init__(self) -> None:
        normalise(self)
        if not isinstance(self.min_rank, int) or self.min_rank < 1:
            raise ValueError(f"min_rank={self.min_rank!r} must be a positive integer")
        if self.max_rank is not None and self.max_rank < self.min_rank:
            raise ValueError(f"max_rank={self.max_rank!r} must be ≥ min_rank={self.min_rank}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay={self.ema_decay!r} must lie in [0, 1)")
        if self.safety_factor <= 0 or self.change_threshold < 0 or self.max_step < 1 or self.power_iters < 1:
            raise ValueError("safety_factor > 0, change_threshold ≥ 0, max_step ≥ 1 and power_iters ≥ 1 are required")


def estimated_stable_rank(W: Tensor, iters: int = 5, generator: torch.Generator | None = None) -> Tensor:
    """‖W‖_F² / σ̂₁² with σ̂₁ from power iteration, clamped to [1, min(m, n)] (batched)."""
    sigma = spectral.power_iteration_sigma_max(W, iters, generator)
    sr = spectral.fro(W) ** 2 / sigma.clamp_min(1e-30) ** 2
    return sr.clamp(1.0, float(min(W.shape[-2:])))


class RankController:
    """Holds the EMA target and current rank of one matrix; ``propose`` returns the new rank."""

    def __init__(self, cfg: RankControllerConfig, full_rank: int):
        self.cfg = cfg
        self.max_rank = min(cfg.max_rank or full_rank, full_rank)
        self.rank = min(cfg.init_rank or self.max_rank, self.max_rank)
        self.ema = float(self.rank)

    def propose(self, stable_rank: float) -> int:
        c = self.cfg
        target = min(max(stable_rank * c.safety_factor, c.min_rank), self.max_rank)
        self.ema = c.ema_decay * self.ema + (1 - c.ema_decay) * target
        delta = self.ema - self.rank
        if abs(delta) < c.change_threshold:
            return self.rank
        step = int(max(-c.max_step, min(c.max_step, round(delta))))
        self.rank = int(max(c.min_rank, min(self.rank + step, self.max_rank)))
        return self.rank
