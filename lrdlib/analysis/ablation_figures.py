"""Figures of the ablation chapters (notebooks 05 and 06), each from run records or searches alone.

* ``ablation_styles``: a style per arm; the seed methods keep their method colours, the others distinct ones.
* ``plot_rank_spectra`` (05): Q/K stable rank along training and the final spectrum of one matrix, per arm.
* ``plot_grok_and_accuracy`` (05): steps to grok and final validation accuracy per seed, one column per arm.
* ``plot_search``: one axis, the search seed's steps to grok against strength / centre, per arm.
* ``plot_matched_vs_best`` (05): the searches, and each arm's KM median at its matched strength and its own best.
* ``plot_luon_arms`` (06): validation accuracy and Q/K stable rank along training, per arm.
* ``plot_lambda_crossover`` (06): λ‖W‖_F/‖G‖_F along training, one line per λ.
* ``plot_own_best_km`` (06): the searches, and the Kaplan-Meier share grokked at each arm's best strength.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter

from lrdlib.analysis.figures import arm_styles, draw_ceiling, figure, outcome_marker_kw, plot_grok_outcomes, plot_spread
from lrdlib.analysis.frames import history_frame, spectra_frame
from lrdlib.analysis.survival import kaplan_meier, lasting_grok

SEED_ARMS = ("L2 everywhere (seed)", "LRD NS5 cubic (seed)")   # 05's two seed methods
QK_RANK = "Q/K stable rank (mean of 4 matrices)"
BEST_RING = {"s": 110, "facecolor": "none", "edgecolor": "k", "linewidth": 1, "zorder": 4}


def _ok(records: dict) -> dict:
    return {a: [r for r in rs if r.get("status") != "failed"] for a, rs in records.items()}


def _ceiling(records: dict) -> float:
    """The mean memorisation + commutativity ceiling of validation accuracy over the trained records."""
    return float(np.mean([r["commutativity_ceiling"] for rs in _ok(records).values() for r in rs]))


def _plain_log_ticks(*axes) -> None:
    """Tick labels of log axes as plain numbers (1000, not 10³), no minor labels."""
    for a in axes:
        a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        a.set_minor_formatter(NullFormatter())


def ablation_styles(arms: Sequence[str], reference: Sequence[str] = SEED_ARMS) -> dict[str, dict]:
    """``arm_styles`` for the ``reference`` arms present (method colours), distinct colours and markers for the rest."""
    sty = arm_styles([a for a in reference if a in arms])
    others = [a for a in arms if a not in sty]
    sty.update(zip(others, arm_styles([f"arm {i}" for i in range(len(others))]).values()))
    return sty


def _mark(lines: dict, styles: dict, every: int | None = None) -> None:
    for arm, ln in lines.items():
        ln.set(marker=styles[arm]["marker"], markersize=3.5, markevery=every or max(1, len(ln.get_xdata()) // 6))


def plot_rank_spectra(records: dict, styles: dict, matrix: str = "layers.0.attn.q_proj.weight") -> plt.Figure:
    """(left) the Q/K stable rank along training, median over seeds and min-max band, per arm;
    (right) the final singular values σᵢ/σ₁ of ``matrix``, same statistics. One legend below."""
    order = list(records)
    per_run = spectra_frame(records).groupby(["arm", "seed", "step"], as_index=False).stable_rank.mean()
    sv = pd.DataFrame([{"arm": a, "seed": r["config"]["seed"], "i": i + 1, "s": v / r["final_singular_values"][matrix][0]}
                       for a, rs in _ok(records).items() for r in rs for i, v in enumerate(r["final_singular_values"][matrix])])
    fig, axes = figure("full", height=3.6, ncols=2)
    _mark(plot_spread(axes[0], per_run, "stable_rank", styles=styles, order=order), styles)
    axes[0].set(yscale="log", xlabel="step", ylabel=QK_RANK, title="Q/K rank: median over seeds, band min–max")
    _mark(plot_spread(axes[1], sv, "s", x="i", styles=styles, order=order, label=False), styles, every=16)
    axes[1].set(yscale="log", ylim=(1e-5, 1.5), xlabel="index i", ylabel="σᵢ/σ₁", title=r"final spectrum, block 0 $W_Q$")
    fig.legend(loc="outside lower center", ncol=3)
    return fig


def plot_grok_and_accuracy(records: dict, styles: dict, budget: int) -> plt.Figure:
    """(top) steps to a lasting grok per seed, hollow at the budget for runs that did not grok;
    (bottom) their final validation accuracy, same markers, with the memorisation + commutativity
    ceiling and the grokking threshold. One column per arm."""
    order = list(records)
    runs = pd.DataFrame([{"arm": a, "steps_to_grok": lasting_grok(r), "final_val_acc": r["final_val_acc"]}
                         for a, rs in _ok(records).items() for r in rs])
    fig, axes = figure("full", height=4.2, nrows=2, sharex=True)
    plot_grok_outcomes(axes[0], runs, styles=styles, order=order, budget=budget, annotate=False)
    axes[0].set(ylabel="steps to grok",
                title=f"steps-to-grok per seed (filled); not within the {budget}-step budget: hollow at the budget")
    for i, arm in enumerate(order):
        g = runs[runs.arm == arm]
        x = i + (np.linspace(-0.15, 0.15, len(g)) if len(g) > 1 else np.zeros(len(g)))
        for grokked in (True, False):
            sel = g.steps_to_grok.notna().to_numpy() == grokked
            axes[1].scatter(x[sel], g.final_val_acc[sel], marker=styles[arm]["marker"], s=28, zorder=3,
                            **outcome_marker_kw(grokked, styles[arm]["color"]))
    draw_ceiling(axes[1], _ceiling(records))
    axes[1].axhline(0.99, color="0.5", lw=0.8, ls="--", label="grokking threshold 0.99")
    axes[1].set(ylim=(0, 1.05), ylabel="final validation accuracy")
    axes[1].legend(loc="lower left")
    plt.setp(axes[1].get_xticklabels(), rotation=60, ha="right")
    return fig


def plot_search(ax: plt.Axes, own, styles: dict, label: bool = True) -> None:
    """Each search of ``own`` (``lrdlib.runs.own_best.OwnBest``): the search seed's steps to a lasting
    grok against strength / centre, hollow at twice the budget for a run that did not grok within
    its budget (or stage-B cap), a ring at the best strength; the budget dashed."""
    top = 2 * own.design.steps
    for a, s in own.searches.items():
        st, ts = styles[a], s.searched()
        x = np.array([t.strength / own.centres[a] for t in ts])
        y = np.array([t.time if t.event else top for t in ts])
        ax.plot(x, y, color=st["color"], ls=st["ls"], lw=1, label=a if label else None)
        for grokked in (True, False):
            sel = np.array([t.event for t in ts]) == grokked
            ax.scatter(x[sel], y[sel], marker=st["marker"], s=26, zorder=3, **outcome_marker_kw(grokked, st["color"]))
        i = [t.strength for t in ts].index(s.best_strength)
        ax.scatter(x[i], y[i], **BEST_RING)
    ax.axhline(own.design.steps, color="0.5", ls="--", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="strength / centre", ylabel="steps to grok (search seed)")
    _plain_log_ticks(ax.xaxis, ax.yaxis)


def plot_matched_vs_best(own, rows: Sequence[dict], styles: dict) -> plt.Figure:
    """(left) ``plot_search``; (right) per arm of ``rows`` (``lrdlib.analysis.mechanism.matched_vs_best_row``)
    the KM median steps to grok at the matched strength (hollow) and at its own best (filled),
    labelled k/n grokked; a median beyond the budget at twice the budget."""
    budget = own.design.steps
    top = 2 * budget
    fig, axes = figure("full", height=3.4, ncols=2)
    plot_search(axes[0], own, styles)
    axes[0].set(xlabel="strength / matched strength", title="the search (hollow: not within its budget; ring: best)")
    for i, r in enumerate(rows):
        st = styles[r["arm"]]
        x = {k: min(r[k]["km_median"], top) for k in ("matched", "best")}
        axes[1].plot([x["matched"], x["best"]], [i - 0.15, i + 0.15], color=st["color"], lw=1)
        for k, dy in (("matched", -0.15), ("best", 0.15)):
            axes[1].scatter(x[k], i + dy, marker=st["marker"], s=30, zorder=3, **outcome_marker_kw(k == "best", st["color"]))
            axes[1].annotate(f"{r[k]['grokked']}/{r[k]['n']}", (x[k], i + dy), textcoords="offset points", xytext=(-6, 0),
                             fontsize=7, ha="right", va="center", color=st["color"])
    axes[1].axvline(budget, color="0.5", ls="--", lw=0.8)
    lo = min(min(r[k]["km_median"], top) for r in rows for k in ("matched", "best"))
    axes[1].set_yticks(range(len(rows)), [r["arm"] for r in rows])
    axes[1].set(xscale="log", xlim=(lo / 2.5, top * 1.3), ylim=(len(rows) - 0.3, -0.7),   # room for the k/n labels
                xlabel=f"KM median steps to grok (at {top}: beyond the {budget}-step budget)",
                title="matched (hollow) vs own best (filled); k/n grokked")
    _plain_log_ticks(axes[1].xaxis)
    fig.legend(loc="outside lower center", ncol=3)
    return fig


def plot_luon_arms(records: dict, styles: dict) -> plt.Figure:
    """(left) validation accuracy, (right) Q/K stable rank along training, median over seeds with
    the min-max band, per arm of ``records``; the memorisation + commutativity ceiling dotted."""
    order = list(records)
    per_run = spectra_frame(records).groupby(["arm", "seed", "step"], as_index=False).stable_rank.mean()
    fig, axes = figure("full", height=2.9, ncols=2)
    plot_spread(axes[0], history_frame(records), "val_acc", styles=styles, order=order)
    draw_ceiling(axes[0], _ceiling(records))
    plot_spread(axes[1], per_run, "stable_rank", styles=styles, order=order, label=False)
    axes[0].set(xlabel="step", ylabel="validation accuracy", ylim=(0, 1.02), title="median over seeds, band min–max")
    axes[1].set(xlabel="step", ylabel=QK_RANK, yscale="log")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3)
    return fig


def plot_lambda_crossover(ratios: pd.DataFrame) -> plt.Figure:
    """λ‖W‖_F/‖G‖_F along training, median over seeds, one line per λ > 0 of ``ratios``
    (``lrdlib.analysis.mechanism.luon_ratio_frame``) on a sequential scale; 1 (the crossover) dotted."""
    r = ratios[ratios.lam > 0]
    arms = list(r.sort_values("lam").arm.unique())
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(arms)))
    fig, ax = figure("single", height=2.4)
    plot_spread(ax, r, "ratio", styles={a: {"color": c, "ls": "-"} for a, c in zip(arms, colors)}, order=arms, band_alpha=0.0)
    ax.axhline(1, color="k", ls=":", lw=1)
    ax.set(yscale="log", xlabel="step", ylabel=r"$\lambda\|W\|_F\,/\,\|G\|_F$", title="decay vs task gradient in Luon's momentum")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2)
    return fig


def plot_own_best_km(own, styles: dict, labels: dict[str, str] | None = None) -> plt.Figure:
    """(left) ``plot_search``; (right) the Kaplan-Meier share of seeds grokked at each arm's best
    strength (``labels``: the legend entry per arm), zoomed onto the groks when every run grokked."""
    budget = own.design.steps
    fig, axes = figure("full", height=2.9, ncols=2)
    plot_search(axes[0], own, styles, label=False)
    axes[0].set(title="search (hollow: no grok within budget or cap; ring: best)")
    times, censored = [], False
    for a in own.searches:
        ok = [t for t in own.final(a) if t.status != "failed"]
        t, e = [x.time for x in ok], [x.event for x in ok]
        g, surv = kaplan_meier(t, e)
        axes[1].step(np.r_[0, g, budget], 1 - np.r_[1, surv, surv[-1] if len(surv) else 1], where="post",
                     color=styles[a]["color"], ls=styles[a]["ls"], lw=1.3, label=(labels or {}).get(a, a))
        times += [x for x, grokked in zip(t, e) if grokked]
        censored |= not all(e)
    right = budget if censored or not times else min(budget, 1.3 * max(times))
    axes[1].set(xlabel="training step" + ("" if right == budget else f" (every run grokked; budget {budget:,})"),
                ylabel="share of seeds grokked", ylim=(-0.03, 1.03), xlim=(0, right),
                title=f"Kaplan-Meier at the best strengths, {len(own.design.seeds)} seed(s)")
    fig.legend(loc="outside lower center", ncol=2)
    return fig
