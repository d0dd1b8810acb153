"""Training trajectories of the seed model (notebooks 01, 02).

* ``snapshot_run(cfg, every)``: re-runs the training loop (``lrdlib.training.run``, through its probe hook) (same pieces,
  same batches, so the same trajectory as ``train(cfg)``) and keeps the target matrices and
  their task gradients every ``every`` steps; cached next to the run cache.
* ``trajectory_split(snap, ...)``: radial and tangential norms, at each snapshot, of the task
  gradient, of the L2 direction W, of the LRD direction NS(W) and of the exact U Vᵀ.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from .config import RunConfig
from .newton_schulz import newton_schulz
from .paths import cache_dir
from .polar_geometry import radial_tangential_norms
from .spectral import fro, polar


def _snapshot_path(cfg: RunConfig, every: int) -> Path:
    return cache_dir() / f"{cfg.key()}.snapshots-{every}.pt"


def snapshot_run(cfg: RunConfig, every: int, use_cache: bool = True) -> dict:
    """The training trajectory of ``cfg`` (``lrdlib.training.run`` with a probe hook: the same
    loop, hence the same trajectory as ``train(cfg)`` on the same device), keeping the target
    matrices every ``every`` steps.

    Returns {"names", "steps": [s, ...], "W": (S, K, m, n) float32 (the targets *before*
    step s, i.e. after s − 1 steps), "G": (S, K, m, n) the task gradient of step s's minibatch
    at those weights, "W_final": (K, m, n) the targets after the last step}.
    Cached in the run cache folder as ``<key>.snapshots-<every>.pt``.
    """
    from .cache import atomic_write
    from .training import run  # late: training imports this package's modules

    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"every={every!r} must be a positive integer")
    path = _snapshot_path(cfg, every)
    if use_cache and path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - unreadable (not written by us): recompute
            pass
    steps, Ws, Gs = [], [], []

    def keep(step, probe) -> None:
        steps.append(step)
        Ws.append(probe.W0.float().cpu())
        Gs.append(probe.G.float().cpu())

    rec, state = run(cfg, probe_every=every, on_probe=keep)
    out = {"names": rec["targets"], "steps": steps,
           "W": torch.stack(Ws) if Ws else torch.empty(0), "G": torch.stack(Gs) if Gs else torch.empty(0),
           "W_final": torch.stack([state[n].float().cpu() for n in rec["targets"]])}
    if use_cache:
        atomic_write(path, lambda t: torch.save(out, t))
    return out


def snapshot_record_mismatch(snap: dict, record: dict) -> tuple[float, int]:
    """(largest relative difference, number of comparisons) between the task gradient's
    radial and tangential norms computed from ``snap`` and those in a ``train`` record of the
    same run, at the steps both have: a check that the snapshots lie on the recorded trajectory."""
    tang = record["tangential"]
    pos = {s: j for j, s in enumerate(tang["step"])}
    worst, n = 0.0, 0
    for i, s in enumerate(snap["steps"]):
        if s not in pos:
            continue
        r, t = radial_tangential_norms(snap["G"][i].double(), snap["W"][i].double())
        for k, name in enumerate(snap["names"]):
            ref_t = tang[name]["grad_tan"][pos[s]]
            ref_r = tang[name]["grad_rad"][pos[s]]
            worst = max(worst, abs(float(t[k]) - ref_t) / abs(ref_t), abs(float(r[k]) - ref_r) / abs(ref_t))
            n += 1
    return worst, n


def trajectory_split(snap: dict, ns_steps: int = 5, ns_poly: str = "cubic") -> pd.DataFrame:
    """Tidy frame: step, matrix, direction, radial (signed ⟨D, W⟩/‖W‖_F), tangential ‖T‖_F,
    norm ‖D‖_F and tan_share ‖T‖_F/‖D‖_F for the directions, at each snapshot W:

        task gradient   G (the minibatch gradient at W)
        L2              W            (the direction of weight decay; L2's step is λ·lr·W)
        LRD (NS)        NS(W)        (seed: 5 cubic steps; LRD's step is α·NS(W))
        exact U Vᵀ      polar(W)

    computed in float64. The directions are unit-free; multiply by the step sizes for the
    per-step displacement.
    """
    rows = []
    W = snap["W"].double()
    G = snap["G"].double()
    dirs = {"task gradient": G, "L2 (W)": W, "LRD (NS(W))": newton_schulz(W, ns_steps, ns_poly),
            "exact U Vᵀ": polar(W)}
    for label, D in dirs.items():
        r, t = radial_tangential_norms(D, W)
        n = fro(D)
        for i, s in enumerate(snap["steps"]):
            for k, name in enumerate(snap["names"]):
                rows.append({"step": s, "matrix": name, "direction": label, "radial": float(r[i, k]),
                             "tangential": float(t[i, k]), "norm": float(n[i, k]),
                             "tan_share": float(t[i, k] / n[i, k])})
    return pd.DataFrame(rows)
