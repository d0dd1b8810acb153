"""One training run: ``run(cfg) -> (record, weights)``, the record a JSON-able dict.

Each step s = 1..steps: a minibatch (epoch-wise random permutation of the training pairs,
last partial batch kept, as the seed's DataLoader(shuffle=True) does), cross-entropy at the
``=`` position, the optimiser step(s), then the decoupled decay on the target matrices.

Every ``eval_every`` steps (and at s = 0 and the last step) the record gets
  * full-set train/validation loss and accuracy,
  * per target matrix W: stable rank ‖W‖_F²/σ₁², entropy rank, ‖W‖_*/‖W‖_F, ‖W‖_F, top σᵢ,
  * per target matrix, at that step: the radial and tangential norms (with respect to W) of
    the task gradient G, of the optimiser's update, of the decay's displacement and of the
    whole update ΔW; and, from every step since the last evaluation, the mean angle W turned
    through per step (whole step, optimiser, decay) and the total angle travelled since step 0
    (``AngleMeter``; ``record["tangential"][matrix]["angle_step"]`` etc.).
With ``cfg.compile``, full batches go through ``torch.compile`` (``lrdlib.core.model.compile_model``).
A non-finite loss stops the run with ``status = "diverged"``; the caller gets the record.
With a ``checkpoint`` file, ``run`` saves its whole state every ``checkpoint_every`` steps and a
later call resumes from it bit for bit (``lrdlib.runs.cache.train`` passes one per run).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lrdlib.core import spectral
from lrdlib.core.config import RunConfig
from lrdlib.core.data import Split, commutativity_ceiling, make_split
from lrdlib.core.decay import apply_decay, make_decay
from lrdlib.core.grok import grok_window_complete, steps_to_grok
from lrdlib.core.machine import processor
from lrdlib.core.model import Transformer, build_model, compile_model
from lrdlib.core.optim import build_optimizers, split_targets
from lrdlib.core.polar_geometry import angle, radial_tangential_norms

TOP_SV = 8


def strict_json(obj):
    """``obj`` as data that ``json.dumps(..., allow_nan=False)`` accepts: every non-finite float
    (Python or numpy) replaced by None (strict JSON has no NaN/Infinity), numpy scalars as Python
    numbers and bools, tuples as lists, dict keys that JSON cannot take as ``str(key)``."""
    if isinstance(obj, dict):
        return {k if k is None or isinstance(k, (str, int, float, bool)) else str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.generic) and isinstance(obj.item(), (bool, int, float)):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


class BatchSampler:
    """Epoch-wise random permutations of range(n), batches of ``batch_size``, the last
    batch of an epoch possibly shorter (DataLoader(shuffle=True, drop_last=False))."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device):
        self.n, self.bs, self.device = n, batch_size, device
        self.gen = torch.Generator().manual_seed(seed)
        self._perm, self._pos = None, n

    def next(self) -> torch.Tensor:
        if self._pos >= self.n:
            self._perm, self._pos = torch.randperm(self.n, generator=self.gen).to(self.device), 0
        idx = self._perm[self._pos: self._pos + self.bs]
        self._pos += self.bs
        return idx

    def state_dict(self) -> dict:
        """The generator's state, this epoch's permutation and the position in it (for a checkpoint)."""
        return {"gen": self.gen.get_state(), "perm": None if self._perm is None else self._perm.cpu(), "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self._perm = None if state["perm"] is None else state["perm"].to(self.device)
        self._pos = int(state["pos"])


@torch.no_grad()
def evaluate(model: Transformer, x: torch.Tensor, y: torch.Tensor, chunk: int = 8192) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a whole set."""
    loss, correct = 0.0, 0
    for i in range(0, len(y), chunk):
        logits = model(x[i:i + chunk])
        loss += F.cross_entropy(logits, y[i:i + chunk], reduction="sum").item()
        correct += (logits.argmax(-1) == y[i:i + chunk]).sum().item()
    return loss / len(y), correct / len(y)


def _spectra(W: torch.Tensor) -> dict[str, torch.Tensor]:
    S = spectral.singular_values(W.float())
    return {
        "stable_rank": spectral.stable_rank_from_sv(S),
        "entropy_rank": spectral.entropy_rank_from_sv(S),
        "nuc_over_fro": S.sum(-1) / S.norm(dim=-1),
        "fro": S.norm(dim=-1),
        "top_sv": S[..., :TOP_SV],
    }


def _nan_spectra(W: torch.Tensor) -> dict[str, torch.Tensor]:
    """Placeholder metrics for non-finite weights (a diverged run): NaN, same shapes."""
    k = min(W.shape[-2:])
    nan = torch.full(W.shape[:-2], float("nan"))
    return {"stable_rank": nan, "entropy_rank": nan, "nuc_over_fro": nan, "fro": nan,
            "top_sv": torch.full((*W.shape[:-2], min(TOP_SV, k)), float("nan"))}


@dataclass
class Probe:
    """Target matrices and their gradient captured around one step (tangential metrics):
    W0 before the step, G the task gradient at W0, W1 after the optimiser, W2 after the decay.
    ``model``: set only for ``run``'s ``on_probe`` hook, the model after the step (to read, not write)."""

    W0: torch.Tensor | None = None
    G: torch.Tensor | None = None
    W1: torch.Tensor | None = None
    W2: torch.Tensor | None = None
    model: torch.nn.Module | None = None


def _stack(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([p.detach() for p in params]).clone()


class AngleMeter:
    """The angle each target matrix turns through, every step (``polar_geometry.angle``):
    ∠(W₀, W₂) for the whole step, ∠(W₀, W₁) for the optimiser and ∠(W₁, W₂) for the decay
    (W₀ before the step, W₁ after the optimiser, W₂ after the decay). ``flush`` gives the mean
    per step since the last flush and the running total of the whole-step angle (the total
    angle travelled). Under QK-Norm only the direction of W_Q, W_K matters, so these are the
    effective (angular) learning rates.

    ``angle_line``: the angle between the *lines* of W₀ and W₂, min(θ, π − θ) of the whole-step
    angle θ. A step that flips W's sign (LRD's step where every σᵢ < α: W − α U Vᵀ = −U(α − Σ)Vᵀ)
    turns θ ≈ π and the line by ≈ 0 (with W_Q and W_K flipped together every attention score is
    unchanged under QK-Norm; one alone flips the scores' sign). The line angle is the
    sign-invariant effective learning rate; ``angle_line_total`` its running total."""

    def __init__(self, k: int):
        self.sum = {n: torch.zeros(k, dtype=torch.float64) for n in ("step", "opt", "decay", "line")}
        self.total = torch.zeros(k, dtype=torch.float64)
        self.total_line = torch.zeros(k, dtype=torch.float64)
        self.count = 0

    def update(self, W0: torch.Tensor, W1: torch.Tensor, W2: torch.Tensor) -> None:
        a = angle(torch.stack([W0, W0, W1]), torch.stack([W2, W1, W2])).cpu()   # one batched call
        for name, row in zip(("step", "opt", "decay"), a):
            self.sum[name] += row
        self.sum["line"] += torch.minimum(a[0], math.pi - a[0])
        self.count += 1

    def flush(self) -> dict[str, torch.Tensor]:
        self.total += self.sum["step"]
        self.total_line += self.sum["line"]
        out = {f"angle_{n}": s / max(self.count, 1) for n, s in self.sum.items()}
        out["angle_total"] = self.total.clone()
        out["angle_line_total"] = self.total_line.clone()
        for s in self.sum.values():
            s.zero_()
        self.count = 0
        return out

    def state_dict(self) -> dict:
        return {"sum": {n: s.clone() for n, s in self.sum.items()}, "total": self.total.clone(),
                "total_line": self.total_line.clone(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.sum = {n: s.clone() for n, s in state["sum"].items()}
        self.total, self.count = state["total"].clone(), int(state["count"])
        self.total_line = state["total_line"].clone()


def train_step(model: torch.nn.Module, opts: list, decay, targets: list[torch.Tensor],
               x: torch.Tensor, y: torch.Tensor, step: int, probe: Probe | None = None) -> torch.Tensor:
    """One step: loss, backward, every optimiser, then the decoupled decay on ``targets``.
    Returns the (detached) minibatch loss; fills ``probe`` if one is given."""
    loss = F.cross_entropy(model(x), y)
    for o in opts:
        o.zero_grad(set_to_none=True)
    loss.backward()
    if probe is not None:
        probe.W0, probe.G = _stack(targets), torch.stack([p.grad for p in targets]).clone()
    for o in opts:
        o.step()
    if probe is not None:
        probe.W1 = _stack(targets)
    apply_decay(decay, targets, step)
    if probe is not None:
        probe.W2 = _stack(targets)
    return loss.detach()


def _tangential(probe: Probe) -> dict[str, torch.Tensor]:
    out = {}
    for name, D, at in (("grad", probe.G, probe.W0), ("opt", probe.W1 - probe.W0, probe.W0),
                        ("decay", probe.W1 - probe.W2, probe.W1), ("update", probe.W2 - probe.W0, probe.W0)):
        r, t = radial_tangential_norms(D.double(), at.double())
        out[f"{name}_rad"], out[f"{name}_tan"] = r, t
    return out


def _append(store: dict, names: list[str], values: dict[str, torch.Tensor]) -> None:
    for key, v in values.items():
        for n, row in zip(names, v.detach().cpu().tolist()):
            store[n].setdefault(key, []).append(row)


def _source_digest() -> bytes:
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.digest()


_CORE_SOURCE = _source_digest()   # read once, at import: the code this process runs, not what is on disk later


def fingerprint(cfg: RunConfig) -> str:
    """What a checkpoint must match to be resumed: the config's key and the source of ``lrdlib.core``
    (the loop, the model, the optimisers and the decays) as this process imported it, so a
    checkpoint written by other code or for another config is never continued, also when the
    files are edited while a run goes on."""
    return hashlib.sha256(cfg.key().encode() + _CORE_SOURCE).hexdigest()[:24]


_STATE_KEYS = {"fingerprint", "step", "wall", "status", "grok", "model", "opts", "sampler", "meter", "hist",
               "spectra", "tangential", "tang_steps", "resumed_at"}


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a kill leaves the old checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{socket.gethostname().replace('.', '-')}.{os.getpid()}.ckpt.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path, cfg: RunConfig, n_opts: int) -> dict | None:
    """The state saved at ``path`` if it belongs to this config and this code, else None. A checkpoint
    that is unreadable, of another fingerprint or of another layout is refused with a warning and
    deleted (it could never be resumed), so the run starts from step 0."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        why = None
        if not isinstance(state, dict) or set(state) != _STATE_KEYS:
            why = "it has another layout"
        elif state["fingerprint"] != fingerprint(cfg):
            why = "it was written by other code or for another config (fingerprint differs)"
        elif len(state["opts"]) != n_opts:
            why = f"it holds {len(state['opts'])} optimiser states, this run has {n_opts}"
        elif not (0 < state["step"] <= cfg.steps and state["hist"]["step"][-1:] == [state["step"]]):
            why = f"its step {state['step']!r} is not an evaluation step in (0, {cfg.steps}]"
    except Exception as e:  # noqa: BLE001 - torch.load raises many types for a damaged file
        why = f"it cannot be read ({type(e).__name__}: {e})"
    if why is None:
        return state
    warnings.warn(f"checkpoint {path} refused: {why}; deleted, the run starts from step 0", RuntimeWarning, stacklevel=3)
    path.unlink(missing_ok=True)
    return None


def run(cfg: RunConfig, *, progress: bool | None = None, desc: str | None = None, probe_every: int | None = None,
        on_probe: Callable[[int, Probe], None] | None = None, checkpoint: str | Path | None = None,
        checkpoint_every: int = 1000) -> tuple[dict, dict]:
    """The training loop: (record, final state dict) of ``cfg``.

    progress: a tqdm bar with live accuracy; None = yes unless $TQDM_DISABLE is set.
    probe_every, on_probe: a hook for analyses that need more than the record. Every
    ``probe_every`` steps, ``on_probe(step, probe)`` gets the target matrices before the step
    (``probe.W0``), the task gradient (``probe.G``) and the matrices after the optimiser
    (``W1``) and after the decay (``W2``), and the model itself after the step (``probe.model``).
    The hook only reads: the trajectory is the same with or without it.
    checkpoint: a file for the whole state (weights, optimiser moments, sampler, history and the
    ``fingerprint`` of config and code), written at the first evaluation after every
    ``checkpoint_every`` steps. A run that finds a checkpoint of its own fingerprint goes on from it
    and ends with the same history, bit for bit, as one that was never stopped; the caller deletes
    the file once the record is safe. Time limits are the caller's: kill the process, run again.
    """
    if probe_every is not None and (not isinstance(probe_every, int) or probe_every < 1):
        raise ValueError(f"probe_every={probe_every!r} must be a positive integer or None")
    if checkpoint is not None and probe_every is not None:
        raise ValueError("checkpoint and probe_every cannot be combined: a probe hook's results are not checkpointed")
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every={checkpoint_every!r} must be a positive integer (steps)")
    if progress is None:
        progress = not os.environ.get("TQDM_DISABLE")
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={cfg.device!r} requested but CUDA is not available here; use device='cpu'")
    if device.type == "cpu":   # a run whose weights decay towards 0 (L2 at λ 10) would compute on
        torch.set_flush_denormal(True)   # subnormal floats, about 30× slower on x86: flush them to 0
    split: Split = make_split(cfg.task, device)
    model = build_model(cfg.model, cfg.seed, device)
    fast = compile_model(model) if cfg.compile else model   # full batches only (see lrdlib.core.model.compile_model)
    opts = build_optimizers(model, cfg.optim, cfg.targets)
    decay = make_decay(cfg.decay)
    tgt = split_targets(model, cfg.targets)[0]
    names, params = [n for n, _ in tgt], [p for _, p in tgt]
    sampler = BatchSampler(len(split.y_train), cfg.batch_size, cfg.seed, device)

    hist: dict[str, list] = {k: [] for k in ("step", "train_loss", "train_acc", "val_loss", "val_acc")}
    spectra: dict[str, dict] = {n: {} for n in names}
    tangential: dict[str, dict] = {n: {} for n in names}
    tang_steps: list[int] = []
    meter = AngleMeter(len(names))
    status, grok = "ok", None
    step, wall0, resumed_at = 0, 0.0, []
    resumable = decay is None or decay.resumable   # a decay with state of its own is not checkpointed
    checkpoint = Path(checkpoint) if checkpoint is not None and resumable else None
    saved = load_checkpoint(checkpoint, cfg, len(opts)) if checkpoint is not None else None
    if saved is not None:   # go on from the last checkpoint
        model.load_state_dict(saved["model"])
        for o, st in zip(opts, saved["opts"], strict=True):
            o.load_state_dict(st)
        sampler.load_state_dict(saved["sampler"])
        meter.load_state_dict(saved["meter"])
        hist.update(saved["hist"])
        spectra.update(saved["spectra"])
        tangential.update(saved["tangential"])
        tang_steps.extend(saved["tang_steps"])
        step, wall0, status, grok = saved["step"], saved["wall"], saved["status"], saved["grok"]
        resumed_at = [*saved["resumed_at"], step]
    last_saved = step

    def save_state(step: int) -> None:
        save_checkpoint(checkpoint, {
            "fingerprint": fingerprint(cfg), "step": step, "wall": wall0 + time.perf_counter() - t0,
            "status": status, "grok": grok, "resumed_at": resumed_at,
            "model": model.state_dict(), "opts": [o.state_dict() for o in opts],
            "sampler": sampler.state_dict(), "meter": meter.state_dict(), "hist": hist,
            "spectra": spectra, "tangential": tangential, "tang_steps": tang_steps})

    def log_eval(step: int) -> bool:
        """Evaluate, append to the history; True if the run must stop."""
        nonlocal status, grok
        tl, ta = evaluate(model, split.x_train, split.y_train)
        vl, va = evaluate(model, split.x_val, split.y_val)
        for k, v in zip(("step", "train_loss", "train_acc", "val_loss", "val_acc"), (step, tl, ta, vl, va)):
            hist[k].append(v)
        W = _stack(params)
        finite = math.isfinite(tl) and math.isfinite(vl) and bool(torch.isfinite(W).all())
        _append(spectra, names, _spectra(W) if finite else _nan_spectra(W))
        pbar.set_postfix(loss=f"{tl:.3f}", train=f"{ta:.3f}", val=f"{va:.3f}", refresh=False)
        if not finite:
            status = "diverged"
            return True
        grok = steps_to_grok(hist["step"], hist["val_acc"], cfg.grok_threshold, cfg.grok_hold)
        if cfg.early_stop and cfg.observe:
            first = next((s for s, a in zip(hist["step"], hist["val_acc"]) if a >= cfg.grok_threshold), None)
            return first is not None and step >= first + max(cfg.observe, first)
        return cfg.early_stop and grok_window_complete(hist["step"], grok, cfg.grok_hold)

    pbar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=desc or cfg.key()[:8], mininterval=0.5,
                leave=False)
    t0 = time.perf_counter()
    stop = log_eval(0) if saved is None else False
    while not stop and step < cfg.steps:
        step += 1
        idx = sampler.next()
        measure = step % cfg.eval_every == 0 or step == cfg.steps
        hooked = probe_every is not None and step % probe_every == 0
        probe = Probe()
        net = fast if len(idx) == cfg.batch_size else model
        loss = train_step(net, opts, decay, params, split.x_train[idx], split.y_train[idx], step, probe)
        meter.update(probe.W0, probe.W1, probe.W2)
        pbar.update(1)
        if hooked:
            probe.model = model
            on_probe(step, probe)
        if measure:
            tang_steps.append(step)
            _append(tangential, names, {**_tangential(probe), **meter.flush()})
            stop = log_eval(step)
            if not math.isfinite(loss.item()):
                status, stop = "diverged", True
            if checkpoint is not None and not stop and step < cfg.steps and step - last_saved >= checkpoint_every:
                save_state(step)
                last_saved = step
    wall = wall0 + time.perf_counter() - t0
    pbar.close()

    W = _stack(params).float()
    sv = (spectral.singular_values(W) if torch.isfinite(W).all() else _nan_spectra(W)["top_sv"]).cpu().tolist()
    record = {
        "key": cfg.key(),
        "config": cfg.to_dict(),
        "status": status,
        "steps_run": step,
        "steps_to_grok": grok,
        "grokked": grok is not None,
        "final_train_acc": hist["train_acc"][-1],
        "final_val_acc": hist["val_acc"][-1],
        "max_val_acc": max(hist["val_acc"]),
        "commutativity_ceiling": commutativity_ceiling(split) if cfg.task.op in ("add", "mul") else None,
        "wall_time_s": wall,
        "ms_per_step": 1000 * wall / max(step, 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "processor": processor(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "history": hist,
        "targets": names,
        "spectra": spectra,
        "tangential": {"step": tang_steps, **tangential},
        "final_singular_values": dict(zip(names, sv)),
        "final_attention": final_attention(model, split.x_val) if status == "ok" else None,
    }
    if resumed_at:
        record["resumed_at"] = resumed_at   # resumed from checkpoints at these steps: the same history
    # strict-JSON round trip (NaN → null): the record returned now equals the one read back later.
    return json.loads(json.dumps(strict_json(record), allow_nan=False)), model.state_dict()


@torch.no_grad()
def final_attention(model: Transformer, x: torch.Tensor, chunk: int = 4096) -> list:
    """Attention probabilities from the last position (the ``=`` token) to each position, averaged
    over the pairs ``x``: nested lists [block][head][key position]."""
    total = None
    for i in range(0, len(x), chunk):
        p = torch.stack([model.attention_probs(x[i:i + chunk], layer)[:, :, -1, :].sum(0)
                         for layer in range(model.cfg.depth)])
        total = p if total is None else total + p
    return (total / len(x)).double().cpu().tolist()
