"""Figures of the grokking-mechanism and phase-diagram chapters (notebooks 03 and 04), and the
tidy frames they draw.

Notebook 03 (the seed runs, ``records`` = ``{arm: [record per seed]}``):

* ``accuracy_figure``, ``grok_outcomes_figure``: validation/training accuracy over training, and
  steps to a lasting grok per run (censored runs hollow at the budget);
* ``rank_figure`` with ``rank_table`` and ``srank_at_grok``: the Q/K stable and entropy rank;
* ``final_spectra`` and ``spectra_figure``: σᵢ/σ₁ of block 0's W_Q, W_K at the end;
* ``attention_frame``, ``attention_figure`` and ``operand_share``: where the ``=`` position looks;
* ``sphere_frame``, ``tangential_figure`` and ``memorisation_table``: scale-free radial/tangential
  measures of the task gradient, the decay and the whole update.

Notebook 04 (the strength search, ``lrdlib.analysis.phase.search_phase``):

* ``phase_diagram``: every strength searched per method and train fraction, its outcome and final
  validation accuracy; ``km_curves``: Kaplan-Meier curves per fraction; ``verdict_figure``: KM
  medians and shares grokked per method against the train fraction.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullLocator
from matplotlib.transforms import blended_transform_factory

from lrdlib.analysis.figures import MIN_FONT_PT, draw_ceiling, figure, plot_grok_outcomes, plot_spread
from lrdlib.analysis.frames import first_step_below, srank_at
from lrdlib.analysis.survival import kaplan_meier, lasting_grok

QK_PROJ = ["layers.0.attn.q_proj.weight", "layers.0.attn.k_proj.weight"]
POSITIONS = ["a", "b", "="]
# log-axis minor labels at 2 and 5 of each decade (20, 50, 200, ...)
LOG_MINOR = FuncFormatter(lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** np.floor(np.log10(v))) in (2, 5) else "")


def _legend_below(fig: plt.Figure, ax: plt.Axes, ncol: int) -> None:
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=ncol)   # off the curves


# ---------------------------------------------------------------- notebook 03
def accuracy_figure(hist: pd.DataFrame, ceiling: float, styles: dict, title: str) -> plt.Figure:
    """Validation (left, with the memorisation + commutativity ``ceiling``) and training accuracy
    (right) over training, median over seeds with the min-max band; ``hist``: ``history_frame``."""
    fig, axes = figure("full", height=2.6, ncols=2, sharey=True)
    plot_spread(axes[0], hist, "val_acc", styles=styles)
    plot_spread(axes[1], hist, "train_acc", styles=styles, label=False)
    draw_ceiling(axes[0], ceiling)
    axes[0].set(xlabel="training step", ylabel="validation accuracy", ylim=(0, 1.02), title=title)
    axes[1].set(xlabel="training step", ylabel="training accuracy", title="training")
    _legend_below(fig, axes[0], 3)
    return fig


def grok_outcomes_figure(records: dict, styles: dict, budget: int, hold: int) -> plt.Figure:
    """Steps to a lasting grok per run, one column per arm; a run that did not grok hollow at the
    ``budget``, labelled with its final validation accuracy (``plot_grok_outcomes``)."""
    runs = pd.DataFrame([{"arm": arm, "steps_to_grok": lasting_grok(r), "final_val_acc": r["final_val_acc"]}
                         for arm, recs in records.items() for r in recs])
    fig, ax = figure("full", height=2.3)
    plot_grok_outcomes(ax, runs, styles=styles, budget=budget)
    ax.set_title(f"steps to a lasting grok (≥ 0.99, never below 0.9 for {hold} steps)\n"
                 f"hollow: not within {budget} steps, labelled with the final validation accuracy")
    return fig


def rank_figure(per_run: pd.DataFrame, styles: dict) -> plt.Figure:
    """Stable rank (left) and entropy rank (right) of the Q/K matrices over training, log scale;
    ``per_run``: arm, seed, step, stable_rank, entropy_rank (the mean of a run's Q/K matrices)."""
    fig, axes = figure("full", height=2.6, ncols=2)
    titles = {"stable_rank": r"stable rank $\|W\|_F^2/\sigma_1^2$", "entropy_rank": r"entropy rank $\exp H(\sigma/\Sigma\sigma)$"}
    for ax, (col, title) in zip(axes, titles.items()):
        plot_spread(ax, per_run, col, styles=styles, label=ax is axes[0])
        ax.set(yscale="log", xlabel="training step", ylabel=f"{col.replace('_', ' ')} (mean of 4 Q/K)", title=title)
    _legend_below(fig, axes[0], 4)
    return fig


def rank_table(per_run: pd.DataFrame, by_step: int = 500, threshold: float = 2.0) -> pd.DataFrame:
    """Per (arm, seed): the stable rank at the first evaluation, its minimum up to ``by_step``,
    the first step below ``threshold``, the minimum and its step, the largest value after it,
    and the final value."""
    rows = []
    for (arm, seed), g in per_run.groupby(["arm", "seed"]):
        g = g.sort_values("step")
        at = g.loc[g.stable_rank.idxmin(), "step"]
        rows.append({"arm": arm, "seed": seed, "srank@0": g.stable_rank.iloc[0],
                     f"srank@≤{by_step} (min)": g[g.step <= by_step].stable_rank.min(),
                     f"first step srank<{threshold:g}": first_step_below(g, "stable_rank", threshold),
                     "min srank": g.stable_rank.min(), "at step": at,
                     "max srank after min": g[g.step >= at].stable_rank.max(), "final srank": g.stable_rank.iloc[-1]})
    return pd.DataFrame(rows).set_index(["arm", "seed"])


def srank_at_grok(records: dict, per_run: pd.DataFrame) -> pd.DataFrame:
    """Per run with a lasting grok: its step, the mean Q/K stable rank there (``srank_at``) and at
    the end of the run."""
    final = per_run.sort_values("step").groupby(["arm", "seed"]).stable_rank.last()
    rows = [{"arm": arm, "seed": r["config"]["seed"], "grok step": g, "srank at grok": srank_at(r, g)[1],
             "final srank": final[(arm, r["config"]["seed"])]}
            for arm, recs in records.items() for r in recs if (g := lasting_grok(r)) is not None]
    return pd.DataFrame(rows, columns=["arm", "seed", "grok step", "srank at grok", "final srank"])


def final_spectra(records: dict, names=QK_PROJ) -> pd.DataFrame:
    """arm, seed, matrix, i, rel = σᵢ/σ₁ of the matrices ``names`` at the end of training."""
    return pd.DataFrame([{"arm": arm, "seed": r["config"]["seed"], "matrix": n, "i": i + 1, "rel": s / sv[0]}
                         for arm, recs in records.items() for r in recs for n in names
                         for sv in [np.asarray(r["final_singular_values"][n])] for i, s in enumerate(sv)])


def spectra_figure(sv: pd.DataFrame, styles: dict, step: int) -> plt.Figure:
    """σᵢ/σ₁ against i per matrix of ``sv`` (``final_spectra``), one panel each, log scale."""
    names = list(dict.fromkeys(sv.matrix))
    fig, axes = figure("full", height=2.5, ncols=len(names), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        plot_spread(ax, sv[sv.matrix == name], "rel", x="i", styles=styles, label=ax is axes[0, 0])
        ax.set(yscale="log", xlabel="singular value index i", title=f"block 0 {name.split('.')[-2]} at step {step}",
               ylim=(1e-4, 1.5))
    axes[0, 0].set_ylabel("σᵢ / σ₁")
    axes[0, 0].legend(loc="lower left")
    return fig


def attention_frame(records: dict) -> pd.DataFrame:
    """arm, seed, layer, head, key (a, b, =), p: the attention from ``=`` at the end of training,
    mean over the validation pairs (``record["final_attention"][block][head][key]``)."""
    return pd.DataFrame([{"arm": arm, "seed": r["config"]["seed"], "layer": layer, "head": h, "key": POSITIONS[k], "p": p}
                         for arm, recs in records.items() for r in recs
                         for layer, heads in enumerate(r["final_attention"]) for h, keys in enumerate(heads)
                         for k, p in enumerate(keys)])


def attention_figure(att: pd.DataFrame, styles: dict) -> plt.Figure:
    """One heat map per arm: block × head against key position, the median over seeds of ``att``."""
    med = att.groupby(["arm", "layer", "head", "key"]).p.median().unstack("key")[POSITIONS]
    arms = list(dict.fromkeys(att.arm))
    fig, axes = figure("full", height=2.4, ncols=len(arms), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], arms):
        m = med.loc[arm]
        im = ax.imshow(m.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(POSITIONS)), [f"key {p}" for p in POSITIONS])
        ax.set_title(arm, color=styles[arm]["color"])
        ax.grid(False)
    axes[0, 0].set_yticks(range(len(m)), [f"block {layer} head {h}" for layer, h in m.index])
    fig.colorbar(im, ax=axes[0].tolist(), label="attention prob. from '=' (mean over val pairs)", shrink=0.9)
    return fig


def operand_share(att: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, seed, layer), mean over heads: the share of ``=``'s attention on the operands,
    P(a) + P(b), and how unevenly it splits, |P(a) − P(b)|."""
    per = att.pivot_table(index=["arm", "seed", "layer", "head"], columns="key", values="p")
    stat = pd.DataFrame({"operand share P(a)+P(b)": per["a"] + per["b"], "|P(a)−P(b)|": (per["a"] - per["b"]).abs()})
    return stat.groupby(["arm", "seed", "layer"]).mean()


def sphere_frame(tang: pd.DataFrame, spec: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, seed, step), mean over the Q/K matrices: ‖W‖_F (``fro``), the task gradient on the
    unit sphere ‖T(G)‖·‖W‖_F (``grad_sphere``), the angular step ‖T(ΔW)‖/‖W‖_F (``angular_step``),
    the decay's tangential share ‖T(D)‖/‖D‖ (``decay_tan_share``) and ‖T(D)‖/‖T(ΔW)‖
    (``decay_over_update``); ``tang``, ``spec``: ``tangential_frame``, ``spectra_frame``."""
    tw = tang.merge(spec[["arm", "seed", "step", "matrix", "fro"]], on=["arm", "seed", "step", "matrix"])
    tw = tw.assign(grad_sphere=tw.grad_tan * tw.fro, angular_step=tw.update_tan / tw.fro,
                   decay_tan_share=tw.decay_tan / np.hypot(tw.decay_tan, tw.decay_rad),
                   decay_over_update=tw.decay_tan / tw.update_tan)
    return tw.groupby(["arm", "seed", "step"], as_index=False).mean(numeric_only=True)


def tangential_figure(tt: pd.DataFrame, styles: dict, decay_arm: str) -> plt.Figure:
    """(a) ‖W‖_F, (b) the task gradient on the unit sphere, (c) the angular step, per arm of ``tt``
    (``sphere_frame``); (d) for ``decay_arm``, the decay's tangential share and its tangential push
    relative to the whole update's."""
    fig, axes = figure("full", height=4.6, nrows=2, ncols=2, sharex=True)
    (a, b), (c, d) = axes
    for ax, col in ((a, "fro"), (b, "grad_sphere"), (c, "angular_step")):
        plot_spread(ax, tt, col, styles=styles, label=ax is a)
        ax.set(yscale="log")
    own = tt[tt.arm == decay_arm]
    for col, label, ls in (("decay_tan_share", "‖T(decay)‖/‖decay‖", "-"), ("decay_over_update", "‖T(decay)‖/‖T(ΔW)‖", "--")):
        name = f"{decay_arm.split()[0]}: {label}"
        plot_spread(d, own.assign(arm=name), col, styles={name: {**styles[decay_arm], "ls": ls}})
    a.set(ylabel=r"$\|W\|_F$ (mean of 4 Q/K)", title="(a) weight norm")
    b.set(ylabel=r"$\|T(G)\|\,\|W\|_F$ (loss per radian)", title="(b) task gradient on the unit sphere")
    c.set(ylabel=r"$\|T(\Delta W)\|/\|W\|_F$ (rad per step)", title="(c) angular step of the whole update", xlabel="training step")
    d.set(yscale="log", ylabel="ratio (dimensionless)", title="(d) LRD decay: tangential share, and vs the update",
          xlabel="training step")
    _legend_below(fig, a, 4)
    d.legend()
    return fig


def memorisation_table(hist: pd.DataFrame, tt: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, seed): the first step at which training accuracy reaches 1.0 (``memorised at``),
    the median task gradient on the unit sphere before and after it, the median angular step
    after it and the median ‖T(decay)‖/‖T(ΔW)‖ after it (NaN where a run never memorised)."""
    rows = []
    for (arm, seed), h in hist.groupby(["arm", "seed"], sort=False):
        mem = h.loc[h.train_acc >= 1.0, "step"]
        t = tt[(tt.arm == arm) & (tt.seed == seed)]
        if not len(mem) or not len(t):
            rows.append({"arm": arm, "seed": seed, "memorised at": np.nan})
            continue
        before, after = t[t.step <= mem.iloc[0]], t[t.step > mem.iloc[0]]
        rows.append({"arm": arm, "seed": seed, "memorised at": mem.iloc[0],
                     "‖T(G)‖·‖W‖ before (median)": before.grad_sphere.median(),
                     "‖T(G)‖·‖W‖ after (median)": after.grad_sphere.median(),
                     "angular step after (rad)": after.angular_step.median(),
                     "decay share of ‖T(ΔW)‖ after": after.decay_over_update.median() if len(after) else np.nan})
    return pd.DataFrame(rows).set_index(["arm", "seed"])


# ---------------------------------------------------------------- notebook 04
def phase_diagram(searched: pd.DataFrame, fracs, styles: dict, symbols: dict, ceiling: dict, budget: int,
                  eval_every: int, title: str = "") -> plt.Figure:
    """The strength search as a phase diagram: one column per method (the keys of ``symbols``),
    strength (log) against train fraction. Top row: a lasting grok filled, coloured by its steps to
    grok; a run that did not grok hollow (a circle: not within ``budget``; a triangle: not within
    its stage-B cap). Bottom row: the final validation accuracy of the same runs, the y labels with
    each fraction's memorisation + commutativity ``ceiling``. A black ring marks the strength of
    the verdict table. ``searched``: ``PhaseSearch.searched_frame`` (method, frac, strength, time,
    event, final_val_acc, capped, table)."""
    methods = list(symbols)
    times = searched.loc[searched.event, "time"]
    norm = LogNorm(vmin=max(eval_every, (times.min() if len(times) else budget) * 0.9), vmax=budget)
    fig, axes = figure("full", height=4.6, nrows=2, ncols=len(methods), squeeze=False, sharey="row")
    ring = {"s": 130, "facecolor": "none", "edgecolor": "k", "linewidth": 1.2, "zorder": 4}
    for j, m in enumerate(methods):
        d = searched[searched.method == m].assign(y=lambda x: x.frac.map({f: i for i, f in enumerate(fracs)}))
        g = d[d.event]
        axes[0, j].scatter(g.strength, g.y, c=g.time, cmap="viridis", norm=norm, s=36, zorder=3)
        for capped, marker in ((False, "o"), (True, "v")):
            c = d[(~d.event) & (d.capped == capped)]
            axes[0, j].scatter(c.strength, c.y, marker=marker, s=36, facecolor="white", edgecolor="0.3", linewidth=1.1, zorder=3)
            c = d[d.capped == capped]
            axes[1, j].scatter(c.strength, c.y, c=c.final_val_acc, cmap="magma", vmin=0, vmax=1, s=36, zorder=3, marker=marker)
        tried = sorted(d.strength.unique())
        for ax in axes[:, j]:
            ax.scatter(d[d.table].strength, d[d.table].y, **ring)
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticks(tried, [f"{v:g}" for v in tried], rotation=60)
            ax.set_ylim(-0.6, len(fracs) - 0.4)
        axes[0, j].set_title(m, color=styles[m]["color"])
        axes[1, j].set_xlabel(f"{m} {symbols[m]}")
    axes[0, 0].set_yticks(range(len(fracs)), [f"{f:g}" for f in fracs])
    axes[0, 0].set_ylabel("train fraction")
    axes[1, 0].set_yticks(range(len(fracs)), [f"{f:g} ({ceiling[f]:.2f})" for f in fracs])
    axes[1, 0].set_ylabel("train fraction (commutativity ceiling)")
    cb = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=axes[0].tolist(), label="steps to grok (seed 0)",
                      fraction=0.03)
    cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    cb.ax.yaxis.set_minor_formatter(LOG_MINOR)
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap="magma"), ax=axes[1].tolist(),
                 label="final validation accuracy", fraction=0.03)
    hollow = {"ls": "", "mfc": "white", "mec": "0.3"}
    fig.legend([Line2D([], [], ls="", marker="o", color=plt.cm.viridis(0.5)), Line2D([], [], marker="o", **hollow),
                Line2D([], [], marker="v", **hollow), Line2D([], [], ls="", marker="o", ms=9, mfc="none", mec="k")],
               ["lasting grok", f"not within {budget} steps", "not within its stage-B cap", "best strength"],
               loc="outside lower center", ncol=4)
    fig.suptitle(title)
    return fig


def km_curves(final: dict, methods, fracs, styles: dict, budget: int) -> plt.Figure:
    """One panel per train fraction: the share of seeds grokked by step t, 1 − S(t) of the
    Kaplan-Meier estimate, per method; a tick at the budget where runs were censored there.
    ``final``: ``{(method, frac): {seed: (time, event)}}``."""
    ncols = min(4, len(fracs))
    nrows = math.ceil(len(fracs) / ncols)
    fig, axes = figure("full", height=1.9 * nrows + 0.5, nrows=nrows, ncols=ncols, squeeze=False, sharex=True, sharey=True)
    for ax, f in zip(axes.flat, fracs):
        for m in methods:
            t, e = zip(*final[(m, f)].values()) if final[(m, f)] else ((), ())
            g, surv = kaplan_meier(t, e)
            ys = 1 - np.r_[1, surv, surv[-1] if len(surv) else 1]
            ax.step(np.r_[0, g, budget], ys, where="post", color=styles[m]["color"], ls=styles[m]["ls"], lw=1.3,
                    label=f"{m} (best strength per fraction)")
            if not all(e):
                ax.plot([budget], [ys[-1]], marker="|", ms=9, mew=1.5, color=styles[m]["color"], ls="")
        ax.set(title=f"train fraction {f:g}", ylim=(-0.03, 1.03))
    for ax in axes.flat[len(fracs):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    for ax in axes[:, 0]:
        ax.set_ylabel("share of seeds grokked")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles + [Line2D([], [], marker="|", ms=9, ls="", color="0.3")], labels + ["censored at the budget"],
               loc="outside lower center", ncol=3)
    fig.suptitle(f"Kaplan-Meier: {max(map(len, final.values()), default=0)} seed(s) per arm, budget {budget} steps")
    return fig


def verdict_figure(table: pd.DataFrame, methods, fracs, styles: dict, budget: int, n_seeds: int) -> plt.Figure:
    """Top: the KM median steps-to-grok per method against the train fraction with its bootstrap
    interval (hollow on a "> budget" line above the budget: beyond it). Bottom: the share of seeds
    grokked, k/n, with its Wilson interval (k/n written out where a run failed). Methods offset
    along x. ``table``: ``PhaseSearch.table`` rows as a frame."""
    top = 2 * budget   # where a median beyond the budget is drawn
    fig, axes = figure("full", height=4.2, nrows=2, sharex=True)
    xs = np.arange(len(fracs))
    for j, m in enumerate(methods):
        d, st = table[table.method == m].set_index("frac").loc[list(fracs)], styles[m]
        x = xs + (j - (len(methods) - 1) / 2) * 0.13
        med = d.km_median.to_numpy(float)
        fin = np.isfinite(med)
        axes[0].vlines(x, np.minimum(d.median_lo.to_numpy(float), top), np.minimum(d.median_hi.to_numpy(float), top),
                       color=st["color"], lw=1.2)
        axes[0].scatter(x[fin], med[fin], color=st["color"], marker=st["marker"], zorder=3)
        axes[0].scatter(x[~fin], np.full((~fin).sum(), top), facecolor="white", edgecolor=st["color"], marker=st["marker"],
                        zorder=3, linewidth=1.2)
        axes[1].vlines(x, d.wilson_lo, d.wilson_hi, color=st["color"], lw=1.2)
        axes[1].scatter(x, d.share, color=st["color"], marker=st["marker"], zorder=3)
        for xi, yi, k, n in zip(x, d.share, d.grokked, d.n):
            if n != n_seeds:   # a failed run: k/n off the axis ticks, so written out
                axes[1].annotate(f"{k}/{n}", (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7, color=st["color"])
    axes[0].axhline(budget, color="0.5", ls="--", lw=0.8)
    axes[0].set(yscale="log", ylim=(None, top * 1.3), ylabel="KM median steps to grok")
    axes[0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}" if v <= budget else ""))
    axes[0].yaxis.set_minor_formatter(FuncFormatter(lambda v, p: LOG_MINOR(v, p) if v <= budget else ""))
    right = blended_transform_factory(axes[0].transAxes, axes[0].transData)   # x in axes fractions, y in steps
    axes[0].text(1.01, budget, "budget", transform=right, va="center", fontsize=7, color="0.4")
    axes[0].text(1.01, top, "> budget", transform=right, va="center", fontsize=7, color="0.4")
    axes[1].axhline(0.5, color="0.5", ls=":", lw=0.8)
    axes[1].set_yticks(np.arange(n_seeds + 1) / n_seeds, [f"{k}/{n_seeds}" for k in range(n_seeds + 1)])
    axes[1].set(ylim=(-0.08, 1.08), ylabel="seeds grokked k/n", xlabel="train fraction", xlim=(-0.5, len(fracs) - 0.5))
    axes[1].set_xticks(xs, [f"{f:g}" for f in fracs])
    handles = [Line2D([], [], ls="", marker=styles[m]["marker"], color=styles[m]["color"], label=m) for m in methods]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(methods))
    fig.suptitle(f"each method at its own best strength per fraction, {n_seeds} seed(s), budget {budget} steps")
    return fig


def protocol_figure(table: pd.DataFrame, fracs, styles: dict, endpoints: Sequence[str] = ("stable", "first", "hold5k"),
                    ylim: tuple[float, float] = (1 / 8, 8)) -> plt.Figure:
    """The protocol's comparison (``lrdlib.analysis.protocol.table``), one panel per endpoint: per
    train fraction (x) and recipe, the ratio of KM medians recipe / tuned L2 (log y) with its paired
    bootstrap 95 % interval, drawn to the panel's edge where a bound lies beyond ``ylim`` (0 or ∞:
    a median beyond the runs in some resamples); filled where the protocol decides (``decision``).
    Where one median lies beyond its runs (ratio 0 or ∞) a triangle marks the bound the runs allow
    (``ratio_bound``): pointing down, the ratio lies below it; up, above. Dashed: 1/2 and 1/3 (the
    protocol's 2× and 3×). A fraction with no ratio (both medians beyond the runs) has a cross on 1
    and a note in the panel; one not yet complete has no marker."""
    fig, axes = figure("full", 1.9 * len(endpoints) + 0.4, nrows=len(endpoints), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, endpoint in zip(axes, endpoints):
        t = table[table.endpoint == endpoint] if len(table) else table
        recipes = list(dict.fromkeys(t.recipe)) if len(t) else []
        no_ratio = False
        for j, r in enumerate(recipes):
            g = t[t.recipe == r]
            x = np.array([list(fracs).index(f) for f in g.frac]) + (j - (len(recipes) - 1) / 2) * 0.09
            y, lo, hi = g.ratio.to_numpy(float), g.lo.to_numpy(float), g.hi.to_numpy(float)
            st, ok = styles[r], np.isfinite(y) & (y > 0)
            ax.vlines(x[ok], np.clip(lo[ok], *ylim), np.clip(np.nan_to_num(hi[ok], nan=ylim[1]), *ylim),
                      color=st["color"], lw=1)
            bound = g.ratio_bound.to_numpy(float) if "ratio_bound" in g else np.full(len(g), np.nan)
            decided = (g.decision != "not decided").to_numpy()
            for one_sided, mk in ((y == 0, "v"), (np.isinf(y), "^")):   # a median beyond its runs: the bound
                for xi, b, d in zip(x[one_sided & np.isfinite(bound)], bound[one_sided & np.isfinite(bound)],
                                    decided[one_sided & np.isfinite(bound)]):
                    ax.scatter([xi], [np.clip(b, *ylim)], marker=mk, s=26, zorder=3, edgecolor=st["color"],
                               facecolor=st["color"] if d else "white")
            ok = ok | np.isfinite(bound)   # a bound is a reading; only "both beyond" gets the note below
            sig = decided & np.isfinite(y) & (y > 0)
            if sig.any():
                ax.scatter(x[sig], y[sig], color=st["color"], marker=st["marker"], s=22, zorder=3, label=r)
            open_ = ~decided & np.isfinite(y) & (y > 0)
            if open_.any():
                ax.scatter(x[open_], y[open_], facecolor="white", edgecolor=st["color"], marker=st["marker"],
                           s=22, zorder=3, label=None if sig.any() else r)
            if (~ok).any():   # both medians beyond the runs: no ratio, a cross on 1 and one note per panel
                ax.scatter(x[~ok], np.ones(int((~ok).sum())), marker="x", s=22, zorder=3, color=st["color"])
                no_ratio = True
        if no_ratio:
            ax.text(0.99, 0.03, "×: no ratio (both medians beyond the runs)", transform=ax.transAxes, ha="right",
                    va="bottom", fontsize=MIN_FONT_PT)
        for v, ls in ((1, "-"), (1 / 2, "--"), (1 / 3, ":")):
            ax.axhline(v, color="0.5", lw=0.8, ls=ls, zorder=0)
        ax.set_yscale("log")
        ax.set_ylim(*ylim)
        ticks = [v for v in (1 / 8, 1 / 4, 1 / 3, 1 / 2, 1, 2, 4, 8) if ylim[0] <= v <= ylim[1]]
        ax.set_yticks(ticks, [f"1/{round(1 / v)}" if v < 1 else f"{v:g}" for v in ticks])
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_ylabel("KM median / tuned L2")
        ax.set_title(f"endpoint '{endpoint}' (filled: decided by the protocol's rule; triangle: a bound)",
                     fontsize="medium")
        if not recipes:
            ax.text(0.5, 0.5, "no fraction has every evaluation run of a recipe and of tuned L2 yet", ha="center",
                    va="center", transform=ax.transAxes)
        elif ax.get_legend_handles_labels()[0]:
            ax.legend(ncol=min(4, len(recipes)), loc="upper left", frameon=False)
    axes[-1].set_xticks(range(len(fracs)), [f"{f:g}" for f in fracs])
    axes[-1].set_xlim(-0.5, len(fracs) - 0.5)
    axes[-1].set_xlabel("train fraction")
    return fig
