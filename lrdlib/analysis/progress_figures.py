"""Figures of the effective-learning-rate chapter (notebook 07) and of the progress-measures,
tasks and resizing chapter (notebook 08): one function per figure, each returning it (the
notebook saves it with ``lrdlib.analysis.figures.save_figure``).

* 07: ``plot_explanations`` (steps to grok against each candidate explanation),
  ``plot_angular_rate`` (angle per step and ‖W_QK‖_F of the seed runs), ``plot_luon_lambda``
  (λ‖W‖/‖G‖ and the angle per step of Luon's seed runs), ``plot_moonshot`` (Spearman ρ of
  steps-to-grok with every measured quantity, over every comparable run in the store).
* 08: ``plot_tasks`` (Kaplan-Meier median steps and final Q/K stable rank per task),
  ``plot_progress`` (the Fourier progress measures over training), ``plot_spectrum`` (the final
  embedding spectrum), ``plot_resize`` (the loss on both sides of every resize).
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from lrdlib.analysis.figures import arm_styles, figure, method_of, outcome_marker_kw, plot_spread
from lrdlib.analysis.mechanism import CANDIDATES
from lrdlib.runs.store import spectra_steps

# ---------------------------------------------------------------- 07
TREATMENTS = ("L2", "LRD", "LRD radial", "fixed norm", "Q/K lr")   # the Q/K treatments of the factorial, in legend order


def plot_explanations(runs: pd.DataFrame, corr: dict, budget: int, home_wd: float) -> plt.Figure:
    """Steps to grok against each candidate explanation (``CANDIDATES``, one column each), one
    row per train fraction of ``corr`` (``{frac: lrdlib.analysis.mechanism.rank_correlations}``;
    Spearman ρ in the titles). One point per run of ``runs`` (columns frac, treatment, other_wd,
    grokked, steps and one per candidate): colour the Q/K treatment, marker the other
    parameters' wd (circle: ``home_wd``, square: L2's best λ); filled when the run grokked,
    hollow at the budget (dashed line) when it did not."""
    colors = {t: s["color"] for t, s in zip(TREATMENTS, arm_styles([*TREATMENTS[:-1], "Q/K lr × k"]).values())}
    fig, axes = figure("full", height=2.3 * len(corr) + 0.5, nrows=len(corr), ncols=len(CANDIDATES), sharey="row",
                       squeeze=False)
    for i, (f, c) in enumerate(corr.items()):
        d = runs[runs.frac == f]
        keys = [d.treatment, np.isclose(d.other_wd, home_wd), d.grokked.astype(bool)]
        for j, (cand, label) in enumerate(CANDIDATES.items()):
            ax = axes[i, j]
            for (t, home, grokked), g in d.groupby(keys, sort=False):
                ax.scatter(g[cand], g.steps, s=22, marker="o" if home else "s", zorder=3,
                           **outcome_marker_kw(bool(grokked), colors[t]))
            ax.axhline(budget, color="0.5", lw=0.8, ls="--")
            rho = c.loc[cand, "rho"]
            ax.set(xscale="log", xlabel=label, title=(f"ρ = {rho:+.2f}" if np.isfinite(rho) else "ρ undefined")
                   + (f" ({f:.0%} data)" if j == 0 else ""))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axes[i, 0].set(ylabel="steps to grok (hollow: > budget)", ylim=(0, budget * 1.08))
    handles = [Line2D([], [], ls="", marker="o", color=colors[t], label=t) for t in TREATMENTS]
    handles += [Line2D([], [], ls="", marker=m, color="0.3", label=lab)
                for m, lab in (("o", f"others wd {home_wd:g}"), ("s", "others wd = L2's best λ"))]
    fig.legend(handles=handles, loc="outside lower center", ncol=4)
    return fig


def plot_angular_rate(per: pd.DataFrame, predicted: dict[str, float], methods: Sequence[str] = ("L2", "LRD", "Luon")) -> plt.Figure:
    """The angle W_Q, W_K turn per step (top) and ‖W_QK‖_F (bottom) over training, one column per
    method, one line per arm of ``predicted`` of that method (``per``: arm, seed, step, angle_step,
    fro; median over seeds, band min–max), and each finite √(2ηλ) of ``predicted`` (dotted)."""
    sty = arm_styles(list(predicted))
    fig, axes = figure("full", height=3.6, nrows=2, ncols=len(methods), sharex=True, sharey="row", squeeze=False)
    for j, m in enumerate(methods):
        arms = [a for a in predicted if method_of(a) == m]
        plot_spread(axes[0, j], per, "angle_step", styles=sty, order=arms)
        plot_spread(axes[1, j], per, "fro", styles=sty, order=arms, label=False)
        for a in arms:
            if np.isfinite(predicted[a]):
                axes[0, j].axhline(predicted[a], color=sty[a]["color"], ls=":", lw=1.2, label=f"{a}: √(2ηλ) = {predicted[a]:.3f}")
        axes[0, j].set(yscale="log", title=m)
        axes[1, j].set(yscale="log", xlabel="training step")
    axes[0, 0].set_ylabel("angle per step (rad)")
    axes[1, 0].set_ylabel(r"$\|W_{QK}\|_F$ (mean of 4)")
    handles, labels = [sum(x, []) for x in zip(*(ax.get_legend_handles_labels() for ax in axes[0]))]
    fig.legend(handles, labels, loc="outside lower center", ncol=3)
    return fig


def plot_luon_lambda(ratios: pd.DataFrame, arm: str) -> plt.Figure:
    """λ‖W‖_F/‖G‖_F (top; dashed: 1, where λW outweighs the task gradient) and the angle per step
    (bottom) of the runs of ``arm`` over training, median over seeds with the band min–max
    (``ratios``: ``lrdlib.analysis.mechanism.luon_lambda_ratio`` frames with arm and seed columns)."""
    sty = arm_styles([arm])
    fig, axes = figure("single", height=3.0, nrows=2, sharex=True)
    plot_spread(axes[0], ratios, "ratio", styles=sty, order=[arm], label=False)
    axes[0].axhline(1, color="0.5", lw=0.8, ls="--")
    plot_spread(axes[1], ratios, "angle_rate", styles=sty, order=[arm], label=False)
    axes[0].set(yscale="log", ylabel=r"$\lambda\|W\|_F\,/\,\|G\|_F$",
                title=f"{arm}, {ratios[ratios.arm == arm].seed.nunique()} seed(s), band min–max")
    axes[1].set(yscale="log", ylabel="angle per step (rad)", xlabel="training step")
    return fig


def plot_moonshot(tables: dict[str, pd.DataFrame], threshold: float) -> plt.Figure:
    """Spearman ρ of steps-to-grok with each measured quantity (rows, labelled), one bar per
    population of ``tables`` (``{name: lrdlib.analysis.mechanism.spearman_table}``, its run count in
    the legend); dashed: ±``threshold``, the |ρ| a quantity that orders steps-to-grok would reach."""
    first = next(iter(tables.values()))
    fig, ax = figure("full", height=0.2 * len(first) + 1.2)
    ys, h = np.arange(len(first)), 0.8 / len(tables)
    for i, (name, t) in enumerate(tables.items()):
        rho = t.reindex(first.index).rho.to_numpy(float)
        ax.barh(ys + (i - (len(tables) - 1) / 2) * h, np.nan_to_num(rho), height=h, label=f"{name} ({int(t.n.max())} runs)")
    for v in (-threshold, threshold):
        ax.axvline(v, color="0.4", ls="--", lw=0.8)
    ax.axvline(0, color="0.2", lw=0.6)
    ax.set(yticks=ys, yticklabels=first.label.tolist(), xlim=(-1, 1), xlabel="Spearman ρ with steps to grok")
    ax.invert_yaxis()
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=len(tables))
    return fig


# ---------------------------------------------------------------- 08
def plot_tasks(table: pd.DataFrame, tasks: Sequence[str], methods: Sequence[str], title: str | None = None) -> plt.Figure:
    """Per task (x) and method (colour), each at its own best strength (``table``: one row per task
    and method with km_median, median_lo, median_hi, budget, qk_srank). Left: the Kaplan-Meier
    median steps to a lasting grok with its bootstrap interval, filled; hollow at the budget when
    the median lies beyond it. Right: the final Q/K stable rank."""
    sty = arm_styles(methods)
    fig, axes = figure("full", height=2.6, ncols=2)
    xs = np.arange(len(tasks))
    for j, m in enumerate(methods):
        d = table[table.method == m].set_index("task").loc[list(tasks)]
        x = xs + (j - (len(methods) - 1) / 2) * 0.2
        med, top = d.km_median.to_numpy(float), d.budget.to_numpy(float)
        ok = np.isfinite(med)
        c, mk = sty[m]["color"], sty[m]["marker"]
        axes[0].vlines(x[ok], d.median_lo.to_numpy(float)[ok], np.minimum(d.median_hi.to_numpy(float), top)[ok], color=c)
        axes[0].scatter(x[ok], med[ok], marker=mk, s=26, zorder=3, **outcome_marker_kw(True, c))
        axes[0].scatter(x[~ok], top[~ok], marker=mk, s=26, zorder=3, **outcome_marker_kw(False, c))
        axes[1].scatter(x, d.qk_srank, marker=mk, color=c, s=26, label=m)
    axes[0].set(yscale="log", ylabel="KM median steps to grok\n(hollow: beyond the budget)")
    axes[1].set(yscale="log", ylabel="final Q/K stable rank")
    for ax in axes:
        ax.set_xticks(xs, list(tasks), rotation=30)
    axes[1].legend()
    if title:
        fig.suptitle(title)
    return fig


LOSSES = {"train_loss": ("train", "-", 0.8), "val_loss": ("validation", "-", 1.6),       # measure -> (label, ls, lw)
          "restricted_loss": ("restricted (val)", "--", 1.4), "excluded_loss": ("excluded (train)", ":", 1.6)}
SHARES = {"gini": ("Gini", "-", 1.4), "key_share": ("key share, embedding", "--", 1.4),
          "logit_key_share": ("key share, logits", ":", 1.8)}
PHASE_LINES = {"memorised": ":", "cleanup": "--", "grokked": "-"}   # phase boundary -> line style


def plot_progress(runs: dict, phases: pd.DataFrame, titles: dict[str, str]) -> plt.Figure:
    """The Fourier progress measures over training, one column per method of ``titles``
    (``{method: panel title}``): top the losses of ``LOSSES`` (log scale), bottom the Gini
    coefficient and key shares of ``SHARES``. ``runs``: ``{(method, seed): (record, progress
    measures or None)}``; a method's first seed drawn full, the others faint. Vertical lines: the
    first seed's phase boundaries in ``phases`` (``lrdlib.analysis.fourier.phase_table``; m dotted,
    u dashed, g solid)."""
    sty = arm_styles(list(titles))
    fig, axes = figure("full", height=3.8, nrows=2, ncols=len(titles), sharex=True, sharey="row", squeeze=False)
    for j, m in enumerate(titles):
        seeds = [s for mm, s in runs if mm == m]
        for s in seeds:
            ms = runs[(m, s)][1]
            if ms is None:
                continue
            for row, measures in ((0, LOSSES), (1, SHARES)):
                for k, (lab, ls, lw) in measures.items():
                    axes[row, j].plot(ms["steps"], ms[k], color=sty[m]["color"], ls=ls, lw=lw,
                                      **({"label": lab} if s == seeds[0] else {"alpha": 0.35}))
        first = phases[(phases.method == m) & (phases.seed == seeds[0])] if len(phases) and seeds else pd.DataFrame()
        for name, ls in PHASE_LINES.items():
            v = float(first[name].iloc[0]) if len(first) else np.nan
            if np.isfinite(v):
                for ax in axes[:, j]:
                    ax.axvline(v, color="0.4", ls=ls, lw=0.8)
        axes[0, j].set(yscale="log", title=titles[m])
        axes[1, j].set(xlabel="training step", ylim=(0, 1))
    axes[0, 0].set_ylabel("loss (nats)")
    axes[1, 0].set_ylabel("Gini / key share")
    keys = [Line2D([], [], color="0.3", ls=ls, lw=lw, label=lab) for q in (LOSSES, SHARES) for lab, ls, lw in q.values()]
    fig.legend(handles=keys, loc="outside lower center", ncol=4)
    return fig


def plot_spectrum(measures: dict, key_ratio: float) -> plt.Figure:
    """‖F_k E‖² per frequency k ≥ 1 of the final embedding, one panel per method of ``measures``
    (``{method: progress measures or None}``): the embedding's key frequencies in the method's
    colour, the others grey; dashed: the key rule's threshold, ``key_ratio`` × the median;
    triangles: the logits' key frequencies (also in the title)."""
    sty = arm_styles(list(measures))
    fig, axes = figure("full", height=2.2, ncols=len(measures), sharey=True, squeeze=False)
    for ax, (m, ms) in zip(axes[0], measures.items()):
        if ms is None:
            continue
        sq = np.asarray(ms["spectrum"][-1][1:]) ** 2
        k = np.arange(1, len(sq) + 1)
        key = np.isin(k, ms["embedding_keys"])
        ax.bar(k[~key], sq[~key], color="0.7", width=1.0)
        ax.bar(k[key], sq[key], color=sty[m]["color"], width=1.0)
        ax.axhline(key_ratio * np.median(sq), color="0.3", ls="--", lw=0.8)
        lk = np.asarray(ms["keys"], int)
        ax.scatter(lk, sq[lk - 1] * 1.6, marker="v", color="k", s=14, zorder=3)
        ax.set(yscale="log", xlabel="frequency k", title=f"{m}: logit keys {ms['keys']}")
    axes[0, 0].set_ylabel("‖F_k E‖²")
    return fig


def plot_resize(records: dict, resizes: pd.DataFrame, adaptive: str) -> plt.Figure:
    """One seed's run with SVD resizing (arm ``adaptive``) and without (``records``: ``{arm:
    record}``). Left: validation loss, and a vertical segment from the loss just before to just
    after each projection (``resizes``: that run's ``lrdlib.analysis.resize.resize_frame`` rows;
    thick: a resize). Right: the mean Q/K rank the controller keeps (steps) and the Q/K stable rank
    of both runs (dashed)."""
    sty = arm_styles(list(records))
    fig, axes = figure("full", height=2.4, ncols=2)
    for arm, rec in records.items():
        if rec.get("status") == "failed":
            continue
        h = rec["history"]
        axes[0].plot(h["step"], h["val_loss"], color=sty[arm]["color"], label=arm)
        sr = np.mean([v["stable_rank"] for v in rec["spectra"].values()], axis=0)
        axes[1].plot(spectra_steps(rec), sr, color=sty[arm]["color"], ls="--", label=f"stable rank, {arm}")
    axes[0].vlines(resizes.step, resizes.val_loss_before, resizes.val_loss_after, color="k",
                   lw=np.where(resizes.resized, 1.6, 0.6))
    axes[1].step(resizes.step, resizes["rank"], where="post", color=sty[adaptive]["color"], label="rank kept by the controller")
    axes[0].set(yscale="log", xlabel="training step", ylabel="validation loss (nats)")
    axes[1].set(yscale="log", xlabel="training step", ylabel="Q/K rank (mean of 4)")
    for ax in axes:
        ax.legend(fontsize=7)
    return fig
