"""Saving figures and the numbers behind them.

``save_figure(fig, name)`` writes ``figures/<name>.pdf`` (for the paper) and ``.png`` (for
reading); ``save_results(name, dict)`` writes ``build/results/<name>.json``, the numbers a
notebook computed, which the paper reads instead of retyping them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.pyplot as plt

from .paths import figures_dir, results_dir

_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


def _check(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"name={name!r}: use letters, digits, '_' and '-' only")


def save_figure(fig: plt.Figure, name: str, dpi: int = 150) -> list[Path]:
    _check(name)
    out = []
    for ext in ("pdf", "png"):
        path = figures_dir() / f"{name}.{ext}"
        fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata=None if ext == "png" else {"CreationDate": None})
        out.append(path)
    return out


def save_results(name: str, results: dict) -> Path:
    _check(name)
    path = results_dir() / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=float))
    return path
