"""Execution profiles shared by every notebook (papermill parameter ``profile``):

* ``smoke``: under a minute per notebook on a 2-core CPU (the test suite runs these);
* ``quick``: the whole collection in about 20 minutes on a 2-core CPU, qualitative results visible;
* ``paper``: the full figures (≥ 3-5 seeds, full grids and budgets).
"""
from __future__ import annotations

from typing import TypeVar

PROFILES = ("smoke", "quick", "paper")
T = TypeVar("T")


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r}; valid: {', '.join(PROFILES)}")
    return profile


def pick(profile: str, *, smoke: T, quick: T, paper: T) -> T:
    """The value for ``profile``: ``pick(profile, smoke=1, quick=3, paper=5)``."""
    return {"smoke": smoke, "quick": quick, "paper": paper}[check_profile(profile)]


def check_device(device: str) -> str:
    import torch

    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available here; valid here: cpu")
        return device
    raise ValueError(f"device={device!r}; valid: cpu, cuda")
