"""Sweeps: many run configs → one tidy table of their records.

* Finished runs come from the cache (``RunCache``); a sweep killed at any moment loses nothing
  finished (one record per run, written atomically) and a run killed mid-way resumes from its
  checkpoint (``lrdlib.runs.cache.train``). Time limits are the caller's (``timeout``, a walltime).
* A run that raises gets a ``failed`` row (not cached: the next sweep retries it); diverged runs
  are ordinary records.
* Execution through any ``concurrent.futures``-style executor: in this process by default,
  ``executor="process"`` for a local process pool (``concurrent.futures.ProcessPoolExecutor``), or
  a ``submitit`` executor (``pip install lrdlib[cluster]``) for SLURM, one job per run::

      import submitit
      ex = submitit.AutoExecutor(folder="build/submitit")
      ex.update_parameters(timeout_min=60, slurm_partition="gpu", gpus_per_node=1)
      table = run_sweep(configs, executor=ex)

  A preempted or timed-out job is requeued (``TrainJob.checkpoint``) and resumes from its run's
  checkpoint; the cache folder must be on a file system the nodes share.
* Pool workers exit when the sweep's process dies. A plain script that uses the pool must guard
  its entry point with ``if __name__ == "__main__":`` (the pool starts workers by ``spawn``).
"""
from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from lrdlib.core.config import RunConfig
from lrdlib.core.grok import lasting_grok
from lrdlib.runs.cache import RunCache, train


class InlineExecutor(Executor):
    """Runs each submitted call immediately in this process (the default executor)."""

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - delivered through the future
            fut.set_exception(e)
        return fut


def failed_record(cfg: RunConfig, e: BaseException | str, tb: str | None = None) -> dict:
    err = e if isinstance(e, str) else f"{type(e).__name__}: {e}"
    return {"key": cfg.key(), "config": cfg.to_dict(), "status": "failed", "error": err, "traceback": tb}


class TrainJob:
    """One run as a picklable job: ``TrainJob()(cfg_dict, cache_spec, threads)`` trains it into the
    shared cache. Under submitit, ``checkpoint`` makes a preempted job requeue itself; the run then
    resumes from its checkpoint file."""

    def __call__(self, cfg_dict: dict, cache_spec: dict, threads: int | None = None) -> dict:
        import torch

        if threads:
            torch.set_num_threads(threads)
        cfg = RunConfig.from_dict(cfg_dict)
        try:
            return train(cfg, cache=RunCache.from_spec(cache_spec), progress=False)
        except Exception as e:  # noqa: BLE001 - a failed run becomes a row, not a crashed sweep
            return failed_record(cfg, e, traceback.format_exc())

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(TrainJob(), *args, **kwargs)


def _exit_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """Pool-worker initializer: a daemon thread ends this worker once ``parent`` is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def pool_size(device: str = "cpu") -> int:
    """Workers of a local process pool: ``$LRD_WORKERS`` if set; else one per core on a CPU and one
    on a GPU. Each worker gets cores // workers torch threads (at least 1)."""
    env = os.environ.get("LRD_WORKERS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"$LRD_WORKERS={env!r}: expected a positive whole number of workers, e.g. 2")
        return int(env)
    return 1 if device.startswith("cuda") else max(1, os.cpu_count() or 1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that exit with this one."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))


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
    sr = [np.nan if s["stable_rank"][-1] is None else s["stable_rank"][-1] for s in record["spectra"].values()]
    grok = lasting_grok(record)   # the lasting grok (lrdlib.core.grok.outcome); first_grok: the record's first
    return {**row, "grokked": grok is not None, "steps_to_grok": grok, "first_grok": record["steps_to_grok"],
            "final_val_acc": record["final_val_acc"], "max_val_acc": record["max_val_acc"],
            "final_train_acc": record["final_train_acc"], "final_srank": float(np.mean(sr)) if sr else np.nan,
            "steps_run": record["steps_run"], "wall_time_s": record["wall_time_s"]}


def missing_note(missing: Sequence[RunConfig], known: Sequence[dict]) -> str:
    """What training the ``missing`` runs will cost: their steps, and the hours that makes at the
    median ms/step of the ``known`` records made on the same device type (if any)."""
    steps = sum(c.steps for c in missing)
    device = missing[0].device.split(":")[0]
    rates = [r["ms_per_step"] for r in known if r.get("ms_per_step") and r["config"]["device"].split(":")[0] == device]
    when = (f", about {steps * float(np.median(rates)) / 3.6e6:.1f} h at {np.median(rates):.0f} ms per step "
            f"(the median of {len(rates)} records on {device}), divided by the workers" if rates else "")
    return f"{len(missing)} runs to train: {steps:,} steps{when}"


def run_sweep(configs: Sequence[RunConfig], *, labels: Sequence[str] | None = None,
              executor: Executor | str | None = None, workers: int | None = None,
              cache: RunCache | None = None, progress: bool | None = None, return_records: bool = False):
    """Train (or load) every config and return a pandas table, one row per config in order.

    labels: an optional ``arm`` label per config (a column of the table).
    executor: None (in this process), "process" (a local pool of ``workers``, default
        ``pool_size()``), or any object with ``submit(fn, *args)`` returning a job with ``.result()``
        (a ``concurrent.futures`` executor, a submitit executor).
    return_records: also return the list of full records (same order; ``failed`` records hold
        the config and the error only).
    Before training, it prints how many runs are missing and what they will cost (``missing_note``).
    Duplicated configs are trained once.
    """
    configs = list(configs)
    if labels is not None and len(labels) != len(configs):
        raise ValueError(f"labels has {len(labels)} entries for {len(configs)} configs")
    if isinstance(executor, str) and executor not in ("inline", "process"):
        raise ValueError(f"executor={executor!r}; valid: None/'inline', 'process', or an Executor/submitit executor object")
    cache = cache if cache is not None else RunCache()
    if progress is None:
        progress = not os.environ.get("TQDM_DISABLE")
    records: list[dict | None] = [cache.load(c) for c in configs]
    first: dict[str, int] = {}
    for i, r in enumerate(records):
        if r is None:
            first.setdefault(configs[i].key(), i)
    todo = list(first.values())
    if todo:
        cache.check_writable()
        print(missing_note([configs[i] for i in todo], [r for r in records if r is not None]), flush=True)
    bar = tqdm(total=len(configs), initial=len(configs) - len(todo), desc="runs", disable=not progress)
    spec = cache.spec()
    if executor == "process" and todo:
        n = min(workers or pool_size(configs[0].device), len(todo))
        threads = max(1, (os.cpu_count() or 1) // n)
        with process_pool(n) as ex:
            broken = _collect(todo, configs, records, {i: ex.submit(TrainJob(), configs[i].to_dict(), spec, threads)
                                                       for i in todo}, bar)
        if broken:   # a worker died (killed, out of memory): each interrupted run again, in a process of its own
            bar.write(f"a worker process died; {len(broken)} interrupted runs go on, each in a process of its own")
            for i in broken:
                with process_pool(1) as one:
                    _collect([i], configs, records, {i: one.submit(TrainJob(), configs[i].to_dict(), spec, threads)}, bar,
                             again=True)
    elif todo:
        ex = InlineExecutor() if executor in (None, "inline") else executor
        if isinstance(ex, InlineExecutor):   # one at a time: the bar moves as runs finish
            for i in todo:
                _collect([i], configs, records, {i: ex.submit(TrainJob(), configs[i].to_dict(), spec)}, bar)
        else:
            _collect(todo, configs, records, {i: ex.submit(TrainJob(), configs[i].to_dict(), spec) for i in todo}, bar)
    bar.close()
    for i, r in enumerate(records):
        if r is None:  # a duplicate of a config trained above
            records[i] = records[first[configs[i].key()]]
    table = pd.DataFrame([summarize(r) for r in records])
    if labels is not None:
        table.insert(0, "arm", list(labels))
    return (table, records) if return_records else table


def _collect(todo: list[int], configs: list[RunConfig], records: list, jobs: dict, bar: tqdm,
             again: bool = False) -> list[int]:
    """Fill ``records`` from the jobs as they finish (futures) or in order (other job objects); returns
    the runs a dead pool worker interrupted (``again``: a second death is a failed run)."""
    broken = []

    def one(i: int, job) -> None:
        try:
            rec = job.result()
        except BrokenProcessPool as e:
            if not again:
                broken.append(i)
                return
            rec = failed_record(configs[i], f"{type(e).__name__}: the worker process died while training this run "
                                            "(twice); in a plain script, guard the entry point with `if __name__ == '__main__':`")
        except Exception as e:  # noqa: BLE001 - a job the scheduler killed, an unpicklable config
            rec = failed_record(configs[i], e, traceback.format_exc())
        records[i] = rec
        bar.update(1)
        if rec["status"] == "failed":
            bar.write(f"run {rec['key']} failed: {rec['error']}")

    if all(isinstance(j, Future) for j in jobs.values()):
        back = {f: i for i, f in jobs.items()}
        for f in as_completed(back):
            one(back[f], f)
    else:
        for i, job in jobs.items():
            one(i, job)
    return broken


def grid(base: RunConfig, **axes: Iterable) -> list[RunConfig]:
    """The Cartesian product of ``base.replace(**point)`` over the given axes, e.g.
    ``grid(cfg, task__train_frac=[0.3, 0.5], decay__strength=[1e-3, 1e-2], seed=[0, 1])``;
    a ``seed`` axis also sets the task's split seed."""
    names = list(axes)
    out = []
    for values in itertools.product(*(list(axes[n]) for n in names)):
        point = dict(zip(names, values))
        if "seed" in point and "task__split_seed" not in point:
            point["task__split_seed"] = point["seed"]
        out.append(base.replace(**point))
    return out
