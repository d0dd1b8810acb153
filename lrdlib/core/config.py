"""The run configuration: one frozen dataclass that fully determines a training run, its
hash (the cache key), and the three seed methods as presets.

    L2    AdamW(lr 1e-3, weight decay λ on every parameter)                    seed: λ = 0.1
    LRD   AdamW(wd 0.1 on non-Q/K, 0 on Q/K) + W ← W − α NS(W) on Q/K          seed: α = 0.005
    Luon  Luon on Q/K (η 0.02, μ 0.95, fused λ) + AdamW(wd 0 elsewhere)         seed: λ = 0.5
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field

import torch

from lrdlib.core.data import TaskConfig
from lrdlib.core.decay import DecayConfig, decay_code
from lrdlib.core.fields import check_range, normalise
from lrdlib.core.model import ModelConfig, Transformer
from lrdlib.core.optim import OptimConfig
from lrdlib.core.rank_control import RankControllerConfig

RECORD_VERSION = 5  # bump when the loop, its arithmetic or the record changes (4: F.rms_norm, angles, full-config key; 5: grok_hold)
METHODS = ("L2", "LRD", "Luon")
SEED_STRENGTH = {"L2": 0.1, "LRD": 0.005, "Luon": 0.5}
_DEVICE = re.compile(r"^(cpu|cuda(:[0-9]+)?)$")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's history (on a given device).

    seed: model initialisation and batch order, 0 ≤ seed < 2⁶³. The task's ``split_seed`` sets the split.
    targets: substrings naming the matrices the decay and the target optimiser act on; they must
        match at least one 2-D parameter of the model, all of one shape (they are processed as one stack).
    eval_every: evaluate (full train and validation sets, Q/K spectra) every this many steps.
    grok_hold: a run has grokked at step s when validation accuracy ≥ ``grok_threshold`` at s and at
        every evaluation up to s + ``grok_hold`` (0: at s and the next evaluation); a run that ends
        inside that window counts if the accuracy held to its end. A grok that collapses within the
        window is not a grok.
    early_stop: stop as soon as the run has grokked (with ``grok_hold`` > 0: once the window is complete).
    compile: run the training forward/backward through ``torch.compile``: the same maths, faster
        on CPU after a one-off compilation, rounded differently (so its own history and cache key).
    observe: with ``early_stop``, an observation window after the first grok (first evaluation ≥
        ``grok_threshold``): the run stops at first + max(``observe``, first) steps, so that a later
        collapse is seen (``paper/protocol.md``); 0: the ``grok_hold`` rule. Left out of the key at 0.
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    decay: DecayConfig = field(default_factory=DecayConfig)
    targets: tuple[str, ...] = ("q_proj", "k_proj")
    steps: int = 4000
    batch_size: int = 512
    eval_every: int = 50
    seed: int = 0
    early_stop: bool = False
    grok_threshold: float = 0.99
    grok_hold: int = 0
    device: str = "cpu"
    compile: bool = False
    observe: int = 0

    def __post_init__(self) -> None:
        normalise(self)
        if self.model.vocab_size != self.task.vocab_size:
            raise ValueError(f"model.vocab_size={self.model.vocab_size} but the task mod p={self.task.p} "
                             f"needs vocab_size={self.task.vocab_size}")
        if self.model.seq_len < self.task.seq_len:
            raise ValueError(f"model.seq_len={self.model.seq_len} but the task {self.task.op!r} has sequences of "
                             f"{self.task.seq_len} tokens: expected model.seq_len ≥ {self.task.seq_len}")
        for name in ("steps", "batch_size", "eval_every"):
            check_range(self, name, 1)
        check_range(self, "seed", 0, 2 ** 63, hi_open=True)
        check_range(self, "grok_threshold", 0, 1, lo_open=True)
        check_range(self, "grok_hold", 0)
        check_range(self, "observe", 0)
        if not _DEVICE.match(self.device):
            raise ValueError(f"device={self.device!r}; valid: cpu, cuda, cuda:<index>")
        _check_targets(self.model, self.targets)

    def to_dict(self) -> dict:
        """The config as plain data; the task through ``TaskConfig.to_dict`` (which leaves out the
        sequence-task fields at their defaults, so a pair task's dict and key are what they were;
        ``observe`` likewise at 0)."""
        d = {**dataclasses.asdict(self), "task": self.task.to_dict()}
        if not d["observe"]:
            del d["observe"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """The config of ``to_dict``'s output. A field this code does not know (a record written by
        newer code) raises a ``ValueError`` naming it, rather than replaying as another config."""
        top = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - top)
        if unknown:
            raise ValueError(f"RunConfig.from_dict: unknown field(s) {unknown}; valid: {sorted(top)}")
        dc = dict(d["decay"])
        dc["controller"] = _build(RankControllerConfig, dc.get("controller", {}), "decay.controller")
        nested = {"task": _build(TaskConfig, d["task"], "task"), "model": _build(ModelConfig, d["model"], "model"),
                  "optim": _build(OptimConfig, d["optim"], "optim"), "decay": _build(DecayConfig, dc, "decay")}
        return cls(**nested, **{k: v for k, v in d.items() if k not in nested})

    def key(self) -> str:
        """The cache key: a hash of the whole normalised config and the record version.

        Every field enters (defaults included), so changing a default changes the key of every
        config that uses it; equal configs (``1`` vs ``1.0``, ``True`` vs ``1``) share one key.
        A decay registered outside lrdlib (a user's own) enters with the code of its class
        (``decay_code``), so editing its ``apply`` gives new keys instead of old records.
        """
        own = {"decay_code": code} if (code := decay_code(self.decay.kind)) else {}
        blob = json.dumps({"v": RECORD_VERSION, "cfg": self.to_dict(), **own}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def replace(self, **changes) -> RunConfig:
        """A copy with top-level fields changed; nested ones with ``task__train_frac=0.3`` etc."""
        nested: dict[str, dict] = {}
        top = {}
        for k, v in changes.items():
            if "__" in k:
                outer, inner = k.split("__", 1)
                nested.setdefault(outer, {})[inner] = v
            else:
                top[k] = v
        for outer, kv in nested.items():
            top[outer] = dataclasses.replace(top.get(outer, getattr(self, outer)), **kv)
        return dataclasses.replace(self, **top)


def _build(kind: type, fields: dict, where: str):
    """``kind(**fields)``; an unknown field raises a ``ValueError`` that names it and ``where`` it is."""
    if isinstance(fields, kind):
        return fields
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"RunConfig.from_dict: unknown field(s) {unknown} in {where}; valid: {sorted(known)}")
    return kind(**fields)


@functools.lru_cache(maxsize=64)
def _matrix_shapes(model: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name → shape of every 2-D parameter of the model (built on the meta device: no memory)."""
    with torch.device("meta"):
        net = Transformer(model)
    return {n: tuple(p.shape) for n, p in net.named_parameters() if p.ndim == 2}


def _check_targets(model: ModelConfig, targets: tuple[str, ...]) -> None:
    if not targets or not all(targets):
        raise ValueError(f"targets={targets!r}: expected non-empty names such as ('q_proj', 'k_proj')")
    shapes = {n: s for n, s in _matrix_shapes(model).items() if any(t in n for t in targets)}
    if not shapes:
        raise ValueError(f"targets={targets!r} match no 2-D parameter of the model; e.g. q_proj, k_proj, v_proj, "
                         "o_proj, fc_in, fc_out")
    if len(set(shapes.values())) > 1:
        raise ValueError(f"targets={targets!r} match matrices of different shapes "
                         f"({', '.join(f'{n} {s}' for n, s in shapes.items())}); they are decayed as one stack")


def seed_config(method: str, strength: float | None = None, *, train_frac: float = 0.5, seed: int = 0,
                steps: int = 4000, op: str = "add", p: int = 113, **run_kw) -> RunConfig:
    """The seed setting for ``method`` ∈ {L2, LRD, Luon}.

    ``strength`` is the method's λ (L2 weight decay, LRD α, Luon λ); default: the seeds' value.
    ``seed`` sets the initialisation, the batch order and the train/validation split.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}; valid: {', '.join(METHODS)}")
    s = SEED_STRENGTH[method] if strength is None else strength
    task = TaskConfig(op=op, p=p, train_frac=train_frac, split_seed=seed)
    model = ModelConfig(vocab_size=p + 1)
    if method == "L2":
        optim, decay = OptimConfig(weight_decay=s, target_weight_decay=s), DecayConfig()
    elif method == "LRD":
        optim, decay = OptimConfig(weight_decay=0.1, target_weight_decay=0.0), DecayConfig("lrd_ns", s)
    else:
        optim, decay = OptimConfig(kind="luon", weight_decay=0.0, luon_lambda=s), DecayConfig()
    return RunConfig(task=task, model=model, optim=optim, decay=decay, steps=steps, seed=seed, **run_kw)
