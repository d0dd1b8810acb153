"""The one-minute demo: both arms decay the other parameters alike, and the script runs end to end."""
from lrdlib.demo import DEMO, demo_configs, main


def test_demo_arms_differ_only_in_the_qk_treatment():
    c = demo_configs()
    l2, lrd = c["L2"], c["LRD"]
    assert l2.optim.weight_decay == lrd.optim.weight_decay == 1.0
    assert l2.optim.target_weight_decay == 1.0 and lrd.optim.target_weight_decay == 0.0
    assert lrd.decay.kind == "lrd_ns" and l2.decay.kind != "lrd_ns"
    assert l2.task == lrd.task and l2.task.p == DEMO["p"] and l2.model == lrd.model and l2.seed == lrd.seed


def test_demo_runs_and_draws(tmp_path, capsys):
    out = tmp_path / "demo.png"
    recs = main(["--p", "23", "--steps", "30", "--out", str(out)])
    assert set(recs) == {"L2", "LRD"} and all(r["steps_run"] == 30 for r in recs.values())
    assert out.stat().st_size > 0 and "accuracy curves" in capsys.readouterr().out
