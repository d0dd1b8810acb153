"""Fourier progress measures of modular addition (the measures of Nanda et al. 2023, "Progress
measures for grokking via mechanistic interpretability", re-derived here for the seed model).

A network that has learned a + b mod p the way small transformers do represents each residue by
a few waves cos(w_k a), sin(w_k a), w_k = 2πk/p (k = 1 … (p−1)/2, the *frequencies*), and
composes them into logits that depend on (a, b, c) through cos(w_k(a + b − c)) only: this peaks
at c = a + b for every k, so a handful of key frequencies suffices. The measures:

* **embedding spectrum**: the token embedding E (rows a = 0 … p−1 of the p residues, the ``=``
  row left out) expanded in the orthonormal real Fourier basis of ℤ_p, one norm per frequency,
  ‖F_k E‖ = (‖c_kᵀE‖² + ‖s_kᵀE‖²)^½ with c_k = √(2/p) cos(w_k ·), s_k = √(2/p) sin(w_k ·)
  (index 0: the constant 1/√p). A learned embedding concentrates on a few k.
* **key frequencies of the embedding** (``key_frequencies``), the stated rule: k is *key* when
  ‖F_k E‖² ≥ ``KEY_RATIO`` × the median of ‖F_j E‖² over all j ≥ 1. A random embedding has
  every ‖F_k E‖² within a few per cent of the median (a χ² with 2d degrees of freedom): none.
  An embedding that is not decayed keeps that random part (norm² ≈ 2d per frequency for the
  N(0, 1) initialisation), which can hide learned waves below the threshold.
* **key frequencies of the logits** (``logit_key_frequencies``), the stated rule: the fewest
  frequencies whose waves cos/sin(w_k(a+b−c)) hold ≥ ``KEY_ENERGY`` (95 %) of the logit table's
  energy on all such waves, Σ_k (α_k² + β_k²) (the coefficients below). The logits carry no
  random floor, so this rule sees the circuit whatever the embedding keeps; the restricted and
  excluded losses use these keys.
* **Gini coefficient** of the norms ‖F_k E‖, k ≥ 1: 0 when the spectrum is flat, (n−1)/n when
  one frequency holds everything.
* **logit key share**: the share of the logit table's variance over c (each pair's mean removed)
  that lies on the key waves.
* **restricted loss**: the logit table L[a, b, c] (all p² pairs, the p residue classes c)
  projected onto the constant in c plus cos(w_k(a+b−c)), sin(w_k(a+b−c)) for the key k, the
  cross-entropy of that on the **validation** pairs: low once the key-frequency circuit alone
  computes the answer.
* **excluded loss**: the same components *removed* from L, cross-entropy on the **training**
  pairs: it rises when the network's fit of the training set runs through the circuit rather
  than through memorisation.

The functions cos(w_k t), sin(w_k t) of t = a + b − c (mod p) are orthogonal over ℤ_p³ with
squared norm p³/2, and orthogonal to every function of (a, b) alone; so the projection needs
only the p × p sums M[s, c] = Σ_{a+b≡s} L[a, b, c] (``sum_diff_coefficients``), and a constant
per pair (a, b) does not change the softmax over c.

**Phase boundaries** (``phase_boundaries``), the stated rule on the evaluated accuracies:
memorisation ends at m, the first evaluation with train accuracy ≥ 0.99; clean-up starts at u,
the first evaluation ≥ m at which validation accuracy has risen ``CLEANUP_RISE`` (10 %) of the
way from its value at m to 1 (it leaves its memorisation plateau); the run has grokked at g, the
first evaluation ≥ m with validation accuracy ≥ 0.99. Circuit formation is [m, u], clean-up [u, g].
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from lrdlib.core.data import all_pairs, make_split
from lrdlib.core.model import build_model

KEY_RATIO = 4.0       # a key frequency of the embedding holds ≥ 4× the median squared norm of its frequencies
KEY_ENERGY = 0.95     # the key frequencies of the logits hold ≥ 95 % of the energy on the a + b − c waves
CLEANUP_RISE = 0.1    # clean-up starts when val accuracy has covered 10 % of the way from its plateau to 1
THRESHOLD = 0.99      # memorised / grokked: accuracy at least this


def n_frequencies(p: int) -> int:
    """(p − 1) // 2: the frequencies k = 1 … K of ℤ_p (p odd)."""
    if not isinstance(p, int) or p < 3 or p % 2 == 0:
        raise ValueError(f"p={p!r}: expected an odd modulus ≥ 3 (a prime such as 113)")
    return (p - 1) // 2


def fourier_basis(p: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """The orthonormal real Fourier basis of ℤ_p as rows (p × p): 1/√p, then for k = 1 … K
    √(2/p) cos(w_k a) and √(2/p) sin(w_k a), w_k = 2πk/p."""
    K = n_frequencies(p)
    a = torch.arange(p, dtype=dtype)
    w = 2 * math.pi * torch.arange(1, K + 1, dtype=dtype)[:, None] / p
    waves = torch.stack([torch.cos(w * a), torch.sin(w * a)], dim=1).reshape(2 * K, p) * math.sqrt(2 / p)
    return torch.cat([torch.full((1, p), 1 / math.sqrt(p), dtype=dtype), waves])


def embedding_spectrum(E: Tensor) -> Tensor:
    """‖F_k E‖ for k = 0 … K (index 0: the constant) of residue embeddings E (…, p, d): the
    norm of E's component at each frequency (cos and sin together). Σ_k ‖F_k E‖² = ‖E‖_F²."""
    p = E.shape[-2]
    coef = fourier_basis(p, torch.float64) @ E.double()                  # (…, p, d)
    sq = coef.pow(2).sum(-1)                                             # (…, p): per basis row
    return torch.cat([sq[..., :1], sq[..., 1:].unflatten(-1, (-1, 2)).sum(-1)], dim=-1).sqrt()


def key_frequencies(norms: Tensor, ratio: float = KEY_RATIO) -> list[int]:
    """The key frequencies of a spectrum ``norms`` (k = 0 … K, from ``embedding_spectrum``):
    every k ≥ 1 with norms[k]² ≥ ``ratio`` × the median of norms[j]² over j ≥ 1, ascending."""
    if not ratio > 1:
        raise ValueError(f"ratio={ratio!r}: expected a number > 1 (a key frequency stands out of the median)")
    sq = norms[1:].double().pow(2)
    if sq.numel() < 2:
        raise ValueError(f"norms of {norms.numel()} entries: expected the constant and ≥ 2 frequencies")
    keep = sq >= ratio * sq.median()
    return [int(k) + 1 for k in torch.nonzero(keep).flatten()]


def gini(x: Tensor | Sequence[float]) -> float:
    """Gini coefficient of non-negative values: Σᵢ (2i − n − 1) x₍ᵢ₎ / (n Σ x), x sorted ascending,
    i = 1 … n. 0 for equal values, (n − 1)/n when one value holds everything."""
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    if x.numel() == 0 or (x < 0).any() or not torch.isfinite(x).all():
        raise ValueError(f"gini of {x.tolist()[:5]}…: expected finite, non-negative values")
    total = x.sum()
    if total == 0:
        return 0.0
    n = x.numel()
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(((2 * i - n - 1) * x.sort().values).sum() / (n * total))


# ---------------------------------------------------------------- the logit table and its key components
@torch.no_grad()
def logit_table(model: torch.nn.Module, p: int, chunk: int = 4096) -> Tensor:
    """L[a, b, c]: the model's logits for every pair ``[a, b, =]`` over the p residue classes c
    (the ``=`` class left out), float64, shape (p, p, p)."""

    x, _ = all_pairs("add", p)
    x = x.to(next(model.parameters()).device)
    out = torch.cat([model(x[i:i + chunk])[:, :p] for i in range(0, len(x), chunk)])
    return out.double().cpu().reshape(p, p, p)


def _sum_diff(p: int) -> Tensor:
    """(t, s, c) index table t = (s − c) mod p, shape (p, p)."""
    s = torch.arange(p)
    return (s[:, None] - s[None, :]) % p


def sum_diff_coefficients(L: Tensor) -> Tensor:
    """(α_k, β_k), k = 1 … K, shape (K, 2): L's projection onto cos(w_k(a+b−c)), sin(w_k(a+b−c)),
    α_k = ⟨L, cos⟩ / (p³/2), β_k = ⟨L, sin⟩ / (p³/2). Computed from M[s, c] = Σ_{a+b≡s} L[a, b, c]."""
    p = L.shape[-1]
    if L.shape != (p, p, p):
        raise ValueError(f"logit table of shape {tuple(L.shape)}: expected (p, p, p)")
    K = n_frequencies(p)
    a = torch.arange(p)
    s = ((a[:, None] + a[None, :]) % p).reshape(-1)
    M = torch.zeros(p, p, dtype=torch.float64).index_add_(0, s, L.double().reshape(p * p, p))
    t = _sum_diff(p).double()                                            # (s, c) -> s − c mod p
    w = 2 * math.pi * torch.arange(1, K + 1, dtype=torch.float64) / p
    phase = w[:, None, None] * t                                         # (K, p, p)
    return torch.stack([(M * phase.cos()).sum((1, 2)), (M * phase.sin()).sum((1, 2))], dim=1) / (p ** 3 / 2)


def key_component(L: Tensor, keys: Sequence[int]) -> Tensor:
    """The part of L along cos/sin(w_k(a+b−c)) for k in ``keys``, as a (p, p, p) table."""
    p = L.shape[-1]
    K = n_frequencies(p)
    bad = [k for k in keys if not (isinstance(k, int) and 1 <= k <= K)]
    if bad:
        raise ValueError(f"keys {bad}: expected frequencies in 1 … {K} for p = {p}")
    coef = sum_diff_coefficients(L)
    t = torch.arange(p, dtype=torch.float64)
    g = torch.zeros(p, dtype=torch.float64)
    for k in keys:
        w = 2 * math.pi * k / p
        g += coef[k - 1, 0] * torch.cos(w * t) + coef[k - 1, 1] * torch.sin(w * t)
    a = torch.arange(p)
    idx = (a[:, None, None] + a[None, :, None] - a[None, None, :]) % p
    return g[idx]


def logit_key_frequencies(L: Tensor, energy: float = KEY_ENERGY) -> list[int]:
    """The key frequencies of a logit table L (p, p, p): the fewest k (largest α_k² + β_k² first)
    whose α_k² + β_k² sum to ≥ ``energy`` × Σ_k (α_k² + β_k²), ascending; [] when L has no energy there."""
    if not 0 < energy <= 1:
        raise ValueError(f"energy={energy!r}: expected a share in (0, 1]")
    e = sum_diff_coefficients(L).pow(2).sum(1)
    total = float(e.sum())
    if total <= 0:
        return []
    order = torch.argsort(e, descending=True)
    n = int(torch.searchsorted(torch.cumsum(e[order], 0) / total, torch.tensor(energy, dtype=e.dtype) - 1e-12)) + 1
    return sorted(int(k) + 1 for k in order[:n])


def restricted_logits(L: Tensor, keys: Sequence[int]) -> Tensor:
    """The constant in c (each pair's mean logit) plus L's key-frequency component."""
    return L.mean(-1, keepdim=True) + key_component(L, keys)


def excluded_logits(L: Tensor, keys: Sequence[int]) -> Tensor:
    """L with its key-frequency component removed."""
    return L - key_component(L, keys)


def table_loss(L: Tensor, pairs: Tensor, op_labels: Tensor | None = None) -> float:
    """Mean cross-entropy over c of the table rows L[a, b] for the flat pair indices
    ``pairs`` (a·p + b), label (a + b) mod p (or ``op_labels``, the labels of those pairs)."""
    p = L.shape[-1]
    rows = L.reshape(p * p, p)[pairs]
    y = (pairs // p + pairs % p) % p if op_labels is None else op_labels
    return float(F.cross_entropy(rows, y))


def pair_index(x: Tensor, p: int) -> Tensor:
    """Flat indices a·p + b of token rows ``[a, b, =]`` (N × 3)."""
    return (x[:, 0] * p + x[:, 1]).long().cpu()


# ---------------------------------------------------------------- the measures of one model
def residue_embedding(state: dict[str, Tensor], p: int) -> Tensor:
    """The embedding rows of the p residues (the ``=`` row left out) from a model's state dict."""
    return state["embedding.weight"][:p]


def measures(L: Tensor, E: Tensor, train: Tensor, val: Tensor, keys: Sequence[int]) -> dict:
    """The progress measures of one model from its logit table L (p, p, p), residue embedding E
    (p, d), flat train/validation pair indices and the key frequencies: losses on the p residue
    classes (``train_loss``, ``val_loss``), ``restricted_loss`` (validation), ``excluded_loss``
    (training), ``logit_key_share`` (the key waves' share of L's variance over c), ``gini`` of
    ‖F_k E‖ (k ≥ 1), ``key_share`` (the key frequencies' share of Σ_{k≥1} ‖F_k E‖²) and
    ``spectrum`` (‖F_k E‖, k = 0 … K)."""
    spec = embedding_spectrum(E)
    sq = spec[1:].pow(2)
    key_share = float(sq[[k - 1 for k in keys]].sum() / sq.sum()) if keys else 0.0
    comp = key_component(L, keys)
    centred = L - L.mean(-1, keepdim=True)
    var = float(centred.pow(2).sum())
    return {"train_loss": table_loss(L, train), "val_loss": table_loss(L, val),
            "restricted_loss": table_loss(L.mean(-1, keepdim=True) + comp, val),
            "excluded_loss": table_loss(L - comp, train),
            "logit_key_share": float(comp.pow(2).sum()) / var if var > 0 else 0.0,
            "gini": gini(spec[1:]), "key_share": key_share, "spectrum": spec.tolist()}


# ---------------------------------------------------------------- phases
def phase_boundaries(steps: Sequence[int], train_acc: Sequence[float], val_acc: Sequence[float],
                     threshold: float = THRESHOLD, rise: float = CLEANUP_RISE) -> dict:
    """The stated rule of the module docstring: ``memorised`` m (first train acc ≥ threshold),
    ``cleanup`` u (first evaluation ≥ m with val acc ≥ v_m + rise·(1 − v_m), v_m the val acc at m)
    and ``grokked`` g (first evaluation ≥ m with val acc ≥ threshold); None where never."""
    if not (len(steps) == len(train_acc) == len(val_acc)):
        raise ValueError(f"steps ({len(steps)}), train_acc ({len(train_acc)}) and val_acc ({len(val_acc)}) differ in length")
    if not 0 < rise < 1:
        raise ValueError(f"rise={rise!r}: expected a share of the way to 1 in (0, 1)")
    out = {"memorised": None, "cleanup": None, "grokked": None}
    m = next((i for i, a in enumerate(train_acc) if a is not None and a >= threshold), None)
    if m is None:
        return out
    out["memorised"] = int(steps[m])
    level = val_acc[m] + rise * (1 - val_acc[m])
    u = next((i for i in range(m, len(steps)) if val_acc[i] is not None and val_acc[i] >= level), None)
    g = next((i for i in range(m, len(steps)) if val_acc[i] is not None and val_acc[i] >= threshold), None)
    out["cleanup"] = None if u is None else int(steps[u])
    out["grokked"] = None if g is None else int(steps[g])
    return out


# ---------------------------------------------------------------- along a run
FOURIER_TAG = "fourier2"   # the cache tag of ``progress`` (change it when the measures change)


def progress(cfg, states: dict[int, dict], record: dict) -> dict:
    """The progress measures of an ``add`` run at every kept state (``lrdlib.runs.checkpoints``):
    the key frequencies ``keys`` are those of the **last** state's logits (``logit_key_frequencies``),
    and every state is measured with them, so a curve shows how far the network has come towards
    its final circuit; ``embedding_keys`` are those the last embedding selects (``key_frequencies``).
    Returns JSON-able lists keyed by measure, one entry per step, plus the key sets and the rules' constants."""

    if cfg.task.op != "add":
        raise ValueError(f"op={cfg.task.op!r}: the Fourier progress measures are defined for op='add' (a + b − c waves)")
    p = cfg.task.p
    split = make_split(cfg.task)
    train, val = pair_index(split.x_train, p), pair_index(split.x_val, p)
    steps = sorted(states)
    model = build_model(cfg.model, cfg.seed, "cpu")
    model.load_state_dict(states[steps[-1]])
    keys = logit_key_frequencies(logit_table(model, p))
    emb_keys = key_frequencies(embedding_spectrum(residue_embedding(states[steps[-1]], p)))
    out: dict = {"steps": steps, "keys": keys, "embedding_keys": emb_keys, "key_ratio": KEY_RATIO, "key_energy": KEY_ENERGY, "p": p}
    for s in steps:
        model.load_state_dict(states[s])
        m = measures(logit_table(model, p), residue_embedding(states[s], p), train, val, keys)
        m["weight_norm"] = float(sum(v.double().pow(2).sum() for v in states[s].values()) ** 0.5)
        for k, v in m.items():
            out.setdefault(k, []).append(v)
    return out


# ---------------------------------------------------------------- over several runs (notebook 08)
def phase_table(runs: dict, strengths: dict):
    """One row per run of ``runs`` (``{(method, seed): (record, progress(...) or None)}``, as
    ``lrdlib.runs.checkpoints.measure_many`` returns them; a run without measures is left out):
    the strength (``strengths[method]``), the logits' and the embedding's key frequencies and
    their numbers, the phase boundaries (``phase_boundaries``; NaN where not reached), the
    restricted, excluded and validation losses at m and u (NaN where the boundary was not
    evaluated) and at the end, and the final Gini coefficient and key shares."""

    rows = []
    for (m, s), (rec, ms) in runs.items():
        if ms is None:
            continue
        h = rec["history"]
        ph = phase_boundaries(h["step"], h["train_acc"], h["val_acc"])
        at = lambda name, step, ms=ms: ms[name][ms["steps"].index(step)] if step in ms["steps"] else math.nan
        rows.append({"method": m, "seed": s, "strength": strengths[m], "keys": ms["keys"], "n_keys": len(ms["keys"]),
                     "embedding_keys": ms["embedding_keys"], "n_embedding_keys": len(ms["embedding_keys"]), **ph,
                     "restricted@m": at("restricted_loss", ph["memorised"]), "restricted@u": at("restricted_loss", ph["cleanup"]),
                     "restricted_final": ms["restricted_loss"][-1], "excluded@m": at("excluded_loss", ph["memorised"]),
                     "excluded_final": ms["excluded_loss"][-1], "val_loss@m": at("val_loss", ph["memorised"]),
                     "val_loss@u": at("val_loss", ph["cleanup"]), "gini_final": ms["gini"][-1],
                     "key_share_final": ms["key_share"][-1], "logit_key_share_final": ms["logit_key_share"][-1]})
    df = pd.DataFrame(rows)
    if len(df):
        df[["memorised", "cleanup", "grokked"]] = df[["memorised", "cleanup", "grokked"]].astype(float)   # None -> NaN
    return df


def key_overlap(phases, a: str, b: str) -> dict[int, float]:
    """``{seed: |K_a ∩ K_b| / |K_a ∪ K_b|}``: the overlap of the logits' key frequencies of methods
    ``a`` and ``b`` seed by seed (same initialisation and split), over the seeds of ``phase_table``
    both have where either set is non-empty."""
    pa, pb = phases[phases.method == a].set_index("seed"), phases[phases.method == b].set_index("seed")
    sets = {s: (set(pa.loc[s, "keys"]), set(pb.loc[s, "keys"])) for s in pa.index.intersection(pb.index)}
    return {int(s): len(x & y) / len(x | y) for s, (x, y) in sets.items() if x | y}
