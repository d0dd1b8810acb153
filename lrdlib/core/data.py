"""Modular-arithmetic tasks: every pair (a, b) of residues mod a prime p, as the sequence
``[a, b, =]`` with the label ``a ∘ b mod p`` read at the ``=`` position.

The ``=`` token is ``p`` itself, so the vocabulary has ``p + 1`` symbols.
The split is a seeded random permutation of all p² pairs (or p·(p−1) for division, where
b = 0 is excluded); the first ``round_down(train_frac · N)`` pairs train, the rest validate.

One sequence task, ``recall`` (associative recall), whose attention must be content-dependent:
``[k₁ v₁ k₂ v₂ … k_n v_n q]`` with n distinct keys kᵢ and values vᵢ drawn from 0..p−1 and the
query q one of the keys; the label is the value paired with q, read at the last position as in
the arithmetic tasks. A fixed generator (``RECALL_DATA_SEED``) draws ``samples`` distinct
sequences; ``split_seed`` permutes them into train and validation exactly as it permutes pairs.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from lrdlib.core.fields import normalise

OPS = ("add", "sub", "mul", "div", "quad")          # the pair tasks [a, b, =]; quad: a² + ab + b²
SEQUENCE_OPS = ("recall",)                          # the sequence tasks (``pairs``, ``samples`` set)
MAX_P = 2039                                        # largest modulus: 4.2 M pairs, a few hundred MB with the model
RECALL_DATA_SEED = 0                                # the recall data set is fixed; split_seed only splits it


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

    op: one of ``add`` (a+b), ``sub`` (a−b), ``mul`` (a·b), ``div`` (a·b⁻¹, b ≠ 0), ``quad``
        (a² + ab + b²), all mod p; or ``recall`` (the sequence task of the module docstring).
    p: a prime (the residues 0..p−1; the ``=`` token is p); for ``recall`` the number of symbols
        keys and values are drawn from (any integer ≥ ``pairs``; token p is unused).
    train_frac: share of all pairs (sequences) used for training, strictly between 0 and 1.
    split_seed: seed of the random permutation that makes the split.
    pairs, samples: ``recall`` only: n key-value pairs per sequence, and how many distinct
        sequences the data set holds. 0 (the default, required for the pair tasks) is left out
        of ``to_dict``, so a pair task's dict, hence every existing cache key, is unchanged.
    """

    op: str = "add"
    p: int = 113
    train_frac: float = 0.5
    split_seed: int = 0
    pairs: int = 0
    samples: int = 0

    def __post_init__(self) -> None:
        normalise(self)
        validate_task(self)

    @property
    def vocab_size(self) -> int:
        return self.p + 1

    @property
    def seq_len(self) -> int:
        """Tokens per example: 3 for ``[a, b, =]``, 2n + 1 for a recall sequence."""
        return 2 * self.pairs + 1 if self.op in SEQUENCE_OPS else 3

    def to_dict(self) -> dict:
        """The fields as a dict, without the sequence fields at their default 0 (a pair task's
        dict is exactly what it was before they existed: the cache keys stay the same)."""
        d = dataclasses.asdict(self)
        for name in _SEQUENCE_FIELDS:
            if d[name] == 0:
                del d[name]
        return d


_SEQUENCE_FIELDS = ("pairs", "samples")


def validate_task(cfg: TaskConfig) -> None:
    if cfg.op not in OPS + SEQUENCE_OPS:
        raise ValueError(f"op={cfg.op!r} is not a known operation; valid: {', '.join(OPS + SEQUENCE_OPS)}")
    if cfg.op in SEQUENCE_OPS:
        _validate_recall(cfg)
        return
    for name in _SEQUENCE_FIELDS:
        if getattr(cfg, name) != 0:
            raise ValueError(f"{name}={getattr(cfg, name)!r} is only for the sequence tasks ({', '.join(SEQUENCE_OPS)}); "
                             f"op={cfg.op!r} needs {name}=0")
    if not isinstance(cfg.p, int) or isinstance(cfg.p, bool) or not _is_prime(cfg.p):
        raise ValueError(f"p={cfg.p!r} must be a prime integer ≥ 2 (e.g. 97 or 113)")
    if cfg.p > MAX_P:
        raise ValueError(f"p={cfg.p!r}: the task enumerates all p² = {cfg.p ** 2:,} pairs; valid: a prime p ≤ {MAX_P} "
                         f"({MAX_P ** 2:,} pairs)")
    if not isinstance(cfg.train_frac, (int, float)) or not 0.0 < float(cfg.train_frac) < 1.0:
        raise ValueError(f"train_frac={cfg.train_frac!r} must lie strictly between 0 and 1")
    n = cfg.p * cfg.p if cfg.op != "div" else cfg.p * (cfg.p - 1)
    n_train = int(n * cfg.train_frac)
    if n_train < 1 or n_train >= n:
        raise ValueError(
            f"train_frac={cfg.train_frac!r} leaves an empty train or validation set for p={cfg.p} "
            f"({n} pairs in all)")


def recall_count(p: int, pairs: int) -> int:
    """How many distinct recall sequences exist: ordered distinct keys × values × query position."""
    return math.perm(p, pairs) * p ** pairs * pairs


def _validate_recall(cfg: TaskConfig) -> None:
    if not isinstance(cfg.pairs, int) or cfg.pairs < 1:
        raise ValueError(f"pairs={cfg.pairs!r} must be a positive integer for op='recall' (key-value pairs per sequence)")
    if not isinstance(cfg.p, int) or isinstance(cfg.p, bool) or cfg.p < max(cfg.pairs, 2):
        raise ValueError(f"p={cfg.p!r} must be an integer ≥ max(pairs, 2) = {max(cfg.pairs, 2)} for op='recall' "
                         "(the keys of a sequence are distinct symbols 0..p−1)")
    if not isinstance(cfg.samples, int) or cfg.samples < 2:
        raise ValueError(f"samples={cfg.samples!r} must be an integer ≥ 2 for op='recall' (sequences in the data set)")
    n = recall_count(cfg.p, cfg.pairs)
    if cfg.samples > n // 2:
        raise ValueError(f"samples={cfg.samples!r} is more than half the {n} distinct recall sequences of p={cfg.p}, "
                         f"pairs={cfg.pairs}: use samples ≤ {n // 2} (or a larger p or more pairs)")
    if not isinstance(cfg.train_frac, (int, float)) or not 0.0 < float(cfg.train_frac) < 1.0:
        raise ValueError(f"train_frac={cfg.train_frac!r} must lie strictly between 0 and 1")
    n_train = int(cfg.samples * cfg.train_frac)
    if n_train < 1 or n_train >= cfg.samples:
        raise ValueError(f"train_frac={cfg.train_frac!r} leaves an empty train or validation set for "
                         f"samples={cfg.samples}")


def recall_sequences(p: int, pairs: int, samples: int, seed: int = RECALL_DATA_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``samples`` distinct recall sequences (tokens, shape N×(2n+1)) and their labels (N).

    Each row is ``[k₁ v₁ … k_n v_n q]``: keys kᵢ distinct (a random n-prefix of a permutation
    of 0..p−1), values vᵢ uniform in 0..p−1, q = k_j for a uniform j; label v_j. Rows are drawn
    in batches from a generator seeded with ``seed`` and duplicates dropped (first one kept),
    so the same arguments give the same rows in the same order; the global RNG is not touched.
    """
    TaskConfig(op="recall", p=p, pairs=pairs, samples=samples)   # validates the arguments
    g = torch.Generator().manual_seed(seed)
    rows = torch.empty(0, 2 * pairs + 1, dtype=torch.long)
    while len(rows) < samples:
        m = samples - len(rows) + 16
        keys = torch.rand(m, p, generator=g).argsort(dim=1)[:, :pairs]          # distinct keys per row
        vals = torch.randint(0, p, (m, pairs), generator=g)
        j = torch.randint(0, pairs, (m,), generator=g)
        seq = torch.stack([keys, vals], dim=2).reshape(m, 2 * pairs)
        rows = torch.cat([rows, torch.cat([seq, keys.gather(1, j[:, None])], dim=1)])
        _, inv = torch.unique(rows, dim=0, return_inverse=True)
        first = torch.full((int(inv.max()) + 1,), len(rows)).scatter_reduce(0, inv, torch.arange(len(rows)), "amin")
        rows = rows[first.sort().values]                                     # distinct, in drawing order
    x = rows[:samples]
    q_pos = (x[:, 0:-1:2] == x[:, -1:]).long().argmax(dim=1)                 # the pair whose key is the query
    y = x[:, 1::2].gather(1, q_pos[:, None])[:, 0]
    return x, y


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
    elif op == "quad":
        y = (a * a + a * b + b * b) % p
    else:
        raise ValueError(f"op={op!r} is not a known operation; valid: {', '.join(OPS)}")
    x = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    return x, y


@dataclass(frozen=True)
class Split:
    """Train and validation tensors (tokens N×T int64, T = 3 for pairs, labels N int64) on one device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor

    def to(self, device: str | torch.device) -> Split:
        return Split(*(t.to(device) for t in (self.x_train, self.y_train, self.x_val, self.y_val)))


def make_split(cfg: TaskConfig, device: str | torch.device = "cpu") -> Split:
    """Deterministic split: the same (op, p, train_frac, split_seed) gives the same pairs (for
    ``recall``, the same (p, pairs, samples) gives the same sequences, split by split_seed)."""
    validate_task(cfg)
    x, y = recall_sequences(cfg.p, cfg.pairs, cfg.samples) if cfg.op in SEQUENCE_OPS else all_pairs(cfg.op, cfg.p)
    g = torch.Generator().manual_seed(cfg.split_seed)
    perm = torch.randperm(len(y), generator=g)
    n_train = int(len(y) * cfg.train_frac)
    tr, va = perm[:n_train], perm[n_train:]
    return Split(x[tr], y[tr], x[va], y[va]).to(device)


def commutativity_ceiling(split: Split) -> float:
    """Validation accuracy reachable by memorising the training set plus commutativity.

    The share of validation pairs (a, b) whose swap (b, a) is a training pair: a model that
    has learned only a∘b = b∘a (true for add and mul) reaches this accuracy without the
    algorithm (0.50 at 50 % data). Only meaningful for commutative ops.
    """
    p = int(split.x_train[0, 2])
    train_keys = set((split.x_train[:, 0] * p + split.x_train[:, 1]).tolist())
    swapped = (split.x_val[:, 1] * p + split.x_val[:, 0]).tolist()
    if not swapped:
        return 0.0
    return sum(k in train_keys for k in swapped) / len(swapped)
