"""Long jobs without a home-made scheduler: one focused test per defect fixed in the restructuring
(read-only stores, checkpoints and their refusal, stale temporaries, corrupt records, relative
folders, claims, strict verify logs, verify on a machine without CUDA, config validation, the
sweep's cost note, submitit). Tiny runs (p = 23, d = 16), well under a second each."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import lrdlib.core.training as lt
from lrdlib.core.config import RunConfig
from lrdlib.core.data import MAX_P, TaskConfig
from lrdlib.core.model import ModelConfig
from lrdlib.runs import cache as cache_mod
from lrdlib.runs import store as store_mod
from lrdlib.runs import verify as verify_mod
from lrdlib.runs.cache import RunCache, train, trained_model
from lrdlib.runs.files import HOST
from lrdlib.runs.paths import cache_dir, repo_root
from lrdlib.runs.store import CorruptRecord, ResultStore, compact, store_dir

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[1]
TINY = RunConfig(task=TaskConfig(p=23, train_frac=0.5, split_seed=0),
                 model=ModelConfig(vocab_size=24, dim=16, heads=2, mlp_dim=32),
                 steps=40, eval_every=10, batch_size=64)
SERIES = ("history", "spectra", "tangential", "final_singular_values", "steps_run", "status", "steps_to_grok")


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LRD_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.setenv("LRD_STORE_DIR", str(tmp_path / "default-store"))
    monkeypatch.setenv("TQDM_DISABLE", "1")


@pytest.fixture(scope="module")
def full_record():
    """TINY trained without a break (the reference of every resume)."""
    return lt.run(TINY, progress=False)[0]


def _hand_record(cfg: RunConfig, **extra) -> dict:
    return {"key": cfg.key(), "config": cfg.to_dict(), "status": "ok", **extra}


def _dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _interrupted(monkeypatch, ckpt: Path, after_steps: int = 25, every: int = 10) -> None:
    """Run TINY with a checkpoint and 'kill' it (KeyboardInterrupt) in step ``after_steps`` + 1."""
    real, calls = lt.train_step, {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] > after_steps:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(lt, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        lt.run(TINY, progress=False, checkpoint=ckpt, checkpoint_every=every)
    monkeypatch.setattr(lt, "train_step", real)
    assert ckpt.exists()


def _same_run(a: dict, b: dict) -> None:
    for k in SERIES:
        assert a[k] == b[k], k


# --------------------------------------------------------------------------- D1 a read-only store
def _read_only(folder: Path, monkeypatch) -> None:
    """Make ``folder`` read-only; as root (who ignores file modes) simulate it: every write
    into it raises PermissionError, as it would for any other user."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):   # root
        def denied(path) -> bool:
            return Path(path).resolve().is_relative_to(folder.resolve())

        real_tmp, real_write = cache_mod.tempfile.NamedTemporaryFile, store_mod.atomic_write

        def named_tmp(*a, dir=None, **k):
            if dir is not None and denied(dir):
                raise PermissionError(13, "Permission denied", str(dir))
            return real_tmp(*a, dir=dir, **k)

        def atomic_write(path, write):
            if denied(path):
                raise PermissionError(13, "Permission denied", str(path))
            return real_write(path, write)

        monkeypatch.setattr(cache_mod.tempfile, "NamedTemporaryFile", named_tmp)
        monkeypatch.setattr(store_mod, "atomic_write", atomic_write)


def test_d1_read_only_store_fails_before_training_and_still_serves_local_records(tmp_path, monkeypatch):
    cfg = TINY.replace(steps=10)
    plain = RunCache(tmp_path / "cache")
    full = train(cfg, cache=plain, progress=False)            # a run only in the local cache
    ro = tmp_path / "store"
    ResultStore(ro)
    _read_only(ro, monkeypatch)
    try:
        cache = RunCache(tmp_path / "cache", store=ResultStore(ro))
        monkeypatch.setattr(cache_mod, "run", lambda *a, **k: pytest.fail("trained before checking the store"))
        with pytest.raises(ValueError, match="results store .* is not writable"):
            train(cfg.replace(seed=1), cache=cache, progress=False)
        assert not cache.checkpoint_path(cfg.replace(seed=1)).exists()
        rec = cache.load(cfg)                                  # not PermissionError: the compact form, served
        assert rec == compact(full, cache.store.max_points)
        assert not cache.store.path(cfg.key()).exists()
    finally:
        ro.chmod(0o755)


# --------------------------------------------------------------------------- resume and checkpoints
def test_resume_from_a_checkpoint_is_bit_for_bit(tmp_path, monkeypatch, full_record):
    ckpt = tmp_path / "run.ckpt"
    _interrupted(monkeypatch, ckpt, after_steps=25, every=10)
    assert torch.load(ckpt, weights_only=True)["step"] == 20
    rec, _ = lt.run(TINY, progress=False, checkpoint=ckpt, checkpoint_every=10)
    assert rec["history"] == full_record["history"]
    _same_run(rec, full_record)
    assert rec["resumed_at"] == [20] and "resumed_at" not in full_record


def test_d2_checkpoint_of_changed_code_is_refused_deleted_and_the_run_restarts(tmp_path, monkeypatch, full_record):
    ckpt = tmp_path / "run.ckpt"
    _interrupted(monkeypatch, ckpt)
    monkeypatch.setattr(lt, "fingerprint", lambda cfg: "code-changed-since")
    with pytest.warns(RuntimeWarning, match="fingerprint differs"):
        rec, _ = lt.run(TINY, progress=False, checkpoint=ckpt, checkpoint_every=10 ** 6)
    assert not ckpt.exists()                                   # deleted, never resumed
    assert "resumed_at" not in rec and rec["history"]["step"][0] == 0
    _same_run(rec, full_record)


def _edit_missing_meter(state):
    del state["meter"]


def _edit_one_opt_fewer(state):
    state["opts"] = state["opts"][:-1]


def _edit_step_beyond_budget(state):
    state["step"] = 10 ** 6


@pytest.mark.parametrize("edit,why", [(_edit_missing_meter, "another layout"),
                                      (_edit_one_opt_fewer, "optimiser states"),
                                      (_edit_step_beyond_budget, "not an evaluation step")],
                         ids=["missing-meter", "one-opt-fewer", "step-1e6"])
def test_d6_checkpoint_of_another_layout_is_refused_deleted_and_the_run_completes(
        tmp_path, monkeypatch, full_record, edit, why):
    ckpt = tmp_path / "run.ckpt"
    _interrupted(monkeypatch, ckpt)
    state = torch.load(ckpt, weights_only=True)
    edit(state)
    torch.save(state, ckpt)
    with pytest.warns(RuntimeWarning, match=why):
        rec, _ = lt.run(TINY, progress=False, checkpoint=ckpt, checkpoint_every=10 ** 6)
    assert not ckpt.exists()
    assert rec["status"] == "ok" and rec["steps_run"] == TINY.steps and "resumed_at" not in rec
    _same_run(rec, full_record)


# --------------------------------------------------------------------------- D3 stale temporaries
def test_d3_stale_temporary_in_a_store_subfolder_is_removed_and_ignored_by_git(tmp_path):
    sub = tmp_path / "store" / "ab"
    sub.mkdir(parents=True)
    stale = sub / f".ab12.json.gz.{HOST}.{_dead_pid()}.x.tmp"
    live = sub / f".ab12.json.gz.{HOST}.{os.getpid()}.x.tmp"
    for p in (stale, live):
        p.write_text("half")
    ResultStore(tmp_path / "store")
    assert not stale.exists() and live.exists()
    csub = tmp_path / "cache" / "cd"
    csub.mkdir(parents=True)
    stale2 = csub / f".cd34.json.{HOST}.{_dead_pid()}.x.tmp"
    stale2.write_text("half")
    RunCache(tmp_path / "cache")
    assert not stale2.exists()
    rel = f"paper/results/runs/ab/.ab12.json.gz.{HOST}.12345.x.tmp"
    assert subprocess.run(["git", "check-ignore", "-q", rel], cwd=REPO).returncode == 0
    assert subprocess.run(["git", "check-ignore", "-q", "build/cache/x.ckpt.tmp"], cwd=REPO).returncode == 0


# --------------------------------------------------------------------------- D4, D15 corrupt records
@pytest.mark.parametrize("damage", ["truncated", "garbage", "not-gzip-json"])
def test_d4_truncated_or_corrupt_committed_record_raises_naming_the_file(tmp_path, damage):
    store = ResultStore(tmp_path / "store")
    store.save(TINY, _hand_record(TINY, history={"step": [0], "val_acc": [0.0]}))
    path = store.path(TINY.key())
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00garbage",
                      "not-gzip-json": __import__("gzip").compress(b"{not json")}[damage])
    with pytest.raises(CorruptRecord, match=path.name):
        store.load(TINY)
    with pytest.raises(CorruptRecord, match=path.name):
        list(store.records())
    with pytest.raises(CorruptRecord, match=path.name):     # the cache does not retrain over it either
        RunCache(tmp_path / "cache", store=store).load(TINY)


def test_d15_records_refuses_an_edited_record_and_a_copy_under_another_name(tmp_path):
    store = ResultStore(tmp_path / "store")
    store.write(TINY.key(), _hand_record(TINY))
    assert [r["key"] for r in store.records()] == [TINY.key()]
    copy = store.path("0" * 20)
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(store.path(TINY.key()), copy)                  # the same record under a second name
    with pytest.raises(CorruptRecord, match=copy.name):
        list(store.records())
    copy.unlink()
    edited = {**_hand_record(TINY), "config": TINY.replace(seed=7).to_dict()}   # config edited, key kept
    store.write(TINY.key(), edited)
    with pytest.raises(CorruptRecord, match=store.path(TINY.key()).name):
        list(store.records())
    with pytest.raises(CorruptRecord):
        store.load(TINY)


# --------------------------------------------------------------------------- D5 relative folders
def test_d5_relative_store_and_cache_dirs_resolve_against_the_repository_root(monkeypatch):
    root = repo_root(REPO)
    monkeypatch.setenv("LRD_STORE_DIR", "build/test-rel-store")
    monkeypatch.setenv("LRD_CACHE_DIR", "build/test-rel-cache")
    monkeypatch.chdir(REPO)
    at_root = (store_dir(), cache_dir())
    monkeypatch.chdir(REPO / "notebooks")
    assert (store_dir(), cache_dir()) == at_root == (root / "build" / "test-rel-store", root / "build" / "test-rel-cache")


# --------------------------------------------------------------------------- D9 claims
def test_d9_claim_waits_for_a_live_holder_and_takes_over_a_dead_ones(tmp_path):
    cache = RunCache(tmp_path / "cache")
    cfg = TINY
    lock = cache.root / f"{cfg.key()}.lock"
    holder = subprocess.Popen(["sleep", "30"])
    try:
        # 1. a live holder finishes the run: the second claimant waits, then gets False
        cache.root.mkdir(parents=True, exist_ok=True)
        lock.write_text(f"{HOST}:{holder.pid}")
        timer = threading.Timer(0.5, lambda: cache.save(cfg, _hand_record(cfg)))
        t0 = time.monotonic()
        timer.start()
        assert cache.claim(cfg, poll_s=0.02) is False
        assert time.monotonic() - t0 >= 0.4 and lock.exists()  # it waited; the holder's lock untouched
        timer.join()
        # 2. a live holder releases without a record: the claimant gets it
        other = cfg.replace(seed=1)
        lock2 = cache.root / f"{other.key()}.lock"
        lock2.write_text(f"{HOST}:{holder.pid}")
        timer = threading.Timer(0.5, lambda: lock2.unlink())
        t0 = time.monotonic()
        timer.start()
        assert cache.claim(other, poll_s=0.02) is True
        assert time.monotonic() - t0 >= 0.4 and lock2.read_text() == f"{HOST}:{os.getpid()}"
        timer.join()
        cache.release(other)
        assert not lock2.exists()
    finally:
        holder.kill()
        holder.wait()
    # 3. a lock of a dead process of this host is taken over at once
    third = cfg.replace(seed=2)
    lock3 = cache.root / f"{third.key()}.lock"
    lock3.write_text(f"{HOST}:{_dead_pid()}")
    t0 = time.monotonic()
    assert cache.claim(third, poll_s=5.0) is True and time.monotonic() - t0 < 4.0
    assert lock3.read_text() == f"{HOST}:{os.getpid()}"
    cache.release(third)


# --------------------------------------------------------------------------- D10, D11 verify
def test_d10_verify_log_is_strict_json(tmp_path):
    log = tmp_path / "verify.jsonl"
    verify_mod.log_check(log, {"runs": [{"max_abs_diff": float("inf"), "equal": False}], "nan": float("nan")})

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    (entry,) = [json.loads(line, parse_constant=refuse) for line in log.read_text().splitlines()]
    assert entry["runs"][0]["max_abs_diff"] is None and entry["nan"] is None


def test_d11_verify_skips_a_cuda_record_on_a_machine_without_cuda_and_rejects_negative_steps(tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: a cuda record can be replayed here")
    store = ResultStore(tmp_path / "store")
    gpu = TINY.replace(device="cuda")
    store.write(TINY.key(), _hand_record(TINY))
    store.write(gpu.key(), _hand_record(gpu, device="NVIDIA H100"))
    sample, skipped = verify_mod.choose(store, 1, 0, keys=[TINY.key(), gpu.key()])
    assert [r["key"] for r in sample] == [TINY.key()]
    assert [(r["key"], "lacks" in why and "cuda" in why) for r, why in skipped] == [(gpu.key(), True)]
    with pytest.raises(ValueError, match="max_steps=-5"):
        verify_mod.verify(1, 0, max_steps=-5, store=store)
    monkeypatch.setattr(verify_mod, "verify", lambda *a, **k: pytest.fail("verified with --max-steps -5"))
    with pytest.raises(SystemExit) as ex:
        verify_mod.main(["--max-steps", "-5"])
    assert ex.value.code not in (0, None)


# --------------------------------------------------------------------------- D13, D18 configs
def test_d13_a_modulus_beyond_max_p_is_named():
    with pytest.raises(ValueError, match=rf"p=100003.*p ≤ {MAX_P}"):
        TaskConfig(p=100003)


def test_d18_from_dict_refuses_unknown_fields_naming_them():
    d = TINY.to_dict()
    with pytest.raises(ValueError, match="unknown field.*'warmup'"):
        RunConfig.from_dict({**d, "warmup": 100})
    with pytest.raises(ValueError, match="unknown field.*'nesterov'.*in optim"):
        RunConfig.from_dict({**d, "optim": {**d["optim"], "nesterov": True}})
    assert RunConfig.from_dict(d) == TINY


# --------------------------------------------------------------------------- D16 trained_model
def test_d16_trained_model_warns_when_its_weights_come_from_another_processor(tmp_path):
    cfg = TINY.replace(steps=10)
    cache = RunCache(tmp_path / "cache")
    rec = _hand_record(cfg, processor="some other CPU", threads=1)
    cache.save(cfg, rec)                                       # a record, no weights file
    with pytest.warns(RuntimeWarning, match="some other CPU"):
        trained_model(cfg, cache)
    assert cache.weights_path(cfg).exists()
    assert cache.load(cfg) == json.loads(json.dumps(rec))      # the record is left as it is


# --------------------------------------------------------------------------- D17 the sweep's cost note
def test_d17_run_sweep_prints_what_it_will_train_before_training(tmp_path, monkeypatch, capsys):
    from lrdlib.runs.sweep import run_sweep

    cache = RunCache(tmp_path / "cache")
    a, b, c = (TINY.replace(seed=s, steps=20) for s in range(3))
    seen = []
    real = cache_mod.run

    def first_look(*args, **kw):
        if not seen:
            seen.append(capsys.readouterr().out)
        return real(*args, **kw)

    monkeypatch.setattr(cache_mod, "run", first_look)
    run_sweep([a, b], cache=cache, progress=False)
    assert "2 runs to train: 40 steps" in seen[0]                # printed before the first run trained
    assert " h at " not in seen[0]                               # nothing measured yet: no estimate
    capsys.readouterr()
    run_sweep([a, b, c], cache=cache, progress=False)
    out = capsys.readouterr().out
    assert "1 runs to train: 20 steps, about " in out and " h at " in out and "median of 2 records on cpu" in out


# --------------------------------------------------------------------------- submitit
def test_train_job_checkpoint_requeues_itself():
    submitit = pytest.importorskip("submitit")
    from lrdlib.runs.sweep import TrainJob

    spec = RunCache("/nonexistent-cache").spec()
    d = TrainJob().checkpoint(TINY.to_dict(), spec)
    assert isinstance(d, submitit.helpers.DelayedSubmission)
    assert isinstance(d.function, TrainJob) and d.args == (TINY.to_dict(), spec)


@pytest.mark.slow
def test_submitit_local_executor_trains_into_the_cache(tmp_path):
    submitit = pytest.importorskip("submitit")
    from lrdlib.runs.sweep import run_sweep

    ex = submitit.LocalExecutor(folder=str(tmp_path / "sub"))
    ex.update_parameters(timeout_min=5)
    cfgs = [TINY.replace(seed=s, steps=20) for s in range(2)]
    cache = RunCache(tmp_path / "cache")
    table, recs = run_sweep(cfgs, executor=ex, cache=cache, progress=False, return_records=True)
    assert list(table.status) == ["ok", "ok"]
    assert [r["key"] for r in recs] == [c.key() for c in cfgs]
    assert all(cache.load(c) == r for c, r in zip(cfgs, recs))


ROOT = Path(__file__).resolve().parents[1]


def test_d7_no_runner_of_our_own_and_pool_workers_die_with_their_parent():
    """The sitting runner is gone (nothing to orphan a notebook); the pool's side is
    tests/test_sweep.py::test_pool_workers_exit_when_the_sweep_process_is_killed."""
    assert not list((ROOT / "lrdlib").rglob("chunks.py")) and not list((ROOT / "lrdlib").rglob("suspend.py"))
    assert "sitting" not in (ROOT / "Makefile").read_text()


def test_d8_no_log_is_committed_and_verify_logs_to_the_build_folder():
    tracked = subprocess.run(["git", "ls-files", "paper/results"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert tracked and not [p for p in tracked if p.endswith(".jsonl") or p.endswith("run_times.json")]
    from lrdlib.runs import verify
    assert "build/verify.jsonl" in verify.__doc__ + verify.verify.__doc__


def test_d12_cuda_on_a_cpu_machine_is_named_before_anything_installs_or_trains():
    from lrdlib.runs.profiles import check_device
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=r"device='cuda' but CUDA is not available.*valid here: cpu.*TORCH=cuda"):
        check_device("cuda")
    make = (ROOT / "Makefile").read_text()
    assert "TORCH   ?= cpu" in make and "reproduce: venv check-device" in make   # the CUDA wheel only when asked


def test_d14_four_environment_variables_at_most():
    import re
    names = set()
    for p in (ROOT / "lrdlib").rglob("*.py"):
        names |= set(re.findall(r"\bLRD_[A-Z_]+\b", p.read_text()))
    assert names == {"LRD_CACHE_DIR", "LRD_STORE_DIR", "LRD_OUTPUT_DIR", "LRD_WORKERS"}, names


# ---------------------------------------------------------------- the protocol's endpoints and window
def _hist(acc, every=100, status="ok"):
    return {"status": status, "config": {"grok_threshold": 0.99, "grok_hold": 0, "steps": every * (len(acc) - 1)},
            "history": {"step": [every * i for i in range(len(acc))], "val_acc": acc}}


def test_endpoints_see_the_collapse_the_first_grok_hides():
    from lrdlib.core.grok import endpoints
    e = endpoints(_hist([0.1, 0.995, 0.5, 0.2, 0.99, 1, 1, 1]))
    assert (e["first"], e["stable"], e["stable_event"], e["collapses"]) == (100, 400, True, 1)
    assert e["post_grok_share"] == pytest.approx(4 / 6) and e["observed"] == 600
    late = endpoints(_hist([0.1, 0.999, 0.999, 0.8]))       # grokked, then fell at the end: censored
    assert (late["stable_event"], late["stable"], late["first"], late["collapses"]) == (False, 300, 100, 1)
    assert endpoints(_hist([0.1, 0.5, 0.999]))["stable_event"] is False    # one evaluation is not stable
    assert endpoints(_hist([0.1, 0.999, 1.0], status="diverged"))["stable_event"] is False


def test_hold5k_needs_a_hold_of_5000_steps_and_is_censored_at_the_latest_start_it_could_see():
    from lrdlib.core.grok import HOLD_LONG, endpoints
    assert HOLD_LONG == 5000
    ok = endpoints(_hist([0.1, 0.995] + [0.2] + [1.0] * 51))    # collapse at 200, then held 300-5300
    assert (ok["hold5k"], ok["hold5k_event"], ok["stable"]) == (300, True, 300)
    short = endpoints(_hist([0.1] + [1.0] * 50 + [0.5, 1.0]))   # held 100-5000 only: 4,900 steps
    assert (short["hold5k"], short["hold5k_event"]) == (5200 - 5000, False)
    assert endpoints(_hist([0.1] + [1.0] * 51))["hold5k"] == 100                   # exactly 5,000 counts
    assert endpoints(_hist([0.1, 1.0]))["hold5k"] == 0                           # too short a run: censored at 0
    assert endpoints(_hist([0.1] + [1.0] * 51, status="diverged"))["hold5k_event"] is False


def test_observe_window_runs_past_the_grok_and_stays_out_of_old_keys():
    from lrdlib.core.config import RunConfig
    from lrdlib.core.training import run
    base = RunConfig.from_dict(RunConfig().to_dict())
    assert "observe" not in base.to_dict() and base.replace(observe=0).key() == base.key()
    assert "observe" in base.replace(observe=50).to_dict() and base.replace(observe=50).key() != base.key()
    with pytest.raises(ValueError, match="observe"):
        base.replace(observe=-1)
    tiny = RunConfig.from_dict({**RunConfig().to_dict(), "task": {"op": "add", "p": 11, "train_frac": 0.9},
                                "model": {**RunConfig().to_dict()["model"], "vocab_size": 12, "dim": 16, "heads": 2,
                                          "mlp_dim": 32},
                                "steps": 400, "eval_every": 10, "early_stop": True, "grok_threshold": 0.05})
    rec, _ = run(tiny.replace(observe=30), progress=False)
    first = next(s for s, a in zip(rec["history"]["step"], rec["history"]["val_acc"]) if a >= 0.05)
    assert rec["steps_run"] == first + max(30, first)


def test_fingerprint_is_of_the_code_this_process_imported_not_of_files_edited_since(monkeypatch):
    """A run going on while its source is edited writes checkpoints of the code it runs: editing a
    core file afterwards (as a session does while a search trains) must not change the fingerprint,
    else the old layout is resumed by new code."""
    before = lt.fingerprint(TINY)

    def edited(self):   # every core file now reads differently
        return b"edited since"
    monkeypatch.setattr(Path, "read_bytes", edited)
    assert lt.fingerprint(TINY) == before
    assert lt.fingerprint(TINY.replace(seed=TINY.seed + 1)) != before


def test_a_failed_run_in_a_search_rung_is_named_not_a_key_error():
    from lrdlib.runs import halving as H
    with pytest.raises(RuntimeError, match="1 run\\(s\\) failed.*abc \\(KeyError: 'x'\\).*run the search again"):
        H.score([{"key": "abc", "status": "failed", "error": "KeyError: 'x'"}])
