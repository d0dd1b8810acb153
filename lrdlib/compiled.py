"""``torch.compile`` for the training step: the same maths through inductor's fused kernels.

What it buys (``benchmarks/step_time.py`` measures it): the seed step has ~600 small ops,
most of them memory-bound elementwise passes and norm reductions on (B·T, d) activations.
Inductor fuses them into a few dozen C++ loops and removes most of the per-op Python and
dispatch cost; the matrix products stay the same BLAS calls. The rounding changes (fused
loops sum in a different order), so a compiled run has its own history: ``RunConfig.compile``
is part of the cache key, and a compiled run is as deterministic as an eager one (the
row-gather backward stays ATen's deterministic kernel, ``lrdlib.fused.gather_rows``).

Costs: a C++ compiler on CPU, and ~20-30 s of compilation the first time a process meets a
(model shape, batch size); inductor keeps the result on disk, so later processes start in a
few seconds. Only full batches are compiled: an epoch's shorter last batch runs eagerly
(same maths) instead of triggering a second compilation for each train fraction.
"""
from __future__ import annotations

import shutil

import torch


def check_compiler(device: torch.device | str) -> None:
    """Raise a clear error if inductor cannot build CPU kernels here (no C++ compiler)."""
    if torch.device(device).type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise ValueError("compile=True on device='cpu' needs a C++ compiler (g++ or clang++) for torch.compile; "
                         "none is on PATH: install one (apt install g++) or use compile=False")


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model's forward compiled for training (static shapes, one graph, no graph breaks).
    Shares the parameters with ``model``; call it exactly like ``model``."""
    check_compiler(next(model.parameters()).device)
    return torch.compile(model, dynamic=False, fullgraph=True)
