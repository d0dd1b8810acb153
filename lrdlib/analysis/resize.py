"""What SVD resizing loses (claim 5 of the adaptive low-rank seed: "SVD resizing keeps what was
learned"), measured at every resize of a run with the ``adaptive_lowrank`` decay.

That decay (``lrdlib.core.decay.AdaptiveLowRankProjection``) replaces each target matrix W, every
``every`` steps, by its truncated SVD U_k Σ_k V_kᵀ at the rank k its stable-rank controller
(``lrdlib.core.rank_control``) chooses. W stays a dense buffer, so the optimiser's state (AdamW's
moments) is kept across every resize by construction. ``ResizeProbe`` is a read-only hook of the
training loop (``lrdlib.runs.checkpoints.measure_along(..., hook=True)``, ``every`` = the decay's):
at each application it evaluates the full training and validation sets twice, with the target
matrices just before the projection (W₁: after the optimiser's step) and just after it (W₂),
through ``torch.func.functional_call`` (the model itself is not written), and the rank of each
W₂ (singular values above ``RANK_RTOL`` × σ₁). The loss after minus the loss before is what
that resize lost.
"""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from torch.func import functional_call

from lrdlib.core.config import RunConfig
from lrdlib.core.data import make_split
from lrdlib.core.grok import lasting_grok
from lrdlib.core.optim import split_targets
from lrdlib.core.tasks import final_qk_stable_rank

RANK_RTOL = 1e-4
RESIZE_TAG = "resize1"   # the cache tag of the measures (change it when they change)


@torch.no_grad()
def loss_acc(model: torch.nn.Module, params: dict, x: torch.Tensor, y: torch.Tensor, chunk: int = 8192) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a whole set with ``params`` (name → tensor) in place of
    the model's own parameters of those names (the model is not modified).

    Each stand-in carries its parameter's ``requires_grad`` flag: ATen's ``matmul`` chooses its
    kernel by that flag even under ``no_grad`` (it folds a batched input into one ``mm`` or not),
    and on some CPUs the two kernels round differently, so without it the loss with W₂ differs from
    ``evaluate`` on the same weights by ~1e-7."""
    own = dict(model.named_parameters())
    params = {n: t.detach().clone().requires_grad_(own[n].requires_grad) if n in own else t for n, t in params.items()}
    loss, correct = 0.0, 0
    for i in range(0, len(y), chunk):
        logits = functional_call(model, params, (x[i:i + chunk],))
        loss += F.cross_entropy(logits, y[i:i + chunk], reduction="sum").item()
        correct += (logits.argmax(-1) == y[i:i + chunk]).sum().item()
    return loss / len(y), correct / len(y)


class ResizeProbe:
    """The hook: ``probe(step, training_probe)`` at each projection step; ``result(record)`` the measures."""

    def __init__(self, cfg: RunConfig):
        if cfg.decay.kind != "adaptive_lowrank":
            raise ValueError(f"decay kind={cfg.decay.kind!r}: resizes are measured for 'adaptive_lowrank' only")
        self.cfg = cfg
        self.split = make_split(cfg.task, cfg.device)
        self.rows: dict[str, list] = {}
        self.full_rank = None

    def __call__(self, step: int, probe) -> None:
        model = probe.model
        names = [n for n, _ in split_targets(model, self.cfg.targets)[0]]
        row = {"step": step}
        for side, W in (("before", probe.W1), ("after", probe.W2)):
            params = dict(zip(names, W.unbind(0)))
            for part, x, y in (("train", self.split.x_train, self.split.y_train), ("val", self.split.x_val, self.split.y_val)):
                row[f"{part}_loss_{side}"], row[f"{part}_acc_{side}"] = loss_acc(model, params, x, y)
        row["rank"] = torch.linalg.matrix_rank(probe.W2.float(), rtol=RANK_RTOL).tolist()
        self.full_rank = min(probe.W2.shape[-2:])
        for k, v in row.items():
            self.rows.setdefault(k, []).append(v)

    def result(self, record: dict) -> dict:
        return {"targets": record.get("targets", []), "full_rank": self.full_rank, **self.rows}


def resize_table(measures: dict):
    """One row per (projection step): the losses and accuracies before and after, ``d_train_loss``
    and ``d_val_loss`` (after − before), the mean rank after and ``resized`` (whether any matrix's
    rank changed at that step; the first projection counts, from full rank)."""

    df = pd.DataFrame({k: v for k, v in measures.items() if k not in ("targets", "rank", "full_rank")})
    if not len(df):
        return df
    ranks = pd.DataFrame(measures["rank"])
    df["rank"] = ranks.mean(axis=1)
    prev = ranks.shift(1).fillna(measures["full_rank"])
    df["resized"] = (ranks != prev).any(axis=1)
    df["d_train_loss"] = df.train_loss_after - df.train_loss_before
    df["d_val_loss"] = df.val_loss_after - df.val_loss_before
    df["d_val_acc"] = df.val_acc_after - df.val_acc_before
    return df



def resize_frame(measured: dict):
    """``resize_table`` of every run of ``measured`` (``{seed: (record, measures or None)}``, as
    ``lrdlib.runs.checkpoints.measure_many`` returns them; a run without measures is left out) in one
    frame, with a ``seed`` column."""

    return pd.concat([resize_table(ms).assign(seed=s) for s, (_, ms) in measured.items() if ms is not None], ignore_index=True)


def resize_summary(resizes, tol: float = 0.01) -> dict:
    """What the projections of a ``resize_frame`` cost: ``projections``, ``resizes`` (projections that
    changed a rank), the mean Q/K rank after the first and after the last projection (``rank_first``,
    ``rank_last``; medians over seeds); per part (``train``, ``val``) the median and the largest change
    of the loss at a resize (after − before, ``d_<part>_loss_median`` / ``_max``) and the median at a
    projection that changed no rank (``_median_no_resize``); the median and the worst change of
    validation accuracy at a resize (``d_val_acc_median``, ``worst_d_val_acc``) and ``lost``: the
    resizes that lose more than ``tol`` of it. NaN where there is nothing to take a median of."""
    rz, rest = resizes[resizes.resized], resizes[~resizes.resized]
    by_seed = resizes.groupby("seed")["rank"]
    out = {"projections": len(resizes), "resizes": len(rz), "rank_first": by_seed.first().median(),
           "rank_last": by_seed.last().median()}
    for part in ("train", "val"):
        d = f"d_{part}_loss"
        out.update({f"{d}_median": rz[d].median(), f"{d}_max": rz[d].max(), f"{d}_median_no_resize": rest[d].median()})
    out.update(d_val_acc_median=rz.d_val_acc.median(), worst_d_val_acc=rz.d_val_acc.min(), lost=int((rz.d_val_acc < -tol).sum()))
    return out


def resize_runs(arms: dict):
    """One row per run of ``arms`` (``{arm: {seed: record}}``; failed runs left out), seed by seed:
    arm, seed, the steps to a lasting grok (``lrdlib.core.grok.lasting_grok``; None: none), the final
    and the largest validation accuracy and the final Q/K stable rank."""

    rows = []
    for seed in dict.fromkeys(s for recs in arms.values() for s in recs):
        for arm, recs in arms.items():
            r = recs.get(seed)
            if r is not None and r.get("status") != "failed":
                rows.append({"arm": arm, "seed": seed, "steps_to_grok": lasting_grok(r), "final_val_acc": r["final_val_acc"],
                             "max_val_acc": r["max_val_acc"], "qk_srank": final_qk_stable_rank(r)})
    return pd.DataFrame(rows)
