"""Scale invariance of the seed model's parameters (notebooks 01, 02).

* ``scale_invariance_table(model, x, y)``: per parameter P, the relative change of the
  logits when P alone is scaled by α (default α ∈ {0.1, 10}), the cosine between ∇_P L and P
  on the batch, and why P is or is not scale-invariant. Computed in float64 on a copy.
* ``euler_checks(model, name, x, y)``: the consequences of L(αW) = L(W) for one matrix:
  ⟨∇L, W⟩ = 0, ∇L(αW) = ∇L(W)/α, ‖W − ηg‖² = ‖W‖² + η²‖g‖², and the step on W/‖W‖
  shrinking as η/‖W‖².
* ``plot_scale_invariance(tables, tol)``: Δf and |cos(∇L, W)| per parameter for several tables.
* ``plot_trajectory_split(shares, disp, record_norms, steps_run)``: tangential shares of the
  directions along a trajectory, the per-step decay displacements, and the record's norms.
"""
from __future__ import annotations

import copy

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from lrdlib.analysis.figures import METHOD_COLORS, figure
from lrdlib.core.model import Transformer

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


# marker, colour, filled: per table of ``plot_scale_invariance``, in order
_TABLE_STYLES = (("o", "0.35", True), ("s", METHOD_COLORS["LRD"], True), ("o", "#CC79A7", False), ("s", "#E69F00", False))


def plot_scale_invariance(tables: dict[str, pd.DataFrame], tol: float) -> plt.Figure:
    """Δf(α = 0.1), Δf(α = 10) and |cos(∇L, W)| per parameter (rows of the first table, shaded
    where ``expected``) for each ``scale_invariance_table`` in ``tables`` (label -> table, at most
    four: filled markers for the first two), on a log scale; dotted: ``tol``. A value below ``tol``
    (rounding noise, whose digits differ between processors) is drawn as an open ◁ on the tol line,
    and every other value at 3 significant digits, so the figure is the same on every processor."""
    first = next(iter(tables.values()))
    names = list(first.index)
    ypos = np.arange(len(names))
    fig, axes = figure("full", height=5.2, ncols=3, sharey=True)
    for ax, col in zip(axes, ["Δf(α=0.1)", "Δf(α=10)", "cos(∇L,W)"]):
        for (label, t), (mk, color, filled) in zip(tables.items(), _TABLE_STYLES):
            v = t[col].reindex(names).abs().to_numpy()   # NaN: parameter absent (no q/k norm gains)
            low = v < tol   # rounding noise: its digits differ between processors, so it is drawn as "< tol"
            shown = np.array([float(f"{x:.3g}") for x in v[~low]])   # the last digits differ between processors too
            ax.scatter(shown, ypos[~low], marker=mk, s=14, label=label, edgecolor=color,
                       facecolor=color if filled else "none", zorder=3)
            ax.scatter(np.full(low.sum(), tol), ypos[low], marker="<", s=16, edgecolor=color, facecolor="none", zorder=3)
        ax.axvline(tol, color="k", ls=":", lw=1)
        ax.set(xscale="log", xlim=(tol / 30, 3e1), xlabel="relative change" if col.startswith("Δ") else "|cosine|",
               title=("|" + col + "|") if col.startswith("cos") else col)
        for i in np.flatnonzero(first.expected.to_numpy()):
            ax.axhspan(i - 0.45, i + 0.45, color="gold", alpha=0.25, lw=0)
    axes[0].set_yticks(ypos, names)
    axes[0].invert_yaxis()
    axes[2].legend(loc="lower left")
    fig.suptitle("Scale invariance per parameter (float64; shaded rows: W_Q, W_K)")
    return fig


def plot_trajectory_split(shares: pd.DataFrame, disp: pd.DataFrame, record_norms: pd.DataFrame, steps_run: int) -> plt.Figure:
    """(a) tangential share per direction (``share_table``: mean line, min-max band); (b) the
    ``decay_displacements``; (c) the ``record_tangential`` norms of the whole run."""
    L2C, LRDC = METHOD_COLORS["L2"], METHOD_COLORS["LRD"]
    fig, axes = figure("full", height=2.9, ncols=3)
    ax = axes[0]
    for d, color in zip(["task gradient", "L2 (W)", "LRD (NS(W))", "exact U Vᵀ"], ["0.3", L2C, LRDC, "#CC79A7"]):
        s = shares.loc[d]
        ax.plot(s.index, s["mean"], color=color, lw=2, label=d)
        ax.fill_between(s.index, s["min"], s["max"], color=color, alpha=0.2, lw=0)
    ax.set(xlabel="step", ylabel="tangential share ‖T‖/‖D‖", ylim=(-0.03, 1.03), title="(a) directions at W (first steps)")
    ax.legend(loc="center right")
    ax = axes[1]
    ax.plot(disp.index, disp.l2_radial, color=L2C, lw=2, label="L2 radial  (lr·λ·‖W‖)")
    ax.plot(disp.index, disp.lrd_radial, color=LRDC, lw=2, label="LRD radial  (α·⟨NS(W),W⟩/‖W‖)")
    ax.plot(disp.index, disp.lrd_tangential, color=LRDC, ls="--", lw=2, label="LRD tangential  (α·‖T‖)")
    ax.set(xlabel="step", ylabel="per-step displacement ‖·‖_F", yscale="log", title="(b) per-step decay displacement")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25))
    ax = axes[2]
    for key, color, ls in [("grad_tan", "0.3", "-"), ("grad_rad", "0.3", ":"), ("decay_tan", LRDC, "--"),
                           ("decay_rad", LRDC, "-"), ("update_tan", "k", "--"), ("update_rad", "k", "-")]:
        ax.plot(record_norms.index, np.clip(record_norms[key], 1e-14, None), color=color, ls=ls, lw=1.5, label=key.replace("_", " "))
    ax.set(xlabel="step", yscale="log", ylabel="norm (mean of 4 matrices)", title=f"(c) whole run ({steps_run} steps), record")
    ax.legend(ncol=2)
    return fig
