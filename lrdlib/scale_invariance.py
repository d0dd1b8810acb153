"""Scale invariance of the seed model's parameters (notebooks 01, 02).

* ``scale_invariance_table(model, x, y)``: per parameter P, the relative change of the
  logits when P alone is scaled by α (default α ∈ {0.1, 10}), the cosine between ∇_P L and P
  on the batch, and why P is or is not scale-invariant. Computed in float64 on a copy.
* ``euler_checks(model, name, x, y)``: the consequences of L(αW) = L(W) for one matrix:
  ⟨∇L, W⟩ = 0, ∇L(αW) = ∇L(W)/α, ‖W − ηg‖² = ‖W‖² + η²‖g‖², and the step on W/‖W‖
  shrinking as η/‖W‖².
"""
from __future__ import annotations

import copy

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from .model import Transformer

# why each parameter of the seed model is (or is not) scale-invariant; first match wins
_REASONS = (
    ("q_norm.g", "scales the normalised q: the attention temperature"),
    ("k_norm.g", "scales the normalised k: the attention temperature"),
    ("q_proj", "INVARIANT: QK-Norm divides out any scale of q = W_Q h"),
    ("k_proj", "INVARIANT: QK-Norm divides out any scale of k = W_K h"),
    ("v_proj", "scales v, hence the attention output added to the residual stream"),
    ("o_proj", "scales the attention output added to the residual stream"),
    ("fc_in", "SiLU is not homogeneous: silu(αz) ≠ α·silu(z)"),
    ("fc_out", "scales the MLP output added to the residual stream"),
    ("norm1.g", "scales the attention input: v and the residual contribution scale (q, k are renormalised)"),
    ("norm2.g", "scales the MLP input (SiLU is not homogeneous)"),
    ("norm_final.g", "scales the logits: the softmax temperature of the loss"),
    ("lm_head", "scales the logits: the softmax temperature of the loss"),
    ("pos_embedding", "changes the balance of positional and token embeddings"),
    ("embedding", "changes the balance of token and positional embeddings, and of later residual additions"),
)
_NO_QK_NORM = "without QK-Norm, scaling W_{} scales the attention logits q·kᵀ (softmax temperature)"


def why(name: str, qk_norm: bool = True) -> str:
    """One line: why parameter ``name`` of the seed model is (not) scale-invariant."""
    for key, reason in _REASONS:
        if key in name:
            if key in ("q_proj", "k_proj") and not qk_norm:
                return _NO_QK_NORM.format(key[0].upper())
            return reason
    return "not analysed"


def _loss(model: Transformer, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(model(x), y)


def scale_invariance_table(model: Transformer, x: Tensor, y: Tensor, alphas: tuple[float, ...] = (0.1, 10.0),
                           dtype: torch.dtype = torch.float64, tol: float = 1e-12) -> pd.DataFrame:
    """One row per parameter P (in ``named_parameters`` order):

    expected   P ∈ model.scale_invariant_parameters() (QK-Norm on: W_Q, W_K)
    Δf(α)      ‖f(P → αP) − f‖_F / ‖f‖_F on the logits of the batch (x, y), one column per α
    cos(∇L,W)  ⟨∇_P L, P⟩ / (‖∇_P L‖ ‖P‖), L the mean cross-entropy on the batch
    grad_norm  ‖∇_P L‖
    invariant  measured: every Δf(α) < tol and |cos| < tol
    why        the reason (``why``)

    The model is copied and cast to ``dtype`` (default float64, so exact invariance shows as
    ~1e-15, not float32 rounding); the caller's model is untouched.
    """
    m = copy.deepcopy(model).to(dtype=dtype, device="cpu").eval()
    x, y = x.cpu(), y.cpu()
    expected = set(m.scale_invariant_parameters())
    with torch.no_grad():
        base = m(x)
    m.zero_grad(set_to_none=True)
    _loss(m, x, y).backward()
    rows = []
    for name, p in m.named_parameters():
        row = {"parameter": name, "shape": "×".join(map(str, p.shape)), "expected": name in expected}
        orig = p.detach().clone()
        with torch.no_grad():
            for a in alphas:
                p.mul_(a)
                row[f"Δf(α={a:g})"] = float((m(x) - base).norm() / base.norm())
                p.copy_(orig)
        g = p.grad
        row["cos(∇L,W)"] = float((g * orig).sum() / (g.norm() * orig.norm()).clamp_min(1e-300))
        row["grad_norm"] = float(g.norm())
        row["invariant"] = max(row[f"Δf(α={a:g})"] for a in alphas) < tol and abs(row["cos(∇L,W)"]) < tol
        row["why"] = why(name, m.cfg.qk_norm)
        rows.append(row)
    return pd.DataFrame(rows).set_index("parameter")


def invariance_summary(tab: pd.DataFrame) -> dict:
    """The numbers a notebook states about a ``scale_invariance_table``: how many parameters
    are invariant (measured and expected), whether the two sets agree, the largest Δf and
    |cos| among the invariant ones and the smallest Δf among the others."""
    dcols = [c for c in tab.columns if c.startswith("Δf")]
    dmax = tab[dcols].max(axis=1)
    inv, rest = tab[tab.invariant], tab[~tab.invariant]
    return {
        "n_parameters": len(tab),
        "n_invariant": int(tab.invariant.sum()),
        "invariant": list(inv.index),
        "agrees_with_expected": bool((tab.invariant == tab.expected).all()),
        "max_df_invariant": float(dmax[tab.invariant].max()) if len(inv) else float("nan"),
        "max_abs_cos_invariant": float(inv["cos(∇L,W)"].abs().max()) if len(inv) else float("nan"),
        "min_df_others": float(dmax[~tab.invariant].min()) if len(rest) else float("nan"),
        "median_abs_cos_others": float(rest["cos(∇L,W)"].abs().median()) if len(rest) else float("nan"),
    }


def _grad_of(model: Transformer, name: str, x: Tensor, y: Tensor) -> Tensor:
    p = dict(model.named_parameters())[name]
    model.zero_grad(set_to_none=True)
    _loss(model, x, y).backward()
    return p.grad.detach().clone()


def euler_checks(model: Transformer, name: str, x: Tensor, y: Tensor, eta: float = 1e-4,
                 alphas: tuple[float, ...] = (0.5, 2.0, 4.0), growth_eta: float = 1.0) -> dict[str, float]:
    """The consequences of L(αW) = L(W) for parameter ``name`` (float64, on a copy):

    cos_grad_w        ⟨g, W⟩/(‖g‖‖W‖)                                 (Euler: 0)
    growth_mismatch   |‖W − ηg‖² − ‖W‖² − η²‖g‖²| / (η²‖g‖²) at η = growth_eta
                      (0: any gradient step grows ‖W‖² by exactly η²‖g‖²; an exact identity,
                      so a large η keeps float64 cancellation in ‖W‖² small against η²‖g‖²)
    grad_homogeneity  max_α ‖α ∇L(αW) − ∇L(W)‖ / ‖∇L(W)‖                (0: ∇L(αW) = ∇L(W)/α)
    step_scaling      max_α |α² · δ(α)/δ(1) − 1|, δ(α) = ‖dir(αW − ηg_α) − dir(αW)‖, dir(X) = X/‖X‖
                      (0 to first order in η: the step on W/‖W‖ scales as η/‖W‖²)
    eta, norm_w       the η of the step-scaling check and ‖W‖_F.
    """
    m = copy.deepcopy(model).to(dtype=torch.float64, device="cpu")
    x, y = x.cpu(), y.cpu()
    p = dict(m.named_parameters())[name]
    W = p.detach().clone()
    g = _grad_of(m, name, x, y)
    cos = float((g * W).sum() / (g.norm() * W.norm()))
    e2g2 = growth_eta ** 2 * g.norm() ** 2
    mismatch = float(((W - growth_eta * g).norm() ** 2 - W.norm() ** 2 - e2g2).abs() / e2g2)

    def unit(X):
        return X / X.norm()

    d1 = float((unit(W - eta * g) - unit(W)).norm())
    homog, scaling = 0.0, 0.0
    with torch.no_grad():
        for a in alphas:
            p.copy_(a * W)
            with torch.enable_grad():
                ga = _grad_of(m, name, x, y)
            homog = max(homog, float((a * ga - g).norm() / g.norm()))
            da = float((unit(a * W - eta * ga) - unit(a * W)).norm())
            scaling = max(scaling, abs(a ** 2 * da / d1 - 1))
        p.copy_(W)
    return {"cos_grad_w": cos, "growth_mismatch": mismatch, "grad_homogeneity": homog,
            "step_scaling": scaling, "eta": eta, "norm_w": float(W.norm())}
