"""The seed runs shared by notebooks 01-03: one definition, one cache entry."""
import pytest

from lrdlib import seed_config
from lrdlib.profiles import SEED_RUN_ARMS, SEED_RUN_TRAIN_FRAC, seed_run_budget, seed_runs


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
