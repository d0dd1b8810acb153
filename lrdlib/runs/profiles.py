"""Execution profiles shared by every notebook (papermill parameter ``profile``):

* ``smoke``: half a minute to two minutes per notebook on a 2-core CPU, every code path once at
  the full model size (the test suite runs these);
* ``quick``: every qualitative result visible, 20-45 minutes per notebook on a 2-core CPU, a few
  hours for the collection (README);
* ``paper``: the full figures (≥ 3-5 seeds, full grids and budgets).
"""
from __future__ import annotations

from typing import TypeVar

import torch

from lrdlib.core.config import seed_config
from lrdlib.runs.cache import RunCache
from lrdlib.runs.paths import env_dir
from lrdlib.runs.store import ResultStore

PROFILES = ("smoke", "quick", "paper")
T = TypeVar("T")


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r}; valid: {', '.join(PROFILES)}")
    return profile


def pick(profile: str, *, smoke: T, quick: T, paper: T) -> T:
    """The value for ``profile``: ``pick(profile, smoke=1, quick=3, paper=5)``."""
    return {"smoke": smoke, "quick": quick, "paper": paper}[check_profile(profile)]


def run_cache(profile: str):
    """The run cache a notebook uses at ``profile``: at ``paper``, or wherever ``$LRD_STORE_DIR`` is
    set, backed by a results store (read first, every run trained is added to it); otherwise the
    build folder's cache only. To train the paper profile from scratch, point ``$LRD_STORE_DIR`` at
    an empty folder."""

    store = check_profile(profile) == "paper" or env_dir("LRD_STORE_DIR") is not None
    return RunCache(store=ResultStore() if store else None)


def check_device(device: str) -> str:
    """``device`` if this machine can run on it, else a ValueError that says what would be valid
    (and, for ``cuda`` without a CUDA build of torch, how to get one)."""
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available here (torch {torch.__version__}); valid here: cpu "
                             "(on a machine with a GPU, `make venv TORCH=cuda` installs a CUDA build of torch)")
        return device
    raise ValueError(f"device={device!r}; valid: cpu, cuda")


# ---------------------------------------------------------------- the seed runs shared by 01, 02, 03
# Notebooks 01, 02 and 03 train the same seed-setting runs; building them here gives one config,
# hence one cache entry: whichever notebook runs first trains a run, the others read it.
SEED_RUN_ARMS = {  # arm label -> (method preset, strength): the seeds' settings, plus L2 at its own stronger decay
    "L2 (seed, wd 0.1)": ("L2", 0.1),
    "L2 (wd 1.0)": ("L2", 1.0),
    "LRD (seed, α 0.005)": ("LRD", 0.005),
    "Luon (seed, λ 0.5)": ("Luon", 0.5),
}
SEED_RUN_TRAIN_FRAC = 0.5


def grok_budget(profile: str) -> dict:
    """The run budget of the comparisons that measure steps-to-grok (the verdict table of 04, the
    mechanism design of 07): ``RunConfig`` keyword arguments. Runs stop once grokked, and a grok
    counts only if validation accuracy holds ≥ 0.99 for ``grok_hold`` steps (a collapse within
    that window is not a grok). Shared, so the same arm in two chapters is one run."""
    return {"steps": pick(profile, smoke=80, quick=2500, paper=20000),
            "eval_every": pick(profile, smoke=20, quick=100, paper=100),
            "early_stop": True,
            "grok_hold": pick(profile, smoke=20, quick=300, paper=1000)}


def seed_run_budget(profile: str) -> dict:
    """Seeds, steps and evaluation interval of the seed runs at ``profile``."""
    # paper: 10 seeds, so the seed-to-seed spread of steps-to-grok is measured (issue: seed sensitivity)
    return {"seeds": pick(profile, smoke=[0], quick=[0, 1], paper=list(range(10))),
            "steps": pick(profile, smoke=150, quick=2500, paper=4000),
            "eval_every": pick(profile, smoke=50, quick=100, paper=50)}


def seed_runs(profile: str, device: str = "cpu", arms: list[str] | None = None) -> dict[str, list]:
    """``{arm label: [RunConfig per seed]}`` for the seed runs at ``profile`` (``SEED_RUN_ARMS``,
    train fraction ``SEED_RUN_TRAIN_FRAC``, ``seed_run_budget(profile)``); ``arms`` selects labels."""

    b = seed_run_budget(profile)
    arms = list(SEED_RUN_ARMS) if arms is None else list(arms)
    unknown = [a for a in arms if a not in SEED_RUN_ARMS]
    if unknown:
        raise ValueError(f"arms {unknown} unknown; valid: {', '.join(SEED_RUN_ARMS)}")
    return {arm: [seed_config(*SEED_RUN_ARMS[arm], train_frac=SEED_RUN_TRAIN_FRAC, seed=s, steps=b["steps"],
                              eval_every=b["eval_every"], device=device) for s in b["seeds"]]
            for arm in arms}
