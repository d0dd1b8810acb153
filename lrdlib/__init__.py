"""lrdlib — Low-Rank Decay, Luon and grokking in scale-invariant transformers.

Modules, one idea each: ``data`` (modular arithmetic), ``model`` (the seed transformer),
``spectral`` (Newton-Schulz, polar factor, rank measures), ``decay`` (decoupled decays),
``optim`` (Luon, AdamW/Muon set-up), ``config`` (run configs and seed presets),
``train`` (one run → record), ``cache`` (records on disk), ``paths``.
"""
from .config import METHODS, RunConfig, seed_config
from .data import TaskConfig, make_split
from .decay import Decay, DecayConfig, available_decays, register_decay
from .model import ModelConfig, Transformer, build_model
from .optim import Luon, OptimConfig
from .train import steps_to_grok, train, trained_model

__version__ = "0.1.0"
__all__ = ["METHODS", "RunConfig", "seed_config", "TaskConfig", "make_split", "Decay", "DecayConfig",
           "available_decays", "register_decay", "ModelConfig", "Transformer", "build_model", "Luon",
           "OptimConfig", "steps_to_grok", "train", "trained_model"]
