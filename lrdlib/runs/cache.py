"""Run records on disk: ``<cache>/<key>.json`` (the record, strict JSON, no pickle) and
``<key>.safetensors`` (final weights), keyed by ``RunConfig.key()``.

* Writes are atomic (a temporary file in the same folder, then ``os.replace``), so a process
  killed at any moment leaves either the old state or the complete new record, never half a
  file. A temporary file names its host and process; one left by a process that no longer runs
  (a kill during a write) is removed by the next ``RunCache`` on that host.
* Files get the permissions the umask allows (0644 under umask 022), so a cache shared on a
  cluster can be read by the group.
* ``load`` returns a record only if the config stored in it equals the requested one; an
  unreadable record or weights file counts as absent (the run is retrained).
* With a results store attached (``RunCache(store=ResultStore())``, what notebooks get at
  ``PROFILE=paper`` from ``lrdlib.runs.profiles.run_cache``), records are read from the store first;
  a run found only in this cache is copied into it; every run trained is saved to both, and the
  record returned is always the store's compact form, so a run gives the same numbers whether it
  was just trained or read back. A config with no record on its own device type reads the
  store's record of it made on the other type (``ResultStore.load``), if there is one.
* ``train(cfg)`` returns the record, training the run only when no record exists. A missing
  run is claimed first (``<key>.lock``, created atomically): a second process asking for the same
  run waits for the first one's record instead of training it twice; a claim left by a process
  that no longer runs is taken over. Training checkpoints to ``<key>.ckpt`` every 1000 steps and a
  killed run resumes from there, bit for bit (``lrdlib.core.training.run``).
* Bad state is an error, not a retrain: a record file that cannot be read, or whose key or config
  do not match, raises ``CorruptRecord`` naming the file.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lrdlib.core.config import RunConfig
from lrdlib.core.machine import processor
from lrdlib.core.model import Transformer, build_model
from lrdlib.core.training import run, strict_json
from lrdlib.runs.files import HOST as _HOST
from lrdlib.runs.files import alive, atomic_write, remove_stale_temporaries
from lrdlib.runs.paths import cache_dir
from lrdlib.runs.store import CorruptRecord, ResultStore, check_record, compact  # noqa: F401 (CorruptRecord re-exported)


class RunCache:
    """A folder of run records. ``root=None`` uses ``lrdlib.runs.paths.cache_dir()``; ``store``: a
    ``lrdlib.runs.store.ResultStore`` read first and written too (see the module doc)."""

    def __init__(self, root: str | Path | None = None, store=None):
        self.root = Path(root) if root is not None else cache_dir()
        self.store = store
        remove_stale_temporaries(self.root)

    def spec(self) -> dict:
        """What a worker process needs to open the same cache (``RunCache.from_spec``)."""
        return {"root": str(self.root), "store": None if self.store is None else str(self.store.root),
                "store_max_points": None if self.store is None else self.store.max_points}

    @classmethod
    def from_spec(cls, spec: dict) -> RunCache:
        store = ResultStore(spec["store"], spec.get("store_max_points")) if spec.get("store") else None
        return cls(spec["root"], store=store)

    def record_path(self, cfg: RunConfig) -> Path:
        return self.root / f"{cfg.key()}.json"

    def weights_path(self, cfg: RunConfig) -> Path:
        return self.root / f"{cfg.key()}.safetensors"

    def checkpoint_path(self, cfg: RunConfig) -> Path:
        return self.root / f"{cfg.key()}.ckpt"

    def check_writable(self) -> None:
        """Raise a clear error now, before a run trains, if its record cannot be written (here and,
        with a store, there)."""
        for folder, what in ((self.root, "run cache", ), *(((self.store.root, "results store"),) if self.store else ())):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=folder, prefix=f".probe.{_HOST}.{os.getpid()}.", suffix=".tmp"):
                    pass
            except OSError as e:
                raise ValueError(f"{what} {str(folder)!r} is not writable ({e.strerror}), so a run trained now would "
                                 "be lost; set $LRD_CACHE_DIR / $LRD_STORE_DIR or pass a writable folder") from e

    def load(self, cfg: RunConfig) -> dict | None:
        """The record of exactly this config (the store's copy first, if a store is attached), or
        None; failing both, the store's record of the same config made on the other device type
        (``ResultStore.load``: the same seeds, rounded differently)."""
        if self.store is not None:
            rec = self.store.load(cfg, any_device=False)
            if rec is not None:
                return rec
        rec = self._load_local(cfg)
        if rec is not None and self.store is not None:
            try:
                return self.store.save(cfg, rec)   # trained before the store was attached: copy it in
            except OSError:
                return compact(rec, self.store.max_points)   # a read-only store: serve the same compact form
        if rec is None and self.store is not None:
            return self.store.load(cfg)
        return rec

    def _load_local(self, cfg: RunConfig) -> dict | None:
        path = self.record_path(cfg)
        if not path.exists():
            return None
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CorruptRecord(f"{path}: cannot be read ({e}); delete it to retrain the run") from e
        return check_record(rec, cfg, path)

    def save(self, cfg: RunConfig, record: dict, state: dict[str, torch.Tensor] | None = None) -> dict:
        """Write the record (and final weights) here, and into the store if attached; return the
        record as it will be read back (the store's compact form when there is a store)."""
        if state is not None:  # weights first: a record on disk implies its weights are there
            self.save_weights(cfg, state)
        text = json.dumps(strict_json(record), allow_nan=False)
        atomic_write(self.record_path(cfg), lambda t: Path(t).write_text(text))
        return self.store.save(cfg, record) if self.store is not None else json.loads(text)

    def save_weights(self, cfg: RunConfig, state: dict[str, torch.Tensor], store: bool = False,
                     metadata: dict | None = None) -> None:
        """Write only the final weights of a run whose record is kept as it is (``trained_model``);
        ``store``: into the results store's ``weights/`` too, committed with the records;
        ``metadata``: what trained them (kept in the safetensors header as text)."""
        st = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        meta = {"key": cfg.key(), **{k: str(v) for k, v in (metadata or {}).items()}}
        paths = [self.weights_path(cfg)]
        if store and self.store is not None:
            paths.append(self.store.weights_path(cfg.key()))
        for path in paths:
            atomic_write(path, lambda t: save_file(st, t, metadata=meta))

    def load_weights(self, cfg: RunConfig) -> dict[str, torch.Tensor] | None:
        """The final weights of ``cfg``: the results store's committed copy first (the weights of the
        run its record describes), else the run cache's; None if absent or unreadable."""
        paths = [self.weights_path(cfg)]
        if self.store is not None:
            paths.insert(0, self.store.weights_path(cfg.key()))
        for path in paths:
            try:
                return load_file(path)
            except Exception:  # noqa: BLE001 - absent, or safetensors' own error for a corrupt file
                continue
        return None

    def claim(self, cfg: RunConfig, poll_s: float = 2.0) -> bool:
        """Claim the missing run ``cfg`` for this process (create ``<key>.lock`` atomically). Returns
        True once claimed; False if another process finished it meanwhile (its record is there). A
        claim of a process on this host that no longer runs is taken over."""
        lock = self.root / f"{cfg.key()}.lock"
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self.load(cfg) is not None:
                    return False
                host, _, pid = lock.read_text().partition(":") if lock.exists() else ("", "", "")
                if host == _HOST and pid.isdigit() and not alive(int(pid)):
                    lock.unlink(missing_ok=True)   # its owner died: take it over
                    continue
                time.sleep(poll_s)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{_HOST}:{os.getpid()}")
            if self.load(cfg) is not None:   # finished between our look and the claim
                self.release(cfg)
                return False
            return True

    def release(self, cfg: RunConfig) -> None:
        (self.root / f"{cfg.key()}.lock").unlink(missing_ok=True)


def train(cfg: RunConfig, *, cache: RunCache | None = None, use_cache: bool = True,
          progress: bool | None = None, desc: str | None = None) -> dict:
    """The record of ``cfg``: read from the cache (and its store), else trained now and saved.

    A run trained here is claimed first (``RunCache.claim``: two processes never train it twice),
    checkpointed every 1000 steps to ``<cache>/<key>.ckpt`` and resumed from there after a kill;
    the folders it will be saved to are checked for writing before it starts."""
    if not use_cache:
        return run(cfg, progress=progress, desc=desc)[0]
    cache = cache if cache is not None else RunCache()
    rec = cache.load(cfg)
    if rec is not None:
        return rec
    cache.check_writable()
    if not cache.claim(cfg):
        return cache.load(cfg)
    try:
        rec, state = run(cfg, progress=progress, desc=desc, checkpoint=cache.checkpoint_path(cfg))
        rec = cache.save(cfg, rec, state)
        cache.checkpoint_path(cfg).unlink(missing_ok=True)   # the record is safe: the checkpoint is done with
        return rec
    finally:
        cache.release(cfg)


def trained_model(cfg: RunConfig, cache: RunCache | None = None, progress: bool = False) -> Transformer:
    """The final model of a run: its saved weights (the results store's ``weights/`` first, which a
    fresh clone has), else retrained now.

    A retrain leaves an existing record as it is; it writes the weights to the run cache and, with a
    results store attached, to the store's ``weights/`` (committed beside the records, so that every
    other machine reads these weights instead of retraining), each file naming in its metadata the
    processor, thread count and torch that trained it. Where the record names another processor or
    thread count (or none), it warns that the weights are not bit for bit those of the run the record
    describes (rounding differs)."""
    cache = cache if cache is not None else RunCache()
    model = build_model(cfg.model, cfg.seed, "cpu")
    stored = cache.load(cfg)
    state = cache.load_weights(cfg) if stored is not None else None
    try:
        if state is not None:
            model.load_state_dict(state)
            return model
    except (RuntimeError, ValueError):  # weights of another shape or names: not this run's
        pass
    cache.check_writable()
    here = {"processor": processor(cfg.device), "threads": torch.get_num_threads(), "torch": torch.__version__}
    if stored is not None and (stored.get("processor"), stored.get("threads")) != (here["processor"], here["threads"]):
        warnings.warn(f"run {cfg.key()}: its record was made on {stored.get('processor')!r} with {stored.get('threads')} "
                      f"thread(s); retrained here on {here['processor']!r} with {here['threads']} for its weights, which "
                      "therefore differ from the run the record describes (rounding differs)", RuntimeWarning, stacklevel=2)
    rec, state = run(cfg, progress=progress)
    if stored is None or stored.get("key") != cfg.key():
        cache.save(cfg, rec)
    cache.save_weights(cfg, state, store=True, metadata=here)
    model.load_state_dict(state)
    return model
