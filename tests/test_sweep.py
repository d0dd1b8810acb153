"""lrdlib.runs.sweep: the table, the cache (resume without recomputation, also after SIGKILL),
failed and diverged runs, and the executors (inline, process pool, submitit) giving
the same table. Tiny runs (p = 23, d = 32), a few seconds each at most."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrdlib.core.config import RunConfig
from lrdlib.core.data import TaskConfig
from lrdlib.core.decay import Decay, DecayConfig, register_decay
from lrdlib.core.model import ModelConfig
from lrdlib.runs import cache as cache_mod
from lrdlib.runs.cache import RunCache
from lrdlib.runs.sweep import grid, run_sweep, summarize

pytestmark = pytest.mark.usefixtures("single_thread")

BASE = RunConfig(task=TaskConfig(p=23, train_frac=0.5, split_seed=0),
                 model=ModelConfig(vocab_size=24, dim=32, heads=4, mlp_dim=64),
                 steps=30, eval_every=10, batch_size=64)
OUTCOME = ["status", "grokked", "steps_to_grok", "final_val_acc", "max_val_acc", "final_train_acc", "final_srank", "steps_run"]


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("LRD_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.setenv("TQDM_DISABLE", "1")


def configs(n_frac=2, n_wd=2, **kw):
    return grid(BASE.replace(**kw), task__train_frac=[0.4, 0.6][:n_frac], optim__weight_decay=[0.1, 1.0][:n_wd])


def count_trainings(monkeypatch) -> list:
    """Patch the training loop ``lrdlib.runs.cache.train`` calls to record every run it trains (in this process)."""
    calls = []
    real = cache_mod.run

    def counting(cfg, *a, **k):
        calls.append(cfg.key())
        return real(cfg, *a, **k)

    monkeypatch.setattr(cache_mod, "run", counting)
    return calls


def same_outcomes(a: pd.DataFrame, b: pd.DataFrame) -> None:
    cols = [c for c in a.columns if c != "wall_time_s"]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))


# --------------------------------------------------------------------------- grid and table
def test_grid_is_the_cartesian_product_in_order():
    cfgs = grid(BASE, task__train_frac=[0.3, 0.5], seed=[0, 1])
    assert [(c.task.train_frac, c.seed, c.task.split_seed) for c in cfgs] == [
        (0.3, 0, 0), (0.3, 1, 1), (0.5, 0, 0), (0.5, 1, 1)]


def test_table_rows_follow_configs_with_labels(tmp_path):
    cfgs = configs()
    table, recs = run_sweep(cfgs, labels=list("abcd"), cache=RunCache(tmp_path), return_records=True)
    assert list(table.arm) == list("abcd")
    assert list(table.key) == [c.key() for c in cfgs]
    assert list(table.train_frac) == [0.4, 0.4, 0.6, 0.6] and list(table.weight_decay) == [0.1, 1.0, 0.1, 1.0]
    assert set(OUTCOME) <= set(table.columns)
    assert (table.status == "ok").all() and (table.steps_run == 30).all()
    assert [r["key"] for r in recs] == list(table.key)
    assert table.iloc[0].to_dict().items() >= summarize(recs[0]).items()
    with pytest.raises(ValueError, match="labels"):
        run_sweep(cfgs, labels=["x"], cache=RunCache(tmp_path))


def test_second_sweep_comes_from_the_cache(tmp_path, monkeypatch):
    cfgs = configs()
    first = run_sweep(cfgs, cache=RunCache(tmp_path))
    calls = count_trainings(monkeypatch)
    again = run_sweep(cfgs, cache=RunCache(tmp_path))
    assert calls == []
    pd.testing.assert_frame_equal(first, again)
    # a longer sweep trains only what is new; a repeated config is trained once
    more = cfgs + [BASE.replace(seed=3), BASE.replace(seed=3)]
    t = run_sweep(more, cache=RunCache(tmp_path))
    assert calls == [BASE.replace(seed=3).key()] and len(t) == 6 and t.key.iloc[4] == t.key.iloc[5]


# --------------------------------------------------------------------------- failed and diverged runs
@register_decay("test_raises")
class _Raises(Decay):
    def apply(self, W, step):
        raise RuntimeError("this decay always raises")


def test_failing_run_is_a_row_and_the_sweep_goes_on(tmp_path):
    bad = BASE.replace(decay=DecayConfig("test_raises", 0.1))     # training raises at step 1
    cache = RunCache(tmp_path)
    table = run_sweep([BASE, bad, BASE.replace(seed=1)], cache=cache)
    assert list(table.status) == ["ok", "failed", "ok"]
    assert "always raises" in table.error.iloc[1] and not table.grokked.iloc[1]
    assert cache.load(bad) is None and cache.load(BASE) is not None      # failures are not cached


def test_diverging_run_is_a_diverged_row(tmp_path):
    table = run_sweep([BASE.replace(optim__lr=1e6), BASE], cache=RunCache(tmp_path))
    assert list(table.status) == ["diverged", "ok"]
    assert table.steps_run.iloc[0] < 30


# --------------------------------------------------------------------------- executors
@pytest.fixture(scope="module")
def inline_table(tmp_path_factory):
    return run_sweep(configs(), cache=RunCache(tmp_path_factory.mktemp("inline")), progress=False)


@pytest.mark.slow
def test_process_pool_gives_the_inline_table(inline_table, tmp_path):
    same_outcomes(run_sweep(configs(), cache=RunCache(tmp_path), executor="process", workers=2), inline_table)


@pytest.mark.slow
def test_submitit_local_executor_gives_the_inline_table(inline_table, tmp_path):
    submitit = pytest.importorskip("submitit")
    ex = submitit.LocalExecutor(folder=str(tmp_path / "submitit"))
    ex.update_parameters(timeout_min=5)
    cfgs = configs(n_frac=1, n_wd=2)          # two jobs (each a python process importing torch)
    same_outcomes(run_sweep(cfgs, cache=RunCache(tmp_path / "c"), executor=ex), inline_table.iloc[:2])
    assert len(list((tmp_path / "submitit").glob("*_result.pkl"))) == 2


def test_unknown_executor_name():
    with pytest.raises(ValueError, match="executor"):
        run_sweep([BASE], executor="slurm")


# --------------------------------------------------------------------------- SIGKILL and resume
KILLED_SWEEP = """
import sys, torch
torch.set_num_threads(1)
from lrdlib.runs.cache import RunCache
from lrdlib.core.config import RunConfig
from lrdlib.runs.sweep import run_sweep
cfgs = [RunConfig.from_dict(d) for d in {dicts!r}]
run_sweep(cfgs, cache=RunCache({root!r}), progress=False)
"""


@pytest.mark.slow
def test_sigkill_midway_then_resume_recomputes_only_unfinished(tmp_path, monkeypatch):
    cfgs = [BASE.replace(seed=s, task__split_seed=s, steps=150) for s in range(6)]
    root = tmp_path / "cache"
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent(KILLED_SWEEP.format(dicts=[c.to_dict() for c in cfgs], root=str(root))))
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "TQDM_DISABLE": "1"})
    try:
        deadline = time.time() + 60
        while len(list(root.glob("*.json"))) < 2:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.time() < deadline, "no two records within 60 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = {p.name: p.stat().st_mtime_ns for p in root.glob("*.json")}
    finished = {c.key() for c in cfgs if f"{c.key()}.json" in before}
    assert 2 <= len(finished) < 6, f"killed too late: {len(finished)} of 6 finished"
    for p in root.glob("*.json"):                   # every record on disk is complete JSON
        assert json.loads(p.read_text())["status"] == "ok"

    calls = count_trainings(monkeypatch)
    table = run_sweep(cfgs, cache=RunCache(root))
    assert sorted(calls) == sorted(c.key() for c in cfgs if c.key() not in finished)
    assert len(calls) == 6 - len(finished)
    assert {p.name: p.stat().st_mtime_ns for p in root.glob("*.json") if p.name in before} == before
    assert list(table.key) == [c.key() for c in cfgs] and (table.status == "ok").all()
    for p in root.glob("*.json"):
        json.loads(p.read_text())


# --------------------------------------------------------------------------- phase-diagram summaries
def _phase_table(rows):
    """rows: (method, strength, train_frac, seed, grokked) -> a run_sweep-like table."""
    return pd.DataFrame([{"method": m, "strength": s, "train_frac": f, "seed": sd, "grokked": g, "status": "ok",
                          "steps_to_grok": 1000.0 if g else None, "final_val_acc": 1.0 if g else 0.5,
                          "max_val_acc": 1.0 if g else 0.5, "steps": 2000} for m, s, f, sd, g in rows])


def test_wilson_interval():
    from lrdlib.analysis.phase import wilson

    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(1, 1)
    assert lo == pytest.approx(0.2065, abs=1e-3) and hi == 1.0
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)


def test_boundary_needs_every_larger_fraction_to_grok():
    from lrdlib.analysis.phase import boundary, cells, region

    # L2 0.1: groks at 0.7 only; at 0.5 one of three seeds; LRD: 0.5 and 0.7 (all seeds); 0.3 none
    rows = [("L2", 0.1, f, sd, f == 0.7 or (f == 0.5 and sd == 0)) for f in (0.3, 0.5, 0.7) for sd in range(3)]
    rows += [("LRD", 0.01, f, sd, f >= 0.5) for f in (0.3, 0.5, 0.7) for sd in range(3)]
    rows += [("L2", 1.0, f, sd, f == 0.3) for f in (0.3, 0.5, 0.7) for sd in range(3)]   # not monotone: no boundary
    t = _phase_table(rows)
    c = cells(t).set_index(["method", "strength", "train_frac"])
    assert c.loc[("L2", 0.1, 0.5), "grokked"] == 1 and c.loc[("L2", 0.1, 0.5), "seeds"] == 3
    b = boundary(t, n_boot=200).set_index(["method", "strength"])
    assert b.loc[("L2", 0.1), "boundary"] == 0.7 and b.loc[("LRD", 0.01), "boundary"] == 0.5
    assert np.isnan(b.loc[("L2", 1.0), "boundary"])
    assert b.loc[("LRD", 0.01), "boot_lo"] == b.loc[("LRD", 0.01), "boot_hi"] == 0.5   # unanimous seeds
    assert b.loc[("L2", 0.1), "boot_lo"] == 0.5 and b.loc[("L2", 0.1), "boot_hi"] == 0.7  # 1/3 at 0.5 resamples to ≥ 1/2
    assert b.loc[("L2", 0.1), "plausible"] == 0.3           # 95 % Wilson upper bound of 0/3 is 0.56 ≥ 1/2
    assert np.isnan(b.loc[("LRD", 0.01), "certain"])          # 95 % Wilson lower bound of 3/3 is 0.44 < 1/2
    assert boundary(t, n_boot=10, z=1.0).set_index(["method", "strength"]).loc[("LRD", 0.01), "certain"] == 0.5
    r = region(t).set_index(["method", "train_frac"])
    assert list(r.loc["LRD"].groks) == [False, True, True]
    assert list(r.loc["L2"].groks) == [True, False, True] and r.loc[("L2", 0.3), "best_strength"] == 1.0


# --------------------------------------------------------------------------- hardening (issue 10)
def test_analysis_frames_accept_failed_records(tmp_path):
    from lrdlib.analysis.frames import grok_table, history_frame, spectra_frame, tangential_frame

    bad = BASE.replace(decay=DecayConfig("test_raises", 0.1))
    _, recs = run_sweep([BASE, bad], cache=RunCache(tmp_path), return_records=True)
    assert [r["status"] for r in recs] == ["ok", "failed"]
    arms = {"a": recs}
    g = grok_table(arms)
    assert g.loc["a", "seeds"] == 1 and g.loc["a", "failed"] == 1
    for frame in (history_frame, spectra_frame, tangential_frame):
        assert set(frame(arms).seed) == {0}
    assert grok_table({"b": [recs[1]]}).loc["b", "seeds"] == 0 and history_frame({"b": [recs[1]]}).empty


KILLER = textwrap.dedent('''
    """Imported by spawned pool workers (sitecustomize): a decay that kills its process."""
    import os
    from lrdlib.core.decay import Decay, register_decay

    @register_decay("test_kill")
    class Kill(Decay):
        def apply(self, W, step):
            os._exit(3)
''')


@pytest.mark.slow
def test_dead_worker_costs_only_its_own_run(tmp_path, monkeypatch):
    """One run kills its worker: the others (in flight in healthy workers or queued) finish; the
    killer's row is failed (it killed its worker twice) and is not cached."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(KILLER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]))
    from lrdlib.core.decay import available_decays

    if "test_kill" not in available_decays():  # register it here too, so the config validates
        exec(compile(KILLER, "killer", "exec"), {})
    kill = BASE.replace(decay=DecayConfig("test_kill", 0.1))
    cfgs = [BASE.replace(seed=1), kill, BASE.replace(seed=2), BASE.replace(seed=3)]
    cache = RunCache(tmp_path / "c")
    table = run_sweep(cfgs, cache=cache, executor="process", workers=2)
    assert list(table.status) == ["ok", "failed", "ok", "ok"]
    assert "worker process died" in table.error.iloc[1] and cache.load(kill) is None


PARENT = textwrap.dedent('''
    import multiprocessing as mp, sys, threading, time
    from lrdlib.runs.cache import RunCache
    from lrdlib.runs.sweep import run_sweep
    from lrdlib.core.config import RunConfig
    from lrdlib.core.data import TaskConfig
    from lrdlib.core.model import ModelConfig

    if __name__ == "__main__":
        base = RunConfig(task=TaskConfig(p=23), model=ModelConfig(vocab_size=24, dim=32, heads=4, mlp_dim=64),
                         steps=100000, eval_every=1000, batch_size=64)
        def report():
            while True:
                kids = mp.active_children()
                if len(kids) == 2:
                    print(" ".join(str(k.pid) for k in kids), flush=True)
                    return
                time.sleep(0.2)
        threading.Thread(target=report, daemon=True).start()
        run_sweep([base, base.replace(seed=1)], cache=RunCache(sys.argv[1]), executor="process", workers=2,
                  progress=False)
''')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped) counts as dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


@pytest.mark.slow
def test_pool_workers_exit_when_the_sweep_process_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "c")], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        line = proc.stdout.readline()
        while line and not all(w.isdigit() for w in line.split()):   # the sweep's note ("2 runs to train: ...")
            line = proc.stdout.readline()
        workers = [int(p) for p in line.split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 20
        while any(_alive(p) for p in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "pool workers outlived the sweep's process"
    finally:
        proc.kill()

