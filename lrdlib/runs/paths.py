"""Where things go: the repository root, the run cache, figures and chapter results.

Four environment variables move them (each a folder; a relative one is taken from the
repository root, not from the notebook's working directory):
  ``$LRD_CACHE_DIR``   the run cache: full records, weights, checkpoints (default ``build/cache``);
  ``$LRD_STORE_DIR``   the results store (default ``paper/results/runs``; ``lrdlib.runs.store``);
  ``$LRD_OUTPUT_DIR``  figures and chapter results (default: ``figures/`` and ``build/results``;
                       set: ``<it>/figures`` and ``<it>/results``);
  ``$LRD_WORKERS``     local process-pool workers (``lrdlib.runs.sweep.pool_size``).
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


def env_dir(name: str) -> Path | None:
    """The folder ``$name`` names, relative paths taken from the repository root; None if unset."""
    env = os.environ.get(name)
    if not env:
        return None
    d = Path(env).expanduser()
    root = repo_root() or repo_root(Path(__file__).parent)
    return d if d.is_absolute() or root is None else root / d


def cache_dir() -> Path:
    """``$LRD_CACHE_DIR``, else ``<repo>/build/cache``; outside a checkout ``~/.cache/lrdlib``."""
    root = repo_root()
    return env_dir("LRD_CACHE_DIR") or (root / "build" / "cache" if root else Path.home() / ".cache" / "lrdlib")


def _output(sub: str, default: Path) -> Path:
    out = env_dir("LRD_OUTPUT_DIR")
    d = out / sub if out is not None else default
    d.mkdir(parents=True, exist_ok=True)
    return d


def figures_dir() -> Path:
    root = repo_root()
    return _output("figures", root / "figures" if root else Path.cwd() / "figures")


def results_dir() -> Path:
    """Numbers the notebooks write for the paper (JSON), ``<repo>/build/results``."""
    root = repo_root()
    return _output("results", root / "build" / "results" if root else Path.cwd() / "results")


def benchmark_results(name: str, args: list[str] = (), *, device: str = "cpu", rerun: bool = False,
                      tag: str = "", committed: bool = False) -> dict:
    """The JSON a script of ``benchmarks/`` writes, read through one function.

    Reads ``build/benchmarks/<name><tag>.json`` when it exists, was measured on ``device`` and
    records the same values for every ``--option value`` of ``args`` that it stores (a file
    written by a 3-step smoke run is not taken for a 30-step request). Otherwise, or with
    ``rerun``, runs ``python benchmarks/<name>.py <args> --device <device> --out <that file>``
    in a subprocess (a fresh process: timings not disturbed by the caller's threads or caches)
    and reads what it wrote. ``committed``: the JSON lives in ``paper/results/benchmarks/``
    (committed with the results store, so the paper profile does not re-measure on every machine).
    """
    import json
    import subprocess
    import sys

    root = repo_root()
    script = root / "benchmarks" / f"{name}.py" if root else None
    if script is None or not script.exists():
        raise ValueError(f"benchmark {name!r}: no benchmarks/{name}.py in a checkout of the repository")
    folder = root / "paper" / "results" / "benchmarks" if committed else root / "build" / "benchmarks"
    out = folder / f"{name}{tag}.json"
    if not rerun and out.exists():
        res = json.loads(out.read_text())
        if res.get("device") == device and _same_args(res, list(map(str, args))):
            return res
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(script), *map(str, args), "--device", device, "--out", str(out)]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(out.read_text())


def _same_args(res: dict, args: list[str]) -> bool:
    """Whether every ``--key value`` pair of ``args`` matches ``res[key]`` where the result stores it."""
    for flag, value in zip(args, args[1:]):
        key = flag[2:].replace("-", "_") if flag.startswith("--") else None
        if key and key in res and str(res[key]) != value:
            return False
    return True
