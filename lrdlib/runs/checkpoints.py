"""Measures that need the whole model at several steps of a run (notebook 08's Fourier progress
measures), without a second training loop and without touching the run record or its key.

``states_along(cfg, every)`` trains ``cfg`` once through ``lrdlib.core.training.run`` with its
read-only probe hook and keeps a CPU copy of the model's state dict at step 0 and after every
``every``-th step (the weights the record evaluates at that step). ``measure_along`` turns those
states into JSON-able measures with a function of the caller, caches them beside the run cache
as ``<key>.<tag>-<every>.json`` (and, at ``PROFILE=paper``, in the results store's
``measures/`` folder, committed with the records) and saves the run's record into the run cache as ``train(cfg)``
would (the hook only reads, so it is the same record), so later ``train(cfg)`` calls read it back.
With ``hook=True`` the measure is instead a hook called inside the loop at every ``every``-th step
(``lrdlib.analysis.resize`` measures the loss on both sides of a rank projection that way).
``measure_many`` does either for several configs, in a process pool when ``workers`` > 1.
"""
from __future__ import annotations

import json
import traceback
from collections.abc import Sequence
from pathlib import Path

import torch

from lrdlib.core.config import RunConfig
from lrdlib.core.model import build_model
from lrdlib.core.training import run, strict_json
from lrdlib.runs.cache import RunCache
from lrdlib.runs.files import atomic_write
from lrdlib.runs.sweep import process_pool


def states_along(cfg: RunConfig, every: int, progress: bool = False) -> tuple[dict, dict, dict[int, dict]]:
    """(record, final state, {step: state dict on the CPU}) of ``cfg``: step 0 (the initialisation),
    every ``every``-th step and the last step, each taken after that step's optimiser and decay."""
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"every={every!r} must be a positive integer")
    states = {0: {k: v.detach().cpu().clone() for k, v in build_model(cfg.model, cfg.seed, "cpu").state_dict().items()}}

    def keep(step, probe) -> None:
        states[step] = {k: v.detach().cpu().clone() for k, v in probe.model.state_dict().items()}

    rec, state = run(cfg, progress=progress, probe_every=every, on_probe=keep)
    states[int(rec["steps_run"])] = {k: v.detach().cpu().clone() for k, v in state.items()}   # the last step too
    return rec, state, states


def measures_path(cache: RunCache, cfg: RunConfig, tag: str, every: int) -> Path:
    """The run cache's copy of the measures (the results store's, if any: ``ResultStore.measures_path``)."""
    return cache.root / f"{cfg.key()}.{tag}-{every}.json"


def _read_measures(cache: RunCache, key: str, tag: str, every: int):
    """The measures of run ``key`` from the results store, else from the run cache, or None."""
    paths = [cache.root / f"{key}.{tag}-{every}.json"]
    if cache.store is not None:
        paths.insert(0, cache.store.measures_path(key, tag, every))
    for path in paths:
        try:
            out = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(out, dict) and out.get("key") == key and "measures" in out:
            return out["measures"]
    return None


def measure_along(cfg: RunConfig, every: int, measure, tag: str, *, cache: RunCache | None = None,
                  use_cache: bool = True, hook: bool = False) -> tuple[dict, dict]:
    """(record, measures) of ``cfg``.

    ``hook`` False: ``measure(cfg, states, record)`` over ``states_along(cfg, every)`` (post hoc).
    ``hook`` True: ``measure(cfg)`` builds a hook, called as ``hook(step, probe)`` every ``every``
    steps inside the loop (``lrdlib.core.training.run``'s ``on_probe``; it must only read), and
    ``hook.result(record)`` gives the measures.

    Cached as ``<cache>/<key>.<tag>-<every>.json`` (``tag`` names the measure: change it when the
    measure changes). The record is saved to the run cache (and its store) when it is not there yet,
    and the record returned is the cache's copy."""

    if not tag or not tag.replace("_", "").isalnum():
        raise ValueError(f"tag={tag!r}: expected a non-empty name of letters, digits and _ (it is part of a file name)")
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"every={every!r} must be a positive integer")
    cache = cache if cache is not None else RunCache()
    if use_cache:
        rec = cache.load(cfg)   # (with a store: possibly the same run made on the other device type)
        out = None if rec is None else _read_measures(cache, rec["key"], tag, every)
        if out is not None:
            return rec, out
        cache.check_writable()
    if hook:
        h = measure(cfg)
        rec, state = run(cfg, probe_every=every, on_probe=h)
        out = h.result(rec)
    else:
        rec, state, states = states_along(cfg, every)
        out = measure(cfg, states, rec)
    if use_cache:
        if cache.load(cfg) is None:
            cache.save(cfg, rec, state)
        rec = cache.load(cfg) or rec
        text = json.dumps(strict_json({"key": cfg.key(), "every": every, "tag": tag, "measures": out}), allow_nan=False)
        paths = [measures_path(cache, cfg, tag, every)]
        if cache.store is not None:   # committed with the records: the chapter needs no retraining from a fresh clone
            paths.append(cache.store.measures_path(cfg.key(), tag, every))
        for path in paths:
            atomic_write(path, lambda t: Path(t).write_text(text))
    return rec, json.loads(json.dumps(strict_json(out), allow_nan=False))


def _measure_job(cfg_dict: dict, every: int, measure, tag: str, cache_spec: dict, threads: int | None, hook: bool):
    """Worker entry point (top level, picklable)."""
    if threads:
        torch.set_num_threads(threads)
    cfg = RunConfig.from_dict(cfg_dict)
    try:
        return measure_along(cfg, every, measure, tag, cache=RunCache.from_spec(cache_spec), hook=hook)
    except Exception as e:  # noqa: BLE001 - one failed run is reported, not a crashed batch
        return {"key": cfg.key(), "config": cfg.to_dict(), "status": "failed", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc()}, None


def measure_many(cfgs: Sequence[RunConfig], every: int, measure, tag: str, *, cache: RunCache | None = None,
                 workers: int = 1, hook: bool = False) -> list[tuple[dict, dict | None]]:
    """``measure_along`` for each config, in order; with ``workers`` > 1 in a process pool of
    single-threaded workers (``measure`` must then be a module-level function or class). A run that
    raises gives ``({"status": "failed", "error": ...}, None)``."""

    cache = cache if cache is not None else RunCache()
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be a positive integer")
    if workers == 1 or len(cfgs) < 2:
        return [_measure_job(c.to_dict(), every, measure, tag, cache.spec(), None, hook) for c in cfgs]
    with process_pool(min(workers, len(cfgs))) as ex:
        futs = [ex.submit(_measure_job, c.to_dict(), every, measure, tag, cache.spec(), 1, hook) for c in cfgs]
        return [f.result() for f in futs]
