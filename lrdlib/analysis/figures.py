"""One figure style for every chapter, and saving figures with the numbers behind them.

Style (call ``apply_style()`` once per notebook, or just build figures with ``figure``)::

    fig, axes = figure("full", height=2.4, ncols=3)   # 6.8 in wide; "single" = 3.3 in
    sty = arm_styles(ARMS)                             # arm label -> {color, marker, ls}
    plot_spread(axes[0], hist, "val_acc", styles=sty)  # median over seeds + min-max band
    plot_grok_outcomes(axes[1], runs, styles=sty)      # grokked: filled; censored: hollow at the budget
    save_figure(fig, "03_accuracy")

Sizes are print sizes (inches), fonts ≥ ``MIN_FONT_PT`` points at that size. Colours: one per
method (``METHOD_COLORS``, Okabe-Ito, colour-blind safe), the same in every chapter; arms of
one method share its hue and differ in shade, line style and marker.

``save_figure(fig, name, profile=profile)`` writes ``figures/<name>.pdf`` (for the paper) and
``.png`` (for reading) and notes the profile that made it in ``figures/profiles.json``; a figure
made at ``paper`` is never overwritten by a smoke or quick run (those go to
``build/figures/<profile>/``), so ``figures/`` holds the strongest version of every figure and the
manuscript marks the ones not yet made at ``paper``. ``save_results(name, dict)`` writes
``build/results/<name>.json``, the numbers a notebook computed, which the paper reads instead of
retyping them.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import to_hex, to_rgb

from lrdlib.core.training import strict_json
from lrdlib.runs.files import atomic_write
from lrdlib.runs.paths import figures_dir, results_dir
from lrdlib.runs.profiles import check_profile
from lrdlib.runs.store import store_dir

_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")

# ---------------------------------------------------------------- sizes and fonts
WIDTHS = {"single": 3.3, "full": 6.8}  # inches: one column, the full text width
MIN_FONT_PT = 7.0
STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.title_fontsize": 7, "figure.titlesize": 9, "figure.labelsize": 8,
    "axes.grid": True, "grid.color": "0.9", "grid.linewidth": 0.6, "axes.edgecolor": "0.3",
    "axes.linewidth": 0.7, "axes.spines.top": False, "axes.spines.right": False,
    "lines.linewidth": 1.4, "lines.markersize": 4, "legend.frameon": False,
    "figure.dpi": 110, "savefig.dpi": 200, "figure.constrained_layout.use": True,
    "image.cmap": "viridis", "pdf.fonttype": 42,
}

# ---------------------------------------------------------------- colours
METHOD_COLORS = {"L2": "#0072B2", "LRD": "#D55E00", "Luon": "#009E73"}   # blue, vermillion, green
OTHER_COLORS = ("#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B", "#7F7F7F")  # arms of no named method
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
CEILING_STYLE = {"color": "0.2", "ls": ":", "lw": 1.0}


def apply_style() -> None:
    """Set the collection's style for the rest of the session: seaborn's ``paper`` context and
    ``whitegrid`` theme with the print sizes of ``STYLE``, and the method colours first in the
    palette (``palette()``)."""
    sns.set_theme(context="paper", style="whitegrid", palette=palette(), rc=STYLE)


def palette(n: int | None = None) -> list[str]:
    """The collection's categorical palette: the method colours (L2, LRD, Luon), then the
    colours of other arms; ``n`` colours (cycled), or all of them."""
    colors = [*METHOD_COLORS.values(), *OTHER_COLORS]
    return colors if n is None else sns.color_palette(colors, n).as_hex()


def figure(width: str = "single", height: float | None = None, nrows: int = 1, ncols: int = 1,
           **subplots_kw) -> tuple[plt.Figure, np.ndarray | plt.Axes]:
    """A figure at print size: ``width`` ∈ {"single" (3.3 in), "full" (6.8 in)}; ``height`` in
    inches (default: 0.75 × the width of one panel per row, capped at 9 in). Applies the style."""
    if width not in WIDTHS:
        raise ValueError(f"width={width!r}; valid: {', '.join(WIDTHS)}")
    w = WIDTHS[width]
    if height is None:
        height = min(9.0, nrows * 0.75 * w / ncols + 0.3)
    if not height > 0:
        raise ValueError(f"height={height!r} must be a positive number of inches")
    apply_style()
    return plt.subplots(nrows, ncols, figsize=(w, height), **subplots_kw)


def method_of(arm: str) -> str | None:
    """The method an arm label belongs to: its first word if that names a method
    ("LRD (seed, α 0.005)" -> "LRD"), else None."""
    head = re.split(r"[\s(,:·/]", str(arm).strip(), maxsplit=1)[0]
    return head if head in METHOD_COLORS else None


def _shade(color: str, k: int) -> str:
    """The k-th shade of a hue: 0 itself, then darker, lighter, darker still, ..."""
    if k == 0:
        return to_hex(color)
    f = (0.45, 0.4, 0.7, 0.6)[(k - 1) % 4]
    towards = np.zeros(3) if k % 2 else np.ones(3)
    rgb = np.asarray(to_rgb(color))
    return to_hex(rgb + f * (towards - rgb))


def arm_styles(arms: Iterable[str]) -> dict[str, dict]:
    """Per arm label a style ``{"color", "marker", "ls"}``, stable for a given list.

    An arm whose label starts with a method name (``method_of``) gets that method's colour; the
    second, third, ... arm of the same method a darker / lighter shade, another line style and
    marker. Other arms (ablations) get distinct colours from ``OTHER_COLORS`` and distinct markers.
    """
    out, per_method, n_other = {}, {}, 0
    for arm in arms:
        m = method_of(arm)
        if m is not None:
            k = per_method.get(m, 0)
            per_method[m] = k + 1
            out[arm] = {"color": _shade(METHOD_COLORS[m], k), "marker": MARKERS[k % len(MARKERS)],
                        "ls": LINESTYLES[k % len(LINESTYLES)]}
        else:
            k = n_other
            n_other += 1
            base = OTHER_COLORS[k % len(OTHER_COLORS)]
            out[arm] = {"color": _shade(base, k // len(OTHER_COLORS)), "marker": MARKERS[(k + 3) % len(MARKERS)],
                        "ls": LINESTYLES[(k // len(MARKERS)) % len(LINESTYLES)]}
    return out


# ---------------------------------------------------------------- plot helpers
def plot_spread(ax: plt.Axes, df: pd.DataFrame, y: str, *, x: str = "step", hue: str = "arm",
                styles: dict[str, dict] | None = None, order: Sequence[str] | None = None, label: bool = True,
                band_alpha: float = 0.18, **line_kw) -> dict[str, plt.Line2D]:
    """Median over seeds (line) and min–max over seeds (band) of ``y`` against ``x``, per ``hue``.

    ``df``: a tidy frame with columns hue, seed, x, y (one row per run and x). The legend label
    is "<arm> (n = <seeds>)". Line keywords (lw, ls, ...) override the arm's style. Returns the
    median line per arm.
    """
    missing = {hue, "seed", x, y} - set(df.columns)
    if missing:
        raise ValueError(f"plot_spread: df lacks columns {sorted(missing)}; has {list(df.columns)}")
    order = list(order) if order is not None else list(dict.fromkeys(df[hue]))
    styles = styles or arm_styles(order)
    lines = {}
    for arm in order:
        d = df[df[hue] == arm]
        if d.empty:
            continue
        g = d.groupby(x)[y]
        med, lo, hi = g.median(), g.min(), g.max()
        n = d["seed"].nunique()
        st = styles[arm]
        kw = {"color": st["color"], "ls": st.get("ls", "-"), **line_kw}
        (line,) = ax.plot(med.index, med.values, label=f"{arm} (n = {n})" if label else None, **kw)
        if n > 1:
            ax.fill_between(med.index, lo.values, hi.values, color=kw["color"], alpha=band_alpha, lw=0)
        lines[arm] = line
    return lines


def draw_ceiling(ax: plt.Axes, ceiling: float, label: bool = True) -> plt.Line2D:
    """The memorisation + commutativity ceiling of validation accuracy, as a dotted line."""
    return ax.axhline(ceiling, label=f"memorisation + commutativity ({ceiling:.2f})" if label else None,
                      **CEILING_STYLE)


MAX_LABELS = 3   # censored runs per column labelled one by one; more: one label with the range


def plot_grok_outcomes(ax: plt.Axes, runs: pd.DataFrame, *, hue: str = "arm", styles: dict[str, dict] | None = None,
                       order: Sequence[str] | None = None, budget: float | None = None,
                       annotate: bool = True) -> None:
    """Time to grok per run, one column per arm, so that a grok and a failure look different.

    ``runs``: one row per run with columns hue, ``steps_to_grok`` (None/NaN: did not grok) and
    ``final_val_acc``; ``budget`` (default: column ``budget``, else the largest step) is where
    censored runs are drawn. Grokked runs: filled marker at the grokking step. Censored runs:
    hollow marker at the budget with an upward caret (≥ budget), annotated with their final
    validation accuracy (one label with their range when a column has more than ``MAX_LABELS``).
    Tick labels read "<arm>\\nk/n grokked".
    """
    order = list(order) if order is not None else list(dict.fromkeys(runs[hue]))
    styles = styles or arm_styles(order)
    steps = pd.to_numeric(runs["steps_to_grok"], errors="coerce")
    if budget is None:
        budget = float(runs["budget"].max()) if "budget" in runs else float(np.nanmax(steps.to_numpy(), initial=1.0))
    ticks = []
    for i, arm in enumerate(order):
        sel = (runs[hue] == arm).to_numpy()
        s, acc = steps[sel].to_numpy(dtype=float), runs.loc[sel, "final_val_acc"].to_numpy(dtype=float)
        st = styles[arm]
        ok = ~np.isnan(s)
        jit = np.linspace(-0.15, 0.15, len(s)) if len(s) > 1 else np.zeros(len(s))
        ax.scatter(i + jit[ok], s[ok], marker=st["marker"], s=28, color=st["color"], edgecolor=st["color"], zorder=3)
        ax.scatter(i + jit[~ok], np.full((~ok).sum(), budget), marker=st["marker"], s=28, facecolor="white",
                   edgecolor=st["color"], linewidth=1.2, zorder=3)
        if annotate and (~ok).sum() > MAX_LABELS:   # one label for the column: the range of final accuracies
            ax.annotate(f"↑ {np.nanmin(acc[~ok]):.2f}–{np.nanmax(acc[~ok]):.2f}", (i, budget), textcoords="offset points",
                        xytext=(0, 5), ha="center", fontsize=MIN_FONT_PT, color=st["color"])
        elif annotate:
            for xj, a in zip(i + jit[~ok], acc[~ok]):
                ax.annotate(f"↑ {a:.2f}", (xj, budget), textcoords="offset points", xytext=(5, 3),
                            fontsize=MIN_FONT_PT, color=st["color"])
        ticks.append(f"{arm}\n{int(ok.sum())}/{len(s)} grokked")
    ax.axhline(budget, color="0.5", lw=0.8, ls="--")
    ax.set_xticks(range(len(order)), ticks)
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_ylim(0, 1.12 * budget)
    ax.set_ylabel("steps to grok (hollow: not within budget)")


def outcome_marker_kw(grokked: bool, color: str) -> dict:
    """Scatter keywords for one run's outcome: filled if it grokked, hollow if not."""
    return {"color": color, "edgecolor": color} if grokked else {"facecolor": "white", "edgecolor": color,
                                                                 "linewidth": 1.2}


def small_text(fig: plt.Figure, min_pt: float = MIN_FONT_PT) -> list[str]:
    """Visible, non-empty texts of ``fig`` smaller than ``min_pt`` points (at print size)."""
    fig.canvas.draw()
    return [f"{t.get_text()!r} ({t.get_fontsize():.1f} pt)" for t in fig.findobj(mpl.text.Text)
            if t.get_visible() and t.get_text().strip() and t.get_fontsize() < min_pt - 1e-9]


# ---------------------------------------------------------------- saving
def _check(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"name={name!r}: use letters, digits, '_' and '-' only")


PROFILES_FILE = "profiles.json"   # figures/profiles.json: figure name -> the profile that made it


def figure_profiles(folder: Path | None = None) -> dict[str, str]:
    """``{figure name: profile}`` from ``<figures>/profiles.json`` (empty if there is none)."""
    path = (folder or figures_dir()) / PROFILES_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def figure_target(name: str, profile: str | None = None) -> Path:
    """The folder ``save_figure`` writes ``name`` to at ``profile``: ``figures/``, except that a
    figure already made at ``paper`` is kept and a smoke or quick version goes to
    ``build/figures/<profile>/`` instead."""
    if profile is None:
        return figures_dir()
    check_profile(profile)
    if profile != "paper" and figure_profiles().get(name) == "paper":
        d = results_dir().parent / "figures" / profile
        d.mkdir(parents=True, exist_ok=True)
        return d
    return figures_dir()


def save_figure(fig: plt.Figure, name: str, dpi: int = 200, profile: str | None = None) -> list[Path]:
    """Write ``<name>.pdf`` and ``.png`` to ``figure_target(name, profile)``; warn if a text is
    below ``MIN_FONT_PT`` or the figure is wider than the full text width.

    profile: the profile that made the figure (the notebooks pass theirs); recorded in
    ``figures/profiles.json`` when the figure goes to ``figures/``. None: written to ``figures/``,
    nothing recorded."""
    _check(name)
    small = small_text(fig)
    if small:
        warnings.warn(f"figure {name}: {len(small)} text(s) below {MIN_FONT_PT} pt: {small[:5]}", stacklevel=2)
    if fig.get_figwidth() > WIDTHS["full"] + 1e-6:
        warnings.warn(f"figure {name}: {fig.get_figwidth():.1f} in wide, wider than the full width "
                      f"{WIDTHS['full']} in", stacklevel=2)
    folder = figure_target(name, profile)
    if folder != figures_dir():
        print(f"figures/{name} was made at the paper profile and is kept; this {profile} version: {folder}/{name}.pdf")
    out = []
    for ext in ("pdf", "png"):   # each file whole or not at all: a Ctrl-C mid-write leaves the old one
        path = folder / f"{name}.{ext}"
        atomic_write(path, lambda tmp, ext=ext: fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight",
                                                          metadata=None if ext == "png" else {"CreationDate": None}))
        out.append(path)
    if profile is not None and folder == figures_dir():
        made = {**figure_profiles(), name: profile}
        text = json.dumps(dict(sorted(made.items())), indent=1) + "\n"
        atomic_write(folder / PROFILES_FILE, lambda tmp: Path(tmp).write_text(text))
    return out


def _json_number(obj):
    """A number JSON does not know (a 0-d tensor, a numpy array of one element) as a float, or null."""
    v = float(obj)
    return v if np.isfinite(v) else None


SIGNIFICANT = 6   # digits a chapter number keeps: the last digits of a float sum depend on the processor
NOISE = 1e-9      # below this a number is rounding noise (an identity's residual): kept as the power of ten above it


def _rounded(obj):
    """Every float in ``obj`` rounded to ``SIGNIFICANT`` significant digits; one below ``NOISE`` in
    magnitude (rounding noise, whose digits depend on the processor) replaced by the power of ten
    above it, an upper bound that does not."""
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    if not isinstance(obj, float) or not math.isfinite(obj):
        return obj
    if 0 < abs(obj) < NOISE:
        e = math.floor(math.log10(abs(obj)))
        e += 10.0 ** e < abs(obj) * (1 - 1e-9)
        return math.copysign(float(f"1e{e}"), obj)
    return float(f"{obj:.{SIGNIFICANT}g}")


def noise_bound(values, tol: float) -> float:
    """``tol``, after checking that every |v| of ``values`` is at most ``tol``: what a chapter records
    for rounding noise (an identity's residual), whose digits, and even its power of ten and sign,
    differ between processors; the bound does not. A value above ``tol`` is an error, not noise."""
    worst = float(np.max(np.abs(np.asarray(values, dtype=float))))
    if not worst <= tol:
        raise ValueError(f"max |value| {worst:.3g} exceeds the noise tolerance {tol:g}: not rounding noise")
    return float(tol)


def save_results(name: str, results: dict) -> Path:
    """Write ``build/results/<name>.json``; at ``results["profile"] == "paper"`` also the committed
    copy ``paper/results/chapters/<name>.json`` that the manuscript's macros are made from.

    Strict JSON: a non-finite number (a Kaplan-Meier median beyond the budget, ``inf``; a quantity
    undefined for an arm, ``nan``) is written as ``null``, which every JSON reader accepts and the
    manuscript's macros print through their ``if_null`` text; numpy scalars and 0-d tensors as
    numbers; every float rounded to ``SIGNIFICANT`` digits, so that the file does not change with
    the processor's last-digit rounding."""
    _check(name)
    text = json.dumps(_rounded(strict_json(results)), indent=2, allow_nan=False, default=_json_number)
    path = results_dir() / f"{name}.json"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    if results.get("profile") == "paper":
        chapter = store_dir().parent / "chapters" / f"{name}.json"
        atomic_write(chapter, lambda tmp: Path(tmp).write_text(text + "\n"))
    return path
