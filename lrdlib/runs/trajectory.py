"""Training trajectories of the seed model (notebooks 01, 02).

* ``snapshot_run(cfg, every)``: re-runs the training loop (``lrdlib.core.training.run``, through
  its probe hook: same pieces, same batches, so the same trajectory as ``train(cfg)``) and keeps
  the target matrices and their task gradients every ``every`` steps;
  ``trajectory_measures`` keeps what notebook 01 computes from them, in the results store.
* ``trajectory_split(snap, ...)``: radial and tangential norms, at each snapshot, of the task
  gradient, of the L2 direction W, of the LRD direction NS(W) and of the exact U Vᵀ;
  ``share_table``, ``split_checks`` and ``decay_displacements`` summarise it.
* ``record_tangential(record)``: the radial/tangential norms a training record keeps, mean over
  the target matrices.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lrdlib.core.config import RunConfig
from lrdlib.core.machine import processor
from lrdlib.core.newton_schulz import newton_schulz
from lrdlib.core.polar_geometry import polar_tangential_share, radial_tangential_norms
from lrdlib.core.spectral import fro, polar
from lrdlib.core.training import run
from lrdlib.runs.cache import RunCache
from lrdlib.runs.checkpoints import measure_along


class Snapshots:
    """A probe hook of ``lrdlib.core.training.run`` that keeps, every few steps, the target
    matrices W before the step and the task gradient G of the step's minibatch at them."""

    def __init__(self):
        self.steps, self.W, self.G = [], [], []

    def __call__(self, step, probe) -> None:
        self.steps.append(step)
        self.W.append(probe.W0.float().cpu())
        self.G.append(probe.G.float().cpu())

    def snapshot(self, record: dict, state: dict | None = None) -> dict:
        out = {"names": record["targets"], "steps": self.steps,
               "W": torch.stack(self.W) if self.W else torch.empty(0),
               "G": torch.stack(self.G) if self.G else torch.empty(0)}
        if state is not None:
            out["W_final"] = torch.stack([state[n].float().cpu() for n in record["targets"]])
        return out


def snapshot_run(cfg: RunConfig, every: int) -> dict:
    """The training trajectory of ``cfg`` (``lrdlib.core.training.run`` with a probe hook: the same
    loop, hence the same trajectory as ``train(cfg)`` on the same device), keeping the target
    matrices every ``every`` steps.

    Returns {"names", "steps": [s, ...], "W": (S, K, m, n) float32 (the targets *before*
    step s, i.e. after s − 1 steps), "G": (S, K, m, n) the task gradient of step s's minibatch
    at those weights, "W_final": (K, m, n) the targets after the last step}.
    """
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"every={every!r} must be a positive integer")
    keep = Snapshots()
    rec, state = run(cfg, probe_every=every, on_probe=keep)
    return keep.snapshot(rec, state)


def trajectory_measures(cfg: RunConfig, every: int, record: dict, cache: RunCache | None = None) -> dict:
    """The trajectory of ``cfg`` every ``every`` steps as data, taken once and kept (at
    ``PROFILE=paper`` in the results store's ``measures/``, so that a fresh clone on any processor
    reads the same numbers instead of retraining): {"steps", "split" (the rows of
    ``trajectory_split``), "checks" (``split_checks``), "mismatch", "compared"
    (``snapshot_record_mismatch`` against ``record``, the full run of which ``cfg`` is the
    beginning), "processor" (what computed them)}."""

    def measure(_cfg):
        keep = Snapshots()

        def result(rec):
            snap = keep.snapshot(rec)
            split = trajectory_split(snap)
            checks = split_checks(snap, split)
            mismatch, n = snapshot_record_mismatch(snap, record)
            return {"steps": snap["steps"], "split": split.to_dict(orient="records"),
                    "checks": {**checks, "ns_over_polar": checks["ns_over_polar"].tolist()},
                    "mismatch": mismatch, "compared": n, "processor": processor(cfg.device)}
        keep.result = result
        return keep
    return measure_along(cfg, every, measure, "trajectory", cache=cache, hook=True)[1]


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


def share_table(split: pd.DataFrame) -> pd.DataFrame:
    """Tangential share per (direction, step) of a ``trajectory_split``: mean, min, max over the matrices."""
    return split.groupby(["direction", "step"]).tan_share.agg(["mean", "min", "max"])


def _per_matrix(split: pd.DataFrame, direction: str, names: list[str]) -> pd.DataFrame:
    return split[split.direction == direction].pivot(index="step", columns="matrix", values="tan_share")[names]


def split_checks(snap: dict, split: pd.DataFrame) -> dict:
    """The numbers a ``trajectory_split`` of ``snap`` is checked by, over all snapshots and matrices:

    grad_radial_share_max    max |radial|/‖G‖ of the task gradient (Euler: 0)
    l2_tangential_share_max  max tangential share of W (0 by definition)
    polar_closed_form_err    max |measured − ``polar_tangential_share``| for U Vᵀ
    ns_over_polar            per step, mean over the matrices of share(NS(W)) / share(U Vᵀ)
    ns_share_min             the smallest tangential share of NS(W)
    """
    g = split[split.direction == "task gradient"]
    ex = _per_matrix(split, "exact U Vᵀ", snap["names"])
    ns = _per_matrix(split, "LRD (NS(W))", snap["names"])
    closed = polar_tangential_share(snap["W"].double())
    return {"grad_radial_share_max": float((g.radial.abs() / g.norm).max()),
            "l2_tangential_share_max": float(split[split.direction == "L2 (W)"].tan_share.max()),
            "polar_closed_form_err": float((torch.tensor(ex.to_numpy()) - closed).abs().max()),
            "ns_over_polar": (ns / ex).mean(axis=1), "ns_share_min": float(ns.to_numpy().min())}


def decay_displacements(split: pd.DataFrame, lr_wd: float, alpha: float) -> pd.DataFrame:
    """Per step, mean over the matrices: L2's radial displacement lr·λ·‖W‖_F (``lr_wd`` = lr·λ) and
    LRD's radial and tangential displacements α·⟨NS(W), W⟩/‖W‖_F and α·‖T‖_F."""
    wn = split[split.direction == "L2 (W)"].groupby("step").norm.mean()
    lrd = split[split.direction == "LRD (NS(W))"].groupby("step")[["radial", "tangential"]].mean()
    return pd.DataFrame({"l2_radial": lr_wd * wn, "lrd_radial": alpha * lrd.radial, "lrd_tangential": alpha * lrd.tangential})


RECORD_KEYS = ("grad_tan", "grad_rad", "decay_tan", "decay_rad", "update_tan", "update_rad")


def record_tangential(record: dict, keys: tuple[str, ...] = RECORD_KEYS) -> pd.DataFrame:
    """``record["tangential"]``'s norms per evaluation step (index), mean of |·| over ``record["targets"]``."""
    tr = record["tangential"]
    return pd.DataFrame({k: np.mean([np.abs(tr[n][k]) for n in record["targets"]], axis=0) for k in keys},
                        index=pd.Index(tr["step"], name="step"))
