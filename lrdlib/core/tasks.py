"""The tasks of notebook 08 beyond a + b, and a run config moved onto one of them.

The pair tasks keep the seed setting (p = 113, ``[a, b, =]``); ``recall`` is the sequence task of
``lrdlib.core.data`` (``[k₁ v₁ … k_n v_n q]`` → the value paired with q), whose last position must find
the key equal to the query by content: its Q/K product has to match any of p symbols to itself,
a map of rank up to p, where modular addition reads fixed positions.
"""
from __future__ import annotations

import dataclasses

from lrdlib.core.config import RunConfig
from lrdlib.core.data import TaskConfig

RECALL = TaskConfig(op="recall", p=24, pairs=3, samples=20000)   # 24 symbols, 3 pairs, 20 000 distinct sequences

TASKS: dict[str, TaskConfig] = {   # label -> task (train fraction and split seed are set per run)
    "a + b": TaskConfig(op="add"),
    "a − b": TaskConfig(op="sub"),
    "a · b": TaskConfig(op="mul"),
    "a / b": TaskConfig(op="div"),
    "a² + ab + b²": TaskConfig(op="quad"),
    "recall": RECALL,
}


def on_task(cfg: RunConfig, task: TaskConfig) -> RunConfig:
    """``cfg`` on ``task``: its op, p and sequence fields, with ``cfg``'s train fraction and split
    seed; the model's vocabulary and sequence length follow the task (nothing else changes, so
    ``on_task(cfg, TASKS["a + b"])`` is ``cfg`` itself for a seed-setting config)."""
    t = dataclasses.replace(task, train_frac=cfg.task.train_frac, split_seed=cfg.task.split_seed)
    return cfg.replace(task=t, model=dataclasses.replace(cfg.model, vocab_size=t.vocab_size, seq_len=t.seq_len))


def final_qk_stable_rank(record: dict) -> float:
    """The mean over the target matrices of the stable rank at the record's last evaluation (NaN if none)."""
    vals = [s["stable_rank"][-1] for s in record.get("spectra", {}).values() if s.get("stable_rank")]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else float("nan")
