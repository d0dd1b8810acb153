"""The committed results store: compact run records under ``paper/results/runs/``, so the paper
profile survives the machine that trained it.

A run cache (``lrdlib.runs.cache.RunCache``) holds full records and final weights in the git-ignored
build folder. The store holds, per run, one small gzipped JSON file ``<key[:2]>/<key>.json.gz`` (one
file per run: merge-friendly, runs made on several machines add files and never edit one; gzip with
no timestamp, so a record always gives the same bytes, a third of the plain JSON's size: ``zcat``
reads one; ``ResultStore.pack`` converts a store's plain ``<key>.json`` files of before, which are
still read):

* everything in the record except weights, with floats rounded to ``DIGITS`` significant digits
  (the training history: losses and accuracies) or ``FIGURE_DIGITS`` (spectra and angles, which
  only figures read);
* the spectra and angle series thinned to at most ``MAX_POINTS`` evaluations (evenly spaced,
  first and last kept, plus the evaluation at which the run grokked; their steps in
  ``record["spectra_step"]``, read through ``spectra_steps(record)``); the loss and accuracy
  history is kept at every evaluation, so steps-to-grok and collapses are exact.

``compact(record)`` is idempotent, so a record read back from the store equals the one written,
and a run retrained later (``make verify``) is compared with its stored copy after the same
compaction: equal when the arithmetic is the same (same device type, same torch).
"""
from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path

from lrdlib.core.config import RunConfig
from lrdlib.core.grok import lasting_grok
from lrdlib.core.training import strict_json
from lrdlib.runs.files import atomic_write, remove_stale_temporaries
from lrdlib.runs.paths import env_dir, repo_root

DIGITS = 7          # float32 carries 7.2 significant digits: the history is kept to what was computed
FIGURE_DIGITS = 4   # spectra, norms and angles: read by figures only
MAX_POINTS = 40     # evaluations kept of the spectra and angle series
_SERIES = ("spectra", "tangential")
SUFFIX = ".json.gz"   # a stored record; ``.json`` (plain): the form before, still read


def store_dir() -> Path:
    """``<repo>/paper/results/runs`` (``$LRD_STORE_DIR`` if set)."""
    env = env_dir("LRD_STORE_DIR")
    if env is not None:
        return env
    root = repo_root()
    if root is None:
        raise ValueError("the results store lives in a checkout of the repository (paper/results/runs); "
                         "run from inside one or set $LRD_STORE_DIR")
    return root / "paper" / "results" / "runs"


def encode(record: dict) -> bytes:
    """A record as the store writes it: strict compact JSON, gzipped with no name or timestamp
    (the same record, the same bytes)."""
    text = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def read_file(path: Path) -> dict:
    """A stored record from ``path`` (``.json.gz`` or a plain ``.json`` of before); raises
    ``OSError`` or ``ValueError`` when the file is absent or not a record's JSON."""
    data = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (EOFError, gzip.BadGzipFile, OSError) as e:
            raise ValueError(f"{path}: not a complete gzip file ({e})") from None
    return json.loads(data)


def round_sig(x, digits: int):
    """``x`` (a float, or nested lists/dicts of them) rounded to ``digits`` significant digits;
    ints, strings, None and non-finite values unchanged (non-finite become None in strict JSON)."""
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        if not math.isfinite(x) or x == 0.0:
            return x
        return float(f"{x:.{digits}g}")
    if isinstance(x, dict):
        return {k: round_sig(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [round_sig(v, digits) for v in x]
    return x


def thin_indices(n: int, max_points: int, keep: tuple[int, ...] = ()) -> list[int]:
    """At most ``max_points`` (plus ``keep``) indices of range(n), evenly spaced, first and last included."""
    if n <= max_points:
        return list(range(n))
    idx = {round(i * (n - 1) / (max_points - 1)) for i in range(max_points)}
    return sorted(idx | {k for k in keep if 0 <= k < n})


def _thin_series(series: dict, idx: list[int]) -> dict:
    """Every list-valued leaf of a per-matrix series dict restricted to ``idx``."""
    out = {}
    for k, v in series.items():
        if isinstance(v, dict):
            out[k] = _thin_series(v, idx)
        elif isinstance(v, list):
            out[k] = [v[i] for i in idx if i < len(v)]
        else:
            out[k] = v
    return out


def _max_points(value: int | None) -> int:
    """``value`` (default ``MAX_POINTS``): the evaluations a stored record keeps of its spectra and
    angle series; an integer ≥ 2 (the first and the last evaluation are always kept)."""
    raw = MAX_POINTS if value is None else value
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 2:
        raise ValueError(f"max_points={raw!r}: expected an integer >= 2 (the first and the last evaluation are always kept)")
    return raw


def spectra_steps(record: dict) -> list[int]:
    """The evaluation steps of ``record["spectra"]``: every evaluation in a training record, the
    kept ones in a compact (stored) record."""
    return list(record.get("spectra_step") or record["history"]["step"])


def compact(record: dict, max_points: int = MAX_POINTS) -> dict:
    """The store's form of a record (idempotent: ``compact(compact(r)) == compact(r)``)."""
    if record.get("status") == "failed":
        raise ValueError(f"run {record.get('key')}: a failed record is not stored (it is retried); error: {record.get('error')}")
    rec = json.loads(json.dumps(strict_json(record), allow_nan=False))
    base = spectra_steps(rec)          # after one compaction: the steps kept of the spectra series
    groks = {rec.get("steps_to_grok"), lasting_grok(rec)}   # the first and the lasting grok stay evaluated
    keep = set(base) if rec.get("compact") else set(   # already thinned: keep every evaluation it kept
        base[i] for i in thin_indices(len(base), max_points, tuple(sorted(base.index(g) for g in groks if g in base))))
    if rec.get("spectra") is not None:
        rec["spectra"] = round_sig(_thin_series(rec["spectra"], [i for i, s in enumerate(base) if s in keep]),
                                   FIGURE_DIGITS)
    rec["spectra_step"] = [s for s in base if s in keep]
    tang = rec.get("tangential")
    if tang is not None:               # the same evaluations (it has none at step 0)
        rec["tangential"] = round_sig(_thin_series(tang, [i for i, s in enumerate(tang["step"]) if s in keep]),
                                      FIGURE_DIGITS)
    rec["final_singular_values"] = round_sig(rec.get("final_singular_values"), FIGURE_DIGITS)
    rec["final_attention"] = round_sig(rec.get("final_attention"), FIGURE_DIGITS)
    rec["history"] = round_sig(rec["history"], DIGITS)
    for k in ("final_train_acc", "final_val_acc", "max_val_acc", "commutativity_ceiling"):
        if k in rec:
            rec[k] = round_sig(rec[k], DIGITS)
    rec["wall_time_s"] = round_sig(rec.get("wall_time_s"), 4)
    rec["ms_per_step"] = round_sig(rec.get("ms_per_step"), 4)
    rec["compact"] = {"digits": DIGITS, "figure_digits": FIGURE_DIGITS, "max_points": max_points}
    return rec


class CorruptRecord(ValueError):
    """A record file that exists but cannot be used: unreadable, or its key or config do not match."""


def check_record(rec, cfg: RunConfig | None, path: Path) -> dict:
    """``rec`` if it is a record of ``cfg`` (or, with ``cfg`` None, of the config it holds, under the
    key its file is named after); else ``CorruptRecord`` naming ``path`` and what is wrong."""
    if not isinstance(rec, dict) or "config" not in rec or "key" not in rec:
        raise CorruptRecord(f"{path}: not a run record (no key or config); delete it to retrain the run")
    try:
        own = RunConfig.from_dict(rec["config"])
    except (ValueError, TypeError, KeyError) as e:
        raise CorruptRecord(f"{path}: its config cannot be read ({e})") from e
    want = cfg if cfg is not None else own
    if rec["key"] != want.key() or own.key() != want.key() or not path.name.startswith(want.key()):
        raise CorruptRecord(f"{path}: holds key {rec['key']!r} for a config whose key is {own.key()!r} "
                            f"(expected {want.key()!r}, the file's name): edited or copied under another name")
    return rec


class ResultStore:
    """The folder of compact records (default ``store_dir()``), and beside it (``measures/``) the
    measures that ``lrdlib.runs.checkpoints`` computes along a run (notebook 08's progress measures).

    A run is looked up by its config's key, which includes the device. When a config has no record
    made on its own device type, ``load`` returns the record of the same config made on the other
    type (``cpu`` / ``cuda``): the initialisation, the split and the batch order are drawn on the
    CPU whatever the device, so the two histories differ by rounding alone and seeds stay paired
    across methods. The record says which device made it (``record["device"]``, the config's
    ``device``; ``record["processor"]`` the CPU model or GPU that computed it, see ``lrdlib.core.machine``);
    ``lrdlib.analysis.frames.records_cost`` lists the devices of a chapter's runs."""

    DEVICE_TYPES = ("cpu", "cuda")

    def __init__(self, root: str | Path | None = None, max_points: int | None = None):
        self.root = Path(root) if root is not None else store_dir()
        self.max_points = _max_points(max_points)
        self.measures_root = self.root.parent / "measures"
        remove_stale_temporaries(self.root)

    def path(self, key: str) -> Path:
        """Where the record of ``key`` is written (``<key[:2]>/<key>.json.gz``)."""
        return self.root / key[:2] / f"{key}{SUFFIX}"

    def _plain(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def file(self, key: str) -> Path:
        """The file that holds ``key``'s record: ``path(key)``, or a plain ``.json`` of before."""
        p = self.path(key)
        return p if p.exists() or not self._plain(key).exists() else self._plain(key)

    def _read(self, cfg: RunConfig) -> dict | None:
        """The record of ``cfg``, None if it has no file; ``CorruptRecord`` if its file is unusable (a
        damaged committed record is never silently retrained over)."""
        path = self.file(cfg.key())
        if not path.exists():
            return None
        try:
            rec = read_file(path)
        except (OSError, ValueError) as e:
            raise CorruptRecord(f"{path}: cannot be read ({e}); restore it with git checkout, or delete it to retrain") from e
        return check_record(rec, cfg, path)

    def load(self, cfg: RunConfig, any_device: bool = True) -> dict | None:
        """The stored record of exactly this config, or None; with ``any_device``, failing that, the
        record of the same config made on the other device type (see the class docstring)."""
        rec = self._read(cfg)
        if rec is not None or not any_device:
            return rec
        own = cfg.device.split(":")[0]
        for other in self.DEVICE_TYPES:
            if other != own and (rec := self._read(cfg.replace(device=other))) is not None:
                return rec
        return None

    def measures_path(self, key: str, tag: str, every: int) -> Path:
        """Where the measures ``tag`` (taken every ``every`` steps) of the run ``key`` are kept."""
        return self.measures_root / key[:2] / f"{key}.{tag}-{every}.json"

    def weights_path(self, key: str) -> Path:
        """Where the final weights of the run ``key`` are kept, for the few runs whose weights a
        chapter reads (``lrdlib.runs.cache.trained_model``): ``weights/<key[:2]>/<key>.safetensors``."""
        return self.root.parent / "weights" / key[:2] / f"{key}.safetensors"

    def save(self, cfg: RunConfig, record: dict) -> dict:
        """Store ``record`` (compacted) and return the stored form."""
        rec = compact(record, self.max_points)
        self.write(cfg.key(), rec)
        return rec

    def write(self, key: str, record: dict) -> None:
        """Write ``record`` as it is (``save`` compacts first) to ``path(key)``, atomically; a plain
        file of before for the same key is removed."""
        data = encode(record)
        atomic_write(self.path(key), lambda t: Path(t).write_bytes(data))
        self._plain(key).unlink(missing_ok=True)

    def files(self) -> list[Path]:
        """Every record file, sorted (plain ``.json`` files of before included)."""
        return sorted([*self.root.glob(f"*/*{SUFFIX}"), *self.root.glob("*/*.json")])

    def records(self) -> Iterator[dict]:
        """Every stored record, in file order; ``CorruptRecord`` for a file that cannot be read or whose
        key does not match its config and its name (an edited record, a copy under another name)."""
        for p in self.files():
            try:
                rec = read_file(p)
            except (OSError, ValueError) as e:
                raise CorruptRecord(f"{p}: cannot be read ({e})") from e
            yield check_record(rec, None, p)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def pack(self) -> int:
        """Rewrite every plain ``<key>.json`` record of before as ``<key>.json.gz`` (the same record);
        returns how many. An unreadable file raises (nothing is packed over it)."""
        n = 0
        for p in sorted(self.root.glob("*/*.json")):
            rec = read_file(p)
            self.write(p.name[:-len(".json")], rec)
            n += 1
        return n


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="The committed results store (paper/results/runs).")
    ap.add_argument("--pack", action="store_true", help="rewrite plain <key>.json records as <key>.json.gz")
    a = ap.parse_args(argv)
    store = ResultStore()
    if a.pack:
        print(f"packed {store.pack()} records in {store.root}")
    print(f"{len(store.files())} records, {store.size_bytes() / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
