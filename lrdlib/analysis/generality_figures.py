"""The generality study's figure (notebook 10): the ratio best LRD / tuned L2 against each axis.

``ratio_by_axis(tab)`` draws ``lrdlib.analysis.generality.table``: one panel per axis (modulus p,
width, depth, learning rate × , batch, task), the seed setting in every panel, each setting's
ratio of KM medians (stable grok) with its paired bootstrap 95 % interval on a log scale.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullLocator

from lrdlib.analysis.figures import MIN_FONT_PT, figure
from lrdlib.analysis.generality import OUT_OF_RANGE_P
from lrdlib.core.recipes import SEED_SETTING

AXES = {"p": "modulus p", "width": "width", "depth": "depth", "lr_scale": "learning rate ×", "batch": "batch",
        "op": "task"}
SEED_VALUE = {"p": SEED_SETTING.p, "width": SEED_SETTING.width, "depth": SEED_SETTING.depth,
              "lr_scale": SEED_SETTING.lr_scale, "batch": SEED_SETTING.batch, "op": SEED_SETTING.op}


def _tick(axis: str, v) -> str:
    if axis == "lr_scale":
        return f"1/{round(1 / v)}" if v < 1 else f"{v:g}"
    return str(v)


def ratio_by_axis(tab: pd.DataFrame, prediction: dict | None = None, ylim: tuple[float, float] = (1 / 8, 8)) -> plt.Figure:
    """One panel per axis of ``AXES``: per value (the seed setting's included) the ratio with its
    interval, a bound beyond ``ylim`` drawn to the edge and a ratio beyond it (0 or ∞) as a
    triangle on the edge; filled where the interval excludes 1; the
    out-of-range step p = 401 in red, and beside it in grey the fit's ``prediction`` there
    (``scaling_statement(tab)["p"]``) when it has one. A panel whose axis has no complete setting
    yet says so."""
    fig, axes = figure("full", 4.2, nrows=2, ncols=3)
    seed = tab[tab.axis == "seed"] if len(tab) else tab
    for ax, (axis, title) in zip(np.ravel(axes), AXES.items()):
        g = pd.concat([seed.assign(value=SEED_VALUE[axis]), tab[tab.axis == axis]]) if len(tab) else tab
        values = [] if not len(g) else list(dict.fromkeys(g.value)) if axis == "op" else sorted(set(g.value))   # op: add first
        for i, v in enumerate(values):
            r = g[g.value == v].iloc[0]
            y, lo, hi = float(r.ratio), float(r.lo), float(r.hi)
            if np.isnan(y):
                ax.annotate("no ratio", (i, 1), ha="center", va="center", fontsize=MIN_FONT_PT)
                continue
            c = "C3" if axis == "p" and v == OUT_OF_RANGE_P else "C0"
            ax.vlines(i, np.clip(lo, *ylim), np.clip(np.nan_to_num(hi, nan=ylim[1]), *ylim), color=c, lw=1)
            filled = hi < 1 or lo > 1
            # a ratio off the scale (0 or ∞: a median beyond the runs) sits on the edge as a triangle
            marker = "v" if y < ylim[0] else "^" if y > ylim[1] else "o"
            ax.scatter([i], [np.clip(y, *ylim)], marker=marker, s=20, zorder=3, color=c if filled else "white",
                       edgecolor=c, clip_on=False)
        if axis == "p" and prediction and np.isfinite(prediction.get("predicted", np.nan)):
            i = values.index(OUT_OF_RANGE_P) + 0.2 if OUT_OF_RANGE_P in values else len(values)
            ax.vlines(i, *np.clip([prediction["pred_lo"], prediction["pred_hi"]], *ylim), color="0.5", lw=1)
            ax.scatter([i], [prediction["predicted"]], marker="x", s=20, color="0.5", zorder=3)
            ax.annotate("fit's\nprediction", (i, prediction["pred_hi"]), fontsize=MIN_FONT_PT, color="0.4",
                        ha="center", va="bottom")
            if OUT_OF_RANGE_P not in values:
                values.append(OUT_OF_RANGE_P)
        for v, ls in ((1, "-"), (1 / 2, "--"), (1 / 3, ":")):
            ax.axhline(v, color="0.5", lw=0.8, ls=ls, zorder=0)
        ax.set_yscale("log")
        ax.set_ylim(*ylim)
        ticks = [v for v in (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8) if ylim[0] <= v <= ylim[1]]
        ax.set_yticks(ticks, [f"1/{round(1 / v)}" if v < 1 else f"{v:g}" for v in ticks])
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xticks(range(len(values)), [_tick(axis, v) for v in values])
        ax.set_xlim(-0.5, max(len(values), 1) - 0.5)
        ax.set_title(title, fontsize="medium")
        if len(values) < 2:
            ax.text(0.5, 0.85, "no setting on this axis yet", ha="center", va="center", transform=ax.transAxes)
    for ax in np.ravel(axes)[::3]:
        ax.set_ylabel("LRD / tuned L2")
    return fig
