"""lrdlib.resize (loss on both sides of every rank projection, read-only) and lrdlib.core.tasks."""
import dataclasses

import pytest
import torch

from lrdlib import seed_config
from lrdlib.analysis.resize import RESIZE_TAG, ResizeProbe, loss_acc, resize_table
from lrdlib.core.data import TaskConfig
from lrdlib.core.decay import DecayConfig
from lrdlib.core.model import build_model
from lrdlib.core.tasks import TASKS, final_qk_stable_rank, on_task
from lrdlib.core.training import evaluate, run
from lrdlib.runs.cache import RunCache
from lrdlib.runs.checkpoints import measure_along

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL_MODEL = dict(dim=32, heads=4, mlp_dim=64)
TASK = TaskConfig(op="recall", p=11, pairs=2, samples=300)
CFG = on_task(seed_config("LRD", 0.005, steps=30, eval_every=10, batch_size=64), TASK)
CFG = CFG.replace(model=dataclasses.replace(CFG.model, **SMALL_MODEL), decay=DecayConfig("adaptive_lowrank", every=10))


def test_on_task_moves_vocabulary_and_length_and_keeps_add_unchanged():
    base = seed_config("LRD", 0.01, train_frac=0.3, seed=2)
    assert on_task(base, TASKS["a + b"]) == base and on_task(base, TASKS["a + b"]).key() == base.key()
    r = on_task(base, TASKS["recall"])
    assert (r.task.op, r.task.train_frac, r.task.split_seed) == ("recall", 0.3, 2)
    assert r.model.vocab_size == TASKS["recall"].p + 1 and r.model.seq_len == 2 * TASKS["recall"].pairs + 1
    q = on_task(base, TASKS["a² + ab + b²"])
    assert q.task.op == "quad" and q.model == base.model


def test_final_qk_stable_rank():
    rec = {"spectra": {"a": {"stable_rank": [5.0, 2.0]}, "b": {"stable_rank": [3.0, 4.0]}}}
    assert final_qk_stable_rank(rec) == 3.0
    assert final_qk_stable_rank({"status": "failed"}) != final_qk_stable_rank({"status": "failed"})   # NaN


def test_loss_acc_with_own_parameters_is_evaluate():
    model = build_model(CFG.model, 0)
    from lrdlib.core.data import make_split
    s = make_split(CFG.task)
    params = {n: p.detach() for n, p in model.named_parameters() if "q_proj" in n}
    assert loss_acc(model, params, s.x_val, s.y_val) == evaluate(model, s.x_val, s.y_val)
    zero = {n: torch.zeros_like(p) for n, p in params.items()}
    assert loss_acc(model, zero, s.x_val, s.y_val) != evaluate(model, s.x_val, s.y_val)
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters() if n in params), "model written"


def test_resize_probe_reads_only_and_after_matches_the_record(tmp_path):
    rec, m = measure_along(CFG, 10, ResizeProbe, RESIZE_TAG, cache=RunCache(tmp_path), hook=True)
    ref, _ = run(CFG)
    assert rec["history"] == ref["history"], "the hook changed the trajectory"
    assert m["step"] == [10, 20, 30] and m["full_rank"] == 32 and len(m["rank"][0]) == 4
    h = rec["history"]
    for i, s in enumerate(m["step"]):   # after the projection = the weights the record evaluates at that step
        j = h["step"].index(s)
        assert m["train_loss_after"][i] == pytest.approx(h["train_loss"][j], rel=1e-12)
        assert m["val_acc_after"][i] == pytest.approx(h["val_acc"][j], rel=1e-12)
    assert m["train_loss_before"][0] != m["train_loss_after"][0]      # the first projection cuts the rank
    assert all(r < 32 for r in m["rank"][0])
    t = resize_table(m)
    assert list(t.step) == [10, 20, 30] and bool(t.resized.iloc[0])
    assert t.d_train_loss.iloc[0] == pytest.approx(m["train_loss_after"][0] - m["train_loss_before"][0])


def test_resize_table_flags_rank_changes():
    m = {"full_rank": 8, "step": [1, 2, 3], "rank": [[8, 8], [8, 8], [6, 8]],
         **{f"{p}_{q}_{s}": [0.0, 0.0, 0.0] for p in ("train", "val") for q in ("loss", "acc") for s in ("before", "after")}}
    assert list(resize_table(m).resized) == [False, False, True]


def test_resize_probe_needs_adaptive_decay():
    with pytest.raises(ValueError, match="kind='lrd_ns'"):
        ResizeProbe(CFG.replace(decay=DecayConfig("lrd_ns", 0.01)))
