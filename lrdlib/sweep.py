"""Sweeps: many run configs → one tidy table of their records.

* Finished runs come from the cache (``RunCache``); a sweep killed at any moment resumes
  without recomputing them (records are written atomically, one per run, as each finishes).
* A run that raises is recorded with ``status = "failed"`` (and its error) and the sweep goes
  on; it is not cached, so the next sweep retries it. Diverged runs are ordinary records.
* Execution through any ``concurrent.futures``-style executor: in-process by default,
  ``executor="process"`` for a local process pool, or a ``submitit`` executor for SLURM::

      import submitit
      ex = submitit.AutoExecutor(folder="build/submitit")
      ex.update_parameters(timeout_min=60, slurm_partition="gpu", gpus_per_node=1, cpus_per_task=4)
      table = run_sweep(configs, executor=ex)                               # one job per run
      table = run_sweep(configs, executor=ex, batched=True, group_size=64)  # one job per 64 runs

  (every job writes its records into the shared cache folder, which must be on a file system
  the nodes share; the sweep also gets them back from the job).
* ``batched=True``: compatible runs (``lrdlib.batched.compatible_groups``) are trained as one
  stacked model, a group per job. It pays on a GPU; on a small CPU the process pool is faster
  (``benchmarks/sweep_throughput.py``).
"""
from __future__ import annotations

import os
import traceback
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from .cache import RunCache
from .config import RunConfig
from .train import train


class InlineExecutor(Executor):
    """Runs each submitted call immediately in this process (the default executor)."""

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - delivered through the future
            fut.set_exception(e)
        return fut


def _failed(cfg: RunConfig, e: BaseException, tb: str | None = None) -> dict:
    rec = {"key": cfg.key(), "config": cfg.to_dict(), "status": "failed", "error": f"{type(e).__name__}: {e}"}
    if tb:
        rec["traceback"] = tb
    return rec


def _train_job(cfg_dict: dict, cache_root: str, threads: int | None) -> dict:
    """Worker entry point (top level, picklable): train one run into the shared cache."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    cfg = RunConfig.from_dict(cfg_dict)
    try:
        return train(cfg, cache=RunCache(cache_root), progress=False)
    except Exception as e:  # noqa: BLE001 - a failed run becomes a row, not a crashed sweep
        return _failed(cfg, e, traceback.format_exc())


def _train_group_job(cfg_dicts: list[dict], cache_root: str, threads: int | None, progress: bool = False) -> list[dict] | dict:
    """Worker entry point: train compatible runs as one stacked model (``lrdlib.batched``).
    Returns their records, or ``{"error": ...}`` if the group failed as a whole (the sweep
    then trains its runs one by one; those the group finished come from the cache)."""
    import torch

    from .batched import train_batched

    if threads:
        torch.set_num_threads(threads)
    try:
        return train_batched([RunConfig.from_dict(d) for d in cfg_dicts], cache=RunCache(cache_root), progress=progress)
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def summarize(record: dict) -> dict:
    """One table row from a record: the config's knobs and the run's outcome."""
    c = record["config"]
    row = {
        "key": record["key"], "op": c["task"]["op"], "p": c["task"]["p"], "train_frac": c["task"]["train_frac"],
        "seed": c["seed"], "steps": c["steps"], "optim": c["optim"]["kind"],
        "weight_decay": c["optim"]["weight_decay"], "target_weight_decay": c["optim"]["target_weight_decay"],
        "luon_lambda": c["optim"]["luon_lambda"], "decay": c["decay"]["kind"], "decay_strength": c["decay"]["strength"],
        "status": record["status"],
    }
    if record["status"] == "failed":
        return {**row, "error": record.get("error"), "grokked": False}
    sr = [s["stable_rank"][-1] for s in record["spectra"].values()]
    return {**row, "grokked": record["grokked"], "steps_to_grok": record["steps_to_grok"],
            "final_val_acc": record["final_val_acc"], "max_val_acc": record["max_val_acc"],
            "final_train_acc": record["final_train_acc"], "final_srank": float(np.mean(sr)) if sr else np.nan,
            "steps_run": record["steps_run"], "wall_time_s": record["wall_time_s"]}


def _make_executor(executor: Executor | str | None, workers: int | None) -> tuple[Any, int | None, bool]:
    """(executor, torch threads per job, whether we own it and must shut it down)."""
    if executor is None or executor == "inline":
        return InlineExecutor(), None, True
    if executor == "process":
        import multiprocessing as mp

        n = workers or max(1, (os.cpu_count() or 1))
        threads = max(1, (os.cpu_count() or 1) // n)
        return ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn")), threads, True
    if isinstance(executor, str):
        raise ValueError(f"executor={executor!r}; valid: None/'inline', 'process', or an Executor/submitit executor object")
    return executor, None, False


def run_sweep(configs: Sequence[RunConfig], *, labels: Sequence[str] | None = None,
              executor: Executor | str | None = None, workers: int | None = None,
              cache: RunCache | None = None, progress: bool | None = None, batched: bool = False,
              group_size: int | None = None, return_records: bool = False):
    """Train (or load) every config and return a pandas table, one row per config in order.

    labels: an optional ``arm`` label per config (a column of the table).
    executor: None (in-process), "process" (local pool of ``workers``), or any object with
        ``submit(fn, *args)`` returning a future/job with ``.result()`` (submitit included).
    batched: train compatible configs together as one stacked model (``lrdlib.batched``): each
        group of at most ``group_size`` runs is one job for the executor. A group that fails as
        a whole is retried run by run, so one bad config costs only its own row.
    return_records: also return the list of full records (same order).

    Duplicated configs are trained once. Runs that raise get a ``failed`` row (not cached:
    the next sweep retries them); diverged runs are ordinary (cached) records.
    """
    configs = list(configs)
    if labels is not None and len(labels) != len(configs):
        raise ValueError(f"labels has {len(labels)} entries for {len(configs)} configs")
    cache = cache if cache is not None else RunCache()
    if progress is None:
        progress = not os.environ.get("TQDM_DISABLE")
    records: list[dict | None] = [cache.load(c) for c in configs]
    first: dict[str, int] = {}
    for i, r in enumerate(records):
        if r is None:
            first.setdefault(configs[i].key(), i)
    todo = list(first.values())
    bar = tqdm(total=len(configs), initial=len(configs) - len(todo), desc="sweep", disable=not progress)

    if batched:
        from .batched import compatible_groups

        units = [[todo[j] for j in g] for g in compatible_groups([configs[i] for i in todo], max_size=group_size)]
    else:
        units = [[i] for i in todo]
    if units:
        ex, threads, own = _make_executor(executor, workers)
        inline = isinstance(ex, InlineExecutor)
        try:
            retry = _execute(units, configs, records, ex, threads, str(cache.root), bar, progress and inline)
            if retry:
                _execute([[i] for i in retry], configs, records, ex, threads, str(cache.root), bar, False)
        finally:
            if own:
                ex.shutdown(wait=True)
    bar.close()
    for i, r in enumerate(records):
        if r is None:  # a duplicate of a config trained above
            records[i] = records[first[configs[i].key()]]
    table = pd.DataFrame([summarize(r) for r in records])
    if labels is not None:
        table.insert(0, "arm", list(labels))
    return (table, records) if return_records else table


def _execute(units: list[list[int]], configs: list[RunConfig], records: list, ex: Any, threads: int | None,
             root: str, bar: tqdm, group_progress: bool) -> list[int]:
    """Submit every unit (one run, or a group trained as one stacked model), fill ``records``
    as they finish; return the runs of groups that failed as a whole."""
    retry: list[int] = []

    def submit(idx: list[int]):
        if len(idx) == 1:
            return ex.submit(_train_job, configs[idx[0]].to_dict(), root, threads)
        return ex.submit(_train_group_job, [configs[i].to_dict() for i in idx], root, threads, group_progress)

    def collect(idx: list[int], job) -> None:
        try:
            out = job.result()
        except Exception as e:  # noqa: BLE001 - e.g. a worker killed by the scheduler
            out = {"error": f"{type(e).__name__}: {e}"} if len(idx) > 1 else _failed(configs[idx[0]], e)
        if len(idx) > 1 and isinstance(out, dict):
            bar.write(f"batched group of {len(idx)} runs failed ({out['error']}); training them one by one")
            retry.extend(idx)
            return
        for i, rec in zip(idx, out if len(idx) > 1 else [out]):
            records[i] = rec
            bar.update(1)
            if rec["status"] == "failed":
                bar.write(f"run {rec['key']} failed: {rec['error']}")

    if isinstance(ex, InlineExecutor):  # run and collect one unit at a time: the bar moves as runs finish
        for idx in units:
            collect(idx, submit(idx))
        return retry
    jobs = [submit(idx) for idx in units]
    if all(isinstance(j, Future) for j in jobs):
        back = {f: u for u, f in enumerate(jobs)}
        for f in as_completed(back):
            collect(units[back[f]], f)
    else:  # e.g. submitit jobs: wait in submission order
        for idx, job in zip(units, jobs):
            collect(idx, job)
    return retry


def grid(base: RunConfig, **axes: Iterable) -> list[RunConfig]:
    """The Cartesian product of ``base.replace(**point)`` over the given axes, e.g.
    ``grid(cfg, task__train_frac=[0.3, 0.5], decay__strength=[1e-3, 1e-2], seed=[0, 1])``;
    a ``seed`` axis also sets the task's split seed."""
    import itertools

    names = list(axes)
    out = []
    for values in itertools.product(*(list(axes[n]) for n in names)):
        point = dict(zip(names, values))
        if "seed" in point and "task__split_seed" not in point:
            point["task__split_seed"] = point["seed"]
        out.append(base.replace(**point))
    return out
