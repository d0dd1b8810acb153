"""lrdlib — Low-Rank Decay, Luon and grokking in scale-invariant transformers.

Modules, one idea each: ``data`` (modular arithmetic), ``model`` (the seed transformer),
``newton_schulz`` (NS iterations over coefficient schedules), ``spectral`` (SVD-based measures),
``polar_geometry`` (radial/tangential split, the nuclear norm's subdifferential),
``scale_invariance`` (per-parameter checks), ``decay`` (decoupled decays), ``optim`` (Luon,
AdamW/Muon set-up), ``config`` (run configs and seed presets), ``training`` (the one training
loop: ``train(cfg) -> record``), ``trajectory`` (snapshots of a run), ``cache`` (records on disk),
``suspend`` (a run stopped at a deadline and resumed exactly),
``sweep`` (many runs), ``analysis``/``phase``/``verdicts`` (tables and claim verdicts),
``figures`` (the figure style), ``paths``, ``profiles``.

``lrdlib.train`` is the function ``training.train``; the module is ``lrdlib.training``.
"""
from .config import METHODS, RunConfig, seed_config
from .data import TaskConfig, make_split
from .decay import Decay, DecayConfig, available_decays, register_decay
from .model import ModelConfig, Transformer, build_model
from .optim import Luon, OptimConfig
from .training import steps_to_grok, train, trained_model

__version__ = "0.1.0"
__all__ = ["METHODS", "RunConfig", "seed_config", "TaskConfig", "make_split", "Decay", "DecayConfig",
           "available_decays", "register_decay", "ModelConfig", "Transformer", "build_model", "Luon",
           "OptimConfig", "steps_to_grok", "train", "trained_model"]
