"""Tables and figures of the polar-geometry chapter (notebook 02).

* ``matrix_families``: the random, low-rank and seed-model Q/K matrices the identities are checked on.
* ``identity_table``, ``riemannian_table``, ``fan_table``: ⟨U Vᵀ, W⟩ = ‖W‖_* and the radial/tangential
  split; the Riemannian-gradient check; the subgradient inequality at a 2×2 rank-one and full-rank point.
* ``decay_paths`` and ``plot_needle_to_fan``: subgradient, proximal and NS decay steps on diagonal 2×2 W.
* ``VARIANTS``, ``sv_range_table``, ``ns_error_table``, ``penalty_table``, ``plot_spectral_response``:
  what each NS variant does to the normalised singular values.
* ``ns_vs_svd_benchmarks``, ``cost_frame``, ``plot_ns_vs_svd_cost``: the NS-vs-SVD timings.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import Tensor

from lrdlib.analysis.figures import arm_styles, figure
from lrdlib.core import newton_schulz as nsch
from lrdlib.core import polar_geometry as pg
from lrdlib.core import spectral as sp
from lrdlib.core.decay import DecayConfig, make_decay
from lrdlib.runs.paths import benchmark_results

D64 = torch.float64
# label -> (schedule, steps) of ``newton_schulz.ns_response``; "sign" is the exact polar factor
VARIANTS = {"cubic ×1": ("cubic", 1), "cubic ×3": ("cubic", 3), "cubic ×5 (seed)": ("cubic", 5), "cubic ×10": ("cubic", 10),
            "quintic ×5 (Muon)": ("quintic", 5), "Polar Express ×5": ("polar_express", 5), "exact sign (SVD)": ("sign", 0)}
SEED = "cubic ×5 (seed)"


def matrix_families(n_random: int, qk_init: Tensor, qk_trained: Tensor, trained_label: str) -> dict[str, Tensor]:
    """Float64 stacks: Gaussian 128×128 and 128×512, rank-8 128×128 (``n_random`` each, seed 0),
    and the seed model's Q/K matrices at init and after training (``trained_label``)."""
    gen = torch.Generator().manual_seed(0)
    return {
        "Gaussian 128×128": torch.randn(n_random, 128, 128, generator=gen, dtype=D64),
        "Gaussian 128×512": torch.randn(n_random, 128, 512, generator=gen, dtype=D64),
        "rank-8 128×128": (torch.randn(n_random, 128, 8, generator=gen, dtype=D64)
                           @ torch.randn(n_random, 8, 128, generator=gen, dtype=D64)),
        "Q/K at init": qk_init.to(D64),
        trained_label: qk_trained.to(D64),
    }


def identity_table(mats: dict[str, Tensor]) -> pd.DataFrame:
    """Per family (max over its matrices): the errors of ⟨U_rV_rᵀ, W⟩ = ‖W‖_*, of c and ‖T‖² against
    ``polar_split_closed_form``, |cos(T, W)|; the mean ‖T‖², cos(U Vᵀ, W) (min, mean, max) and 1/√rank."""
    rows = []
    for label, W in mats.items():
        P = pg.polar_compact(W)
        ip, nuc, fro = sp.inner(P, W), sp.nuclear_norm(W), sp.fro(W)
        rank = sp.numerical_rank(W).to(D64)
        c, T = pg.radial_tangential(P, W)
        c_cf, tan2_cf = pg.polar_split_closed_form(W)
        cos = ip / (sp.fro(P) * fro)
        rows.append({"matrices": label, "count": len(W), "rank": f"{int(rank.min())}-{int(rank.max())}",
                     "relerr ⟨UVᵀ,W⟩=‖W‖_*": float(((ip - nuc).abs() / nuc).max()),
                     "relerr c": float(((c - c_cf).abs() / c_cf).max()),
                     "abserr ‖T‖²": float((sp.fro(T) ** 2 - tan2_cf).abs().max()),
                     "max|cos(T,W)|": float((sp.inner(T, W).abs() / (sp.fro(T) * fro)).max()),
                     "‖T‖² (mean)": float(tan2_cf.mean()),
                     "cos(UVᵀ,W) min": float(cos.min()), "cos mean": float(cos.mean()), "cos max": float(cos.max()),
                     "1/√rank": float((1 / rank.sqrt()).max())})
    return pd.DataFrame(rows).set_index("matrices")


def riemannian_table(mats: dict[str, Tensor], per_family: int = 4) -> pd.DataFrame:
    """``riemannian_fd_check`` on the first ``per_family`` matrices of each full-rank family
    (families named "rank-…" are skipped: ‖·‖_* is not differentiable there); max per family."""
    df = pd.DataFrame([{"matrices": label, **pg.riemannian_fd_check(W[i])}
                       for label, W in mats.items() if not label.startswith("rank-") for i in range(min(len(W), per_family))])
    return df.groupby("matrices", sort=False).max().assign(count=df.groupby("matrices", sort=False).size())


def _diag2(a: float, b: float) -> Tensor:
    return torch.diag(torch.tensor([a, b], dtype=D64))


def fan_table(tol: float = 1e-12) -> pd.DataFrame:
    """``subgradient_slack`` of candidate G at the rank-one W = diag(1, 0) and the full-rank
    W = diag(1, 0.5), and whether G passes (slack ≥ −tol): diag(1, z) for z ∈ {0, ±0.5, ±1, ±1.2}
    and the off-diagonal [[1, 0.3], [0, 0]]."""
    cands = {f"diag(1, {z:g})": _diag2(1.0, z) for z in (-1.0, -0.5, 0.0, 0.5, 1.0, 1.2, -1.2)}
    cands["[[1, 0.3], [0, 0]]"] = torch.tensor([[1.0, 0.3], [0.0, 0.0]], dtype=D64)
    slack = pd.DataFrame({"at diag(1, 0) (rank 1)": {k: pg.subgradient_slack(_diag2(1.0, 0.0), G) for k, G in cands.items()},
                          "at diag(1, 0.5) (full rank)": {k: pg.subgradient_slack(_diag2(1.0, 0.5), G) for k, G in cands.items()}})
    slack["member of fan?"] = slack.iloc[:, 0] >= -tol
    slack["member at full rank?"] = slack.iloc[:, 1] >= -tol
    return slack


DECAY_MAPS = {"subgradient  W − αUVᵀ": "lrd_polar", "proximal  SVT_α(W)": "svt", "seed NS  W − α·NS(W)": "lrd_ns"}
STARTS = [(1.0, 0.6), (1.0, 0.25), (0.55, 0.9), (0.9, -0.45)]


def decay_paths(alpha: float, steps: int, starts=STARTS) -> dict[str, list[Tensor]]:
    """``diag_trajectory`` of each of ``DECAY_MAPS`` (strength ``alpha``) from each start."""
    return {m: [pg.diag_trajectory(make_decay(DecayConfig(kind, alpha)).apply, s, steps) for s in starts]
            for m, kind in DECAY_MAPS.items()}


def _diamonds(ax) -> None:
    for lvl in (0.5, 1.0, 1.5):
        ax.plot([lvl, 0, -lvl, 0, lvl], [0, lvl, 0, -lvl, 0], color="0.8", lw=0.8, zorder=0)
    ax.axhline(0, color="0.5", lw=0.6)
    ax.axvline(0, color="0.5", lw=0.6)
    ax.set(xlim=(-1.25, 1.45), ylim=(-1.25, 1.3), aspect="equal", xlabel="d₁", ylabel="d₂")


def _draw_subdifferential(ax, L: float = 0.28) -> None:
    for p in [(0.8, 0.5), (-0.6, 0.7), (0.45, -0.85), (-0.9, -0.3)]:          # full rank: one direction
        g = np.sign(p)
        ax.annotate("", xy=(p[0] + L * g[0], p[1] + L * g[1]), xytext=p, arrowprops=dict(arrowstyle="->", color="C0", lw=1.8))
        ax.plot(*p, "o", color="C0", ms=4)
    for p, axis in [((1.0, 0.0), 0), ((0.0, 0.85), 1), ((-0.7, 0.0), 0), ((0.0, -0.8), 1)]:  # rank one: a fan
        s = np.sign(p[axis])
        tips = []
        for z in np.linspace(-1, 1, 9):
            g = (s, z) if axis == 0 else (z, s)
            tips.append((p[0] + L * g[0], p[1] + L * g[1]))
            ax.annotate("", xy=tips[-1], xytext=p, arrowprops=dict(arrowstyle="->", color="C3", lw=0.8))
        ax.fill([p[0], tips[0][0], tips[-1][0]], [p[1], tips[0][1], tips[-1][1]], color="C3", alpha=0.15, lw=0)
        ax.plot(*p, "o", color="C3", ms=4)
    ax.add_patch(plt.Rectangle((-L, -L), 2 * L, 2 * L, color="C2", alpha=0.25, lw=0))  # W = 0: the unit ball
    ax.plot(0, 0, "o", color="C2", ms=4)


def plot_needle_to_fan(paths: dict[str, list[Tensor]], alpha: float, steps: int, small: int = 1) -> plt.Figure:
    """(a) ∂‖W‖_* in the (d₁, d₂) plane; (b-d) the ``decay_paths``; (e) |d₂| from start ``small``."""
    fig, axes = figure("full", height=5.0, nrows=2, ncols=3)
    axes = axes.ravel()
    axes[5].axis("off")
    sty = arm_styles(paths)
    _diamonds(axes[0])
    _draw_subdifferential(axes[0])
    axes[0].set_title("(a) ∂‖W‖_*: needle (full rank),\nfan (rank 1), ball (W = 0)")
    for ax, letter, (m, ps) in zip(axes[1:4], "bcd", paths.items()):
        _diamonds(ax)
        for k, pth in enumerate(ps):
            ax.plot(pth[:, 0], pth[:, 1], "-o", ms=2.5, lw=1, color=f"C{k}")
            ax.plot(*pth[0].tolist(), "k*", ms=7)
        ax.set_title(f"({letter}) {m}\nα = {alpha}, {steps} steps")
    ax = axes[4]
    for m, ps in paths.items():
        ax.plot(np.arange(steps + 1), ps[small][:, 1].abs().clamp_min(1e-17).numpy(), ms=3, label=m, **sty[m])
    ax.axhline(alpha, color="k", ls=":", lw=1, label="α")
    start = tuple(float(v) for v in paths[next(iter(paths))][small][0])
    ax.set(yscale="log", ylim=(5e-18, 1), xlabel="step", ylabel="|d₂| (exact 0 at 1e-17)",
           title=f"(e) small singular value\nfrom ({start[0]:g}, {start[1]:g})", box_aspect=1)
    axes[5].legend(*ax.get_legend_handles_labels(), loc="center left", title="panel (e)")
    return fig


def sv_range_table(s_norm: dict[str, Tensor], labels=(SEED, "quintic ×5 (Muon)", "Polar Express ×5")) -> pd.DataFrame:
    """Per set of normalised singular values: its min and max, and φ of both for each variant in ``labels``."""
    rows = []
    for key, s in s_norm.items():
        lo, hi = s.min().reshape(1), s.max().reshape(1)
        row = {"Q/K": key, "s min": float(lo), "s max": float(hi)}
        for lab in labels:
            v, k = VARIANTS[lab]
            row[f"{lab}: φ(min)"] = float(nsch.ns_response(lo, v, k))
            row[f"{lab}: φ(max)"] = float(nsch.ns_response(hi, v, k))
        rows.append(row)
    return pd.DataFrame(rows).set_index("Q/K")


def ns_error_table(mats: dict[str, Tensor], families: dict[str, str]) -> pd.DataFrame:
    """Mean ``ns_relative_error`` ‖NS(W) − U Vᵀ‖_F/‖U Vᵀ‖_F per variant (rows) and family
    (columns: ``families`` maps a column name to a key of ``mats``)."""
    return pd.DataFrame({lab: {col: float(nsch.ns_relative_error(mats[key], v, k).mean()) for col, key in families.items()}
                         for lab, (v, k) in VARIANTS.items()}).T


def penalty_table(s_norm: dict[str, Tensor], alpha: float, fro_init: float) -> pd.DataFrame:
    """Per variant: φ′(0), the knee s½ (φ = ½), the share of each set of normalised singular
    values below the knee, and the per-step L2 factor α·φ′(0)/‖W‖_F it acts as there (at ‖W‖_F = ``fro_init``)."""
    rows = []
    for lab, (v, k) in VARIANTS.items():
        gain, knee = nsch.ns_gain_at_zero(v, k), nsch.ns_knee(v, k)
        rows.append({"variant": lab, "φ′(0)": gain, "knee s½": knee,
                     **{f"share below knee ({key})": float((s < knee).double().mean()) for key, s in s_norm.items()},
                     "L2-equivalent α·φ′(0)/‖W‖_F (init)": alpha * gain / fro_init})
    return pd.DataFrame(rows).set_index("variant")


def plot_spectral_response(s_norm: dict[str, Tensor], err: pd.DataFrame, pen: pd.DataFrame) -> plt.Figure:
    """(a) φ(s) per variant over histograms of ``s_norm``; (b) the ``ns_error_table``; (c) the
    implied penalty Φ(s) = ∫₀ˢ φ with the seed's ridge φ′(0)·s²/2 and knee."""
    s_grid = torch.logspace(-5, 0, 400, dtype=D64)
    colors = dict(zip(VARIANTS, ["#c6dbef", "#6baed6", "C0", "#08306b", "C1", "C2", "k"]))
    fig, axes = figure("full", height=5.4, nrows=2, ncols=2)
    axes = axes.ravel()
    axes[3].axis("off")
    ax = axes[0]
    for lab, (v, k) in VARIANTS.items():
        ax.plot(s_grid, nsch.ns_response(s_grid, v, k), color=colors[lab],
                lw=2.2 if "seed" in lab or v == "sign" else 1.4, ls="--" if v == "sign" else "-", label=lab)
    ax.set(xscale="log", xlabel="normalised singular value s = σ/‖W‖_F", ylabel="φ(s)", ylim=(0, 1.25),
           title="(a) spectral response vs the seed model's spectra")
    bins = np.logspace(-5, 0, 51)
    for (key, s), c in zip(s_norm.items(), ("0.35", "C3")):   # histograms, scaled to height 0.3, at the bottom
        cnt, _ = np.histogram(s.clamp_min(1e-5).numpy(), bins=bins)
        ax.stairs(0.3 * cnt / cnt.max(), bins, fill=True, alpha=0.3, color=c, zorder=0,
                  label=f"Q/K σ/‖W‖_F at {key} (histogram)")
    axes[3].legend(*ax.get_legend_handles_labels(), loc="upper left", title="panel (a)")
    ax = axes[1]
    x = np.arange(len(err))
    for j, (col, c) in enumerate(zip(err.columns, ["0.45", "C3", "C4"])):
        ax.bar(x + (j - 1) * 0.27, err[col], width=0.27, color=c, label=col)
    ax.set_xticks(x, err.index, rotation=35, ha="right")
    ax.set(ylabel="‖NS(W) − UVᵀ‖_F / ‖UVᵀ‖_F", ylim=(0, 1), title="(b) distance from the exact polar factor")
    ax.legend()
    ax = axes[2]
    for lab in ("cubic ×1", SEED, "cubic ×10", "quintic ×5 (Muon)", "Polar Express ×5", "exact sign (SVD)"):
        v, k = VARIANTS[lab]
        ax.plot(s_grid, nsch.ns_spectral_penalty(s_grid, v, k), color=colors[lab], lw=2 if "seed" in lab else 1.3,
                ls="--" if v == "sign" else "-", label=f"Φ: {lab}")
    ax.plot(s_grid, pen.loc[SEED, "φ′(0)"] * s_grid ** 2 / 2, ":", color="C0", lw=1.2, label="ridge 1.5⁵·s²/2")
    ax.axvline(pen.loc[SEED, "knee s½"], color="C0", lw=0.8, ls="-.")
    ax.set(xscale="log", yscale="log", ylim=(1e-10, 2), xlabel="s = σ/‖W‖_F", ylabel="Φ(s) = ∫₀ˢ φ",
           title="(c) implied spectral penalty (per unit ‖W‖_F)")
    ax.legend(loc="lower right")
    return fig


def ns_vs_svd_benchmarks(profile: str, device: str, sizes: str) -> list[dict]:
    """The ``benchmarks/ns_vs_svd.py`` tables: this device's (rerun at smoke, the committed one at
    paper), plus a CUDA table measured elsewhere when running on the CPU and one exists."""
    benches = [benchmark_results("ns_vs_svd", ["--sizes", sizes, "--repeats", "3"], device=device, rerun=(profile == "smoke"),
                                 tag=f"_{profile}_{device}", committed=(profile == "paper"))]
    if device == "cpu":
        try:
            benches.append(benchmark_results("ns_vs_svd", device="cuda", tag="_cuda"))
        except (RuntimeError, ValueError):
            pass
    return benches


def cost_frame(benches: list[dict]) -> pd.DataFrame:
    """The rows of every table, with a ``device`` column "<device>: <device name>"."""
    return pd.concat([pd.DataFrame(b["rows"]).assign(device=f"{b['device']}: {b['device_name']}") for b in benches],
                     ignore_index=True)


def plot_ns_vs_svd_cost(cost: pd.DataFrame) -> plt.Figure:
    """(a) wall time per call of each method, (b) SVD / NS, against n, per batch size and device."""
    methods = ["ns_cubic5", "ns_quintic5", "svd", "svdvals"]
    fig, axes = figure("full", height=3.0, ncols=2)
    for d_i, (dev, t) in enumerate(cost.groupby("device")):
        mk = "os^D"[d_i % 4]
        for b in sorted(t.batch.unique()):
            tb, ls = t[t.batch == b], "-" if b == 1 else "--"
            for j, m in enumerate(methods):
                axes[0].plot(tb.n, tb[f"{m}_ms"], ls=ls, marker=mk, color=f"C{j}", ms=4,
                             label=f"{m}, batch {b}" + (f" [{dev.split(':')[0]}]" if cost.device.nunique() > 1 else ""))
            for j, m in enumerate(["ns_cubic5", "ns_quintic5"]):
                axes[1].plot(tb.n, tb[f"svd/{m}"], ls=ls, marker=mk, color=f"C{j}", ms=4, label=f"SVD / {m}, batch {b}")
    axes[0].set(xscale="log", yscale="log", xlabel="n (n × n, float32)", ylabel="wall time (ms per call)", title="(a) wall time")
    axes[1].axhline(1, color="k", lw=0.8)
    axes[1].set(xscale="log", yscale="log", xlabel="n (n × n, float32)", ylabel="time ratio SVD / NS",
                title="(b) SVD / NS (> 1: NS cheaper)")
    plain = plt.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "125" else "")
    axes[1].yaxis.set_major_formatter(plain)
    axes[1].yaxis.set_minor_formatter(plain)
    for ax in axes:
        ax.legend(ncol=2)
    fig.suptitle("; ".join(sorted(cost.device.unique())))
    return fig
