"""Optimisers: AdamW everywhere (``adamw``), Luon on the targets (``luon``), or
``torch.optim.Muon`` on the targets (``muon``), with AdamW on the remaining parameters.

Luon (the Luon seed, fused low-rank Muon), on each target matrix W with gradient G:

    M ← μ M + (G + λ W)          plain (heavy-ball) momentum on the fused gradient
    W ← W − η NS(M)              one Newton-Schulz per step (seed: 5 cubic steps)

λW is radial at W; whatever tangential "decay" Luon has comes from NS mixing it with G.
Once G vanishes, NS(M) → NS(W) whatever λ is (NS ignores scale): λ sets a mixing ratio,
not a decay strength.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lrdlib.core.fields import check_range, normalise
from lrdlib.core.newton_schulz import SCHEDULES, newton_schulz

OPTIMIZERS = ("adamw", "luon", "muon")


@dataclass(frozen=True)
class OptimConfig:
    """kind: ``adamw`` | ``luon`` | ``muon``.

    lr, betas, eps: AdamW settings (all parameters for ``adamw``, non-targets otherwise).
    weight_decay: AdamW decoupled weight decay on the non-target parameters.
    target_weight_decay: AdamW weight decay on the targets (``adamw`` only; the seed's L2
        baseline uses the same value as ``weight_decay``, its LRD arm uses 0).
    muon_lr, momentum: η and μ of Luon / Muon on the targets.
    luon_lambda: λ of the fused gradient G + λW (``luon`` only).
    ns_steps, ns_poly: Newton-Schulz of Luon, ``ns_poly`` ∈ ``newton_schulz.SCHEDULES`` (Muon uses
        its own quintic, 5 steps).
    target_lr_scale: k, the targets' learning rate is k × (``lr`` for ``adamw``, ``muon_lr`` for
        Luon/Muon): the Q/K learning-rate control of notebook 07. Under AdamW the targets'
        decoupled weight decay, lr·wd, scales with it.
    """

    kind: str = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.1
    target_weight_decay: float = 0.1
    muon_lr: float = 0.02
    momentum: float = 0.95
    luon_lambda: float = 0.5
    ns_steps: int = 5
    ns_poly: str = "cubic"
    target_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        normalise(self)
        if self.kind not in OPTIMIZERS:
            raise ValueError(f"optimizer kind={self.kind!r}; valid: {', '.join(OPTIMIZERS)}")
        for name in ("lr", "muon_lr", "eps", "target_lr_scale"):
            check_range(self, name, 0, lo_open=True)
        for name in ("weight_decay", "target_weight_decay", "luon_lambda", "ns_steps"):
            check_range(self, name, 0)
        check_range(self, "momentum", 0, 1, hi_open=True)
        for i in range(2):
            if not 0 <= self.betas[i] < 1:
                raise ValueError(f"OptimConfig.betas={self.betas!r}: expected two values in [0, 1)")
        if self.ns_poly not in SCHEDULES:
            raise ValueError(f"ns_poly={self.ns_poly!r} is not a Newton-Schulz schedule; valid: {', '.join(SCHEDULES)}")


class Luon(torch.optim.Optimizer):
    """Fused low-rank Muon: W ← W − η NS(μM + G + λW). Same-shape targets are
    orthogonalised as one batched Newton-Schulz call."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, lam: float = 0.5,
                 ns_steps: int = 5, ns_poly: str = "cubic"):
        params = list(params)
        for p in params:
            if p.ndim != 2:
                raise ValueError(f"Luon takes 2-D matrices only; got a parameter of shape {tuple(p.shape)}")
        super().__init__(params, dict(lr=lr, momentum=momentum, lam=lam, ns_steps=ns_steps, ns_poly=ns_poly))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if not ps:
                continue
            bufs = []
            for p in ps:
                st = self.state[p]
                if "momentum_buffer" not in st:
                    st["momentum_buffer"] = torch.zeros_like(p)
                buf = st["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(p.grad).add_(p, alpha=group["lam"])
                bufs.append(buf)
            by_shape: dict[tuple, list[int]] = {}
            for i, p in enumerate(ps):
                by_shape.setdefault(tuple(p.shape), []).append(i)
            for idx in by_shape.values():
                U = newton_schulz(torch.stack([bufs[i] for i in idx]), group["ns_steps"], group["ns_poly"])
                for i, u in zip(idx, U.unbind(0)):
                    ps[i].sub_(u, alpha=group["lr"])
        return loss


def split_targets(model: torch.nn.Module, targets: tuple[str, ...]) -> tuple[list, list]:
    """(target params, other params) as lists of (name, param); targets match by substring
    and must be 2-D."""
    tgt, rest = [], []
    for n, p in model.named_parameters():
        (tgt if p.ndim == 2 and any(t in n for t in targets) else rest).append((n, p))
    if targets and not tgt:
        raise ValueError(f"targets={targets!r} match no 2-D parameter of the model")
    return tgt, rest


def build_optimizers(model: torch.nn.Module, cfg: OptimConfig, targets: tuple[str, ...]) -> list[torch.optim.Optimizer]:
    """The optimisers of one run, to be stepped in order."""
    tgt, rest = split_targets(model, targets)
    tp, rp = [p for _, p in tgt], [p for _, p in rest]
    # fused AdamW: one kernel for all parameters (CPU and CUDA), same update rule as foreach.
    adam = dict(lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=True)
    if cfg.kind == "adamw":
        groups = [{"params": rp, "weight_decay": cfg.weight_decay},
                  {"params": tp, "weight_decay": cfg.target_weight_decay, "lr": cfg.lr * cfg.target_lr_scale}]
        return [torch.optim.AdamW([g for g in groups if g["params"]], **adam)]
    others = [torch.optim.AdamW(rp, weight_decay=cfg.weight_decay, **adam)] if rp else []
    if cfg.kind == "luon":
        return [Luon(tp, lr=cfg.muon_lr * cfg.target_lr_scale, momentum=cfg.momentum, lam=cfg.luon_lambda,
                     ns_steps=cfg.ns_steps, ns_poly=cfg.ns_poly), *others]
    # torch.optim.Muon with its own decoupled weight decay off (any decay is a DecayConfig).
    return [torch.optim.Muon(tp, lr=cfg.muon_lr * cfg.target_lr_scale, momentum=cfg.momentum, weight_decay=0.0), *others]
