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
  ``PROFILE=paper`` from ``lrdlib.profiles.run_cache``), records are read from the store first;
  a run found only in this cache is copied into it; every run trained is saved to both, and the
  record returned is always the store's compact form, so a run gives the same numbers whether it
  was just trained or read back. A config with no record on its own device type reads the
  store's record of it made on the other type (``ResultStore.load``), if there is one.
* ``fresh_since`` (``$LRD_FRESH_SINCE``, seconds since the epoch; ``make ... FRESH=1`` sets it):
  records written before that time count as absent, so everything is retrained once, and runs
  trained after it (by this or another process) are reused.
"""
from __future__ import annotations

import json
import math
import os
import socket
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .config import RunConfig
from .paths import cache_dir

_HOST = socket.gethostname().replace(".", "-")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then rename onto ``path``; the file gets mode 0666 & ~umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files left in ``folder`` by writers on this host that are no longer
    running; returns them. Temporaries of live processes and of other hosts are kept."""
    gone = []
    for p in folder.glob(f".*.{_HOST}.*.tmp") if folder.is_dir() else ():
        parts = p.name.split(".")
        pid = parts[-3] if len(parts) >= 4 else ""
        if pid.isdigit() and not _alive(int(pid)):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def strict_json(obj):
    """``obj`` as data that ``json.dumps(..., allow_nan=False)`` accepts: every non-finite float
    (Python or numpy) replaced by None (strict JSON has no NaN/Infinity), numpy scalars as Python
    numbers and bools, tuples as lists, dict keys that JSON cannot take (tuples, numpy scalars) as
    ``str(key)``. Recursive; anything else is returned unchanged."""
    if isinstance(obj, dict):
        return {_json_key(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.generic) and isinstance(obj.item(), (bool, int, float)):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def _json_key(k):
    return k if k is None or isinstance(k, (str, int, float, bool)) else str(k)


def _config_dict(cfg: RunConfig) -> dict:
    return json.loads(json.dumps(cfg.to_dict()))


class RunCache:
    """A folder of run records. ``root=None`` uses ``lrdlib.paths.cache_dir()``; ``store``: a
    ``lrdlib.store.ResultStore`` read first and written too; ``fresh_since``: see the module doc."""

    def __init__(self, root: str | Path | None = None, store=None, fresh_since: float | None = None):
        self.root = Path(root) if root is not None else cache_dir()
        self.store = store
        env = os.environ.get("LRD_FRESH_SINCE")
        self.fresh_since = fresh_since if fresh_since is not None else (float(env) if env else None)
        remove_stale_temporaries(self.root)

    def spec(self) -> dict:
        """What a worker process needs to open the same cache (``RunCache.from_spec``)."""
        return {"root": str(self.root), "store": None if self.store is None else str(self.store.root),
                "store_max_points": None if self.store is None else self.store.max_points,
                "fresh_since": self.fresh_since}

    @classmethod
    def from_spec(cls, spec: dict) -> RunCache:
        from .store import ResultStore

        store = ResultStore(spec["store"], spec.get("store_max_points")) if spec.get("store") else None
        return cls(spec["root"], store=store, fresh_since=spec.get("fresh_since"))

    def _fresh(self, path: Path) -> bool:
        """Whether the file at ``path`` may be used (written after ``fresh_since``, if set)."""
        if self.fresh_since is None:
            return True
        try:
            return path.stat().st_mtime >= self.fresh_since
        except OSError:
            return False

    def record_path(self, cfg: RunConfig) -> Path:
        return self.root / f"{cfg.key()}.json"

    def weights_path(self, cfg: RunConfig) -> Path:
        return self.root / f"{cfg.key()}.safetensors"

    def check_writable(self) -> None:
        """Raise a clear error now, before a run trains, if records cannot be written here."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=f".probe.{_HOST}.{os.getpid()}.", suffix=".tmp"):
                pass
        except OSError as e:
            raise ValueError(f"run cache {str(self.root)!r} is not writable ({e.strerror}); set $LRD_CACHE_DIR "
                             "or pass RunCache(<a writable folder>)") from e

    def load(self, cfg: RunConfig) -> dict | None:
        """The record of exactly this config (the store's copy first, if a store is attached), or
        None; failing both, the store's record of the same config made on the other device type
        (``ResultStore.load``: the same seeds, rounded differently)."""
        if self.store is not None:
            rec = self.store.load(cfg, any_device=False)
            if rec is not None and self._fresh(self.store.file(cfg.key())):
                return rec
        rec = self._load_local(cfg)
        if rec is not None and self.store is not None:
            return self.store.save(cfg, rec)   # trained before the store was attached: copy it in
        if rec is None and self.store is not None:
            other = self.store.load(cfg)
            if other is not None and self._fresh(self.store.file(other["key"])):
                return other
        return rec

    def _load_local(self, cfg: RunConfig) -> dict | None:
        path = self.record_path(cfg)
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # absent, or not written by save() (atomic): treat as absent
        if not isinstance(rec, dict) or rec.get("key") != cfg.key() or rec.get("config") != _config_dict(cfg):
            return None
        return rec if self._fresh(path) else None

    def save(self, cfg: RunConfig, record: dict, state: dict[str, torch.Tensor] | None = None) -> dict:
        """Write the record (and final weights) here, and into the store if attached; return the
        record as it will be read back (the store's compact form when there is a store)."""
        if state is not None:  # weights first: a record on disk implies its weights are there
            self.save_weights(cfg, state)
        text = json.dumps(strict_json(record), allow_nan=False)
        atomic_write(self.record_path(cfg), lambda t: Path(t).write_text(text))
        return self.store.save(cfg, record) if self.store is not None else json.loads(text)

    def save_weights(self, cfg: RunConfig, state: dict[str, torch.Tensor]) -> None:
        """Write only the final weights of a run whose record is kept as it is (``trained_model``)."""
        st = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        atomic_write(self.weights_path(cfg), lambda t: save_file(st, t))

    def load_weights(self, cfg: RunConfig) -> dict[str, torch.Tensor] | None:
        """The stored final weights, or None if absent or unreadable (truncated, not safetensors)."""
        try:
            return load_file(self.weights_path(cfg)) if self._fresh(self.weights_path(cfg)) else None
        except Exception:  # noqa: BLE001 - safetensors raises its own error types for corrupt files
            return None
