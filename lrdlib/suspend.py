"""A run suspended at a sitting's deadline and resumed in the next, with the same history.

A sitting (``lrdlib.chunks``: ``make paper-runs HOURS=2``) used to start a run only if its whole
budget fitted before the deadline, so each worker idled for up to one run's length at the end of
every sitting, and a run still going when a GPU call ended was lost. Now, in a sitting,
``train(cfg)`` hands the training loop a ``Suspension``: at an evaluation step after which the
next ``eval_every`` steps would end past the deadline, the loop writes its whole state to
``<cache>/suspended/<key>.pt`` and raises ``Suspended``:

* the model's parameters and every optimiser's state (AdamW's moments, Muon's and Luon's momentum),
* the batch sampler (its generator's state, the epoch's permutation and the position in it),
* the history, spectra and tangential series so far, the angle meter (its sums and total angle),
  the steps done and the training time spent.

The next ``train(cfg)`` that finds the file (the next sitting) loads it and goes on from that
step. The record is the one an uninterrupted run gives, bit for bit (``tests/test_suspend.py``),
with one more field, ``resumed_at``: the steps at which it was resumed. The state is used only
where it was written (same processor, device, torch version and thread count: what sets the
rounding, ``where``); anywhere else it is discarded and the run starts over, so a record never
mixes two machines' arithmetic. Runs whose decay keeps state of its own
(``Decay.resumable = False``: the adaptive rank controller) are never suspended; they start only
when their whole budget fits, as before. ``$LRD_SUSPEND=0`` turns suspension off (``enabled``):
for a machine whose build folder will not outlive the sitting (a lent GPU,
``benchmarks/gpu_sitting.sh``), where a suspended state could never be resumed.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .cache import atomic_write
from .config import RunConfig
from .machine import processor

FOLDER = "suspended"


class Suspended(RuntimeError):
    """A run stopped at a deadline with its state saved (``Suspension.path``); the next
    ``train(cfg)`` resumes it. (Deliberately not a ``chunks.DeadlineReached``: a sweep counts a
    suspended run among the runs left, and reports them once.)"""

    def __init__(self, key: str, step: int, steps: int, path: Path):
        super().__init__(f"run {key} suspended at step {step} of {steps} (state in {path}); "
                         "the next sitting resumes it")
        self.key, self.step, self.steps, self.path = key, step, steps, path


@dataclass(frozen=True)
class Suspension:
    """Where a run's state goes (``path``) and when it must stop (``deadline``, seconds since the
    epoch). ``margin``: the next interval's estimated time is multiplied by it before comparing
    with the time left (its estimate: this segment's seconds per step so far)."""

    path: Path
    deadline: float
    margin: float = 1.5

    def due(self, now: float, seconds_per_step: float, eval_every: int) -> bool:
        """Whether the next ``eval_every`` steps would end past the deadline."""
        return now + self.margin * seconds_per_step * eval_every > self.deadline


def enabled() -> bool:
    """Whether runs may be suspended here: ``$LRD_SUSPEND`` unset or ``1``; ``0`` turns it off."""
    v = os.environ.get("LRD_SUSPEND", "1")
    if v not in ("0", "1"):
        raise ValueError(f"$LRD_SUSPEND={v!r}: expected 1 (suspend runs at a sitting's deadline, the default) or 0 (never)")
    return v == "1"


def state_path(root: str | Path, cfg: RunConfig) -> Path:
    """``<root>/suspended/<key>.pt``: the suspended state of ``cfg`` under a run cache's folder."""
    return Path(root) / FOLDER / f"{cfg.key()}.pt"


def resumable(cfg: RunConfig) -> bool:
    """Whether ``cfg`` can be suspended here and resumed exactly: suspension is ``enabled`` and the
    run's decay keeps no state of its own."""
    from .decay import decay_class

    cls = decay_class(cfg.decay.kind)
    return enabled() and (cls is None or cls.resumable)


def where(device: torch.device) -> dict:
    """What must match for a saved state to be resumed here: the processor (CPU model or GPU), the
    device type, torch's version and its thread count (all change the rounding)."""
    return {"processor": processor(device), "device": device.type, "torch": str(torch.__version__),
            "threads": torch.get_num_threads()}


def save(path: Path, state: dict) -> None:
    """Write ``state`` atomically (a kill during the write leaves the previous file or none)."""
    atomic_write(path, lambda t: torch.save(state, t))


def load(path: Path, cfg: RunConfig, device: torch.device) -> dict | None:
    """The saved state of ``cfg`` at ``path``, if it exists, is readable, belongs to this config and
    was written on this machine (``where``); otherwise None (and an unusable file is removed)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)   # moved to ``device`` by the loader
    except Exception as e:  # noqa: BLE001 - truncated or not a torch file: start over
        state, why = None, f"unreadable ({type(e).__name__})"
    else:
        why = ("not a saved state" if not isinstance(state, dict) else
               f"the state of run {state.get('key')}" if state.get("key") != cfg.key() else
               f"written on {state.get('where')}, not here ({where(device)})" if state.get("where") != where(device)
               else None)
    if why is not None:
        warnings.warn(f"run {cfg.key()}: the suspended state {path} is {why}; the run starts over", stacklevel=2)
        path.unlink(missing_ok=True)
        return None
    return state


def started(root: str | Path, configs) -> set[str]:
    """The keys of ``configs`` that have a suspended state under ``root`` (resume these first)."""
    folder = Path(root) / FOLDER
    if not folder.is_dir():
        return set()
    have = {p.stem for p in folder.glob("*.pt")}
    return {c.key() for c in configs if c.key() in have}
