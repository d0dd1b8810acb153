"""lrdlib.suspend: a run suspended at a deadline and resumed gives the uninterrupted run's record
bit for bit (every optimiser family, a decay and a projection), a state from elsewhere is not used,
and a sitting's sweep starts resumable runs that do not fit, suspends and resumes them."""
import json
import time

import pytest
import torch

from lrdlib import chunks, suspend
from lrdlib.cache import RunCache
from lrdlib.config import RunConfig
from lrdlib.data import TaskConfig
from lrdlib.decay import DecayConfig
from lrdlib.model import ModelConfig
from lrdlib.optim import OptimConfig
from lrdlib.sweep import run_sweep
from lrdlib.training import run, train

pytestmark = pytest.mark.usefixtures("single_thread")

BASE = RunConfig(task=TaskConfig(p=23, train_frac=0.5, split_seed=0),
                 model=ModelConfig(vocab_size=24, dim=32, heads=4, mlp_dim=64),
                 steps=50, eval_every=10, batch_size=64)   # 2 batches and a bit per epoch: mid-epoch stops
ARMS = {
    "adamw+lrd": BASE.replace(decay=DecayConfig(kind="lrd_ns", strength=0.01)),
    "luon": BASE.replace(optim=OptimConfig(kind="luon", luon_lambda=0.5)),
    "muon+fixed_norm": BASE.replace(optim=OptimConfig(kind="muon"), decay=DecayConfig(kind="fixed_norm", strength=2.0)),
    "adamw, q/k lr x4": BASE.replace(optim=OptimConfig(target_lr_scale=4.0)),
}
TIMING = ("wall_time_s", "ms_per_step")


@pytest.fixture(autouse=True)
def _no_sitting(monkeypatch):
    for v in ("LRD_DEADLINE", "LRD_LEDGER", "LRD_S_PER_STEP", "LRD_SUSPEND"):
        monkeypatch.delenv(v, raising=False)


def _same(a: dict, b: dict) -> None:
    a, b = ({k: v for k, v in r.items() if k not in (*TIMING, "resumed_at")} for r in (a, b))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("arm", list(ARMS))
def test_suspended_twice_and_resumed_gives_the_same_record_and_weights(arm, tmp_path):
    cfg = ARMS[arm]
    whole, w_whole = run(cfg)
    path = suspend.state_path(tmp_path, cfg)
    for at in (10, 20):   # a deadline already past: suspended at the next evaluation of each segment
        with pytest.raises(suspend.Suspended, match=f"suspended at step {at} of 50") as e:
            run(cfg, suspension=suspend.Suspension(path, deadline=0.0))
        assert e.value.step == at and path.exists()
    resumed, w_resumed = run(cfg, suspension=suspend.Suspension(path, deadline=None))
    _same(whole, resumed)
    assert resumed["resumed_at"] == [10, 20] and "resumed_at" not in whole
    assert resumed["steps_run"] == whole["steps_run"] == 50 and resumed["wall_time_s"] > 0
    assert w_whole.keys() == w_resumed.keys()
    assert all(torch.equal(w_whole[k], w_resumed[k]) for k in w_whole)


def test_a_state_from_another_machine_is_discarded(tmp_path):
    cfg = ARMS["adamw+lrd"]
    path = suspend.state_path(tmp_path, cfg)
    with pytest.raises(suspend.Suspended):
        run(cfg, suspension=suspend.Suspension(path, deadline=0.0))
    state = torch.load(path, weights_only=True)
    state["where"] = {**state["where"], "threads": state["where"]["threads"] + 1}
    torch.save(state, path)
    with pytest.warns(UserWarning, match="not here"):
        rec, _ = run(cfg, suspension=suspend.Suspension(path, deadline=None))
    assert "resumed_at" not in rec and not path.exists()        # started over, the file removed
    _same(rec, run(cfg)[0])


def test_an_unreadable_or_foreign_state_is_discarded(tmp_path):
    cfg = ARMS["luon"]
    path = suspend.state_path(tmp_path, cfg)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable"):
        assert suspend.load(path, cfg, torch.device("cpu")) is None
    assert not path.exists()
    with pytest.raises(suspend.Suspended):
        run(ARMS["muon+fixed_norm"], suspension=suspend.Suspension(path, deadline=0.0))   # another run's state
    with pytest.warns(UserWarning, match="the state of run"):
        assert suspend.load(path, cfg, torch.device("cpu")) is None
    assert not path.exists()


def test_a_decay_with_state_is_not_resumable_and_probes_do_not_suspend(tmp_path):
    adaptive = BASE.replace(decay=DecayConfig(kind="adaptive_lowrank"))
    assert not suspend.resumable(adaptive) and all(suspend.resumable(c) for c in ARMS.values())
    with pytest.raises(ValueError, match="cannot be combined"):
        run(BASE, probe_every=10, on_probe=lambda s, p: None,
            suspension=suspend.Suspension(suspend.state_path(tmp_path, BASE), deadline=0.0))


def test_lrd_suspend_turns_suspension_off_and_rejects_other_values(monkeypatch):
    monkeypatch.setenv("LRD_SUSPEND", "0")
    assert not suspend.enabled() and not suspend.resumable(BASE)
    monkeypatch.setenv("LRD_SUSPEND", "yes")
    with pytest.raises(ValueError, match="LRD_SUSPEND='yes'"):
        suspend.enabled()


def test_may_start_lets_a_resumable_run_start_with_a_segment_left(monkeypatch):
    now = time.time()
    monkeypatch.setenv("LRD_DEADLINE", str(now + chunks.MIN_SEGMENT_S + 60))
    long = BASE.replace(steps=100_000)
    assert not chunks.fits(long, 1.0, now)
    assert chunks.may_start(long, 1.0, now) and not chunks.may_start(long, 1.0, now, resumable=False)
    assert not chunks.may_start(long, 1.0, now + 120)                       # less than a segment left
    assert not chunks.may_start(long.replace(decay=DecayConfig(kind="adaptive_lowrank")), 1.0, now)
    assert chunks.may_start(BASE.replace(steps=10), 1.0, now + 120)          # the whole run fits


def test_fastest_first_resumes_suspended_runs_first():
    cfgs = [BASE.replace(steps=10), BASE.replace(steps=500), BASE.replace(steps=20)]
    assert chunks.fastest_first(cfgs, [0, 1, 2]) == [0, 2, 1]
    assert chunks.fastest_first(cfgs, [0, 1, 2], {cfgs[1].key()}) == [1, 0, 2]


def test_a_sitting_sweep_suspends_then_the_next_resumes_with_the_same_record(tmp_path, monkeypatch):
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("LRD_LEDGER", str(ledger))
    monkeypatch.setenv("LRD_S_PER_STEP", "1000")                # no run's whole budget fits ...
    monkeypatch.setenv("LRD_DEADLINE", str(time.time() + chunks.MIN_SEGMENT_S + 600))   # ... a segment does
    monkeypatch.setattr(suspend.Suspension, "due", lambda self, now, sps, every: True)  # stop at the first check
    cache = RunCache(tmp_path / "cache")
    cfg = ARMS["adamw+lrd"]
    with pytest.raises(chunks.DeadlineReached, match="1 runs of this sweep are still missing"):
        run_sweep([cfg], cache=cache, progress=False)
    assert cache.load(cfg) is None and suspend.started(cache.root, [cfg]) == {cfg.key()}
    monkeypatch.undo()
    for v in ("LRD_DEADLINE", "LRD_LEDGER", "LRD_S_PER_STEP"):
        monkeypatch.delenv(v, raising=False)
    table, (rec,) = run_sweep([cfg], cache=cache, progress=False, return_records=True)   # the next sitting
    assert rec["resumed_at"] == [10] and not suspend.started(cache.root, [cfg])
    _same(rec, train(cfg, use_cache=False, progress=False))


def test_a_process_pool_worker_suspends_at_the_deadline_and_the_run_is_left_not_failed(tmp_path, monkeypatch):
    """Through the process pool (a real deadline, no patching): the worker saves the state and the
    sweep counts the run among those left."""
    monkeypatch.setenv("LRD_LEDGER", str(tmp_path / "ledger.jsonl"))
    monkeypatch.setenv("LRD_S_PER_STEP", "0.000001")                 # the pool starts it (its budget "fits")
    monkeypatch.setenv("LRD_DEADLINE", str(time.time() + 15))        # ... and it cannot end by then
    cache = RunCache(tmp_path / "cache")
    cfg = ARMS["luon"].replace(steps=200_000)
    with pytest.raises(chunks.DeadlineReached, match="1 runs of this sweep are still missing"):
        run_sweep([cfg], cache=cache, executor="process", workers=1, progress=False)
    assert suspend.started(cache.root, [cfg]) == {cfg.key()} and cache.load(cfg) is None
    state = torch.load(suspend.state_path(cache.root, cfg), weights_only=True)
    assert 0 < state["step"] < cfg.steps and state["step"] % cfg.eval_every == 0
