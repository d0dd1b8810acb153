"""Run records on disk: ``<cache>/<key>.json`` (the record, JSON, no pickle) and
``<key>.safetensors`` (final weights), keyed by ``RunConfig.key()``.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so a process
killed at any moment leaves either the old state or the complete new record, never half a file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import RunConfig
from .paths import cache_dir


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class RunCache:
    """A folder of run records. ``root=None`` uses ``lrdlib.paths.cache_dir()``."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_dir()

    def record_path(self, cfg: RunConfig) -> Path:
        return self.root / f"{cfg.key()}.json"

    def weights_path(self, cfg: RunConfig) -> Path:
        return self.root / f"{cfg.key()}.safetensors"

    def load(self, cfg: RunConfig) -> dict | None:
        path = self.record_path(cfg)
        if not path.exists():
            return None
        try:
            rec = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # not written by save() (atomic); treat as absent
        return rec if isinstance(rec, dict) and rec.get("key") == cfg.key() else None

    def save(self, cfg: RunConfig, record: dict, state: dict[str, torch.Tensor] | None = None) -> None:
        if state is not None:  # weights first: a record on disk implies its weights are there
            st = {k: v.detach().cpu().contiguous() for k, v in state.items()}
            _atomic_write(self.weights_path(cfg), lambda t: save_file(st, t))
        text = json.dumps(record, allow_nan=True)
        _atomic_write(self.record_path(cfg), lambda t: Path(t).write_text(text))

    def load_weights(self, cfg: RunConfig) -> dict[str, torch.Tensor] | None:
        path = self.weights_path(cfg)
        return load_file(path) if path.exists() else None
