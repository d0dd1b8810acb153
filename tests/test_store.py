"""The committed results store (lrdlib.runs.store), the cache that reads it first
(RunCache(store=...)), make verify (lrdlib.runs.verify), and the grok-hold definition
(RunConfig.grok_hold)."""
import json
import os

import pytest

from lrdlib.analysis.frames import records_cost
from lrdlib.core.config import RunConfig
from lrdlib.core.data import TaskConfig
from lrdlib.core.grok import steps_to_grok
from lrdlib.core.machine import processor
from lrdlib.core.model import ModelConfig
from lrdlib.core.training import run
from lrdlib.runs.cache import RunCache, train
from lrdlib.runs.store import CorruptRecord, ResultStore, compact, encode, read_file, round_sig, thin_indices
from lrdlib.runs.sweep import run_sweep
from lrdlib.runs.verify import choose, compare_histories, prefix, replay_steps, verify

pytestmark = pytest.mark.usefixtures("single_thread")

BASE = RunConfig(task=TaskConfig(p=23, train_frac=0.5, split_seed=0),
                 model=ModelConfig(vocab_size=24, dim=32, heads=4, mlp_dim=64),
                 steps=40, eval_every=10, batch_size=64)


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LRD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LRD_STORE_DIR", str(tmp_path / "store"))


@pytest.fixture(scope="module")
def record():
    return run(BASE)[0]


def _cache(tmp_path) -> RunCache:
    return RunCache(tmp_path / "cache", store=ResultStore(tmp_path / "store"))


# --------------------------------------------------------------------------- compaction
def test_round_sig():
    assert round_sig(0.123456789, 4) == 0.1235
    assert round_sig([1.0e-9 * 3.14159265, 7, None, "x", True], 3) == [3.14e-9, 7, None, "x", True]
    assert round_sig({"a": [2.718281828]}, 2) == {"a": [2.7]}


def test_thin_indices_keeps_ends_and_requested():
    assert thin_indices(5, 10) == [0, 1, 2, 3, 4]
    idx = thin_indices(1000, 10, keep=(537,))
    assert idx[0] == 0 and idx[-1] == 999 and 537 in idx and len(idx) == 11


def test_compact_is_idempotent_and_keeps_the_full_history(record):
    c = compact(record, max_points=3)
    assert compact(c, max_points=3) == c
    assert c["history"]["step"] == record["history"]["step"]           # every evaluation kept
    assert len(c["spectra"][record["targets"][0]]["stable_rank"]) == 3  # figure series thinned
    assert c["history"]["val_acc"] == [float(f"{v:.7g}") for v in record["history"]["val_acc"]]


def test_store_thins_to_its_max_points(record, tmp_path):
    store = ResultStore(tmp_path / "thin", max_points=3)
    rec = store.save(BASE, record)
    assert rec["compact"]["max_points"] == 3 and len(rec["spectra_step"]) == 3
    assert store.load(BASE) == rec
    assert ResultStore(tmp_path / "thin").max_points == 40                   # the default
    spec = RunCache(tmp_path / "c", store=ResultStore(tmp_path / "thin", max_points=5)).spec()
    assert RunCache.from_spec(spec).store.max_points == 5                     # and reaches the workers
    for bad in (1, "many", 2.5, True):
        with pytest.raises(ValueError, match="integer >= 2"):
            ResultStore(tmp_path / "thin", max_points=bad)


def test_a_store_at_paper_or_wherever_the_store_dir_is_set(monkeypatch):
    from lrdlib.runs.profiles import run_cache

    assert run_cache("smoke").store is not None                  # $LRD_STORE_DIR is set (the fixture)
    monkeypatch.delenv("LRD_STORE_DIR")
    assert run_cache("smoke").store is None and run_cache("paper").store is not None


def test_compact_refuses_failed_records():
    with pytest.raises(ValueError, match="failed record"):
        compact({"key": "k", "status": "failed", "error": "boom"})


def test_stored_record_is_small(record):
    assert len(json.dumps(compact(record), separators=(",", ":"))) < len(json.dumps(record))


# --------------------------------------------------------------------------- the cache with a store
def test_trained_run_is_stored_and_returned_in_stored_form(tmp_path):
    cache = _cache(tmp_path)
    rec = train(BASE, cache=cache, progress=False)
    stored = read_file(cache.store.path(BASE.key()))
    assert rec == stored and rec["compact"]["digits"] == 7
    # a new machine: no build cache, only the committed store
    fresh = RunCache(tmp_path / "other-cache", store=ResultStore(tmp_path / "store"))
    assert train(BASE, cache=fresh, progress=False) == rec
    assert not (tmp_path / "other-cache" / f"{BASE.key()}.json").exists()   # read, not retrained


def test_run_in_build_cache_only_is_copied_into_the_store(tmp_path):
    plain = RunCache(tmp_path / "cache")
    full = train(BASE, cache=plain, progress=False)
    cache = _cache(tmp_path)
    assert not cache.store.path(BASE.key()).exists()
    rec = cache.load(BASE)
    assert rec == compact(full) and cache.store.path(BASE.key()).exists()


def test_records_are_gzipped_byte_stable_and_plain_files_of_before_are_read_and_packed(tmp_path, record):
    import gzip

    store = ResultStore(tmp_path / "store")
    rec = store.save(BASE, record)
    path = store.path(BASE.key())
    assert path.name == f"{BASE.key()}.json.gz" and path.read_bytes() == encode(rec) == encode(read_file(path))
    assert json.loads(gzip.decompress(path.read_bytes())) == rec
    assert path.stat().st_size < len(json.dumps(rec, separators=(",", ":"))) / 2
    # a store written before: a plain <key>.json is read, listed, and packed into the same record
    path.unlink()
    plain = path.with_name(f"{BASE.key()}.json")
    plain.write_text(json.dumps(rec, separators=(",", ":")))
    assert store.load(BASE) == rec and store.files() == [plain] and list(store.records()) == [rec]
    assert store.pack() == 1 and not plain.exists() and store.load(BASE) == rec
    assert [p.name for p in store.files()] == [path.name] and list(store.records()) == [rec]
    (plain.parent / "ff0000.json").write_text("{not json")            # an unreadable file is an error
    assert [p.name for p in store.files()] == [path.name, "ff0000.json"]
    with pytest.raises(CorruptRecord, match="ff0000.json"):
        list(store.records())
    (plain.parent / "ff0000.json").unlink()
    path.write_bytes(path.read_bytes()[:50])                          # a truncated file: an error, not absent
    with pytest.raises(CorruptRecord, match=path.name):
        store.load(BASE)
    with pytest.raises(CorruptRecord, match=path.name):
        list(store.records())


def test_store_refuses_a_record_of_another_config(tmp_path):
    cache = _cache(tmp_path)
    train(BASE, cache=cache, progress=False)
    other = BASE.replace(seed=1)
    cache.store.write(other.key(), read_file(cache.store.path(BASE.key())))   # wrong content
    with pytest.raises(CorruptRecord, match=other.key()):
        cache.store.load(other)


def test_sweep_workers_write_into_the_store(tmp_path):
    cache = _cache(tmp_path)
    table, recs = run_sweep([BASE, BASE.replace(seed=1)], cache=cache, progress=False, return_records=True)
    assert (table.status == "ok").all()
    assert all(cache.store.path(r["key"]).exists() and r["compact"] for r in recs)


# --------------------------------------------------------------------------- verify
def test_compare_histories_exact_and_different(record):
    c = compact(record)
    assert compare_histories(c, c)["equal"]
    other = json.loads(json.dumps(c))
    other["history"]["val_loss"][2] += 1e-3
    d = compare_histories(c, other)
    assert not d["equal"] and d["first_step_differing"] == c["history"]["step"][2]
    assert d["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)


def test_compare_histories_groks_by_one_rule_on_both_prefixes():
    """A stored run that grokked late and its short replay: both prefixes are judged alike."""
    def rec(acc, stored_grok=None):
        n = len(acc)
        h = {"step": [100 * i for i in range(n)], "val_acc": acc, **{k: [0.0] * n for k in ("train_loss", "train_acc", "val_loss")}}
        return {"config": {"grok_threshold": 0.99, "grok_hold": 100}, "steps_to_grok": stored_grok, "history": h}

    full = rec([0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0], stored_grok=400)       # the lasting grok: 400
    short = prefix(full, 300)                                              # 1.0 at 200 did not last
    assert compare_histories(full, full)["steps_to_grok"] == (400, 400)
    assert compare_histories(short, short)["steps_to_grok"] == (None, None)   # not the full run's 400
    assert compare_histories(short, rec([0.0, 1.0, 1.0, 1.0]))["steps_to_grok"] == (None, 100)


def test_replay_steps_and_prefix(record):
    assert replay_steps(record, 0) == 40 and replay_steps(record, 1000) == 40
    assert replay_steps(record, 25) == 20 and replay_steps(record, 5) == 10    # down to an evaluation step, ≥ one interval
    assert prefix(record, 20)["history"]["step"] == [0, 10, 20]


def test_a_shorter_budget_replays_the_prefix_exactly(record):
    """What make verify relies on: the budget only bounds the loop."""
    short = run(BASE.replace(steps=20))[0]
    assert compare_histories(prefix(record, 20), short)["equal"]


@pytest.mark.slow
def test_verify_retrains_a_stored_run_identically(tmp_path):
    cache = _cache(tmp_path)
    train(BASE, cache=cache, progress=False)
    rows = verify(1, seed=0, store=cache.store)
    assert rows[0]["equal"] and rows[0]["made_here"] and rows[0]["key"] == BASE.key()
    assert verify(1, seed=0, max_steps=20, store=cache.store)[0]["equal"]


def test_verify_samples_the_runs_made_on_this_processor(tmp_path, capsys):
    """A record made on another model of CPU (or before records named the processor) is replayed
    only when asked for: its history may differ by rounding alone."""
    cache = _cache(tmp_path)
    cfgs = [BASE.replace(seed=s) for s in range(3)]
    for c in cfgs:
        train(c, cache=cache, progress=False)
    store = cache.store
    here = store._read(cfgs[0])
    assert here["processor"] == processor("cpu")
    for c, proc in ((cfgs[1], "Some Other CPU 9000"), (cfgs[2], None)):
        rec = store._read(c)
        rec.pop("processor")
        if proc:
            rec["processor"] = proc
        store.write(c.key(), rec)
    if processor("cpu") is not None:
        assert [r["key"] for r in choose(store, 3, seed=0)[0]] == [cfgs[0].key()]
        out = capsys.readouterr().out
        assert "1 of 3 stored runs can be replayed exactly here" in out and "1 made on another processor" in out
    assert {r["key"] for r in choose(store, 3, seed=0, any_processor=True)[0]} == {c.key() for c in cfgs}
    observed = BASE.replace(seed=100, observe=20, early_stop=True)   # a protocol seed, with an observation window
    other_seed = BASE.replace(seed=2000, observe=20, early_stop=True)   # notebook 07's crossed runs: not the protocol's
    for c in (observed, other_seed):
        train(c, cache=cache, progress=False)
    assert [r["key"] for r in choose(store, 3, seed=0, any_processor=True, observed=True)[0]] == [observed.key()]
    sample, skipped = choose(store, 3, 0, keys=[cfgs[2].key(), cfgs[1].key()])
    assert [r["key"] for r in sample] == [cfgs[2].key(), cfgs[1].key()] and skipped == []
    with pytest.raises(ValueError, match="keys \\['nope'\\]"):
        choose(store, 1, 0, keys=["nope"])
    log = tmp_path / "verify.jsonl"
    row = verify(1, store=store, keys=[cfgs[1].key()], max_steps=10, log=log)[0]
    assert row["equal"] and not row["made_here"]          # same machine really: the name was faked
    assert "made on Some Other CPU 9000" in capsys.readouterr().out
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["asked"] and entry["processor"] == processor("cpu") and entry["max_steps"] == 10
    assert entry["runs"] == [{"key": cfgs[1].key(), "made_on": "Some Other CPU 9000", "made_here": False, "equal": True,
                              "max_abs_diff": 0.0, "first_step_differing": None, "steps_to_grok": [None, None]}]


# --------------------------------------------------------------------------- grok_hold
def test_grok_hold_counts_only_a_lasting_grok():
    steps = [0, 100, 200, 300, 400, 500]
    collapse = [0, 1, 1, 0, 0, 0]
    assert steps_to_grok(steps, collapse) == 100                 # two in a row
    assert steps_to_grok(steps, collapse, hold=200) is None      # did not hold for 200 steps
    assert steps_to_grok(steps, [0, 1, 1, 1, 0, 1], hold=200) == 100
    assert steps_to_grok(steps, [0, 0, 0, 0, 1, 1], hold=300) == 400   # held to the end of the run
    assert steps_to_grok(steps, [0, 1, 0, 1, 1, 1], hold=100) == 300


def test_grok_hold_is_validated_and_enters_the_key():
    with pytest.raises(ValueError, match="grok_hold"):
        BASE.replace(grok_hold=-1)
    assert BASE.replace(grok_hold=100).key() != BASE.key()
    assert RunConfig.from_dict(BASE.replace(grok_hold=100).to_dict()).grok_hold == 100


def _planted(first=300, lasting=1025, every=25, n=161):
    steps = [every * i for i in range(n)]
    acc = [1.0 if (first <= s < first + 2 * every) or s >= lasting else 0.5 for s in steps]
    return {"key": "k", "status": "ok", "targets": ["q", "k"], "steps_to_grok": first,
            "config": {"steps": steps[-1], "grok_threshold": 0.99, "grok_hold": 0},
            "history": {"step": steps, "val_acc": acc},
            "spectra": {m: {"stable_rank": [s / 100 + j for s in steps]} for j, m in enumerate(["q", "k"])}}


def test_compact_keeps_first_and_lasting_grok_and_stays_idempotent():
    from lrdlib.analysis.frames import srank_at
    from lrdlib.analysis.survival import lasting_grok
    r = _planted()
    assert lasting_grok(r) == 1025 and r["steps_to_grok"] == 300
    c = compact(r, max_points=10)
    assert {300, 1025} <= set(c["spectra_step"]) and len(c["spectra_step"]) == 12
    assert compact(c, max_points=10) == c
    # the stable rank at a kept step is exact; between kept steps it is the last kept one's
    assert srank_at(c, 1025) == (1025, pytest.approx(10.25 + 0.5))
    s, v = srank_at(c, 1100)
    assert s == max(x for x in c["spectra_step"] if x <= 1100) and v == pytest.approx(s / 100 + 0.5)
    with pytest.raises(ValueError, match="step=-5"):
        srank_at(c, -5)


def test_records_cost_reads_the_records_not_the_clock():
    """A chapter's cost entry is the same whether its runs were trained now or read from the store."""
    recs = [{"steps_run": 4000, "wall_time_s": 200.04, "device": "cpu"},
            {"steps_run": 1500, "wall_time_s": 80.0, "device": "NVIDIA H100"},
            {"status": "failed", "config": {}}]
    both = records_cost(recs)
    assert both == {"runs": 3, "steps": 5500, "train_seconds": 280.0, "devices": ["NVIDIA H100", "cpu"],
                    "by_device": {"NVIDIA H100": 1, "cpu": 1}}
    one = records_cost(iter(recs[:1]))
    assert one == {"runs": 1, "steps": 4000, "train_seconds": 200.0, "devices": ["cpu"], "by_device": {"cpu": 1}}
    assert records_cost([]) == {"runs": 0, "steps": 0, "train_seconds": 0.0, "devices": [], "by_device": {}}


# --------------------------------------------------------------------------- records made on another device
def test_a_config_without_a_record_on_its_device_reads_the_other_devices(tmp_path):
    cache = _cache(tmp_path)
    rec = train(BASE, cache=cache, progress=False)
    gpu = BASE.replace(device="cuda")
    assert gpu.key() != BASE.key()
    # a GPU sitting's record of the same config (same init, split and batches; its own rounding)
    made_on_gpu = {**rec, "key": gpu.key(), "config": gpu.to_dict(), "device": "NVIDIA H100 80GB HBM3",
                   "final_val_acc": 0.123}
    cache.store.save(gpu, made_on_gpu)
    assert cache.store.load(BASE) == rec                                     # its own device's record first
    assert cache.store.load(gpu)["final_val_acc"] == 0.123
    cache.store.path(BASE.key()).unlink()
    got = cache.store.load(BASE)
    assert got["key"] == gpu.key() and got["config"]["device"] == "cuda"     # says which device made it
    assert cache.store.load(BASE, any_device=False) is None
    fresh = RunCache(tmp_path / "new-machine", store=ResultStore(tmp_path / "store"))
    assert fresh.load(BASE)["key"] == gpu.key()
    assert train(BASE, cache=fresh, progress=False)["key"] == gpu.key()      # read, not retrained
    assert not (tmp_path / "new-machine" / f"{BASE.key()}.json").exists()
    assert records_cost([got])["devices"] == ["NVIDIA H100 80GB HBM3"]
    assert cache.load(BASE) == compact(rec)            # the build cache's exact record beats the other device's
    assert cache.store.load(BASE, any_device=False) == compact(rec)   # (and is copied into the store)


def test_verify_samples_only_runs_this_machine_can_replay(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: every stored run can be replayed")
    cache = _cache(tmp_path)
    rec = train(BASE, cache=cache, progress=False)
    gpu = BASE.replace(device="cuda")
    cache.store.save(gpu, {**rec, "key": gpu.key(), "config": gpu.to_dict()})
    rows = verify(2, seed=0, max_steps=20, store=cache.store)
    assert [r["key"] for r in rows] == [BASE.key()] and rows[0]["equal"]
    assert "1 of 2 stored runs can be replayed exactly here" in capsys.readouterr().out


def test_pool_size(monkeypatch):
    from lrdlib.runs.sweep import pool_size

    monkeypatch.delenv("LRD_WORKERS", raising=False)
    assert pool_size("cpu") == (os.cpu_count() or 1) and pool_size("cuda") == 1
    monkeypatch.setenv("LRD_WORKERS", "12")
    assert pool_size("cuda") == 12 and pool_size() == 12
    for bad in ("0", "two", "-3"):
        monkeypatch.setenv("LRD_WORKERS", bad)
        with pytest.raises(ValueError, match=f"LRD_WORKERS={bad!r}"):
            pool_size()

