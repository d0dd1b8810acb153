"""The committed results store (lrdlib.store), the cache that reads it first (RunCache(store=...)),
FRESH=1 (fresh_since), the chunk deadline (lrdlib.chunks), make verify (lrdlib.verify), and the
grok-hold definition (RunConfig.grok_hold)."""
import json
import os
import time

import pytest

from lrdlib import chunks
from lrdlib.cache import RunCache
from lrdlib.config import RunConfig
from lrdlib.data import TaskConfig
from lrdlib.machine import machine, processor
from lrdlib.model import ModelConfig
from lrdlib.store import ResultStore, compact, encode, read_file, round_sig, thin_indices
from lrdlib.sweep import run_sweep
from lrdlib.training import run, steps_to_grok, train
from lrdlib.verify import choose, compare_histories, prefix, replay_steps, summarise_checks, verify

pytestmark = pytest.mark.usefixtures("single_thread")

BASE = RunConfig(task=TaskConfig(p=23, train_frac=0.5, split_seed=0),
                 model=ModelConfig(vocab_size=24, dim=32, heads=4, mlp_dim=64),
                 steps=40, eval_every=10, batch_size=64)


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LRD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LRD_STORE_DIR", str(tmp_path / "store"))
    for v in ("LRD_DEADLINE", "LRD_LEDGER", "LRD_FRESH_SINCE"):
        monkeypatch.delenv(v, raising=False)


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


def test_store_thins_to_its_max_points_from_the_environment(record, tmp_path, monkeypatch):
    monkeypatch.setenv("LRD_STORE_MAX_POINTS", "3")
    store = ResultStore(tmp_path / "thin")
    rec = store.save(BASE, record)
    assert rec["compact"]["max_points"] == 3 and len(rec["spectra_step"]) == 3
    assert store.load(BASE) == rec
    assert ResultStore(tmp_path / "thin", max_points=5).max_points == 5      # the argument wins
    spec = RunCache(tmp_path / "c", store=ResultStore(tmp_path / "thin", max_points=5)).spec()
    assert RunCache.from_spec(spec).store.max_points == 5                     # and reaches the workers
    for bad in ("1", "many", "2.5"):
        monkeypatch.setenv("LRD_STORE_MAX_POINTS", bad)
        with pytest.raises(ValueError, match=f"integer >= 2.*not '{bad}'"):
            ResultStore(tmp_path / "thin")


def test_a_store_at_every_profile_on_request(monkeypatch):
    from lrdlib.profiles import run_cache

    monkeypatch.delenv("LRD_STORE_ALL_PROFILES", raising=False)
    assert run_cache("smoke").store is None and run_cache("paper").store is not None
    monkeypatch.setenv("LRD_STORE_ALL_PROFILES", "1")
    assert run_cache("smoke").store is not None


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
    (plain.parent / "ff0000.json").write_text("{not json")            # left alone, not counted as packed
    assert store.pack() == 1 and not plain.exists() and store.load(BASE) == rec
    assert [p.name for p in store.files()] == [path.name, "ff0000.json"]
    path.write_bytes(path.read_bytes()[:50])                          # a truncated file: no record
    assert store.load(BASE) is None and list(store.records()) == []


def test_store_ignores_a_record_of_another_config(tmp_path):
    cache = _cache(tmp_path)
    train(BASE, cache=cache, progress=False)
    other = BASE.replace(seed=1)
    cache.store.write(other.key(), read_file(cache.store.path(BASE.key())))   # wrong content
    assert cache.store.load(other) is None


def test_fresh_since_retrains_once_then_reuses(tmp_path):
    cache = _cache(tmp_path)
    train(BASE, cache=cache, progress=False)
    old = time.time() - 100
    for p in (cache.store.path(BASE.key()), cache.record_path(BASE)):
        os.utime(p, (old, old))
    fresh = RunCache(tmp_path / "cache", store=ResultStore(tmp_path / "store"), fresh_since=time.time() - 1)
    assert fresh.load(BASE) is None                          # older than the FRESH=1 start: absent
    rec = train(BASE, cache=fresh, progress=False)           # retrained ...
    assert fresh.load(BASE) == rec                           # ... and reused by everyone after
    assert RunCache.from_spec(fresh.spec()).load(BASE) == rec


def test_sweep_workers_write_into_the_store(tmp_path):
    cache = _cache(tmp_path)
    table, recs = run_sweep([BASE, BASE.replace(seed=1)], cache=cache, progress=False, return_records=True)
    assert (table.status == "ok").all()
    assert all(cache.store.path(r["key"]).exists() and r["compact"] for r in recs)


# --------------------------------------------------------------------------- chunk deadline
def test_deadline_trains_only_what_fits_fastest_first(tmp_path, monkeypatch):
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("LRD_LEDGER", str(ledger))
    monkeypatch.setenv("LRD_NOTEBOOK", "99_test")
    # 1 s per step: a 40-step run does not fit in 20 s, a 10-step one does
    monkeypatch.setattr(chunks, "seconds_per_step", lambda *a, **k: 1.0)
    monkeypatch.setenv("LRD_DEADLINE", str(time.time() + 20))
    cache = _cache(tmp_path)
    long, short = BASE, BASE.replace(steps=10, seed=3)
    with pytest.raises(chunks.DeadlineReached, match="1 runs of this sweep are still missing"):
        run_sweep([long, short], cache=cache, progress=False)
    assert cache.load(short) is not None and cache.load(long) is None    # the short one trained
    entry = json.loads(ledger.read_text().splitlines()[-1])
    assert entry["notebook"] == "99_test" and entry["missing"] == 1 and entry["steps"] == 40
    assert entry["share"] == 1.0    # the one finished run trained its whole budget (no early stop)


def test_budget_share_is_the_median_share_of_finished_runs():
    def rec(run, budget, status="ok"):
        return {"status": status, "steps_run": run, "config": {"steps": budget}}
    recs = [rec(500, 1000), rec(1000, 1000), None, rec(200, 1000), {"status": "failed", "config": {"steps": 9}},
            rec(50, 1000, "left")]
    assert chunks.budget_share(recs) == 0.5 and chunks.budget_share([None]) is None


def test_design_bound_is_noted_and_the_last_one_per_unfinished_notebook_is_printed(tmp_path, monkeypatch):
    ledger = tmp_path / "ledger.jsonl"
    chunks.note_design_left(12, 240000)            # outside a sitting: nothing written, no error
    assert not ledger.exists()
    monkeypatch.setenv("LRD_LEDGER", str(ledger))
    monkeypatch.setenv("LRD_NOTEBOOK", "04_phase_diagram")
    chunks.note_design_left(40, 800000)
    chunks.note_design_left(30, 600000)            # the later bound replaces the earlier one
    monkeypatch.setenv("LRD_NOTEBOOK", "07_effective_learning_rate")
    chunks.note_design_left(5, 100000)
    entries = chunks.ledger_entries(ledger)
    entries.append({"notebook": "04_phase_diagram", "missing": 3, "steps": 60000, "seconds": 2400.0})   # 40 ms a step
    lines = chunks.design_lines(entries, ["04_phase_diagram"])
    assert len(lines) == 1 and "04_phase_diagram: at most 30 runs" in lines[0]
    assert "600000 steps, at most 6.7 h at 40 ms per step" in lines[0]     # 600000 × 0.04 s
    both = chunks.design_lines(entries)
    assert len(both) == 2 and "h at" not in both[1]                     # 07 has no measured rate here


def test_deadline_in_the_past_stops_train_before_it_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("LRD_DEADLINE", str(time.time() - 1))
    with pytest.raises(chunks.DeadlineReached):
        train(BASE, cache=_cache(tmp_path), progress=False)


def test_bad_deadline_is_named(monkeypatch):
    monkeypatch.setenv("LRD_DEADLINE", "tomorrow")
    with pytest.raises(ValueError, match="LRD_DEADLINE='tomorrow'"):
        chunks.deadline()


def test_run_chunk_rejects_bad_hours_and_notebooks():
    with pytest.raises(ValueError, match="hours=0"):
        chunks.run_chunk(0)
    with pytest.raises(ValueError, match="no notebook matches"):
        chunks.run_chunk(1, ["99"])


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
        assert [r["key"] for r in choose(store, 3, seed=0)] == [cfgs[0].key()]
        assert "2 of them were made on another processor" in capsys.readouterr().out
    assert {r["key"] for r in choose(store, 3, seed=0, any_processor=True)} == {c.key() for c in cfgs}
    assert [r["key"] for r in choose(store, 3, 0, keys=[cfgs[2].key(), cfgs[1].key()])] == [cfgs[2].key(), cfgs[1].key()]
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


def test_summarise_checks_counts_runs_by_where_they_were_made():
    run = lambda here, eq, first=None: {"made_here": here, "equal": eq, "first_step_differing": first}  # noqa: E731
    entries = [{"replayed": 3, "identical": 3, "made_here": True},                       # a backfilled check
               {"runs": [run(True, True), run(False, False, 200), run(False, False, 100)]},
               {"runs": [run(False, True), run(True, False, 700)]}]
    assert summarise_checks(entries) == {
        "checks": 3,
        "same": {"replayed": 5, "identical": 4, "first_step_differing_min": 700, "first_step_differing_max": 700},
        "other": {"replayed": 3, "identical": 1, "first_step_differing_min": 100, "first_step_differing_max": 200}}
    assert summarise_checks([])["same"] == {"replayed": 0, "identical": 0, "first_step_differing_min": None,
                                            "first_step_differing_max": None}


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
    from lrdlib.analysis import srank_at
    from lrdlib.survival import lasting_grok
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


def test_sittings_log_sums_per_notebook_and_a_missing_time_stays_unknown(tmp_path):
    log = tmp_path / "sittings.jsonl"
    chunks.log_sitting(log, {"notebook": "03_x", "status": "deadline", "seconds": 100.0, "new_records": 4, "machine": "cpu, 2 cores"})
    chunks.log_sitting(log, {"notebook": "03_x", "status": "complete", "seconds": 50.5, "new_records": 1, "machine": "cpu, 2 cores"})
    chunks.log_sitting(log, {"notebook": "04_y", "status": "deadline", "seconds": 7.0, "new_records": 0})
    chunks.log_sitting(log, {"notebook": "05_z", "status": "complete", "seconds": None})
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    t = chunks.sitting_totals(entries)
    assert t["03_x"] == {"seconds": 150.5, "seconds_timed": 150.5, "sittings": 2, "new_records": 5, "complete": True,
                         "machines": ["cpu, 2 cores"]}
    assert t["04_y"]["seconds"] == 7.0 and not t["04_y"]["complete"]
    assert t["05_z"]["seconds"] is None and t["05_z"]["complete"]     # complete, but one sitting was not timed
    assert t["05_z"]["seconds_timed"] == 0.0
    assert chunks.machine("cpu").startswith(f"cpu, {os.cpu_count()} cores")


def test_a_side_by_side_sitting_counts_its_share_of_the_machine(tmp_path):
    log = tmp_path / "sittings.jsonl"
    chunks.log_sitting(log, {"notebook": "07_x", "status": "deadline", "seconds": 100.0, "machine_share": 0.5})
    chunks.log_sitting(log, {"notebook": "07_x", "status": "deadline", "seconds": 30.0})
    t = chunks.sitting_totals([json.loads(line) for line in log.read_text().splitlines()])
    assert t["07_x"]["seconds"] == t["07_x"]["seconds_timed"] == 80.0


def test_run_chunk_side_by_side_runs_the_notebooks_at_once_sharing_the_workers(tmp_path, monkeypatch):
    """Two plain notebooks (no Jupyter) in a fake checkout: both run at the same time, each with
    its share of the workers and one thread each, and each logs its own line."""
    import lrdlib.paths

    for stem in ("91_a", "92_b"):
        cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": ["profile = 'quick'"]},
                 {"cell_type": "code", "metadata": {}, "source": [
                     "import json, os, pathlib, time\n", "t0 = time.time(); time.sleep(2)\n",
                     f"pathlib.Path('{stem}.json').write_text(json.dumps([t0, time.time(), profile, "
                     "os.environ['LRD_WORKERS'], os.environ['LRD_THREADS'], os.environ['OMP_NUM_THREADS'], "
                     "os.environ['LRD_NOTEBOOK']]))"]}]
        (tmp_path / "notebooks").mkdir(exist_ok=True)
        (tmp_path / "notebooks" / f"{stem}.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}}))
    monkeypatch.setattr(lrdlib.paths, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(chunks, "machine", lambda device: "cpu, test")
    monkeypatch.setenv("LRD_WORKERS", "2")
    assert chunks.run_chunk(0.1, ["91", "92"], plain=True, side_by_side=True) == 0
    a, b = (json.loads((tmp_path / "notebooks" / f"{s}.json").read_text()) for s in ("91_a", "92_b"))
    assert a[0] < b[1] and b[0] < a[1]                                   # they overlapped
    assert a[2:] == ["paper", "1", "1", "1", "91_a"] and b[2:] == ["paper", "1", "1", "1", "92_b"]
    lines = [json.loads(x) for x in (tmp_path / "sittings.jsonl").read_text().splitlines()]   # beside the store
    assert sorted(e["notebook"] for e in lines) == ["91_a", "92_b"]
    assert all(e["status"] == "complete" and e["machine_share"] == 0.5 and e["side_by_side"] == ["91_a", "92_b"]
               for e in lines)


def test_a_sitting_beside_another_logs_its_share_of_the_machine(tmp_path, monkeypatch):
    """One worker with one thread on two cores (a sitting started beside another) is half the
    machine; two workers are all of it; a GPU sitting counts whole."""
    assert chunks.cpu_share("cpu", 1, 1, cores=2) == 0.5
    assert chunks.cpu_share("cpu", 2, 1, cores=2) == chunks.cpu_share("cpu", 1, 2, cores=2) == 1.0
    assert chunks.cpu_share("cpu", 4, 1, cores=2) == 1.0 and chunks.cpu_share("cuda", 1, 1, cores=2) == 1.0
    import lrdlib.paths

    cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": ["profile = 'quick'"]},
             {"cell_type": "code", "metadata": {}, "source": ["x = 1"]}]
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "93_c.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}}))
    monkeypatch.setattr(lrdlib.paths, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(chunks, "machine", lambda device: "cpu, test")
    monkeypatch.setattr(chunks.os, "cpu_count", lambda: 2)
    monkeypatch.setenv("LRD_WORKERS", "1")
    monkeypatch.setenv("LRD_THREADS", "1")
    assert chunks.run_chunk(0.1, ["93"], plain=True) == 0
    (line,) = [json.loads(x) for x in (tmp_path / "sittings.jsonl").read_text().splitlines()]
    assert line["machine_share"] == 0.5 and "side_by_side" not in line
    assert chunks.sitting_totals([line])["93_c"]["seconds"] == pytest.approx(0.5 * line["seconds"], abs=0.1)


def test_records_cost_reads_the_records_not_the_clock():
    """A chapter's cost entry is the same whether its runs were trained now or read from the store."""
    from lrdlib.chunks import records_cost

    recs = [{"steps_run": 4000, "wall_time_s": 200.04, "device": "cpu"},
            {"steps_run": 1500, "wall_time_s": 80.0, "device": "NVIDIA H100"},
            {"status": "failed", "config": {}}]
    both = records_cost(recs)
    assert both == {"runs": 3, "steps": 5500, "train_seconds": 280.0, "devices": ["NVIDIA H100", "cpu"],
                    "by_device": {"NVIDIA H100": 1, "cpu": 1}}
    one = records_cost(iter(recs[:1]))
    assert one == {"runs": 1, "steps": 4000, "train_seconds": 200.0, "devices": ["cpu"], "by_device": {"cpu": 1}}
    assert records_cost([]) == {"runs": 0, "steps": 0, "train_seconds": 0.0, "devices": [], "by_device": {}}
    assert chunks.devices_phrase(both) == "1 on NVIDIA H100, 1 on cpu"
    assert chunks.devices_phrase(one) == "all 1 on cpu" and chunks.devices_phrase(records_cost([])) == "none trained"


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
    assert chunks.records_cost([got])["devices"] == ["NVIDIA H100 80GB HBM3"]
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
    assert "1 stored runs were made on a device this machine lacks" in capsys.readouterr().out


def test_seconds_per_step_override(monkeypatch):
    monkeypatch.setenv("LRD_S_PER_STEP", "0.004")
    assert chunks.seconds_per_step() == 0.004
    for bad in ("fast", "0", "-1"):
        monkeypatch.setenv("LRD_S_PER_STEP", bad)
        with pytest.raises(ValueError, match=f"LRD_S_PER_STEP={bad!r}"):
            chunks.seconds_per_step()
    monkeypatch.delenv("LRD_S_PER_STEP")
    assert chunks.seconds_per_step() == chunks.DEFAULT_S_PER_STEP       # an empty store: the default


def test_seconds_per_step_from_the_runs_made_on_this_processor(tmp_path):
    store = ResultStore()
    here = processor("cpu")
    for i, (proc, wall) in enumerate([(here, 10.0), (here, 30.0), (here, 20.0), ("Another CPU", 1.0), ("Another CPU", 1.0)]):
        cfg = BASE.replace(seed=i)
        rec = {"key": cfg.key(), "config": cfg.to_dict(), "status": "ok", "steps_run": 100, "wall_time_s": wall,
               "device": "cpu", "processor": proc}
        store.write(cfg.key(), rec)
    if here is None:
        assert chunks.measured_here() == [] and chunks.seconds_per_step() == chunks.DEFAULT_S_PER_STEP
    else:
        assert len(chunks.measured_here()) == 3
        assert chunks.seconds_per_step() == 0.2                        # the median of this processor's runs
    assert chunks.seconds_per_step([]) == chunks.DEFAULT_S_PER_STEP
    # once a sitting on this machine has logged the rate it measured, the next one starts from that
    log = ResultStore().root.parent / "sittings.jsonl"
    chunks.log_sitting(log, {"notebook": "03_x", "machine": machine("cpu"), "s_per_step": 0.07})
    chunks.log_sitting(log, {"notebook": "03_x", "machine": "cpu, 64 cores (Another CPU)", "s_per_step": 0.01})
    chunks.log_sitting(log, {"notebook": "03_x", "machine": machine("cpu"), "s_per_step": None})
    assert chunks.logged_rate() == 0.07 == chunks.seconds_per_step()
    assert chunks.seconds_per_step([]) == chunks.DEFAULT_S_PER_STEP   # records given: those alone


def test_a_sitting_notes_what_it_stores_and_measures_its_own_speed(tmp_path, monkeypatch, record):
    ledger = tmp_path / "ledger.jsonl"
    store = ResultStore()
    cfg = BASE
    rec = {**record, "steps_run": 2000, "wall_time_s": 100.0}
    store.save(cfg, rec)                                   # outside a sitting: no ledger
    assert not ledger.exists() and chunks.sitting_rate() is None
    monkeypatch.setenv("LRD_LEDGER", str(ledger))
    monkeypatch.setenv("LRD_NOTEBOOK", "99_test")
    store.save(cfg, rec)
    (e,) = chunks.ledger_entries()
    assert e["saved"] == cfg.key() and e["notebook"] == "99_test" and e["steps_run"] == 2000
    assert chunks.sitting_rate() == 0.05 and chunks.seconds_per_step() == 0.05 == chunks.seconds_per_step(fallback=1.0)
    # the upper quartile of the sitting's runs of at least MIN_RATE_STEPS steps, of one notebook if asked
    rows = [{"saved": "k", "notebook": nb, "steps_run": n, "wall_time_s": w}
            for nb, n, w in [("a", 1000, 10.0), ("a", 1000, 20.0), ("a", 1000, 30.0), ("a", 1000, 40.0),
                             ("a", 10, 100.0), ("b", 1000, 500.0)]]
    assert chunks.sitting_rate(rows, "a") == 0.04 and chunks.sitting_rate(rows) == 0.04
    assert chunks.sitting_rate(rows, "c") is None and chunks.sitting_rate([{"missing": 3, "seconds": 1.0}]) is None
    with open(ledger, "a") as f:
        f.write('{"saved": "cut sho')                      # a line cut short by a kill is skipped
    assert len(chunks.ledger_entries()) == 1
    monkeypatch.setenv("LRD_S_PER_STEP", "0.004")          # an explicit rate still wins
    assert chunks.seconds_per_step() == 0.004


def test_sweep_in_a_sitting_uses_the_speed_it_measures(tmp_path, monkeypatch):
    """A pool sweep re-estimates before each start: once the sitting has measured 1 s per step (after
    the first run), a second 200-step run no longer fits in the (at most) 120 s left, though it did
    at the sweep's starting estimate (1 ms per step); with less than ``MIN_SEGMENT_S`` left it is not
    started to be suspended either. (120 s, not less: on a loaded machine a worker's start-up alone
    can take half a minute.)"""
    monkeypatch.setenv("LRD_DEADLINE", str(time.time() + 120))
    monkeypatch.setattr(chunks, "measured_here", lambda: [{"status": "ok", "steps_run": 1000, "wall_time_s": 1.0}])
    cache = _cache(tmp_path)
    monkeypatch.setattr(chunks, "sitting_rate", lambda *a, **k: 1.0 if cache.store.path(BASE.key()).exists() else None)
    with pytest.raises(chunks.DeadlineReached, match="1 runs of this sweep are still missing"):
        run_sweep([BASE, BASE.replace(seed=1, steps=200)], cache=cache, executor="process", workers=1, progress=False)
    assert cache.load(BASE) is not None and cache.load(BASE.replace(seed=1, steps=200)) is None


def test_pool_size(monkeypatch):
    from lrdlib.sweep import pool_size

    monkeypatch.delenv("LRD_WORKERS", raising=False)
    assert pool_size("cpu") == (os.cpu_count() or 1) and pool_size("cuda") == 1
    monkeypatch.setenv("LRD_WORKERS", "12")
    assert pool_size("cuda") == 12 and pool_size() == 12
    for bad in ("0", "two", "-3"):
        monkeypatch.setenv("LRD_WORKERS", bad)
        with pytest.raises(ValueError, match=f"LRD_WORKERS={bad!r}"):
            pool_size()


def test_worker_threads(monkeypatch):
    from lrdlib.sweep import worker_threads

    monkeypatch.delenv("LRD_THREADS", raising=False)
    assert worker_threads(1) == max(1, os.cpu_count() or 1)
    assert worker_threads(10 ** 6) == 1
    monkeypatch.setenv("LRD_THREADS", "1")
    assert worker_threads(1) == 1
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv("LRD_THREADS", bad)
        with pytest.raises(ValueError, match=f"LRD_THREADS={bad!r}"):
            worker_threads(2)


def test_execute_plain_runs_code_cells_with_the_parameters_injected(tmp_path):
    nb = {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# title"]},
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": ["profile = 'quick'\n", "device = 'cpu'"]},
        {"cell_type": "code", "metadata": {}, "source": ["import pathlib\n",
                                                         "pathlib.Path('out.txt').write_text(f'{profile} {device}')"]},
        {"cell_type": "code", "metadata": {}, "source": ["if profile == 'smoke':\n", "    raise RuntimeError('cell three')"]},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "99_demo.ipynb"
    path.write_text(json.dumps(nb))
    here = os.getcwd()
    try:
        assert chunks.main(["--execute", str(path), "--device", "cuda"]) == 0
        assert (tmp_path / "out.txt").read_text() == "paper cuda"          # run in the notebook's folder
        with pytest.raises(RuntimeError, match="cell three") as err:
            chunks.execute_plain(path, {"profile": "smoke"})
        assert "99_demo.ipynb, cell 3" in "".join(getattr(err.value, "__notes__", []))
        with pytest.raises(ValueError, match="not a readable notebook"):
            chunks.execute_plain(tmp_path / "missing.ipynb", {})
    finally:
        os.chdir(here)
