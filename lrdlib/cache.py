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
"""
from __future__ import annotations

import json
import math
import os
import socket
import tempfile
from pathlib import Path

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
    """``obj`` with every non-finite float replaced by None (strict JSON has no NaN/Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def _config_dict(cfg: RunConfig) -> dict:
    return json.loads(json.dumps(cfg.to_dict()))


class RunCache:
    """A folder of run records. ``root=None`` uses ``lrdlib.paths.cache_dir()``."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_dir()
        remove_stale_temporaries(self.root)

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
        """The stored record of exactly this config, or None."""
        try:
            rec = json.loads(self.record_path(cfg).read_text())
        except (OSError, ValueError):
            return None  # absent, or not written by save() (atomic): treat as absent
        if not isinstance(rec, dict) or rec.get("key") != cfg.key() or rec.get("config") != _config_dict(cfg):
            return None
        return rec

    def save(self, cfg: RunConfig, record: dict, state: dict[str, torch.Tensor] | None = None) -> None:
        if state is not None:  # weights first: a record on disk implies its weights are there
            st = {k: v.detach().cpu().contiguous() for k, v in state.items()}
            atomic_write(self.weights_path(cfg), lambda t: save_file(st, t))
        text = json.dumps(strict_json(record), allow_nan=False)
        atomic_write(self.record_path(cfg), lambda t: Path(t).write_text(text))

    def load_weights(self, cfg: RunConfig) -> dict[str, torch.Tensor] | None:
        """The stored final weights, or None if absent or unreadable (truncated, not safetensors)."""
        try:
            return load_file(self.weights_path(cfg))
        except Exception:  # noqa: BLE001 - safetensors raises its own error types for corrupt files
            return None
