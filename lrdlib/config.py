"""The run configuration: one frozen dataclass that fully determines a training run, its
hash (the cache key), and the three seed methods as presets.

    L2    AdamW(lr 1e-3, weight decay λ on every parameter)                    seed: λ = 0.1
    LRD   AdamW(wd 0.1 on non-Q/K, 0 on Q/K) + W ← W − α NS(W) on Q/K          seed: α = 0.005
    Luon  Luon on Q/K (η 0.02, μ 0.95, fused λ) + AdamW(wd 0 elsewhere)         seed: λ = 0.5
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from .data import TaskConfig
from .decay import DecayConfig
from .model import ModelConfig
from .optim import OptimConfig
from .rank_control import RankControllerConfig

RECORD_VERSION = 3  # bump when the training loop, its arithmetic (3: lrdlib.fused) or the record layout changes
METHODS = ("L2", "LRD", "Luon")
SEED_STRENGTH = {"L2": 0.1, "LRD": 0.005, "Luon": 0.5}


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's history (on a given device).

    seed: model initialisation and batch order. The task's ``split_seed`` sets the split.
    eval_every: evaluate (full train and validation sets, Q/K spectra) every this many steps.
    early_stop: stop once validation accuracy ≥ ``grok_threshold`` at two evaluations in a row.
    compile: run the training forward/backward through ``torch.compile`` (``lrdlib.compiled``):
        the same maths, faster on CPU after a one-off compilation, rounded differently, so
        its history differs from the eager run's (and it has its own cache key).
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
    device: str = "cpu"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.model.vocab_size != self.task.vocab_size:
            raise ValueError(f"model.vocab_size={self.model.vocab_size} but the task mod p={self.task.p} "
                             f"needs vocab_size={self.task.vocab_size}")
        for name in ("steps", "batch_size", "eval_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive integer")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be a non-negative integer")
        if not 0 < self.grok_threshold <= 1:
            raise ValueError(f"grok_threshold={self.grok_threshold!r} must lie in (0, 1]")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile={self.compile!r} must be True or False")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device={self.device!r}; valid: cpu, cuda, cuda:<index>")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        o = dict(d["optim"])
        o["betas"] = tuple(o["betas"])
        dc = dict(d["decay"])
        dc["controller"] = RankControllerConfig(**dc.get("controller", {}))
        return cls(task=TaskConfig(**d["task"]), model=ModelConfig(**d["model"]), optim=OptimConfig(**o),
                   decay=DecayConfig(**dc), targets=tuple(d["targets"]),
                   **{k: d[k] for k in ("steps", "batch_size", "eval_every", "seed", "early_stop",
                                        "grok_threshold", "device")},
                   compile=d.get("compile", False))

    def key(self) -> str:
        """Stable hash of the config (and the record version): the cache key.

        Only fields that differ from their defaults enter the hash, so adding a new field
        (with a default that keeps the old behaviour) does not invalidate cached runs.
        """
        blob = json.dumps({"v": RECORD_VERSION, "cfg": _non_default(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def replace(self, **changes) -> "RunConfig":
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


def _non_default(obj) -> dict:
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            sub = _non_default(v)
            if sub:
                out[f.name] = sub
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if v != default:
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def seed_config(method: str, strength: float | None = None, *, train_frac: float = 0.5, seed: int = 0,
                steps: int = 4000, op: str = "add", p: int = 113, **run_kw) -> RunConfig:
    """The seed setting (MISSION §3) for ``method`` ∈ {L2, LRD, Luon}.

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
