"""Where things go: the repository root, figures/, the build folder and the run cache.

The run cache is ``$LRD_CACHE_DIR`` if set, else ``<repo>/build/cache`` (git-ignored);
outside a checkout, ``~/.cache/lrdlib``.
"""
from __future__ import annotations

import os
from pathlib import Path


def repo_root(start: str | Path | None = None) -> Path | None:
    """The nearest ancestor of ``start`` (default: cwd) holding both lrdlib/ and notebooks/."""
    p = Path(start or Path.cwd()).resolve()
    for d in (p, *p.parents):
        if (d / "lrdlib").is_dir() and (d / "notebooks").is_dir():
            return d
    return None


def cache_dir() -> Path:
    env = os.environ.get("LRD_CACHE_DIR")
    if env:
        return Path(env)
    root = repo_root()
    return root / "build" / "cache" if root else Path.home() / ".cache" / "lrdlib"


def figures_dir() -> Path:
    env = os.environ.get("LRD_FIGURES_DIR")
    if env:
        d = Path(env)
    else:
        root = repo_root()
        d = root / "figures" if root else Path.cwd() / "figures"
    d.mkdir(parents=True, exist_ok=True)
    return d


def results_dir() -> Path:
    """Numbers the notebooks write for the paper (JSON), ``<repo>/build/results``."""
    env = os.environ.get("LRD_RESULTS_DIR")
    root = repo_root()
    d = Path(env) if env else (root / "build" / "results" if root else Path.cwd() / "results")
    d.mkdir(parents=True, exist_ok=True)
    return d
