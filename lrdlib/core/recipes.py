"""The recipes of the fair comparison (``paper/protocol.md``): a treatment of W_Q, W_K **and** the
AdamW weight decay λₒ of every other parameter, each tuned over both of its knobs.

``recipe_config(name, qk, other, ...)`` is one run of a recipe: the seed setting with the Q/K
knob at ``qk`` (L2's λ, LRD's or the exact polar step's α, SVT's τ, Luon's λ, the fixed norm r;
ignored by ``no Q/K decay``) and λₒ = ``other`` (tuned L2: its one λ on every parameter, ``other``
ignored).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from lrdlib.core.config import RunConfig, seed_config
from lrdlib.core.data import OPS, SEQUENCE_OPS
from lrdlib.core.decay import DecayConfig
from lrdlib.core.tasks import RECALL, on_task

# recipe -> (centre of its Q/K knob, the decay kind on Q/K or the optimiser that carries it); the
# secondary recipes' centres are their own best of notebooks 05/06 and r_LRD of notebook 07,
# rounded to the half-decade series (amendment A5 of the protocol; was 0.01, 0.01, 0.5, 0.5)
RECIPES = {
    "tuned L2": (1.0, None),
    "LRD": (0.01, "lrd_ns"),
    "exact polar": (0.3, "lrd_polar"),
    "SVT": (0.3, "svt"),
    "Luon": (10.0, "luon"),
    "fixed norm": (0.3, "fixed_norm"),
    "no Q/K decay": (None, None),
}
OTHER_WD = (0.3, 1.0, 3.0)   # the grid of λₒ of LRD (amendment A1 of the protocol)
OTHER_WD_SECONDARY = (0.1, 0.3, 1.0)   # of a secondary two-knob recipe (amendment A5)


@dataclass(frozen=True)
class Setting:
    """Where a recipe runs: the task ``op`` mod ``p`` (``recall``: notebook 08's recall task over ``p``
    symbols, its pairs and samples as in ``lrdlib.core.tasks.RECALL``), the model's ``width`` (its
    MLP 4 × wider) and ``depth``, every learning rate × ``lr_scale`` (AdamW's and Muon's), and the
    ``batch`` size. The
    default is the seed setting (a + b mod 113, width 128, depth 2, lr 1e-3, batch 512); a run in it
    has the same config, hence the same store key, as one made without a setting."""

    op: str = "add"
    p: int = 113
    width: int = 128
    depth: int = 2
    lr_scale: float = 1.0
    batch: int = 512

    def __post_init__(self) -> None:
        if self.op not in OPS + SEQUENCE_OPS:
            raise ValueError(f"op={self.op!r}: expected one of {', '.join(OPS + SEQUENCE_OPS)}")
        if not self.lr_scale > 0:
            raise ValueError(f"lr_scale={self.lr_scale!r}: expected a positive factor")

    def label(self) -> str:
        """The fields that differ from the seed setting, as ``name=value`` joined by commas ('' for it)."""
        base = asdict(Setting())
        return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in asdict(self).items() if v != base[k])

    @classmethod
    def parse(cls, text: str) -> Setting:
        """The setting of a ``label``: 'p=97,width=256', 'lr_scale=1/3' (''/'seed': the seed setting)."""
        if text in ("", "seed"):
            return cls()
        kinds, kw = {k: type(v) for k, v in asdict(cls()).items()}, {}
        for part in text.split(","):
            k, _, v = part.partition("=")
            if k not in kinds or not v:
                raise ValueError(f"setting {part!r}: expected name=value with a name among {', '.join(kinds)}")
            num, _, den = v.partition("/")   # lr_scale=1/3
            kw[k] = kinds[k](num) / kinds[k](den) if den else kinds[k](v)
        return cls(**kw)

    def apply(self, cfg: RunConfig) -> RunConfig:
        """``cfg`` moved to this setting (its task's op and p are set where it is made, by ``recipe_config``)."""
        o = cfg.optim
        return cfg.replace(model__dim=self.width, model__mlp_dim=4 * self.width, model__depth=self.depth,
                           optim__lr=o.lr * self.lr_scale, optim__muon_lr=o.muon_lr * self.lr_scale, batch_size=self.batch)


SEED_SETTING = Setting()


def recipe_config(name: str, qk: float | None, other: float | None, *, train_frac: float, seed: int,
                  steps: int, eval_every: int = 100, observe: int = 5000, setting: Setting = SEED_SETTING,
                  **kw) -> RunConfig:
    """One run of recipe ``name`` (a key of ``RECIPES``) in ``setting`` with the early stop of the
    protocol: an observation window of ``observe`` steps (at least the first grok's step) after the
    first grok."""
    if name not in RECIPES:
        raise ValueError(f"recipe={name!r}; valid: {', '.join(RECIPES)}")
    setting = replace(setting, **{k: kw.pop(k) for k in ("op", "p") if k in kw})   # op=/p= given directly win
    pair = setting.op not in SEQUENCE_OPS
    base = setting.apply(seed_config("L2", 0.1, train_frac=train_frac, seed=seed, steps=steps, eval_every=eval_every,
                                     early_stop=True, observe=observe, op=setting.op if pair else "add",
                                     p=setting.p if pair else 113, **kw))
    if not pair:
        base = on_task(base, replace(RECALL, op=setting.op, p=setting.p))
    if name == "tuned L2":
        return base.replace(optim__weight_decay=qk, optim__target_weight_decay=qk)
    cfg = base.replace(optim__weight_decay=other, optim__target_weight_decay=0.0)
    kind = RECIPES[name][1]
    if kind is None:
        return cfg
    if kind == "luon":
        return cfg.replace(optim__kind="luon", optim__luon_lambda=qk)
    return cfg.replace(decay=DecayConfig(kind, qk))
