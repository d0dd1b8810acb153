"""Decoupled decays: after each optimiser step, the target matrices W (a stack, shape (K, m, n))
are replaced by ``decay.apply(W, step)``.

=============  =====================================  ======================================
kind           update                                 what it is
=============  =====================================  ======================================
``l2``         W ← W − λ W                            radial only (weight decay on targets)
``lrd_ns``     W ← W − λ NS(W)                        seed LRD: NS ≈ U Vᵀ (``ns_steps``, ``ns_poly``)
``lrd_polar``  W ← W − λ U Vᵀ                         LRD with the exact polar factor (SVD)
``svt``        W ← U max(Σ − λ, 0) Vᵀ                 prox of λ‖W‖_*: ℓ1 on singular values
``lowrank``    W ← U_k Σ_k V_kᵀ every ``every`` steps  projection to fixed rank k (``rank``)
``lrd_tangential``  W ← W − λ T(NS(W))                LRD with its radial part removed
``lrd_radial``      W ← W − λ c·W, c = ⟨NS(W),W⟩/‖W‖²  LRD's radial part alone (an adaptive L2)
``adaptive_lowrank``  W ← U_k Σ_k V_kᵀ, k from the stable-rank controller (``controller``)
``fixed_norm``      W ← r W/‖W‖_F, r = λ                 held at a fixed Frobenius norm (a projection)
=============  =====================================  ======================================

Adding a decay is one small class::

    @register_decay("my_decay")
    class MyDecay(Decay):
        def apply(self, W, step):
            return W - self.cfg.strength * my_direction(W)

and then ``DecayConfig(kind="my_decay", strength=...)`` works everywhere (training, sweeps).
"""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from lrdlib.core import spectral
from lrdlib.core.fields import normalise
from lrdlib.core.newton_schulz import SCHEDULES, newton_schulz
from lrdlib.core.polar_geometry import radial_tangential
from lrdlib.core.rank_control import RankController, RankControllerConfig, estimated_stable_rank


@dataclass(frozen=True)
class DecayConfig:
    """Which decoupled decay to apply to the target matrices, and how strongly.

    kind: a registered decay (``available_decays()``) or ``"none"``.
    strength: λ (per-step; for ``svt`` the threshold τ = λ).
    every: apply on steps where step % every == 0 (1 = every step).
    ns_steps, ns_poly: Newton-Schulz settings for ``lrd_ns`` (and the split variants); ``ns_poly``
        is a schedule of ``lrdlib.core.newton_schulz.SCHEDULES`` (cubic, quintic, polar_express).
    rank: target rank for ``lowrank``; the maximum rank for ``adaptive_lowrank``.
    controller: the rank controller of ``adaptive_lowrank`` (see ``lrdlib.core.rank_control``).
    """

    kind: str = "none"
    strength: float = 0.0
    every: int = 1
    ns_steps: int = 5
    ns_poly: str = "cubic"
    rank: int | None = None
    controller: RankControllerConfig = field(default_factory=RankControllerConfig)

    def __post_init__(self) -> None:
        normalise(self)
        if self.kind != "none" and self.kind not in _REGISTRY:
            raise ValueError(f"decay kind={self.kind!r} is not registered; valid: none, {', '.join(sorted(_REGISTRY))}")
        if not isinstance(self.strength, (int, float)) or not 0 <= self.strength < float("inf"):
            raise ValueError(f"decay strength={self.strength!r} must be a finite number ≥ 0")
        if not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"decay every={self.every!r} must be a positive integer")
        if self.ns_poly not in SCHEDULES:
            raise ValueError(f"ns_poly={self.ns_poly!r} is not a Newton-Schulz schedule; valid: {', '.join(SCHEDULES)}")
        if not isinstance(self.ns_steps, int) or self.ns_steps < 0:
            raise ValueError(f"ns_steps={self.ns_steps!r} must be a non-negative integer")
        if self.kind != "none":
            _REGISTRY[self.kind].validate(self)


class Decay:
    """Base class. Subclasses implement ``apply(W, step) -> W_new`` on a (K, m, n) stack."""

    kind: ClassVar[str] = ""
    # Whether a run with this decay can be checkpointed and resumed exactly (``lrdlib.core.training.run``):
    # true when ``apply`` depends on W and the step alone. A decay that keeps state between calls sets
    # it to False, and its runs are not checkpointed (they restart from step 0 after a kill).
    resumable: ClassVar[bool] = True

    def __init__(self, cfg: DecayConfig):
        self.cfg = cfg

    @classmethod
    def validate(cls, cfg: DecayConfig) -> None:
        """Raise ValueError for settings this decay cannot use (default: accept all)."""

    def active(self, step: int) -> bool:
        return step % self.cfg.every == 0

    def apply(self, W: Tensor, step: int) -> Tensor:
        raise NotImplementedError

    def displacement(self, W: Tensor, step: int) -> Tensor:
        """W − apply(W): the change this decay makes at W (its direction times λ)."""
        return W - self.apply(W, step)


_REGISTRY: dict[str, type[Decay]] = {}


def register_decay(kind: str):
    """Class decorator: make ``DecayConfig(kind=kind)`` build this decay."""

    def deco(cls: type[Decay]) -> type[Decay]:
        if kind in _REGISTRY and _REGISTRY[kind] is not cls:
            raise ValueError(f"decay kind={kind!r} is already registered by {_REGISTRY[kind].__name__}")
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return deco


def available_decays() -> list[str]:
    return ["none", *sorted(_REGISTRY)]


def decay_class(kind: str) -> type[Decay] | None:
    """The class registered for ``kind`` (None for ``"none"``)."""
    if kind == "none":
        return None
    if kind not in _REGISTRY:
        raise ValueError(f"decay kind={kind!r} is not registered; valid: {', '.join(available_decays())}")
    return _REGISTRY[kind]


def decay_code(kind: str) -> str | None:
    """A hash of the code of a decay registered outside ``lrdlib.core.decay`` (its class source, or
    the bytecode and constants of its methods where the source cannot be read); None for the
    decays defined here, whose code is part of the record version."""
    cls = decay_class(kind)
    if cls is None or cls.__module__ == __name__:
        return None
    try:
        text = inspect.getsource(cls)
    except (OSError, TypeError):
        text = repr([(n, f.__code__.co_code, f.__code__.co_consts) for n, f in sorted(vars(cls).items())
                     if hasattr(f, "__code__")])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_decay(cfg: DecayConfig) -> Decay | None:
    cls = decay_class(cfg.kind)
    return None if cls is None else cls(cfg)


@register_decay("l2")
class L2Decay(Decay):
    def apply(self, W: Tensor, step: int) -> Tensor:
        return W - self.cfg.strength * W


@register_decay("lrd_ns")
class NewtonSchulzDecay(Decay):
    def apply(self, W: Tensor, step: int) -> Tensor:
        return W - self.cfg.strength * newton_schulz(W, self.cfg.ns_steps, self.cfg.ns_poly)


@register_decay("lrd_polar")
class PolarDecay(Decay):
    def apply(self, W: Tensor, step: int) -> Tensor:
        return W - self.cfg.strength * spectral.polar(W)


@register_decay("svt")
class SingularValueShrink(Decay):
    def apply(self, W: Tensor, step: int) -> Tensor:
        return spectral.singular_value_shrink(W, self.cfg.strength)


@register_decay("lowrank")
class LowRankProjection(Decay):
    @classmethod
    def validate(cls, cfg: DecayConfig) -> None:
        if not isinstance(cfg.rank, int) or cfg.rank < 1:
            raise ValueError(f"lowrank decay needs rank=<positive int>, got rank={cfg.rank!r}")

    def apply(self, W: Tensor, step: int) -> Tensor:
        return spectral.low_rank_projection(W, self.cfg.rank)


@register_decay("lrd_tangential")
class TangentialNewtonSchulzDecay(Decay):
    """The tangential part T of NS(W) at W: NS(W) = c·W + T, ⟨T, W⟩ = 0."""

    def apply(self, W: Tensor, step: int) -> Tensor:
        _, T = radial_tangential(newton_schulz(W, self.cfg.ns_steps, self.cfg.ns_poly), W)
        return W - self.cfg.strength * T


@register_decay("lrd_radial")
class RadialNewtonSchulzDecay(Decay):
    """The radial part c·W of NS(W): shrinks W along itself, like L2 with a
    spectrum-dependent rate c = ⟨NS(W), W⟩/‖W‖_F²."""

    def apply(self, W: Tensor, step: int) -> Tensor:
        c, _ = radial_tangential(newton_schulz(W, self.cfg.ns_steps, self.cfg.ns_poly), W)
        return W - self.cfg.strength * c[..., None, None] * W


@register_decay("fixed_norm")
class FixedNormProjection(Decay):
    """W ← r·W/‖W‖_F with r = ``strength``: each matrix held on the sphere of radius r (a
    projection, no decay). Under QK-Norm the model's function is unchanged by it; only the
    effective (angular) learning rate of W changes, which is what notebook 07 isolates."""

    @classmethod
    def validate(cls, cfg: DecayConfig) -> None:
        if cfg.strength <= 0:
            raise ValueError(f"fixed_norm decay needs strength=<radius r > 0>, got strength={cfg.strength!r}")

    def apply(self, W: Tensor, step: int) -> Tensor:
        return W * (self.cfg.strength / spectral.fro(W).clamp_min(torch.finfo(W.dtype).tiny))[..., None, None]


@register_decay("adaptive_lowrank")
class AdaptiveLowRankProjection(Decay):
    """Project each matrix to the rank chosen by its own ``RankController`` (stable rank by
    power iteration, EMA, hysteresis, safety factor, bounds). ``rank`` caps the rank.
    Not resumable: the controllers' EMAs and the power iteration's generator live here."""

    resumable = False

    def __init__(self, cfg: DecayConfig):
        super().__init__(cfg)
        self.controllers: list[RankController] | None = None
        self.gen = torch.Generator().manual_seed(0)
        self.history: list[tuple[int, list[int]]] = []  # (step, ranks)

    def apply(self, W: Tensor, step: int) -> Tensor:
        c = self.cfg.controller
        if c.max_rank is None and self.cfg.rank is not None:
            c = RankControllerConfig(**{**c.__dict__, "max_rank": self.cfg.rank})
        if self.controllers is None:
            self.controllers = [RankController(c, min(W.shape[-2:])) for _ in range(W.shape[0])]
        sr = estimated_stable_rank(W.float().cpu(), c.power_iters, self.gen).tolist()
        ranks = [ctl.propose(s) for ctl, s in zip(self.controllers, sr)]
        self.history.append((step, ranks))
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        keep = torch.arange(S.shape[-1], device=W.device)[None, :] < torch.tensor(ranks, device=W.device)[:, None]
        return (U * (S * keep)[..., None, :]) @ Vh


@torch.no_grad()
def apply_decay(decay: Decay | None, params: list[Tensor], step: int) -> None:
    """Apply ``decay`` in place to ``params`` (same-shape matrices, processed as one stack)."""
    if decay is None or not params or not decay.active(step):
        return
    W = torch.stack([p.detach() for p in params])
    new = decay.apply(W, step)
    for p, w in zip(params, new.unbind(0)):
        p.copy_(w)
