"""The seed runs shared by notebooks 01-03: one definition, one cache entry."""
import pytest

from lrdlib import seed_config
from lrdlib.runs.profiles import SEED_RUN_ARMS, SEED_RUN_TRAIN_FRAC, seed_run_budget, seed_runs


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_seed_runs_cover_arms_and_seeds(profile):
    runs = seed_runs(profile)
    b = seed_run_budget(profile)
    assert list(runs) == list(SEED_RUN_ARMS)
    for _arm, cfgs in runs.items():
        assert [c.seed for c in cfgs] == b["seeds"]
        assert all(c.steps == b["steps"] and c.eval_every == b["eval_every"] for c in cfgs)
        assert all(c.task.train_frac == SEED_RUN_TRAIN_FRAC for c in cfgs)


def test_seed_runs_share_cache_key_with_seed_config():
    """Notebook 01 trains the seed LRD run; 03 reads the same cache entry."""
    b = seed_run_budget("quick")
    lrd0 = seed_runs("quick", arms=["LRD (seed, α 0.005)"])["LRD (seed, α 0.005)"][0]
    same = seed_config("LRD", steps=b["steps"], eval_every=b["eval_every"], seed=0)
    assert lrd0.key() == same.key()


def test_seed_runs_bad_inputs():
    with pytest.raises(ValueError, match="valid: smoke, quick, paper"):
        seed_runs("fast")
    with pytest.raises(ValueError, match="valid: L2 \\(seed"):
        seed_runs("smoke", arms=["L2"])


def test_benchmark_results_rerun_when_the_stored_args_differ(tmp_path, monkeypatch):
    """A JSON written by a short (smoke) run is not read back for a longer request."""
    import json

    import lrdlib.runs.paths as paths

    (tmp_path / "lrdlib").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "fake.py").write_text(
        "import argparse, json\n"
        "ap = argparse.ArgumentParser(); ap.add_argument('--steps', type=int); ap.add_argument('--device')\n"
        "ap.add_argument('--out'); a = ap.parse_args()\n"
        "open(a.out, 'w').write(json.dumps({'device': a.device, 'steps': a.steps, 'fresh': True}))\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "build" / "benchmarks" / "fake.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps({"device": "cpu", "steps": 3, "fresh": False}))
    assert paths.benchmark_results("fake", ["--steps", 3])["fresh"] is False      # same args: read back
    assert paths.benchmark_results("fake", ["--steps", 30]) == {"device": "cpu", "steps": 30, "fresh": True}
