"""The cache key of every committed run record is what its stored config hashes to now: a change
to a config's fields or their defaults (``RunConfig.to_dict``) that would orphan the results
store fails here."""
import json
from pathlib import Path

import pytest

from lrdlib.core.config import RunConfig, seed_config
from lrdlib.core.data import TaskConfig
from lrdlib.core.model import ModelConfig
from lrdlib.runs.store import ResultStore, read_file

RUNS = Path(__file__).resolve().parents[1] / "paper" / "results" / "runs"
RECORDS = ResultStore(RUNS).files()


def test_the_store_is_committed_packed():
    """Every committed record is ``<key>.json.gz`` (``python -m lrdlib.store --pack`` converts plain
    files of before), and there are records to check: the tests below do not pass on an empty store."""
    assert RECORDS, "no committed records in paper/results/runs"
    plain = [p.name for p in RECORDS if not p.name.endswith(".json.gz")]
    assert not plain, f"{len(plain)} plain records: run `python -m lrdlib.store --pack` ({plain[:3]})"


def test_committed_record_keys_recompute():
    bad = []
    for path in RECORDS:
        rec = read_file(path)
        cfg = RunConfig.from_dict(rec["config"])
        if cfg.key() != rec["key"] or path.name.split(".")[0] != rec["key"] or cfg.to_dict() != _plain(rec["config"]):
            bad.append(path.name)
    assert not bad, f"{len(bad)} of {len(RECORDS)} committed records no longer match their key: {bad[:5]}"


def _plain(d):
    """A JSON-read config with lists back as tuples, as ``to_dict`` gives them."""
    if isinstance(d, dict):
        return {k: _plain(v) for k, v in d.items()}
    return tuple(_plain(v) for v in d) if isinstance(d, list) else d


def test_pair_task_dict_has_no_sequence_fields():
    d = seed_config("LRD", 0.01).to_dict()
    assert set(d["task"]) == {"op", "p", "train_frac", "split_seed"}


def test_recall_config_round_trips_and_needs_its_sequence_length():
    task = TaskConfig(op="recall", p=11, pairs=3, samples=200)
    cfg = RunConfig(task=task, model=ModelConfig(vocab_size=12, dim=32, heads=4, mlp_dim=64, seq_len=7), steps=10)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["task"]["pairs"] == 3 and RunConfig.from_dict(d) == cfg and RunConfig.from_dict(d).key() == cfg.key()
    assert cfg.key() != cfg.replace(task__samples=201).key()
    with pytest.raises(ValueError, match="model.seq_len=3"):
        RunConfig(task=task, model=ModelConfig(vocab_size=12, dim=32, heads=4, mlp_dim=64), steps=10)


def test_every_stored_record_has_one_spectra_step_per_spectra_evaluation():
    """A compact record's spectra series are thinned: ``spectra_step`` must name each kept evaluation."""

    from lrdlib.runs.store import spectra_steps
    bad = []
    for f in RECORDS:
        r = read_file(f)
        n = len(spectra_steps(r))
        if any(len(m["stable_rank"]) != n for m in (r.get("spectra") or {}).values()):
            bad.append(f.name)
    assert not bad, f"records whose spectra do not match their spectra steps: {bad}"


def test_the_store_stays_within_its_30_mb():
    """The issue's budget for the whole paper profile's committed records."""
    size = ResultStore(RUNS).size_bytes()
    assert size < 30e6, f"the results store takes {size / 1e6:.1f} MB (> 30 MB) in {len(RECORDS)} records"
