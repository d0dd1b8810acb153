"""lrdlib — Low-Rank Decay, Luon and grokking in scale-invariant transformers.

Three layers that import one way: ``lrdlib.core`` (maths, Newton-Schulz, model, data, decays,
optimisers, config, the training loop) → ``lrdlib.runs`` (records and the results store, sweeps
and executors, searches) → ``lrdlib.analysis`` (statistics, measures, figures). This namespace
re-exports what a reader needs to train one run.
"""
from lrdlib.core.config import METHODS, RunConfig, seed_config
from lrdlib.core.data import TaskConfig, make_split
from lrdlib.core.decay import Decay, DecayConfig, available_decays, register_decay
from lrdlib.core.grok import steps_to_grok
from lrdlib.core.model import ModelConfig, Transformer, build_model
from lrdlib.core.optim import Luon, OptimConfig
from lrdlib.runs.cache import train, trained_model

__version__ = "0.1.0"
__all__ = ["METHODS", "RunConfig", "seed_config", "TaskConfig", "make_split", "Decay", "DecayConfig",
           "available_decays", "register_decay", "ModelConfig", "Transformer", "build_model", "Luon",
           "OptimConfig", "steps_to_grok", "train", "trained_model"]
