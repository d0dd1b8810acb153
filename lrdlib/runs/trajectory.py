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
from lrdlib.core.grok import lasting_grok
from lrdlib.core.machine import processor
from lrdlib.core.newton_schulz import newton_schulz
from lrdlib.core.polar_geometry import polar_tangential_share, radial_tangential_norms
from lrdlib.core.spectral import fro, polar
from lrdlib.core.training import run
from lrdlib.runs.cache import RunCache
from lrdlib.runs.checkpoints import measure_along
from lrdlib.runs.profiles import seed_runs
from lrdlib.runs.sweep import run_sweep


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
    beginning), "mismatch_by_step", "processor" (what computed them: on another processor than
    ``record``'s the two trajectories drift apart by rounding)}."""

    def measure(_cfg):
        keep = Snapshots()

        def result(rec):
            snap = keep.snapshot(rec)
            split = trajectory_split(snap)
            checks = split_checks(snap, split)
            mismatch, n = snapshot_record_mismatch(snap, record)
            return {"steps": snap["steps"], "split": split.to_dict(orient="records"),
                    "checks": {**checks, "ns_over_polar": checks["ns_over_polar"].tolist()},
                    "mismatch": mismatch, "compared": n, "processor": processor(cfg.device),
                    "mismatch_by_step": {str(k): v for k, v in mismatch_by_step(snap, record).items()}}
        keep.result = result
        return keep
    return measure_along(cfg, every, measure, "trajectory", cache=cache, hook=True)[1]


def mismatch_by_step(snap: dict, record: dict) -> dict[int, float]:
    """Per step that both have, the largest relative difference over the target matrices between the
    task gradient's radial and tangential norms computed from ``snap`` and those in a ``train``
    record of the same run."""
    tang = record["tangential"]
    pos = {s: j for j, s in enumerate(tang["step"])}
    out = {}
    for i, s in enumerate(snap["steps"]):
        if s not in pos:
            continue
        r, t = radial_tangential_norms(snap["G"][i].double(), snap["W"][i].double())
        out[s] = max(max(abs(float(t[k]) - tang[name]["grad_tan"][pos[s]]), abs(float(r[k]) - tang[name]["grad_rad"][pos[s]]))
                     / abs(tang[name]["grad_tan"][pos[s]]) for k, name in enumerate(snap["names"]))
    return out


def snapshot_record_mismatch(snap: dict, record: dict) -> tuple[float, int]:
    """(largest relative difference, number of (step, matrix) comparisons) of ``mismatch_by_step``:
    a check that the snapshots lie on the recorded trajectory."""
    by_step = mismatch_by_step(snap, record)
    return max(by_step.values(), default=0.0), len(by_step) * len(snap["names"])


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


# ---------------------------------------------------------------- the seed runs' equilibrium (notebook 07)
def _late(per: pd.DataFrame, steps: int) -> pd.DataFrame:
    """The evaluations in the last quarter of a budget of ``steps``."""
    return per[per.step >= 0.75 * steps]


def equilibrium_table(per: pd.DataFrame, predicted: dict[str, float], steps: int, lrd_arms=()) -> pd.DataFrame:
    """Per arm (index, in the order of ``predicted``): the angle W turns per step and ‖W‖_F measured
    over the last quarter of the runs (steps ≥ 0.75 × ``steps``; medians over evaluations and seeds),
    beside the equilibrium relations evaluated with the runs' own measured step sizes.

    ``per``: one row per arm, seed and evaluation with ``angle_step``, ``fro`` (‖W‖_F), ``opt_tan``
    (the optimiser's tangential step η‖u‖) and ``decay_rad`` (the decay's radial displacement a), each
    the mean over the target matrices. ``predicted``: √(2ηλ) per arm, NaN where AdamW's relation
    does not apply. AdamW (finite prediction): θ* = √(2ηλ), ‖W‖* = η‖u‖/θ*; ``lrd_arms``:
    θ* = 2a/(η‖u‖), ‖W‖* = (η‖u‖)²/(2a); any other arm: measured only (NaN predicted).
    ``measured / predicted angle``: the first column over the predicted angle."""
    late, rows = _late(per, steps), []
    for arm, theta in predicted.items():
        g = late[late.arm == arm]
        if not len(g):
            continue
        row = {"arm": arm, "angle/step measured": g.angle_step.median(), "‖W‖ measured": g.fro.median()}
        opt, a = g.opt_tan.median(), g.decay_rad.median()
        if np.isfinite(theta):
            row.update({"angle/step predicted": theta, "‖W‖ predicted": opt / theta})
        elif arm in lrd_arms:
            row.update({"angle/step predicted": 2 * a / opt, "‖W‖ predicted": opt ** 2 / (2 * a)})
        rows.append(row)
    eq = pd.DataFrame(rows).set_index("arm")
    eq["measured / predicted angle"] = eq["angle/step measured"] / eq.get("angle/step predicted", np.nan)
    return eq


def assumption_table(per: pd.DataFrame, predicted: dict[str, float], steps: int) -> pd.DataFrame:
    """The three assumptions of the equilibrium relations, per arm (index, in the order of
    ``predicted``; ``per`` as for ``equilibrium_table``, with ``opt_rad`` too): the optimiser's
    tangential step in the last quarter over the first (is ‖u‖ steady?), |its radial part| over its
    tangential part in the last quarter (is u ⊥ W?), and 1/(2ηλ) = 1/θ*², the relaxation time in
    steps of the AdamW arms (long enough?). Medians over evaluations and seeds."""
    first, last = per[per.step <= 0.25 * steps], _late(per, steps)
    return pd.DataFrame({
        "‖T(opt)‖ last/first quarter": last.groupby("arm").opt_tan.median() / first.groupby("arm").opt_tan.median(),
        "|opt radial| / opt tangential (last quarter)": (last.opt_rad.abs() / last.opt_tan).groupby(last.arm).median(),
        "1/(2ηλ) (steps)": pd.Series({a: 1 / t ** 2 for a, t in predicted.items() if np.isfinite(t)}, dtype=float),
    }).reindex(list(predicted))


def luon_lambda_table(records: list[dict], ratios: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Per Luon run (index: seed) of a budget of ``steps``: its λ, λ‖W‖_F/‖G‖_F at the first evaluation,
    the first step at which it exceeds 1 (None: never), the step at which training accuracy first
    reaches 1, over the last quarter the share of evaluations where it exceeds 1, its median and
    the median angle per step, and the steps to a lasting grok (``lrdlib.core.grok.lasting_grok``).
    ``ratios``: ``lrdlib.analysis.mechanism.luon_lambda_ratio`` of each record with a ``seed`` column."""

    rows = []
    for r in records:
        seed = r["config"]["seed"]
        d = ratios[ratios.seed == seed]
        over, late = d[d.ratio > 1], _late(d, steps)
        h = pd.DataFrame(r["history"])
        mem = h.loc[h.train_acc >= 1.0, "step"]
        rows.append({"seed": seed, "λ": r["config"]["optim"]["luon_lambda"], "λ‖W‖/‖G‖ at first eval": float(d.ratio.iloc[0]),
                     "first step > 1": int(over.step.iloc[0]) if len(over) else None,
                     "memorised at": int(mem.iloc[0]) if len(mem) else None, "share > 1 (last quarter)": float((late.ratio > 1).mean()),
                     "λ‖W‖/‖G‖ median (last quarter)": float(late.ratio.median()),
                     "angle/step (last quarter)": float(late.angle_rate.median()), "steps to grok": lasting_grok(r)})
    return pd.DataFrame(rows).set_index("seed")


def seed_run_records(profile: str, device: str = "cpu", **sweep_kw) -> dict[str, list[dict]]:
    """The seed runs of ``profile`` (``lrdlib.runs.profiles.seed_runs``: every arm and seed), trained
    or read back by one ``lrdlib.runs.sweep.run_sweep`` (``sweep_kw``: cache, executor, ...):
    ``{arm: [record per seed]}``, failed runs left out."""

    arms = seed_runs(profile, device)
    labels = [a for a, cs in arms.items() for _ in cs]
    _, recs = run_sweep([c for cs in arms.values() for c in cs], labels=labels, return_records=True, **sweep_kw)
    return {a: [r for lab, r in zip(labels, recs) if lab == a and r.get("status") != "failed"] for a in arms}
