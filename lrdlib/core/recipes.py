"""The recipes of the fair comparison (``paper/protocol.md``): a treatment of W_Q, W_K **and** the
AdamW weight decay λₒ of every other parameter, each tuned over both of its knobs.

``recipe_config(name, qk, other, ...)`` is one run of a recipe: the seed setting with the Q/K
knob at ``qk`` (L2's λ, LRD's or the exact polar step's α, SVT's τ, Luon's λ, the fixed norm r;
ignored by ``no Q/K decay``) and λₒ = ``other`` (tuned L2: its one λ on every parameter, ``other``
ignored).
"""
from __future__ import annotations

from lrdlib.core.config import RunConfig, seed_config
from lrdlib.core.decay import DecayConfig

# recipe -> (centre of its Q/K knob, the decay kind on Q/K or the optimiser that carries it)
RECIPES = {
    "tuned L2": (1.0, None),
    "LRD": (0.01, "lrd_ns"),
    "exact polar": (0.01, "lrd_polar"),
    "SVT": (0.01, "svt"),
    "Luon": (0.5, "luon"),
    "fixed norm": (0.5, "fixed_norm"),
    "no Q/K decay": (None, None),
}
OTHER_WD = (0.3, 1.0, 3.0)   # the grid of λₒ of a two-knob recipe (amendment A1 of the protocol)


def recipe_config(name: str, qk: float | None, other: float | None, *, train_frac: float, seed: int,
                  steps: int, eval_every: int = 100, observe: int = 5000, **kw) -> RunConfig:
    """One run of recipe ``name`` (a key of ``RECIPES``) with the early stop of the protocol: an
    observation window of ``observe`` steps (at least the first grok's step) after the first grok."""
    if name not in RECIPES:
        raise ValueError(f"recipe={name!r}; valid: {', '.join(RECIPES)}")
    base = seed_config("L2", 0.1, train_frac=train_frac, seed=seed, steps=steps, eval_every=eval_every,
                       early_stop=True, observe=observe, **kw)
    if name == "tuned L2":
        return base.replace(optim__weight_decay=qk, optim__target_weight_decay=qk)
    cfg = base.replace(optim__weight_decay=other, optim__target_weight_decay=0.0)
    kind = RECIPES[name][1]
    if kind is None:
        return cfg
    if kind == "luon":
        return cfg.replace(optim__kind="luon", optim__luon_lambda=qk)
    return cfg.replace(decay=DecayConfig(kind, qk))
