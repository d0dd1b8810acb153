"""Modular-arithmetic tasks: every pair (a, b) of residues mod a prime p, as the sequence
``[a, b, =]`` with the label ``a ∘ b mod p`` read at the ``=`` position.

The ``=`` token is ``p`` itself, so the vocabulary has ``p + 1`` symbols (MISSION §3).
The split is a seeded random permutation of all p² pairs (or p·(p−1) for division, where
b = 0 is excluded); the first ``round_down(train_frac · N)`` pairs train, the rest validate.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .fields import normalise

OPS = ("add", "sub", "mul", "div")


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    f = 2
    while f * f <= n:
        if n % f == 0:
            return False
        f += 1
    return True


@dataclass(frozen=True)
class TaskConfig:
    """A modular-arithmetic task and its train/validation split.

    op: one of ``add`` (a+b), ``sub`` (a−b), ``mul`` (a·b), ``div`` (a·b⁻¹, b ≠ 0), all mod p.
    p: a prime (the residues 0..p−1; the ``=`` token is p).
    train_frac: share of all pairs used for training, strictly between 0 and 1.
    split_seed: seed of the random permutation that makes the split.
    """

    op: str = "add"
    p: int = 113
    train_frac: float = 0.5
    split_seed: int = 0

    def __post_init__(self) -> None:
        normalise(self)
        validate_task(self)

    @property
    def vocab_size(self) -> int:
        return self.p + 1


def validate_task(cfg: TaskConfig) -> None:
    if cfg.op not in OPS:
        raise ValueError(f"op={cfg.op!r} is not a known operation; valid: {', '.join(OPS)}")
    if not isinstance(cfg.p, int) or isinstance(cfg.p, bool) or not _is_prime(cfg.p):
        raise ValueError(f"p={cfg.p!r} must be a prime integer ≥ 2 (e.g. 97 or 113)")
    if not isinstance(cfg.train_frac, (int, float)) or not 0.0 < float(cfg.train_frac) < 1.0:
        raise ValueError(f"train_frac={cfg.train_frac!r} must lie strictly between 0 and 1")
    n = cfg.p * cfg.p if cfg.op != "div" else cfg.p * (cfg.p - 1)
    n_train = int(n * cfg.train_frac)
    if n_train < 1 or n_train >= n:
        raise ValueError(
            f"train_frac={cfg.train_frac!r} leaves an empty train or validation set for p={cfg.p} "
            f"({n} pairs in all)")


def all_pairs(op: str, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (a, b) pair as tokens ``[a, b, p]`` (shape N×3) and its label (shape N)."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    if op == "div":
        keep = b != 0
        a, b = a[keep], b[keep]
    if op == "add":
        y = (a + b) % p
    elif op == "sub":
        y = (a - b) % p
    elif op == "mul":
        y = (a * b) % p
    elif op == "div":
        b_inv = torch.tensor([pow(int(v), p - 2, p) for v in range(p)])  # Fermat inverse
        y = (a * b_inv[b]) % p
    else:
        raise ValueError(f"op={op!r} is not a known operation; valid: {', '.join(OPS)}")
    x = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    return x, y


@dataclass(frozen=True)
class Split:
    """Train and validation tensors (tokens N×3 int64, labels N int64) on one device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor

    def to(self, device: str | torch.device) -> Split:
        return Split(*(t.to(device) for t in (self.x_train, self.y_train, self.x_val, self.y_val)))


def make_split(cfg: TaskConfig, device: str | torch.device = "cpu") -> Split:
    """Deterministic split: the same (op, p, train_frac, split_seed) gives the same pairs."""
    validate_task(cfg)
    x, y = all_pairs(cfg.op, cfg.p)
    g = torch.Generator().manual_seed(cfg.split_seed)
    perm = torch.randperm(len(y), generator=g)
    n_train = int(len(y) * cfg.train_frac)
    tr, va = perm[:n_train], perm[n_train:]
    return Split(x[tr], y[tr], x[va], y[va]).to(device)


def commutativity_ceiling(split: Split) -> float:
    """Validation accuracy reachable by memorising the training set plus commutativity.

    The share of validation pairs (a, b) whose swap (b, a) is a training pair: a model that
    has learned only a∘b = b∘a (true for add and mul) reaches this accuracy without the
    algorithm (MISSION §2: 0.50 at 50 % data). Only meaningful for commutative ops.
    """
    p = int(split.x_train[0, 2])
    train_keys = set((split.x_train[:, 0] * p + split.x_train[:, 1]).tolist())
    swapped = (split.x_val[:, 1] * p + split.x_val[:, 0]).tolist()
    if not swapped:
        return 0.0
    return sum(k in train_keys for k in swapped) / len(swapped)
