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

  (every job writes its record into the shared cache folder, which must be on a file system
  the nodes share; the sweep also gets it back from the job).
* With a chunk deadline (``lrdlib.chunks``: ``make paper-runs HOURS=2``), missing runs are
  trained fastest-first (suspended ones first) and only while they may start
  (``chunks.may_start``: they fit, or can be suspended at the deadline, ``lrdlib.suspend``); then
  ``DeadlineReached`` is raised, the suspended runs counted among those left (inline executor and
  process pool; a submitit executor is not limited).
* The process pool: its workers exit when the sweep's process dies (a kernel restart), and a
  worker that dies (killed, out of memory) costs no other run: the runs it interrupted are
  retrained each in a process of its own, and only one whose worker dies again is ``failed``.
  Like every ``multiprocessing`` pool started by ``spawn``, a plain script that uses it must
  guard its entry point with ``if __name__ == "__main__":``.
"""
from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import chunks
from .cache import RunCache
from .config import RunConfig
from .survival import lasting_grok
from .suspend import Suspended, started
from .training import train


class InlineExecutor(Executor):
    """Runs each submitted call immediately in this process (the default executor)."""

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - delivered through the future
            fut.set_exception(e)
        return fut


def _failed(cfg: RunConfig, e: BaseException | str, tb: str | None = None) -> dict:
    err = e if isinstance(e, str) else f"{type(e).__name__}: {e}"
    rec = {"key": cfg.key(), "config": cfg.to_dict(), "status": "failed", "error": err}
    if tb:
        rec["traceback"] = tb
    return rec


def _train_job(cfg_dict: dict, cache_spec: dict, threads: int | None) -> dict:
    """Worker entry point (top level, picklable): train one run into the shared cache (and store)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    cfg = RunConfig.from_dict(cfg_dict)
    try:
        return train(cfg, cache=RunCache.from_spec(cache_spec), progress=False)
    except Suspended as e:   # saved at the deadline: left for the next sitting, not failed
        return {"key": cfg.key(), "status": "left", "step": e.step}
    except chunks.DeadlineReached:   # the deadline passed between the pool's check and this one
        return {"key": cfg.key(), "status": "left", "step": 0}
    except Exception as e:  # noqa: BLE001 - a failed run becomes a row, not a crashed sweep
        return _failed(cfg, e, traceback.format_exc())


def _exit_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """Pool-worker initializer: a daemon thread ends this worker once ``parent`` is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def pool_size(device: str = "cpu") -> int:
    """Workers of a local process pool: ``$LRD_WORKERS`` if set; else one per core on a CPU (one
    torch thread each) and one on a GPU (runs one after another; a GPU sitting,
    ``benchmarks/gpu_sitting.sh``, sets ``$LRD_WORKERS`` so that several runs share the card)."""
    env = os.environ.get("LRD_WORKERS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"$LRD_WORKERS={env!r}: expected a positive whole number of workers, e.g. 2")
        return int(env)
    return 1 if device.startswith("cuda") else max(1, os.cpu_count() or 1)


def worker_threads(workers: int) -> int:
    """Torch threads per pool worker: ``$LRD_THREADS`` if set, else cores // workers (at least 1).
    Set it to 1 when two sittings share the cores (e.g. ``LRD_WORKERS=1 LRD_THREADS=1`` beside a
    two-worker sitting), so that no worker's threads wait on each other for a busy core."""
    env = os.environ.get("LRD_THREADS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"$LRD_THREADS={env!r}: expected a positive whole number of torch threads per worker, e.g. 1")
        return int(env)
    return max(1, (os.cpu_count() or 1) // workers)


def _process_pool(workers: int) -> ProcessPoolExecutor:
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
    sr = [s["stable_rank"][-1] for s in record["spectra"].values()]
    sr = [np.nan if v is None else v for v in sr]
    grok = lasting_grok(record)   # the lasting grok (survival.outcome); first_grok: the record's first
    return {**row, "grokked": grok is not None, "steps_to_grok": grok, "first_grok": record["steps_to_grok"],
            "final_val_acc": record["final_val_acc"], "max_val_acc": record["max_val_acc"],
            "final_train_acc": record["final_train_acc"], "final_srank": float(np.mean(sr)) if sr else np.nan,
            "steps_run": record["steps_run"], "wall_time_s": record["wall_time_s"]}


def run_sweep(configs: Sequence[RunConfig], *, labels: Sequence[str] | None = None,
              executor: Executor | str | None = None, workers: int | None = None,
              cache: RunCache | None = None, progress: bool | None = None, return_records: bool = False):
    """Train (or load) every config and return a pandas table, one row per config in order.

    labels: an optional ``arm`` label per config (a column of the table).
    executor: None (in-process), "process" (local pool of ``workers``, default ``pool_size()``:
        ``$LRD_WORKERS`` or one per core, each with ``worker_threads(workers)`` torch threads:
        ``$LRD_THREADS`` or cores/workers), or any object with ``submit(fn, *args)`` returning a
        future/job with ``.result()`` (submitit included).
    return_records: also return the list of full records (same order; ``failed`` records hold
        the config and the error only).

    Duplicated configs are trained once. Runs that raise get a ``failed`` row (not cached:
    the next sweep retries them); diverged runs are ordinary (cached) records.
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
    bar = tqdm(total=len(configs), initial=len(configs) - len(todo), desc="sweep", disable=not progress)
    limited = chunks.deadline() is not None and (executor in (None, "inline", "process"))
    if limited:
        todo = chunks.fastest_first(configs, todo, started(cache.root, [configs[i] for i in todo]))
    s_step = chunks.seconds_per_step() if limited else chunks.DEFAULT_S_PER_STEP
    if executor == "process" and todo:
        _run_pool(todo, configs, records, cache, bar, workers, s_step if limited else None)
    elif todo:
        ex = InlineExecutor() if executor in (None, "inline") else executor
        _run_executor(todo, configs, records, ex, cache.spec(), bar, s_step / 2 if limited else None)
    bar.close()
    left = [configs[i] for i in todo if records[i] is None]
    if left:
        rate = chunks.seconds_per_step(fallback=s_step) if limited else s_step   # the sitting's own, once measured
        raise chunks.DeadlineReached(chunks.note_missing(left, rate, chunks.budget_share(records)))
    for i, r in enumerate(records):
        if r is None:  # a duplicate of a config trained above
            records[i] = records[first[configs[i].key()]]
    table = pd.DataFrame([summarize(r) for r in records])
    if labels is not None:
        table.insert(0, "arm", list(labels))
    return (table, records) if return_records else table


def _finish(records: list, i: int, rec: dict, bar: tqdm) -> None:
    if rec.get("status") == "left":   # suspended at the deadline, or not started: still missing
        if rec["step"]:
            bar.write(f"run {rec['key']} suspended at step {rec['step']}")
        return
    records[i] = rec
    bar.update(1)
    if rec["status"] == "failed":
        bar.write(f"run {rec['key']} failed: {rec['error']}")


def _run_executor(todo: list[int], configs: list[RunConfig], records: list, ex: Any, spec: dict, bar: tqdm,
                  s_step: float | None = None) -> None:
    """One job per run on an inline, futures or submitit executor; fill ``records`` (inline: only
    the runs that fit before a chunk deadline when ``s_step`` is given)."""
    def collect(i: int, job) -> None:
        try:
            rec = job.result()
        except Exception as e:  # noqa: BLE001 - e.g. a job killed by the scheduler
            rec = _failed(configs[i], e)
        _finish(records, i, rec, bar)

    if isinstance(ex, InlineExecutor):  # run and collect one at a time: the bar moves as runs finish
        for i in todo:
            if s_step is None or chunks.may_start(configs[i], s_step):
                collect(i, ex.submit(_train_job, configs[i].to_dict(), spec, None))
        return
    jobs = {i: ex.submit(_train_job, configs[i].to_dict(), spec, None) for i in todo}
    if all(isinstance(j, Future) for j in jobs.values()):
        back = {f: i for i, f in jobs.items()}
        for f in as_completed(back):
            collect(back[f], f)
    else:  # e.g. submitit jobs: wait in submission order
        for i, job in jobs.items():
            collect(i, job)


def _run_pool(todo: list[int], configs: list[RunConfig], records: list, cache: RunCache, bar: tqdm,
              workers: int | None, s_step: float | None = None) -> None:
    """The local process pool, fed ``workers`` runs at a time in the order of ``todo`` (with a
    chunk deadline, ``s_step``: a run starts only if ``chunks.may_start``).

    A worker that dies breaks the pool and loses every run in flight (``concurrent.futures``
    ends the other workers). The runs that finished are kept; those the break interrupted are
    then trained each in a pool of its own (``workers`` at a time), so a run that kills its
    worker again fails alone and its neighbours finish; the runs not yet started go on in a new pool."""
    n = workers or pool_size()
    threads = worker_threads(n)
    spec = cache.spec()
    queue = list(todo)
    broken: list[int] = []

    def start(ex, futs: dict) -> None:
        # in a sitting, the speed measured in it so far replaces the estimate the sweep began with
        rate = None if s_step is None else chunks.seconds_per_step(fallback=s_step)
        while queue and len(futs) < n:
            i = queue.pop(0)
            if rate is not None and not chunks.may_start(configs[i], rate):
                continue   # may not start before the deadline: left for the next sitting
            futs[ex.submit(_train_job, configs[i].to_dict(), spec, threads)] = i

    while queue:
        with _process_pool(min(n, len(queue))) as ex:
            futs: dict = {}
            start(ex, futs)
            while futs:
                done, _ = wait(futs, return_when=FIRST_COMPLETED)
                for f in done:
                    i = futs.pop(f)
                    try:
                        _finish(records, i, f.result(), bar)
                    except BrokenProcessPool:
                        broken.append(i)
                    except Exception as e:  # noqa: BLE001
                        _finish(records, i, _failed(configs[i], e), bar)
                if broken:   # the pool is unusable: collect what is in flight, then a new pool
                    for f, i in futs.items():
                        try:
                            _finish(records, i, f.result(), bar)
                        except Exception:  # noqa: BLE001 - interrupted by the break
                            broken.append(i)
                    break
                start(ex, futs)
        broken = [i for i in broken if not _reload(records, i, configs[i], cache, bar)]
        if broken:
            _alone(broken, configs, records, spec, threads, n, bar)
            broken = []


def _alone(broken: list[int], configs: list[RunConfig], records: list, spec: dict, threads: int, n: int,
           bar: tqdm) -> None:
    """Train each run interrupted by a dead worker in a process of its own."""
    bar.write(f"a worker process died; {len(broken)} interrupted runs go on, each in a process of its own")

    def alone(i: int) -> dict:
        try:
            with _process_pool(1) as one:
                return one.submit(_train_job, configs[i].to_dict(), spec, threads).result()
        except BrokenProcessPool:
            return _failed(configs[i], "the worker process died while training this run (twice); in a plain "
                                       "script, guard the entry point with `if __name__ == '__main__':`")

    with ThreadPoolExecutor(max_workers=min(n, len(broken))) as th:
        for i, rec in zip(broken, th.map(alone, broken)):
            _finish(records, i, rec, bar)


def _reload(records: list, i: int, cfg: RunConfig, cache: RunCache, bar: tqdm) -> bool:
    """Take a run's record from the cache (it finished just before its pool broke)."""
    rec = cache.load(cfg)
    if rec is not None:
        _finish(records, i, rec, bar)
    return rec is not None


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
